"""The data a cell reads: device-held batches in a seeded order per epoch, their augmentation and the
validation split. None of it touches the global random state."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, TensorDataset

from fabook import data, distributed

CROP_PADDING = 4
"""Pixels of zero padding around a training image before its random crop back to the original size."""


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """The generator that shuffles epoch ``epoch`` of a run with ``seed`` (independent of what ran before);
    ``stream`` 1 is that epoch's augmentation."""
    entropy = [seed, epoch] if stream == 0 else [seed, epoch, stream]
    state = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


def augment_batch(x: torch.Tensor, kind: str, generator: torch.Generator) -> torch.Tensor:
    """Images ``(N, C, H, W)`` randomly augmented, each sample on its own: ``crop`` zero-pads by
    :data:`CROP_PADDING` and crops back to H x W at a random offset; ``flip`` mirrors left-right with
    probability 1/2. The draws come from ``generator`` (on the CPU) only."""
    n, _, h, w = x.shape
    if "crop" in kind:
        p = CROP_PADDING
        dy, dx = torch.randint(0, 2 * p + 1, (2, n), generator=generator).to(x.device)[:, :, None, None, None]
        rows = (dy + torch.arange(h, device=x.device)[:, None]).expand(n, x.shape[1], h, w + 2 * p)
        cols = (dx + torch.arange(w, device=x.device)).expand(n, x.shape[1], h, w)
        x = F.pad(x, (p, p, p, p)).gather(2, rows).gather(3, cols)
    if "flip" in kind:
        flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    return x


def augmented(batches: Iterator, kind: str | None, generator: torch.Generator) -> Iterator:
    """``batches`` with inputs passed through :func:`augment_batch` (unchanged when ``kind`` is None)."""
    for xb, yb in batches:
        yield (xb if kind is None else augment_batch(xb, kind, generator)), yb


class _Data:
    """A train or test set, held as device tensors when it is a TensorDataset (the fast path)."""

    def __init__(self, dataset: Dataset, device: torch.device, num_workers: int):
        self.dataset, self.device, self.num_workers = dataset, device, num_workers
        self.tensors = None
        if isinstance(dataset, TensorDataset):
            x, y = dataset.tensors
            self.tensors = (x.to(device), y.to(device))
        self.n = len(dataset)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[tuple[torch.Tensor, ...]]:
        """Batches in the generator's random order (in order without one). A last batch of one sample is
        dropped when shuffling: BatchNorm cannot train on it. Uses no global randomness."""
        shuffle = generator is not None
        order = torch.randperm(self.n, generator=generator) if shuffle else torch.arange(self.n)
        order = distributed.shard(order) if shuffle else order  # this rank's part under torchrun
        if shuffle and len(order) % batch_size == 1 and len(order) > 1:
            order = order[:-1]
        if self.tensors is not None:
            x, y = self.tensors
            for idx in order.to(self.device).split(batch_size):
                yield x[idx], y[idx]
            return
        loader = DataLoader(
            self.dataset, batch_size, sampler=order.tolist(), num_workers=self.num_workers,
            generator=generator or torch.Generator().manual_seed(0),  # seeds the workers, not the global RNG
            pin_memory=self.device.type == "cuda",
        )  # fmt: skip
        for xb, yb in loader:
            yield xb.to(self.device, non_blocking=True), yb.to(self.device, non_blocking=True)

    def sample(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed random batch of ``min(n, size)`` samples chosen by ``seed`` (no global randomness used)."""
        with torch.random.fork_rng(devices=[]):
            idx = torch.randperm(self.n, generator=torch.Generator().manual_seed(seed))[:n]
            if self.tensors is not None:
                idx = idx.to(self.device)
                return self.tensors[0][idx], self.tensors[1][idx]
            xs, ys = zip(*(self.dataset[int(i)] for i in idx), strict=True)
            return torch.stack(xs).to(self.device), torch.as_tensor(ys).to(self.device)


def validation_split(train_set: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset | None]:
    """``(fit, val)``: ``fraction`` of ``train_set`` (rounded up, stratified by label, drawn with ``seed`` on
    its own stream) held out for validation; ``(train_set, None)`` when ``fraction`` is 0."""
    if not fraction:
        return train_set, None
    labels = np.asarray([int(y) for _, y in train_set]) if not isinstance(train_set, TensorDataset) else None
    labels = train_set.tensors[1].numpy() if labels is None else labels
    n_val = math.ceil(fraction * len(labels))
    if not 0 < n_val < len(labels):
        raise ValueError(f"val_fraction={fraction} leaves no training or validation samples of {len(labels)}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7A1]))
    is_val = np.zeros(len(labels), dtype=bool)
    is_val[data.prepare.stratified_indices(labels, n_val, rng)] = True
    fit_idx, val_idx = np.flatnonzero(~is_val).tolist(), np.flatnonzero(is_val).tolist()
    if isinstance(train_set, TensorDataset):
        x, y = train_set.tensors
        return TensorDataset(x[fit_idx], y[fit_idx]), TensorDataset(x[val_idx], y[val_idx])
    return torch.utils.data.Subset(train_set, fit_idx), torch.utils.data.Subset(train_set, val_idx)
