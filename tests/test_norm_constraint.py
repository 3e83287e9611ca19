"""The norm constraint (Moskovitz et al. 2018): W rescaled to its initial norm after every optimizer step."""

import pickle

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fabook
from fabook import norm_constraint
from fabook.train import Config, train


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 8), nn.ReLU(),
        nn.Linear(8, 3),
    ).double()  # fmt: skip


def _batches(steps: int):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(steps, 16, 2, 5, 5, generator=g, dtype=torch.float64)
    return list(zip(x, torch.randint(0, 3, (steps, 16), generator=g), strict=True))


def _step(model, opt, x, y):
    opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    opt.step()


@pytest.mark.parametrize("rule", ["bp", "usf", "fa"])
def test_hold_norms_matches_a_hand_written_rescale_loop(rule):
    net, batches = _net(), _batches(40)
    ours = fabook.convert(net, rule, constrain_norm=True)
    hand = fabook.convert(net, rule)  # same weights and (same seed) the same feedback
    hand.load_state_dict({k: v for k, v in ours.state_dict().items() if not k.endswith("weight_norm")})
    opt = torch.optim.SGD(ours.parameters(), lr=0.2, momentum=0.9, weight_decay=1e-3)
    norm_constraint.hold_norms(opt, ours)
    hand_opt = torch.optim.SGD(hand.parameters(), lr=0.2, momentum=0.9, weight_decay=1e-3)
    weights = [m.weight for m in hand.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    n0 = [w.detach().norm().item() for w in weights]
    for x, y in batches:
        _step(ours, opt, x, y)
        _step(hand, hand_opt, x, y)
        with torch.no_grad():
            for w, n in zip(weights, n0, strict=True):
                w.mul_(n / w.norm())
    for (_, layer), w, n in zip(fabook.rule_layers(ours), weights, n0, strict=True):
        assert layer.weight.norm().item() == pytest.approx(n, rel=1e-12)
        torch.testing.assert_close(layer.weight, w, rtol=1e-10, atol=1e-12)
    # the unconstrained run does drift: the test can fail
    free = fabook.convert(net, rule)
    free_opt = torch.optim.SGD(free.parameters(), lr=0.2, momentum=0.9, weight_decay=1e-3)
    for x, y in batches:
        _step(free, free_opt, x, y)
    drift = [
        abs(layer.weight.norm().item() / n - 1)
        for (_, layer), n in zip(fabook.rule_layers(free), n0, strict=True)
    ]
    assert max(drift) > 0.01


def test_constrained_layers_keep_the_weight_parameter_and_the_norm_in_the_state_dict():
    model = fabook.convert(_net(), "usf", constrain_norm=True)
    assert not any("parametrizations" in k for k in model.state_dict())
    assert sum(k.endswith(norm_constraint.BUFFER) for k in model.state_dict()) == 3
    assert [n for n, _ in norm_constraint.constrained(model)] == ["0", "3", "5"]
    assert not norm_constraint.constrained(fabook.convert(_net(), "usf"))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    norm_constraint.hold_norms(opt, model)
    pickle.dumps(opt.state_dict())
    pickle.dumps(model)


def test_hold_norms_refuses_an_unconstrained_model():
    model = fabook.convert(_net(), "fa")
    with pytest.raises(ValueError, match="constrain_norm=True"):
        norm_constraint.hold_norms(torch.optim.SGD(model.parameters(), lr=0.1), model)


def _kp_difference(model) -> list[float]:
    return [(layer.weight - layer.feedback).norm().item() for _, layer in fabook.rule_layers(model)]


@pytest.mark.parametrize("rule", ["kp", "pfa", "pfa-o", "sparse-pfa"])
def test_under_the_constraint_the_feedback_moves_by_its_own_sgd_step_and_nothing_else(rule):
    """No transport: the rescale changes W alone; B (KP) or R (PFA) take exactly their own SGD step."""
    lr, decay = 0.1, 0.05
    options = {"k": 2} if rule == "pfa" else {}
    model = fabook.convert(_net(), rule, constrain_norm=True, **options)
    opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=decay)
    norm_constraint.hold_norms(opt, model)
    name = "feedback" if rule == "kp" else "feedback_r"
    for x, y in _batches(5):
        before = {n: getattr(layer, name).detach().clone() for n, layer in fabook.rule_layers(model)}
        weights = {n: layer.weight.detach().clone() for n, layer in fabook.rule_layers(model)}
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        grads = {n: getattr(layer, name).grad.clone() for n, layer in fabook.rule_layers(model)}
        wgrads = {n: layer.weight.grad.clone() for n, layer in fabook.rule_layers(model)}
        opt.step()
        for n, layer in fabook.rule_layers(model):
            own_step = before[n] - lr * (grads[n] + decay * before[n])  # by hand, float64
            torch.testing.assert_close(getattr(layer, name).detach(), own_step, rtol=1e-12, atol=1e-14)
            w = weights[n] - lr * (wgrads[n] + decay * weights[n])
            w = w * (layer.weight_norm / w.norm())
            torch.testing.assert_close(layer.weight.detach(), w, rtol=1e-12, atol=1e-14)


