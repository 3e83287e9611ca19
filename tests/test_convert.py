"""fabook.convert on torchvision ResNet-18 and user models."""

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

import fabook
from fabook.layers import RuleLayer


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return resnet18(weights=None, num_classes=10).eval()


def _torch_layers(model):
    return [n for n, m in model.named_modules() if type(m) in (nn.Linear, nn.Conv2d)]


@pytest.mark.parametrize("rule", ["fa", "frsf", "kp", "pfa-o", "dfa"])
def test_resnet18_same_outputs_every_layer_replaced_original_intact(resnet, rule):
    before = {k: v.clone() for k, v in resnet.state_dict().items()}
    converted = fabook.convert(resnet, rule).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(converted(x), resnet(x), rtol=0, atol=0)
    names = _torch_layers(resnet)
    assert len(names) == 21
    converted_modules = dict(converted.named_modules())
    assert all(isinstance(converted_modules[n], RuleLayer) for n in names)
    assert all(converted_modules[n].rule.name == rule for n in names)
    assert not _torch_layers(converted)
    assert not any(isinstance(m, RuleLayer) for m in resnet.modules())
    # training the copy leaves the original untouched
    converted.train()
    opt = torch.optim.SGD(converted.parameters(), lr=0.1)
    converted(x).logsumexp(1).sum().backward()
    opt.step()
    for k, v in resnet.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_state_dict_round_trip_restores_feedback(resnet):
    torch.manual_seed(1)
    a = fabook.convert(resnet, "sc", p=0.5)
    torch.manual_seed(2)
    b = fabook.convert(resnet, "sc", p=0.5)
    assert not torch.equal(a.conv1.feedback_flip, b.conv1.feedback_flip)
    b.load_state_dict(a.state_dict())
    for (_, la), (_, lb) in zip(fabook.rule_layers(a), fabook.rule_layers(b), strict=True):
        torch.testing.assert_close(la.backward_weight(), lb.backward_weight(), rtol=0, atol=0)


def test_keep_bp_first_last_and_names():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 4), nn.ReLU(), nn.Linear(4, 2))
    model = fabook.convert(net, "fa", keep_bp=["first", "last"])
    assert type(model[0]) is nn.Conv2d and type(model[4]) is nn.Linear
    assert isinstance(model[2], fabook.Linear)
    model = fabook.convert(net, "fa", keep_bp=["2"])
    assert type(model[2]) is nn.Linear and isinstance(model[0], fabook.Conv2d)
    with pytest.raises(ValueError, match=r"keep_bp: no layer named 'fc'; accepted: 'first', 'last'"):
        fabook.convert(net, "fa", keep_bp=["fc"])


def test_unsupported_layers_raise_unless_kept_as_bp():
    net = nn.Sequential(nn.Conv1d(1, 2, 3), nn.Flatten(), nn.Linear(6, 2))
    with pytest.raises(TypeError, match=r"cannot convert 0 \(Conv1d\) to rule 'fa': supported layers are"):
        fabook.convert(net, "fa")
    model = fabook.convert(net, "fa", keep_bp=["0"])
    assert type(model[0]) is nn.Conv1d and isinstance(model[2], fabook.Linear)
    with pytest.raises(ValueError, match="unknown rule 'fb'"):
        fabook.convert(net, "fb")


def test_shared_modules_stay_shared_and_a_bare_layer_converts():
    shared = nn.Linear(4, 4)
    net = nn.Sequential(shared, nn.Tanh(), shared)
    model = fabook.convert(net, "kp")
    assert model[0] is model[2] and isinstance(model[0], fabook.Linear)
    assert isinstance(fabook.convert(nn.Linear(3, 2), "fa"), fabook.Linear)


def test_constrain_norm_keeps_norms_and_still_learns():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 3))
    model = fabook.convert(net, "usf", constrain_norm=True, scale=1)
    norms = [layer.weight.norm().item() for _, layer in fabook.rule_layers(model)]
    params = [layer.weight for _, layer in fabook.rule_layers(model)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    fabook.norm_constraint.hold_norms(opt, model)
    x, y = torch.randn(64, 10), torch.randint(0, 3, (64,))
    first = None
    for _ in range(60):
        loss = nn.functional.cross_entropy(model(x), y)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    for (_, layer), norm, p in zip(fabook.rule_layers(model), norms, params, strict=True):
        assert layer.weight.norm().item() == pytest.approx(norm, rel=1e-5)
        assert layer.weight is p  # the optimizer kept updating the same parameter
    assert loss.item() < 0.8 * first


def test_keeping_a_block_keeps_what_is_inside():
    net = nn.Sequential(nn.MultiheadAttention(4, 2), nn.Linear(4, 2))
    with pytest.raises(
        TypeError, match=r"0 \(MultiheadAttention\), 0.out_proj \(NonDynamicallyQuantizableLinear\)"
    ):
        fabook.convert(net, "fa")
    model = fabook.convert(net, "fa", keep_bp=["0"])
    assert type(model[0]) is nn.MultiheadAttention and isinstance(model[1], fabook.Linear)
