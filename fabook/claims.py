"""Claims tables: each verdict is computed from the runs by a rule stated before looking."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

HOLDS, FAILS, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


@dataclass(frozen=True)
class Claim:
    """One paper claim, the test that decides it, what the run measured and the verdict."""

    claim: str
    test: str
    measured: str
    verdict: str


def by_share(share: float, *, holds_at: float, fails_below: float) -> str:
    """Verdict from the share of cases (e.g. datasets) where a claim held: holds at ``holds_at`` or more,
    does not hold below ``fails_below``, inconclusive in between."""
    if share >= holds_at:
        return HOLDS
    return FAILS if share < fails_below else INCONCLUSIVE


def table(claims: Sequence[Claim], scale: str) -> pd.DataFrame:
    """The claims as a table whose every row names the scale the verdict was measured at."""
    frame = pd.DataFrame([asdict(c) for c in claims], columns=["claim", "test", "measured", "verdict"])
    frame.insert(3, "scale", scale)
    return frame


def at_least(a: Sequence[float], b: Sequence[float], margin: float, *, unit: str = "") -> tuple[str, str]:
    """Is ``mean(a) − mean(b) ≥ margin``? Decided on the difference ± 2 standard errors over the seeds:
    holds if the whole interval is ≥ margin, does not hold if it is all below, inconclusive if it straddles
    the margin or there are too few seeds (fewer than 2 per side) to estimate the error.

    Returns ``(measured, verdict)`` with ``measured`` like ``"+1.23 ± 0.40 pts (3 vs 3 seeds)"``.
    """
    sa, sb = pd.Series(a, dtype=float).dropna(), pd.Series(b, dtype=float).dropna()
    diff = sa.mean() - sb.mean()
    seeds = f"{len(sa)} vs {len(sb)} seeds"
    if len(sa) < 2 or len(sb) < 2:
        return f"{diff:+.2f}{unit} ({seeds}; too few to estimate the error)", INCONCLUSIVE
    half = 2 * (sa.var() / len(sa) + sb.var() / len(sb)) ** 0.5
    measured = f"{diff:+.2f} ± {half:.2f}{unit} ({seeds})"
    if diff - half >= margin:
        return measured, HOLDS
    return measured, FAILS if diff + half < margin else INCONCLUSIVE


def share_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95 % by default) for the share ``k / n`` of cases where a claim held: how far
    the share could move with other seeds or data sets of the same kind. ``(nan, nan)`` for ``n = 0``."""
    if n == 0:
        return float("nan"), float("nan")
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * (p * (1 - p) / n + z2 / (4 * n * n)) ** 0.5 / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def count_text(k: int, n: int, what: str) -> str:
    """``"12/16 data sets (75 %, 95 % CI 51–90 %)"``: a count with its share and Wilson interval."""
    if n == 0:
        return f"0/0 {what}"
    low, high = share_interval(k, n)
    return f"{k}/{n} {what} ({100 * k / n:.0f} %, 95 % CI {100 * low:.0f}–{100 * high:.0f} %)"


def by_interval(low: float, high: float, threshold: float) -> str:
    """Verdict of "the quantity is at least ``threshold``" from its interval: holds if the whole interval is
    at or above it, does not hold if the whole interval is below, inconclusive if it straddles."""
    if low >= threshold:
        return HOLDS
    return FAILS if high < threshold else INCONCLUSIVE


def equivalent(a: Sequence[float], b: Sequence[float], margin: float, *, unit: str = "") -> tuple[str, str]:
    """Is ``|mean(a) − mean(b)| ≤ margin``? Decided on the difference ± 2 standard errors over the seeds (as
    :func:`at_least`): holds if the whole interval lies within ``±margin``, does not hold if it lies wholly
    outside, inconclusive otherwise or with fewer than 2 seeds on a side.

    Returns ``(measured, verdict)`` with ``measured`` like ``"+0.40 ± 1.10 pts (3 vs 10 seeds)"``.
    """
    sa, sb = pd.Series(a, dtype=float).dropna(), pd.Series(b, dtype=float).dropna()
    diff = sa.mean() - sb.mean()
    seeds = f"{len(sa)} vs {len(sb)} seeds"
    if len(sa) < 2 or len(sb) < 2:
        return f"{diff:+.2f}{unit} ({seeds}; too few to estimate the error)", INCONCLUSIVE
    half = 2 * (sa.var() / len(sa) + sb.var() / len(sb)) ** 0.5
    measured = f"{diff:+.2f} ± {half:.2f}{unit} ({seeds})"
    if -margin <= diff - half and diff + half <= margin:
        return measured, HOLDS
    return measured, FAILS if diff - half > margin or diff + half < -margin else INCONCLUSIVE


def bootstrap_pooled(
    sets: Sequence[Sequence[Sequence[float]]],
    statistic: Callable[[int, list[np.ndarray]], np.ndarray],
    *,
    resamples: int = 4000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """The mean over units (e.g. data sets) of a per-unit statistic, with a two-level percentile bootstrap
    interval: the units are resampled with replacement, and within each unit each arm's seeds.

    ``sets[i]`` holds unit ``i``'s arms (e.g. ``[frSF's accuracies over seeds, BP's]``); ``statistic(i,
    means)`` maps unit ``i``'s arm means (arrays of equal length, one entry per resample) to its values,
    elementwise. An arm of one seed contributes no seed-level spread. Returns ``(estimate, low, high)``.
    """
    if not sets:
        raise ValueError("bootstrap_pooled needs at least one unit; got none")
    arrays = [[np.asarray(arm, dtype=float) for arm in arms] for arms in sets]
    empty = [i for i, arms in enumerate(arrays) if not arms or any(arm.size == 0 for arm in arms)]
    if empty:
        raise ValueError(f"unit(s) {empty} have no arms or an arm without values")
    estimate = float(np.mean([statistic(i, [arm.mean(keepdims=True) for arm in arms])[0]
                              for i, arms in enumerate(arrays)]))  # fmt: skip
    rng = np.random.default_rng(seed)
    per_unit = np.empty((len(arrays), resamples))
    for i, arms in enumerate(arrays):
        means = [arm[rng.integers(arm.size, size=(resamples, arm.size))].mean(axis=1) for arm in arms]
        per_unit[i] = statistic(i, means)
    picks = rng.integers(len(arrays), size=(resamples, len(arrays)))
    pooled = per_unit[picks, np.arange(resamples)[:, None]].mean(axis=1)
    low, high = np.quantile(pooled, [(1 - level) / 2, (1 + level) / 2])
    return estimate, float(low), float(high)
