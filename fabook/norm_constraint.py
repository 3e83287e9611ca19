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

**Kolen–Pollack (and PFA) under the constraint: the rescale is ``W``'s alone.** ``B`` (KP) and ``R`` (PFA)
move by their own optimizer step — the local gradient they receive and their own weight decay — and by
nothing else. An earlier fabook version also added the rescale's correction ``(c − 1)·W`` to ``B`` (and
``Bᵀ`` of it to ``R``) so that ``W − B`` kept KP's ``(1 − ηλ)`` contraction; but that correction is
``B ← (1 − ηλ)·B + ηλ·W`` in disguise: ``B`` copied ``W``, the weight transport the rule exists to avoid. It
was removed. What follows, and why no local correction replaces it: the rescale undoes ``W``'s decay (for
small gradients ``c ≈ 1/(1 − ηλ)``) while ``B`` keeps decaying, so ``W`` remembers its start and ``B``
forgets its own; ``W − B`` no longer contracts at ``(1 − ηλ)``, and ``B`` aligns with ``W`` only as far as
their shared gradients dominate ``W``'s initial part (``tests/test_norm_constraint.py`` measures it).
Rescaling ``B`` to its own initial norm — a correction a feedback synapse could make from ``B`` alone —
would undo ``B``'s decay too and stop the contraction altogether. Sign rules need nothing
(``sign(cW) = sign(W)``); WM's mirror follows ``W`` by itself and FA's ``B`` is fixed.

**Kolen–Pollack with momentum or Adam** (without the constraint; :class:`fabook.rules.KolenPollack`). KP's
exact per-step contraction ``W − B ← (1 − ηλ)(W − B)`` holds for plain SGD, for AdamW (decoupled decay;
``W`` and ``B`` get the same gradient, hence the same moments) and for Batch Manhattan without momentum.
With SGD momentum μ the difference obeys the heavy-ball recursion ``v ← μv + λD``, ``D ← D − ηv``: it
contracts, but unevenly — by ``(1 − ηλ)`` on the first step, then faster, towards ``1 − ηλ/(1 − μ)`` per
step. With Adam (L2 decay inside the moments) the contraction depends on the gradients' size and is not a
fixed rate.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from fabook.layers import RuleLayer, rule_layers

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
    """Rescale each constrained layer's ``W`` to its recorded norm, and nothing else (no feedback weight
    learns what the rescale did to ``W``). A no-op on a model without constrained layers."""
    for _, layer in constrained(model):
        norm = layer.weight.norm()
        if norm == 0:
            continue
        layer.weight.mul_(getattr(layer, BUFFER) / norm)


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
