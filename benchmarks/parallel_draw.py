"""brSF's magnitude draw in parallel: a numba kernel measured against fabook's serial draw (not merged).

brSF redraws one magnitude per weight every batch from numpy's PCG64 (:func:`fabook.rules.uniform_levels`),
a serial generator. The kernel here reproduces that stream bit for bit on any number of threads: PCG64 is a
128-bit linear congruential generator, so a thread jumps to the start of its range of words in O(log n)
steps (Brown 1994) and generates it; each 16-bit field ``k`` becomes ``fma(k, step, offset)`` (torch's CPU
``add`` with ``alpha`` rounds once, as an FMA does, on this machine) and ``sign(W) ⊙ M`` is made in the same
pass. The script checks it equals fabook's draw, bit for bit, then times it alone and inside a training step
(MLP 784-1000-1000-10, batch 128, SGD with momentum and decay), paired and interleaved against the serial
draw.

On the 2-core machine (2026-12-06, AMD EPYC) it was faster alone (1M magnitudes drawn and signed: 0.43–0.66 ms
on 2 threads, 0.60–1.06 serial) and no faster in the step (brSF 1.16–1.20× torch serial, 1.16–1.21× with the
kernel): torch's OpenMP worker spins after each parallel op and the kernel's second thread competes with it.
What does pay is less work per magnitude: the variant *counter hash* (SplitMix64 of a counter, one thread,
the draw, levels and signs in one pass: 0.22 ms alone) put brSF at 1.07× (serial 1.16×) in the same rounds —
but it is another stream, so adopting it changes fabook's numerics and every recorded result.

``python benchmarks/parallel_draw.py [--threads 1,2] [--rounds 30]``
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

import fabook
from fabook import rules

MIN_WORDS = 8192
"""Words a thread is given at least (handing work to a thread costs about as much as drawing ~10,000)."""

CHUNK = 1024
"""Words drawn before their magnitudes are signed (16 KiB of float32 magnitudes: they stay in L1)."""

_MULT = 0x2360ED051FC65DA44385DF649FCCF645  # PCG64's 128-bit multiplier (numpy's, O'Neill's default)
_MASK64 = 2**64 - 1


@intrinsic
def _mulhi(typingctx, a, b):
    """The high 64 bits of a 64 × 64-bit product (one machine multiply)."""

    def codegen(context, builder, signature, args):
        i128 = ir.IntType(128)
        p = builder.mul(builder.zext(args[0], i128), builder.zext(args[1], i128))
        return builder.trunc(builder.lshr(p, ir.Constant(i128, 64)), ir.IntType(64))

    return types.uint64(types.uint64, types.uint64), codegen


@intrinsic
def _level(typingctx, word, step, offset):
    """``fma(k, step, offset)``, ``k`` the low 16 bits of ``word`` read as a signed integer (exact in any
    float type), one rounding as torch's vectorised ``add`` with ``alpha`` rounds."""

    def codegen(context, builder, signature, args):
        ty = context.get_value_type(signature.return_type)
        k = builder.sitofp(builder.trunc(args[0], ir.IntType(16)), ty)
        fma = builder.module.declare_intrinsic("llvm.fma", [ty], ir.FunctionType(ty, [ty, ty, ty]))
        return builder.call(fma, [k, args[1], args[2]])

    return step(types.uint64, step, step), codegen


_ONE, _TWO, _THREE = np.uint64(1), np.uint64(2), np.uint64(3)
_FIELD = np.uint64(0xFFFF)
_M_HI, _M_LO = np.uint64(_MULT >> 64), np.uint64(_MULT & _MASK64)


@numba.njit(inline="always")
def _mul(ah, al, bh, bl):
    """128-bit product modulo 2¹²⁸, each number as (high, low) 64-bit halves."""
    return _mulhi(al, bl) + ah * bl + al * bh, al * bl


@numba.njit(inline="always")
def _add(ah, al, bh, bl):
    """128-bit sum modulo 2¹²⁸."""
    lo = al + bl
    return ah + bh + np.uint64(lo < al), lo


