"""Rule layers at the edges: mixed precision, pickling, torch.func, deep-net defaults, feedback init, KP with
other optimizers, WM's floor and timing, and the validation of every option."""

import copy
import io
import math
import pickle

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.func import functional_call, grad, vmap

import fabook
from fabook.metrics import angle_deg, gradient_alignment, weight_alignment
from fabook.optim import BatchManhattan

RULES = [r for r in fabook.RULES if r != "bp"]
CUDA = torch.cuda.is_available()


def _mlp() -> nn.Module:  # smooth activations: bf16 rounding flips no ReLU gate
    return nn.Sequential(nn.Linear(12, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 5))


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.Tanh(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 5),
    )  # fmt: skip


MODELS = {"mlp": (_mlp, (8, 12)), "cnn": (_cnn, (8, 3, 8, 8))}


def _grads(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int = 0, **autocast
) -> list[torch.Tensor]:
    """Gradients of every parameter (and of the input) for one batch; the rule's randomness from ``seed``."""
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    torch.manual_seed(seed)
    with torch.autocast(**autocast) if autocast else torch.autocast("cpu", enabled=False):
        loss = F.cross_entropy(model(x), y)
    loss.backward()
    return [x.grad] + [p.grad for p in model.parameters()]


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


# ---------------------------------------------------------------- mixed precision


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("rule", RULES)
def test_autocast_cpu_bfloat16_matches_float32(rule, kind):
    make, shape = MODELS[kind]
    torch.manual_seed(0)
    model = fabook.convert(make(), rule)
    x, y = torch.randn(shape), torch.randint(0, 5, (shape[0],))
    ref_model = copy.deepcopy(model)  # WM mirrors in the forward: both runs start from the same state
    ref = _grads(ref_model, x, y)
    amp = _grads(model, x, y, device_type="cpu", dtype=torch.bfloat16)
    for a, r in zip(amp, ref, strict=True):
        assert a.dtype == r.dtype == torch.float32
        assert _rel_err(a, r) < 0.05  # bf16 keeps 8 significant bits; plain nn: <1e-2
    for name, buf in model.named_buffers():
        assert buf.dtype in (torch.float32, torch.bool), name  # the feedback stays in the layer's dtype


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("rule", RULES)
def test_autocast_cuda_with_grad_scaler_matches_float32(rule, dtype):
    torch.manual_seed(0)
    model = fabook.convert(_cnn(), rule).cuda()
    x, y = torch.randn(8, 3, 8, 8, device="cuda"), torch.randint(0, 5, (8,), device="cuda")
    ref = _grads(copy.deepcopy(model), x, y)
    scaler = torch.amp.GradScaler("cuda")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    torch.manual_seed(0)
    with torch.autocast("cuda", dtype=dtype):
        loss = F.cross_entropy(model(x), y)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    for p, r in zip(model.parameters(), ref[1:], strict=True):
        assert p.grad.dtype == torch.float32 and _rel_err(p.grad, r) < 0.05
    scaler.step(opt)
    scaler.update()
    assert all(torch.isfinite(p).all() for p in model.parameters())


# ---------------------------------------------------------------- pickling


