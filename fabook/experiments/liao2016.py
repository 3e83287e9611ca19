"""Liao, Leibo & Poggio (2016), "How important is weight symmetry in backpropagation?", on many data sets.

The study: BP (plain SGD) against asymmetric feedback — FA (random B) and the sign-symmetric uSF, brSF,
frSF — each with and without batch normalization (BN) and Batch Manhattan (BM), plus a sweep of the fraction
of feedback signs that agree with W. Four claims are checked (:func:`claims`), each with its test fixed here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from scipy import stats

from fabook import claims as cl
from fabook import data
from fabook.book import check_scale
from fabook.cli import runs_dir
from fabook.notebook import check_positive
from fabook.sweep import history_frame, read_results, run_sweep

NOTEBOOK = "liao2016_sign_symmetry"
RULES = ("bp", "fa", "usf", "brsf", "frsf")
ASYMMETRIC = ("fa", "usf", "brsf", "frsf")
SIGN_RULES = ("usf", "brsf", "frsf")
PAPER_SCALE = {"scale": 1.0}
"""The sign rules' magnitudes as in the paper (``|B| = 1``; fabook's default is ``"fan_in"``)."""
RECIPES = {  # (batch norm, Batch Manhattan) -> label
    (False, False): "plain",
    (True, False): "BN",
    (False, True): "BM",
    (True, True): "BN+BM",
}
MAIN = "BN+BM"
"""The recipe the paper recommends for asymmetric BP; claims 1–3 are judged on it (BP: plain SGD + BN)."""

KIND_STANDS_IN = {
    "image": "MNIST, CIFAR, SVHN, STL-10 and the face sets",
    "tabular": "small non-image benchmarks",
    "series": "(no counterpart: extra variety)",
    "speech": "TIMIT (speech)",
}

OFFLINE = (
    "fashion-mnist", "mnist-5k", "digits", "lfw-faces", "iris", "wine", "breast-cancer", "mnist1d",
    "gunpoint", "arrowhead", "italy-power", "osuleaf", "basic-motions", "acsf1", "pickup-gesture-wiimote-z",
    "japanese-vowels",
)  # fmt: skip
PAPER_SETS = ("mnist", "cifar10", "cifar100", "svhn", "stl10")

PAPER_QUOTED = {  # accuracy %, as quoted for sign symmetry on papers-with-code; the condition is not stated
    "mnist": 100 - 0.91,
    "cifar10": 80.98,
    "cifar100": 48.75,
    "stl10": 57.32,
    "svhn": 100 - 10.16,
}

SETTINGS = {
    "smoke": dict(datasets=("digits", "iris", "gunpoint", "japanese-vowels"), seeds=1, levels=(0.0, 0.5),
                  model="mlp", width=32, steps=40, min_epochs=1, max_epochs=3, max_train=300, max_test=300),
    "cpu": dict(datasets=OFFLINE, seeds=3, levels=(0.0, 0.25, 0.5, 0.75), model="mlp", width=128, steps=300,
                min_epochs=3, max_epochs=60, max_train=6000, max_test=2000),
    "paper": dict(datasets=PAPER_SETS, seeds=3, levels=(0.0, 0.25, 0.5, 0.75), model="cnn", width=64,
                  steps=40000, min_epochs=20, max_epochs=100, max_train=None, max_test=None),
}  # fmt: skip
"""Per scale. ``steps`` is the target number of SGD steps per cell; a data set's epochs follow from its size,
clipped to [min_epochs, max_epochs]. The sign-concordance sweep's level p = 1 is frSF itself."""

OPTIMIZER = {
    False: dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4),
    True: dict(optimizer="bm", lr=5e-4, momentum=0.9, weight_decay=1e-4),
}
"""Without / with Batch Manhattan. Chosen so that BP trains well with both; used unchanged for every rule."""

TRACKED = {"smoke": "digits", "cpu": "fashion-mnist", "paper": "cifar10"}
"""The data set whose alignment angles are measured every epoch (metrics cost time; the others skip them)."""

