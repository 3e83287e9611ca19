"""Every rule's backward pass against an independent float64 computation, for Linear and Conv2d."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fabook
from fabook.metrics import angle_deg
from fabook.rules import DirectFeedbackAlignment

MATRIX_RULES = [r for r in fabook.RULES if r != "dfa"]
DT = torch.float64

LINEAR_CASES = [  # (in, out, bias, input shape without the feature axis)
    (7, 5, True, (4,)),
    (3, 9, False, (2, 3, 4)),  # N-D input
    (6, 4, True, ()),  # unbatched
]
CONV_CASES = [  # kwargs for Conv2d, input shape
    (dict(in_channels=3, out_channels=4, kernel_size=3), (2, 3, 8, 8)),
    (dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, groups=2), (2, 4, 9, 7)),
    (
        dict(in_channels=2, out_channels=4, kernel_size=(3, 2), dilation=2, padding="same", bias=False),
        (3, 2, 8, 9),
    ),
    (
        dict(in_channels=3, out_channels=3, kernel_size=3, padding=1, padding_mode="reflect", groups=3),
        (2, 3, 6, 6),
    ),
    (
        dict(in_channels=2, out_channels=4, kernel_size=2, stride=(1, 2), padding=(1, 0)),
        (2, 5, 5),
    ),  # unbatched
]


def _torch_twin(layer: nn.Module, weight: torch.Tensor) -> nn.Module:
    """A plain torch layer with the same settings whose weight is ``weight`` (independent reference)."""
    if isinstance(layer, nn.Conv2d):
        twin = nn.Conv2d(
            layer.in_channels, weight.shape[0], layer.kernel_size, layer.stride, layer.padding,
            layer.dilation, layer.groups, False, layer.padding_mode, dtype=DT,
        )  # fmt: skip
    else:
        twin = nn.Linear(weight.shape[1], weight.shape[0], bias=False, dtype=DT)
    with torch.no_grad():
        twin.weight.copy_(weight)
    return twin


def _run(layer: nn.Module, x_shape: tuple[int, ...]):
    torch.manual_seed(1)
    x = torch.randn(x_shape, dtype=DT, requires_grad=True)
    y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)
    return x, g


def _input_grad(layer: nn.Module, weight: torch.Tensor, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Autograd through a torch layer whose weight is ``weight``: ``weightᵀ g``."""
    x2 = x.detach().clone().requires_grad_(True)
    _torch_twin(layer, weight)(x2).backward(g)
    return x2.grad


def _check_layer(layer: nn.Module, x_shape: tuple[int, ...]) -> None:
    x, g = _run(layer, x_shape)
    b = layer.backward_weight()
    assert b.shape == layer.weight.shape
    torch.testing.assert_close(x.grad, _input_grad(layer, b, x, g), rtol=1e-10, atol=1e-10)
    # the weight gradient is BP's local one
    w = layer.weight.detach().clone().requires_grad_(True)
    ref = _torch_twin(layer, w.detach())
    ref.weight = nn.Parameter(w)
    ref(x.detach()).backward(g)
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad, rtol=1e-10, atol=1e-10)
    if layer.bias is not None:
        channel = g.dim() - 1 if isinstance(layer, nn.Linear) else g.dim() - 3
        axes = [d for d in range(g.dim()) if d != channel]
        torch.testing.assert_close(layer.bias.grad, g.sum(axes) if axes else g, rtol=1e-10, atol=1e-10)
    _check_learned(layer, x, g)


