"""Data sets by name: ``load(name)`` gives a standardized, seeded train/test :class:`Split`.

``CATALOGUE`` lists every set with its shape, classes, sizes, source and fetch command; ``ensure(name)`` gets
one onto this machine (``python -m fabook.data ensure NAME``). The offline sets load
with no internet (shipped with fabook, or from Debian / PyPI packages); the paper sets need a download
(``download=True``, e.g. on Colab) or, for ImageNet, a folder. See :mod:`fabook.data.prepare` for the split,
cap and standardization conventions.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import pandas as pd

from . import offline, paper
from .cache import default_root
from .catalogue import CATALOGUE, TEST_FRACTION, DatasetInfo, get_info
from .fetch import ensure
from .prepare import Split, finish

__all__ = [
    "CATALOGUE",
    "TEST_FRACTION",
    "DatasetInfo",
    "Split",
    "available",
    "catalogue_table",
    "default_root",
    "ensure",
    "get_info",
    "load",
    "missing",
    "num_classes",
]


def _root(root: str | Path | None) -> Path:
    return default_root() if root is None else Path(root).expanduser()


def missing(name: str, root: str | Path | None = None) -> str | None:
    """What ``name`` lacks here (files, folder or package), or None when :func:`load` can succeed offline."""
    get_info(name)
    module = offline if name in offline.LOADERS else paper
    return module.missing(name, _root(root))


def num_classes(name: str, root: str | Path | None = None) -> int:
    """The classes a model for ``name`` must tell apart: the catalogue's, except for an ImageNet folder
    that is there, whose ``train/`` may hold a subset of the 1000 (its class folders, as ``ImageFolder``
    counts them)."""
    info = get_info(name)
    if name == "imagenet" and missing(name, root) is None:
        from torchvision.datasets.folder import find_classes

        return len(find_classes(str(paper.imagenet_dir(_root(root)) / "train"))[0])
    return info.num_classes


def available(name: str, root: str | Path | None = None) -> bool:
    """Whether :func:`load` succeeds here without network (ValueError for an unknown name)."""
    return missing(name, root) is None


def load(
    name: str,
    *,
    root: str | Path | None = None,
    seed: int = 0,
    download: bool = False,
    max_train: int | None = None,
    max_test: int | None = None,
) -> Split:
    """Train and test sets of ``name``: float32 samples of ``info.input_shape``, int64 labels 0..C-1.

    ``root`` (default :func:`default_root`) holds downloads and caches. ``seed`` draws the hold-out split of
    sets without an official one (25 %, stratified) and the stratified ``max_train`` / ``max_test`` subsets.
    Inputs are standardized with training statistics only. ``download=True`` lets torchvision fetch the sets
    it can (network needed); full Fashion-MNIST is looked for in ``<root>/FashionMNIST/raw``, then the Debian
    folder, then downloaded without being asked. FileNotFoundError says what is missing and how to get it.
    """
    info, root = get_info(name), _root(root)
    lack = missing(name, root)
    can_download = name in offline.DOWNLOADABLE | paper.DOWNLOADABLE
    if lack is not None and name in offline.AUTO_DOWNLOAD:
        download = True  # its loader tries torchvision and, failing that, names every way to get it
    if lack is not None and not (download and can_download):
        hint = " - or pass download=True (needs internet; Colab downloads it)" if can_download else ""
        raise FileNotFoundError(f"{name}: not found here; missing {lack}. Get it with: {info.fetch}{hint}")
    if name == "imagenet":
        return paper.load_imagenet(root, info, seed=seed, max_train=max_train, max_test=max_test)
    return finish(_raw(name, root, download), info, seed=seed, max_train=max_train, max_test=max_test)


@lru_cache(maxsize=32)
def _raw(name: str, root: Path, download: bool) -> object:
    """The unsplit data, read once per process (a sweep loads the same sets for many cells; read-only)."""
    return (offline.LOADERS.get(name) or paper.LOADERS[name])(root, download)


def catalogue_table(root: str | Path | None = None) -> pd.DataFrame:
    """One row per set: name, kind, shape, classes, sizes, offline, available here and, if not, the fetch."""
    rows = []
    for info in CATALOGUE.values():
        here = available(info.name, root)
        rows.append(
            {
                "name": info.name,
                "kind": info.kind,
                "shape": "x".join(map(str, info.input_shape)),
                "classes": info.num_classes,
                "n_train": info.n_train,
                "n_test": info.n_test,
                "offline": info.offline,
                "available": here,
                "fetch": "" if here else info.fetch,
            }
        )
    return pd.DataFrame(rows)
