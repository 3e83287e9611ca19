"""Where fabook keeps data, and an atomic tensor cache for sets that are slow to make."""

from __future__ import annotations

import os
import pickle
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import torch


def default_root() -> Path:
    """``$FABOOK_DATA`` if set, else the user cache: ``$XDG_CACHE_HOME/fabook`` or ``~/.cache/fabook``."""
    if os.environ.get("FABOOK_DATA"):
        return Path(os.environ["FABOOK_DATA"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "fabook"


def save_atomic(obj: object, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace`` it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def cached(path: Path, make: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The tensors saved at ``path``; made with ``make()`` and saved there when absent or unreadable."""
    try:
        return torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
        pass
    tensors = make()
    try:
        save_atomic(tensors, path)
    except OSError as err:
        warnings.warn(f"could not cache {path}: {err}", stacklevel=2)
    return tensors
