"""Li & Benna (2024), product feedback alignment (PFA): BP, FA, DFA, sign symmetry, PFA and PFA-o compared on
an MLP and a ResNet-20, the alignment of each rule's feedback and updates, and sparse PFA.

The recipe follows the official code's configs (jil095/product_feedback_alignment): SGD with momentum 0.9,
weight decay 1e-4 for every rule but PFA, whose large early decay is cut once after the first epoch; a
multi-step learning-rate schedule; DFA with a smaller learning rate on the ResNet. Five claims are checked
(:func:`claims`), each with its test and margin fixed here before any run.
"""

from __future__ import annotations

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
from fabook.notebook import check_positive, require_data
from fabook.plots import layer_order
from fabook.sweep import history_frame, read_results, run_sweep

NOTEBOOK = "li2024_product_feedback_alignment"
SMOKE_DATASET = "fashion-mnist-small"
"""The data set of the smoke scale (both models)."""

RULES = ("bp", "fa", "dfa", "usf", "pfa", "pfa-o")
LABELS = {"bp": "BP", "fa": "FA", "dfa": "DFA", "usf": "sign symmetry", "pfa": "PFA", "pfa-o": "PFA-o"}
MODELS = ("mlp", "resnet20")
MODEL_LABELS = {"mlp": "MLP", "resnet20": "ResNet-20"}
DENSITIES = (0.05, 0.1, 0.25, 0.5, 1.0)
"""Feedback densities of sparse PFA: the fraction of nonzero entries of the fixed ``B`` (``R`` is dense)."""
EXPANSIONS = (1, 2, 5, 10)
"""Expansion ratios k of PFA (``B`` is out × k·out)."""


def pfa_options(k: int = 10, density: float = 1.0) -> dict:
    """PFA's rule options, every one explicit (defaults elsewhere may change)."""
    return {"k": k, "orthogonal": False, "b_density": density, "r_density": 1.0, "init": "weight"}


RULE_OPTIONS = {
    "fa": {"init": "weight"},
    "usf": {"scale": "fan_in"},
    "pfa": pfa_options(),
    "pfa-o": {"init": "weight"},
}
"""Explicit options per rule. Sign symmetry is uSF with ``|B| = 1/√fan_in`` (the MLP has no batch norm);
random feedback (FA's ``B``, PFA's ``R``) is drawn with the root-mean-square of the layer's ``W``."""

RECIPES = {
    "mlp": dict(model="mlp", depth=2, batch_size=64, lr=0.01, milestones=(0.5, 0.75), gamma=0.5,
                pfa_decay=(0.03, 9e-5), dfa_lr=0.01, official_n=60000),
    "resnet20": dict(model="resnet20", batch_size=128, lr=0.1, milestones=(0.4, 0.6, 0.8), gamma=0.1,
                     pfa_decay=(0.005, 1e-4), dfa_lr=0.001, official_n=50000),
}  # fmt: skip
"""The official configs: MNIST MLP (lr 0.01, ×0.5 at epochs 20 and 30 of 40; PFA decay 0.03 → 9e-5) and
CIFAR-10 ResNet-20 (lr 0.1, ÷10 at 100, 150, 200 of 250; PFA decay 0.005 → 1e-4; DFA lr 0.001). The
milestones are fractions of the epochs, so a shorter run keeps the schedule's shape. Momentum 0.9; weight
decay 1e-4 for every rule but PFA and PFA-o, which start with ``pfa_decay[0]`` and use ``pfa_decay[1]``
from the second epoch on. On a training set of n samples instead of the paper's ``official_n``, the early
decay is multiplied by ``official_n / n``, so that it shrinks the weights over its (shorter) first epoch as
much as in the official run (:func:`early_decay`)."""
MOMENTUM, WEIGHT_DECAY = 0.9, 1e-4

