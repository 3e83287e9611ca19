"""Learning rules: what a layer sends down instead of ``Wᵀ δy``, and how its feedback weights change.

Notation (one layer): forward ``y = W x`` with ``W`` of shape (out, in); ``δy = ∂L/∂y``; the layer sends
``δx = Bᵀ δy`` down, where ``B`` (shape of ``W``) is the rule's *backward weight*. The weight update is always
the local one, ``∂L/∂W = δy xᵀ``. For Conv2d read ``W``, ``B`` as kernels and ``Bᵀ`` as the transposed
convolution.

The layers (:mod:`fabook.layers`) hold the mechanism; a rule says only what is its own:

- :meth:`Rule.setup` registers the feedback buffers/parameters on a layer,
- :meth:`Rule.backward_weight` is ``B``,
- :meth:`Rule.before_forward` does per-step work (brSF's redraw, WM's mirror step),
- :meth:`Rule.backward` computes the gradients (override only where ``δx = Bᵀ δy`` is not the whole story).

Rule objects hold options only; every tensor lives on the layer (so it moves with ``.to()`` and is saved in
``state_dict``). One rule object can serve many layers.
"""

from __future__ import annotations

import inspect
import math
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from fabook.layers import RuleLayer

Grads = tuple[Tensor | None, Tensor | None, Tensor | None, tuple[Tensor | None, ...]]
"""``(δx, ∂L/∂W, ∂L/∂b, gradients of the rule's learned feedback parameters)``."""

_REGISTRY: dict[str, type[Rule]] = {}


def _option_names(cls: type) -> list[str]:
    """The keyword options a rule class's constructor takes."""
    params = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _init_like_weight(layer: RuleLayer, shape: torch.Size | tuple[int, ...] | None = None) -> Tensor:
    """A random tensor drawn as torch initializes the layer's weight (kaiming-uniform, bound 1/√fan_in)."""
    w = layer.weight
    t = torch.empty(shape if shape is not None else w.shape, device=w.device, dtype=w.dtype)
    bound = 1.0 / math.sqrt(layer.fan_in)
    return t.uniform_(-bound, bound)


def _check_fraction(name: str, value: float, *, allow_zero: bool) -> float:
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise ValueError(f"{name}={value!r} is outside {interval}")
    return float(value)


class Rule:
    """Base class. Default behaviour: ``δx = Bᵀ δy`` with ``B = backward_weight(layer)``."""

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            _REGISTRY[cls.name] = cls

    def setup(self, layer: RuleLayer) -> None:
        """Register the rule's buffers and parameters on ``layer`` (called once, when the layer is made)."""

    def learned(self, layer: RuleLayer) -> tuple[nn.Parameter, ...]:
        """Feedback parameters that receive gradients in :meth:`backward` (the optimizer updates them)."""
        return ()

    def before_forward(self, layer: RuleLayer) -> None:
        """Per-step work, run before each forward pass in training mode with gradients enabled."""

    def backward_weight(self, layer: RuleLayer) -> Tensor:
        """``B``, in the forward weight's shape: the layer applies ``Bᵀ`` to ``δy``."""
        raise NotImplementedError

    def backward(self, layer: RuleLayer, x: Tensor, grad_y: Tensor, needs: tuple[bool, bool, bool]) -> Grads:
        """Gradients for ``(x, W, b)`` given ``δy``; ``needs`` says which of the three are wanted."""
        feedback = self.backward_weight(layer) if needs[0] else None
        gx, gw, gb = layer.local_grads(x, grad_y, feedback, needs)
        return gx, gw, gb, ()

    def options(self) -> dict[str, object]:
        """The options this rule was made with (for ``repr`` and results files)."""
        return {k: getattr(self, k) for k in _option_names(type(self)) if hasattr(self, k)}

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{self.name}({opts})" if opts else self.name


class Backprop(Rule):
    """Backpropagation: ``B = W``, so ``δx = Wᵀ δy``. Layers with this rule run torch's own backward."""

    name = "bp"

    def backward_weight(self, layer: RuleLayer) -> Tensor:
        return layer.weight


class FeedbackAlignment(Rule):
    """Feedback alignment (Lillicrap et al. 2016): ``δx = Bᵀ δy``, ``B`` random and fixed.

    ``B`` is drawn like the layer's own weight (kaiming-uniform) and kept in the buffer ``feedback``.
    """

    name = "fa"

    def setup(self, layer: RuleLayer) -> None:
        layer.register_buffer("feedback", _init_like_weight(layer))

    def backward_weight(self, layer: RuleLayer) -> Tensor:
        return layer.feedback


