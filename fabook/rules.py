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
import numbers
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import Tensor, nn

from fabook.magnitudes import uniform_levels

if TYPE_CHECKING:
    from fabook.layers import RuleLayer

Grads = tuple[Tensor | None, Tensor | None, Tensor | None, tuple[Tensor | None, ...]]
"""``(δx, ∂L/∂W, ∂L/∂b, gradients of the rule's learned feedback parameters)``."""

_REGISTRY: dict[str, type[Rule]] = {}


def _option_names(cls: type) -> list[str]:
    """The keyword options a rule class's constructor takes."""
    params = inspect.signature(cls.__init__).parameters.values()
    return [p.name for p in params if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


FEEDBACK_INITS: tuple[str, ...] = ("weight", "fan_in")
"""How a rule draws its initial random feedback (its ``init`` option); see :func:`init_feedback`."""


def init_feedback(layer: RuleLayer, init: str, shape: torch.Size | tuple[int, ...] | None = None) -> Tensor:
    """A random feedback tensor ``U(−a, a)`` (default shape: the layer's weight's).

    ``init="weight"`` (the default of every rule with random feedback) takes ``a = √3 · rms(W)``, so the
    draw has the same root-mean-square as the layer's actual weight and ``‖B‖ ≈ ‖W‖`` whatever initialized
    ``W`` (torch's default, kaiming-normal fan-out as in torchvision's ResNets, ...); an all-zero ``W``
    (or a meta tensor) falls back to ``"fan_in"``. ``init="fan_in"`` takes ``a = 1/√fan_in``, torch's
    default Linear/Conv2d bound (for a default-initialized layer the two agree up to sampling noise).
    DFA's matrices are not in W's shape and keep ``1/√(input size)``.
    """
    w = layer.weight.detach()
    bound = 1.0 / math.sqrt(layer.fan_in)
    if init == "weight" and w.numel() and not w.is_meta:
        rms = float(w.double().square().mean().sqrt())
        if rms > 0:
            bound = math.sqrt(3.0) * rms
    t = torch.empty(shape if shape is not None else w.shape, device=w.device, dtype=w.dtype)
    return t.uniform_(-bound, bound)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _check_fraction(name: str, value: float, *, allow_zero: bool) -> float:
    interval = "[0, 1]" if allow_zero else "(0, 1]"
    if not _is_number(value):
        raise TypeError(f"{name}={value!r} is not a number; accepted: a number in {interval}")
    low_ok = value >= 0 if allow_zero else value > 0
    if not (low_ok and value <= 1):
        raise ValueError(f"{name}={value!r} is outside {interval}")
    return float(value)


def _check_integer(name: str, value: int, low: int, what: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name}={value!r}: {what or 'accepted is'} an integer >= {low}")
    return int(value)


def sparsity_mask(like: Tensor, density: float) -> Tensor:
    """A fixed random mask (bool, ``like``'s shape) keeping each entry with probability ``density``: the
    sparse feedback of Li & Benna's comparisons (their ``b_conn_density``); kept entries are not rescaled."""
    return torch.rand(like.shape, device=like.device) < density


def _check_init(init: str) -> str:
    if init not in FEEDBACK_INITS:
        raise ValueError(f"init={init!r}: accepted: {', '.join(map(repr, FEEDBACK_INITS))}")
    return init


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

    ``B`` is kept in the buffer ``feedback``. ``init`` says how it is drawn (:func:`init_feedback`): by
    default with the root-mean-square of the layer's actual weight, so ``Bᵀ δy`` has ``Wᵀ δy``'s size in any
    model; ``"fan_in"`` is torch's default bound ``1/√fan_in``. ``density`` < 1 keeps a fixed random fraction
    of ``B``'s entries and zeroes the rest (:func:`sparsity_mask`; Li & Benna's sparse FA).
    """

    name = "fa"

    def __init__(self, init: str = "weight", density: float = 1.0) -> None:
        self.init = _check_init(init)
        self.density = _check_fraction("density", density, allow_zero=False)

    def setup(self, layer: RuleLayer) -> None:
        b = init_feedback(layer, self.init)
        layer.register_buffer("feedback", b * sparsity_mask(b, self.density) if self.density < 1 else b)

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
    ``density`` < 1 keeps a fixed random fraction of ``D``'s entries (:func:`sparsity_mask`; Li & Benna's
    sparse DFA).
    """

    name = "dfa"

    def __init__(self, density: float = 1.0) -> None:
        self.density = _check_fraction("density", density, allow_zero=False)
        self.error: Tensor | None = None

    def setup(self, layer: RuleLayer) -> None:
        layer.register_buffer("direct_feedback", torch.empty(0, device=layer.weight.device))
        layer.register_load_state_dict_pre_hook(_resize_direct_feedback)

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "error": None}  # the last batch's error is not part of the model

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
                d = torch.empty(shape, device=x.device, dtype=layer.weight.dtype).uniform_(-bound, bound)
                layer.direct_feedback = d * sparsity_mask(d, self.density) if self.density < 1 else d
            d = layer.direct_feedback.to(e.dtype)
            gx = (e @ d.flatten(1)).view(x.shape)
        return gx, gw, gb, ()