@pytest.mark.parametrize("rule", RULES)
def test_every_converted_model_pickles_and_saves(rule):
    torch.manual_seed(0)
    model = fabook.convert(_cnn(), rule)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4,))
    _grads(model, x, y)  # DFA now holds an output error; it does not travel
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    for copy_ in (pickle.loads(pickle.dumps(model)), torch.load(buf, weights_only=False)):
        for a, b in zip(_grads(copy_, x, y), _grads(copy.deepcopy(model), x, y), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


# ---------------------------------------------------------------- torch.func


@pytest.mark.parametrize("rule", ["fa", "usf", "frsf", "kp", "pfa"])
def test_functional_call_uses_the_substituted_tensors(rule):
    torch.manual_seed(0)
    layer = fabook.Linear(3, 3, rule=rule, dtype=torch.float64)
    subs = {name: torch.randn_like(t) for name, t in layer.named_parameters()}
    subs.update({name: torch.randn_like(t) for name, t in layer.named_buffers()})
    twin = fabook.Linear(3, 3, rule=rule, dtype=torch.float64)
    twin.load_state_dict(subs)
    x = torch.randn(4, 3, dtype=torch.float64)
    g = torch.randn(4, 3, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    functional_call(layer, subs, (xa,)).backward(g)
    twin(xb).backward(g)  # a layer that holds the substituted tensors
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(xa.grad, g @ twin.backward_weight(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("rule", [r for r in RULES if r != "wm"])
def test_torch_func_grad_equals_backward(rule, kind):
    make, shape = MODELS[kind]
    torch.manual_seed(0)
    model = fabook.convert(make(), rule)
    x, y = torch.randn(shape), torch.randint(0, 5, (shape[0],))
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())

    def loss(p: dict) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, {**p, **buffers}, (x,)), y)

    torch.manual_seed(0)
    got = grad(loss)(params)
    ref = _grads(model, x, y)[1:]
    for (name, g), r in zip(got.items(), ref, strict=True):
        # the same function bit for bit; except ∂R = Bᵀ ∂W, whose tensordot torch.func decomposes its own way
        tol = dict(rtol=1e-5, atol=1e-7) if name.endswith("feedback_r") else dict(rtol=0, atol=0)
        torch.testing.assert_close(g, r, **tol, msg=name)


def test_weight_mirror_under_torch_func_says_what_to_do_and_eval_mode_works():
    torch.manual_seed(0)
    model = fabook.convert(_mlp(), "wm")
    x, y = torch.randn(8, 12), torch.randint(0, 5, (8,))
    params, buffers = dict(model.named_parameters()), dict(model.named_buffers())

    def loss(p: dict) -> torch.Tensor:
        return F.cross_entropy(functional_call(model, {**p, **buffers}, (x,)), y)

    with pytest.raises(RuntimeError, match="put the model in eval mode"):
        grad(loss)(params)
    model.eval()
    got = grad(loss)(params)
    for g, r in zip(got.values(), _grads(model, x, y)[1:], strict=True):
        torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-7)


def test_vmap_is_refused_with_a_reason():
    layer = fabook.Linear(4, 3, rule="fa")
    with pytest.raises(NotImplementedError, match="do not support torch.func.vmap"):
        vmap(grad(lambda x: layer(x).sum()))(torch.randn(5, 4))


# ---------------------------------------------------------------- deep nets


@pytest.fixture(scope="module")
def resnet():
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=10)


def _resnet_step(model: nn.Module) -> tuple[float, bool]:
    """(‖weight gradients‖, outputs finite after one SGD step at lr 0.1)."""
    torch.manual_seed(1)
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    F.cross_entropy(model(x), y).backward()
    norm = math.sqrt(
        sum(float(layer.weight.grad.double().square().sum()) for _, layer in fabook.rule_layers(model))
    )
    opt.step()
    with torch.no_grad():
        finite = bool(torch.isfinite(model(x)).all())
    return norm, finite


def test_sign_rule_defaults_train_resnet18_and_the_papers_scale_needs_bm(resnet):
    bp, _ = _resnet_step(fabook.convert(resnet, "bp"))
    for rule in ("usf", "brsf", "frsf", "sc"):
        norm, finite = _resnet_step(fabook.convert(resnet, rule))
        assert finite and 0.05 < norm / bp < 20, rule
    norm, finite = _resnet_step(fabook.convert(resnet, "usf", scale=1))  # the paper's |B| = 1
    assert norm / bp > 1e10 and not finite
    model = fabook.convert(resnet, "usf", scale=1)  # ... which Batch Manhattan steps through
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 10, (2,))
    opt = BatchManhattan(model.parameters(), lr=0.01)
    F.cross_entropy(model(x), y).backward()
    opt.step()
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()


@pytest.mark.parametrize("rule", ["fa", "dfa", "kp", "pfa-o"])
def test_other_rules_step_resnet18_without_overflow(resnet, rule):
    _, finite = _resnet_step(fabook.convert(resnet, rule))
    assert finite


@pytest.mark.parametrize(
    ("rule", "options"), [("fa", {}), ("kp", {}), ("wm", {"warmup": 0}), ("pfa", {"k": 2})]
)
def test_feedback_has_the_size_of_the_layers_actual_weight(resnet, rule, options):
    ratios = weight_alignment(fabook.convert(resnet, rule, **options)).norm_ratio
    assert ratios.between(0.9, 1.1).all(), ratios.describe()
    old = weight_alignment(fabook.convert(resnet, rule, init="fan_in", **options)).norm_ratio
    assert old.min() < 0.5 and old.max() > 1.5  # torch's default bound: 0.41 for most convs, 1.9 for the stem


@pytest.mark.parametrize("rule", RULES)
def test_layers_can_be_made_on_the_meta_device(rule):
    layer = fabook.Linear(5, 3, rule=rule, device="meta")
    assert layer.weight.is_meta


