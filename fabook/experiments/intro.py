"""Feedback alignment in a few minutes: BP, FA, uSF, KP, WM and PFA train one MLP on Fashion-MNIST.

Not a single paper's experiment: it shows the book's main ideas side by side, with the claims of the
papers that introduced each rule checked on this small setting.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from fabook import claims as cl
from fabook.book import check_scale
from fabook.cli import runs_dir
from fabook.notebook import check_positive, check_types
from fabook.plots import layer_order
from fabook.sweep import history_frame, read_results, run_sweep

NOTEBOOK = "intro_feedback_alignment"
RULES = ("bp", "fa", "usf", "kp", "wm", "pfa")
PAPERS = {"kp": "Akrout et al. 2019", "wm": "Akrout et al. 2019", "pfa": "Li & Benna 2024"}
"""The paper whose claims are checked for each rule that keeps its feedback close to W."""
RULE_OPTIONS = {"usf": {"scale": "weight"}}
"""uSF with ``|B|`` the size of ``W`` (as the papers' code runs it): the paper's ``|B| = 1`` needs batch norm
or Batch Manhattan (Liao)."""

SETTINGS = {
    "smoke": dict(dataset="fashion-mnist-small", max_train=1000, max_test=500, epochs=2, width=64, seeds=1),
    "cpu": dict(dataset="fashion-mnist", max_train=15000, max_test=None, epochs=6, width=256, seeds=3),
    "paper": dict(dataset="fashion-mnist", max_train=None, max_test=None, epochs=40, width=512, seeds=5),
}
"""Per scale. ``smoke`` trains on the sample that ships with fabook (no download); ``paper`` borrows Li &
Benna's MNIST recipe (2×512 MLP, 40 epochs) for Fashion-MNIST; no paper reports these numbers for
Fashion-MNIST."""

TRAINING = dict(
    model="mlp", depth=2, optimizer="sgd", lr=0.01, momentum=0.9,
    weight_decay=1e-3, batch_size=64, metrics_every=1,
)  # fmt: skip
"""Shared by all rules. Weight decay 1e-3 is what aligns KP's and PFA's feedback within a few epochs."""


@dataclass(frozen=True)
class Params:
    """The notebook's knobs: ``scale`` (smoke | cpu | paper), and overrides of the scale's ``seeds``,
    ``epochs``, the ``rules`` to compare, and ``jobs`` (parallel cells)."""

    scale: str = "cpu"
    seeds: int | None = None
    epochs: int | None = None
    rules: tuple[str, ...] = RULES
    jobs: int = 2

    def __post_init__(self) -> None:
        check_types(self)
        check_scale(self.scale)
        unknown = sorted(set(self.rules) - set(RULES))
        if unknown:
            raise ValueError(f"rules {unknown} are not compared here; accepted: {list(RULES)}")
        check_positive(seeds=self.seeds, epochs=self.epochs, jobs=self.jobs)

    @property
    def settings(self) -> dict:
        s = dict(SETTINGS[self.scale])
        s.update({k: v for k in ("seeds", "epochs") if (v := getattr(self, k)) is not None})
        return s

    @property
    def out_dir(self):
        return runs_dir() / NOTEBOOK / self.scale


def spec(params: Params) -> dict:
    """The sweep: every rule × seed on the same MLP and data."""
    s = params.settings
    base = {**TRAINING, "dataset": s["dataset"], "width": s["width"], "epochs": s["epochs"]}
    base |= {"max_train": s["max_train"], "max_test": s["max_test"]}
    conditions = [{"rule": r, "rule_options": RULE_OPTIONS.get(r, {})} for r in params.rules]
    return {
        "name": NOTEBOOK,
        "base": base,
        "grid": {"seed": list(range(s["seeds"]))},
        "conditions": conditions,
    }


def run(params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run (or resume) the sweep; return the summary (one row per cell) and the per-epoch history."""
    summary = run_sweep(spec(params), params.out_dir, jobs=params.jobs)
    wanted = set(summary.key)
    history = history_frame([r for r in read_results(params.out_dir) if r.key in wanted])
    return summary, history


def _layer_mean(history: pd.DataFrame, metric: str, layers: str, *, first: bool = False) -> pd.Series:
    """Per cell, ``metric`` at its last (``first``: its first) measured epoch, averaged over the layers whose
    feedback is used (``"used"``: all but the first) or that receive a feedback signal (``"fed"``: all but
    the last)."""
    rows = history[(history.metric == metric) & (history.layer != "")]
    names = sorted(rows.layer.unique(), key=layer_order)
    keep = names[1:] if layers == "used" else names[:-1]
    rows = rows[rows.layer.isin(keep)]
    at = rows[rows.epoch == rows.groupby("key").epoch.transform("min" if first else "max")]
    return at.groupby("key").value.mean()


def _cells(summary: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """One row per cell: the summary plus test accuracy in % and the angles the tables and claims use."""
    frame = summary.set_index("key")
    frame["test_pct"] = 100 * frame.test_acc
    frame["angle_wb"] = _layer_mean(history, "weight_angle", "used")
    frame["angle_wb_start"] = _layer_mean(history, "weight_angle", "used", first=True)
    frame["angle_update"] = _layer_mean(history, "grad_angle", "fed")
    return frame


def results_table(summary: pd.DataFrame, history: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Per rule: test accuracy (mean ± sd over seeds), the final angle between W and B, and between the
    rule's weight update and BP's gradient."""
    rows = []
    for rule, part in _cells(summary, history).groupby("rule", sort=False):
        rows.append(
            {
                "rule": rule,
                "scale": scale,
                "seeds": len(part),
                "test accuracy %": f"{part.test_pct.mean():.2f} ± {part.test_pct.std(ddof=1):.2f}"
                if len(part) > 1
                else f"{part.test_pct.mean():.2f}",
                "angle W–B (°)": round(part.angle_wb.mean(), 1),
                "angle update–BP (°)": round(part.angle_update.mean(), 1),
            }
        )
    return pd.DataFrame(rows)


def claims(summary: pd.DataFrame, history: pd.DataFrame, scale: str) -> pd.DataFrame:
    """The papers' claims on this setting, each decided by :func:`fabook.claims.at_least` (difference of
    means ± 2 standard errors over seeds) against a margin fixed here before any run."""
    frame = _cells(summary, history)
    pct = {r: frame[frame.rule == r].test_pct for r in frame.rule.unique()}
    angle = {r: frame[frame.rule == r].angle_wb for r in frame.rule.unique()}
    out = []
    if {"bp", "fa"} <= set(pct):
        fa = frame[frame.rule == "fa"]
        out += [
            cl.Claim(
                "FA learns nearly as well as BP (Lillicrap et al. 2016)",
                "test acc. FA − BP ≥ −3 points",
                *cl.at_least(pct["fa"], pct["bp"], -3.0, unit=" pts"),
            ),
            cl.Claim(
                "With FA, W comes to align with the fixed B (Lillicrap et al. 2016)",
                "angle W–B at the start − at the end ≥ 5°",
                *cl.at_least(fa.angle_wb_start, fa.angle_wb, 5.0, unit="°"),
            ),
        ]
    for rule, paper in PAPERS.items():
        if {rule, "fa"} <= set(pct):
            name = rule.upper()
            out += [
                cl.Claim(
                    f"{name} aligns B with W more closely than FA ({paper})",
                    f"angle W–B: FA − {name} ≥ 10°",
                    *cl.at_least(angle["fa"], angle[rule], 10.0, unit="°"),
                ),
                cl.Claim(
                    f"{name} learns at least as well as FA ({paper})",
                    f"test acc. {name} − FA ≥ −0.5 points",
                    *cl.at_least(pct[rule], pct["fa"], -0.5, unit=" pts"),
                ),
            ]
    return cl.table(out, scale)