def _resize_direct_feedback(module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
    """Load-state-dict pre-hook: make room for a saved ``direct_feedback`` of another shape."""
    saved = state_dict.get(prefix + "direct_feedback")
    if saved is not None and saved.shape != module.direct_feedback.shape:
        module.direct_feedback = torch.empty_like(saved, device=module.direct_feedback.device)


SIGN_SCALES: tuple[str, ...] = ("weight", "fan_in")
"""The named sizes of a sign rule's feedback (its ``scale`` option; a positive number is the third way)."""


def _check_scale(scale: float | str) -> float | str:
    named = isinstance(scale, str) and scale in SIGN_SCALES
    if not (named or (not isinstance(scale, str) and _is_number(scale) and scale > 0)):
        raise ValueError(
            f"scale={scale!r}: accepted: {', '.join(map(repr, SIGN_SCALES))} or a positive finite number"
        )
    return scale


class SignSymmetry(Rule):
    """Sign symmetry (Liao, Leibo & Poggio 2016): ``B = sign(W) ⊙ M``; the signs follow ``W`` every step.

    The variants differ only in the magnitudes ``M`` (subclasses below). ``scale`` sets their size ``s``;
    random magnitudes are i.i.d. uniform on (0, 2s), so their mean equals uSF's magnitude: on the 2¹⁶ evenly
    spaced levels ``(k + ½)·2s/2¹⁶``, ``k = 0 … 2¹⁶ − 1`` (:func:`fabook.magnitudes.uniform_levels`: strictly
    positive, variance within 4e-10 of the continuous uniform's; a counter-based generator whose CPU kernel
    makes brSF's redraw and ``sign(W) ⊙ M`` in one pass). ``s`` is fixed when the rule is set up on a layer
    and kept in the layer's buffer ``feedback_scale`` (saved in ``state_dict``):

    - ``scale="weight"`` (the default): ``s`` = the root-mean-square of the layer's weight at setup, so uSF's
      ``‖B‖ = ‖W‖`` (random magnitudes: mean ``s``, ``‖B‖ ≈ 1.15 ‖W‖``) whatever initialised ``W``, as FA's
      ``init="weight"`` does for its ``B``. This is what the papers' code does: Xiao et al.'s sign symmetry
      (willwx/sign-symmetry, Akrout et al.'s baseline) uses ``sign(W)·√(2/(k²·c_out))``, the std of
      torchvision's He initialisation; Li & Benna scale their sign baseline to the init std of ``W``;
      Moskovitz et al. scale the feedback to ``W``. Why it is the default: with batch norm a layer's
      backward gain relative to BP is ``‖B‖/‖W‖``, so any other size compounds with depth (``1/√fan_in``
      against He-initialised convolutions is 0.71 per layer, 0.09 over seven). An all-zero ``W`` (or a
      meta tensor) falls back to ``"fan_in"``.
    - ``scale="fan_in"``: ``s = 1/√fan_in``, the bound of torch's default initialisation (fabook's default
      before; ``‖B‖ ≈ √3 ‖W‖`` for a default-initialised layer, 0.71 ‖W‖ for a He-initialised conv).

    - ``scale=1.0`` (any positive number): ``s`` itself; 1 is Liao, Leibo & Poggio's ``|B| = 1``. Each
      layer then multiplies the error by about ``√fan_out``: fine for a few layers, but on ResNet-18 the
      weight gradients reach ~1e18 (stem ~1e24) and one SGD step makes the outputs non-finite, batch norm
      or not (BN rescales the forward signal, not this backward one). It needs Batch Manhattan
      (:class:`fabook.optim.BatchManhattan`), whose step uses only the gradients' signs — the paper's
      BN + BM recipe.

    ``density`` < 1 keeps a fixed random fraction of ``B``'s entries (buffer ``feedback_mask``,
    :func:`sparsity_mask`; Li & Benna's sparse sign feedback) and zeroes the rest, whatever the magnitudes.
    """

    def __init__(self, scale: float | str = "weight", density: float = 1.0) -> None:
        self.scale = _check_scale(scale)
        self.density = _check_fraction("density", density, allow_zero=False)

    def setup(self, layer: RuleLayer) -> None:
        w = layer.weight.detach()
        if self.density < 1:
            layer.register_buffer("feedback_mask", sparsity_mask(w, self.density))
        s = 1.0 / math.sqrt(layer.fan_in) if self.scale in SIGN_SCALES else float(self.scale)
        if self.scale == "weight" and w.numel() and not w.is_meta:
            s = float(w.double().square().mean().sqrt()) or s
        t = torch.tensor(s, device=w.device, dtype=w.dtype)
        layer.register_buffer("feedback_scale", t)
        layer.__dict__["_feedback_scale_cache"] = (t, t._version, float(t.new_tensor(s, device="cpu")))

    def _scale(self, layer: RuleLayer) -> float:
        """``s`` as a Python number, read from the buffer once per value (no device sync every step; a
        loaded ``state_dict`` or ``.to()`` gives a new value or tensor, which is read again)."""
        t = layer.feedback_scale
        cached = layer.__dict__.get("_feedback_scale_cache")
        if cached is None or cached[0] is not t or cached[1] != t._version:
            cached = (t, t._version, float(t))
            layer.__dict__["_feedback_scale_cache"] = cached
        return cached[2]

    def _draw_magnitude(self, layer: RuleLayer) -> Tensor:
        w = layer.weight
        return uniform_levels(torch.empty(w.shape, device=w.device, dtype=w.dtype), 2.0 * self._scale(layer))

    def magnitude(self, layer: RuleLayer) -> Tensor:
        return layer.feedback_magnitude

    def backward_weight(self, layer: RuleLayer) -> Tensor:
        b = torch.sign(layer.weight).mul_(self.magnitude(layer))
        return b.mul_(layer.feedback_mask) if self.density < 1 else b


class UniformSignFeedback(SignSymmetry):
    """uSF (Liao et al. 2016): ``B = sign(W) · s``, all magnitudes equal (1 in the paper: ``scale=1``)."""

    name = "usf"

    def magnitude(self, layer: RuleLayer) -> Tensor:
        return layer.feedback_scale


class BatchRandomSignFeedback(SignSymmetry):
    """brSF (Liao et al. 2016): ``B = sign(W) ⊙ M``, ``M ~ U(0, 2s)`` redrawn for every batch.

    The redraw happens in each backward pass that sends an error down (a layer whose input needs no
    gradient, such as the first one, never uses ``B``: it skips the draw); ``M`` is the buffer
    ``feedback_magnitude``. "Every batch" means every *use*: a layer applied twice in one forward pass gets
    two independent draws, one per backward through it (the buffer keeps the last).
    """

    name = "brsf"

    def setup(self, layer: RuleLayer) -> None:
        super().setup(layer)
        layer.register_buffer("feedback_magnitude", self._draw_magnitude(layer))

    def backward(self, layer: RuleLayer, x: Tensor, grad_y: Tensor, needs: tuple[bool, bool, bool]) -> Grads:
        if not needs[0]:
            return super().backward(layer, x, grad_y, needs)
        if torch._C._are_functorch_transforms_active():  # they forbid in-place writes to a buffer
            layer.feedback_magnitude = self._draw_magnitude(layer)
            return super().backward(layer, x, grad_y, needs)
        # the same numbers: M redrawn in place, and B = sign(W) ⊙ M made in the same pass over W
        high = 2.0 * self._scale(layer)
        feedback = uniform_levels(layer.feedback_magnitude, high, sign_of=layer.weight.detach())
        if self.density < 1:
            feedback.mul_(layer.feedback_mask)
        gx, gw, gb = layer.local_grads(x, grad_y, feedback, needs)
        return gx, gw, gb, ()


class FixedRandomSignFeedback(SignSymmetry):
    """frSF (Liao et al. 2016): ``B = sign(W) ⊙ M``, ``M ~ U(0, 2s)`` drawn once and kept."""

    name = "frsf"

    def setup(self, layer: RuleLayer) -> None:
        super().setup(layer)
        layer.register_buffer("feedback_magnitude", self._draw_magnitude(layer))


class SignConcordance(FixedRandomSignFeedback):
    """Partial sign concordance (Liao et al. 2016): ``B = sign(W) ⊙ S ⊙ M``.

    Like frSF, plus a fixed random sign mask ``S`` (buffer ``feedback_flip``) with ``P(S = +1) = p``: a
    fraction ``p`` of ``B``'s entries agrees in sign with ``W``, the rest is opposite. ``p = 1`` is frSF.
    """

    name = "sc"

    def __init__(self, p: float = 1.0, scale: float | str = "weight", density: float = 1.0) -> None:
        super().__init__(scale, density)
        self.p = _check_fraction("p", p, allow_zero=True)

    def setup(self, layer: RuleLayer) -> None:
        super().setup(layer)
        agree = torch.rand_like(layer.weight, requires_grad=False) < self.p
        layer.register_buffer("feedback_flip", agree.to(layer.weight.dtype) * 2 - 1)

    def magnitude(self, layer: RuleLayer) -> Tensor:
        """``S ⊙ M``, kept while neither buffer changes: ``sign(W) ⊙ (S ⊙ M)`` is exactly ``sign(W) ⊙ S ⊙ M``
        (every product is by ±1 or 0), one pass over ``W`` less each step for one W-sized cache."""
        m, flip = layer.feedback_magnitude, layer.feedback_flip
        if torch._C._are_functorch_transforms_active():  # no cache of a transform's tensors
            return m * flip
        versions = (m._version, flip._version)
        cached = layer.__dict__.get("_signed_magnitude")
        if cached is None or cached[0] is not m or cached[1] is not flip or cached[2] != versions:
            cached = (m, flip, versions, m * flip)
            layer.__dict__["_signed_magnitude"] = cached
        return cached[3]


class WeightMirror(Rule):
    """Weight mirror (Akrout et al. 2019): ``δx = Bᵀ δy``; ``B`` learns ``W`` from the layer's noise response.

    Each training step the layer is driven with ``probes`` noise inputs ``x ~ N(0, σ²I)``; its response
    ``y = W x`` gives ``y xᵀ`` with ``E[y xᵀ] = σ² W``. The mirror update is Akrout et al.'s
    ``ΔB = η_B y xᵀ − λ_B B`` with ``η_B = lr/(probes·σ²)`` and ``λ_B = lr``, i.e.
    ``B ← (1 − lr) B + lr · y xᵀ/(probes·σ²)``, whose fixed point is ``B = W`` (their
    ``(η_B σ²/λ_B) W`` with the scale set to 1, so ``δx`` keeps BP's size).

    - **Warm-up.** When the layer is made (or converted) it mirrors ``warmup`` times with a running mean
      (their "mirroring pass before training"), so ``B`` already follows ``W`` before the first step; the
      buffer ``mirrored`` records it (reset it to ``False`` after re-initializing ``W`` and the next training
      forward warms up again).
    - **When.** One mirror step per *use*: every forward pass of the layer in training mode with gradients
      enabled (a layer applied twice in one forward mirrors twice). The noise never touches the forward
      pass or the data; it comes from torch's global random stream.
    - **Noise floor.** ``y xᵀ/probes`` estimates ``W`` with noise, so ``B`` keeps a steady-state angle to
      ``W`` of about ``atan √(fan_in · lr / (probes · (2 − lr)))`` (:meth:`noise_floor_deg`): ~5° at fan-in
      50, 19° at 784, 40° at 4608 with the defaults. More ``probes`` or a smaller ``lr`` lower it. The noise
      also makes ``‖B‖ ≈ ‖W‖ / cos θ``, which compounds with depth: on a torchvision ResNet-18 (measured,
      batch 2 of 32×32) the defaults give angles of 8–50°, ``‖B‖/‖W‖`` of 1.01–1.56 and weight gradients
      27× BP's norm (finite after an SGD step at lr 0.1); ``probes=256`` gives 3–23°, 1.00–1.09 and 3.2×.

    ``init`` draws the random ``B`` before the warm-up (:func:`init_feedback`).
    """

    name = "wm"

    def __init__(self, lr: float = 0.01, probes: int = 32, warmup: int = 100, init: str = "weight") -> None:
        self.lr = _check_fraction("lr", lr, allow_zero=False)
        self.probes = _check_integer("probes", probes, 1)
        self.warmup = _check_integer("warmup", warmup, 0)
        self.init = _check_init(init)

    def setup(self, layer: RuleLayer) -> None:
        layer.register_buffer("feedback", init_feedback(layer, self.init))
        layer.register_buffer("mirrored", torch.zeros((), dtype=torch.bool, device=layer.weight.device))
        if not layer.weight.is_meta:  # a meta layer warms up at its first training forward
            self.mirror(layer, steps=0)

    def before_forward(self, layer: RuleLayer) -> None:
        try:
            self.mirror(layer)
        except RuntimeError as e:
            if "transform" not in str(e):
                raise
            raise RuntimeError(
                "weight mirror updates its feedback in place on every training forward, which torch.func "
                "transforms forbid; put the model in eval mode inside the transform (no mirror step; the "
                "rule's gradients are the same) or use loss.backward()"
            ) from e

    @torch.no_grad()
    def mirror(self, layer: RuleLayer, steps: int = 1) -> None:
        """Run mirror steps (the warm-up first, if this layer has not mirrored yet), in full precision."""
        with torch.autocast(layer.weight.device.type, enabled=False):
            if not layer.mirrored:
                for t in range(self.warmup):
                    layer.mirror_step(layer.feedback, self.probes, 1.0 / (t + 1))
                layer.mirrored.fill_(True)
            for _ in range(steps):
                layer.mirror_step(layer.feedback, self.probes, self.lr)

    def noise_floor_deg(self, layer: RuleLayer) -> float:
        """The steady-state angle between ``B`` and ``W`` that the probe noise leaves, in degrees."""
        return math.degrees(math.atan(math.sqrt(layer.fan_in * self.lr / (self.probes * (2 - self.lr)))))

    def backward_weight(self, layer: RuleLayer) -> Tensor:
        return layer.feedback


class KolenPollack(Rule):
    """Kolen–Pollack (Kolen & Pollack 1994; Akrout et al. 2019): ``δx = Bᵀ δy``; ``B`` gets ``W``'s update.

    ``B`` is a parameter (``feedback``) whose gradient is ``W``'s local gradient ``δy xᵀ``. The optimizer
    updates both with the same learning rate and weight decay λ: ``ΔW = −η δy xᵀ − ηλW``,
    ``ΔB = −η δy xᵀ − ηλB``, so ``W − B`` shrinks by exactly ``(1 − ηλ)`` per plain SGD step. Weight decay
    is what aligns them: with λ = 0, ``W − B`` stays constant.

    Which optimizers keep that contraction (``D = W − B``; measured on a 10-16-3 MLP at η = 0.05, λ = 0.1 in
    ``tests/test_rule_edges.py``, ‖D‖ after 20 steps against ``(1 − ηλ)²⁰ = 0.905``):

    - plain SGD, AdamW (decoupled decay: W and B get equal gradients, hence equal Adam steps) and Batch
      Manhattan without momentum: exactly ``D ← (1 − ηλ) D`` every step (0.905).
    - SGD or Batch Manhattan with momentum μ (the engine's default SGD has μ = 0.9): ``D`` follows the
      heavy-ball recursion ``v ← μ v + λ D``, ``D ← D − η v`` exactly: the first step shrinks by
      ``(1 − ηλ)``, later ones faster, toward ``1 − ηλ/(1 − μ)`` per step while ``ηλ/(1 − μ)²`` is small
      (0.483; it oscillates when that is large). It still decays to 0, about ``1/(1 − μ)`` times faster.
    - Adam with coupled decay (``weight_decay`` added to the gradient): no fixed contraction — ``λD`` is
      divided by W's and B's separate, gradient-dependent second moments, so ``D`` shrinks by a
      data-dependent, entry-dependent amount (0.363 here). Use AdamW to keep KP's ``(1 − ηλ)``.
    """

    name = "kp"

    def __init__(self, init: str = "weight") -> None:
        self.init = _check_init(init)

    def setup(self, layer: RuleLayer) -> None:
        layer.register_parameter("feedback", nn.Parameter(init_feedback(layer, self.init)))

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
    With ``k = 1`` and ``B = I`` this is Kolen–Pollack. For grouped convolutions ``B`` is block-diagonal
    (group g's outputs mix only group g's hidden channels, as ``R`` is a grouped kernel): a ``B`` set by hand
    with entries outside those blocks (e.g. the PFA authors' dense ``B`` over all channels) describes a path
    from one group's outputs to another group's inputs that a grouped ``W`` does not have; the backward pass
    refuses it (ValueError) rather than compute a product the layer cannot hold.
    ``R`` is drawn with ``init`` (:func:`init_feedback`); since ``B``'s rows have unit norm, ``B R`` then has
    the root-mean-square of ``W``.

    The backward pass takes whichever of two equal routes costs fewer multiply-adds: per sample
    (``s = Bᵀ δy``, ``δx = Rᵀ s``, ``∂R = Σ s xᵀ``) or per step (``∂R = Bᵀ ∂W``, ``δx = (B R)ᵀ δy``).
    """

    name = "pfa"

    def __init__(
        self,
        k: int = 10,
        orthogonal: bool = False,
        b_density: float = 1.0,
        r_density: float = 1.0,
        init: str = "weight",
    ) -> None:
        self.k = _check_integer("k", k, 1, "the expansion ratio must be")
        if not isinstance(orthogonal, bool):
            raise TypeError(f"orthogonal={orthogonal!r}: accepted: True or False")
        self.orthogonal = orthogonal
        self.b_density = _check_fraction("b_density", b_density, allow_zero=False)
        self.r_density = _check_fraction("r_density", r_density, allow_zero=False)
        self.init = _check_init(init)

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
        r = init_feedback(layer, self.init, (hidden, *w.shape[1:]))
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
        _check_grouped_feedback(layer, b)
        out, hidden = b.shape
        rows, w = grad_y.numel() // out, layer.weight.numel()  # rows: samples x output positions
        per_sample = rows * (out * hidden + hidden // out * w * (1 + needs[0]))  # Bᵀδy; ∂R; Rᵀ(Bᵀδy)
        per_step = hidden * w * (1 + needs[0]) + rows * w * needs[0]  # Bᵀ ∂W; B R; (B R)ᵀ δy
        if per_step < per_sample:  # the same gradients, through W's: Σ (Bᵀδy) xᵀ = Bᵀ Σ δy xᵀ
            feedback = self.backward_weight(layer) if needs[0] else None
            gx, gw, gb = layer.local_grads(x, grad_y, feedback, (needs[0], True, needs[2]))
            gr = torch.tensordot(b.t().to(gw.dtype), gw, dims=1)
            gw = gw if needs[1] else None
        else:
            _, gw, gb = layer.local_grads(x, grad_y, None, (False, needs[1], needs[2]))
            s = layer.mix_channels(grad_y, b)  # Bᵀ δy, what R receives
            gx, gr, _ = layer.local_grads(x, s, layer.feedback_r, (needs[0], True, False))
        if self.r_density < 1:
            gr = gr * layer.feedback_r_mask
        return gx, gw, gb, (gr,)


def _check_grouped_feedback(layer: RuleLayer, b: Tensor) -> None:
    """ValueError when a grouped layer's ``B`` has entries outside its diagonal blocks (checked once per
    value of ``B``: a new tensor or an in-place change is checked again)."""
    groups = layer.groups_
    if groups == 1:
        return
    seen = layer.__dict__.get("_checked_feedback_b")
    if seen is not None and seen[0] is b and seen[1] == b._version:
        return
    out, hidden = b.shape
    blocks = b.detach().reshape(groups, out // groups, groups, hidden // groups)
    off = blocks.abs().sum(dim=(1, 3)) * (1 - torch.eye(groups, device=b.device, dtype=b.dtype))
    if off.any():
        raise ValueError(
            f"feedback_b of shape {tuple(b.shape)} has nonzero entries outside the {groups} diagonal "
            f"blocks of shape ({out // groups}, {hidden // groups}) of a grouped convolution "
            f"(groups={groups}): R is a grouped kernel, so B R cannot connect one group's outputs to another "
            "group's inputs; "
            "accepted: a block-diagonal B (as the rule draws it), or groups=1"
        )
    layer.__dict__["_checked_feedback_b"] = (b, b._version)


class OrthogonalPFA(ProductFeedbackAlignment):
    """PFA-o (Li & Benna 2024): PFA with ``k = 1`` and an orthogonal ``B`` (``B Bᵀ = I``); both are fixed."""

    name = "pfa-o"

    def __init__(self, init: str = "weight") -> None:
        super().__init__(k=1, orthogonal=True, init=init)


class SparsePFA(ProductFeedbackAlignment):
    """Sparse PFA (Li & Benna 2024): PFA whose ``B`` and ``R`` keep fixed random fractions of entries."""

    name = "sparse-pfa"

    def __init__(
        self, k: int = 10, b_density: float = 0.1, r_density: float = 0.1, init: str = "weight"
    ) -> None:
        super().__init__(k=k, b_density=b_density, r_density=r_density, init=init)


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
