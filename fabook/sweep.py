"""Sweeps: a grid of cells from a small spec, run (resumably, optionally in parallel) and tabulated.

A spec is a dict (or a JSON file holding one)::

    {"name": "sign-concordance",
     "base": {"dataset": "digits", "epochs": 20},                 # fields shared by every cell
     "grid": {"rule": ["fa", "usf"], "seed": [0, 1, 2]},          # every combination of these
     "conditions": [{"batch_norm": false}, {"batch_norm": true, "optimizer": "bm"}]}   # optional

Its cells are ``product(grid) x conditions``, each ``base`` updated by one grid point and one condition (a
condition lets several fields vary together). Identical cells are run once. The ``name`` is a folder name
(the CLI's default results folder is ``runs/<name>``).

Cells run one after another, or in a local pool of worker processes (:func:`run_cells`): a Ctrl-C or a
SIGTERM (or an error in one cell) stops every worker, each in-flight cell keeps its last epoch's checkpoint,
and no other cell starts; running the sweep again resumes. A worker whose parent died without stopping it
(SIGKILL) stops its cell and exits.

A cell missing from the results folder whose key is in the recorded results (:mod:`fabook.record`, the
committed ``recorded/`` folder) is written there from them instead of being trained.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fabook import launch, record, results
from fabook.interrupt import sigterm_as_interrupt
from fabook.progress import bar as progress_bar
from fabook.results import ResultFileError
from fabook.train import Config, Result, load_result, lock_path, result_path, train, validate

SPEC_KEYS = ("name", "base", "grid", "conditions")
SCALAR_METRICS = (
    "lr", "weight_decay", "train_loss", "train_acc", "test_loss", "test_acc", "test_top5", "val_loss",
    "val_acc", "val_top5", "time",
)  # fmt: skip


def load_spec(spec: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A spec as a dict (read from JSON when given a path), checked for unknown keys and shapes."""
    if not isinstance(spec, Mapping):
        path = Path(spec)
        try:
            spec = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"sweep spec {path} is not valid JSON: {e}") from e
        if not isinstance(spec, Mapping):
            raise ValueError(f"sweep spec {path} must hold a JSON object; got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise ValueError(
            f"unknown sweep spec key(s) {', '.join(map(repr, unknown))}; accepted: {', '.join(SPEC_KEYS)}"
        )
    grid = spec.get("grid", {})
    if not isinstance(grid, Mapping):
        raise ValueError(f"sweep 'grid' must map field names to lists of values; got {grid!r}")
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(f"sweep grid {name!r} must be a non-empty list of values; got {values!r}")
    conditions = spec.get("conditions", [{}])
    if (
        not isinstance(conditions, list)
        or not all(isinstance(c, Mapping) for c in conditions)
        or not conditions
    ):
        raise ValueError(f"sweep 'conditions' must be a non-empty list of dicts; got {conditions!r}")
    for c in conditions:
        both = sorted(set(c) & set(grid))
        if both:
            raise ValueError(
                f"sweep fields {both} are both in 'grid' and in a condition; put each in one place"
            )
    name = spec.get("name", "sweep")
    if not isinstance(name, str) or name in ("", ".", "..") or any(c in name for c in "/\\\0"):
        raise ValueError(f"sweep 'name' must be a folder name (no '/' or '\\', not '..'); got {name!r}")
    if not isinstance(spec.get("base", {}), Mapping):
        raise ValueError(f"sweep 'base' must map field names to values; got {spec['base']!r}")
    return {
        "name": name,
        "base": dict(spec.get("base", {})),
        "grid": dict(grid),
        "conditions": conditions,
    }


def expand(spec: Mapping[str, Any] | str | Path) -> list[Config]:
    """The spec's cells, in grid order (last grid field fastest, then conditions), without duplicates. A bad
    value in any cell raises (naming the cell's grid point and condition) before anything runs."""
    spec = load_spec(spec)
    names = list(spec["grid"])
    cells: dict[str, Config] = {}
    for values in itertools.product(*spec["grid"].values()):
        for condition in spec["conditions"]:
            point = {**dict(zip(names, values, strict=True)), **condition}
            try:
                cfg = Config.from_dict({**spec["base"], **point})
            except (TypeError, ValueError) as e:
                raise type(e)(f"sweep cell {point}: {e}" if point else str(e)) from None
            cells.setdefault(cfg.key(), cfg)
    return list(cells.values())


class CellsMissing(RuntimeError):
    """A sweep under :func:`watch` with ``train=False`` needs cells that are not in its results folder."""


@dataclass
class Usage:
    """What the code under :func:`watch` used: ``results`` (every cell :func:`run_sweep` returned, by key)
    and ``histories`` (the keys of the results whose history :func:`history_frame` read)."""

    train: bool = True
    results: dict[str, Result] = field(default_factory=dict)
    histories: set[str] = field(default_factory=set)


