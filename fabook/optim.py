"""Optimizers: Batch Manhattan (Liao, Leibo & Poggio 2016)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable

import torch
from torch.optim import Optimizer


class BatchManhattan(Optimizer):
    """Batch Manhattan: step along the *sign* of the batch gradient, then weight decay and momentum as SGD.

    ``d = sign(Σ_batch ∂L/∂W) + λ W``, ``v ← μ v + d``, ``W ← W − η v`` (Liao et al. 2016). Only the sign of
    each gradient entry is used, so the update ignores the feedback's scale. Works with every rule: learned
    feedback (KP's ``B``, PFA's ``R``) gets the same treatment as ``W``.
    """

    def __init__(self, params: Iterable, lr: float, momentum: float = 0.0, weight_decay: float = 0.0) -> None:
        for name, value in (("lr", lr), ("momentum", momentum), ("weight_decay", weight_decay)):
            number = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            if not number or value < 0:
                raise ValueError(f"{name}={value!r}: accepted is a finite number >= 0")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = torch.sign(p.grad)
                if group["weight_decay"]:
                    d.add_(p, alpha=group["weight_decay"])
                if group["momentum"]:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = d.clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(d)
                    d = state["momentum_buffer"]
                p.add_(d, alpha=-group["lr"])
        return loss