class DirectFeedbackAlignment(Rule):
    """Direct feedback alignment (Nøkland 2016): ``δh_l = (D_l e) ⊙ f'(a_l)``, ``e = ∂L/∂(logits)``.

    Each DFA layer sends ``δx = D e`` to its input, with ``D`` a fixed random matrix of shape
    ``(outputs, *input shape)`` (buffer ``direct_feedback``, drawn at the first backward pass, when the
    output size is known), whatever reaches it from above. The activation's backward then makes it
    ``(D e) ⊙ f'(a)`` for the layer below. The output error ``e`` is caught by a hook on the model's output:
    :func:`fabook.convert` installs it; for a hand-built model share one rule object among its layers and
    call :meth:`attach` on the model. There is no ``B`` in the shape of ``W``: :meth:`backward_weight` raises.
    """

    name = "dfa"

    def __init__(self) -> None:
        self.error: Tensor | None = None

    def setup(self, layer: RuleLayer) -> None:
        layer.register_buffer("direct_feedback", torch.empty(0, device=layer.weight.device))

        def resize(module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
            saved = state_dict.get(prefix + "direct_feedback")
            if saved is not None and saved.shape != module.direct_feedback.shape:
                module.direct_feedback = torch.empty_like(saved, device=module.direct_feedback.device)

        layer.register_load_state_dict_pre_hook(resize)

    def attach(self, model: nn.Module) -> torch.utils.hooks.RemovableHandle:
        """Catch ``e = ∂L/∂(model output)`` on every forward pass of ``model``."""
        return model.register_forward_hook(self._hook_output)

    def _hook_output(self, module: nn.Module, args: object, output: object) -> None:
        self.error = None
        if isinstance(output, Tensor) and output.requires_grad:
            output.register_hook(self._store_error)

    def _store_error(self, grad: Tensor) -> None:
        self.error = grad.detach()

    def backward_weight(self, layer: RuleLayer) -> Tensor:
        raise TypeError(
            "a DFA layer has no backward weight in W's shape: it projects the output error e through its "
            "own fixed matrix (layer.direct_feedback, shape (outputs, *input shape)) instead of Bᵀ δy"
        )

    def backward(self, layer: RuleLayer, x: Tensor, grad_y: Tensor, needs: tuple[bool, bool, bool]) -> Grads:
        _, gw, gb = layer.local_grads(x, grad_y, None, (False, needs[1], needs[2]))
        gx = None
        if needs[0]:
            e = self.error
            if e is None:
                raise RuntimeError(
                    "DFA layer got no output error: build the model with fabook.convert(model, 'dfa'), "
                    "or share one DirectFeedbackAlignment object among its layers and call rule.attach(model)"
                )
            if e.dim() != 2 or e.shape[0] != x.shape[0]:
                raise RuntimeError(
                    f"DFA needs a (batch, outputs) model output matching the layer's batch {x.shape[0]}; "
                    f"got output error of shape {tuple(e.shape)}"
                )
            shape = (e.shape[1], *x.shape[1:])
            if layer.direct_feedback.shape != shape:
                bound = 1.0 / math.sqrt(math.prod(x.shape[1:]))
                d = torch.empty(shape, device=x.device, dtype=x.dtype).uniform_(-bound, bound)
                layer.direct_feedback = d
            d = layer.direct_feedback.to(e.dtype)
            gx = (e @ d.flatten(1)).view(x.shape)
        return gx, gw, gb, ()


class SignSymmetry(Rule):
    """Sign symmetry (Liao, Leibo & Poggio 2016): ``B = sign(W) ⊙ M``; the signs follow ``W`` every step.

    The variants differ only in the magnitudes ``M`` (subclasses below). ``scale`` sets their size: ``1.0``
    is the paper's ``|B| = 1``; ``"fan_in"`` means ``1/√fan_in`` (the size of a default-initialized weight).
    Random magnitudes are drawn ``U(0, 2·scale)``, so their mean equals uSF's magnitude.
    """

    def __init__(self, scale: float | str = 1.0) -> None:
        if scale != "fan_in" and not (isinstance(scale, int | float) and scale > 0):
            raise ValueError(f"scale={scale!r}: accepted are a positive number or 'fan_in'")
        self.scale = scale

    def _scale(self, layer: RuleLayer) -> float:
        return 1.0 / math.sqrt(layer.fan_in) if self.scale == "fan_in" else float(self.scale)

    def _draw_magnitude(self, layer: RuleLayer) -> Tensor:
        return torch.empty_like(layer.weight, requires_grad=False).uniform_(0.0, 2.0 * self._scale(layer))

    def magnitude(self, layer: RuleLayer) -> Tensor | float:
        return layer.feedback_magnitude

    def backward_weight(self, layer: RuleLayer) -> Tensor:
        return torch.sign(layer.weight).mul_(self.magnitude(layer))


class UniformSignFeedback(SignSymmetry):
    """uSF (Liao et al. 2016): ``B = sign(W) · scale`` — all magnitudes equal (1 in the paper)."""

    name = "usf"

    def magnitude(self, layer: RuleLayer) -> float:
        return self._scale(layer)


class BatchRandomSignFeedback(SignSymmetry):
    """brSF (Liao et al. 2016): ``B = sign(W) ⊙ M``, ``M ~ U(0, 2·scale)`` redrawn for every batch.

    The redraw happens in each backward pass that sends an error down (a layer whose input needs no
    gradient, such as the first one, never uses ``B``: it skips the draw); ``M`` is the buffer
    ``feedback_magnitude``.
    """

    name = "brsf"

    def setup(self, layer: RuleLayer) -> None:
        layer.register_buffer("feedback_magnitude", self._draw_magnitude(layer))

    def backward(self, layer: RuleLayer, x: Tensor, grad_y: Tensor, needs: tuple[bool, bool, bool]) -> Grads:
        if needs[0]:
            layer.feedback_magnitude.uniform_(0.0, 2.0 * self._scale(layer))
        return super().backward(layer, x, grad_y, needs)


class FixedRandomSignFeedback(SignSymmetry):
    """frSF (Liao et al. 2016): ``B = sign(W) ⊙ M``, ``M ~ U(0, 2·scale)`` drawn once and kept."""

    name = "frsf"

    def setup(self, layer: RuleLayer) -> None:
        layer.register_buffer("feedback_magnitude", self._draw_magnitude(layer))


class SignConcordance(FixedRandomSignFeedback):
    """Partial sign concordance (Liao et al. 2016): ``B = sign(W) ⊙ S ⊙ M``.

    Like frSF, plus a fixed random sign mask ``S`` (buffer ``feedback_flip``) with ``P(S = +1) = p``: a
    fraction ``p`` of ``B``'s entries agrees in sign with ``W``, the rest is opposite. ``p = 1`` is frSF.
    """

    name = "sc"

    def __init__(self, p: float = 1.0, scale: float | str = 1.0) -> None:
        super().__init__(scale)
        self.p = _check_fraction("p", p, allow_zero=True)

    def setup(self, layer: RuleLayer) -> None:
        super().setup(layer)
        agree = torch.rand_like(layer.weight, requires_grad=False) < self.p
        layer.register_buffer("feedback_flip", agree.to(layer.weight.dtype) * 2 - 1)

    def backward_weight(self, layer: RuleLayer) -> Tensor:
        return torch.sign(layer.weight).mul_(layer.feedback_magnitude).mul_(layer.feedback_flip)


class WeightMirror(Rule):
    """Weight mirror (Akrout et al. 2019): ``δx = Bᵀ δy``; ``B`` learns ``W`` from the layer's noise response.

    Each training step the layer is driven with ``probes`` noise inputs ``x ~ N(0, σ²I)``; its response
    ``y = W x`` gives ``y xᵀ`` with ``E[y xᵀ] = σ² W``. The mirror update is Akrout et al.'s
    ``ΔB = η_B y xᵀ − λ_B B`` with ``η_B = lr/(probes·σ²)`` and ``λ_B = lr``, i.e.
    ``B ← (1 − lr) B + lr · y xᵀ/(probes·σ²)``, whose fixed point is ``B = W`` (their
    ``(η_B σ²/λ_B) W`` with the scale set to 1, so ``δx`` keeps BP's size). Before the first training step
    the layer mirrors ``warmup`` times with a running mean (their "mirroring pass before training").
    The noise never touches the forward pass or the data.
    """

    name = "wm"

    def __init__(self, lr: float = 0.01, probes: int = 32, warmup: int = 100) -> None:
        self.lr = _check_fraction("lr", lr, allow_zero=False)
        if probes < 1 or warmup < 0:
            raise ValueError(f"probes={probes!r} must be >= 1 and warmup={warmup!r} >= 0")
        self.probes, self.warmup = int(probes), int(warmup)

    def setup(self, layer: RuleLayer) -> None:
        layer.register_buffer("feedback", _init_like_weight(layer))
        layer.register_buffer("mirrored", torch.zeros((), dtype=torch.bool, device=layer.weight.device))

    def before_forward(self, layer: RuleLayer) -> None:
        self.mirror(layer)

    @torch.no_grad()
    def mirror(self, layer: RuleLayer, steps: int = 1) -> None:
        """Run mirror steps (the warm-up first, if this layer has not mirrored yet)."""
        if not layer.mirrored:
            for t in range(self.warmup):
                layer.mirror_step(layer.feedback, self.probes, 1.0 / (t + 1))
            layer.mirrored.fill_(True)
        for _ in range(steps):
            layer.mirror_step(layer.feedback, self.probes, self.lr)

    def backward_weight(self, layer: RuleLayer) -> Tensor:
        return layer.feedback


class KolenPollack(Rule):
    """Kolen–Pollack (Kolen & Pollack 1994; Akrout et al. 2019): ``δx = Bᵀ δy``; ``B`` gets ``W``'s update.

    ``B`` is a parameter (``feedback``) whose gradient is ``W``'s local gradient ``δy xᵀ``. The optimizer
    updates both with the same learning rate and weight decay λ: ``ΔW = −η δy xᵀ − ηλW``,
    ``ΔB = −η δy xᵀ − ηλB``, so ``W − B`` shrinks by exactly ``(1 − ηλ)`` per plain SGD step. Weight decay
    is what aligns them: with λ = 0, ``W − B`` stays constant.
    """

    name = "kp"

    def setup(self, layer: RuleLayer) -> None:
        layer.register_parameter("feedback", nn.Parameter(_init_like_weight(layer)))

    def learned(self, layer: RuleLayer) -> tuple[nn.Parameter, ...]:
        return (layer.feedback,)

    def backward_weight(self, layer: RuleLayer) -> Tensor:
        return layer.feedback

    def backward(self, layer: RuleLayer, x: Tensor, grad_y: Tensor, needs: tuple[bool, bool, bool]) -> Grads:
        feedback = layer.feedback if needs[0] else None
        gx, gw, gb = layer.local_grads(x, grad_y, feedback, (needs[0], True, needs[2]))
        return gx, gw if needs[1] else None, gb, (gw,)


class ProductFeedbackAlignment(Rule):
    """Product feedback alignment (Li & Benna 2024): ``δx = Rᵀ Bᵀ δy``, so the backward weight is ``B R``.

    ``B`` (buffer ``feedback_b``, shape (out, k·out)) is fixed random with ``B Bᵀ ≈ I``; ``R`` (parameter
    ``feedback_r``, shape (k·out, in) — a kernel of k·out output channels for Conv2d) is learned from its own
    input ``x`` and the signal ``Bᵀ δy`` it receives: ``ΔR = −η (Bᵀ δy) xᵀ − ηλR`` through the same optimizer
    and weight decay as ``W``, so ``B R → W``. ``k`` is the expansion ratio. ``orthogonal=True`` draws ``B``
    with orthonormal rows (``B Bᵀ = I``); ``b_density``/``r_density`` < 1 fix random sparsity masks on
    B and R.
    With ``k = 1`` and ``B = I`` this is Kolen–Pollack. For grouped convolutions ``B`` is block-diagonal.

    The backward pass takes whichever of two equal routes costs fewer multiply-adds: per sample
    (``s = Bᵀ δy``, ``δx = Rᵀ s``, ``∂R = Σ s xᵀ``) or per step (``∂R = Bᵀ ∂W``, ``δx = (B R)ᵀ δy``).
    """

    name = "pfa"

    def __init__(
        self, k: int = 10, orthogonal: bool = False, b_density: float = 1.0, r_density: float = 1.0
    ) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k!r}: the expansion ratio must be an integer >= 1")
        self.k, self.orthogonal = k, bool(orthogonal)
        self.b_density = _check_fraction("b_density", b_density, allow_zero=False)
        self.r_density = _check_fraction("r_density", r_density, allow_zero=False)

    def setup(self, layer: RuleLayer) -> None:
        out, hidden, groups = layer.out_channels_, self.k * layer.out_channels_, layer.groups_
        w = layer.weight
        b = torch.zeros(out, hidden, device=w.device, dtype=w.dtype)
        ob, hb = out // groups, hidden // groups
        for g in range(groups):
            block = torch.empty(ob, hb, device=w.device, dtype=w.dtype)
            if self.orthogonal:
                nn.init.orthogonal_(block)
            else:
                block.normal_(0.0, 1.0 / math.sqrt(hb * self.b_density))
            b[g * ob : (g + 1) * ob, g * hb : (g + 1) * hb] = block
        if self.b_density < 1:
            b *= torch.rand_like(b) < self.b_density
        layer.register_buffer("feedback_b", b)
        r = _init_like_weight(layer, (hidden, *w.shape[1:]))
        if self.r_density < 1:
            mask = torch.rand_like(r) < self.r_density
            layer.register_buffer("feedback_r_mask", mask)
            r = r * mask / math.sqrt(self.r_density)
        layer.register_parameter("feedback_r", nn.Parameter(r))

    def learned(self, layer: RuleLayer) -> tuple[nn.Parameter, ...]:
        return (layer.feedback_r,)

    def backward_weight(self, layer: RuleLayer) -> Tensor:
        return torch.tensordot(layer.feedback_b, layer.feedback_r, dims=1)

    def backward(self, layer: RuleLayer, x: Tensor, grad_y: Tensor, needs: tuple[bool, bool, bool]) -> Grads:
        b = layer.feedback_b
        out, hidden = b.shape
        rows, w = grad_y.numel() // out, layer.weight.numel()  # rows: samples x output positions
        per_sample = rows * (out * hidden + hidden // out * w * (1 + needs[0]))  # Bᵀδy; ∂R; Rᵀ(Bᵀδy)
        per_step = hidden * w * (1 + needs[0]) + rows * w * needs[0]  # Bᵀ ∂W; B R; (B R)ᵀ δy
        if per_step < per_sample:  # the same gradients, through W's: Σ (Bᵀδy) xᵀ = Bᵀ Σ δy xᵀ
            feedback = self.backward_weight(layer) if needs[0] else None
            gx, gw, gb = layer.local_grads(x, grad_y, feedback, (needs[0], True, needs[2]))
            gr = torch.tensordot(b.t(), gw, dims=1)
            gw = gw if needs[1] else None
        else:
            _, gw, gb = layer.local_grads(x, grad_y, None, (False, needs[1], needs[2]))
            s = layer.mix_channels(grad_y, b)  # Bᵀ δy, what R receives
            gx, gr, _ = layer.local_grads(x, s, layer.feedback_r, (needs[0], True, False))
        if self.r_density < 1:
            gr = gr * layer.feedback_r_mask
        return gx, gw, gb, (gr,)


class OrthogonalPFA(ProductFeedbackAlignment):
    """PFA-o (Li & Benna 2024): PFA with ``k = 1`` and an orthogonal ``B`` (``B Bᵀ = I``)."""

    name = "pfa-o"

    def __init__(self, k: int = 1, orthogonal: bool = True) -> None:
        super().__init__(k=k, orthogonal=orthogonal)


class SparsePFA(ProductFeedbackAlignment):
    """Sparse PFA (Li & Benna 2024): PFA whose ``B`` and ``R`` keep fixed random fractions of entries."""

    name = "sparse-pfa"

    def __init__(self, k: int = 10, b_density: float = 0.1, r_density: float = 0.1) -> None:
        super().__init__(k=k, b_density=b_density, r_density=r_density)


RULES: tuple[str, ...] = tuple(_REGISTRY)
"""The rule names :func:`get_rule` accepts."""


def get_rule(rule: str | Rule, **options: object) -> Rule:
    """A rule object from a name in :data:`RULES` (with its options), or ``rule`` itself if it is one."""
    if isinstance(rule, Rule):
        if options:
            raise TypeError(f"options {sorted(options)} given with a ready rule object {rule!r}")
        return rule
    if not isinstance(rule, str) or rule not in _REGISTRY:
        raise ValueError(f"unknown rule {rule!r}; accepted: {', '.join(RULES)}")
    cls = _REGISTRY[rule]
    accepted = _option_names(cls)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"rule {rule!r} does not take option(s) {unknown}; accepted: {accepted if accepted else 'none'}"
        )
    return cls(**options)
