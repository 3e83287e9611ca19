"""What a notebook calls besides the experiment: checking its parameters, saving citable figures and saying
where its numbers come from."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from matplotlib.figure import Figure

from fabook.book import check_scale, figures_dir
from fabook.results import file_mode

P = TypeVar("P")


def names(namespace: Mapping[str, Any]) -> set[str]:
    """The names defined so far; call it in the cell before the ``parameters`` cell."""
    return set(namespace)


def collect(params_cls: type[P], namespace: Mapping[str, Any], before: set[str]) -> P:
    """The notebook's parameters as ``params_cls``: what the ``parameters`` cell (and papermill) defined.

    A name papermill injected that ``params_cls`` does not have, or a bad value, stops the notebook with
    an error naming the accepted parameters or values.
    """
    given = {k: v for k, v in namespace.items() if k not in before and not k.startswith("_")}
    accepted = [f.name for f in dataclasses.fields(params_cls)]
    unknown = sorted(set(given) - set(accepted))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown}; this notebook accepts: {accepted}")
    if "scale" in given:
        check_scale(given["scale"])
    return params_cls(**given)


def check_types(params: Any) -> None:
    """TypeError naming the first field of the dataclass instance ``params`` whose value does not have the
    field's annotated type, and the type it must have. Understood: ``bool``, ``int``, ``float`` (an int
    passes), ``str``, ``tuple[X, ...]`` and ``list[X]`` (a list or tuple of X; a string is not one),
    ``X | None``; other annotations are not checked. A bool is not a number and a number not a bool, so
    ``download="no"`` and ``seeds=True`` fail. Fields annotated ``tuple[...]`` given as lists are stored as
    tuples (the dataclass may be frozen). Call it first in ``__post_init__``."""
    hints = typing.get_type_hints(type(params))
    for f in dataclasses.fields(params):
        hint, value = hints.get(f.name, Any), getattr(params, f.name)
        if not _has_type(value, hint):
            example = f", e.g. {[value]!r}" if isinstance(value, str) and _has_type([value], hint) else ""
            raise TypeError(f"{f.name}={value!r} must be {_describe(hint)}{example}")
        if isinstance(value, list) and _tuple_hint(hint):
            object.__setattr__(params, f.name, tuple(value))


def _tuple_hint(hint: Any) -> bool:
    return typing.get_origin(hint) is tuple or any(
        typing.get_origin(a) is tuple for a in typing.get_args(hint)
    )


def _has_type(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_has_type(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin in (tuple, list):
        if not isinstance(value, (tuple, list)):
            return False
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return len(value) == len(args) and all(map(_has_type, value, args))
        return all(_has_type(v, args[0]) for v in value) if args else True
    if hint in (int, float):
        numbers = (int, float) if hint is float else int
        return isinstance(value, numbers) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin in (tuple, list) and args:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            return f"a list of {len(args)}: {', '.join(_describe(a) for a in args)}"
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    named = {type(None): "None", bool: "True or False", int: "an integer", float: "a number", str: "a string"}
    return named.get(hint, getattr(hint, "__name__", str(hint)))


def check_positive(**values: object) -> None:
    """ValueError naming the first value that is neither None nor a positive integer."""
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{name}={value!r} must be a positive integer (or None for the scale's default)")


def save_figure(fig: Figure, notebook: str, name: str) -> list[Path]:
    """Save ``fig`` as ``figures/<notebook>/<name>.png`` and ``.pdf`` (atomically); return both paths."""
    folder = figures_dir() / notebook
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = folder / f"{name}.{ext}"
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=f".{ext}")
        os.close(fd)
        os.chmod(tmp, file_mode())  # readable like any file the reader creates (mkstemp makes it private)
        stamp = {"CreationDate": None} if ext == "pdf" else None  # same figure, same bytes: no date inside
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format=ext, metadata=stamp)
        os.replace(tmp, path)
        paths.append(path)
    return paths


def require_data(names: list[str] | tuple[str, ...], scale: str, download: bool) -> None:
    """Download ``names`` first when ``download``; then FileNotFoundError naming every data set that is still
    missing and how to get it (before any training)."""
    from fabook import data

    if download:
        for name in names:
            data.load(name, download=True)
    missing = {d: why for d in names if (why := data.missing(d))}
    if missing:
        lines = "\n".join(
            f"- {d}: missing {why}; get it with: {data.get_info(d).fetch}" for d, why in missing.items()
        )
        raise FileNotFoundError(
            f"data sets missing for scale {scale!r} (or set download = True in the parameters cell; "
            f"it needs the internet, as on Colab):\n{lines}"
        )


def provenance_note(name: str, scale: str) -> str:
    """A markdown line for the top of notebook ``name``'s page: where its ``scale`` numbers come from — the
    recorded results (date, commit, numerics, cells, wall time, machine), or a warning when those are stale
    for this code (the page's numbers were then computed when the book was built), or that none are
    recorded at this scale (or ``$FABOOK_RECORDED`` is ``off``)."""
    from fabook import record

    s = record.status(name, scale)
    if s.state == "missing" or record.folder() is None:
        why = "recorded results off" if record.folder() is None else "no results are recorded for this scale"
        return (
            f"The numbers on this page were computed at the `{scale}` scale when the book was built ({why})."
        )
    recorded = (
        f"recorded on {(s.recorded or 'an unknown date')[:10]} at commit `{(s.commit or 'unknown')[:10]}`, "
        f"numerics `{s.numerics}`: {s.cells:,} cells, {record.duration(s.wall_time)} of training"
        + (f" on {s.machine}" if s.machine else "")
    )
    if s.state == "fresh":
        return f"Results at the `{scale}` scale {recorded}; `make reproduce` trains them anew."
    return (
        f"**Warning: stale recorded results.** This page's `{scale}` results were {recorded}, from other "
        f"numerics code than this book's (`{s.code_numerics}`), so its numbers were computed when the book "
        f"was built, not read from the recording; `{record.REBUILD}` re-records them."
    )