def test_init_fan_in_is_torchs_default_bound_and_zero_weight_falls_back():
    layer = fabook.Linear(100, 50, rule="fa", init="fan_in")
    assert layer.feedback.abs().max() <= 0.1 and layer.feedback.abs().max() > 0.09
    zero = nn.Linear(100, 50)
    nn.init.zeros_(zero.weight)
    b = fabook.convert(zero, "fa").feedback
    assert b.abs().max() <= 0.1 and b.abs().max() > 0.09


# ---------------------------------------------------------------- KP with other optimizers

ETA, LAM, STEPS = 0.05, 0.1, 20


def _kp_shrink(make_opt) -> list[float]:
    torch.manual_seed(0)
    model = fabook.convert(nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3)), "kp")
    opt = make_opt(model.parameters())
    layer = model[2]
    d0 = (layer.weight - layer.feedback).detach()
    x, y = torch.randn(32, 10), torch.randint(0, 3, (32,))
    out = []
    for _ in range(STEPS):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        d = (layer.weight - layer.feedback).detach()
        out.append(float(d.norm() / d0.norm()))
    torch.testing.assert_close(d / d.norm(), d0 / d0.norm())  # D keeps its direction in all linear cases
    return out


def _heavy_ball(momentum: float) -> list[float]:
    v, d, out = 0.0, 1.0, []
    for _ in range(STEPS):
        v = momentum * v + LAM * d
        d -= ETA * v
        out.append(d)
    return out


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("sgd", lambda p: torch.optim.SGD(p, lr=ETA, weight_decay=LAM), _heavy_ball(0.0)),
        ("adamw", lambda p: torch.optim.AdamW(p, lr=ETA, weight_decay=LAM), _heavy_ball(0.0)),
        ("bm", lambda p: BatchManhattan(p, lr=ETA, weight_decay=LAM), _heavy_ball(0.0)),
        (
            "sgd-momentum",
            lambda p: torch.optim.SGD(p, lr=ETA, momentum=0.9, weight_decay=LAM),
            _heavy_ball(0.9),
        ),
        (
            "bm-momentum",
            lambda p: BatchManhattan(p, lr=ETA, momentum=0.9, weight_decay=LAM),
            _heavy_ball(0.9),
        ),
    ],
)
def test_kp_difference_follows_the_documented_recursion(name, make, expected):
    assert _kp_shrink(make) == pytest.approx(expected, rel=1e-4)
    plain = [(1 - ETA * LAM) ** (t + 1) for t in range(STEPS)]  # (1 − ηλ) per step, 0.905 after 20
    assert (expected == pytest.approx(plain, rel=1e-9)) == (not name.endswith("momentum"))


def test_kp_with_coupled_adam_has_no_fixed_contraction():
    torch.manual_seed(0)
    model = fabook.convert(nn.Sequential(nn.Linear(10, 16), nn.Tanh(), nn.Linear(16, 3)), "kp")
    opt = torch.optim.Adam(model.parameters(), lr=ETA, weight_decay=LAM)
    layer = model[2]
    d0 = (layer.weight - layer.feedback).detach()
    x, y = torch.randn(32, 10), torch.randint(0, 3, (32,))
    for _ in range(STEPS):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    per_entry = ((layer.weight - layer.feedback).detach() / d0).flatten()
    assert abs(float(per_entry.median()) - (1 - ETA * LAM) ** STEPS) > 0.1  # documented: 0.363 vs 0.905
    assert float(per_entry.max() - per_entry.min()) > 0.1  # uneven across entries


# ---------------------------------------------------------------- WM and brSF


def test_gradient_alignment_with_wm_and_dropout_reads_zero_when_b_is_w():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, 32), nn.ReLU(),
                        nn.Dropout(0.5), nn.Linear(32, 5))  # fmt: skip
    model = fabook.convert(net, "wm", lr=1e-9)  # B barely moves from W in the forward's mirror step
    for _, layer in fabook.rule_layers(model):
        layer.feedback.copy_(layer.weight.detach())
    x, y = torch.randn(16, 12), torch.randint(0, 5, (16,))
    angles = gradient_alignment(model, x, y).angle_deg
    assert angles.max() < 1e-3, angles.tolist()


@pytest.mark.parametrize("fan_in", [50, 784])
def test_weight_mirror_noise_floor_is_documented(fan_in):
    torch.manual_seed(0)
    layer = fabook.Linear(fan_in, 40, rule="wm")
    floor = layer.rule.noise_floor_deg(layer)
    assert floor == pytest.approx({50: 5.06, 784: 19.3}[fan_in], abs=0.1)
    layer.rule.mirror(layer, steps=500)
    angles = []
    for _ in range(200):
        layer.rule.mirror(layer)
        angles.append(angle_deg(layer.weight, layer.feedback))
    assert sum(angles) / len(angles) == pytest.approx(floor, rel=0.15)


