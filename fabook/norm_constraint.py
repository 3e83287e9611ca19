"""Moskovitz, Litwin-Kumar & Abbott's (2018) norm constraint: each layer's ``W`` rescaled to its initial norm
after every optimizer step.

:func:`fabook.convert` with ``constrain_norm=True`` records each converted layer's norm ``n₀`` (buffer
``weight_norm``, saved in ``state_dict``; :func:`record_norms`). After each ``optimizer.step()``,
:func:`rescale` sets ``W ← c·W`` with ``c = n₀/‖W‖``; :func:`hold_norms` registers it as a step post-hook
on an optimizer, which is what the training engine does for ``Config(constrain_norm=True)``. In a loop
of your own call one or the other — recording the norms alone constrains nothing.

The rule is the paper's: the optimizer steps on ``W`` itself, with the gradient at the rescaled ``W``, and
its state (momentum, Adam's moments) is left as it is. (An earlier fabook version used a parametrization
``W = n₀ V/‖V‖``; the optimizer then stepped on ``V`` with a projected gradient, ``‖V‖`` grew and the
trajectory differed from the paper's, so it was replaced.)

**Kolen–Pollack (and PFA) under the constraint.** KP means: ``B`` receives ``W``'s update, and each
decays by its own weight decay, so that ``W − B`` shrinks. Under the constraint ``W``'s update has one more
part, the rescale's correction ``r = (c − 1)·W``; ``B`` receives it too (``B ← B + r``), so ``W − B``
evolves exactly as in unconstrained KP — ``(1 − ηλ)`` per plain SGD step. PFA's ``R`` receives it the way
it receives ``W``'s gradient, as ``Bᵀ r``. (Scaling ``B`` by ``c`` instead would undo its decay, as the
rescale undoes ``W``'s: ``c ≈ 1/(1 − ηλ)`` for small gradients, and ``W − B`` would barely shrink;
correcting ``W`` alone leaves ``B`` behind.) Sign rules need nothing (``sign(cW) = sign(W)``); WM's mirror
follows ``W`` by itself and FA's ``B`` is fixed.

**Kolen–Pollack with momentum or Adam** (measured by ``tests/test_norm_constraint.py``). KP's exact
per-step contraction ``W − B ← (1 − ηλ)(W − B)`` holds for plain SGD, for AdamW (decoupled decay; ``W`` and
``B`` get the same gradient, hence the same moments) and for Batch Manhattan without momentum. With SGD
momentum μ the difference obeys the heavy-ball recursion ``v ← μv + λD``, ``D ← D − ηv``: it contracts, but
unevenly — by ``(1 − ηλ)`` on the first step, then faster, towards ``1 − ηλ/(1 − μ)`` per step (10× the
SGD rate at μ = 0.9, η λ small; measured at η = 0.05, λ = 0.02: 0.9990, 0.9981, 0.9934 at step 10,
0.9889 at step 60). With Adam (L2 decay inside the moments) ``W`` and ``B`` see gradients
that differ by ``λ(W − B)`` and are divided by per-entry ``√v``: the contraction depends on the gradients'
size and is not a fixed rate (same setting: 0.935–0.982 per step).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from fabook.layers import RuleLayer, rule_layers
from fabook.rules import KolenPollack, ProductFeedbackAlignment

BUFFER = "weight_norm"
"""The buffer on each constrained rule layer that holds its forward weight's norm ``n₀``."""


def record_norms(layers: Iterable[RuleLayer]) -> None:
    """Constrain ``layers``: store each one's current ``‖W‖`` as its target norm (buffer :data:`BUFFER`)."""
    for layer in layers:
        with torch.no_grad():
            layer.register_buffer(BUFFER, layer.weight.detach().norm().clone())


def constrained(model: nn.Module) -> list[tuple[str, RuleLayer]]:
    """The rule layers of ``model`` that carry a recorded norm."""
    return [(name, layer) for name, layer in rule_layers(model) if hasattr(layer, BUFFER)]


@torch.no_grad()
def rescale(model: nn.Module) -> None:
    """Rescale each constrained layer's ``W`` to its recorded norm; KP's ``B`` gets the same correction
    ``(c − 1)·W``, PFA's ``R`` gets ``Bᵀ`` of it. A no-op on a model without constrained layers."""
    for _, layer in constrained(model):
        norm = layer.weight.norm()
        if norm == 0:
            continue
        correction = layer.weight * (getattr(layer, BUFFER) / norm - 1)
        layer.weight.add_(correction)
        if isinstance(layer.rule, KolenPollack):
            layer.feedback.add_(correction)
        elif isinstance(layer.rule, ProductFeedbackAlignment):
            r = torch.tensordot(layer.feedback_b.t(), correction, dims=1)
            layer.feedback_r.add_(r * layer.feedback_r_mask if hasattr(layer, "feedback_r_mask") else r)


class _Rescale:
    """A step post-hook (a class, not a closure, so the optimizer stays picklable)."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def __call__(self, optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
        rescale(self.model)


def hold_norms(optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.utils.hooks.RemovableHandle:
    """Call :func:`rescale` on ``model`` after every ``optimizer.step()``; ValueError if ``model`` has no
    constrained layer (convert it with ``constrain_norm=True`` first)."""
    if not constrained(model):
        raise ValueError(
            "hold_norms: the model has no constrained layer; convert it with fabook.convert(..., "
            "constrain_norm=True) first"
        )
    return optimizer.register_step_post_hook(_Rescale(model))
