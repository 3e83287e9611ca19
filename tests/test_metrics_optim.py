"""Alignment metrics and the Batch Manhattan optimizer."""

import math

import pytest
import torch
from torch import nn

import fabook
from fabook.metrics import angle_deg, gradient_alignment, weight_alignment
from fabook.optim import BatchManhattan


def _mlp(rule, **options):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3))
    return fabook.convert(net, rule, **options)


def test_angle_deg():
    a = torch.tensor([1.0, 0.0])
    assert angle_deg(a, a) == pytest.approx(0.0, abs=1e-6)
    assert angle_deg(a, torch.tensor([0.0, 2.0])) == pytest.approx(90.0)
    assert angle_deg(a, -a) == pytest.approx(180.0)
    assert math.isnan(angle_deg(a, torch.zeros(2)))


def test_weight_alignment_per_layer():
    bp = weight_alignment(_mlp("bp"))
    columns = ["layer", "rule", "angle_deg", "sign_concordance", "norm_ratio", "distance", "weight_norm"]
    assert list(bp.columns) == columns
    assert list(bp.layer) == ["0", "2", "4"]
    assert bp.weight_norm.iloc[-1] == pytest.approx(float(_mlp("bp")[4].weight.detach().norm()), rel=1e-6)
    assert bp.angle_deg.abs().max() < 1e-3 and (bp.sign_concordance == 1).all()
    assert (bp.norm_ratio - 1).abs().max() < 1e-9 and bp.distance.max() < 1e-6
    usf = weight_alignment(_mlp("usf"))
    assert (usf.sign_concordance == 1).all() and (usf.angle_deg < 45).all()
    sc = weight_alignment(_mlp("sc", p=0.0))
    assert (sc.sign_concordance == 0).all() and (sc.angle_deg > 90).all()
    dfa = weight_alignment(_mlp("dfa"))
    assert dfa.angle_deg.isna().all() and list(dfa.rule.unique()) == ["dfa"]


def test_gradient_alignment_zero_for_bp_and_leaves_model_untouched():
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    bp = gradient_alignment(_mlp("bp"), x, y)
    assert (bp.angle_deg < 1e-3).all()
    model = _mlp("fa")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fa = gradient_alignment(model, x, y)
    assert list(fa.columns) == ["layer", "rule", "angle_deg", "error_ratio"]
    # the top layer's update is BP's (it gets the true error); lower layers' updates differ
    assert fa.angle_deg.iloc[-1] < 1e-3 and (fa.angle_deg.iloc[:-1] > 1).all()
    assert fa.error_ratio.iloc[-1] == pytest.approx(1.0) and (fa.error_ratio.iloc[:-1] != 1.0).all()
    assert (bp.error_ratio - 1).abs().max() < 1e-9
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)


def test_gradient_alignment_with_dfa_and_constrained_norm():
    x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
    dfa = gradient_alignment(_mlp("dfa"), x, y)
    assert dfa.angle_deg.notna().all()
    constrained = gradient_alignment(_mlp("frsf", constrain_norm=True), x, y)
    assert constrained.angle_deg.notna().all()


def test_batch_manhattan_steps_by_sign_with_decay_and_momentum():
    w = nn.Parameter(torch.tensor([1.0, -2.0, 3.0]))
    opt = BatchManhattan([w], lr=0.1, momentum=0.5, weight_decay=0.01)
    w.grad = torch.tensor([5.0, -0.001, 0.0])
    d1 = torch.sign(w.grad) + 0.01 * w.detach()
    expected = w.detach() - 0.1 * d1
    opt.step()
    torch.testing.assert_close(w.detach(), expected)
    w.grad = torch.tensor([-1.0, 1.0, 2.0])
    d2 = torch.sign(w.grad) + 0.01 * w.detach()
    expected = w.detach() - 0.1 * (0.5 * d1 + d2)
    opt.step()
    torch.testing.assert_close(w.detach(), expected)
    with pytest.raises(ValueError, match="lr=-1"):
        BatchManhattan([w], lr=-1)


def test_batch_manhattan_keeps_kp_difference_decaying_exactly():
    torch.manual_seed(0)
    layer = fabook.Linear(5, 3, rule="kp", dtype=torch.float64)
    opt = BatchManhattan(layer.parameters(), lr=0.01, weight_decay=0.1)
    diff = (layer.weight - layer.feedback).detach().clone()
    layer(torch.randn(4, 5, dtype=torch.float64)).sum().backward()
    opt.step()
    torch.testing.assert_close((layer.weight - layer.feedback).detach(), (1 - 0.001) * diff)


def test_gradient_alignment_leaves_the_global_random_state_alone():
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    model = _mlp("brsf")
    state = torch.get_rng_state()
    first = gradient_alignment(model, x, y)
    assert torch.equal(torch.get_rng_state(), state)
    pd_testing = pytest.importorskip("pandas.testing")
    pd_testing.assert_frame_equal(first, gradient_alignment(model, x, y))


@pytest.mark.parametrize("rule, options", [("pfa", {"k": 3, "b_density": 0.5}), ("pfa-o", {})])
def test_weight_alignment_of_pfa_measures_w_against_the_product_b_r(rule, options):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    model = fabook.convert(net, rule, **options)
    table = weight_alignment(model).set_index("layer")
    for name, layer in fabook.layers.rule_layers(model):
        b, r = layer.feedback_b.double(), layer.feedback_r.detach().double()
        product = (b @ r.flatten(1)).reshape(layer.weight.shape)  # independent of the rule's tensordot
        w = layer.weight.detach().double().flatten()
        cos = float(w @ product.flatten() / (w.norm() * product.norm()))
        assert table.loc[name, "angle_deg"] == pytest.approx(math.degrees(math.acos(cos)), abs=1e-4)
        assert table.loc[name, "norm_ratio"] == pytest.approx(float(product.norm() / w.norm()), rel=1e-5)


def test_error_ratio_compounds_the_feedback_scale_layer_by_layer():
    # every |W| entry 0.1 and uSF's |B| = 0.2: B = 2W, so the error each layer sends down is twice BP's
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 5), nn.Tanh(), nn.Linear(5, 3))
    with torch.no_grad():
        for layer in net[::2]:
            layer.weight.copy_(0.1 * torch.sign(torch.randn_like(layer.weight)))
    model = fabook.convert(net, "usf", scale=0.2)
    ratios = gradient_alignment(model, torch.randn(8, 5), torch.randint(0, 3, (8,))).error_ratio
    assert ratios.tolist() == pytest.approx([4.0, 2.0, 1.0])
    norms = weight_alignment(model).weight_norm
    assert norms.tolist() == pytest.approx([0.1 * 5, 0.1 * 5, 0.1 * 15**0.5])
