"""``Linear`` and ``Conv2d`` whose backward pass follows a learning rule (:mod:`fabook.rules`).

The forward pass is torch's own. The backward pass is one autograd function shared by both layers: it asks
the layer's rule for the gradients, and the rule asks the layer for the op-specific pieces
(:meth:`RuleLayer.local_grads`, :meth:`RuleLayer.mix_channels`, :meth:`RuleLayer.noise_response`).

- **Mixed precision.** Under ``torch.autocast`` the op runs in the autocast dtype, as torch's own layers
  do; the backward computes in the dtype of the incoming error ``δy`` (the feedback and the saved input are
  cast to it) and autograd casts each gradient back to its parameter's dtype. Feedback buffers stay in the
  layer's dtype.
- **torch.func.** The backward sees the layer's parameters and buffers as the forward saw them, so
  ``torch.func.functional_call`` with substituted weights or feedback gets the rule's gradients for *those*
  tensors, and ``torch.func.grad`` works through it (WM only in eval mode: its training-mode mirror step
  writes to a buffer in place, which the transforms forbid; it says so). ``torch.func.vmap`` (per-sample
  gradients) is refused: the rules keep per-layer state (brSF's draw, WM's mirror, DFA's output error) that
  has no per-sample form.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fabook.rules import Backprop, Rule, get_rule


class _RuleFunction(torch.autograd.Function):
    """Forward: the layer's op. Backward: the rule's gradients for x, W, b and its learned feedback.

    This is the form torch.func transforms accept (a separate ``setup_context``); outside them the layers use
    :class:`_EagerRuleFunction`, the same function in the combined form.
    """

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None, layer: RuleLayer, *learned: Tensor) -> Tensor:
        return layer.op(x, weight, bias)

    @staticmethod
    def setup_context(ctx, inputs: tuple, output: Tensor) -> None:
        x, layer = inputs[0], inputs[3]
        ctx.layer = layer
        ctx.state = (dict(layer._parameters), dict(layer._buffers))  # what the forward used
        ctx.save_for_backward(x)

    @staticmethod
    def backward(ctx, grad_y: Tensor):
        (x,) = ctx.saved_tensors
        needs, layer = ctx.needs_input_grad, ctx.layer
        grad_y = grad_y.contiguous()
        x = x.to(grad_y.dtype)  # under autocast: compute in δy's (the op's) dtype
        swapped = _swap_in(layer, ctx.state)
        try:
            gx, gw, gb, learned = layer.rule.backward(layer, x, grad_y, needs[:3])
        finally:
            if swapped:
                _swap_back(swapped)
        return (gx, gw, gb, None, *learned)

    @staticmethod
    def vmap(info, in_dims, *args):
        raise NotImplementedError(
            "fabook rule layers do not support torch.func.vmap (e.g. per-sample gradients): the rules keep "
            "per-layer state (brSF's draw, WM's mirror, DFA's output error) with no per-sample form; use "
            "torch.func.grad or loss.backward() per sample instead"
        )


class _EagerRuleFunction(torch.autograd.Function):
    """:class:`_RuleFunction` in the combined form (``forward(ctx, ...)``), for use outside torch.func
    transforms: torch binds the default arguments of a ``setup_context``-form function through
    ``inspect.signature`` on every call, which costs more than the rest of a small layer's step."""

    @staticmethod
    def forward(
        ctx, x: Tensor, weight: Tensor, bias: Tensor | None, layer: RuleLayer, *learned: Tensor
    ) -> Tensor:
        _RuleFunction.setup_context(ctx, (x, weight, bias, layer), None)
        return layer.op(x, weight, bias)

    backward = staticmethod(_RuleFunction.backward)


Swapped = list[tuple[dict, str, Tensor | None, Tensor]]


