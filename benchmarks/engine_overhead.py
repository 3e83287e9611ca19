"""What the engine (:func:`fabook.train.train`) costs on top of a bare training loop, and what cells cost.

1. Overhead: one cell (MLP, Fashion-MNIST, 10 000 training samples, 3 epochs, alignment metrics off) run by
   ``train()`` (validation, result file, a checkpoint per epoch, provenance) and by a hand-written loop with
   the same model, optimizer, batches and per-epoch test evaluation; interleaved and repeated, end to end
   (data loading included in both). Target: ratio <= 1.05.
2. The smoke cell: MLP on digits, 10 epochs, metrics every epoch.
3. Sweeps: four smoke cells (bp, fa, kp, usf) with ``jobs=1`` and ``jobs=2``.

Run from the repository root (fabook installed, or ``PYTHONPATH=.``):
``python benchmarks/engine_overhead.py [--repeats 5] [--threads N] [--no-sweep]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from fabook import data
from fabook.sweep import expand, run_sweep, start_method
from fabook.train import Config, build_model, epoch_generator, make_optimizer, seed_everything, train

CELL = Config(dataset="fashion-mnist", max_train=10_000, epochs=3, metrics_every=0)
SMOKE = Config(dataset="digits", epochs=10)


def bare_loop(cfg: Config) -> float:
    """The cell as a plain loop: load, build, train, evaluate each epoch. Returns the final test accuracy."""
    seed_everything(cfg.seed)
    model = build_model(cfg)
    split = data.load(cfg.dataset, seed=cfg.seed, max_train=cfg.max_train, max_test=cfg.max_test)
    x, y = split.train.tensors
    xt, yt = split.test.tensors
    optimizer = make_optimizer(cfg, model.parameters())
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        for idx in torch.randperm(len(y), generator=epoch_generator(cfg.seed, epoch)).split(cfg.batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            correct = sum(
                int((model(a).argmax(1) == b).sum())
                for a, b in zip(xt.split(1024), yt.split(1024), strict=True)
            )
    return correct / len(yt)


def engine(cfg: Config) -> float:
    with tempfile.TemporaryDirectory() as out:
        return train(cfg, out_dir=out, progress=False).test_acc


def timed(fn, *args) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def overhead(repeats: int) -> None:
    bare_loop(CELL.replace(epochs=1))  # warm up: imports, data cache, allocator
    times = {"bare": [], "engine": []}
    for _ in range(repeats):
        acc = {}
        for name, fn in (("bare", bare_loop), ("engine", engine)):
            seconds, acc[name] = timed(fn, CELL)
            times[name].append(seconds)
        print(
            f"  bare {times['bare'][-1]:.2f} s   engine {times['engine'][-1]:.2f} s   "
            f"(test acc {acc['bare']:.4f} / {acc['engine']:.4f})"
        )
    ratios = [e / b for b, e in zip(times["bare"], times["engine"], strict=True)]
    print(
        f"  per-pair ratios {', '.join(f'{r:.3f}' for r in ratios)}; torch threads {torch.get_num_threads()}"
    )
    bare, eng = min(times["bare"]), min(times["engine"])
    print(
        f"overhead: median of per-pair ratios {statistics.median(ratios):.3f}; "
        f"best times {eng:.2f} / {bare:.2f} s"
    )


def smoke() -> None:
    seconds, acc = timed(engine, SMOKE)
    print(f"smoke cell (MLP on digits, 10 epochs, metrics every epoch): {seconds:.2f} s, test acc {acc:.3f}")


def sweeps() -> None:
    base = {"dataset": "digits", "epochs": 10, "metrics_every": 1}
    spec = {"base": base, "grid": {"rule": ["bp", "fa", "kp", "usf"]}}
    for jobs in (1, 2):
        with tempfile.TemporaryDirectory() as out:
            seconds, _ = timed(run_sweep, spec, out, jobs, False)
        how = (
            f"{start_method(expand(spec))} workers, 1 thread each"
            if jobs > 1
            else f"{torch.get_num_threads()} threads"
        )
        print(f"sweep of 4 smoke cells, jobs={jobs} ({how}): {seconds:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-sweep", action="store_true")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    overhead(args.repeats)
    smoke()
    if not args.no_sweep:
        sweeps()


if __name__ == "__main__":
    main()
