"""The sign rules' random magnitudes: i.i.d. uniform levels from a counter-based generator.

brSF redraws a magnitude for every weight in every batch, so the draw is a cost of each step. It is
SplitMix64 (Steele, Lea & Flood 2014; the output function of Vigna's ``splitmix64``) applied to a counter:
word ``i`` of a draw is ``mix(key + (i + 1)·γ)``, where ``key`` is one 63-bit draw of torch's CPU generator
(so ``torch.manual_seed`` fixes every draw, on every device and at any thread count) and each word makes four
magnitudes from its 16-bit fields. Word ``i`` needs nothing of word ``i − 1``: on CPU a numba kernel makes the
words, the levels and ``sign(W) ⊙ M`` in one pass over ``W``; elsewhere the same numbers come from torch ops.
"""

from __future__ import annotations

import numba
import numpy as np
import torch
from torch import Tensor

# SplitMix64's increment γ (2⁶⁴/φ, odd) and the two multipliers of its mix
GOLDEN, MIX1, MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB

LEVELS = 2**16
"""How many levels a magnitude takes, ``(k + ½)·high/2¹⁶`` for the 16-bit ``k``."""

_KERNEL_DTYPES = (torch.float32, torch.float64)
_GOLDEN, _MIX1, _MIX2 = np.uint64(GOLDEN), np.uint64(MIX1), np.uint64(MIX2)


@numba.njit(inline="always")
def _word(key, i):
    """SplitMix64's ``i``-th output (from 0) for the state ``key``: a hash of the counter."""
    z = key + np.uint64(i + 1) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@numba.njit(inline="always")
def _put(z, j, e, step, out, weight, signed, with_sign):
    """``out[e]`` ← ``(k + ½)·step`` for the ``j``-th 16-bit field ``k`` of ``z`` (in float64, rounded once
    to ``out``'s dtype); with ``with_sign`` also ``signed[e] = sign(weight[e])·out[e]`` as torch computes it
    (``sign`` of ±0 and NaN is +0), by selects, not branches: the signs are random."""
    out[e] = (np.float64((z >> np.uint64(16 * j)) & np.uint64(0xFFFF)) + 0.5) * step
    if with_sign:
        v, w = out[e], weight[e]
        signed[e] = v if w > 0 else (-v if w < 0 else v - v)


@numba.njit(cache=True, nogil=True)
def _fill(key, step, out, weight, signed, with_sign):
    """Element ``4i + j`` of ``out`` from field ``j`` of word ``i`` (and of ``signed``, see :func:`_put`)."""
    n = out.size
    full = n // 4
    for i in range(full):
        z = _word(key, i)
        for j in range(4):
            _put(z, j, 4 * i + j, step, out, weight, signed, with_sign)
    if n > 4 * full:
        z = _word(key, full)
        for j in range(n - 4 * full):
            _put(z, j, 4 * full + j, step, out, weight, signed, with_sign)


def _signed_int64(value: int) -> int:
    return value - 2**64 if value >= 2**63 else value


def _shift_right(z: Tensor, bits: int) -> Tensor:
    """The logical right shift of int64 words (torch's ``>>`` is arithmetic)."""
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def words(key: int, n: int, device: torch.device | str = "cpu") -> Tensor:
    """The first ``n`` SplitMix64 words for ``key``, as int64, from torch ops (any device)."""
    z = torch.arange(1, n + 1, dtype=torch.int64, device=device) * _signed_int64(GOLDEN) + _signed_int64(key)
    z = (z ^ _shift_right(z, 30)) * _signed_int64(MIX1)
    z = (z ^ _shift_right(z, 27)) * _signed_int64(MIX2)
    return z ^ _shift_right(z, 31)


def _levels_torch(key: int, out: Tensor, high: float) -> None:
    n = out.numel()
    k = words(key, (n + 3) // 4, out.device).view(torch.int16)[:n].to(torch.int32) & 0xFFFF  # little-endian
    out.copy_(((k.double() + 0.5) * (high / LEVELS)).view(out.shape))


def draw_key() -> int:
    """A draw's key: one draw of torch's CPU generator."""
    return int(torch.randint(0, 2**63 - 1, (), dtype=torch.int64).item())


def uniform_levels(out: Tensor, high: float, sign_of: Tensor | None = None) -> Tensor:
    """``out`` filled, in place, with i.i.d. draws from the 2¹⁶ levels ``(k + ½)·high/2¹⁶`` of (0, high).

    Returns ``out``; with ``sign_of`` (a tensor of ``out``'s shape) returns ``sign(sign_of) ⊙ out`` instead,
    made in the same pass on CPU, equal bit for bit to ``torch.sign(sign_of) * out``. Element ``e`` (in
    row-major order, whatever the memory layout) is the field ``e mod 4`` of word ``⌊e/4⌋``.
    """
    key = draw_key()
    functorch = torch._C._are_functorch_transforms_active()  # its tensors have no storage for numba
    if out.device.type != "cpu" or out.dtype not in _KERNEL_DTYPES or functorch:
        _levels_torch(key, out, high)
        return out if sign_of is None else torch.sign(sign_of).mul_(out)
    in_place = out.is_contiguous()
    dst = out.detach() if in_place else torch.empty(out.shape, dtype=out.dtype)
    signed = dst if sign_of is None else torch.empty(out.shape, dtype=out.dtype)
    w = dst if sign_of is None else sign_of.detach().contiguous()
    arrays = (t.view(-1).numpy() for t in (dst, w, signed))
    _fill(np.uint64(key), high / LEVELS, *arrays, sign_of is not None)
    if not in_place:
        out.copy_(dst)
    return out if sign_of is None else signed
