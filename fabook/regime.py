"""The quantities that decide a chapter's claims, computed from its configs at each scale.

A reduced run says something about a paper only where it keeps the quantities its claims turn on in the
paper's regime: how many optimizer steps, how much weight decay in all, which share of the run a schedule's
phase takes. Each chapter computes them here from the very configs it trains, for ``paper``, ``cpu`` and
``smoke``, and shows them side by side with :func:`table`.

Every number follows the engine's own rules (:mod:`fabook.train`): the lr schedule is stepped once per epoch
by the engine's scheduler, the weight-decay schedule changes after whole epochs, and an epoch of ``n``
samples takes ``⌈n / batch⌉`` steps (one fewer when a last batch of a single sample is dropped).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import pandas as pd
import torch

from fabook import data, train

SCALES: tuple[str, ...] = ("paper", "cpu", "smoke")


def train_size(config: train.Config) -> int:
    """Training samples per epoch: the data set's, capped by ``max_train``, less the validation split."""
    n = data.CATALOGUE[config.dataset].n_train
    if config.max_train is not None:
        n = min(n, config.max_train)
    return n - math.ceil(config.val_fraction * n)


def steps_per_epoch(config: train.Config) -> int:
    """Optimizer steps in one epoch (a last batch of one sample is dropped, as the engine does)."""
    n = train_size(config)
    return math.ceil(n / config.batch_size) - (n % config.batch_size == 1 and n > 1)


def steps(config: train.Config) -> int:
    """Optimizer steps over the whole run (all ``epochs``; early stopping may end it sooner)."""
    return config.epochs * steps_per_epoch(config)


def epoch_lrs(config: train.Config) -> list[float]:
    """The learning rate of each epoch, from the engine's own scheduler."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
    scheduler = train.make_scheduler(config, optimizer)
    lrs = []
    for _ in range(config.epochs):
        lrs.append(optimizer.param_groups[0]["lr"])
        if scheduler is not None:
            optimizer.step()  # keeps torch from warning that the scheduler stepped first
            scheduler.step()
    return lrs


def lr_sum(config: train.Config) -> float:
    """``Σ_t η_t`` over every optimizer step of the run."""
    return steps_per_epoch(config) * sum(epoch_lrs(config))


def momentum_gain(config: train.Config) -> float:
    """``1 / (1 − μ)``: how much further SGD's (or Batch Manhattan's) momentum carries a steady push; 1 for
    Adam, whose decay is not a steady push."""
    return 1.0 if config.optimizer == "adam" else 1.0 / (1.0 - config.momentum)


def decay_exponent(config: train.Config, *, first_epochs: int | None = None) -> float:
    """``A = Σ_t η_t λ_t / (1 − μ)``, over the run or its first ``first_epochs`` epochs.

    ``exp(−A)`` is what weight decay alone does to a weight over the run (its total shrink), and under
    Kolen–Pollack the factor on ``W − B``: both get the same gradients, so only decay tells them apart
    (:class:`fabook.rules.KolenPollack`; with momentum μ the steady rate is ``ηλ/(1 − μ)`` per step).
    """
    per_epoch = steps_per_epoch(config)
    epochs = config.epochs if first_epochs is None else min(first_epochs, config.epochs)
    lrs = epoch_lrs(config)[:epochs]
    total = sum(lr * train.weight_decay_at(config, e + 1) for e, lr in enumerate(lrs))
    return per_epoch * total * momentum_gain(config)


def _ratio(cpu: object, paper: object) -> float | None:
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (cpu, paper))
    return float(cpu) / float(paper) if numbers and paper and math.isfinite(float(paper)) else None


def table(rows: Mapping[str, Mapping[str, object]], *, scales: Sequence[str] = SCALES) -> pd.DataFrame:
    """One row per quantity, one column per scale, and ``cpu / paper`` where both are numbers.

    ``rows`` maps a quantity's name to its value at each scale (a missing scale reads "–"). A quantity
    whose ratio is far from 1 is one that a reduced run does not keep; the chapter's text says which claims
    it decides.
    """
    unknown = sorted({s for values in rows.values() for s in values} - set(scales))
    if unknown:
        raise ValueError(f"unknown scale(s) {unknown} in the regime rows; accepted: {', '.join(scales)}")
    records = []
    for quantity, values in rows.items():
        record: dict[str, object] = {"quantity": quantity, **{s: values.get(s) for s in scales}}
        if "cpu" in scales and "paper" in scales:
            record["cpu / paper"] = _ratio(values.get("cpu"), values.get("paper"))
        records.append(record)
    return pd.DataFrame(records, dtype=object)  # an int stays an int beside a missing value