def _check_learned(layer: nn.Module, x: torch.Tensor, g: torch.Tensor) -> None:
    """KP's B gets exactly W's gradient; PFA's R gets (Bᵀ δy) xᵀ, computed here by autograd."""
    name = layer.rule.name
    if name == "kp":
        torch.testing.assert_close(layer.feedback.grad, layer.weight.grad, rtol=0, atol=0)
    elif name.endswith("pfa") or name == "pfa-o":
        b = layer.feedback_b
        s = torch.einsum("...ohw,oj->...jhw", g, b) if isinstance(layer, nn.Conv2d) else g @ b
        r = layer.feedback_r.detach().clone()
        twin = _torch_twin(layer, r)
        twin(x.detach()).backward(s)
        expected = twin.weight.grad
        if name == "sparse-pfa":
            expected = expected * layer.feedback_r_mask
        torch.testing.assert_close(layer.feedback_r.grad, expected, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(layer.backward_weight(), torch.tensordot(b, r, dims=1))
    else:
        assert not layer.rule.learned(layer)


@pytest.mark.parametrize("rule", MATRIX_RULES)
@pytest.mark.parametrize("case", LINEAR_CASES, ids=["2d", "nd", "1d"])
def test_linear_backward_matches_independent_computation(rule, case):
    n_in, n_out, bias, lead = case
    torch.manual_seed(0)
    layer = fabook.Linear(n_in, n_out, bias=bias, dtype=DT, rule=rule)
    _check_layer(layer, (*lead, n_in))


@pytest.mark.parametrize("rule", MATRIX_RULES)
@pytest.mark.parametrize(
    "case", CONV_CASES, ids=["plain", "stride-groups", "dilation-same", "reflect-dw", "unbatched"]
)
def test_conv2d_backward_matches_independent_computation(rule, case):
    kwargs, x_shape = case
    torch.manual_seed(0)
    layer = fabook.Conv2d(**kwargs, dtype=DT, rule=rule)
    _check_layer(layer, x_shape)


@pytest.mark.parametrize("rule", MATRIX_RULES)
def test_forward_is_torchs(rule):
    torch.manual_seed(0)
    lin = fabook.Linear(6, 3, rule=rule)
    ref = nn.Linear(6, 3)
    ref.load_state_dict(lin.state_dict(), strict=False)
    x = torch.randn(4, 6)
    torch.testing.assert_close(lin(x), ref(x), rtol=0, atol=0)
    conv = fabook.Conv2d(2, 4, 3, padding=1, rule=rule)
    ref = nn.Conv2d(2, 4, 3, padding=1)
    ref.load_state_dict(conv.state_dict(), strict=False)
    x = torch.randn(2, 2, 5, 5)
    torch.testing.assert_close(conv(x), ref(x), rtol=0, atol=0)
    assert {"weight", "bias"} <= set(lin.state_dict())


@pytest.mark.parametrize("layer_kind", ["linear", "conv"])
def test_feedback_equal_to_w_is_backprop(layer_kind):
    torch.manual_seed(0)
    if layer_kind == "linear":
        layer, ref, x_shape = fabook.Linear(5, 4, dtype=DT, rule="fa"), nn.Linear(5, 4, dtype=DT), (3, 5)
    else:
        layer = fabook.Conv2d(3, 4, 3, stride=2, padding=1, dtype=DT, rule="fa")
        ref, x_shape = nn.Conv2d(3, 4, 3, stride=2, padding=1, dtype=DT), (2, 3, 7, 7)
    ref.load_state_dict(layer.state_dict(), strict=False)
    with torch.no_grad():
        layer.feedback.copy_(layer.weight)
    x = torch.randn(x_shape, dtype=DT)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    g = torch.randn_like(ref(x))
    layer(xa).backward(g)
    ref(xb).backward(g)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.weight.grad, ref.weight.grad, rtol=1e-12, atol=1e-12)


def test_dfa_sends_output_error_through_fixed_matrices():
    torch.manual_seed(0)
    model = fabook.convert(nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double(), "dfa")
    x = torch.randn(4, 5, dtype=DT, requires_grad=True)
    out = model(x)
    (out**2).sum().backward()
    e = 2 * out.detach()
    d_top, d_bottom = model[2].direct_feedback, model[0].direct_feedback
    assert d_top.shape == (3, 7) and d_bottom.shape == (3, 5)
    torch.testing.assert_close(x.grad, e @ d_bottom)
    a1 = model[0](x).detach()
    delta1 = (e @ d_top) * (1 - torch.tanh(a1) ** 2)
    torch.testing.assert_close(model[0].weight.grad, delta1.t() @ x.detach())
    torch.testing.assert_close(model[2].weight.grad, e.t() @ torch.tanh(a1))
    with pytest.raises(TypeError, match="DFA layer has no backward weight"):
        model[0].backward_weight()