BATCH = 32


@dataclass(frozen=True)
class Params:
    """The notebook's knobs: ``scale`` (smoke | cpu | paper); overrides of the scale's ``datasets`` and
    ``seeds``; ``jobs`` (parallel cells; default 1 at smoke, 2 otherwise); ``download`` the paper sets
    through torchvision first (needs the internet)."""

    scale: str = "cpu"
    datasets: tuple[str, ...] | None = None
    seeds: int | None = None
    jobs: int | None = None
    download: bool = False

    def __post_init__(self) -> None:
        check_scale(self.scale)
        if self.datasets is not None:
            object.__setattr__(self, "datasets", tuple(self.datasets))
            unknown = sorted(set(self.datasets) - set(data.CATALOGUE))
            if unknown:
                raise ValueError(f"unknown dataset(s) {unknown}; accepted: {', '.join(data.CATALOGUE)}")
        check_positive(seeds=self.seeds, jobs=self.jobs)

    @property
    def settings(self) -> dict:
        s = dict(SETTINGS[self.scale])
        if self.datasets is not None:
            s["datasets"] = self.datasets
        if self.seeds is not None:
            s["seeds"] = self.seeds
        s["jobs"] = self.jobs or (1 if self.scale == "smoke" else 2)
        return s

    @property
    def out_dir(self):
        return runs_dir() / NOTEBOOK / self.scale


def epochs_for(n_train: int, s: dict) -> int:
    """Epochs that give about ``s['steps']`` steps of batch :data:`BATCH` on ``n_train`` samples."""
    return int(min(max(math.ceil(s["steps"] * BATCH / n_train), s["min_epochs"]), s["max_epochs"]))


def conditions(params: Params) -> list[dict]:
    """One dict of config fields per (data set, rule, recipe) and per sweep level: the study's cells
    without the seed."""
    s = params.settings
    if params.download:
        for name in s["datasets"]:
            data.load(name, download=True)
    missing = {d: data.missing(d) for d in s["datasets"]}
    missing = {d: why for d, why in missing.items() if why}
    if missing:
        lines = "\n".join(
            f"- {d}: missing {why}; get it with: {data.get_info(d).fetch}" for d, why in missing.items()
        )
        raise FileNotFoundError(
            f"data sets missing for scale {params.scale!r} (or set download = True in the parameters "
            f"cell; it needs the internet, as on Colab):\n{lines}"
        )
    out = []
    for name in s["datasets"]:
        info = data.get_info(name)
        n_train = min(info.n_train, s["max_train"] or info.n_train)
        base = dict(
            dataset=name, model=s["model"], width=s["width"], depth=2, batch_size=BATCH,
            epochs=epochs_for(n_train, s), max_train=s["max_train"], max_test=s["max_test"],
            metrics_every=1 if name == TRACKED[params.scale] else 0,
        )  # fmt: skip
        for (bn, bm), _ in RECIPES.items():
            for rule in RULES:
                opts = {"rule_options": dict(PAPER_SCALE)} if rule in SIGN_RULES else {}
                out.append({**base, **OPTIMIZER[bm], "rule": rule, **opts, "batch_norm": bn})
        for p in s["levels"]:
            out.append(
                {**base, **OPTIMIZER[True], "rule": "sc", "rule_options": {"p": p, **PAPER_SCALE},
                 "batch_norm": True}
            )  # fmt: skip
    return out


def spec(params: Params) -> dict:
    """The whole study as one sweep (cells = conditions × seeds, data set by data set)."""
    seeds = range(params.settings["seeds"])
    cells = [{**c, "seed": seed} for c in conditions(params) for seed in seeds]
    return {"name": NOTEBOOK, "base": {}, "grid": {}, "conditions": cells}