@numba.njit(inline="always")
def _start(sh, sl, ih, il, first):
    """The state before word ``first`` of the stream from state ``(sh, sl)``, increment ``(ih, il)``: the
    step ``x ↦ A·x + C`` raised to the power ``first`` by repeated squaring (Brown 1994), O(log first)."""
    d = np.uint64(first)
    ah, al, ch, cl = np.uint64(0), _ONE, np.uint64(0), np.uint64(0)
    mh, ml, ph, pl = _M_HI, _M_LO, ih, il
    while d:
        if d & _ONE:
            ah, al = _mul(ah, al, mh, ml)
            th, tl = _mul(ch, cl, mh, ml)
            ch, cl = _add(th, tl, ph, pl)
        th, tl = _add(mh, ml, np.uint64(0), _ONE)
        ph, pl = _mul(th, tl, ph, pl)
        mh, ml = _mul(mh, ml, mh, ml)
        d >>= _ONE
    th, tl = _mul(ah, al, sh, sl)
    return _add(th, tl, ch, cl)


@numba.njit(inline="always")
def _next(xh, xl, ih, il):
    """One step of numpy's PCG64: the new state, then its output word (XSL-RR)."""
    th, tl = _mul(xh, xl, _M_HI, _M_LO)
    xh, xl = _add(th, tl, ih, il)
    rot = xh >> np.uint64(58)
    v = xh ^ xl
    return xh, xl, (v >> rot) | (v << ((np.uint64(64) - rot) & np.uint64(63)))


@numba.njit(inline="always")
def _fill(xh, xl, ih, il, step, offset, out, first, last):
    """Words ``first … last − 1`` from state ``(xh, xl)`` as ``out``'s magnitudes; the state after."""
    n = out.size
    full = n // 4
    for w in range(first, last):
        xh, xl, word = _next(xh, xl, ih, il)
        if w < full:  # written out, at unsigned indices (no wraparound test): 25 % faster than a loop
            i = np.uint64(4 * w)
            out[i] = _level(word, step, offset)
            out[i + _ONE] = _level(word >> np.uint64(16), step, offset)
            out[i + _TWO] = _level(word >> np.uint64(32), step, offset)
            out[i + _THREE] = _level(word >> np.uint64(48), step, offset)
        else:  # the last word of a size that is not a multiple of four
            for j in range(n - 4 * w):
                out[4 * w + j] = _level(word >> np.uint64(16 * j), step, offset)
    return xh, xl


@numba.njit(inline="always")
def _signed(w, m):
    """``sign(w)·m`` as torch computes it for ``m`` > 0 (``sign`` of 0, −0 and NaN is +0): selects, not
    branches (the signs are random)."""
    return m if w > 0 else (-m if w < 0 else m - m)


@numba.njit(nogil=True)
def _sign(weight, out, signed):
    """``signed = sign(weight)·out``, elementwise (the loop vectorises)."""
    for i in range(out.size):
        signed[i] = _signed(weight[i], out[i])


@numba.njit(nogil=True)
def _levels(sh, sl, ih, il, step, offset, out, first, last, weight, signed):
    """Words ``first … last − 1`` of :func:`draw` into ``out``, and ``signed[i] = sign(weight[i])·out[i]``,
    a :data:`CHUNK` of words at a time while it is in cache."""
    xh, xl = _start(sh, sl, ih, il, first)
    for c in range(first, last, CHUNK):
        end = min(c + CHUNK, last)
        xh, xl = _fill(xh, xl, ih, il, step, offset, out, c, end)
        lo, hi = 4 * c, min(4 * end, out.size)
        _sign(weight[lo:hi], out[lo:hi], signed[lo:hi])  # on slices: a loop over indices did not vectorise


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(workers, thread_name_prefix="parallel-draw")


def _level_constants(high: float, dtype: np.dtype) -> tuple:
    """``step`` and ``offset`` of the levels ``offset + k·step`` on (0, high), in ``dtype``, as
    :func:`fabook.rules.uniform_levels` forms them."""
    step = high / 2**16
    return dtype.type(step), dtype.type(step * (2**15 + 0.5))