def test_dfa_conv_and_state_dict_round_trip():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 4))
    model = fabook.convert(net, "dfa")
    model(torch.randn(2, 2, 6, 6, requires_grad=True)).sum().backward()
    assert model[0].direct_feedback.shape == (4, 2, 6, 6)
    fresh = fabook.convert(net, "dfa")
    fresh.load_state_dict(model.state_dict())
    torch.testing.assert_close(fresh[0].direct_feedback, model[0].direct_feedback, rtol=0, atol=0)


def test_dfa_without_hook_says_how_to_fix():
    layer = fabook.Linear(3, 2, rule="dfa")
    with pytest.raises(RuntimeError, match="fabook.convert"):
        layer(torch.randn(2, 3, requires_grad=True)).sum().backward()
    shared = DirectFeedbackAlignment()
    model = nn.Sequential(fabook.Linear(3, 4, rule=shared), nn.ReLU(), fabook.Linear(4, 2, rule=shared))
    shared.attach(model)
    x = torch.randn(2, 3, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and model[0].direct_feedback.shape == (2, 3)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_kp_decay_shrinks_w_minus_b_by_one_minus_eta_lambda(momentum):
    torch.manual_seed(0)
    layer = fabook.Linear(6, 4, dtype=DT, rule="kp")
    eta, lam = 0.1, 0.05
    opt = torch.optim.SGD(layer.parameters(), lr=eta, weight_decay=lam, momentum=momentum)
    diff = (layer.weight - layer.feedback).detach().clone()
    for _ in range(5):
        layer(torch.randn(8, 6, dtype=DT)).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
        new = (layer.weight - layer.feedback).detach()
        if momentum == 0:
            torch.testing.assert_close(new, (1 - eta * lam) * diff, rtol=1e-12, atol=1e-14)
        diff = new.clone()
    if momentum:  # with momentum the difference still decays geometrically, but not by exactly (1 - ηλ)
        assert diff.norm() < (layer.weight.detach().norm())


def test_kp_without_decay_keeps_w_minus_b():
    torch.manual_seed(0)
    layer = fabook.Linear(6, 4, dtype=DT, rule="kp")
    opt = torch.optim.SGD(layer.parameters(), lr=0.1)
    before = (layer.weight - layer.feedback).detach().clone()
    layer(torch.randn(8, 6, dtype=DT)).sum().backward()
    opt.step()
    torch.testing.assert_close((layer.weight - layer.feedback).detach(), before, rtol=1e-12, atol=1e-14)


def test_pfa_with_k1_and_identity_b_is_kp():
    torch.manual_seed(0)
    kp = fabook.Linear(6, 4, dtype=DT, rule="kp")
    pfa = fabook.Linear(6, 4, dtype=DT, rule="pfa", k=1)
    with torch.no_grad():
        pfa.weight.copy_(kp.weight)
        pfa.bias.copy_(kp.bias)
        pfa.feedback_b.copy_(torch.eye(4, dtype=DT))
        pfa.feedback_r.copy_(kp.feedback)
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, weight_decay=0.01, momentum=0.9) for m in (kp, pfa)]
    for _ in range(4):
        x = torch.randn(5, 6, dtype=DT)
        grads = []
        for m, opt in zip((kp, pfa), opts, strict=True):
            xi = x.clone().requires_grad_(True)
            torch.tanh(m(xi)).sum().backward()
            opt.step()
            opt.zero_grad()
            grads.append(xi.grad)
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pfa.feedback_r, kp.feedback, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(pfa.weight, kp.weight, rtol=1e-12, atol=1e-12)


