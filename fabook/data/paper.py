"""Loaders for the sets the papers used: torchvision's downloaders, and ImageNet from a folder.

None of these is on a machine without internet. ``download=True`` lets torchvision fetch MNIST, CIFAR-10/100,
SVHN and STL-10 into the data root (what happens on Colab); ImageNet must be put there by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .catalogue import DatasetInfo
from .idx import missing_mnist_files, read_mnist_folder
from .prepare import Raw, Split, cap_indices, check_cap, streams

# The statistics of the ImageNet training set, as torchvision's pretrained models use them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Files that torchvision's class needs, relative to the data root (STL-10 checks its unlabelled part too).
_CIFAR10 = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]
_STL10 = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin", "unlabeled_X.bin"]
_FILES = {
    "cifar10": [f"cifar-10-batches-py/{f}" for f in _CIFAR10],
    "cifar100": [f"cifar-100-python/{f}" for f in ("train", "test", "meta")],
    "svhn": ["svhn/train_32x32.mat", "svhn/test_32x32.mat"],
    "stl10": [f"stl10_binary/{f}" for f in _STL10],
}


def _pixels(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """float32 (N, C, H, W) in [0, 1] from uint8 (N, C, H, W)."""
    return torch.as_tensor(x).float().div_(255).contiguous()


def _mnist(root: Path, download: bool) -> Raw:
    folder = root / "MNIST" / "raw"
    if download and missing_mnist_files(folder):
        from torchvision.datasets import MNIST

        for train in (True, False):
            MNIST(root, train=train, download=True)
    x_train, y_train, x_test, y_test = read_mnist_folder(folder)
    labels = lambda y: torch.as_tensor(y, dtype=torch.int64)  # noqa: E731
    return Raw(_pixels(x_train[:, None]), labels(y_train), _pixels(x_test[:, None]), labels(y_test))


Part = tuple[torch.Tensor, torch.Tensor]


def _both(part: Callable[[Path, bool, bool], Part]) -> Callable[[Path, bool], Raw]:
    """A loader from ``part(root, train, download) -> (x, y)``."""
    return lambda root, download: Raw(*part(root, True, download), *part(root, False, download))


def _cifar(cls_name: str) -> Callable[[Path, bool, bool], Part]:
    def part(root: Path, train: bool, download: bool) -> Part:
        from torchvision import datasets

        ds = getattr(datasets, cls_name)(root, train=train, download=download)
        return _pixels(ds.data.transpose(0, 3, 1, 2)), torch.as_tensor(ds.targets, dtype=torch.int64)

    return part


def _split_named(cls_name: str, subdir: str) -> Callable[[Path, bool, bool], Part]:
    """SVHN / STL-10: ``split="train"|"test"``, data already (N, C, H, W), labels in ``.labels``."""

    def part(root: Path, train: bool, download: bool) -> Part:
        from torchvision import datasets

        ds = getattr(datasets, cls_name)(root / subdir, split="train" if train else "test", download=download)
        return _pixels(ds.data), torch.as_tensor(ds.labels, dtype=torch.int64)

    return part


LOADERS: dict[str, Callable[[Path, bool], Raw]] = {
    "mnist": _mnist,
    "cifar10": _both(_cifar("CIFAR10")),
    "cifar100": _both(_cifar("CIFAR100")),
    "svhn": _both(_split_named("SVHN", "svhn")),
    "stl10": _both(_split_named("STL10", ".")),
}

DOWNLOADABLE = frozenset(LOADERS)


def imagenet_dir(root: Path) -> Path:
    """``root`` itself when it holds ``train/`` and ``val/``, else ``root/imagenet``."""
    return root if (root / "train").is_dir() and (root / "val").is_dir() else root / "imagenet"


def missing(name: str, root: Path) -> str | None:
    """What ``name`` lacks under ``root`` (None: it loads); never touches the network."""
    if name == "mnist":
        lacks = missing_mnist_files(root / "MNIST" / "raw")
        return f"{root / 'MNIST' / 'raw'}/{{{','.join(lacks)}}}[.gz]" if lacks else None
    if name == "imagenet":
        folder = imagenet_dir(root)
        lacks = [s for s in ("train", "val") if not (folder / s).is_dir()]
        return f"{folder}/{{{','.join(lacks)}}}/<class>/*.JPEG" if lacks else None
    lacks = [Path(f) for f in _FILES[name] if not (root / f).is_file()]
    return f"{root / lacks[0].parent}/{{{','.join(f.name for f in lacks)}}}" if lacks else None


def _int64(target: int) -> torch.Tensor:
    return torch.tensor(target, dtype=torch.int64)


def _capped(dataset: Dataset, targets: list[int], cap: int | None, rng: np.random.Generator) -> Dataset:
    keep = cap_indices(torch.as_tensor(targets), cap, rng)
    return dataset if keep is None else Subset(dataset, keep.tolist())


def load_imagenet(
    root: Path, info: DatasetInfo, *, seed: int, max_train: int | None, max_test: int | None
) -> Split:
    """ImageFolders of ``train/`` and ``val/`` with the standard transforms and ImageNet mean/std.

    Train: RandomResizedCrop(224) + horizontal flip; test: Resize(256) + CenterCrop(224). ``info`` gets the
    classes and sizes of the folder found (a folder may hold fewer classes than the 1000 of ILSVRC-2012).
    """
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import v2

    check_cap("max_train", max_train)
    check_cap("max_test", max_test)
    tail = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    folder = imagenet_dir(root)
    train = ImageFolder(
        folder / "train", v2.Compose([v2.RandomResizedCrop(224), v2.RandomHorizontalFlip(), *tail]), _int64
    )
    test = ImageFolder(folder / "val", v2.Compose([v2.Resize(256), v2.CenterCrop(224), *tail]), _int64)
    if train.classes != test.classes:
        raise ValueError(
            f"{folder}: train/ and val/ hold different classes ({len(train.classes)} vs {len(test.classes)})"
        )
    info = replace(info, num_classes=len(train.classes), n_train=len(train), n_test=len(test))
    _, train_rng, test_rng = streams(seed)
    train_set = _capped(train, train.targets, max_train, train_rng)
    return Split(train_set, _capped(test, test.targets, max_test, test_rng), info)