SETTINGS = {
    "smoke": dict(datasets={"mlp": SMOKE_DATASET, "resnet20": SMOKE_DATASET}, seeds=1, max_test=500,
                  mlp=dict(width=64, max_train=1000, epochs=2),
                  resnet20=dict(width=0.125, max_train=300, epochs=1),
                  sparse=dict(width=64, max_train=1000, epochs=2)),
    "cpu": dict(datasets={"mlp": "fashion-mnist", "resnet20": "fashion-mnist"}, seeds=3, max_test=2000,
                mlp=dict(width=512, max_train=None, epochs=2),
                resnet20=dict(width=0.5, max_train=4000, epochs=4),
                sparse=dict(width=256, max_train=10000, epochs=5)),
    "paper": dict(datasets={"mlp": "mnist", "resnet20": "cifar10"}, seeds=5, max_test=None,
                  mlp=dict(width=512, max_train=None, epochs=40),
                  resnet20=dict(width=1, max_train=None, epochs=250),
                  sparse=dict(width=512, max_train=None, epochs=40)),
}  # fmt: skip
"""Per scale. ``sparse``: the MLP of the density and expansion sweeps (at ``paper`` the comparison's MLP, so
their k = 10, density 1 cells are the comparison's PFA cells). The ResNet's ``width`` multiplies its 16, 32,
64 channels. ``cpu`` runs on Fashion-MNIST, which neither of the paper's settings uses."""

PAPER = {  # test accuracy %, approx. (±0.3), read off the official repository's figures
    "mlp": {"bp": 98.38, "fa": 98.23, "dfa": 98.15, "usf": 98.25, "pfa": 98.39, "pfa-o": 98.42},
    "resnet20": {"bp": 91.44, "fa": 64.5, "dfa": 30.8, "usf": 89.97, "pfa": 90.75, "pfa-o": 91.39},
}
PAPER_SETTING = {"mlp": "MNIST MLP 2×512", "resnet20": "CIFAR-10 ResNet-20"}

MARGINS = dict(match=-2.0, short_resnet=5.0, short_contrast=2.0, angle_wb=20.0, angle_update=10.0,
               sparse=-1.5, sparse_density=0.1, rho=0.7)  # fmt: skip
"""The claims' margins, fixed before any run (accuracy points, degrees, Spearman ρ); see :func:`claims`."""


@dataclass(frozen=True)
class Params:
    """The notebook's knobs: ``scale`` (smoke | cpu | paper); overrides of the scale's ``seeds`` and of the
    ``epochs`` of both models; ``jobs`` (parallel cells); ``download`` MNIST and CIFAR-10 through torchvision
    first (paper scale; needs the internet)."""

    scale: str = "cpu"
    seeds: int | None = None
    epochs: int | None = None
    jobs: int = 2
    download: bool = False

    def __post_init__(self) -> None:
        check_scale(self.scale)
        check_positive(seeds=self.seeds, epochs=self.epochs, jobs=self.jobs)
        if not isinstance(self.download, bool):
            raise ValueError(f"download={self.download!r} must be True or False")

    @property
    def settings(self) -> dict:
        s = {k: dict(v) if isinstance(v, dict) else v for k, v in SETTINGS[self.scale].items()}
        if self.seeds is not None:
            s["seeds"] = self.seeds
        if self.epochs is not None:
            for part in ("mlp", "resnet20", "sparse"):
                s[part]["epochs"] = self.epochs
        return s

    @property
    def out_dir(self):
        return runs_dir() / NOTEBOOK / self.scale


def milestones(fractions: tuple[float, ...], epochs: int) -> str | None:
    """A step schedule at those fractions of ``epochs`` (``None`` when no milestone falls inside)."""
    at = sorted({m for f in fractions if 0 < (m := round(f * epochs)) < epochs})
    return f"step:{','.join(map(str, at))}" if at else None


def early_decay(arch: str, n_train: int) -> float:
    """PFA's first-epoch weight decay for a training set of ``n_train`` samples: the official value times
    ``official_n / n_train``, which keeps that epoch's ``lr · decay · steps`` (how far it shrinks W and R)."""
    r = RECIPES[arch]
    return float(f"{r['pfa_decay'][0] * r['official_n'] / n_train:.3g}")


