"""Train-step time and peak memory of every learning rule against the same model in plain torch.

One run measures, interleaved and repeated, the train step (forward, cross-entropy, backward, SGD step with
momentum and weight decay) of each rule against the same model built from plain ``torch.nn`` layers, for

- ``mlp``: 784-1000-1000-10 with ReLU, batch 128;
- ``resnet20``: a narrow CIFAR ResNet-20 (``--width``, default 0.5: 8/16/32 channels), batch 64, 3x32x32;

on CPU and, with ``--device auto`` when a GPU is at hand, on CUDA. Data are one fixed random batch.

**Timing.** Every variant (plain torch — the unconverted model, ``nn.Linear``/``nn.Conv2d`` —, then each rule
made by :func:`fabook.convert` from that same model, ``bp`` included) gets its own SGD optimizer and
``--warmup`` untimed steps (WM's mirroring warm-up happens there). Then, ``--repeats`` times, the variants run
in a fresh random order; each runs 1 untimed step (to bring its tensors back into cache; skipped when plain
torch's step takes over 0.25 s), then ``--steps`` timed steps (``torch.cuda.synchronize`` before and after on
CUDA). A variant whose last warm-up step took over 2x plain torch's (PFA) runs proportionally fewer timed
steps, at least 1, so that it does not dominate the run. Each timed block records wall time
(``perf_counter``) and this process's CPU time (``process_time``, all its threads).

``ratio = median(rule) / median(torch)``, the medians over repeats of the per-step times, on one clock:
``--clock auto`` takes CPU time for ``--device cpu`` with 1 thread — on a CPU shared with other processes
it is far less disturbed by them than wall time, and with 1 thread it counts only the work done — and wall
time otherwise (CUDA; or several threads, where OpenMP's spin-waiting inflates CPU time). Both medians are
printed. ``paired ratio`` gives the median and interquartile range of the per-repeat ratios
``t_rule / t_torch`` (same repeat, so drifts in machine load cancel): how much to trust the ratio (with few
repeats it is often closer to the truth than the ratio of medians, which pass/fail uses).

**Peak memory** (one extra step per variant, after the timing): *resting* bytes — the model's parameters and
buffers plus the optimizer state (momentum buffers), counted by unique storage — plus the *step's* peak: the
most memory the step allocates above what was allocated when it started (the gradients are freed before,
``zero_grad(set_to_none=True)``, so the step's peak includes them, the saved activations and every
temporary). On CUDA the step's peak is ``torch.cuda.max_memory_allocated() - memory_allocated()`` around the
step; on CPU it is the maximum of the running sum of the CPU allocator's allocation/free events recorded by
``torch.profiler`` (``profile_memory=True``) over the step. ``peak-memory ratio`` is ``resting + step peak``
against plain torch's: it includes the rule's persistent feedback state (FA's B, KP's B and its momentum,
PFA's R, ...), which for the MLP, whose memory is mostly weights, is already 1.28x for one W-sized buffer.
``step-only`` is the step's peak alone against torch's: the activations, gradients and temporaries of the
step, where an implementation's overhead shows. The memory target (<= 1.10x for all rules but PFA k = 10
and sparse PFA) is checked on ``step-only``; both are printed.

**Theory** (``MAC ratio``): multiply-adds of one train step under the rule divided by plain torch's, counted
per layer from the layer shapes (forward ``W x``; ``δy xᵀ``; ``Bᵀ δy`` where the layer's input needs a
gradient — not for the first layer). For PFA with expansion k a layer of shape (out, in) at P output
positions costs, per sample, ``out·k·out·P`` for ``Bᵀ δy``, ``k·out·in·P`` for ``Rᵀ(Bᵀ δy)`` and
``k·out·in·P`` for R's gradient, in place of ``out·in·P`` for ``Wᵀ δy`` (the per-sample route, fabook's
implementation when this script was written).
``routed`` is the cost if each layer took the cheaper of that and the product route — ``∂R = Bᵀ ∂W``
(``k·out·out·in`` per step) and ``δx = (B R)ᵀ δy`` (``k·out·out·in`` per step for ``B R``, then
``out·in·P`` per sample), exact rewrites whose cost does not grow with batch x positions. DFA's ``D e``
costs ``classes·numel(x)``; WM's mirror step ``2·probes·numel(W)`` per step. Elementwise work
(activations, BatchNorm, the optimizer, sign rules' ``sign(W)·M``, brSF's redraw, WM's ``lerp``) is not
counted, so the MAC ratio predicts the step-time ratio only where matmuls dominate.

**KP's floor** (row ``floor:kp``, with ``kp`` in the main study): plain torch whose every weight has a
W-shaped twin that gets a copy of the weight's gradient and its own optimizer update — KP's ``B`` without
the rule layer. No implementation of KP that lets the optimizer update ``B`` can cost less.

**BioTorch** (``--biotorch``, on when the package imports): the same step through
``biotorch.module.biomodule.BioModule(model, mode)`` for the rules BioTorch also has (fa, usf, brsf, frsf),
rows named ``biotorch:<rule>``, timed in the same interleaved rounds. It installs with
``pip install --no-deps biotorch``.

**Scaling** (``--scaling``): the MLP again at hidden widths ``--widths`` (batch 128) and batch sizes
``--batches`` (width 1000), rows marked ``study: "scaling"`` (the default rows: ``"main"``).

**Provenance** (``--json``): the machine (host, CPU model, cores), torch threads, the date, the commit (and
whether the tree had changes), the torch, Python and BioTorch versions, the device, and the load
(``uptime``) before and after the run. ``benchmarks/rule_costs_page.py`` turns the file into the book page.

Usage::

    python benchmarks/rule_overhead.py --device cpu --threads 1 --json overhead.json
    python benchmarks/rule_overhead.py --device cpu --threads 1 --scaling --json benchmarks/results/cpu.json
    python benchmarks/rule_overhead.py --device cuda --repeats 15 --steps 50
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import gc
import importlib.util
import io
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fabook, not an installed one
import fabook  # noqa: E402
from fabook.models import build  # noqa: E402
from fabook.results import cpu_model, write_json  # noqa: E402
from fabook.rules import get_rule  # noqa: E402

TIME_TARGETS = {
    "bp": 1.10,
    "fa": 1.10,
    "usf": 1.10,
    "brsf": 1.15,  # its redraw of a weight-sized random matrix every batch is the rule itself
    "frsf": 1.10,
    "sc": 1.10,
    "wm": 1.30,
    "pfa-o": 1.30,
}
"""Step-time targets (ratio to plain torch); rules not listed are reported without one (KP: below)."""

KP_FLOOR_TARGET = 1.05
"""KP's target: its step time at most this multiple of its floor's (``floor:kp``, timed in the same run)."""

MEMORY_TARGET = 1.10
NO_MEMORY_TARGET = ("pfa", "sparse-pfa")
PFA_RULES = ("pfa", "pfa-o", "sparse-pfa")
"""A step's peak memory <= 1.10x plain torch's for every rule but PFA (k = 10, dense or sparse)."""

MODEL_SPECS = {
    "mlp": {"input_shape": (784,), "batch": 128},
    "resnet20": {"input_shape": (3, 32, 32), "batch": 64},
}
NUM_CLASSES = 10
DEFAULT_STEPS = {"cpu": {"mlp": 10, "resnet20": 3}, "cuda": {"mlp": 100, "resnet20": 30}}
BIOTORCH_RULES = ("fa", "usf", "brsf", "frsf")
"""Rules BioTorch implements under the same name (its dfa needs the targets in forward: not timed)."""


@dataclass
class Variant:
    """One model under test: plain torch or a rule, with its own optimizer."""

    rule: str
    model: nn.Module
    optimizer: torch.optim.Optimizer
    times: list[float] = field(default_factory=list)  # wall seconds per step, one per repeat
    cpu_times: list[float] = field(default_factory=list)  # process CPU seconds per step, one per repeat
    estimate: float = 0.0  # seconds of the last warm-up step
    steps: int = 0  # timed steps per repeat


@dataclass
class Row:
    model: str
    device: str
    rule: str
    width: float  # MLP hidden units, ResNet channel multiplier
    batch: int
    study: str  # "main" or "scaling"
    steps: int  # timed steps per repeat
    ms: float  # median wall ms per step
    cpu_ms: float  # median process CPU ms per step
    wall_ratio: float
    cpu_ratio: float
    clock: str  # which of the two `ratio` is: "wall" or "cpu"
    ratio: float
    paired_ratio: tuple[float, float, float]  # quartiles of the per-repeat t_rule / t_torch
    target: float | None
    passed: bool | None
    mac_ratio: float
    mac_ratio_routed: float
    mem_mb: float
    mem_ratio: float
    step_mem_ratio: float
    mem_passed: bool | None
    times_ms: list[float]
    cpu_times_ms: list[float]
    loss: float
    target_of: str = "torch"  # "torch", or "floor" (KP's target: its floor's ratio x KP_FLOOR_TARGET)
    vs_biotorch: float | None = None  # this rule's step time / BioTorch's same rule's (ratio of medians)
    vs_biotorch_paired: tuple[float, float, float] | None = None  # quartiles of per-repeat t / t_biotorch


def build_model(name: str, width: float) -> nn.Module:
    spec = MODEL_SPECS[name]
    if name == "mlp":
        return build("mlp", spec["input_shape"], NUM_CLASSES, width=int(width), depth=2)
    return build("resnet20", spec["input_shape"], NUM_CLASSES, width=width)


def biotorch_model(plain: nn.Module, rule: str) -> nn.Module:
    """``plain`` converted by BioTorch (a copy; its conversion report silenced)."""
    from biotorch.module.biomodule import BioModule

    with contextlib.redirect_stdout(io.StringIO()):
        return BioModule(copy.deepcopy(plain), mode=rule)


class KPFloor(nn.Module):
    """Plain torch plus the part of KP's cost no implementation can avoid: every Linear/Conv2d weight gets a
    W-shaped twin (KP's ``B``) that receives a copy of the weight's gradient and its own optimizer update,
    while the layers stay ``torch.nn``'s. Holds a copy of ``plain``."""

    def __init__(self, plain: nn.Module) -> None:
        super().__init__()
        self.net = copy.deepcopy(plain)
        weights = [m.weight for m in self.net.modules() if type(m) in (nn.Linear, nn.Conv2d)]
        self.twins = nn.ParameterList([nn.Parameter(w.detach().clone()) for w in weights])
        for w, twin in zip(weights, self.twins, strict=True):
            w.register_post_accumulate_grad_hook(lambda w, t=twin: setattr(t, "grad", w.grad.clone()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)


def train_step(v: Variant, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    v.optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(v.model(x), y)
    loss.backward()
    v.optimizer.step()
    return loss


def synchronizer(device: torch.device):
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


# ---------------------------------------------------------------------------------------------- memory


def resting_bytes(v: Variant) -> int:
    """Bytes of the model's parameters, buffers and optimizer state, each storage counted once."""
    seen: dict[int, int] = {}
    tensors = [*v.model.parameters(), *v.model.buffers()]
    for state in v.optimizer.state.values():
        tensors += [t for t in state.values() if isinstance(t, torch.Tensor)]
    for t in tensors:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def step_peak_bytes(v: Variant, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> int:
    """Highest memory one train step allocates above what was allocated when it started."""
    v.optimizer.zero_grad(set_to_none=True)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        train_step(v, x, y)
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - before
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        train_step(v, x, y)
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    current = peak = 0
    for e in events:
        if e.device_type() == torch.autograd.DeviceType.CPU:
            current += e.nbytes()
            peak = max(peak, current)
    return peak


# ---------------------------------------------------------------------------------------------- theory


@dataclass
class LayerShape:
    weight_numel: int  # out * in/groups * kh * kw
    out: int
    positions: int  # output positions per sample (1 for Linear)
    input_numel: int  # per sample
    needs_input_grad: bool


def layer_shapes(model: nn.Module, input_shape: tuple[int, ...], device: torch.device) -> list[LayerShape]:
    """The weighted layers of a plain model, from a forward pass of one sample."""
    shapes: list[LayerShape] = []

    def hook(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
        x, w = args[0], module.weight
        positions = output[0, 0].numel() if isinstance(module, nn.Conv2d) else output[0].numel() // w.shape[0]
        shapes.append(LayerShape(w.numel(), w.shape[0], positions, x[0].numel(), x.requires_grad))

    handles = [m.register_forward_hook(hook) for m in model.modules() if type(m) in (nn.Linear, nn.Conv2d)]
    was_training = model.training
    model.eval()
    try:
        model(torch.randn(1, *input_shape, device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return shapes


def step_macs(shapes: list[LayerShape], rule: str, batch: int, routed: bool = False) -> float:
    """Multiply-adds of one train step (forward + backward) under ``rule`` ('torch' for plain torch).

    PFA's cost is fabook's route (``Bᵀ δy`` per sample, then ``R``'s gradient and ``Rᵀ(Bᵀ δy)``); with
    ``routed`` each layer takes the cheaper of that and the product route (``∂R = Bᵀ ∂W``, ``δx`` through the
    kernel ``B R``), whose cost does not grow with batch x positions (see benchmarks/README.md).
    """
    total = 0.0
    rule_obj = None if rule in ("torch", "dfa") else get_rule(rule)
    opts = rule_obj.options() if rule_obj is not None else {}
    k = getattr(rule_obj, "k", None)  # PFA-o fixes k = 1 without taking it as an option
    for s in shapes:
        rows = batch * s.positions  # samples x output positions
        w, dx = s.weight_numel, s.needs_input_grad
        total += 2 * rows * w  # forward W x, and the weight gradient δy xᵀ
        if k is not None:
            naive = rows * s.out * k * s.out + rows * k * w * (1 + dx)  # Bᵀ δy; ∂R; Rᵀ (Bᵀ δy)
            product = k * s.out * w * (1 + dx) + rows * w * dx  # Bᵀ ∂W; B R; (B R)ᵀ δy
            total += min(naive, product) if routed else naive
        elif rule == "dfa":
            total += batch * NUM_CLASSES * s.input_numel * dx  # D e
        else:
            total += rows * w * dx  # Bᵀ δy
        if rule == "wm":  # one mirror step: W x and y xᵀ for `probes` noise inputs
            total += 2 * opts["probes"] * w
    return total


# ---------------------------------------------------------------------------------------------- runs


def run_model(
    name: str,
    device: torch.device,
    rules: list[str],
    args: argparse.Namespace,
    width: float | None = None,
    batch: int | None = None,
    study: str = "main",
) -> list[Row]:
    torch.manual_seed(args.seed)
    spec = MODEL_SPECS[name]
    width = width or (1000 if name == "mlp" else args.width)
    batch = batch or spec["batch"]
    plain = build_model(name, width).to(device)
    variants = [Variant("torch", plain, make_optimizer(plain))]
    for rule in rules:
        model = fabook.convert(plain, rule)
        variants.append(Variant(rule, model, make_optimizer(model)))
    if "kp" in rules and study == "main":
        model = KPFloor(plain)
        variants.append(Variant("floor:kp", model, make_optimizer(model)))
    for rule in BIOTORCH_RULES if args.biotorch else ():
        if rule in rules:
            model = biotorch_model(plain, rule).to(device)
            variants.append(Variant(f"biotorch:{rule}", model, make_optimizer(model)))
    x = torch.randn(batch, *spec["input_shape"], device=device)
    y = torch.randint(0, NUM_CLASSES, (batch,), device=device)
    sync = synchronizer(device)
    steps = args.steps or DEFAULT_STEPS[device.type][name]

    for v in variants:  # warm-up: allocator, kernels, WM's mirroring pass; the last step estimates the cost
        for _ in range(args.warmup):
            sync()
            t0 = time.perf_counter()
            train_step(v, x, y)
            sync()
        v.estimate = time.perf_counter() - t0
    base = variants[0]
    for v in variants:  # variants far slower than torch (PFA) run fewer timed steps, at least 1
        v.steps = steps if v.estimate < 2 * base.estimate else math.ceil(steps * base.estimate / v.estimate)
    refresh = base.estimate < 0.25  # short steps: 1 untimed step first brings the variant back into cache

    order_rng = random.Random(args.seed)
    for r in range(args.repeats):
        order = list(variants)
        order_rng.shuffle(order)
        for v in order:
            if refresh:
                train_step(v, x, y)
            gc.collect()
            sync()
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(v.steps):
                train_step(v, x, y)
            sync()
            v.times.append((time.perf_counter() - t0) / v.steps)
            v.cpu_times.append((time.process_time() - c0) / v.steps)
        if args.verbose:
            print(f"  {name}/{device.type} repeat {r + 1}/{args.repeats} done", file=sys.stderr)

    losses = {v.rule: train_step(v, x, y).item() for v in variants}
    mem = {v.rule: (resting_bytes(v), step_peak_bytes(v, x, y, device)) for v in variants}
    shapes = layer_shapes(plain, spec["input_shape"], device)
    base_macs = step_macs(shapes, "torch", batch)
    clock = args.clock
    if clock == "auto":
        clock = "cpu" if device.type == "cpu" and args.one_thread else "wall"

    base_rest, base_step = mem["torch"]
    by_rule = {v.rule: v for v in variants}

    def clocked(v: Variant) -> list[float]:
        return v.cpu_times if clock == "cpu" else v.times

    def ratios(v: Variant, b: Variant) -> tuple[float, tuple[float, float, float]]:
        """``v``'s median over ``b``'s, and the quartiles of the per-repeat ratio."""
        paired = [t / u for t, u in zip(clocked(v), clocked(b), strict=True)]
        quartiles = statistics.quantiles(paired, n=4, method="inclusive") if len(paired) > 1 else paired * 3
        return statistics.median(clocked(v)) / statistics.median(clocked(b)), tuple(quartiles)

    rows = []
    for v in variants:
        ratio, (q1, q2, q3) = ratios(v, base)
        rest, step = mem[v.rule]
        mem_ratio = (rest + step) / (base_rest + base_step)
        target, target_of = TIME_TARGETS.get(v.rule), "torch"
        if v.rule == "kp" and "floor:kp" in by_rule:
            target, target_of = KP_FLOOR_TARGET * ratios(by_rule["floor:kp"], base)[0], "floor"
        bio = by_rule.get(f"biotorch:{v.rule}")
        vs_bio, vs_bio_paired = ratios(v, bio) if bio is not None else (None, None)
        mem_target = v.rule not in (*NO_MEMORY_TARGET, "torch") and ":" not in v.rule  # on step-only
        rule = v.rule.partition(":")[2] or v.rule  # BioTorch's rows: the rule's multiply-adds
        rows.append(
            Row(
                model=name,
                device=device.type,
                rule=v.rule,
                width=width,
                batch=batch,
                study=study,
                steps=v.steps,
                ms=statistics.median(v.times) * 1e3,
                cpu_ms=statistics.median(v.cpu_times) * 1e3,
                wall_ratio=statistics.median(v.times) / statistics.median(base.times),
                cpu_ratio=statistics.median(v.cpu_times) / statistics.median(base.cpu_times),
                clock=clock,
                ratio=ratio,
                paired_ratio=(q1, q2, q3),
                target=target,
                passed=None if target is None else ratio <= target,
                mac_ratio=step_macs(shapes, rule, batch) / base_macs,
                mac_ratio_routed=step_macs(shapes, rule, batch, routed=True) / base_macs,
                mem_mb=(rest + step) / 2**20,
                mem_ratio=mem_ratio,
                step_mem_ratio=step / base_step if base_step else math.nan,
                mem_passed=(step / base_step <= MEMORY_TARGET) if mem_target else None,
                times_ms=[t * 1e3 for t in v.times],
                cpu_times_ms=[t * 1e3 for t in v.cpu_times],
                loss=losses[v.rule],
                target_of=target_of,
                vs_biotorch=vs_bio,
                vs_biotorch_paired=vs_bio_paired,
            )
        )
    return rows


def mark(ok: bool | None) -> str:
    return "—" if ok is None else ("pass" if ok else "**FAIL**")


def table(rows: list[Row]) -> str:
    head = (
        "| model | device | rule | median step ms (wall) | CPU ms | ratio vs torch "
        "| paired ratio median [IQR] | target | pass/fail | vs BioTorch's (paired) | MAC ratio (theory) "
        "| peak mem MB | peak-memory ratio | step-only mem ratio | step mem ≤ 1.10× |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        target = "—" if r.target is None else f"≤ {r.target:.2f}×"
        if r.target_of == "floor":
            target += f" (floor × {KP_FLOOR_TARGET:g})"
        bio = "—"
        if r.vs_biotorch is not None:
            b1, b2, b3 = r.vs_biotorch_paired
            bio = f"{r.vs_biotorch:.3f}× ({b2:.3f} [{b1:.2f}–{b3:.2f}])"
        theory = f"{r.mac_ratio:.2f}×"
        if r.rule in PFA_RULES:
            theory = f"**{theory}** (routed {r.mac_ratio_routed:.2f}×)"
        q1, q2, q3 = r.paired_ratio
        model = r.model if r.study == "main" else f"{r.model} width {r.width:g} batch {r.batch}"
        cells = [
            model, r.device, r.rule, f"{r.ms:.1f}", f"{r.cpu_ms:.1f}", f"{r.ratio:.3f}× ({r.clock})",
            f"{q2:.3f} [{q1:.2f}–{q3:.2f}]", target, mark(r.passed), bio, theory, f"{r.mem_mb:.1f}",
            f"{r.mem_ratio:.3f}×", f"{r.step_mem_ratio:.2f}×", mark(r.mem_passed),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="auto",
                   help="auto: CPU, and CUDA too when available (default)")  # fmt: skip
    p.add_argument("--repeats", type=int, default=5, help="interleaved repeats (median over them)")
    p.add_argument("--steps", type=int, default=0,
                   help="timed steps per variant and repeat (default: CPU mlp 10, resnet20 3; "
                   "CUDA mlp 100, resnet20 30)")  # fmt: skip
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per variant before the repeats")
    p.add_argument("--models", default="mlp,resnet20", help="comma list of: " + ", ".join(MODEL_SPECS))
    p.add_argument("--rules", default=",".join(fabook.RULES), help="comma list of rules (default: all)")
    p.add_argument("--width", type=float, default=0.5, help="resnet20 channel multiplier (default 0.5)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--clock", choices=("auto", "wall", "cpu"), default="auto",
                   help="clock of the ratio and pass/fail: wall time, or this process's CPU time; auto: CPU "
                   "time for --device cpu with 1 thread (robust to other processes), else wall")  # fmt: skip
    p.add_argument("--biotorch", choices=("auto", "yes", "no"), default="auto",
                   help="also time BioTorch's fa/usf/brsf/frsf (auto: when it imports)")  # fmt: skip
    p.add_argument("--scaling", action="store_true", help="also the MLP at --widths and --batches")
    p.add_argument("--widths", default="256,500,1000,2000", help="MLP hidden widths for --scaling")
    p.add_argument("--batches", default="32,128,512", help="MLP batch sizes for --scaling")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="OUT", help="also write the rows and settings to this JSON file")
    p.add_argument("-v", "--verbose", action="store_true", help="progress on stderr")
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.rules = [r for r in args.rules.split(",") if r]
    for m in args.models:
        if m not in MODEL_SPECS:
            p.error(f"unknown model {m!r}; accepted: {', '.join(MODEL_SPECS)}")
    for r in args.rules:
        if r not in fabook.RULES:
            p.error(f"unknown rule {r!r}; accepted: {', '.join(fabook.RULES)}")
    if args.repeats < 1 or args.steps < 0 or args.warmup < 1:
        p.error("--repeats and --warmup must be >= 1, --steps >= 0")
    have = importlib.util.find_spec("biotorch") is not None
    if args.biotorch == "yes" and not have:
        p.error("--biotorch yes: BioTorch is not installed (pip install --no-deps biotorch)")
    args.biotorch = have and args.biotorch != "no"
    try:
        args.widths = [int(w) for w in args.widths.split(",") if w]
        args.batches = [int(b) for b in args.batches.split(",") if b]
    except ValueError:
        p.error(f"--widths and --batches take comma lists of integers; got {args.widths!r}, {args.batches!r}")
    return args


def load() -> dict[str, object]:
    """The machine's load: ``uptime``'s line and the 1/5/15-minute load averages."""
    try:
        line = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        line = None
    return {"uptime": line, "loadavg": list(os.getloadavg())}


def commit() -> dict[str, object]:
    """The checkout's commit and whether its tracked files had changes (None outside git); the results
    folder does not count: a run that follows another finds that one's file written, not the code changed."""
    root = Path(__file__).resolve().parents[1]

    def git(*a: str) -> str | None:
        done = subprocess.run(["git", *a], cwd=root, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    return {
        "commit": head,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"))
        if head
        else None,
    }


def main(argv: list[str] | None = None) -> list[Row]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.one_thread = torch.get_num_threads() == 1
    if args.device == "auto":
        devices = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
    elif args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch.cuda.is_available() is False")
    else:
        devices = [args.device]
    if args.device == "cuda" or "cuda" in devices:
        torch.backends.cudnn.benchmark = True

    load_before, date = load(), datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    source = commit()  # the code measured: the checkout as the run starts
    started = time.perf_counter()
    rows: list[Row] = []
    for device in devices:
        for name in args.models:
            rows += run_model(name, torch.device(device), args.rules, args)
        for width in args.widths if args.scaling else ():
            rows += run_model("mlp", torch.device(device), args.rules, args, width=width, study="scaling")
        for batch in args.batches if args.scaling else ():
            rows += run_model("mlp", torch.device(device), args.rules, args, batch=batch, study="scaling")
    elapsed = time.perf_counter() - started

    env = {
        "date": date,
        **source,
        "machine": platform.node(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "biotorch": _version("biotorch") if args.biotorch else None,
        "cuda": torch.cuda.get_device_name() if "cuda" in devices else None,
        "devices": devices,
        "seconds": round(elapsed, 1),
        "load_before": load_before,
        "load_after": load(),
    }
    print(
        f"# rule overhead: torch {env['torch']}, {env['threads']} CPU thread(s)"
        + (f", {env['cuda']}" if env["cuda"] else "")
        + f"; repeats {args.repeats}, resnet20 width {args.width}; {elapsed:.0f} s. Ratio clock: wall = "
        "wall time, cpu = this process's CPU time; theory: multiply-adds, PFA as implemented (and routed).\n"
    )
    print(table(rows))
    if args.json:
        document = {"settings": dict(vars(args)), "env": env, "rows": [asdict(r) for r in rows]}
        write_json(Path(args.json), document)
    return rows


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    main()