_watches: list[Usage] = []


@contextmanager
def watch(*, train: bool = True) -> Iterator[Usage]:
    """Within the block, note every cell the sweeps use and every history read (the yielded
    :class:`Usage`); with ``train=False`` a sweep that would train a cell raises :class:`CellsMissing`."""
    usage = Usage(train=train)
    _watches.append(usage)
    try:
        yield usage
    finally:
        _watches.remove(usage)


@contextmanager
def unwatched() -> Iterator[None]:
    """Within the block the sweeps note nothing for :func:`watch`: for cells a chapter reads that another
    recording holds (a run at another scale), so that they are not recorded with the chapter's own."""
    before = _watches[:]
    _watches.clear()
    try:
        yield
    finally:
        _watches[:] = before


def start_method(configs: Iterable[Config]) -> str:
    """How worker processes start: "fork" on Linux when every cell runs on the CPU (instant, as DataLoader
    workers do); "spawn" otherwise (CUDA cannot be forked; each worker then imports torch anew, seconds)."""
    cpu_only = all(c.device == "cpu" for c in configs)
    return "fork" if cpu_only and sys.platform == "linux" else "spawn"


_stopped = False  # in a worker process: the sweep was interrupted
_busy = False  # in a worker process: a cell is training now
_parent = 0  # in a worker process: the sweep's process id
PARENT_POLL_SECONDS = 1.0  # how often a worker checks that the sweep is still there


def _init_worker(stop: threading.Event) -> None:
    """A worker process: on SIGINT (a Ctrl-C reaches every process of the terminal) or SIGTERM (``timeout``
    signals the process group), or when the parent sets ``stop`` or dies (a thread here turns either into a
    SIGINT), interrupt the cell being trained and start no other."""
    global _parent
    _parent = os.getppid()
    signal.signal(signal.SIGINT, _on_interrupt)
    signal.signal(signal.SIGTERM, _on_interrupt)
    threading.Thread(target=_interrupt_when_set, args=(stop,), daemon=True).start()


def _orphaned() -> bool:
    """Whether the sweep that started this worker is gone (killed without setting ``stop``)."""
    return os.getppid() != _parent


def _interrupt_when_set(stop: threading.Event) -> None:
    while not stop.wait(PARENT_POLL_SECONDS) and not _orphaned():
        pass
    os.kill(os.getpid(), signal.SIGINT)


def _on_interrupt(signum: int, frame: object) -> None:
    """Sets flags only: a signal handler must not take locks the interrupted code may hold."""
    global _busy, _stopped
    _stopped = True
    if _busy:  # only while training: an idle worker must stay able to answer the pool
        _busy = False
        raise KeyboardInterrupt
    if _orphaned():  # idle, and no pool will hand it a cell again
        os._exit(1)


def _run_cell(config: Config, out_dir: str) -> Result | None:
    """In a worker: train one cell; None when the sweep was stopped (the cell keeps its checkpoint)."""
    global _busy
    _busy = True
    try:
        if _stopped:
            return None
        return train(config, out_dir=out_dir, progress=False)
    except KeyboardInterrupt:
        if _orphaned():  # its checkpoint is kept; nobody is left to take the answer
            os._exit(1)
        return None
    finally:
        _busy = False


def run_cells(configs: list[Config], out_dir: Path, jobs: int = 1, progress: bool = True) -> Iterator[Result]:
    """Train ``configs`` into ``out_dir``, yielding each result as it is done (in that order with one job).

    Cells another process is training now (its lock held) come last, and :func:`train` then waits for that
    process and loads its result. With ``jobs > 1`` a local pool of worker processes trains them; an
    interrupt (SIGINT or SIGTERM) or an error stops every worker (see the module's docstring) and is raised
    here, a SIGTERM as KeyboardInterrupt.
    """
    with sigterm_as_interrupt():
        yield from _run_cells(configs, out_dir, jobs, progress)


def _run_cells(configs: list[Config], out_dir: Path, jobs: int, progress: bool) -> Iterator[Result]:
    pending = sorted(configs, key=lambda c: results.is_locked(lock_path(c, out_dir)))
    if jobs == 1 or len(pending) <= 1:
        for cfg in pending:
            yield train(cfg, out_dir=out_dir, progress=progress)
        return
    context = multiprocessing.get_context(start_method(pending))
    stop = context.Event()
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(stop,)) as pool:
        futures = [pool.submit(_run_cell, cfg, str(out_dir)) for cfg in pending]
        try:
            for future in as_completed(futures):
                result = future.result()
                if result is None:  # the interrupt reached a worker first
                    raise KeyboardInterrupt
                yield result
        except BaseException:
            stop.set()
            pool.shutdown(cancel_futures=True)
            raise


