"""Turn any torch model into one trained by a learning rule: its Linear/Conv2d layers become rule layers."""

from __future__ import annotations

import copy
from collections.abc import Iterable

from torch import nn

from fabook.layers import Conv2d, Linear, RuleLayer
from fabook.norm_constraint import record_norms
from fabook.rules import DirectFeedbackAlignment, Rule, get_rule

CONVERTIBLE: dict[type[nn.Module], type[RuleLayer]] = {nn.Linear: Linear, nn.Conv2d: Conv2d}
"""torch layer type -> rule layer type (exact types: subclasses such as attention projections are not)."""

UNSUPPORTED: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Conv1d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.Bilinear, nn.RNNBase, nn.MultiheadAttention,
)  # fmt: skip
"""Layers that transport weights in their backward pass but have no rule layer (checked after CONVERTIBLE)."""


def _resolve_keep(convertible: list[str], unsupported: list[str], keep_bp: Iterable[str]) -> set[str]:
    """Names to leave as they are; ``first``/``last`` are the first/last convertible layers."""
    if isinstance(keep_bp, str):
        keep_bp = (keep_bp,)  # one name, not its characters
    keep = set()
    for name in keep_bp:
        if name in ("first", "last") and convertible:
            keep.add(convertible[0] if name == "first" else convertible[-1])
        elif name in convertible or name in unsupported:
            keep.add(name)
        else:
            raise ValueError(
                f"keep_bp: no layer named {name!r}; accepted: 'first', 'last', {convertible + unsupported}"
            )
    return keep


def _as_rule_layer(module: nn.Module, rule: Rule) -> RuleLayer:
    """A rule layer that takes over ``module``'s parameters, buffers, hooks and settings."""
    layer = CONVERTIBLE[type(module)].__new__(CONVERTIBLE[type(module)])
    layer.__dict__.update(module.__dict__)
    for attr in ("_parameters", "_buffers", "_modules"):
        setattr(layer, attr, dict(getattr(module, attr)))
    layer._set_rule(rule, {})
    return layer


def convert(
    model: nn.Module,
    rule: str | Rule,
    *,
    keep_bp: Iterable[str] = (),
    constrain_norm: bool = False,
    **rule_options: object,
) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear``/``nn.Conv2d`` trained by ``rule``; ``model`` is untouched.

    Forward outputs are unchanged (the copy holds the same weights). ``keep_bp`` names layers to leave as
    plain torch layers (names from ``model.named_modules()``, or ``"first"``/``"last"``; a string is one
    name). ``constrain_norm`` records each converted layer's current norm, to which
    :func:`fabook.norm_constraint.rescale` returns its weight after every optimizer step (the training engine
    hooks it in; in a loop of your own call :func:`fabook.norm_constraint.hold_norms` once). For DFA the copy
    gets the hook that catches the output error. Layers that transport weights but have no rule layer
    (Conv1d, RNNs, attention, ...) raise unless kept as BP, so nothing silently stays backprop.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model={model!r} is a {type(model).__name__}; accepted: a torch.nn.Module")
    rule = get_rule(rule, **rule_options)
    new = copy.deepcopy(model)
    entries = list(new.named_modules(remove_duplicate=False))
    convertible = list(dict.fromkeys(n for n, m in entries if type(m) in CONVERTIBLE))
    unsupported = {n: m for n, m in entries if type(m) not in CONVERTIBLE and isinstance(m, UNSUPPORTED)}
    keep = _resolve_keep(convertible, list(unsupported), keep_bp)

    def kept(name: str) -> bool:
        return any(name == k or name.startswith(k + ".") for k in keep)

    bad = [f"{n or '<model>'} ({type(m).__name__})" for n, m in unsupported.items() if not kept(n)]
    if bad:
        raise TypeError(
            f"cannot convert {', '.join(bad)} to rule {rule.name!r}: supported layers are nn.Linear and "
            "nn.Conv2d; leave the others as BP with keep_bp=[...names]"
        )
    done: dict[int, RuleLayer] = {}
    for name, module in entries:
        if type(module) not in CONVERTIBLE or kept(name):
            continue
        if id(module) not in done:
            done[id(module)] = _as_rule_layer(module, rule)
        if not name:
            new = done[id(module)]
            break
        parent, _, child = name.rpartition(".")
        setattr(new.get_submodule(parent), child, done[id(module)])
    if constrain_norm:
        record_norms(done.values())
    if isinstance(rule, DirectFeedbackAlignment):
        rule.attach(new)
    return new
