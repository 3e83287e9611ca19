"""What a notebook calls besides the experiment: checking its parameters and saving citable figures."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from matplotlib.figure import Figure

from fabook.book import check_scale, figures_dir

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
        fig.savefig(tmp, dpi=150, bbox_inches="tight", format=ext)
        os.replace(tmp, path)
        paths.append(path)
    return paths