def _swap_in(layer: nn.Module, state: tuple[dict, dict]) -> Swapped:
    """Give ``layer`` back the parameters and buffers its forward pass used, where they differ (only when
    something swapped them after the forward: ``torch.func.functional_call`` restores the module's own
    tensors before the backward runs); returns what was swapped, for :func:`_swap_back`."""
    swapped = []
    for store, saved in zip((layer._parameters, layer._buffers), state, strict=True):
        for name, tensor in saved.items():
            if store.get(name) is not tensor:
                swapped.append((store, name, store.get(name), tensor))
                store[name] = tensor
    return swapped


def _swap_back(swapped: Swapped) -> None:
    """Undo :func:`_swap_in`, unless the rule replaced a tensor meanwhile (brSF's fresh draw)."""
    for store, name, current, used in swapped:
        if store.get(name) is used:
            store[name] = current


class RuleLayer(nn.Module):
    """Mechanism shared by :class:`Linear` and :class:`Conv2d` (a mixin: it is not used alone)."""

    rule: Rule
    _exact_bp: bool = False

    def _set_rule(self, rule: str | Rule, options: dict[str, object]) -> None:
        self.rule = get_rule(rule, **options)
        self.rule.setup(self)

    @property
    def fan_in(self) -> int:
        """Inputs feeding one output unit (in_features; in_channels/groups · kernel area)."""
        return math.prod(self.weight.shape[1:])

    def backward_weight(self) -> Tensor:
        """``B``, in the forward weight's shape: the layer sends ``Bᵀ δy`` down (a detached tensor)."""
        return self.rule.backward_weight(self).detach()

    def forward(self, x: Tensor) -> Tensor:
        if isinstance(self.rule, Backprop):
            return super().forward(x)
        if self.training and torch.is_grad_enabled():
            self.rule.before_forward(self)  # also under exact_backprop: both passes draw the same noise
        if self._exact_bp:
            return super().forward(x)
        return self._apply_rule(x)

    def _apply_rule(self, x: Tensor) -> Tensor:
        fn = _RuleFunction if torch._C._are_functorch_transforms_active() else _EagerRuleFunction
        return fn.apply(x, self.weight, self.bias, self, *self.rule.learned(self))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rule={self.rule!r}"

    # op-specific pieces, implemented by Linear and Conv2d
    def op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """The forward op on an already prepared input."""
        raise NotImplementedError

    def local_grads(
        self, x: Tensor, grad_y: Tensor, feedback: Tensor | None, needs: tuple[bool, bool, bool]
    ) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """``(feedbackᵀ δy, δy xᵀ, Σ δy)`` for this op; ``feedback`` may have more output channels than W."""
        raise NotImplementedError

    def mix_channels(self, grad_y: Tensor, matrix: Tensor) -> Tensor:
        """``matrixᵀ δy`` over the output-feature (channel) axis; ``matrix`` has shape (out, m)."""
        raise NotImplementedError

    def noise_response(self, n: int) -> Tensor:
        """``y xᵀ / n`` for ``n`` unit-variance noise inputs, ``y = W x``: an unbiased estimate of ``W``."""
        raise NotImplementedError

    def mirror_step(self, feedback: Tensor, n: int, weight: float) -> None:
        """``feedback ← (1 − weight) · feedback + weight · noise_response(n)``, in place."""
        feedback.lerp_(self.noise_response(n), weight)

    @property
    def out_channels_(self) -> int:
        return self.weight.shape[0]

    @property
    def groups_(self) -> int:
        return 1