def test_kp_under_the_constraint_no_longer_contracts_w_minus_b_at_the_unconstrained_rate():
    """What dropping the transported correction costs, measured: the rate is no longer (1 − ηλ) per step."""
    lr, decay, steps = 0.1, 0.05, 60
    model = fabook.convert(_net(), "kp", constrain_norm=True)
    opt = torch.optim.SGD(model.parameters(), lr=lr, weight_decay=decay)
    norm_constraint.hold_norms(opt, model)
    start = _kp_difference(model)
    for x, y in _batches(steps):
        _step(model, opt, x, y)
    ratios = [e / s0 for e, s0 in zip(_kp_difference(model), start, strict=True)]
    assert min(ratios) > 1.1 * (1 - lr * decay) ** steps


def _kp_contractions(make_opt, steps: int = 30) -> torch.Tensor:
    """Per step, ||W − B|| after / before, summed over the layers (no norm constraint)."""
    model = fabook.convert(_net(), "kp")
    opt = make_opt(model.parameters())
    ratios, prev = [], sum(_kp_difference(model))
    for x, y in _batches(steps):
        _step(model, opt, x, y)
        now = sum(_kp_difference(model))
        ratios.append(now / prev)
        prev = now
    return torch.tensor(ratios, dtype=torch.float64)


def test_kp_contraction_per_step_with_each_optimizer():
    lr, decay = 0.05, 0.02
    exact = 1 - lr * decay
    sgd = _kp_contractions(lambda p: torch.optim.SGD(p, lr=lr, weight_decay=decay))
    torch.testing.assert_close(sgd, torch.full_like(sgd, exact), rtol=1e-9, atol=0)
    adamw = _kp_contractions(lambda p: torch.optim.AdamW(p, lr=lr, weight_decay=decay))
    torch.testing.assert_close(adamw, torch.full_like(adamw, exact), rtol=1e-9, atol=0)
    bm = _kp_contractions(lambda p: fabook.optim.BatchManhattan(p, lr=lr, weight_decay=decay))
    torch.testing.assert_close(bm, torch.full_like(bm, exact), rtol=1e-9, atol=0)
    # momentum: (1 - ηλ) on the first step, then faster, towards 1 - ηλ/(1 - μ)
    mom = _kp_contractions(lambda p: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=decay))
    assert mom[0].item() == pytest.approx(exact, rel=1e-9)
    assert (mom[1:].diff() < 0).all() and mom[-1] < 1 - 5 * lr * decay
    # Adam with L2 decay: no fixed rate
    adam = _kp_contractions(lambda p: torch.optim.Adam(p, lr=lr, weight_decay=decay))
    assert adam.std() > 1e-3


def test_the_engine_holds_the_norm(monkeypatch):
    import fabook.train as engine

    seen, evaluate = [], engine.evaluate

    def checked(model, batches, **options):  # after every epoch's last step, before the test pass
        layers = norm_constraint.constrained(model)
        seen.append(
            max(abs(layer.weight.norm().item() / layer.weight_norm.item() - 1) for _, layer in layers)
        )
        return evaluate(model, batches, **options)

    monkeypatch.setattr(engine, "evaluate", checked)
    cfg = Config(dataset="iris", model="mlp", width=8, rule="kp", constrain_norm=True, epochs=2,
                 weight_decay=1e-2, lr=0.05, metrics_every=0)  # fmt: skip
    result = train(cfg, progress=False)
    assert not result.diverged and result.epochs_run == 2
    assert len(seen) == 2 and max(seen) < 1e-6