def test_pfa_shapes_and_b_is_near_orthonormal():
    torch.manual_seed(0)
    layer = fabook.Linear(30, 20, rule="pfa")
    assert layer.feedback_b.shape == (20, 200) and layer.feedback_r.shape == (200, 30)
    bbt = layer.feedback_b @ layer.feedback_b.t()
    assert (bbt.diagonal() - 1).abs().mean() < 0.15
    ortho = fabook.Linear(30, 20, rule="pfa-o")
    torch.testing.assert_close(ortho.feedback_b @ ortho.feedback_b.t(), torch.eye(20), atol=1e-5, rtol=0)
    sparse = fabook.Linear(30, 20, rule="sparse-pfa", b_density=0.2, r_density=0.3)
    assert abs((sparse.feedback_b != 0).float().mean() - 0.2) < 0.05
    assert abs(sparse.feedback_r_mask.float().mean() - 0.3) < 0.05
    assert torch.all(sparse.feedback_r[~sparse.feedback_r_mask] == 0)
    conv = fabook.Conv2d(4, 6, 3, groups=2, rule="pfa", k=2)
    b = conv.feedback_b
    assert b.shape == (6, 12) and torch.all(b[:3, 6:] == 0) and torch.all(b[3:, :6] == 0)


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_weight_mirror_aligns_b_with_w(kind):
    torch.manual_seed(0)
    if kind == "linear":
        layer = fabook.Linear(20, 10, rule="wm", lr=0.05, warmup=0)
    else:
        layer = fabook.Conv2d(3, 6, 3, groups=3, rule="wm", lr=0.05, warmup=0)
    assert angle_deg(layer.weight, layer.backward_weight()) > 60
    layer.rule.mirror(layer, steps=400)
    assert angle_deg(layer.weight, layer.backward_weight()) < 10
    norm_ratio = layer.backward_weight().norm() / layer.weight.norm()
    assert 0.8 < norm_ratio < 1.25


def test_weight_mirror_warms_up_at_setup_and_steps_during_training_only():
    torch.manual_seed(0)
    layer = fabook.Linear(20, 10, rule="wm", warmup=200)
    assert layer.mirrored and angle_deg(layer.weight, layer.backward_weight()) < 15
    before = layer.feedback.clone()
    layer.eval()
    layer(torch.randn(4, 20))
    torch.testing.assert_close(layer.feedback, before, rtol=0, atol=0)
    layer.train()
    with torch.no_grad():
        layer(torch.randn(4, 20))
    torch.testing.assert_close(layer.feedback, before, rtol=0, atol=0)
    layer(torch.randn(4, 20))
    assert not torch.equal(layer.feedback, before)


def test_brsf_redraws_magnitudes_each_batch_and_frsf_does_not():
    torch.manual_seed(0)
    br, fr = fabook.Linear(8, 5, rule="brsf"), fabook.Linear(8, 5, rule="frsf")
    seen = {"brsf": [], "frsf": []}
    for _ in range(3):
        for layer in (br, fr):
            layer(torch.randn(2, 8, requires_grad=True)).sum().backward()
            seen[layer.rule.name].append(layer.backward_weight().clone())
    assert all(not torch.equal(a, b) for a, b in zip(seen["brsf"], seen["brsf"][1:], strict=False))
    assert all(torch.equal(a, b) for a, b in zip(seen["frsf"], seen["frsf"][1:], strict=False))
    for b, layer in ((seen["brsf"][-1], br), (seen["frsf"][-1], fr)):
        assert torch.equal(torch.sign(b), torch.sign(layer.weight.detach()))
        assert b.abs().min() > 0 and b.abs().max() <= 2.0


@pytest.mark.parametrize("kind", ["linear", "conv"])
@pytest.mark.parametrize("density", [1.0, 0.4])
def test_brsf_sends_down_the_sign_of_w_times_the_new_draw(kind, density):
    """brSF's fused redraw: ``δx = Bᵀ δy`` with ``B = sign(W) ⊙ M (⊙ mask)``, ``M`` the magnitudes drawn in
    this backward (the buffer after it), against torch's own transposed op in float64."""
    torch.manual_seed(3)
    if kind == "linear":
        layer, x = fabook.Linear(7, 5, rule="brsf", density=density), torch.randn(3, 7, dtype=DT)
    else:
        layer, x = fabook.Conv2d(3, 4, 3, rule="brsf", density=density), torch.randn(2, 3, 6, 6, dtype=DT)
    layer = layer.double()
    before = layer.feedback_magnitude.clone()
    x.requires_grad_(True)
    y = layer(x)
    g = torch.randn_like(y)
    y.backward(g)
    m = layer.feedback_magnitude
    assert not torch.equal(m, before)
    b = torch.sign(layer.weight.detach()) * m * (layer.feedback_mask if density < 1 else 1.0)
    x2 = x.detach().clone().requires_grad_(True)
    ref = F.linear(x2, b) if kind == "linear" else F.conv2d(x2, b)
    ref.backward(g)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-12, atol=1e-12)