def test_weight_alignment_of_a_fresh_wm_model_reports_the_mirrored_b():
    torch.manual_seed(0)
    table = weight_alignment(fabook.convert(_mlp(), "wm"))
    assert (table.angle_deg < 25).all(), table  # not the ~90° of an un-mirrored random B


def test_weight_mirror_steps_once_per_use():
    torch.manual_seed(0)
    layer = fabook.Linear(6, 6, rule="wm")
    twin = copy.deepcopy(layer)
    x = torch.randn(3, 6)
    torch.manual_seed(5)
    layer(layer(x))  # two uses in one forward: two mirror steps
    torch.manual_seed(5)
    twin.rule.mirror(twin, steps=2)
    torch.testing.assert_close(layer.feedback, twin.feedback, rtol=0, atol=0)


def test_brsf_draws_once_per_use():
    torch.manual_seed(0)
    layer = fabook.Linear(5, 5, rule="brsf", dtype=torch.float64)
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    g = torch.randn(3, 5, dtype=torch.float64)
    torch.manual_seed(7)
    layer(layer(x)).backward(g)
    torch.manual_seed(7)  # the outer use's backward draws first, then the inner one's
    m_outer, m_inner = (layer.rule._draw_magnitude(layer) for _ in range(2))
    sign = torch.sign(layer.weight.detach())
    torch.testing.assert_close(x.grad, g @ (sign * m_outer) @ (sign * m_inner), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(layer.feedback_magnitude, m_inner, rtol=0, atol=0)


def test_linear_noise_response_estimates_w():
    torch.manual_seed(0)
    layer = fabook.Linear(8, 4, rule="wm")
    est = layer.noise_response(200_000)
    assert est.shape == layer.weight.shape
    torch.testing.assert_close(est, layer.weight.detach(), rtol=0, atol=0.02)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("name", "options", "error", "match"),
    [
        ("sc", {"p": "0.5"}, TypeError, r"p='0.5' is not a number; accepted: a number in \[0, 1\]"),
        ("sc", {"p": True}, TypeError, r"p=True is not a number"),
        ("sc", {"p": math.nan}, TypeError, r"p=nan is not a number"),
        ("wm", {"probes": "8"}, ValueError, r"probes='8': accepted is an integer >= 1"),
        ("wm", {"probes": 2.7}, ValueError, r"probes=2.7: accepted is an integer >= 1"),
        ("wm", {"warmup": -1}, ValueError, r"warmup=-1: accepted is an integer >= 0"),
        ("wm", {"lr": "0.1"}, TypeError, r"lr='0.1' is not a number"),
        (
            "usf",
            {"scale": True},
            ValueError,
            r"scale=True: accepted: 'weight', 'fan_in' or a positive finite number",
        ),
        ("usf", {"scale": math.inf}, ValueError, r"scale=inf: accepted"),
        ("brsf", {"scale": "1"}, ValueError, r"scale='1': accepted"),
        (
            "pfa-o",
            {"orthogonal": False},
            TypeError,
            r"rule 'pfa-o' does not take option\(s\) \['orthogonal'\]",
        ),
        ("pfa-o", {"k": 3}, TypeError, r"does not take option\(s\) \['k'\]; accepted: \['init'\]"),
        ("pfa", {"k": True}, ValueError, r"k=True: the expansion ratio must be an integer >= 1"),
        ("pfa", {"orthogonal": "yes"}, TypeError, r"orthogonal='yes': accepted: True or False"),
        ("fa", {"init": "xavier"}, ValueError, r"init='xavier': accepted: 'weight', 'fan_in'"),
    ],
)
def test_every_bad_option_gets_a_clear_error(name, options, error, match):
    with pytest.raises(error, match=match):
        fabook.get_rule(name, **options)


@pytest.mark.parametrize("value", ["0.1", True, -1.0, math.inf])
def test_batch_manhattan_rejects_bad_numbers(value):
    with pytest.raises(ValueError, match="accepted is a finite number >= 0"):
        BatchManhattan([nn.Parameter(torch.zeros(2))], lr=value)


def test_convert_names_a_non_module_and_keep_bp_takes_one_string():
    with pytest.raises(TypeError, match=r"model='model' is a str; accepted: a torch.nn.Module"):
        fabook.convert("model", "fa")
    net = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    model = fabook.convert(net, "fa", keep_bp="last")
    assert type(model[2]) is nn.Linear and isinstance(model[0], fabook.Linear)
    with pytest.raises(ValueError, match=r"keep_bp: no layer named '02'"):
        fabook.convert(net, "fa", keep_bp="02")
