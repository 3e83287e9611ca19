"""Claims tables: each verdict is computed from the runs by a rule stated before looking."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

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
