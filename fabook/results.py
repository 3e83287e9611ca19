"""Result files: atomic JSON and checkpoint I/O, the results folder and its per-cell locks, and the
provenance of a run.

Every write goes to a temporary file in the target's own folder and is then moved over the target with
`os.replace`, so a reader (or a crash, or a full disk) never sees half a file; files get the permissions the
umask gives (readable by others like any file the user creates). JSON is written strictly: non-finite floats
become ``null``, tuples become lists.
"""

from __future__ import annotations

import ast
import errno
import functools
import hashlib
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

try:
    import fcntl
except ImportError:  # Windows: no per-cell locks
    fcntl = None

FORMAT = "fabook-result/1"
"""Marker stored in every result JSON (its ``"format"`` field)."""


class ResultFileError(ValueError):
    """A file at a cell's path that is not a readable result (or checkpoint) of that cell."""


class OutputError(OSError):
    """Results cannot be written where asked (not a folder, read-only, disk full, ...); the message is one
    line naming the path, the reason and what to do."""


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


def file_mode() -> int:
    """The permissions of a new file under the current umask (``0o644`` under the usual ``022``)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _os_error(e: BaseException) -> OSError | None:
    """The OSError that caused ``e`` (``e`` itself, or one in its chain: torch wraps a failed write)."""
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, OSError):
            return e
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return None


def _output_error(path: Path, e: OSError, doing: str) -> OutputError:
    reason = e.strerror or str(e)
    advice = {
        errno.ENOSPC: "free some space and run again",
        errno.EDQUOT: "free some space and run again",
        errno.ENOTDIR: "a part of the path is a file; choose another folder",
        errno.EEXIST: "choose another folder",
        errno.ENOENT: "a folder on the way is missing or unreachable; check the path",
    }.get(e.errno, "choose another folder or make it writable")
    error = OutputError(f"cannot {doing} {path}: {reason}; {advice}")
    error.errno = e.errno
    return error


def _open_new(path: Path) -> int:
    """Create ``path`` (which must not exist) for writing, with the umask's permissions."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)


def _atomic(path: Path, write: Callable[[Any], None], mode: str) -> Path:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}.tmp")  # named first: an interrupt
        fd = _open_new(tmp)  # that comes while the file is created still finds it to remove
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        cause = _os_error(e) if isinstance(e, Exception) else None
        if cause is None or isinstance(e, OutputError):
            raise
        error = _output_error(path, cause, "write")
        error.args = (f"{error} (nothing half-written is left: what {path.name} held before is intact)",)
        raise error from e
    return path


def check_folder(folder: str | Path) -> Path:
    """Create ``folder`` if needed and check that files can be written in it; OutputError (one line naming
    the folder and the reason) otherwise. Leaves nothing behind but the folder."""
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            raise FileExistsError(errno.EEXIST, "it is a file, not a folder")
        for part in (folder, *folder.parents):
            if part.is_symlink() and not part.exists():
                raise FileNotFoundError(errno.ENOENT, f"{part} is a link to the missing {os.readlink(part)}")
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".fabook-write-check.{os.urandom(6).hex()}"
        os.close(_open_new(probe))
        os.unlink(probe)
    except OSError as e:
        raise _output_error(folder, e, "write results to") from e
    return folder


@contextmanager
def cell_lock(path: str | Path, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (a lock file, removed on release) while the block runs; yields
    False at once instead when ``wait`` is false and another process holds it. Processes on one machine
    (or a file system with working ``flock``) exclude each other; without ``fcntl`` (Windows) it locks
    nothing."""
    path = Path(path)
    if fcntl is None:
        yield True
        return
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as e:
            raise _output_error(path, e, "lock") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        try:  # the holder before us may have removed the file: then lock the new one
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield True
    finally:
        path.unlink(missing_ok=True)  # while still holding it: a waiter then finds another inode and retries
        os.close(fd)


def is_locked(path: str | Path) -> bool:
    """Whether another process holds the :func:`cell_lock` on ``path`` now."""
    if fcntl is None or not Path(path).exists():
        return False
    with cell_lock(path, wait=False) as acquired:
        return not acquired


def write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as strict, indented JSON to `path` atomically."""
    return write_text(path, json.dumps(jsonable(obj), indent=1, allow_nan=False) + "\n")


def write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically."""
    return _atomic(Path(path), lambda f: f.write(text), "w")


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically."""
    return _atomic(Path(path), lambda f: f.write(data), "wb")


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


NUMERICS_SOURCES = ("train.py", "rules.py", "layers.py", "convert.py", "models.py", "optim.py", "metrics.py")
NUMERICS_SOURCES += ("data", "magnitudes.py")
NUMERICS_SOURCES += ("config.py", "batches.py", "loop.py", "norm_constraint.py", "distributed.py")
"""The package's files (and folders of them) whose code decides a cell's numbers."""


def code_text(source: str) -> str:
    """What of a module's ``source`` can change a number: its syntax tree (``ast.dump``, no positions) without
    comments, layout or docstrings (every bare string statement: module, class, function and attribute
    docstrings). Editing a docstring or a comment leaves it unchanged."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            node.body = [s for s in body if not _is_docstring(s)] or [ast.Pass()]
    return ast.dump(tree)


def _is_docstring(statement: ast.stmt) -> bool:
    return (
        isinstance(statement, ast.Expr)
        and isinstance(statement.value, ast.Constant)
        and isinstance(statement.value.value, str)
    )


@functools.lru_cache(maxsize=1)
def numerics_version() -> str:
    """12 hex digits of the SHA-1 of :data:`NUMERICS_SOURCES`' code (:func:`code_text`: docstrings and
    comments left out): a new value after any edit to the code that decides a cell's numbers, the same after
    an edit to its documentation. Part of every cell's key, so a result of other code is never reused (it
    stays on disk, under its own key)."""
    package = Path(__file__).parent
    digest = hashlib.sha1()
    for name in NUMERICS_SOURCES:
        files = sorted((package / name).rglob("*.py")) if (package / name).is_dir() else [package / name]
        for file in files:
            digest.update(file.relative_to(package).as_posix().encode() + b"\0")
            digest.update(code_text(file.read_text(encoding="utf-8")).encode() + b"\0")
    return digest.hexdigest()[:12]


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
    return f"{device.type} ({cpu_model()}, {torch.get_num_threads()} threads)"


ARCHITECTURES = ("x86_64", "aarch64", "arm64", "AMD64", "i386", "i686")
"""Architecture names as ``platform`` gives them: :func:`cpu_model`'s fallback where no model is named."""


def processor(name: str) -> str | None:
    """The processor model a :func:`device_name` names (``"cpu (AMD EPYC, 1 threads)"`` -> ``"AMD EPYC"``, a
    GPU's name as it is); None where it names only the architecture, as cells recorded before the CPU's model
    was kept do (``"cpu (x86_64, 1 threads)"``)."""
    cpu = re.fullmatch(r"cpu \((.+), \d+ threads\)", name)
    model = cpu[1] if cpu else name
    return model if model and model not in ARCHITECTURES else None


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else ``platform.processor()``), else the
    architecture: cells trained on two CPU models can differ in every digit, their kernels round unalike."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: torch.device) -> dict[str, Any]:
    """Where and with what a run ran: versions, git commit, host (and its CPU count) and device."""
    commit = git_commit()
    return {
        "fabook": fabook_version(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "numerics": numerics_version(),
        "git_commit": commit,
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")) if commit else None,
        "hostname": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "device": str(device),
        "device_name": device_name(device),
    }