def test_usf_is_unit_sign_and_scales():
    layer = fabook.Linear(16, 4, rule="usf", scale=1)
    torch.testing.assert_close(layer.backward_weight(), torch.sign(layer.weight.detach()))
    scaled = fabook.Linear(16, 4, rule="usf", scale="fan_in")
    torch.testing.assert_close(scaled.backward_weight().abs(), torch.full((4, 16), 0.25))
    default = fabook.Linear(16, 4, rule="usf")  # scale="weight": |B| = rms(W), so ||B|| = ||W||
    rms = default.weight.detach().double().square().mean().sqrt().item()
    torch.testing.assert_close(default.backward_weight().abs(), torch.full((4, 16), rms))


@pytest.mark.parametrize("p", [0.0, 0.25, 0.5, 0.9, 1.0])
def test_sign_concordance_fraction_is_p_within_sampling_error(p):
    torch.manual_seed(0)
    layer = fabook.Linear(100, 50, rule="sc", p=p)
    b, w = layer.backward_weight(), layer.weight.detach()
    frac = float((torch.sign(b) == torch.sign(w)).float().mean())
    n = w.numel()
    assert abs(frac - p) <= 4 * math.sqrt(p * (1 - p) / n) + 1e-12
    w2 = torch.randn_like(w)  # signs follow W as it changes; the flip mask stays
    with torch.no_grad():
        layer.weight.copy_(w2)
    frac2 = float((torch.sign(layer.backward_weight()) == torch.sign(w2)).float().mean())
    assert frac2 == pytest.approx(frac)


@pytest.mark.parametrize(
    ("name", "options", "error", "match"),
    [
        ("nope", {}, ValueError, r"unknown rule 'nope'; accepted: bp, fa, dfa"),
        (
            "dfa",
            {"p": 0.5},
            TypeError,
            r"rule 'dfa' does not take option\(s\) \['p'\]; accepted: \['density'\]",
        ),
        (
            "fa",
            {"p": 0.5},
            TypeError,
            r"rule 'fa' does not take option\(s\) \['p'\]; accepted: \['init', 'density'\]",
        ),
        ("sc", {"q": 1}, TypeError, r"accepted: \['p', 'scale', 'density'\]"),
        ("sc", {"p": 1.5}, ValueError, r"p=1.5 is outside \[0, 1\]"),
        ("sc", {"p": -0.1}, ValueError, r"p=-0.1"),
        ("pfa", {"k": 0}, ValueError, r"k=0: the expansion ratio must be an integer >= 1"),
        ("pfa", {"k": 2.5}, ValueError, r"k=2.5"),
        ("sparse-pfa", {"b_density": 0.0}, ValueError, r"b_density=0.0 is outside \(0, 1\]"),
        ("usf", {"scale": -1}, ValueError, r"scale=-1: accepted: 'weight', 'fan_in' or a positive"),
        ("wm", {"probes": 0}, ValueError, r"probes=0"),
    ],
)
def test_bad_rule_input_is_named(name, options, error, match):
    with pytest.raises(error, match=match):
        fabook.get_rule(name, **options)
    with pytest.raises(error, match=match):
        fabook.Linear(3, 2, rule=name, **options)


def test_rule_object_is_accepted_and_options_with_it_rejected():
    rule = fabook.get_rule("sc", p=0.5)
    assert fabook.get_rule(rule) is rule
    with pytest.raises(TypeError, match="ready rule object"):
        fabook.get_rule(rule, p=0.2)
    assert repr(rule) == "sc(p=0.5, scale='weight', density=1.0)"
    assert fabook.RULES == (
        "bp", "fa", "dfa", "usf", "brsf", "frsf", "sc", "wm", "kp", "pfa", "pfa-o", "sparse-pfa"
    )  # fmt: skip


