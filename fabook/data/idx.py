"""The IDX format and the file layout of MNIST and Fashion-MNIST (``train-images-idx3-ubyte[.gz]``, ...)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/, "the IDX file format")
_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file, gzipped (``.gz``) or not."""
    path = Path(path)
    with (gzip.open if path.suffix == ".gz" else open)(path, "rb") as f:
        raw = f.read()
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _DTYPES:
        accepted = ", ".join(f"{c:#04x}" for c in _DTYPES)
        raise ValueError(f"{path}: not an IDX file (magic {raw[:4].hex()}; accepted type bytes: {accepted})")
    shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=_DTYPES[code], offset=4 + 4 * ndim)
    if data.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but holds {data.size} values")
    return data.astype(data.dtype.newbyteorder("=")).reshape(shape)  # a writable, native-endian copy


def find_idx(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` or ``folder/stem.gz``, whichever exists (uncompressed first), else None."""
    for path in (folder / stem, folder / f"{stem}.gz"):
        if path.is_file():
            return path
    return None


MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def missing_mnist_files(folder: Path) -> list[str]:
    """The MNIST-layout files (each with or without ``.gz``) that ``folder`` lacks."""
    return [stem for stem in MNIST_FILES if find_idx(folder, stem) is None]


def read_mnist_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train images, train labels, test images, test labels) from an MNIST-layout folder."""
    paths = [find_idx(folder, stem) for stem in MNIST_FILES]
    if None in paths:
        raise FileNotFoundError(f"{folder}: missing {', '.join(missing_mnist_files(folder))}")
    return tuple(read_idx(path) for path in paths)  # type: ignore[return-value]