class Linear(RuleLayer, nn.Linear):
    """``torch.nn.Linear`` with a learning rule: same arguments, outputs and ``state_dict`` keys, + ``rule``.

    Accepts any input ``nn.Linear`` accepts (``(*, in_features)``). ``rule`` is a name from
    :data:`fabook.RULES` or a :class:`fabook.rules.Rule`; ``rule_options`` go to the rule.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        rule: str | Rule = "bp",
        **rule_options: object,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias, device, dtype)
        self._set_rule(rule, rule_options)

    def op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        return F.linear(x, weight, bias)

    def local_grads(self, x, grad_y, feedback, needs):
        gy = grad_y.reshape(-1, grad_y.shape[-1])
        gx = grad_y @ feedback.to(grad_y.dtype) if needs[0] else None
        gw = gy.t() @ x.reshape(-1, x.shape[-1]) if needs[1] else None
        gb = gy.sum(0) if needs[2] else None
        return gx, gw, gb

    def mix_channels(self, grad_y: Tensor, matrix: Tensor) -> Tensor:
        return grad_y @ matrix.to(grad_y.dtype)

    def noise_response(self, n: int) -> Tensor:
        x = torch.randn(n, self.in_features, device=self.weight.device, dtype=self.weight.dtype)
        return F.linear(x, self.weight).t() @ x / n

    def mirror_step(self, feedback: Tensor, n: int, weight: float) -> None:
        x = torch.randn(n, self.in_features, device=self.weight.device, dtype=self.weight.dtype)
        feedback.addmm_(F.linear(x, self.weight).t(), x, beta=1.0 - weight, alpha=weight / n)  # one pass


class Conv2d(RuleLayer, nn.Conv2d):
    """``torch.nn.Conv2d`` with a learning rule: same arguments (stride, padding incl. ``'same'``, dilation,
    groups, bias, padding modes), outputs and ``state_dict`` keys, plus ``rule`` and its options.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        *,
        rule: str | Rule = "bp",
        **rule_options: object,
    ) -> None:
        nn.Conv2d.__init__(
            self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, device, dtype,
        )  # fmt: skip
        self._set_rule(rule, rule_options)

    @property
    def groups_(self) -> int:
        return self.groups

    @property
    def _prepads(self) -> bool:
        """Whether the input is padded before the op (non-zero padding modes, or padding as a string)."""
        return self.padding_mode != "zeros" or isinstance(self.padding, str)

    def _apply_rule(self, x: Tensor) -> Tensor:
        unbatched = x.dim() == 3
        if unbatched:
            x = x.unsqueeze(0)
        if self._prepads:
            mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
            x = F.pad(x, self._reversed_padding_repeated_twice, mode=mode)
        y = super()._apply_rule(x)
        return y.squeeze(0) if unbatched else y

    def op(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        padding = (0, 0) if self._prepads else self.padding
        return F.conv2d(x, weight, bias, self.stride, padding, self.dilation, self.groups)

    def local_grads(self, x, grad_y, feedback, needs):
        kernel = (feedback if feedback is not None else self.weight.detach()).to(grad_y.dtype)
        padding = (0, 0) if self._prepads else self.padding
        return torch.ops.aten.convolution_backward(
            grad_y, x, kernel, [grad_y.shape[1]] if needs[2] else None, self.stride, padding,
            self.dilation, False, (0, 0), self.groups, list(needs),
        )  # fmt: skip

    def mix_channels(self, grad_y: Tensor, matrix: Tensor) -> Tensor:
        return F.conv2d(grad_y, matrix.t()[:, :, None, None].to(grad_y.dtype))

    def noise_response(self, n: int) -> Tensor:
        w = self.weight
        x = torch.randn(n, w.shape[1] * self.groups, *w.shape[2:], device=w.device, dtype=w.dtype)
        y = F.conv2d(x, w, groups=self.groups)
        return (
            torch.ops.aten.convolution_backward(
                y, x, w, None, (1, 1), (0, 0), (1, 1), False, (0, 0), self.groups, [False, True, False]
            )[1]
            / n
        )


def rule_layers(model: nn.Module) -> Iterator[tuple[str, RuleLayer]]:
    """``(name, layer)`` for every rule layer of ``model``, in registration order."""
    for name, module in model.named_modules():
        if isinstance(module, RuleLayer):
            yield name, module


@contextmanager
def exact_backprop(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block every rule layer of ``model`` runs plain backprop (to measure gradient alignment).

    The rules' per-use work (WM's mirror step) still runs, so a pass inside the block draws the same random
    numbers (dropout masks, ...) as the same pass outside it.
    """
    layers = [layer for _, layer in rule_layers(model)]
    for layer in layers:
        layer._exact_bp = True
    try:
        yield model
    finally:
        for layer in layers:
            layer._exact_bp = False