def cell(arch: str, rule: str, options: dict, part: dict, dataset: str, max_test: int | None) -> dict:
    """One cell's config fields (no seed) in the official recipe for ``arch`` ("mlp" | "resnet20")."""
    r = RECIPES[arch]
    schedule = milestones(r["milestones"], part["epochs"])
    if schedule is not None and r["gamma"] != 0.1:
        schedule += f";gamma={r['gamma']}"
    out = dict(dataset=dataset, model=r["model"], rule=rule, rule_options=options, width=part["width"],
               batch_size=r["batch_size"], optimizer="sgd", lr=r["dfa_lr"] if rule == "dfa" else r["lr"],
               momentum=MOMENTUM, weight_decay=WEIGHT_DECAY, schedule=schedule, epochs=part["epochs"],
               max_train=part["max_train"], max_test=max_test, metrics_every=1)  # fmt: skip
    if "depth" in r:
        out["depth"] = r["depth"]
    if rule in ("pfa", "pfa-o"):
        n_train = min(data.get_info(dataset).n_train, part["max_train"] or float("inf"))
        out |= dict(weight_decay=early_decay(arch, n_train), weight_decay_schedule=f"1:{r['pfa_decay'][1]}")
    return out


def _check_data(params: Params) -> None:
    require_data(sorted(set(params.settings["datasets"].values())), params.scale, params.download)


def comparison_spec(params: Params) -> dict:
    """The paper's comparison: every rule × seed on the MLP and on the ResNet-20."""
    _check_data(params)
    s = params.settings
    cells = [
        {
            **cell(arch, rule, RULE_OPTIONS.get(rule, {}), s[arch], s["datasets"][arch], s["max_test"]),
            "seed": seed,
        }
        for arch in MODELS
        for rule in RULES
        for seed in range(s["seeds"])
    ]
    return {"name": f"{NOTEBOOK}-comparison", "base": {}, "grid": {}, "conditions": cells}


def sparse_spec(params: Params) -> dict:
    """PFA on the MLP over feedback densities (k = 10) and expansion ratios (density 1)."""
    _check_data(params)
    s = params.settings
    options = [pfa_options(10, d) for d in DENSITIES] + [pfa_options(k, 1.0) for k in EXPANSIONS]
    cells = [
        {**cell("mlp", "pfa", o, s["sparse"], s["datasets"]["mlp"], s["max_test"]), "seed": seed}
        for o in options
        for seed in range(s["seeds"])
    ]
    return {"name": f"{NOTEBOOK}-sparse", "base": {}, "grid": {}, "conditions": cells}


@dataclass
class Runs:
    """What the notebook shows: per-cell summaries (``test_pct`` added) and per-epoch histories."""

    comparison: pd.DataFrame
    history: pd.DataFrame
    sparse: pd.DataFrame
    sparse_history: pd.DataFrame


def _with_history(summary: pd.DataFrame, out_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    summary = summary.copy()
    summary["test_pct"] = 100 * summary.test_acc.astype(float)
    summary["arch"] = summary.model
    keys = set(summary.key)
    return summary, history_frame([r for r in read_results(out_dir) if r.key in keys])


def run(params: Params) -> Runs:
    """Run (or resume) the comparison, then the sparse/expansion sweep."""
    comparison = run_sweep(comparison_spec(params), params.out_dir, jobs=params.jobs)
    sparse = run_sweep(sparse_spec(params), params.out_dir, jobs=params.jobs)
    comparison, history = _with_history(comparison, params.out_dir)
    sparse, sparse_history = _with_history(sparse, params.out_dir)
    sparse["density"] = [o["b_density"] for o in sparse.rule_options]
    sparse["k"] = [o["k"] for o in sparse.rule_options]
    return Runs(comparison, history, sparse, sparse_history)


# tables ----------------------------------------------------------------------------------------------------


def _mean_sd(values: pd.Series) -> str:
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}" if len(values) > 1 else f"{values.mean():.2f}"


