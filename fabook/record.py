"""Recorded results: every chapter's cells at one scale, committed in compact form, used instead of training.

``recorded/<notebook>/<scale>.json.gz`` (in the clone; ``$FABOOK_RECORDED`` names another folder, ``off``
turns them off) is gzipped JSON Lines: a header (format, notebook, scale, cell count, provenance: commit,
numerics fingerprint, date, machine, threads, wall time), then one line per cell: the config fields that
differ from :class:`~fabook.train.Config`'s defaults, the result's final numbers at full precision, and,
for the cells whose history the notebook reads, the per-epoch history column by column with numbers rounded
to float32 (the per-epoch ``time`` is dropped). A cell's key follows from its config and the header's
numerics, so a sweep that misses a cell of this code finds it here (:func:`materialise`, called by
:func:`fabook.sweep.run_sweep`) and writes it into its results folder instead of training it; cells of other
numerics code never match and train.

``python -m fabook.record save`` (``make record``) records the runs folder's cells that each notebook uses,
``reproduce`` (``make reproduce``) trains the recorded cells anew and prints what differs, ``status`` prints
:func:`status_table`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import gzip
import importlib
import json
import os
import pkgutil
import sys
import zlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fabook import results
from fabook.results import ResultFileError
from fabook.train import Config, Result, load_result, result_path

FORMAT = "fabook-recorded/1"
"""Marker in every recorded file's header (its ``"format"`` field)."""
RECORDED_ENV = "FABOOK_RECORDED"
REBUILD = "make book && make record"
"""The commands that rebuild the recorded files (train what is missing, then record)."""
SCALES = ("cpu",)
"""The scales ``make record`` and ``make reproduce`` cover."""
DROPPED = ("time",)
"""Per-epoch fields not recorded (a timing, not a result)."""
SCALARS = tuple(
    f.name for f in dataclasses.fields(Result) if f.name not in ("config", "history", "provenance", "path")
)
"""A result's final numbers, recorded at full precision."""
CELL_PROVENANCE = ("n_train", "n_test", "threads", "start", "end", "git_commit", "git_dirty")
"""Per-cell provenance kept (so that re-recording a cell written from a recording keeps it); the rest is
the file's (machine, versions)."""
MACHINE = ("platform", "hostname", "cpu_count", "device_name", "torch", "python", "fabook")

_DEFAULTS = Config(dataset="").to_dict()
_off = False  # set while `save` runs: cells missing from the runs folder must not come from a recording


class RecordedFileError(ValueError):
    """A recorded-results file that cannot be read; the message names it and how to rebuild it."""


# where -----------------------------------------------------------------------------------------------------


def folder() -> Path | None:
    """The recorded results that sweeps use: ``$FABOOK_RECORDED`` (``off``: none), else ``recorded/`` of the
    clone."""
    from fabook.book import project_root

    value = os.environ.get(RECORDED_ENV)
    if value == "off" or _off:
        return None
    return Path(value) if value else project_root() / "recorded"


def _where(where: Path | None) -> Path:
    """``where``, else :func:`folder`, else the clone's ``recorded/`` (while recordings are off)."""
    from fabook.book import project_root

    return Path(where) if where is not None else folder() or project_root() / "recorded"


def recorded_path(notebook: str, scale: str, where: Path | None = None) -> Path:
    """The recorded file of ``notebook`` at ``scale`` under ``where`` (default: :func:`folder`, or the
    clone's ``recorded/`` while that is off)."""
    return _where(where) / notebook / f"{scale}.json.gz"


def recorded_scales(where: Path | None = None) -> list[str]:
    """The scales at which some notebook's results are recorded under ``where`` (default as
    :func:`recorded_path`)."""
    return sorted({p.name.removesuffix(".json.gz") for p in _where(where).glob("*/*.json.gz")})


def _rebuild(path: Path) -> str:
    return f"rebuild it with `{REBUILD}`, or restore the committed one with `git checkout -- {path}`"


# the compact form ------------------------------------------------------------------------------------------