def run_sweep(
    spec: Mapping[str, Any] | str | Path,
    out_dir: str | Path,
    jobs: int = 1,
    progress: bool = True,
    engine: str = "local",
    engine_options: Mapping[str, Any] | None = None,
) -> pd.DataFrame:
    """Run every cell of ``spec`` into ``out_dir`` and return the summary (one row per cell, spec order).

    Cells missing from ``out_dir`` are written there from the recorded results where those hold them
    (:func:`fabook.record.materialise`); every cell still to train is validated (data at hand included), and
    ``out_dir`` checked writable, before any trains. Finished cells are loaded (also from a read-only folder,
    and without their data), interrupted ones resume. With ``jobs > 1`` cells run in that many worker
    processes (each cell with its config's ``threads``; see :func:`start_method`). ``engine="submitit"``
    hands them to a cluster instead (:func:`fabook.launch.run_submitit`, which takes ``engine_options``).
    """
    spec = load_spec(spec)
    configs = expand(spec)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be an integer >= 1; got {jobs!r}")
    launch.check(engine, (engine_options or {}).get("cluster", "auto"))
    out = Path(out_dir)
    record.materialise([c for c in configs if not result_path(c, out).exists()], out)
    todo = [cfg for cfg in configs if not result_path(cfg, out).exists()]
    for cfg in todo:
        validate(cfg)
    missing = {cfg.key() for cfg in todo}
    done = {cfg.key(): load_result(result_path(cfg, out), cfg) for cfg in configs if cfg.key() not in missing}
    if todo and not all(w.train for w in _watches):
        raise CellsMissing(
            f"{len(todo)} of the {len(configs)} cells of sweep {spec['name']!r} are not in {out}"
        )
    if todo:
        results.check_folder(out)
    bar = progress_bar(
        total=len(configs), initial=len(done), desc=spec["name"], unit="cell", disable=not progress
    )
    if engine == "submitit" and todo:
        done |= launch.run_submitit(todo, out, **(engine_options or {}))
        bar.update(len(todo))
    else:
        for result in run_cells(todo, out, jobs, progress):
            done[result.key] = result
            bar.update()
    bar.close()
    for usage in _watches:
        usage.results |= done
    return summary_frame(done[cfg.key()] for cfg in configs)


def read_results(out_dir: str | Path) -> list[Result]:
    """Every result JSON in ``out_dir`` (not its subfolders); other JSON files are skipped with a warning.
    FileNotFoundError / NotADirectoryError when ``out_dir`` is not a folder."""
    folder = Path(out_dir)
    if not folder.exists():
        raise FileNotFoundError(f"no results folder {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a results folder")
    found = []
    for path in sorted(folder.glob("*.json")):
        try:
            found.append(load_result(path))
        except ResultFileError as e:
            warnings.warn(f"skipped: {e}", stacklevel=2)
    return found


def summary_frame(results: Iterable[Result]) -> pd.DataFrame:
    """One row per result: the config fields, ``options`` (readable ``rule_options``), ``label``, the final
    test accuracy, best test accuracy, final train loss, ``diverged``, ``wall_time``, ``key`` and
    ``numerics`` (the code version that produced it: :func:`fabook.results.numerics_version`)."""
    return pd.DataFrame([{**r.summary(), "numerics": r.provenance.get("numerics")} for r in results])


def load_results(out_dir: str | Path) -> pd.DataFrame:
    """The summary of every result stored in ``out_dir``."""
    return summary_frame(read_results(out_dir))


def history_frame(results: Iterable[Result] | str | Path) -> pd.DataFrame:
    """Long format, one row per (cell, epoch, metric, layer): columns ``key, epoch, metric, layer, value``
    plus the config columns. Whole-model metrics (``train_loss``, ``test_acc``, ...) have ``layer=""``; the
    alignment metrics (``weight_angle``, ``sign_concordance``, ``norm_ratio``, ``grad_angle``) one row per
    rule layer. Accepts results or a folder of them. ResultFileError for a cell written from recorded results
    that kept no history (see :mod:`fabook.record`)."""
    if isinstance(results, (str, Path)):
        results = read_results(results)
    results = list(results)
    rows = []
    for r in results:
        key = r.key
        record.check_history(r)
        for usage in _watches:
            usage.histories.add(key)
        for rec in r.history:
            epoch = rec["epoch"]
            rows += [(key, epoch, m, "", rec[m]) for m in SCALAR_METRICS if m in rec]
            for layer, values in rec.get("layers", {}).items():
                rows += [(key, epoch, m, layer, v) for m, v in values.items() if m != "rule"]
    frame = pd.DataFrame(rows, columns=["key", "epoch", "metric", "layer", "value"])
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    configs = summary_frame(results)
    if configs.empty:
        return frame
    configs = configs.drop(
        columns=["rule_options", "test_acc", "best_test_acc", "test_top5", "train_loss", "wall_time"]
    )
    configs = configs.drop(columns=["best_epoch", "val_loss", "val_acc"])
    return frame.merge(configs, on="key", how="left")