def comparison_table(summary: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Per rule: test accuracy % (mean ± sd over seeds) on each model; at ``paper`` scale the paper's
    approximate numbers beside ours (at other scales they are not comparable and not shown)."""
    rows = []
    for rule in RULES:
        row = {"rule": LABELS[rule], "scale": scale}
        for arch in MODELS:
            part = summary[(summary.arch == arch) & (summary.rule == rule)].test_pct
            if part.empty:
                continue
            row[f"{MODEL_LABELS[arch]} %"] = _mean_sd(part)
            if scale == "paper":
                row[f"paper, {PAPER_SETTING[arch]} % (approx.)"] = PAPER[arch][rule]
        row["seeds"] = int(summary[summary.rule == rule].groupby("arch").size().min())
        rows.append(row)
    return pd.DataFrame(rows)


def gaps(summary: pd.DataFrame) -> pd.DataFrame:
    """Per model and rule (BP excluded): mean test accuracy minus BP's, in points, beside the paper's gap on
    CIFAR-10 ResNet-20 (``paper_gap``) and on the paper's setting for that model (``paper_gap_same``)."""
    means = summary.groupby(["arch", "rule"]).test_pct.mean()
    rows = []
    for arch in MODELS:
        if (arch, "bp") not in means:
            continue
        for rule in RULES[1:]:
            if (arch, rule) in means:
                rows.append(dict(arch=arch, rule=rule, gap=means[arch, rule] - means[arch, "bp"],
                                 paper_gap=PAPER["resnet20"][rule] - PAPER["resnet20"]["bp"],
                                 paper_gap_same=PAPER[arch][rule] - PAPER[arch]["bp"]))  # fmt: skip
    return pd.DataFrame(rows, columns=["arch", "rule", "gap", "paper_gap", "paper_gap_same"])


def rank_correlation(gap_frame: pd.DataFrame, arch: str = "resnet20") -> float:
    """Spearman ρ between our gaps to BP on ``arch`` and the paper's CIFAR-10 ResNet-20 gaps."""
    part = gap_frame[gap_frame.arch == arch]
    if len(part) < 3 or part.gap.nunique() < 2:
        return float("nan")
    return float(stats.spearmanr(part.gap, part.paper_gap)[0])


def gap_table(summary: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Each rule's gap to BP, ours per model (at ``scale``) beside the paper's CIFAR-10 ResNet-20 gap."""
    frame = gaps(summary)
    table = frame.pivot_table(index="rule", columns="arch", values="gap").reindex(
        [r for r in RULES[1:] if r in set(frame.rule)]
    )
    table.columns = [f"ours, {MODEL_LABELS[a]} (pts)" for a in table.columns]
    table["paper, CIFAR-10 ResNet-20 (pts, approx.)"] = [PAPER["resnet20"][r] - PAPER["resnet20"]["bp"]
                                                          for r in table.index]  # fmt: skip
    table.index = [LABELS[r] for r in table.index]
    table.insert(0, "scale", scale)
    return table.round(2).rename_axis("rule").reset_index()


def _layer_mean(history: pd.DataFrame, metric: str, layers: str) -> pd.Series:
    """Per cell, ``metric`` at its last measured epoch averaged over the layers whose feedback is used
    (``"used"``: all but the first) or that receive a feedback signal (``"fed"``: all but the last)."""
    rows = history[(history.metric == metric) & (history.layer != "")]
    out = []
    for _, part in rows.groupby("key"):
        names = sorted(part.layer.unique(), key=layer_order)
        keep = names[1:] if layers == "used" else names[:-1]
        last = part[(part.epoch == part.epoch.max()) & part.layer.isin(keep)]
        out.append(pd.Series({part.key.iloc[0]: last.value.mean()}))
    return pd.concat(out) if out else pd.Series(dtype=float)


def angles(summary: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Per cell: ``angle_wb`` (W vs the backward weight: B, or B·R for PFA) and ``angle_update`` (the rule's
    weight update vs BP's gradient), each the mean over layers at the end of training."""
    frame = summary.set_index("key")
    frame["angle_wb"] = _layer_mean(history, "weight_angle", "used")
    frame["angle_update"] = _layer_mean(history, "grad_angle", "fed")
    return frame.reset_index()


def alignment_table(summary: pd.DataFrame, history: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Per model and rule, the final angles (mean ± sd over seeds); DFA has no per-layer B (blank)."""
    frame = angles(summary, history)
    rows = []
    for arch in MODELS:
        for rule in RULES:
            part = frame[(frame.arch == arch) & (frame.rule == rule)]
            if part.empty:
                continue
            rows.append({"model": MODEL_LABELS[arch], "rule": LABELS[rule], "scale": scale,
                         "angle W–B (°)": _mean_sd(part.angle_wb) if part.angle_wb.notna().any() else "",
                         "angle update–BP (°)": _mean_sd(part.angle_update)})  # fmt: skip
    return pd.DataFrame(rows)


def sparse_table(sparse: pd.DataFrame, history: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Sparse PFA: accuracy and final W–B·R angle per density (k = 10) and per expansion ratio (density 1)."""
    frame = angles(sparse, history)
    rows = []
    for sweep, value, fixed in (("density", "density", ("k", 10)), ("k", "k", ("density", 1.0))):
        part = frame[frame[fixed[0]] == fixed[1]]
        for v, group in part.groupby(value):
            rows.append({"sweep": f"{sweep} ({fixed[0]} = {fixed[1]:g})", "value": f"{v:g}", "scale": scale,
                         "seeds": len(group), "test accuracy %": _mean_sd(group.test_pct),
                         "angle W–B·R (°)": _mean_sd(group.angle_wb)})  # fmt: skip
    return pd.DataFrame(rows)


# claims ----------------------------------------------------------------------------------------------------


def _combine(verdicts: list[str]) -> str:
    """Holds if every part holds, does not hold if any part fails, else inconclusive."""
    if verdicts and all(v == cl.HOLDS for v in verdicts):
        return cl.HOLDS
    return cl.FAILS if cl.FAILS in verdicts else cl.INCONCLUSIVE


def _per_seed_gap(summary: pd.DataFrame, arch: str, rule: str) -> pd.Series:
    """BP − rule per seed (seeds paired by index): a gap sample whose spread estimates the gap's."""
    part = summary[summary.arch == arch].groupby(["rule", "seed"]).test_pct.mean()
    return (part.get("bp", pd.Series(dtype=float)) - part.get(rule, pd.Series(dtype=float))).dropna()


def claims(runs: Runs, scale: str) -> pd.DataFrame:
    """The paper's five claims, decided by tests fixed before any run (margins in :data:`MARGINS`; every
    comparison by :func:`fabook.claims.at_least`, a difference of means ± 2 standard errors over seeds):

    1. PFA and PFA-o match BP — test acc. rule − BP ≥ −2 points, on both models (4 tests, all must hold);
    2. FA and DFA fall well short of BP in the ResNet, much less so in the MLP — for each of FA and DFA,
       BP − rule on the ResNet ≥ 5 points, and that gap exceeds the MLP's by ≥ 2 points (4 tests);
    3. PFA aligns far better than FA — on both models, angle W–B: FA − PFA ≥ 20°, and angle update–BP:
       FA − PFA ≥ 10° (4 tests);
    4. sparse PFA keeps its accuracy — test acc. at density 0.1 − density 1 ≥ −1.5 points (k = 10);
    5. the rules' order by gap to BP agrees with the paper's — Spearman ρ between our ResNet gaps and the
       paper's CIFAR-10 ResNet-20 gaps (FA, DFA, sign symmetry, PFA, PFA-o): holds at ρ ≥ 0.7, does not hold
       at ρ ≤ 0, inconclusive between.
    """
    m, s = MARGINS, runs.comparison
    pct = {(a, r): s[(s.arch == a) & (s.rule == r)].test_pct for a in MODELS for r in RULES}
    out = []

    pairs = [(r, a) for r in ("pfa", "pfa-o") for a in MODELS]
    tests = [cl.at_least(pct[a, r], pct[a, "bp"], m["match"]) for r, a in pairs]
    out.append(cl.Claim(
        "PFA and PFA-o match BP (MLP and ResNet)",
        f"test acc. rule − BP ≥ {m['match']:g} pts for PFA and PFA-o on both models (all 4 must hold)",
        "; ".join(f"{LABELS[r]} {MODEL_LABELS[a]}: {t[0]}" for (r, a), t in zip(pairs, tests, strict=True)),
        _combine([t[1] for t in tests]),
    ))  # fmt: skip

    parts, verdicts = [], []
    for rule in ("fa", "dfa"):
        short = cl.at_least(pct["resnet20", "bp"], pct["resnet20", rule], m["short_resnet"])
        contrast = cl.at_least(_per_seed_gap(s, "resnet20", rule), _per_seed_gap(s, "mlp", rule),
                               m["short_contrast"])  # fmt: skip
        parts.append(f"{LABELS[rule]}: ResNet gap {short[0]}, ResNet − MLP gap {contrast[0]}")
        verdicts += [short[1], contrast[1]]
    out.append(cl.Claim(
        "FA and DFA fall well short of BP in the ResNet, much less so in the MLP",
        f"BP − rule on the ResNet ≥ {m['short_resnet']:g} pts and ResNet gap − MLP gap ≥ "
        f"{m['short_contrast']:g} pts, for FA and DFA (all 4 must hold)",
        "; ".join(parts),
        _combine(verdicts),
    ))  # fmt: skip

    frame = angles(s, runs.history)
    parts, verdicts = [], []
    for arch in MODELS:
        fa, pfa = (frame[(frame.arch == arch) & (frame.rule == r)] for r in ("fa", "pfa"))
        wb = cl.at_least(fa.angle_wb, pfa.angle_wb, m["angle_wb"], unit="°")
        up = cl.at_least(fa.angle_update, pfa.angle_update, m["angle_update"], unit="°")
        parts.append(f"{MODEL_LABELS[arch]}: W–B {wb[0]}, update {up[0]}")
        verdicts += [wb[1], up[1]]
    out.append(cl.Claim(
        "PFA's feedback B·R aligns with W, and its updates with BP's gradient, far better than FA's",
        f"angle FA − PFA ≥ {m['angle_wb']:g}° (W–B) and ≥ {m['angle_update']:g}° (update–BP), both models",
        "; ".join(parts),
        _combine(verdicts),
    ))  # fmt: skip

    sp = runs.sparse[runs.sparse.k == 10]
    dense, sparse = sp[sp.density == 1.0].test_pct, sp[sp.density == m["sparse_density"]].test_pct
    measured, verdict = cl.at_least(sparse, dense, m["sparse"], unit=" pts")
    means = sp.groupby("density").test_pct.mean()
    kept = [d for d in sorted(means.index) if means[d] - means.get(1.0, np.nan) >= m["sparse"]]
    out.append(cl.Claim(
        f"Sparse PFA keeps its accuracy down to feedback density {m['sparse_density']:g}",
        f"test acc. at density {m['sparse_density']:g} − density 1 ≥ {m['sparse']:g} pts (k = 10)",
        f"{measured}; lowest density whose mean is within the margin: {kept[0]:g}" if kept else measured,
        verdict,
    ))  # fmt: skip

    rho = rank_correlation(gaps(s))
    verdict = (
        cl.INCONCLUSIVE
        if np.isnan(rho)
        else cl.HOLDS
        if rho >= m["rho"]
        else cl.FAILS
        if rho <= 0
        else cl.INCONCLUSIVE
    )
    out.append(cl.Claim(
        "The rules' order by gap to BP agrees with the paper's (CIFAR-10 ResNet-20)",
        f"Spearman ρ(our ResNet gaps, paper's gaps) over the 5 rules ≥ {m['rho']:g}; ≤ 0 does not hold",
        f"ρ = {rho:.2f} (MLP: ρ = {rank_correlation(gaps(s), 'mlp'):.2f})",
        verdict,
    ))  # fmt: skip
    return cl.table(out, scale)


# figures ---------------------------------------------------------------------------------------------------


def gap_figure(summary: pd.DataFrame, scale: str) -> Figure:
    """Our gap to BP (each model, this scale) against the paper's CIFAR-10 ResNet-20 gap, a point per rule."""
    frame = gaps(summary)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for arch, marker in zip(MODELS, ("o", "s"), strict=True):
        part = frame[frame.arch == arch]
        rho = rank_correlation(frame, arch)
        ax.scatter(part.paper_gap, part.gap, marker=marker, s=50,
                   label=f"{MODEL_LABELS[arch]}, Spearman ρ = {rho:.2f}")  # fmt: skip
        for _, row in part.iterrows():
            ax.annotate(LABELS[row.rule], (row.paper_gap, row.gap), textcoords="offset points", xytext=(5, 3),
                        fontsize=8)  # fmt: skip
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.margins(x=0.15, y=0.1)  # room for the rule names
    ax.set_xlabel("paper: gap to BP, CIFAR-10 ResNet-20 (points, approx.)")
    ax.set_ylabel(f"ours: gap to BP, Fashion-MNIST (points, scale {scale})" if scale != "paper"
                  else "ours: gap to BP (points, paper scale)")  # fmt: skip
    ax.legend(title="our model", loc="lower right")
    fig.tight_layout()
    return fig


def _layer_index(history: pd.DataFrame) -> pd.DataFrame:
    rows = history[history.layer != ""].copy()
    order = {name: i + 1 for i, name in enumerate(sorted(rows.layer.unique(), key=layer_order))}
    rows["depth"] = rows.layer.map(order)
    return rows


def alignment_over_training(history: pd.DataFrame, arch: str, metric: str, scale: str) -> Figure:
    """``metric`` per layer over training for every rule on ``arch``: one panel per rule, one line per layer
    (mean over seeds), coloured by depth (colour bar: layer 1 = the input layer)."""
    rows = _layer_index(history[(history.model == RECIPES[arch]["model"]) & (history.metric == metric)])
    means = rows[rows.value.notna()].groupby(["rule", "depth", "epoch"]).value.mean()
    rules = [r for r in RULES if r in set(means.index.get_level_values("rule"))]
    depth = int(rows.depth.max()) if len(rows) else 1
    cmap, norm = plt.get_cmap("viridis"), plt.Normalize(1, max(depth, 2))
    fig, axes = plt.subplots(
        1, len(rules), figsize=(2.9 * len(rules) + 0.8, 3.2), squeeze=False, sharey=True, layout="constrained"
    )
    for ax, rule in zip(axes[0], rules, strict=True):
        for d, line in means[rule].groupby(level="depth"):
            ax.plot(line.index.get_level_values("epoch"), line.values, color=cmap(norm(d)), marker=".")
        ax.set_title(LABELS[rule])
        ax.set_xlabel("epoch")
    axes[0][0].set_ylabel(
        {"weight_angle": "angle W vs B (°)", "grad_angle": "angle update vs BP (°)"}[metric]
    )
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[0]), pad=0.01)
    bar.set_label("layer (1 = input side)")
    fig.suptitle(f"{MODEL_LABELS[arch]}, scale {scale}")
    return fig


def sparse_figure(sparse: pd.DataFrame, history: pd.DataFrame, scale: str) -> Figure:
    """Sparse PFA: accuracy against feedback density (k = 10); accuracy and W–B·R angle against k."""
    frame = angles(sparse, history)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    dens = frame[frame.k == 10]
    sns.lineplot(data=dens, x="density", y="test_pct", marker="o", errorbar="sd", ax=axes[0])
    axes[0].set_xscale("log")
    axes[0].set_xticks(list(DENSITIES), [f"{d:g}" for d in DENSITIES])
    axes[0].set_xlabel("feedback density of B (k = 10)")
    axes[0].set_ylabel("test accuracy (%)")
    ks = frame[frame.density == 1.0]
    sns.lineplot(data=ks, x="k", y="test_pct", marker="o", errorbar="sd", ax=axes[1])
    axes[1].set_ylabel("test accuracy (%)")
    sns.lineplot(data=ks, x="k", y="angle_wb", marker="o", errorbar="sd", ax=axes[2])
    axes[2].set_ylabel("angle W vs B·R at the end (°)")
    for ax in axes[1:]:
        ax.set_xticks(list(EXPANSIONS))
        ax.set_xlabel("expansion ratio k (density 1)")
    fig.suptitle(f"PFA on the MLP, scale {scale} (mean ± sd over seeds)")
    fig.tight_layout()
    return fig
