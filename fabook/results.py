"""Result files: atomic JSON and checkpoint I/O, and the provenance of a run.

Every write goes to a temporary file in the target's own folder and is then moved over the target with
`os.replace`, so a reader (or a crash) never sees half a file. JSON is written strictly: non-finite floats
become ``null``, tuples become lists.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

FORMAT = "fabook-result/1"
"""Marker stored in every result JSON (its ``"format"`` field)."""


class ResultFileError(ValueError):
    """A file at a cell's path that is not a readable result (or checkpoint) of that cell."""


def jsonable(obj: Any) -> Any:
    """`obj` as plain JSON values: tuples -> lists, numpy/torch scalars -> Python, NaN/inf -> None."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy / torch scalar
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} {obj!r} in a result file")


def _atomic(path: Path, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as strict, indented JSON to `path` atomically."""
    text = json.dumps(jsonable(obj), indent=1, allow_nan=False) + "\n"
    return _atomic(Path(path), lambda f: f.write(text), "w")


def read_json(path: str | Path) -> Any:
    """The JSON at `path`; `ResultFileError` naming the file when it is not valid JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ResultFileError(f"{path} is not valid JSON ({e}); move or delete it to run this cell") from e


def save_checkpoint(path: str | Path, state: dict) -> Path:
    """`torch.save(state)` to `path` atomically."""
    return _atomic(Path(path), lambda f: torch.save(state, f), "wb")


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint written by `save_checkpoint` (tensors on the CPU)."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ResultFileError(
            f"{path} is not a readable checkpoint ({e}); delete it to restart the cell"
        ) from e


def fabook_version() -> str:
    """`fabook.__version__`, else the installed distribution's version, else "unknown"."""
    import fabook

    version = getattr(fabook, "__version__", None)
    if version:
        return str(version)
    try:
        return metadata.version("fabook")
    except metadata.PackageNotFoundError:
        return "unknown"


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def git_commit() -> str | None:
    """The commit of the repository that holds this package (None outside git or before the first commit)."""
    return _git("rev-parse", "--verify", "--quiet", "HEAD") or None


def now() -> str:
    """The current time, ISO 8601 in UTC."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def device_name(device: torch.device) -> str:
    """A readable name of `device` (the GPU's model for CUDA)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{device.type} ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def provenance(device: torch.device) -> dict[str, Any]:
    """Where and with what a run ran: versions, git commit, host and device."""
    commit = git_commit()
    return {
        "fabook": fabook_version(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "git_commit": commit,
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else None,
        "hostname": socket.gethostname(),
        "device": str(device),
        "device_name": device_name(device),
    }