def run(params: Params) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run (or resume) the study; the summary gets ``recipe`` and ``concordance`` columns."""
    summary = run_sweep(spec(params), params.out_dir, jobs=params.settings["jobs"])
    summary["recipe"] = [
        RECIPES[(bn, opt == "bm")] for bn, opt in zip(summary.batch_norm, summary.optimizer, strict=True)
    ]
    summary["concordance"] = [
        o.get("p", 1.0) if r in ("sc", "frsf") else np.nan
        for r, o in zip(summary.rule, summary.rule_options, strict=True)
    ]
    summary["test_pct"] = 100 * summary.test_acc.astype(float)
    tracked = TRACKED[params.scale]
    keys = set(summary.key[summary.dataset == tracked])
    history = history_frame([r for r in read_results(params.out_dir) if r.key in keys])
    return summary, history


def datasets_table(params: Params) -> pd.DataFrame:
    """The data sets of this run: kind, what in the paper they stand in for, shape, classes, sizes, epochs."""
    s = params.settings
    rows = []
    for name in s["datasets"]:
        info = data.get_info(name)
        n_train = min(info.n_train, s["max_train"] or info.n_train)
        rows.append(
            dict(dataset=name, kind=info.kind,
                 stands_in_for=KIND_STANDS_IN[info.kind] if info.offline else "itself",
                 shape="x".join(map(str, info.input_shape)), classes=info.num_classes, n_train=n_train,
                 n_test=min(info.n_test, s["max_test"] or info.n_test), epochs=epochs_for(n_train, s))
        )  # fmt: skip
    return pd.DataFrame(rows)


def _sweep_cells(summary: pd.DataFrame) -> pd.DataFrame:
    """The sign-concordance sweep: ``sc`` at every level and frSF as p = 1, in the ``MAIN`` recipe."""
    return summary[summary.rule.isin(["sc", "frsf"]) & (summary.recipe == MAIN)].copy()


def _main_cells(summary: pd.DataFrame) -> pd.DataFrame:
    """The ``MAIN`` recipe for asymmetric rules and plain-SGD BP with BN, the paper's baseline."""
    asym = summary[(summary.recipe == MAIN) & summary.rule.isin(ASYMMETRIC)]
    bp = summary[(summary.rule == "bp") & (summary.recipe == "BN")]
    return pd.concat([asym, bp])


def accuracy_table(summary: pd.DataFrame, scale: str, *, sd: bool = False) -> pd.DataFrame:
    """Mean test accuracy % per data set (rows) and rule × recipe (columns) over seeds; with ``sd``, as
    ``"mean ± sd"`` text."""
    main = summary[summary.rule.isin(RULES)]
    pivot = dict(index="dataset", columns=["rule", "recipe"], values="test_pct")
    table = main.pivot_table(**pivot, aggfunc="mean")
    if sd:
        spread = main.pivot_table(**pivot, aggfunc="std")
        table = table.round(1).astype(str) + " ± " + spread.round(1).astype(str)
    table = table.reindex(
        columns=[(r, c) for r in RULES for c in RECIPES.values() if (r, c) in table.columns]
    )
    table.columns = [f"{r} {c}" for r, c in table.columns]
    table.insert(0, "scale", scale)
    return table if sd else table.round(1)


