"""The ``fabook`` command: run a cell or a sweep, list data sets and rules, summarize results, build the book.

Results go to ``--out``, else ``$FABOOK_RUNS``, else ``runs/`` under the current folder; that folder is
checked writable before any training. Errors are one line on stderr (exit status 2); an interrupt (Ctrl-C)
exits with 130 and says how to resume.
"""

from __future__ import annotations

import argparse
import dataclasses
import errno
import importlib.util
import json
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

RUNS_ENV = "FABOOK_RUNS"

RUN_EXAMPLES = """examples:
  fabook run --dataset digits --rule fa --epochs 5
  fabook run --dataset fashion-mnist --model cnn --rule sc --option p=0.5 --batch-norm --optimizer bm \\
             --lr 1e-4
  fabook run --dataset mnist1d --model cnn1d --rule pfa --option k=10 --weight-decay 0.03 \\
             --schedule step:20,30
"""
SWEEP_EXAMPLES = """spec (JSON): {"name": "rules", "base": {"dataset": "digits", "epochs": 5},
              "grid": {"rule": ["bp", "fa", "kp"], "seed": [0, 1]},
              "conditions": [{"batch_norm": false}, {"batch_norm": true}]}   (conditions optional)
examples:
  fabook sweep rules.json                 # results in runs/rules/, summary in runs/rules/summary.csv
  fabook sweep rules.json --out /tmp/r --jobs 2
  fabook sweep rules.json --engine submitit --slurm slurm_partition=gpu --slurm gpus_per_node=1 \
             --slurm timeout_min=600    # one SLURM job per cell (pip install 'fabook[slurm]')
"""
MAIN_EXAMPLES = """examples:
  fabook datasets                         # what can be loaded here, and how to get the rest
  fabook rules                            # the learning rules
  fabook run --dataset digits --rule fa --epochs 5
  fabook sweep spec.json --jobs 2
  fabook summary runs/                    # one line per stored result
"""


def runs_dir() -> Path:
    """The default results folder: ``$FABOOK_RUNS``, else ``runs/`` in :func:`fabook.book.project_root`."""
    from fabook.book import project_root

    return Path(os.environ.get(RUNS_ENV) or project_root() / "runs")


def _option(text: str) -> tuple[str, Any]:
    """``NAME=VALUE``, the value read as JSON if it is JSON (``p=0.5``, ``orthogonal=true``), else as text."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE; got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def _number(text: str) -> int | float:
    return float(text) if any(c in text for c in ".eE") else int(text)


def _none_or(kind: type) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() == "none" else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _add_run_args(p: argparse.ArgumentParser) -> None:
    from fabook.train import Config

    d = {f.name: f.default for f in dataclasses.fields(Config) if f.default is not dataclasses.MISSING}
    p.add_argument("--dataset", required=True, help="a name from `fabook datasets`")
    p.add_argument(
        "--model",
        default=d["model"],
        help="mlp, cnn, cnn1d, resnet20, resnet18, resnet50 (default %(default)s)",
    )
    p.add_argument("--rule", default=d["rule"], help="a name from `fabook rules` (default %(default)s)")
    p.add_argument(
        "--option", dest="rule_options", action="append", type=_option, default=[], metavar="NAME=VALUE",
        help="a rule option, e.g. p=0.5 (sc), k=10 (pfa); repeatable",
    )  # fmt: skip
    p.add_argument("--batch-norm", action="store_true", help="BatchNorm before hidden activations")
    p.add_argument("--width", type=_none_or(_number), default=d["width"], help="model width (model default)")
    p.add_argument("--depth", type=_none_or(int), default=d["depth"], help="model depth (model default)")
    p.add_argument("--activation", default=d["activation"], help="relu, tanh, sigmoid (default %(default)s)")
    p.add_argument(
        "--optimizer", default=d["optimizer"], help="sgd, adam, bm = Batch Manhattan (default %(default)s)"
    )
    p.add_argument("--lr", type=float, default=d["lr"], help="learning rate (default %(default)s)")
    p.add_argument("--momentum", type=float, default=d["momentum"], help="(default %(default)s)")
    p.add_argument("--weight-decay", type=float, default=d["weight_decay"], help="(default %(default)s)")
    p.add_argument(
        "--schedule", type=_none_or(str), default=d["schedule"], help="step:E1,E2,...[;gamma=G] or cosine"
    )
    p.add_argument(
        "--weight-decay-schedule", type=_none_or(str), default=d["weight_decay_schedule"],
        help="E1:WD1,... (weight decay WD1 after epoch E1; e.g. 1:1e-4 cuts a large early decay once)",
    )  # fmt: skip
    p.add_argument("--epochs", type=int, default=d["epochs"], help="(default %(default)s)")
    p.add_argument("--batch-size", type=int, default=d["batch_size"], help="(default %(default)s)")
    p.add_argument("--seed", type=int, default=d["seed"], help="(default %(default)s)")
    p.add_argument("--device", default=d["device"], help="cpu, cuda, cuda:N, mps (default %(default)s)")
    p.add_argument(
        "--max-train", type=_none_or(int), default=None, help="cap on training samples (stratified)"
    )
    p.add_argument("--max-test", type=_none_or(int), default=None, help="cap on test samples (stratified)")
    p.add_argument("--constrain-norm", action="store_true", help="hold each weight at its initial norm")
    p.add_argument(
        "--keep-bp", action="append", default=[], metavar="LAYER",
        help="leave this layer as backprop ('first', 'last' or a module name); repeatable",
    )  # fmt: skip
    p.add_argument(
        "--metrics-every",
        type=int,
        default=d["metrics_every"],
        help="epochs between alignment metrics, 0: never",
    )
    p.add_argument(
        "--num-workers", type=int, default=d["num_workers"], help="DataLoader workers (folder data sets)"
    )
    p.add_argument(
        "--val-fraction", type=float, default=d["val_fraction"],
        help="share of the training set held out for early stopping (default %(default)s: none)",
    )  # fmt: skip
    p.add_argument(
        "--patience", type=_none_or(int), default=d["patience"],
        help="stop after this many epochs without a lower validation loss (default: run every epoch)",
    )  # fmt: skip
    p.add_argument(
        "--threads",
        type=int,
        default=d["threads"],
        help="torch CPU threads of the cell (default %(default)s)",
    )


def _add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--engine", default="local", metavar="{local,submitit}",
        help="where cells run: local = --jobs processes on this machine (default); submitit = one SLURM job "
        "per cell through submitit (pip install 'fabook[slurm]'; the results folder must be shared)",
    )  # fmt: skip
    p.add_argument(
        "--slurm", action="append", type=_option, default=[], metavar="NAME=VALUE",
        help="a submitit executor parameter, e.g. slurm_partition=gpu, timeout_min=600, gpus_per_node=1; "
        "repeatable",
    )  # fmt: skip
    p.add_argument(
        "--cluster", default="auto", help="submitit: auto (SLURM if sbatch is here), slurm, local, debug"
    )
    p.add_argument(
        "--retries", type=int, default=1, help="submitit: resubmissions of a failed cell (default 1)"
    )


def _engine(args: argparse.Namespace) -> dict[str, Any]:
    """run_sweep's engine arguments from the command line."""
    if args.engine == "local":
        return {"engine": "local"}
    options = dict(retries=args.retries, cluster=args.cluster, parameters=dict(args.slurm))
    return {"engine": args.engine, "engine_options": options}


def parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fabook`` command."""
    fmt = argparse.RawDescriptionHelpFormatter
    main = argparse.ArgumentParser(
        prog="fabook",
        description="Learning without weight symmetry: train, sweep, inspect.",
        epilog=MAIN_EXAMPLES,
        formatter_class=fmt,
    )
    sub = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="train one cell",
        description="Train one cell (resumable).",
        epilog=RUN_EXAMPLES,
        formatter_class=fmt,
    )
    _add_run_args(run)
    run.add_argument("--out", type=Path, help=f"results folder (default ${RUNS_ENV} or runs/)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    sweep = sub.add_parser(
        "sweep",
        help="run a grid of cells",
        description="Run every cell of a sweep spec (resumable).",
        epilog=SWEEP_EXAMPLES,
        formatter_class=fmt,
    )
    sweep.add_argument("spec", type=Path, help="sweep spec (JSON)")
    sweep.add_argument("--out", type=Path, help=f"results folder (default ${RUNS_ENV}/<name> or runs/<name>)")
    sweep.add_argument("--jobs", type=int, default=1, help="cells run in parallel processes (default 1)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_engine_args(sweep)

    sub.add_parser(
        "datasets",
        help="list the data sets",
        description="List the data sets, whether each is here and how to get it.",
        epilog="example:\n  fabook datasets",
        formatter_class=fmt,
    )
    sub.add_parser(
        "rules",
        help="list the learning rules",
        description="List the learning rules.",
        epilog="example:\n  fabook rules",
        formatter_class=fmt,
    )

    summary = sub.add_parser(
        "summary",
        help="tabulate stored results",
        description="One line per result stored in a folder.",
        epilog="example:\n  fabook summary runs/rules",
        formatter_class=fmt,
    )
    summary.add_argument("dir", type=Path, nargs="?", help=f"results folder (default ${RUNS_ENV} or runs/)")

    if _has_book():
        sub.add_parser(
            "book", help="build the book: `fabook book --help` (python -m fabook.book)", add_help=False
        )
    return main


def _has_book() -> bool:
    return importlib.util.find_spec("fabook.book") is not None


def _table(frame: pd.DataFrame) -> str:
    """Plain text table: text columns left-aligned, numbers right-aligned, nothing cut."""
    cells = {
        c: [str(c), *("" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v) for v in frame[c])]
        for c in frame
    }
    width = {c: max(map(len, v)) for c, v in cells.items()}
    left = {
        c: not pd.api.types.is_numeric_dtype(frame[c]) or pd.api.types.is_bool_dtype(frame[c]) for c in frame
    }
    rows = zip(*(cells[c] for c in frame), strict=True)
    lines = (
        "  ".join(
            v.ljust(width[c]) if left[c] else v.rjust(width[c]) for c, v in zip(frame, row, strict=True)
        )
        for row in rows
    )
    return "\n".join(line.rstrip() for line in lines)


SUMMARY_COLUMNS = [
    "dataset",
    "model",
    "rule",
    "options",
    "batch_norm",
    "optimizer",
    "lr",
    "epochs",
    "seed",
    "test_acc",
    "best_test_acc",
    "diverged",
    "wall_time",
    "key",
]


def _run(args: argparse.Namespace) -> int:
    from fabook import distributed
    from fabook.train import Config, train

    fields = {f.name for f in dataclasses.fields(Config)}
    values = {k: v for k, v in vars(args).items() if k in fields}
    values["rule_options"] = dict(values["rule_options"])
    values["keep_bp"] = tuple(values["keep_bp"])
    out = args.out or runs_dir()
    result = train(Config(**values), out_dir=out, progress=not args.no_progress)
    if not distributed.is_main():  # under torchrun, rank 0 reports
        return 0
    last = next((h for h in reversed(result.history) if h["epoch"] > 0), {})
    numbers = dict(test_acc=result.test_acc, best=result.best_test_acc, train_loss=last.get("train_loss"))
    numbers |= dict(test_loss=last.get("test_loss"), epochs=result.epochs_run)
    if result.best_epoch is not None:
        numbers |= dict(best_epoch=result.best_epoch, val_acc=result.val_acc)
    text = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in numbers.items())
    print(f"{result.key}: {text}{'  DIVERGED' if result.diverged else ''}  ({result.wall_time:.1f} s)")
    print(result.path)
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from fabook.launch import CellsFailedError
    from fabook.results import OutputError, write_text
    from fabook.sweep import load_spec, run_sweep

    spec = load_spec(args.spec)
    out = args.out or runs_dir() / spec["name"]
    try:
        frame = run_sweep(spec, out, jobs=args.jobs, progress=not args.no_progress, **_engine(args))
    except CellsFailedError as e:
        print(f"fabook: {e}", file=sys.stderr)
        return 1
    print(_table(frame[[c for c in SUMMARY_COLUMNS if c in frame]]))
    try:  # a read-only archive of finished cells still gets its table
        write_text(out / "summary.csv", frame.drop(columns=["rule_options"]).to_csv(index=False))
        print(f"{len(frame)} cells in {out}; summary: {out / 'summary.csv'}")
    except OutputError as e:
        print(f"{len(frame)} cells in {out}")
        print(f"fabook: warning: summary.csv not saved: {e}", file=sys.stderr)
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from fabook import data

    print(_table(data.catalogue_table()))
    return 0


def _rules(args: argparse.Namespace) -> int:
    import fabook

    rows = []
    for name in fabook.RULES:
        doc = (type(fabook.get_rule(name)).__doc__ or "").strip().splitlines()
        rows.append({"rule": name, "description": doc[0] if doc else ""})
    print(_table(pd.DataFrame(rows)))
    return 0


def _summary(args: argparse.Namespace) -> int:
    from fabook.results import numerics_version
    from fabook.sweep import load_results

    folder = args.dir or runs_dir()
    frame = load_results(folder)
    if frame.empty:
        print(f"no results in {folder}")
        return 0
    other = frame.numerics != numerics_version()
    columns = SUMMARY_COLUMNS + ["numerics"] * bool(other.any())
    print(_table(frame[[c for c in columns if c in frame]]))
    if other.any():
        print(
            f"{other.sum()} result(s) come from other code (numerics version other than this code's "
            f"{numerics_version()}); runs of this code do not reuse them"
        )
    return 0


COMMANDS = {"run": _run, "sweep": _sweep, "datasets": _datasets, "rules": _rules, "summary": _summary}


def _book(argv: list[str]) -> int:
    from fabook import book

    return book.main(argv) or 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fabook`` command with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    from fabook.results import OutputError

    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["book"] and _has_book():
            return _book(argv[1:])
        args = parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except SystemExit as e:  # --help, or a usage error argparse has printed
        return e.code if isinstance(e.code, int) else 1
    except OutputError as e:
        where = (
            ""
            if e.errno in (errno.ENOSPC, errno.EDQUOT)
            else f" (the results folder: --out, else ${RUNS_ENV})"
        )
        print(f"fabook: error: {e}{where}", file=sys.stderr)
        return 2
    except (ValueError, TypeError, FileNotFoundError, NotADirectoryError) as e:
        print(f"fabook: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `fabook datasets | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print(
            "fabook: interrupted; finished cells and the last checkpoint of each interrupted one are kept; "
            f"resume with: {shlex.join(['fabook', *argv])}",
            file=sys.stderr,
        )
        return 130
