"""The rule options the papers' code uses: sign feedback the size of W, and a grouped conv's feedback B.

Each against an independent float64 computation, for Linear and Conv2d.
"""

import math
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fabook
from fabook.train import Config, validate

DT = torch.float64
SIGN_RULES = ["usf", "brsf", "frsf", "sc"]


def _layer(kind: str, rule: str, **options) -> nn.Module:
    torch.manual_seed(3)
    if kind == "linear":
        return fabook.Linear(37, 23, dtype=DT, rule=rule, **options)
    return fabook.Conv2d(5, 12, 3, padding=1, dtype=DT, rule=rule, **options)


def _rms(t: torch.Tensor) -> float:
    return t.detach().square().mean().sqrt().item()


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("rule", SIGN_RULES)
def test_scale_weight_gives_magnitudes_of_mean_rms_w_and_the_backward_uses_them(kind, rule):
    layer = _layer(kind, rule, scale="weight")
    w = layer.weight.detach()
    s = _rms(w)
    assert layer.feedback_scale.item() == pytest.approx(s, rel=1e-12)
    b = layer.backward_weight()
    assert torch.equal(torch.sign(b), torch.sign(w))  # sc's default p = 1: every sign agrees
    m = b.abs()
    if rule == "usf":
        torch.testing.assert_close(m, torch.full_like(m, s), rtol=1e-12, atol=0)
    else:  # i.i.d. uniform on (0, 2s): mean s, sd 2s/√12, within 5 standard errors
        assert m.min() > 0 and m.max() < 2 * s
        assert abs(m.mean().item() - s) < 5 * (2 * s / math.sqrt(12)) / math.sqrt(m.numel())
    # the backward sends Bᵀ δy, with B the magnitudes above (brSF: the draw made in this backward)
    torch.manual_seed(4)
    x = torch.randn((6, 37) if kind == "linear" else (2, 5, 7, 6), dtype=DT, requires_grad=True)
    y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)
    b = layer.backward_weight()  # brSF's buffer holds this backward's draw
    expected = g @ b if kind == "linear" else torch.nn.grad.conv2d_input(x.shape, b, g, padding=1)
    torch.testing.assert_close(x.grad, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("rule", SIGN_RULES)
def test_scale_fan_in_and_a_number_are_kept(rule):
    assert _layer("conv", rule, scale="fan_in").feedback_scale.item() == pytest.approx(1 / math.sqrt(45))
    assert _layer("linear", rule, scale=0.5).feedback_scale.item() == 0.5


def test_the_default_is_weight_and_keeps_a_he_initialised_conv_stacks_backward_gain_at_one():
    """‖B‖/‖W‖ per layer: 1 with scale="weight" (uSF), 0.71 for 1/√fan_in against He-initialised convs."""
    assert fabook.get_rule("usf").scale == "weight" and fabook.get_rule("sc").scale == "weight"
    torch.manual_seed(0)
    net = nn.Sequential(*[nn.Conv2d(64, 64, 3, bias=False) for _ in range(3)])
    for m in net:
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")  # torchvision's ResNets
    for scale, expected in (("weight", 1.0), ("fan_in", math.sqrt(1 / (64 * 9)) / math.sqrt(2 / (64 * 9)))):
        model = fabook.convert(net, "usf", scale=scale)
        ratios = [(layer.backward_weight().norm() / layer.weight.norm()).item() for layer in model]
        assert ratios == pytest.approx([expected] * 3, rel=0.02)


def test_the_scale_is_saved_and_a_loaded_one_is_used_by_the_next_draw():
    torch.manual_seed(0)
    big = fabook.Linear(40, 30, rule="brsf")
    with torch.no_grad():
        big.weight.mul_(10)
    big.rule.setup(big)  # set up again, on the ten-times larger weight
    small = fabook.Linear(40, 30, rule="brsf")
    assert big.feedback_scale.item() == pytest.approx(10 * small.feedback_scale.item(), rel=0.1)
    small.load_state_dict(big.state_dict())
    s = small.feedback_scale.item()
    assert s == big.feedback_scale.item()
    small(torch.randn(4, 40, requires_grad=True)).sum().backward()  # a fresh draw
    m = small.feedback_magnitude
    assert 2 * s / 10 < m.max() < 2 * s  # drawn at the loaded scale, not the one it was set up with


@pytest.mark.parametrize("bad", ["weights", -1, 0, float("nan"), math.inf, True, None])
@pytest.mark.parametrize("rule", SIGN_RULES)
def test_a_bad_scale_is_refused_at_construction_naming_the_accepted_values(rule, bad):
    match = rf"scale={re.escape(repr(bad))}: accepted: 'weight', 'fan_in' or a positive finite number"
    with pytest.raises(ValueError, match=match):
        fabook.get_rule(rule, scale=bad)
    with pytest.raises(ValueError, match=match):
        fabook.Linear(3, 2, rule=rule, scale=bad)


def test_a_bad_scale_in_a_config_is_refused_before_training():
    with pytest.raises(ValueError, match="scale='weights': accepted: 'weight', 'fan_in'"):
        validate(Config(dataset="iris", rule="usf", rule_options={"scale": "weights"}), build=False)
    with pytest.raises(ValueError, match="scale"):
        Config(dataset="iris", rule="usf", rule_options={"scale": float("nan")})


def _grouped_pfa() -> nn.Module:
    torch.manual_seed(5)
    return fabook.Conv2d(4, 6, 3, groups=2, dtype=DT, rule="pfa", k=2)


def test_a_dense_b_on_a_grouped_conv_is_refused_at_the_first_backward():
    layer = _grouped_pfa()
    with torch.no_grad():
        layer.feedback_b.copy_(torch.randn(6, 12, dtype=DT))  # the PFA authors' dense B
    x = torch.randn(2, 4, 5, 5, dtype=DT, requires_grad=True)
    with pytest.raises(ValueError, match=r"outside the 2 diagonal blocks of shape \(3, 6\).*groups=2"):
        layer(x).sum().backward()


@pytest.mark.parametrize(("x_shape", "route"), [((1, 4, 3, 3), "per sample"), ((8, 4, 9, 9), "per step")])
def test_a_hand_set_block_diagonal_b_gives_the_same_gradients_on_both_routes(x_shape, route, monkeypatch):
    layer = _grouped_pfa()
    b = torch.zeros(6, 12, dtype=DT)
    b[:3, :6], b[3:, 6:] = torch.randn(3, 6, dtype=DT), torch.randn(3, 6, dtype=DT)
    with torch.no_grad():
        layer.feedback_b.copy_(b)
    mixed = []
    mix = layer.mix_channels
    monkeypatch.setattr(layer, "mix_channels", lambda *a: mixed.append(1) or mix(*a))
    torch.manual_seed(6)
    x = torch.randn(x_shape, dtype=DT, requires_grad=True)
    y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)
    assert bool(mixed) == (route == "per sample")
    # independent: R's input signal s = Bᵀ δy (a 1×1 conv), ∂R by autograd through R's own grouped conv
    r = layer.feedback_r.detach().clone().requires_grad_(True)
    s = F.conv2d(g, b.t()[:, :, None, None])
    xr = x.detach().clone().requires_grad_(True)
    (F.conv2d(xr, r, groups=2) * s).sum().backward()
    torch.testing.assert_close(layer.feedback_r.grad, r.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("rule", ["fa", *SIGN_RULES])
def test_sparse_feedback_keeps_a_fixed_fraction_and_the_backward_uses_exactly_it(kind, rule):
    density = 0.3
    layer = _layer(kind, rule, density=density)
    b = layer.backward_weight()
    kept = b != 0
    n = b.numel()
    assert abs(kept.double().mean().item() - density) < 4 * math.sqrt(density * (1 - density) / n)
    torch.manual_seed(4)
    for _ in range(2):  # the mask stays; brSF's magnitudes are redrawn under it
        x = torch.randn((6, 37) if kind == "linear" else (2, 5, 7, 6), dtype=DT, requires_grad=True)
        y = layer(x)
        g = torch.randn_like(y)
        y.backward(g)
        b = layer.backward_weight()
        assert torch.equal(b != 0, kept)
        expected = g @ b if kind == "linear" else torch.nn.grad.conv2d_input(x.shape, b, g, padding=1)
        torch.testing.assert_close(x.grad, expected, rtol=1e-10, atol=1e-12)
    dense = _layer(kind, rule)
    assert (dense.backward_weight() != 0).all()


def test_sparse_dfa_masks_its_direct_feedback():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(30, 40), nn.ReLU(), nn.Linear(40, 10))
    model = fabook.convert(net, "dfa", density=0.2)
    model(torch.randn(8, 30, requires_grad=True)).sum().backward()
    d = model[2].direct_feedback
    assert d.shape == (10, 40) and abs((d != 0).double().mean().item() - 0.2) < 0.08


@pytest.mark.parametrize("rule", ["fa", "dfa", *SIGN_RULES])
@pytest.mark.parametrize("bad", [0, 1.5, -0.1, float("nan")])
def test_a_bad_density_is_refused_at_construction(rule, bad):
    with pytest.raises((ValueError, TypeError), match=rf"density={re.escape(repr(bad))}"):
        fabook.get_rule(rule, density=bad)
