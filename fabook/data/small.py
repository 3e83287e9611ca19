"""``fashion-mnist-small``: a fixed stratified Fashion-MNIST sample that ships inside the package.

2000 training and 1000 test images (200 and 100 per class), drawn with seed 0 by
:func:`fabook.data.prepare.stratified_indices` from the official training and test sets, kept as the four
gzipped IDX files of the MNIST layout in ``fabook/data/fashion-mnist-small/`` (about 1.2 MB). Fashion-MNIST is
© Zalando SE, MIT licence (https://github.com/zalandoresearch/fashion-mnist). It lets the tests and the
``smoke`` notebooks run on a fresh machine with no download; :func:`write_small` remakes the files
byte for byte from the full set.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from .idx import MNIST_FILES, read_mnist_folder
from .prepare import stratified_indices

SMALL_DIR = Path(__file__).with_name("fashion-mnist-small")
SMALL_SIZES = (2000, 1000)
SMALL_SEED = 0


def _write_idx(path: Path, array: np.ndarray) -> None:
    """A uint8 IDX file, gzipped with a zero timestamp (the same bytes every time)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as f:
        f.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_small(source: Path, dest: Path = SMALL_DIR) -> None:
    """Write the ``fashion-mnist-small`` files into ``dest`` from the full set's MNIST-layout ``source``."""
    x_train, y_train, x_test, y_test = read_mnist_folder(Path(source))
    rng = np.random.default_rng(SMALL_SEED)
    train = stratified_indices(y_train, SMALL_SIZES[0], rng)
    test = stratified_indices(y_test, SMALL_SIZES[1], rng)
    dest.mkdir(parents=True, exist_ok=True)
    arrays = (x_train[train], y_train[train], x_test[test], y_test[test])
    for stem, array in zip(MNIST_FILES, arrays, strict=True):
        _write_idx(dest / f"{stem}.gz", array)