def _round(value: Any) -> Any:
    """A float as the shortest decimal of its float32; other values unchanged."""
    return float(str(np.float32(value))) if isinstance(value, float) else value


def _columns(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Records (dicts) as columns, float32-rounded; ``absent`` lists the rows that lack a field."""
    names = list(dict.fromkeys(k for r in records for k in r))
    block: dict[str, Any] = {
        "n": len(records),
        "columns": {n: [_round(r.get(n)) for r in records] for n in names},
    }
    absent = {n: [i for i, r in enumerate(records) if n not in r] for n in names}
    if any(absent.values()):
        block["absent"] = {n: rows for n, rows in absent.items() if rows}
    return block


def _records(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{} for _ in range(block["n"])]
    absent = {n: set(v) for n, v in block.get("absent", {}).items()}
    for name, values in block["columns"].items():
        if len(values) != block["n"]:
            raise ValueError(f"column {name!r} has {len(values)} values, not {block['n']}")
        for i, value in enumerate(values):
            if i not in absent.get(name, ()):
                rows[i][name] = value
    return rows


def pack_history(history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A result's history in the recorded form: epoch fields as columns, each layer's fields as columns."""
    epochs = [{k: v for k, v in h.items() if k != "layers" and k not in DROPPED} for h in history]
    layers: dict[str, list[dict[str, Any]]] = {}
    for h in history:
        for layer, values in h.get("layers", {}).items():
            layers.setdefault(layer, []).append({"epoch": h["epoch"], **values})
    return {"epochs": _columns(epochs), "layers": {name: _columns(rows) for name, rows in layers.items()}}


def unpack_history(packed: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The inverse of :func:`pack_history` (numbers float32-rounded, :data:`DROPPED` fields missing)."""
    history = _records(packed["epochs"])
    by_epoch = {h["epoch"]: h for h in history}
    for layer, block in packed["layers"].items():
        for row in _records(block):
            by_epoch[row.pop("epoch")].setdefault("layers", {})[layer] = row
    return history


def pack_cell(result: Result, history: bool) -> dict[str, Any]:
    """One line of a recorded file: the config's non-default fields, the final numbers, the history if
    asked."""
    config = result.config.to_dict()
    cell: dict[str, Any] = {
        "config": {k: v for k, v in config.items() if k == "dataset" or v != _DEFAULTS[k]}
    }
    cell |= {name: getattr(result, name) for name in SCALARS}
    cell["provenance"] = {k: result.provenance[k] for k in CELL_PROVENANCE if k in result.provenance}
    if history:
        cell["history"] = pack_history(result.history)
    return results.jsonable(cell)


def unpack_cell(cell: Mapping[str, Any], numerics: str, provenance: Mapping[str, Any], path: Path) -> Result:
    """The :class:`Result` a recorded line stands for; a cell without history gets an empty one, marked in
    its provenance (``recorded``) so that :func:`check_history` refuses to read it."""
    unknown = sorted(set(cell) - {"config", "provenance", "history", *SCALARS})
    if unknown:
        raise ValueError(f"unknown field(s) {unknown}")
    recorded = {"file": str(path), "history": "history" in cell}
    prov = {**provenance, **cell["provenance"], "numerics": numerics, "recorded": recorded}
    history = unpack_history(cell["history"]) if "history" in cell else []
    scalars = {name: cell[name] for name in SCALARS}
    return Result.from_dict({"config": cell["config"], "history": history, **scalars, "provenance": prov})


def check_history(result: Result) -> None:
    """ResultFileError when ``result`` was written from a recording that kept no history of it."""
    recorded = result.provenance.get("recorded")
    if isinstance(recorded, Mapping) and not recorded.get("history", True):
        where = f" ({result.path})" if result.path else ""
        raise ResultFileError(
            f"cell {result.key}{where} was written from {recorded.get('file')}, which keeps no per-epoch "
            f"history of it (only of the cells its notebook read histories of when recorded); delete the "
            f"cell's file to train it, and re-record with `{REBUILD}`"
        )


# files -----------------------------------------------------------------------------------------------------


def _common(values: Iterable[Any]) -> Any:
    """The one value all cells share, else the sorted distinct values."""
    distinct = sorted({json.dumps(v, sort_keys=True) for v in values})
    parsed = [json.loads(v) for v in distinct]
    return parsed[0] if len(parsed) == 1 else parsed


def _busy_seconds(intervals: Sequence[tuple[str, str]]) -> float | None:
    """Seconds covered by the union of ``(start, end)`` timestamps; None without any."""
    if not intervals:
        return None
    busy, reach = 0.0, None
    for start, end in sorted((pd.Timestamp(a), pd.Timestamp(b)) for a, b in intervals):
        reach = start if reach is None else max(reach, start)
        if end > reach:
            busy += (end - reach).total_seconds()
            reach = end
    return busy


def file_provenance(cells: Sequence[Result]) -> dict[str, Any]:
    """The header's provenance of ``cells``: commit, numerics, date, machine, threads and the wall time
    (``wall_time``: seconds during which some cell was training — the union of the cells' start–end
    intervals, so a run resumed later does not count the pause; ``cells_time``: the sum of the cells')."""
    prov = [c.provenance for c in cells]
    commits: dict[str, int] = {}
    for p in prov:
        commits[str(p.get("git_commit"))] = commits.get(str(p.get("git_commit")), 0) + 1
    starts = [p["start"] for p in prov if p.get("start")]
    ends = [p["end"] for p in prov if p.get("end")]
    span = _busy_seconds([(p["start"], p["end"]) for p in prov if p.get("start") and p.get("end")])
    return {
        "recorded": results.now(),
        "commit": results.git_commit(),
        "numerics": _common(p.get("numerics") for p in prov),
        "cell_commits": commits,
        "dirty": any(p.get("git_dirty") for p in prov),
        **{name: _common(p.get(name) for p in prov) for name in MACHINE},
        "threads": _common(c.config.threads for c in cells),
        "wall_time": span,
        "cells_time": sum(c.wall_time for c in cells),
        "trained": [min(starts), max(ends)] if starts and ends else None,
    }


def write(
    path: str | Path, notebook: str, scale: str, cells: Sequence[Result], histories: Iterable[str]
) -> Path:
    """Write ``cells`` (all of one numerics version; the histories of the keys in ``histories``) as the
    recorded file ``path``, atomically: a failed write leaves what was there."""
    keep = set(histories)
    by_key = {c.key: c for c in cells}
    numerics = {c.provenance.get("numerics") for c in cells}
    if len(numerics) != 1:
        raise ValueError(f"recorded cells must share one numerics version; got {sorted(map(str, numerics))}")
    header = {
        "format": FORMAT,
        "notebook": notebook,
        "scale": scale,
        "cells": len(by_key),
        "histories": len(keep & set(by_key)),
        "provenance": file_provenance(cells),
    }
    lines = [header, *(pack_cell(by_key[k], k in keep) for k in sorted(by_key))]
    text = "".join(
        json.dumps(results.jsonable(x), separators=(",", ":"), allow_nan=False) + "\n" for x in lines
    )
    return results.write_bytes(path, gzip.compress(text.encode(), compresslevel=9, mtime=0))


@dataclasses.dataclass
class Recording:
    """A recorded file read back: ``header`` and ``cells`` (results by key)."""

    path: Path
    header: dict[str, Any]
    cells: dict[str, Result]

    @property
    def provenance(self) -> dict[str, Any]:
        return self.header["provenance"]


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def _bad(path: Path, why: str) -> RecordedFileError:
    return RecordedFileError(f"recorded results {path} are unreadable ({why}); {_rebuild(path)}")


def read_header(path: str | Path) -> dict[str, Any]:
    """A recorded file's header (its first line only); RecordedFileError naming the file when unreadable."""
    path = Path(path)
    try:
        header = next(_lines(path))
    except StopIteration:
        raise _bad(path, "empty") from None
    except (OSError, EOFError, zlib.error, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _bad(path, str(e) or type(e).__name__) from e
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise _bad(path, f"no header with 'format': {FORMAT!r}")
    return header


def read(path: str | Path) -> Recording:
    """A whole recorded file, every cell checked; RecordedFileError naming the file when it is damaged or
    cut short."""
    path = Path(path)
    header = read_header(path)
    cells: dict[str, Result] = {}
    try:
        lines = _lines(path)
        next(lines)
        numerics = header["provenance"]["numerics"]
        machine = {k: header["provenance"].get(k) for k in MACHINE}
        for n, cell in enumerate(lines, 1):
            try:
                result = unpack_cell(cell, numerics, machine, path)
            except (KeyError, TypeError, ValueError, AttributeError) as e:
                raise _bad(path, f"cell {n}: {e}") from e
            cells[result.key] = result
    except (OSError, EOFError, zlib.error, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _bad(path, str(e) or type(e).__name__) from e
    if len(cells) != header.get("cells"):
        raise _bad(path, f"{len(cells)} cells, the header says {header.get('cells')}: cut short?")
    histories = sum(bool(r.provenance["recorded"]["history"]) for r in cells.values())
    if histories != header.get("histories"):
        raise _bad(path, f"{histories} cells with a history, the header says {header.get('histories')}")
    return Recording(path, header, cells)


@functools.lru_cache(maxsize=16)
def _read_cached(path: str, mtime_ns: int, size: int) -> Recording:
    return read(path)


def _recordings(where: Path, prefer: Path) -> Iterator[Recording]:
    """Every recorded file under ``where``, those of a notebook named in ``prefer``'s path first."""
    paths = sorted(where.glob("*/*.json.gz"), key=lambda p: (p.parent.name not in prefer.parts, str(p)))
    for path in paths:
        stat = path.stat()
        yield _read_cached(str(path), stat.st_mtime_ns, stat.st_size)


def materialise(configs: Sequence[Config], out_dir: str | Path) -> int:
    """Write the result file of each of ``configs`` that the recorded results hold (same key: same config and
    numerics) into ``out_dir``; the number written. Nothing when there is no recording (or it is off)."""
    where = folder()
    if not configs or where is None or not where.is_dir():
        return 0
    wanted = {c.key(): c for c in configs}
    written = 0
    for recording in _recordings(where, Path(out_dir).resolve()):
        for key in [k for k in wanted if k in recording.cells]:
            results.write_json(result_path(wanted.pop(key), out_dir), recording.cells[key].to_dict())
            written += 1
        if not wanted:
            break
    return written


# what a notebook uses --------------------------------------------------------------------------------------


def experiment(notebook: str):
    """The module of :mod:`fabook.experiments` whose ``NOTEBOOK`` is ``notebook``; ValueError naming the
    accepted ones otherwise."""
    import fabook.experiments

    found = {}
    for info in pkgutil.iter_modules(fabook.experiments.__path__):
        module = importlib.import_module(f"fabook.experiments.{info.name}")
        if hasattr(module, "NOTEBOOK"):
            found[module.NOTEBOOK] = module
    if notebook not in found:
        raise ValueError(
            f"no experiment module for notebook {notebook!r}; accepted: {', '.join(sorted(found))}"
        )
    return found[notebook]


def notebook_parameters(path: str | Path) -> dict[str, Any]:
    """The literal assignments of a notebook's cell tagged ``parameters`` (what papermill would override)."""
    nb = json.loads(Path(path).read_text())
    for cell in nb["cells"]:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            return {
                node.targets[0].id: ast.literal_eval(node.value)
                for node in ast.parse(source).body
                if isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
            }
    raise ValueError(f"{path} has no cell tagged 'parameters'")


@contextmanager
def _recording_off() -> Iterator[None]:
    global _off
    before, _off = _off, True
    try:
        yield
    finally:
        _off = before


def used(module: Any, parameters: Mapping[str, Any]):
    """Run ``module.run(module.Params(**parameters))`` on finished cells only (no training, no recorded
    results) and return what it used (:class:`fabook.sweep.Usage`): the cells and the histories it read.
    RuntimeError naming the command to run first when cells are missing."""
    from fabook import sweep

    params = module.Params(**parameters)
    try:
        with _recording_off(), sweep.watch(train=False) as usage:
            module.run(params)
    except sweep.CellsMissing as e:
        raise RuntimeError(
            f"{module.NOTEBOOK} at scale {parameters.get('scale')!r}: {e}; train them first: "
            f"`python -m fabook.book --scale {parameters.get('scale')} --only {module.NOTEBOOK} --no-build`"
        ) from None
    return usage


def save(notebook: str, scale: str, root: Path | None = None, where: Path | None = None) -> Path:
    """Record the cells ``notebook`` uses at ``scale``, as its notebook's parameters cell sets them, from the
    runs folder (``$FABOOK_RUNS`` or ``runs/``): the cells its sweeps ask for (this code's numerics, since
    their keys hold it) and the histories it reads."""
    from fabook.book import project_root

    root = root or project_root()
    parameters = notebook_parameters(root / "notebooks" / f"{notebook}.ipynb") | {"scale": scale}
    usage = used(experiment(notebook), parameters)
    cells = list(usage.results.values())
    return write(recorded_path(notebook, scale, where), notebook, scale, cells, usage.histories)


# staleness -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Status:
    """Where a notebook's recorded results stand against this code: ``state`` is ``fresh`` (recorded with
    this code's numerics), ``stale`` (other numerics: the book trains anew) or ``missing`` (no file)."""

    notebook: str
    scale: str
    state: str
    path: Path
    numerics: str | None = None
    code_numerics: str | None = None
    commit: str | None = None
    recorded: str | None = None
    wall_time: float | None = None
    cells: int | None = None
    machine: str | None = None


def status(notebook: str, scale: str, where: Path | None = None) -> Status:
    """:class:`Status` of ``notebook``'s recorded results at ``scale`` (reads the file's header only)."""
    path = recorded_path(notebook, scale, where)
    code = results.numerics_version()
    if not path.is_file():
        return Status(notebook, scale, "missing", path, code_numerics=code)
    header = read_header(path)
    prov = header["provenance"]
    machine = prov.get("platform")
    if machine and prov.get("cpu_count"):
        models = "".join(f"; {m}" for m in processors(prov.get("device_name")))
        machine = f"{machine} ({prov['cpu_count']} CPUs{models})"
    state = "fresh" if prov.get("numerics") == code else "stale"
    return Status(
        notebook, scale, state, path, prov.get("numerics"), code, prov.get("commit"), prov.get("recorded"),
        prov.get("wall_time"), header.get("cells"), machine,
    )  # fmt: skip


def processors(device_names: str | Sequence[str] | None) -> list[str]:
    """The processor models (:func:`fabook.results.processor`) a recording's ``device_name`` names, in order,
    once each."""
    names = [device_names] if isinstance(device_names, str) else list(device_names or [])
    return list(dict.fromkeys(p for name in names if (p := results.processor(name))))


def duration(seconds: float | None) -> str:
    """``1010`` -> ``"16 min 50 s"``."""
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return " ".join(f"{v} {u}" for v, u in ((hours, "h"), (minutes, "min"), (secs, "s")) if v) or "0 s"


def notebooks(root: Path | None = None) -> list[str]:
    """The book's notebooks (``notebooks/*.ipynb`` of the clone), by name."""
    from fabook.book import project_root

    return sorted(p.stem for p in ((root or project_root()) / "notebooks").glob("*.ipynb"))


def status_table(
    scale: str = "cpu", names: Sequence[str] | None = None, where: Path | None = None
) -> pd.DataFrame:
    """One row per notebook: its recorded results at ``scale`` — state, cells, the run's wall time, when,
    at which commit and with which numerics they were recorded, on which machine."""
    rows = []
    for name in names if names is not None else notebooks():
        s = status(name, scale, where)
        rows.append({
            "notebook": name, "scale": scale, "state": s.state, "cells": s.cells,
            "wall time": duration(s.wall_time) if s.state != "missing" else "",
            "recorded": (s.recorded or "")[:10], "commit": (s.commit or "")[:10],
            "numerics": s.numerics or "",
            "machine": s.machine or "",
        })  # fmt: skip
    return pd.DataFrame(rows)


# reproduce -------------------------------------------------------------------------------------------------


def differences(recorded: Result, fresh: Result) -> list[str]:
    """What ``fresh`` (trained anew) says differently from ``recorded``: the final numbers exactly, the
    history (when recorded) at the recording's float32 rounding; empty when they agree."""
    out = [
        f"{name}: recorded {getattr(recorded, name)!r}, anew {getattr(fresh, name)!r}"
        for name in SCALARS
        if name != "wall_time" and getattr(recorded, name) != getattr(fresh, name)
    ]
    if recorded.history or recorded.provenance.get("recorded", {}).get("history"):
        anew = unpack_history(pack_history(fresh.history))
        for old, new in zip(recorded.history, anew, strict=False):
            if old != new:
                fields = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
                out.append(f"history epoch {old.get('epoch')}: {', '.join(fields)} differ")
                break
        if len(recorded.history) != len(anew):
            out.append(f"history: {len(recorded.history)} epochs recorded, {len(anew)} anew")
    return out


def reproduce(
    names: Sequence[str], scale: str, out_dir: Path, jobs: int = 1, where: Path | None = None, echo=print
) -> int:
    """Train every recorded cell of ``names`` at ``scale`` anew into ``out_dir/<notebook>/<scale>`` (finished
    cells there are kept: a rerun continues) and print what differs from the recording; the number of cells
    that differ."""
    from fabook.sweep import run_cells

    differ = 0
    for name in names:
        path = recorded_path(name, scale, where)
        if not path.is_file():
            echo(f"{name}: no recorded results at {path}; skipped")
            continue
        recording = read(path)
        code, numerics = results.numerics_version(), recording.provenance["numerics"]
        if code != numerics:
            echo(
                f"{name}: recorded with numerics {numerics}, this code's are {code}: differences are expected"
            )
        target = out_dir / name / scale
        configs = [r.config for r in recording.cells.values()]
        todo = [c for c in configs if not result_path(c, target).exists()]
        echo(f"{name}: {len(configs)} cells, {len(configs) - len(todo)} already trained in {target}")
        for _ in run_cells(todo, target, jobs=jobs, progress=True):
            pass
        found = 0
        for recorded in recording.cells.values():
            found_here = differences(recorded, load_result(result_path(recorded.config, target)))
            if found_here:
                found += 1
                if found <= 20:
                    echo(f"  {recorded.key}: " + "; ".join(found_here))
        echo(f"{name}: {found} of {len(configs)} cells differ" if found else f"{name}: every cell agrees")
        differ += found
    return differ


# the command -----------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fabook.record", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (
        ("save", "record the runs folder's cells that each notebook uses (train them first: make book)"),
        ("reproduce", "train every recorded cell anew into an empty folder and print what differs"),
        ("status", "each notebook's recorded results: fresh, stale or missing"),
    ):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("--scale", default="cpu", choices=SCALES)
        p.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="these notebooks (default: every one)")
        if name == "reproduce":
            p.add_argument("--out", type=Path, help="where to train (default: _build/reproduce in the clone)")
            p.add_argument("--jobs", type=int, default=2, help="cells trained in parallel (default 2)")
    args = parser.parse_args(argv)
    names = notebooks()
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        parser.error(f"unknown notebook(s) {unknown}; accepted: {', '.join(names)}")
    names = args.only or names
    try:
        if args.command == "save":
            for name in names:
                path = save(name, args.scale)
                cells, size = read_header(path)["cells"], path.stat().st_size
                print(f"{name}: {cells} cells recorded in {path} ({size:,} bytes)")
        elif args.command == "status":
            print(status_table(args.scale, names).to_string(index=False))
        else:
            from fabook.book import project_root

            out = args.out or project_root() / "_build" / "reproduce"
            return 1 if reproduce(names, args.scale, out, jobs=args.jobs) else 0
    except KeyboardInterrupt:
        print("interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