def test_feedback_lives_in_state_dict_and_learned_feedback_in_parameters():
    fa = fabook.Linear(4, 3, rule="fa")
    assert "feedback" in fa.state_dict() and len(list(fa.parameters())) == 2
    kp = fabook.Linear(4, 3, rule="kp")
    assert any(p is kp.feedback for p in kp.parameters())
    pfa = fabook.Conv2d(2, 3, 3, rule="pfa")
    assert any(p is pfa.feedback_r for p in pfa.parameters())
    assert {"feedback_b", "feedback_r"} <= set(pfa.state_dict())
    fresh = fabook.Conv2d(2, 3, 3, rule="pfa")
    fresh.load_state_dict(pfa.state_dict())
    torch.testing.assert_close(fresh.backward_weight(), pfa.backward_weight(), rtol=0, atol=0)


def test_layers_move_with_dtype():
    layer = fabook.Conv2d(2, 3, 3, rule="sc", p=0.5).double()
    x = torch.randn(1, 2, 5, 5, dtype=DT, requires_grad=True)
    layer(x).sum().backward()
    assert x.grad.dtype == DT and layer.feedback_flip.dtype == DT
    assert F.conv2d(x, layer.weight).dtype == DT


@pytest.mark.parametrize("shape", [(7, 3), (1000,), (2, 3, 5, 5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_uniform_levels_are_iid_uniform_on_the_grid(shape, dtype):
    from fabook.magnitudes import uniform_levels

    torch.manual_seed(0)
    high = 0.3
    draws = torch.stack([uniform_levels(torch.empty(shape, dtype=dtype), high) for _ in range(400)])
    k = draws.double() / (high / 2**16) - 0.5
    atol = 0.02 if dtype == torch.float32 else 1e-6  # float32 holds k + ½ ≤ 2¹⁶ to about 0.004
    torch.testing.assert_close(k, k.round(), rtol=0, atol=atol)  # on the levels (k + ½)·high/2¹⁶
    assert k.round().min() >= 0 and k.round().max() <= 2**16 - 1
    n = draws.numel()
    assert abs(draws.double().mean().item() - high / 2) < 5 * high / math.sqrt(12 * n)
    counts = torch.histc(draws.double(), bins=8, min=0.0, max=high)  # equal bins: a χ² test, 7 dof
    chi2 = ((counts - n / 8) ** 2 / (n / 8)).sum().item()
    assert chi2 < 24.3  # p = 0.001
    flat = draws.reshape(400, -1).double()
    if flat.shape[1] > 1:  # neighbouring elements and successive draws uncorrelated
        for a, b in ((flat[:, :-1], flat[:, 1:]), (flat[:-1], flat[1:])):
            r = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()
            assert abs(r) < 5 / math.sqrt(a.numel())
    torch.manual_seed(0)
    torch.testing.assert_close(
        uniform_levels(torch.empty(shape, dtype=dtype), high), draws[0], rtol=0, atol=0
    )


def _splitmix64(key: int, n: int) -> list[int]:
    """SplitMix64's first ``n`` outputs from the state ``key``, in Python integers (Vigna's splitmix64.c)."""
    mask, out = 2**64 - 1, []
    for _ in range(n):
        key = (key + 0x9E3779B97F4A7C15) & mask
        z = ((key ^ (key >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        out.append(z ^ (z >> 31))
    return out


def test_magnitude_words_are_splitmix64_of_a_counter():
    from fabook.magnitudes import words

    assert _splitmix64(1234567, 1) == [6457827717110365317]  # splitmix64.c's first output for 1234567
    for key in (0, 1234567, 2**63 - 2):
        got = [w % 2**64 for w in words(key, 9).tolist()]
        assert got == _splitmix64(key, 9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 6, 8, 4097, 100_003])
def test_uniform_levels_cpu_kernel_equals_the_torch_route_and_the_definition(n, dtype):
    """The CPU kernel's levels and ``sign(W) ⊙ M`` equal, bit for bit, the torch route's (other devices) and
    ``torch.sign(W) * M`` (zeros of both signs and NaN in ``W``); both are ``(k + ½)·high/2¹⁶`` rounded once,
    ``k`` the 16-bit fields of the SplitMix64 words keyed by one draw of torch's generator, whatever the
    thread count and the memory layout."""
    import numpy as np

    from fabook import magnitudes

    high, w = 0.37, torch.randn(n, dtype=dtype)
    w[::5], w[1::7], w[2::11] = 0.0, -0.0, float("nan")
    torch.manual_seed(n)
    key = magnitudes.draw_key()
    fields = np.array(_splitmix64(key, (n + 3) // 4), dtype=np.uint64).view(np.uint16)[:n]
    expected = torch.from_numpy((fields.astype(np.float64) + 0.5) * (high / 2**16)).to(dtype)
    torch.manual_seed(n)
    via_torch = torch.empty(n, dtype=dtype)
    magnitudes._levels_torch(magnitudes.draw_key(), via_torch, high)
    assert torch.equal(via_torch, expected)
    threads = torch.get_num_threads()
    for t in (1, threads):
        torch.set_num_threads(t)
        torch.manual_seed(n)
        m = torch.empty(n, dtype=dtype)
        signed = magnitudes.uniform_levels(m, high, sign_of=w)
        assert torch.equal(m, expected)
        assert torch.equal(signed.view(torch.uint8), (torch.sign(w) * expected).view(torch.uint8))  # ±0 too
    torch.set_num_threads(threads)
    if n % 2 == 0:  # a non-contiguous out gets the same numbers in row-major order
        torch.manual_seed(n)
        strided = torch.empty(2, n // 2, dtype=dtype).t()
        magnitudes.uniform_levels(strided, high)
        assert torch.equal(strided.reshape(-1), expected)


def test_uniform_levels_on_a_large_draw_are_uniform_and_independent():
    from fabook.magnitudes import uniform_levels

    torch.manual_seed(1)
    high, shape = 2.0, (32_769,)
    draws = torch.stack([uniform_levels(torch.empty(shape), high) for _ in range(40)]).double()
    k = (draws / (high / 2**16) - 0.5).round()
    assert k.min() >= 0 and k.max() <= 2**16 - 1
    counts = torch.histc(draws, bins=16, min=0.0, max=high)
    n = draws.numel()
    assert ((counts - n / 16) ** 2 / (n / 16)).sum().item() < 39.3  # χ², 15 dof, p = 0.001
    low_bits = torch.bincount(k.long().flatten() % 16, minlength=16).double()  # the fields' low bits too
    assert ((low_bits - n / 16) ** 2 / (n / 16)).sum().item() < 39.3
    for a, b in ((draws[:, :-1], draws[:, 1:]), (draws[:-1], draws[1:]), (draws[:, :-4], draws[:, 4:])):
        r = torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()  # in a word, successive
        assert abs(r) < 5 / math.sqrt(a.numel())  # draws, the same field of neighbouring words


@pytest.mark.parametrize("kind", ["linear", "conv"])
def test_sign_concordance_feedback_is_exactly_sign_w_times_s_times_m_through_edits(kind):
    """``B = sign(W) ⊙ S ⊙ M`` bit for bit while W changes every step and after M, S or the dtype change (the
    layer keeps ``S ⊙ M`` between steps)."""
    torch.manual_seed(0)
    layer = (
        fabook.Linear(6, 5, rule="sc", p=0.6)
        if kind == "linear"
        else fabook.Conv2d(3, 4, 3, rule="sc", p=0.6)
    )

    def check() -> None:
        expected = torch.sign(layer.weight.detach()) * layer.feedback_magnitude * layer.feedback_flip
        assert torch.equal(layer.backward_weight(), expected)

    check()
    with torch.no_grad():
        layer.weight.mul_(-1.5)
    check()
    layer.feedback_magnitude.mul_(2.0)
    check()
    layer.feedback_flip.neg_()
    check()
    layer.load_state_dict({**layer.state_dict(), "feedback_magnitude": torch.rand_like(layer.weight)})
    check()
    layer.double()
    check()
