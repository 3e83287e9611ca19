"""Alignment metrics for the rule layers of any converted model, one call each."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fabook.layers import RuleLayer, exact_backprop, rule_layers


def angle_deg(a: Tensor, b: Tensor) -> float:
    """Angle between two tensors seen as flat vectors, in degrees (NaN if either is zero)."""
    a, b = a.detach().flatten().double(), b.detach().flatten().double()
    denom = a.norm() * b.norm()
    if denom == 0:
        return math.nan
    return math.degrees(math.acos(float((a @ b / denom).clamp(-1.0, 1.0))))


def _weight_param(layer: RuleLayer) -> Tensor:
    """The tensor the optimizer updates for the forward weight (the original one under a parametrization)."""
    if hasattr(layer, "parametrizations") and "weight" in layer.parametrizations:
        return layer.parametrizations.weight.original
    return layer.weight


def weight_alignment(model: nn.Module) -> pd.DataFrame:
    """Per rule layer: angle between ``W`` and the backward weight ``B``, sign concordance, ``‖B‖/‖W‖``,
    the distance ``‖W − B‖`` and ``‖W‖``.

    Columns ``layer, rule, angle_deg, sign_concordance, norm_ratio, distance, weight_norm``; DFA layers (no
    ``B``) get NaN but for ``weight_norm``.
    """
    rows = []
    for name, layer in rule_layers(model):
        w = layer.weight.detach()
        try:
            b = layer.backward_weight()
        except TypeError:
            nan = dict.fromkeys(("angle_deg", "sign_concordance", "norm_ratio", "distance"), math.nan)
            rows.append(dict(layer=name, rule=layer.rule.name, **nan, weight_norm=float(w.norm())))
            continue
        rows.append(
            dict(
                layer=name,
                rule=layer.rule.name,
                angle_deg=angle_deg(w, b),
                sign_concordance=float((torch.sign(w) == torch.sign(b)).double().mean()),
                norm_ratio=float(b.norm() / w.norm()) if w.norm() > 0 else math.nan,
                distance=float((w.double() - b.double()).norm()),
                weight_norm=float(w.norm()),
            )
        )
    columns = ["layer", "rule", "angle_deg", "sign_concordance", "norm_ratio", "distance", "weight_norm"]
    return pd.DataFrame(rows, columns=columns)


def _backward_pass(
    model: nn.Module, inputs: Tensor, targets: Tensor, loss_fn: Callable, seed: int
) -> tuple[dict[str, Tensor | None], dict[str, float]]:
    """One forward and backward pass: each rule layer's weight gradient and the norm of the error that
    reaches its output, ``‖∂L/∂y‖`` (summed over the calls of a layer used more than once)."""
    for p in model.parameters():
        p.grad = None
    squares: dict[str, float] = {}

    def watch(name: str) -> Callable:
        def record(grad: Tensor) -> None:
            squares[name] = squares.get(name, 0.0) + float(grad.detach().double().pow(2).sum())

        def hook(module: nn.Module, args: tuple, output: Tensor) -> None:
            if output.requires_grad:
                output.register_hook(record)

        return hook

    handles = [layer.register_forward_hook(watch(name)) for name, layer in rule_layers(model)]
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            loss_fn(model(inputs), targets).backward()
    finally:
        for handle in handles:
            handle.remove()
    grads = {name: _weight_param(layer).grad for name, layer in rule_layers(model)}
    return grads, {name: math.sqrt(v) for name, v in squares.items()}


def gradient_alignment(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    seed: int = 0,
) -> pd.DataFrame:
    """Per rule layer: angle between the rule's weight update and the true BP gradient on the same batch,
    and ``error_ratio``, the norm of the error that reaches the layer's output (``‖∂L/∂y‖``, what the
    layers above send down) under the rule over its norm under BP: 1 for the top layer, which gets the true
    error; below, how the feedback's size compounds with depth.

    Works on a copy, so ``model`` (its gradients, buffers, batch-norm statistics) and the global random
    state are left as they were; both passes draw their randomness (dropout, brSF, WM) from ``seed``.
    Columns ``layer, rule, angle_deg, error_ratio``.
    """
    probe = copy.deepcopy(model)
    rule_grads, rule_errors = _backward_pass(probe, inputs, targets, loss_fn, seed)
    with exact_backprop(probe):
        bp_grads, bp_errors = _backward_pass(probe, inputs, targets, loss_fn, seed)
    rows = []
    for name, layer in rule_layers(probe):
        rule_grad, bp_grad = rule_grads[name], bp_grads[name]
        angle = angle_deg(rule_grad, bp_grad) if rule_grad is not None and bp_grad is not None else math.nan
        error, bp_error = rule_errors.get(name, math.nan), bp_errors.get(name, math.nan)
        ratio = error / bp_error if bp_error > 0 else math.nan  # NaN > 0 is False
        rows.append(dict(layer=name, rule=layer.rule.name, angle_deg=angle, error_ratio=ratio))
    return pd.DataFrame(rows, columns=["layer", "rule", "angle_deg", "error_ratio"])