def draw(seed: int, high: float, out: np.ndarray, threads: int, weight: np.ndarray) -> np.ndarray:
    """``out`` ← the magnitudes of ``PCG64(seed)`` on (0, high); returns ``sign(weight) ⊙ out``."""
    state = np.random.PCG64(seed).state["state"]
    s, inc = state["state"], state["inc"]
    args = (np.uint64(s >> 64), np.uint64(s & _MASK64), np.uint64(inc >> 64), np.uint64(inc & _MASK64))
    args += _level_constants(high, out.dtype)
    signed = np.empty_like(out)
    words = (out.size + 3) // 4
    threads = max(1, min(threads, words // MIN_WORDS))
    cuts = [words * i // threads for i in range(threads + 1)]
    jobs = [_pool(threads - 1).submit(_levels, *args, out, cuts[i], cuts[i + 1], weight, signed)
            for i in range(1, threads)]  # fmt: skip
    _levels(*args, out, cuts[0], cuts[1], weight, signed)
    for job in jobs:
        job.result()
    return signed


_GOLDEN, _MIX1, _MIX2 = (
    np.uint64(0x9E3779B97F4A7C15),
    np.uint64(0xBF58476D1CE4E5B9),
    np.uint64(0x94D049BB133111EB),
)


@numba.njit(nogil=True)
def _counter(seed, step, offset, out, weight, signed):
    for i in range(out.size // 4):  # sizes that are multiples of 4 (a sketch: the step's weights are)
        z = seed + np.uint64(i + 1) * _GOLDEN  # SplitMix64's i-th output: a hash of the counter
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
        for j in range(4):
            m = _level(z >> np.uint64(16 * j), step, offset)
            out[4 * i + j] = m
            signed[4 * i + j] = _signed(weight[4 * i + j], m)


def counter_draw(seed: int, high: float, out: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """The same levels and ``sign(W) ⊙ M`` from a counter-based hash (SplitMix64), one thread, one pass: a
    *different* stream from fabook's, timed to see what a cheaper generator would buy."""
    signed = np.empty_like(out)
    _counter(np.uint64(seed), *_level_constants(high, out.dtype), out, weight, signed)
    return signed


def torch_seed() -> int:
    """The seed fabook's draw takes from torch's generator."""
    return torch.randint(0, 2**63 - 1, (), dtype=torch.int64).item()


def matches_fabook(n: int, threads: int, high: float = 0.07) -> bool:
    """Whether the kernel's ``n`` magnitudes and ``sign(W) ⊙ M`` (some ``W`` zero) equal fabook's bit for bit,
    from the same torch seed."""
    w = torch.randn(n)
    w[::7] = 0.0
    torch.manual_seed(n + threads)
    m = rules.uniform_levels(torch.empty(n), high)
    torch.manual_seed(n + threads)
    out = np.empty(n, np.float32)
    b = draw(torch_seed(), high, out, threads, w.numpy())
    same = np.array_equal(out.view(np.int32), m.numpy().view(np.int32))
    return same and torch.equal(torch.from_numpy(b), torch.sign(w).mul_(m))


def check() -> None:
    """:func:`matches_fabook` at 1–3 threads, for a large size and one with a partial last word."""
    for n in (1_000_000, 4 * rules.PCG64_WORDS + 3):
        for threads in (1, 2, 3):
            if not matches_fabook(n, threads):
                raise SystemExit(f"the kernel's draw differs from fabook's (n={n}, threads={threads})")
    print("kernel == fabook's draw, bit for bit (1M and 32,771 magnitudes; 1, 2, 3 threads)")


DRAW: tuple[str, int] = ("serial", 0)
"""The draw in brSF's backward: ``("serial", 0)`` fabook's own, ``("kernel", threads)`` the parallel PCG64
kernel (fabook's numbers), ``("counter", 1)`` the counter hash (other numbers)."""


def backward(self, layer, x, grad_y, needs):
    """brSF's backward with the draw :data:`DRAW` names (the layer's own steps otherwise)."""
    kind, threads = DRAW
    if kind == "serial" or not needs[0]:
        return SERIAL(self, layer, x, grad_y, needs)
    m, w = layer.feedback_magnitude.view(-1).numpy(), layer.weight.detach().reshape(-1).numpy()
    seed, high = torch_seed(), 2.0 * self._scale(layer)
    b = draw(seed, high, m, threads, w) if kind == "kernel" else counter_draw(seed, high, m, w)
    return (*layer.local_grads(x, grad_y, torch.from_numpy(b).view_as(layer.weight), needs), ())


SERIAL = rules.BatchRandomSignFeedback.backward


def alone(threads: list[int], n: int = 1_000_000, repeats: int = 50) -> None:
    """Milliseconds to draw and sign ``n`` magnitudes: fabook's route, and the kernel on each thread count."""
    w, m = torch.randn(n), torch.empty(n)

    def per_call(fn) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start) / repeats * 1e3

    print(f"\n{n:,} magnitudes drawn and signed, alone (torch threads {torch.get_num_threads()}):")
    print(f"  fabook (serial): {per_call(lambda: torch.sign(w).mul_(rules.uniform_levels(m, 0.07))):.3f} ms")
    for t in threads:
        ms = per_call(functools.partial(draw, 0, 0.07, m.numpy(), t, w.numpy()))
        print(f"  kernel, {t} thread(s): {ms:.3f} ms")
    ms = per_call(functools.partial(counter_draw, 0, 0.07, m.numpy(), w.numpy()))
    print(f"  counter hash (another stream), 1 thread: {ms:.3f} ms")


def in_step(threads: list[int], rounds: int) -> None:
    """Paired, interleaved step times of plain torch, frSF and brSF (serial, kernel and counter draws)."""
    global DRAW
    import rule_overhead as cost  # its MLP, optimizer and step (benchmarks/ is on the path of this script)

    rules.BatchRandomSignFeedback.backward = backward
    x, y = torch.randn(128, 784), torch.randint(0, 10, (128,))
    variants = {"torch": ("torch", ("serial", 0)), "frsf": ("frsf", ("serial", 0))}
    variants["brsf serial"] = ("brsf", ("serial", 0))
    variants |= {f"brsf kernel {t}": ("brsf", ("kernel", t)) for t in threads}
    variants["brsf counter hash (another stream)"] = ("brsf", ("counter", 1))
    models = {}
    for name, (rule, _) in variants.items():
        torch.manual_seed(0)
        model = cost.build_model("mlp", 1000)
        model = model if rule == "torch" else fabook.convert(model, rule)
        models[name] = cost.Variant(rule, model, cost.make_optimizer(model))

    def run(name: str, steps: int) -> float:
        global DRAW
        DRAW = variants[name][1]
        start = time.perf_counter()
        for _ in range(steps):
            cost.train_step(models[name], x, y)
        return (time.perf_counter() - start) / steps * 1e3

    names = list(variants)
    for name in names:
        run(name, 5)
    times = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            times[name].append(run(name, 10))
    DRAW = ("serial", 0)
    print(
        f"\nMLP 784-1000-1000-10, batch 128, {torch.get_num_threads()} torch threads, {rounds} paired rounds:"
    )
    print("| variant | median ms | paired ratio to torch [IQR] |\n|---|---|---|")
    for name in names:
        ratios = [a / b for a, b in zip(times[name], times["torch"], strict=True)]
        q1, q2, q3 = statistics.quantiles(ratios, n=4)
        print(f"| {name} | {statistics.median(times[name]):.2f} | {q2:.3f} [{q1:.3f}–{q3:.3f}] |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--threads", default="1,2", help="kernel thread counts, comma-separated")
    p.add_argument("--rounds", type=int, default=30)
    args = p.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    check()
    alone(threads)
    in_step(threads, args.rounds)


if __name__ == "__main__":
    main()
