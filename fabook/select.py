"""Learning-rate selection on a validation split: one grid per optimizer, the same for every rule.

The protocol (used by a chapter as two sweeps): every condition trains once per lr of its optimizer's grid
on the selection seeds, with a validation split carved from the training set (``Config.val_fraction``); per
group (e.g. data set × rule × recipe) the lr with the best mean validation accuracy wins (ties: the lower
mean validation loss, then the smaller lr); the condition then trains with that lr on every seed. Test numbers
are never read by the selection.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from fabook.train import OPTIMIZERS


def check_grids(grids: Mapping[str, Sequence[float]]) -> dict[str, tuple[float, ...]]:
    """``{optimizer: lrs}`` checked: known optimizers, non-empty lists of finite positive numbers."""
    out = {}
    for name, lrs in grids.items():
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r} in the lr grids; accepted: {', '.join(OPTIMIZERS)}")
        lrs = tuple(lrs) if isinstance(lrs, Iterable) and not isinstance(lrs, str) else ()
        bad = [v for v in lrs if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1e3]
        if not lrs or bad:
            raise ValueError(
                f"lr grid for {name!r} must be a non-empty list of numbers in (0, 1000); got {lrs}"
            )
        out[name] = tuple(float(v) for v in lrs)
    return out


def grid_cells(
    conditions: Iterable[Mapping[str, Any]], grids: Mapping[str, Sequence[float]], seeds: Iterable[int]
) -> list[dict[str, Any]]:
    """Each condition (config fields without ``lr`` and ``seed``) once per lr of its optimizer's grid and
    per seed: the cells that the selection trains."""
    grids, seeds = check_grids(grids), list(seeds)
    cells = []
    for c in conditions:
        optimizer = c.get("optimizer", "sgd")
        if optimizer not in grids:
            raise ValueError(f"no lr grid for optimizer {optimizer!r}; grids given for: {', '.join(grids)}")
        cells += [{**c, "lr": lr, "seed": s} for lr in grids[optimizer] for s in seeds]
    return cells


def choose(summary: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """The chosen lr per group of ``by`` columns of a sweep summary (with ``lr``, ``val_acc``, ``val_loss``):
    one row per group with ``lr``, ``val_acc`` (mean over seeds), ``seeds`` and ``tried`` (the grid).

    A cell without validation numbers (diverged) counts as accuracy 0 and infinite loss."""
    missing = sorted(set([*by, "lr", "val_acc", "val_loss"]) - set(summary.columns))
    if missing:
        raise ValueError(f"summary lacks column(s) {missing} (train with val_fraction > 0)")
    frame = summary[[*by, "lr", "val_acc", "val_loss"]].copy()
    frame["val_acc"] = pd.to_numeric(frame.val_acc, errors="coerce").astype(float).fillna(0.0)
    frame["val_loss"] = pd.to_numeric(frame.val_loss, errors="coerce").astype(float).fillna(float("inf"))
    means = frame.groupby([*by, "lr"], as_index=False, dropna=False).agg(
        val_acc=("val_acc", "mean"), val_loss=("val_loss", "mean"), seeds=("val_acc", "size")
    )
    means["tried"] = means.groupby(list(by), dropna=False).lr.transform(
        lambda s: ", ".join(f"{v:g}" for v in s)
    )
    ranked = means.sort_values(["val_acc", "val_loss", "lr"], ascending=[False, True, True], kind="stable")
    best = ranked.drop_duplicates(list(by)).drop(columns="val_loss")
    return best.sort_values(list(by), kind="stable").reset_index(drop=True)
