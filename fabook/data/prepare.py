"""What every set goes through after its loader: a seeded stratified split, caps, train-only standardization.

Conventions (the same for every TensorDataset-backed set):

* Sets without an official split get a stratified hold-out of ``TEST_FRACTION`` (25 %, rounded up) of each
  class, drawn with ``seed``. Official splits (Fashion-MNIST, MNIST-1D, UCR/UEA, torchvision sets) are kept.
* ``max_train`` / ``max_test`` keep a seeded stratified subset (proportional per class). The draws use
  separate streams of ``seed``, so a cap never changes which samples are in the test set, and a smaller cap
  is a subset of a larger one.
* Standardization is fitted on the returned training samples only (after the cap) and applied to both
  splits: per feature for tabular (N, F) sets, per channel for images (N, C, H, W) and series (N, C, L).
  Loaders hand images over scaled to [0, 1], so images end up ``(x - mean_c) / std_c`` with train statistics.
* NaN marks padding of unequal-length series: it is ignored by the statistics and set to 0 (the train mean)
  after standardization.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from .catalogue import TEST_FRACTION, DatasetInfo


@dataclass
class Raw:
    """A loader's output: float32 samples (images in [0, 1]), int64 labels 0..C-1; test None: no split."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor | None = None
    y_test: torch.Tensor | None = None


@dataclass
class Split:
    """What :func:`fabook.data.load` returns; ``info`` carries the sizes actually found (before caps)."""

    train: Dataset
    test: Dataset
    info: DatasetInfo


def stratified_indices(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``n`` samples drawn so that each class keeps its share.

    Each sample gets the quantile (rank + 1/2) / class size of its place in a random permutation of its class;
    the ``n`` smallest quantiles win, so the counts per class are proportional up to rounding and nested in n.
    """
    perm = rng.permutation(len(labels))
    quantile = np.empty(len(labels))
    shuffled = labels[perm]
    for c in np.unique(shuffled):
        members = np.flatnonzero(shuffled == c)
        quantile[members] = (np.arange(len(members)) + 0.5) / len(members)
    return np.sort(perm[np.argsort(quantile, kind="stable")][:n])


def check_cap(name: str, value: int | None) -> None:
    """ValueError unless ``value`` (``max_train`` / ``max_test``) is None or a positive int."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")


def streams(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Independent generators of ``seed`` for the hold-out split, the train cap and the test cap."""
    split, train, test = (np.random.default_rng([seed, stream]) for stream in range(3))
    return split, train, test


def cap_indices(labels: torch.Tensor, cap: int | None, rng: np.random.Generator) -> np.ndarray | None:
    """Indices of a stratified subset of size ``cap``, or None when no cap applies."""
    if cap is None or cap >= len(labels):
        return None
    return stratified_indices(labels.numpy(), cap, rng)


def standardize(x_train: torch.Tensor, x_test: torch.Tensor) -> None:
    """In place: z-score axis 1 (feature / channel) of both with statistics of ``x_train`` only."""
    for c in range(x_train.shape[1]):
        train_c = x_train[:, c]
        mean = torch.nanmean(train_c, dtype=torch.float64)
        std = torch.nanmean((train_c - mean.float()).square(), dtype=torch.float64).sqrt()
        std = float(std) if std > 1e-8 else 1.0
        for x in (x_train, x_test):
            x[:, c].sub_(float(mean)).div_(std)
    for x in (x_train, x_test):
        x.nan_to_num_(0.0)


def finish(raw: Raw, info: DatasetInfo, *, seed: int, max_train: int | None, max_test: int | None) -> Split:
    """Split (when there is no official test set), cap and standardize ``raw`` into a Split."""
    check_cap("max_train", max_train)
    check_cap("max_test", max_test)
    split_rng, train_rng, test_rng = streams(seed)
    x_train, y_train, x_test, y_test = raw.x_train, raw.y_train, raw.x_test, raw.y_test
    if x_test is None or y_test is None:
        test = stratified_indices(y_train.numpy(), math.ceil(TEST_FRACTION * len(y_train)), split_rng)
        train = np.setdiff1d(np.arange(len(y_train)), test)
        x_train, y_train, x_test, y_test = x_train[train], y_train[train], x_train[test], y_train[test]
    info = replace(info, n_train=len(y_train), n_test=len(y_test))
    for y in (y_train, y_test):
        in_range = len(y) == 0 or 0 <= int(y.min()) <= int(y.max()) < info.num_classes
        if y.dtype != torch.int64 or not in_range:
            raise ValueError(f"{info.name}: labels must be int64 in 0..{info.num_classes - 1}")
    if (keep := cap_indices(y_train, max_train, train_rng)) is not None:
        x_train, y_train = x_train[keep], y_train[keep]
    if (keep := cap_indices(y_test, max_test, test_rng)) is not None:
        x_test, y_test = x_test[keep], y_test[keep]
    x_train, x_test = (
        x.to(torch.float32, memory_format=torch.contiguous_format, copy=True) for x in (x_train, x_test)
    )
    standardize(x_train, x_test)  # in place, on copies: ``raw`` stays as read (it may be cached)
    return Split(TensorDataset(x_train, y_train), TensorDataset(x_test, y_test), info)