def paper_comparison(summary: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Our sign rules' accuracy (``MAIN`` recipe) beside the numbers quoted for the paper, where any."""
    rows = []
    for name, part in summary[summary.recipe == MAIN].groupby("dataset"):
        if name not in PAPER_QUOTED:
            continue
        ours = part[part.rule.isin(SIGN_RULES)].groupby("rule").test_pct.mean()
        rows.append({"dataset": name, "scale": scale, **{f"ours {r} %": round(v, 2) for r, v in ours.items()},
                     "paper's quoted % (condition not stated)": PAPER_QUOTED[name]})  # fmt: skip
    return pd.DataFrame(rows)


def claims(summary: pd.DataFrame, scale: str) -> pd.DataFrame:
    """The four claims, each with its statistic and threshold (fixed before any run):

    1. magnitudes don't matter — per data set, the spread (max − min) of the mean accuracies of uSF, brSF and
       frSF (``MAIN`` recipe) is at most 2 points or 2 standard errors; holds on ≥ 80 % of data sets, does not
       hold below 50 %;
    2. more concordant signs are better — Spearman correlation between the concordance p and accuracy
       centred per data set, pooled over data sets and seeds: holds if ρ > 0 with one-sided p < 0.01, does not
       hold if ρ ≤ 0; also reported: the share of data sets with a positive per-data-set ρ;
    3. 100 % concordant signs with random magnitudes (frSF) match or beat SGD — per data set frSF (``MAIN``)
       minus BP (plain SGD with BN) ≥ −1 point, decided by :func:`fabook.claims.at_least`; holds on ≥ 80 % of
       data sets where it is decided, does not hold below 50 %;
    4. BN and/or BM are indispensable for asymmetric BP — per data set and asymmetric rule, the best recipe
       with BN or BM beats the plain one by ≥ 5 points; holds on ≥ 80 % of (data set, rule) pairs, does not
       hold below 50 %. BP's own gap is reported beside it as a control.
    """
    out = []
    main = _main_cells(summary)
    by_set = main.groupby(["dataset", "rule"]).test_pct

    means, sds, counts = by_set.mean().unstack(), by_set.std(ddof=1).unstack(), by_set.count().unstack()
    spread = means[list(SIGN_RULES)].max(axis=1) - means[list(SIGN_RULES)].min(axis=1)
    se = (sds[list(SIGN_RULES)] / np.sqrt(counts[list(SIGN_RULES)])).max(axis=1).fillna(0)
    ok = spread <= np.maximum(2.0, 2 * se)
    out.append(cl.Claim(
        "Feedback magnitudes don't matter: uSF ≈ brSF ≈ frSF",
        "per data set, max − min of the three mean accuracies ≤ max(2 pts, 2 SE); holds if on ≥ 80 % of sets",
        f"within the margin on {ok.sum()}/{len(ok)} data sets (median spread {spread.median():.2f} pts)",
        cl.by_share(ok.mean(), holds_at=0.8, fails_below=0.5),
    ))  # fmt: skip

    sweep = _sweep_cells(summary)
    sweep["centred"] = sweep.test_pct - sweep.groupby("dataset").test_pct.transform("mean")
    rho, p_two = stats.spearmanr(sweep.concordance, sweep.centred)
    p_one = p_two / 2 if rho > 0 else 1 - p_two / 2
    per_set = sweep.groupby("dataset")[["concordance", "test_pct"]].apply(
        lambda g: stats.spearmanr(g.concordance, g.test_pct)[0] if g.test_pct.nunique() > 1 else np.nan
    )
    verdict = cl.HOLDS if rho > 0 and p_one < 0.01 else cl.FAILS if rho <= 0 else cl.INCONCLUSIVE
    out.append(cl.Claim(
        "More concordant feedback signs are better",
        "Spearman ρ(p, accuracy centred per data set) > 0 with one-sided p < 0.01",
        f"ρ = {rho:.2f} (one-sided p = {p_one:.1e}); "
        f"ρ > 0 on {(per_set > 0).sum()}/{per_set.notna().sum()} sets",
        verdict,
    ))  # fmt: skip

    decided = []
    for _, part in main.groupby("dataset"):
        decided.append(
            cl.at_least(part.test_pct[part.rule == "frsf"], part.test_pct[part.rule == "bp"], -1.0)[1]
        )
    decided = pd.Series(decided)
    firm = decided[decided != cl.INCONCLUSIVE]
    share = (firm == cl.HOLDS).mean() if len(firm) else np.nan
    out.append(cl.Claim(
        "100 % concordant signs with random magnitudes (frSF) match or beat SGD",
        "per data set frSF − BP ≥ −1 pt (difference ± 2 SE); holds if on ≥ 80 % of the decided sets",
        f"holds on {(decided == cl.HOLDS).sum()}, fails on {(decided == cl.FAILS).sum()}, "
        f"undecided on {(decided == cl.INCONCLUSIVE).sum()} of {len(decided)} sets",
        cl.by_share(share, holds_at=0.8, fails_below=0.5) if len(firm) else cl.INCONCLUSIVE,
    ))  # fmt: skip

    gaps = ablation_gaps(summary)
    asym = gaps[gaps.rule.isin(ASYMMETRIC)]
    ok = asym.gap >= 5.0
    bp_gap = gaps[gaps.rule == "bp"].gap.median()
    out.append(cl.Claim(
        "BN and/or BM are indispensable for asymmetric BP",
        "per (data set, asymmetric rule): best of BN/BM/BN+BM − plain ≥ 5 pts; holds if on ≥ 80 % of pairs",
        f"on {ok.sum()}/{len(ok)} pairs (median gap {asym.gap.median():.1f} pts; "
        f"BP's own median gap {bp_gap:.1f})",
        cl.by_share(ok.mean(), holds_at=0.8, fails_below=0.5),
    ))  # fmt: skip
    return cl.table(out, scale)


def ablation_gaps(summary: pd.DataFrame) -> pd.DataFrame:
    """Per data set and rule: best mean accuracy with BN and/or BM minus the plain recipe's, in points."""
    main = summary[summary.rule.isin(RULES)]
    means = main.groupby(["dataset", "rule", "recipe"]).test_pct.mean().unstack()
    helped = means[[c for c in RECIPES.values() if c != "plain"]].max(axis=1)
    return (helped - means["plain"]).rename("gap").reset_index()


# figures ---------------------------------------------------------------------------------------------------


def heatmap(summary: pd.DataFrame, scale: str) -> Figure:
    """Data set × (rule, recipe) mean test accuracy."""
    table = accuracy_table(summary, scale).drop(columns="scale")
    fig, ax = plt.subplots(figsize=(0.55 * table.shape[1] + 3, 0.38 * table.shape[0] + 1.8))
    sns.heatmap(table, annot=True, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=ax,
                cbar_kws={"label": "test accuracy (%)"}, annot_kws={"fontsize": 7})  # fmt: skip
    ax.set_xlabel("rule and recipe (BN: batch norm, BM: Batch Manhattan)")
    ax.set_ylabel("data set")
    fig.tight_layout()
    return fig


def concordance_figure(summary: pd.DataFrame) -> Figure:
    """Accuracy against the fraction of concordant signs: one thin line per data set, the mean in black."""
    sweep = _sweep_cells(summary)
    top = sweep[sweep.concordance == 1.0].groupby("dataset").test_pct.mean()
    sweep["relative"] = sweep.test_pct - sweep.dataset.map(top)
    fig, ax = plt.subplots(figsize=(6, 4))
    sns.lineplot(data=sweep, x="concordance", y="relative", hue="dataset", errorbar=None, alpha=0.45,
                 linewidth=1, legend=False, ax=ax)  # fmt: skip
    sns.lineplot(data=sweep, x="concordance", y="relative", color="black", errorbar="sd", marker="o",
                 linewidth=2.5, ax=ax, label="mean over data sets (± sd)")  # fmt: skip
    ax.set_xlabel("fraction of feedback signs concordant with W (p)")
    ax.set_ylabel("test accuracy relative to p = 1 (points)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def ablation_figure(summary: pd.DataFrame) -> Figure:
    """Per rule, the test accuracy of each recipe (one dot per data set, mean over seeds)."""
    main = summary[summary.rule.isin(RULES)]
    means = main.groupby(["dataset", "rule", "recipe"], as_index=False).test_pct.mean()
    fig, ax = plt.subplots(figsize=(8, 4))
    sns.boxplot(data=means, x="rule", y="test_pct", hue="recipe", order=list(RULES),
                hue_order=list(RECIPES.values()), ax=ax, fliersize=2)  # fmt: skip
    ax.set_xlabel("rule")
    ax.set_ylabel("test accuracy (%), one point per data set")
    ax.legend(title="recipe", ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout()
    return fig
