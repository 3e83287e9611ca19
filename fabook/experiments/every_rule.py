"""Every rule side by side: all of fabook's learning rules on the same nets and data, and the book's first
reproduction at a published setting (BioTorch's Fashion-MNIST LeNet table, Sanfiz & Akrout 2021).

The comparison (:func:`run`): every rule variant (:data:`VARIANTS`) × an MLP, LeNet and a narrow ResNet-20
on Fashion-MNIST, in one recipe — BioTorch's benchmark recipe (:data:`RECIPE`: SGD with momentum 0.9,
weight decay 1e-3, batch 64, lr ÷10 at half and three quarters of the epochs), shortened per scale. Each
(net, rule) gets its lr from :data:`LR_GRIDS` on a validation split of the training set (seed 0; the same grid
for every rule, BP included; :mod:`fabook.select`), then trains on every seed with it; the test set is
measured once, on the weights of the best validation epoch. Per (net, rule): test error mean ± sd, the W–B
angle and the update angle to BP's gradient at the end of training (:func:`fabook.experiments.li2024.angles`),
and the step-time ratio from the cost benchmark (:func:`step_costs`).

The reproduction (:func:`biotorch_selection_spec`, :func:`biotorch_final_spec`, :func:`main`): LeNet, the
six rules BioTorch reports, 100 epochs on all 60,000 images, at ``paper`` scale only and run in the
background (``python -m fabook.experiments.every_rule``), its finished cells recorded apart from the
chapter's own (``--record``: ``recorded/every_rule/paper.json.gz``); the notebook reads what the runs folder
and that recording hold and never trains it (:func:`biotorch_results`). Claims (:func:`claims`) and their
margins (:data:`MARGINS`) are fixed here before any run.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from scipy import stats

import fabook
import fabook.results
from fabook import claims as cl
from fabook import plots, record, regime, select
from fabook.book import check_scale
from fabook.cli import runs_dir
from fabook.experiments.li2024 import angles, milestones
from fabook.notebook import check_positive, check_types, require_data
from fabook.sweep import expand, history_frame, read_results, run_sweep, summary_frame, unwatched
from fabook.train import Config, format_options, load_result, result_path

NOTEBOOK = "every_rule"

VARIANTS: dict[str, tuple[str, dict]] = {
    "BP": ("bp", {}),
    "FA": ("fa", {}),
    "DFA": ("dfa", {}),
    "uSF": ("usf", {}),
    "brSF": ("brsf", {}),
    "frSF": ("frsf", {}),
    "sc p=0.5": ("sc", {"p": 0.5}),
    "sc p=0.75": ("sc", {"p": 0.75}),
    "WM": ("wm", {}),
    "KP": ("kp", {}),
    "PFA": ("pfa", {}),
    "PFA-o": ("pfa-o", {}),
    "sparse PFA": ("sparse-pfa", {}),
}
"""Label -> (rule, options): fabook's rules at their default options; sign concordance (``sc``) at two
fractions p of concordant signs (p = 1 is frSF, p = 0.5 random signs); sparse PFA at its default density."""
SIGN_RULES = ("uSF", "brSF", "frSF")
RANDOM_FEEDBACK = ("FA", "DFA")

NETS = ("mlp", "lenet", "resnet20", "mlp1d")
NET_LABELS = {"mlp": "MLP", "lenet": "LeNet", "resnet20": "ResNet-20", "mlp1d": "MLP, MNIST-1D"}
NET_DATA = {"mlp1d": ("mlp", "mnist1d")}
"""Nets on a data set of their own: net -> (model, data set). The others are the model of their name on the
scale's data set (Fashion-MNIST). MNIST-1D (Greydanus 2020; 4,000 training and 1,000 test signals of length
40, made offline from the ``mnist1d`` package's templates) is the second data set the issue asks for: small,
yet harder for an MLP than Fashion-MNIST."""

RECIPE = dict(optimizer="sgd", momentum=0.9, weight_decay=1e-3, batch_size=64)
"""BioTorch's benchmark recipe (their ``Benchmarks.md``); the lr is chosen (:data:`LR_GRIDS`)."""
MILESTONES = (0.5, 0.75)
"""lr ÷10 at these fractions of the epochs (BioTorch: epochs 50 and 75 of 100)."""
VAL_FRACTION = 0.1
"""Share of the training set held out (stratified) for the lr choice and the best-epoch weights."""

LR_GRIDS = {
    "smoke": (0.01, 0.1),
    "cpu": (0.001, 0.01, 0.1),
    "paper": (0.001, 0.003, 0.01, 0.03, 0.1),
}
"""The SGD lr grid per scale, the same for every rule. ``paper`` spans BioTorch's own LeNet SGD configs
(CIFAR-10: lr 0.1 for BP, 0.001 for FA); ``cpu`` keeps three points that still span them, as the
reproduction's grid (:data:`BIOTORCH_LRS`) does. A first ``cpu`` run used (0.01, 0.03, 0.1), leaving out
BioTorch's 0.001: on LeNet, which has no batch norm, KP and PFA then diverged or died at every lr of the
grid (test error 90 %, chance) and FA's error was 48 ± 27 % (BP's 20 %) — the grid, not the rule, decided
those cells, so the grid was widened to BioTorch's range before the run the book shows."""

SETTINGS = {
    "smoke": dict(dataset="fashion-mnist-small", max_test=300, seeds=1,
                  mlp=dict(width=32, depth=2, max_train=300, epochs=2),
                  lenet=dict(max_train=300, epochs=2),
                  resnet20=dict(width=0.125, max_train=100, epochs=1),
                  mlp1d=dict(width=32, depth=2, max_train=300, epochs=2)),
    "cpu": dict(dataset="fashion-mnist", max_test=2000, seeds=3,
                mlp=dict(width=256, depth=2, max_train=6000, epochs=4),
                lenet=dict(max_train=6000, epochs=4),
                resnet20=dict(width=0.25, max_train=2000, epochs=4),
                mlp1d=dict(width=256, depth=2, max_train=None, max_test=None, epochs=20)),
    "paper": dict(dataset="fashion-mnist", max_test=None, seeds=3,
                  mlp=dict(width=256, depth=2, max_train=None, epochs=100),
                  lenet=dict(max_train=None, epochs=100),
                  resnet20=dict(width=1, max_train=None, epochs=100),
                  mlp1d=dict(width=256, depth=2, max_train=None, max_test=None, epochs=100)),
}  # fmt: skip
"""Per scale: the data set, the test cap, the seeds per (net, rule) and per net its size, training cap and
epochs (a net's own ``max_test`` overrides the scale's). ``paper`` is BioTorch's recipe in full (100 epochs,
all 60,000 images) on every net, not run here. ``cpu`` keeps 6,000 images (2,000 for the ResNet-20 with
4/8/16 channels) and 4 epochs so that the notebook fits about 10 minutes on 2 cores; MNIST-1D is small enough
to keep whole, for 20 epochs (about 1,100 steps)."""

MARGINS = dict(sign=-1.0, random=2.0, order=0.0, spread=2.0)
"""Accuracy points, fixed before any run: a sign rule within 1 point of BP (``sign``: its accuracy minus
BP's ≥ −1); FA and DFA behind BP by at least 2 (``random``); in BioTorch's order, every one of BP and the sign
rules ahead of each of FA and DFA (``order``: difference ≥ 0); BioTorch's published error within ``spread``
sd of our seeds' mean (the reproduction)."""
CLAIMS = (
    "The sign rules (uSF, brSF, frSF) come within 1 point of BP",
    "FA and DFA fall behind BP by at least 2 points",
    "The rules come in BioTorch's order: BP and the sign rules ahead of FA and DFA",
)

BIOTORCH_ERROR = {"bp": 9.20, "fa": 13.06, "dfa": 12.81, "usf": 9.69, "brsf": 10.02, "frsf": 9.61}
"""Fashion-MNIST LeNet top-1 test error % (BioTorch ``Benchmarks.md``; one seed, best epoch measured on the
test set, which they call validation: optimistic)."""
BIOTORCH_RULES = tuple(BIOTORCH_ERROR)
BIOTORCH = dict(dataset="fashion-mnist", model="lenet", epochs=100, schedule="step:50,75", **RECIPE)
"""Their setting: LeNet (inputs resized to 32×32), SGD momentum 0.9, weight decay 1e-3, batch 64, 100 epochs,
lr ÷10 at epochs 50 and 75, all 60,000 training images, no validation split; the initial lr is not stated."""
BIOTORCH_LRS = (0.001, 0.01, 0.1)
"""The lr of each rule is chosen from these (the values BioTorch's LeNet SGD configs use) on a validation
split (:data:`VAL_FRACTION`) in a run of :data:`BIOTORCH_SELECT_EPOCHS` epochs with the schedule's shape."""
BIOTORCH_SELECT_EPOCHS = 10
BIOTORCH_SEEDS = 3
BIOTORCH_MIN_SEEDS = 2
"""The reproduction counts as made once every rule has this many finished seeds (of
:data:`BIOTORCH_SEEDS`)."""
BIOTORCH_METRICS_EVERY = 25


@dataclass(frozen=True)
class Params:
    """The notebook's knobs: ``scale`` (smoke | cpu | paper); ``seeds`` per (net, rule) (None: the scale's);
    ``nets`` (a subset of :data:`NETS`; None: all); ``jobs`` (parallel cells); ``download`` Fashion-MNIST
    first (needs the internet)."""

    scale: str = "cpu"
    seeds: int | None = None
    nets: tuple[str, ...] | None = None
    jobs: int = 2
    download: bool = False

    def __post_init__(self) -> None:
        check_scale(self.scale)
        check_types(self)
        check_positive(seeds=self.seeds, jobs=self.jobs)
        if self.nets is not None:
            bad = [n for n in self.nets if n not in NETS]
            if bad or not self.nets:
                raise ValueError(f"nets={list(self.nets)!r}: unknown {bad}; accepted: {', '.join(NETS)}")

    @property
    def settings(self) -> dict:
        s = dict(SETTINGS[self.scale])
        if self.seeds is not None:
            s["seeds"] = self.seeds
        s["nets"] = tuple(n for n in NETS if self.nets is None or n in self.nets)
        return s

    @property
    def out_dir(self) -> Path:
        return runs_dir() / NOTEBOOK / self.scale


def variant_of(rule: str, options: dict) -> str:
    """The :data:`VARIANTS` label of a cell's rule and options; ValueError for one not in the chapter."""
    for label, (r, o) in VARIANTS.items():
        if r == rule and o == dict(options):
            return label
    raise ValueError(f"rule {rule!r} with options {options!r} is not one of this chapter's: {list(VARIANTS)}")


def cell(net: str, variant: str, scale: str) -> dict:
    """One condition's config fields (no lr, no seed) for ``net`` and rule ``variant`` at ``scale``."""
    s, rule_options = SETTINGS[scale], VARIANTS[variant]
    part = dict(s[net])
    epochs, max_test = part.pop("epochs"), part.pop("max_test", s["max_test"])
    model, dataset = NET_DATA.get(net, (net, s["dataset"]))
    return dict(dataset=dataset, model=model, rule=rule_options[0], rule_options=rule_options[1],
                **part, **RECIPE, epochs=epochs, schedule=milestones(MILESTONES, epochs),
                max_test=max_test, val_fraction=VAL_FRACTION, metrics_every=epochs)  # fmt: skip


def net_of(model: str, dataset: str) -> str:
    """The :data:`NETS` name of a cell's model on its data set."""
    return next((net for net, md in NET_DATA.items() if md == (model, dataset)), model)


def conditions(params: Params) -> list[dict]:
    """Every (net, rule variant) condition at ``params``' scale."""
    return [cell(net, v, params.scale) for net in params.settings["nets"] for v in VARIANTS]


SELECT_BY = ["model", "dataset", "rule", "options"]


def selection_spec(params: Params) -> dict:
    """Every condition × the lr grid, on seed 0 (a validation split of its training set decides)."""
    cells = select.grid_cells(conditions(params), {"sgd": LR_GRIDS[params.scale]}, [0])
    return {"name": f"{NOTEBOOK}: lr selection", "base": {}, "grid": {}, "conditions": cells}


def _chosen(chosen: pd.DataFrame) -> dict[tuple, float]:
    return {tuple(row[c] for c in SELECT_BY): row["lr"] for _, row in chosen.iterrows()}


def _key(fields: dict) -> tuple:
    return fields["model"], fields["dataset"], fields["rule"], format_options(fields.get("rule_options", {}))


def final_spec(params: Params, chosen: pd.DataFrame) -> dict:
    """Every condition at its chosen lr on every seed (seed 0's cell is the selection's, reused)."""
    lrs = _chosen(chosen)
    cells = [
        {**c, "lr": lrs[_key(c)], "seed": seed}
        for c in conditions(params)
        for seed in range(params.settings["seeds"])
    ]
    return {"name": f"{NOTEBOOK}: chosen lrs", "base": {}, "grid": {}, "conditions": cells}


@dataclass
class Study:
    """What :func:`run` returns: ``summary`` (chosen-lr cells, every seed; ``variant``, ``net``,
    ``test_pct``, ``error_pct``, the final angles added), ``chosen`` (the lr per net and rule) and
    ``reproduction`` (what the runs folder holds of the BioTorch-setting run)."""

    summary: pd.DataFrame
    chosen: pd.DataFrame
    reproduction: Reproduction


def _annotate(summary: pd.DataFrame) -> pd.DataFrame:
    summary = summary.copy()
    summary["variant"] = [variant_of(r, o) for r, o in zip(summary.rule, summary.rule_options, strict=True)]
    summary["net"] = [net_of(m, d) for m, d in zip(summary.model, summary.dataset, strict=True)]
    summary["test_pct"] = 100 * summary.test_acc.astype(float)
    summary["error_pct"] = 100 - summary.test_pct
    return summary


def run(params: Params) -> Study:
    """Run (or resume) the lr selection, then every seed at the chosen lrs; read the final angles and what
    the runs folder holds of the BioTorch-setting run (:func:`biotorch_results`; never trained here)."""
    require_data(sorted({c["dataset"] for c in conditions(params)}), params.scale, params.download)
    selection = run_sweep(selection_spec(params), params.out_dir, jobs=params.jobs, progress=False)
    chosen = select.choose(selection, SELECT_BY)
    summary = _annotate(
        run_sweep(final_spec(params, chosen), params.out_dir, jobs=params.jobs, progress=False)
    )
    keys = set(summary.key)
    history = history_frame([r for r in read_results(params.out_dir) if r.key in keys])
    return Study(angles(summary, history), chosen, biotorch_results())


def plan(params: Params) -> dict[str, int]:
    """Cells the notebook trains at most: the selection's and the further seeds'."""
    n = len(conditions(params))
    return {
        "lr selection": n * len(LR_GRIDS[params.scale]),
        "further seeds": n * (params.settings["seeds"] - 1),
    }


# the quantities that decide the claims ---------------------------------------------------------------------

REFERENCE_LR = 0.01
"""The lr at which Σlr and the decay exponent are shown (each rule's own lr is chosen)."""


def _config(fields: dict) -> Config:
    return Config.from_dict({**fields, "lr": REFERENCE_LR})


def regime_rows(params: Params | None = None) -> dict[str, dict[str, object]]:
    """Per net and scale: training images, epochs, optimizer steps, Σlr and the decay exponent at lr
    :data:`REFERENCE_LR`; then seeds, the lr grid and the cells; the BioTorch run at ``paper``."""
    rows: dict[str, dict[str, object]] = {}
    for scale in regime.SCALES:
        here = params if params is not None and params.scale == scale else Params(scale=scale)
        for net in NETS:
            c = _config(cell(net, "BP", scale))
            label = NET_LABELS[net]
            values = {
                f"{label}: training images": regime.train_size(c),
                f"{label}: epochs": c.epochs,
                f"{label}: optimizer steps": regime.steps(c),
                f"{label}: Σ lr at lr₀ = {REFERENCE_LR:g}": round(regime.lr_sum(c), 2),
                f"{label}: decay exponent A at lr₀ = {REFERENCE_LR:g}": round(regime.decay_exponent(c), 3),
            }
            for name, value in values.items():
                rows.setdefault(name, {})[scale] = value
        rows.setdefault("seeds per (net, rule)", {})[scale] = here.settings["seeds"]
        rows.setdefault("lr grid (points)", {})[scale] = len(LR_GRIDS[scale])
        rows.setdefault("cells trained (at most)", {})[scale] = sum(plan(here).values())
    bio = _config({**BIOTORCH, "rule": "bp", "seed": 0})
    rows["BioTorch LeNet run: optimizer steps"] = {"paper": regime.steps(bio)}
    rows[f"BioTorch LeNet run: Σ lr at lr₀ = {REFERENCE_LR:g}"] = {"paper": round(regime.lr_sum(bio), 2)}
    rows[f"BioTorch LeNet run: decay exponent A at lr₀ = {REFERENCE_LR:g}"] = {
        "paper": round(regime.decay_exponent(bio), 3)
    }
    return rows


def regime_table(params: Params | None = None) -> pd.DataFrame:
    """:func:`regime_rows` as a table, one column per scale and ``cpu / paper``."""
    return regime.table(regime_rows(params))


# the cost benchmark ----------------------------------------------------------------------------------------

COSTS = (
    Path(fabook.__file__).resolve().parents[1] / "benchmarks" / "results" / "rule_overhead_cpu_all_cores.json"
)
"""The cost benchmark's CPU results on all cores (torch's default thread count, as a user trains;
``benchmarks/rule_overhead.py``; absent from an installed package).

:meta hide-value:
"""
COST_NETS = {"mlp": "mlp", "resnet20": "resnet20"}
"""Which benchmarked model stands for which net (LeNet was not benchmarked)."""


def step_costs(path: Path | None = None) -> pd.DataFrame:
    """Per benchmarked net and rule: a train step's time over plain torch's (``net``, ``rule``, ``ratio``);
    empty when the benchmark's results file (``path``, by default :data:`COSTS`) is not there."""
    path = COSTS if path is None else path
    if not path.is_file():
        return pd.DataFrame(columns=["net", "rule", "ratio"])
    rows = json.loads(path.read_text())["rows"]
    nets = {v: k for k, v in COST_NETS.items()}
    return pd.DataFrame(
        [dict(net=nets[r["model"]], rule=r["rule"], ratio=r["ratio"]) for r in rows
         if r.get("study") == "main" and r["model"] in nets and r["rule"] in fabook.RULES]
    )  # fmt: skip


# tables and the figure -------------------------------------------------------------------------------------


def _mean_sd(values: pd.Series, digits: int = 2) -> str:
    values = values.dropna()
    if values.empty:
        return ""
    text = f"{values.mean():.{digits}f}"
    return f"{text} ± {values.std(ddof=1):.{digits}f}" if len(values) > 1 else text


def comparison_table(study: Study, scale: str, costs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per net and rule: the chosen lr, test error % and the final angles (mean ± sd over seeds), and the
    step-time ratio to plain torch where the cost benchmark measured that net (column left out when none)."""
    costs = step_costs() if costs is None else costs
    ratio = {(r.net, r.rule): r.ratio for r in costs.itertuples()}
    lrs = _chosen(study.chosen)
    rows = []
    for net in dict.fromkeys(study.summary.net):
        for variant in VARIANTS:
            part = study.summary[(study.summary.net == net) & (study.summary.variant == variant)]
            if part.empty:
                continue
            rule, options = VARIANTS[variant]
            model, dataset = part.model.iloc[0], part.dataset.iloc[0]
            row = {"net": NET_LABELS[net], "rule": variant, "scale": scale,
                   "lr": f"{lrs[(model, dataset, rule, format_options(options))]:g}", "seeds": len(part),
                   "test error (%)": _mean_sd(part.error_pct),
                   "angle W–B (°)": _mean_sd(part.angle_wb, 0),
                   "angle update–BP (°)": _mean_sd(part.angle_update, 0)}  # fmt: skip
            if not costs.empty:
                value = ratio.get((net, rule))
                row["step time ÷ torch"] = "" if value is None else f"{value:.2f}"
            rows.append(row)
    return pd.DataFrame(rows)


def means(summary: pd.DataFrame) -> pd.DataFrame:
    """Per net and variant (in :data:`VARIANTS` order): mean and sd over seeds of the test error and the final
    angles, as columns like ``error_pct_mean`` and ``angle_update_sd``."""
    columns = ["error_pct", "angle_wb", "angle_update"]
    frame = summary.groupby(["net", "variant"], sort=False)[columns].agg(["mean", "std"])
    frame.columns = [f"{c}_{'sd' if s == 'std' else s}" for c, s in frame.columns]
    return frame.reset_index()


def figure(summary: pd.DataFrame) -> Figure:
    """Test error against the update angle to BP's gradient at the end of training, one panel per net, one
    point per rule (mean ± sd over seeds)."""
    frame = means(summary)
    nets = list(dict.fromkeys(frame.net))
    cols = min(len(nets), 2)
    rows = -(-len(nets) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(plots.PAGE_WIDTH, 3.4 * rows), squeeze=False, layout="constrained"
    )
    colours = dict(zip(VARIANTS, plt.get_cmap("tab20").colors, strict=False))
    for ax in axes.flat[len(nets) :]:
        ax.set_visible(False)
    for ax, net in zip(axes.flat, nets, strict=False):
        for row in frame[frame.net == net].itertuples(index=False):
            ax.errorbar(row.angle_update_mean, row.error_pct_mean, xerr=np.nan_to_num(row.angle_update_sd),
                        yerr=np.nan_to_num(row.error_pct_sd), fmt="o", capsize=2, color=colours[row.variant],
                        label=row.variant)  # fmt: skip
        ax.set_title(NET_LABELS.get(net, net), fontsize=plots.FONT_SIZES["title"])
        ax.set_xlabel("update angle to BP (°)", fontsize=plots.FONT_SIZES["label"])
        ax.set_ylabel("test error (%)", fontsize=plots.FONT_SIZES["label"])
        ax.tick_params(labelsize=plots.FONT_SIZES["tick"])
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", frameon=False, title="rule",
               fontsize=plots.FONT_SIZES["legend"])  # fmt: skip
    return fig


# claims ----------------------------------------------------------------------------------------------------


def _accuracy(summary: pd.DataFrame, net: str, variant: str) -> pd.Series:
    return summary[(summary.net == net) & (summary.variant == variant)].test_pct


def _pairs_claim(summary: pd.DataFrame, pairs: Sequence[tuple[str, str]], margin: float) -> tuple[str, str]:
    """Every (a, b) pair on every net: accuracy of a minus b ≥ ``margin`` (:func:`fabook.claims.at_least`,
    ± 2 SE). Holds if every pair holds, does not hold if any pair fails, else inconclusive."""
    results = []
    for net in dict.fromkeys(summary.net):
        for a, b in pairs:
            sa, sb = _accuracy(summary, net, a), _accuracy(summary, net, b)
            if len(sa) and len(sb):
                results.append(
                    (f"{NET_LABELS.get(net, net)} {a} − {b}", *cl.at_least(sa, sb, margin, unit=" pts"))
                )
    if not results:
        return "no net holds both rules of any pair", cl.INCONCLUSIVE
    verdicts = [v for *_, v in results]
    verdict = (
        cl.FAILS if cl.FAILS in verdicts else cl.HOLDS if set(verdicts) == {cl.HOLDS} else cl.INCONCLUSIVE
    )
    counts = ", ".join(
        f"{verdicts.count(v)} {v}" for v in (cl.HOLDS, cl.FAILS, cl.INCONCLUSIVE) if v in verdicts
    )
    worst = min(results, key=lambda r: float(r[1].split()[0]))
    return f"{len(results)} pairs: {counts}; lowest {worst[0]} = {worst[1]}", verdict


def claims(summary: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Three claims, their tests and margins (:data:`MARGINS`) fixed before any run, judged on every net
    of ``summary`` (columns ``net``, ``variant``, ``test_pct``), each pair by its difference of means ± 2 SE
    over seeds (:func:`fabook.claims.at_least`; with one seed the error cannot be estimated and the verdict
    is inconclusive):

    1. the sign rules are within 1 point of BP — uSF, brSF and frSF each minus BP ≥ −1 pt;
    2. FA and DFA are behind BP by ≥ 2 points;
    3. the order is BioTorch's — BP and each sign rule ahead of each of FA and DFA (≥ 0); BP against the sign
       rules is claim 1's (BioTorch's differences there, 0.4–0.8 pts, are within a single seed's noise). Our
       rank correlation with BioTorch's six errors is reported beside it, as a measure, not a test.
    """
    m = MARGINS
    rows = []
    measured, verdict = _pairs_claim(summary, [(s, "BP") for s in SIGN_RULES], m["sign"])
    rows.append(cl.Claim(CLAIMS[0],
                         f"per net, each sign rule's accuracy − BP's ≥ {m['sign']:g} pt (± 2 SE over seeds); "
                         "holds if every pair holds, does not hold if one lies wholly below",
                         measured, verdict))  # fmt: skip
    measured, verdict = _pairs_claim(summary, [("BP", r) for r in RANDOM_FEEDBACK], m["random"])
    rows.append(cl.Claim(CLAIMS[1],
                         f"per net, BP's accuracy − FA's and − DFA's ≥ {m['random']:g} pts (± 2 SE); holds "
                         "if every pair holds, does not hold if one lies wholly below",
                         measured, verdict))  # fmt: skip
    ahead = [(a, b) for a in ("BP", *SIGN_RULES) for b in RANDOM_FEEDBACK]
    measured, verdict = _pairs_claim(summary, ahead, m["order"])
    rows.append(cl.Claim(CLAIMS[2],
                         "per net, each of BP, uSF, brSF, frSF minus each of FA, DFA ≥ 0 (± 2 SE); holds if "
                         "every pair holds, does not hold if one lies wholly below",
                         f"{measured}; {rank_text(summary)}", verdict))  # fmt: skip
    return cl.table(rows, scale)


def rank_text(summary: pd.DataFrame) -> str:
    """Spearman ρ between our mean errors and BioTorch's over their six rules, per net."""
    labels = {"bp": "BP", "fa": "FA", "dfa": "DFA", "usf": "uSF", "brsf": "brSF", "frsf": "frSF"}
    parts = []
    for net in dict.fromkeys(summary.net):
        ours = summary[summary.net == net].groupby("variant").error_pct.mean()
        rules = [r for r in BIOTORCH_RULES if labels[r] in ours.index]
        if len(rules) >= 3 and ours[[labels[r] for r in rules]].nunique() > 1:
            rho = stats.spearmanr([ours[labels[r]] for r in rules], [BIOTORCH_ERROR[r] for r in rules])[0]
            parts.append(f"{NET_LABELS.get(net, net)} {rho:+.2f}")
    return "rank correlation with BioTorch's errors: " + (", ".join(parts) if parts else "undefined (ties)")


# BioTorch's table at its own setting ------------------------------------------------------------------------


def biotorch_out_dir() -> Path:
    """Where the reproduction's cells live (the notebook reads them; :func:`main` trains them)."""
    return runs_dir() / NOTEBOOK / "biotorch"


def biotorch_selection_spec() -> dict:
    """Each BioTorch rule × :data:`BIOTORCH_LRS` on seed 0, :data:`BIOTORCH_SELECT_EPOCHS` epochs (lr ÷10 at
    the same fractions) on 90 % of the training images, judged on the other 10 %."""
    epochs = BIOTORCH_SELECT_EPOCHS
    base = {**BIOTORCH, "epochs": epochs, "schedule": milestones(MILESTONES, epochs),
            "val_fraction": VAL_FRACTION, "metrics_every": 0}  # fmt: skip
    cells = select.grid_cells([{**base, "rule": r} for r in BIOTORCH_RULES], {"sgd": BIOTORCH_LRS}, [0])
    return {"name": f"{NOTEBOOK}: BioTorch lr selection", "base": {}, "grid": {}, "conditions": cells}


def biotorch_final_spec(chosen: pd.DataFrame, seeds: int = BIOTORCH_SEEDS) -> dict:
    """Each rule at its chosen lr, BioTorch's full setting (all training images, test measured every epoch),
    seeds ``0 .. seeds-1``."""
    check_positive(seeds=seeds)
    lrs = dict(zip(chosen.rule, chosen.lr, strict=True))
    cells = [{**BIOTORCH, "rule": r, "lr": lrs[r], "seed": s, "metrics_every": BIOTORCH_METRICS_EVERY}
             for r in BIOTORCH_RULES for s in range(seeds)]  # fmt: skip
    return {"name": f"{NOTEBOOK}: BioTorch setting", "base": {}, "grid": {}, "conditions": cells}


@dataclass
class Reproduction:
    """What the runs folder holds of the reproduction: ``final`` (finished cells, ``test_pct``, ``error_pct``
    and ``best_error_pct`` added), ``chosen`` (None until the selection is complete), and the counts."""

    final: pd.DataFrame
    chosen: pd.DataFrame | None
    done: int
    total: int
    earlier: dict | None = None
    """The provenance of the recording the cells come from when it is of other numerics than this code's
    (:func:`biotorch_results`): its numerics, commit and date; None when the cells are this code's."""

    @property
    def made(self) -> bool:
        """Every rule has at least :data:`BIOTORCH_MIN_SEEDS` finished seeds."""
        if self.final.empty:
            return False
        seeds = self.final.groupby("rule").size().reindex(list(BIOTORCH_RULES), fill_value=0)
        return int(seeds.min()) >= BIOTORCH_MIN_SEEDS


def _read(spec: dict, out: Path) -> pd.DataFrame | None:
    """The summary of ``spec``'s cells in ``out`` (recorded results materialised first) when every one is
    there (through :func:`run_sweep`, which then trains nothing and notes them for the recording), else the
    finished ones; None when none is."""
    configs = expand(spec)
    record.materialise([c for c in configs if not result_path(c, out).exists()], out)
    if all(result_path(c, out).exists() for c in configs):
        return run_sweep(spec, out, progress=False)
    found = [load_result(result_path(c, out), c) for c in configs if result_path(c, out).exists()]
    return summary_frame(found) if found else None


def biotorch_results(out: Path | None = None, seeds: int = BIOTORCH_SEEDS) -> Reproduction:
    """The reproduction's cells in ``out`` (default :func:`biotorch_out_dir`) and its recording, read, never
    trained, and never noted for the chapter's own recording (:func:`record_biotorch` records them).

    When this code has made none of it yet but a recording of other numerics is there (the code that decides
    the numbers changed since it was run, and 97 minutes on 2 cores have not yet been spent on it again),
    the reproduction is that recording's, with its provenance in :attr:`Reproduction.earlier`."""
    with unwatched():
        rep = _biotorch_results(biotorch_out_dir() if out is None else Path(out), seeds)
    if rep.done == 0 and rep.chosen is None:
        return _earlier_recording(seeds) or rep
    return rep


def _reproduction(read: Callable[[dict], pd.DataFrame | None], seeds: int) -> Reproduction:
    """The reproduction from ``read``, which gives the summary of a spec's finished cells (None: none)."""
    n_final = len(BIOTORCH_RULES) * seeds
    selection_spec_ = biotorch_selection_spec()
    selection = read(selection_spec_)
    empty = pd.DataFrame(columns=["rule", "seed", "test_pct", "error_pct", "best_error_pct"])
    if selection is None or len(selection) < len(expand(selection_spec_)):
        return Reproduction(empty, None, 0, n_final)
    chosen = select.choose(selection, ["rule"])
    final = read(biotorch_final_spec(chosen, seeds))
    if final is None:
        return Reproduction(empty, chosen, 0, n_final)
    final["test_pct"] = 100 * final.test_acc.astype(float)
    final["error_pct"] = 100 - final.test_pct
    final["best_error_pct"] = 100 - 100 * final.best_test_acc.astype(float)
    return Reproduction(final, chosen, len(final), n_final)


def _biotorch_results(out: Path, seeds: int) -> Reproduction:
    out.mkdir(parents=True, exist_ok=True)
    return _reproduction(lambda spec: _read(spec, out), seeds)


def _earlier_recording(seeds: int) -> Reproduction | None:
    """The reproduction as recorded by other numerics code (cells matched by their settings under the
    recording's numerics), or None when there is no such recording."""
    path = record.recorded_path(NOTEBOOK, "paper")
    if not path.is_file():
        return None
    recording = record.read(path)
    numerics = recording.provenance["numerics"]
    if numerics == fabook.results.numerics_version():
        return None

    def read(spec: dict) -> pd.DataFrame | None:
        cells = [recording.cells.get(c.key(numerics)) for c in expand(spec)]
        return summary_frame([c for c in cells if c is not None]) if any(cells) else None

    rep = _reproduction(read, seeds)
    prov = recording.provenance
    rep.earlier = {"numerics": numerics, "commit": prov.get("commit"), "recorded": prov.get("recorded")}
    return rep if rep.done else None


def bio_scale(rep: Reproduction) -> str:
    """The reproduction's scale as its tables say it, with the numerics of earlier code that made it."""
    earlier = f"; recorded by earlier code, numerics {rep.earlier['numerics']}" if rep.earlier else ""
    return f"paper (BioTorch's setting{earlier})"


def biotorch_table(rep: Reproduction) -> pd.DataFrame:
    """Per rule: BioTorch's error, ours at the last epoch and at the best epoch on the test set (their way),
    mean ± sd over seeds, their error minus our best-epoch mean, and whether that lies within
    ``MARGINS['spread']`` sd of our seeds. Empty until the run is made (:attr:`Reproduction.made`)."""
    if not rep.made:
        return pd.DataFrame()
    lrs = dict(zip(rep.chosen.rule, rep.chosen.lr, strict=True))
    rows = []
    for rule in BIOTORCH_RULES:
        part = rep.final[rep.final.rule == rule]
        best = part.best_error_pct.astype(float)
        diff = BIOTORCH_ERROR[rule] - best.mean()
        sd = best.std(ddof=1)
        within = "–" if len(best) < 2 else "yes" if abs(diff) <= MARGINS["spread"] * sd else "no"
        rows.append({"rule": rule, "scale": bio_scale(rep), "lr": f"{lrs[rule]:g}",
                     "seeds": len(part), "BioTorch error (%)": BIOTORCH_ERROR[rule],
                     "ours, last epoch (%)": _mean_sd(part.error_pct.astype(float)),
                     "ours, best test epoch (%)": _mean_sd(best),
                     "BioTorch − ours (pts)": round(diff, 2),
                     f"within {MARGINS['spread']:g} sd of our seeds": within})  # fmt: skip
    return pd.DataFrame(rows)


def biotorch_claims(rep: Reproduction) -> pd.DataFrame:
    """The three :func:`claims` on the reproduction's LeNet (last-epoch test accuracy), and a fourth: every
    rule's published error within ``MARGINS['spread']`` sd of our best-test-epoch mean. All inconclusive,
    saying so, until the run is made."""
    claim4 = (f"BioTorch's six errors reproduced: each within {MARGINS['spread']:g} sd of our seeds' mean "
              "(best test epoch, their protocol)")  # fmt: skip
    test4 = "per rule |BioTorch − ours| ≤ 2 sd (≥ 2 seeds); holds if all six, does not hold if any is outside"
    scale = bio_scale(rep)
    if not rep.made:
        why = f"not run yet: {rep.done} of {rep.total} cells of the BioTorch-setting run in the runs folder"
        names = [*CLAIMS, claim4]
        return cl.table([cl.Claim(n, "see the claims above" if i < 3 else test4, why, cl.INCONCLUSIVE)
                         for i, n in enumerate(names)], scale)  # fmt: skip
    labels = {"bp": "BP", "fa": "FA", "dfa": "DFA", "usf": "uSF", "brsf": "brSF", "frsf": "frSF"}
    frame = rep.final.assign(net="lenet", variant=rep.final.rule.map(labels))
    table = claims(frame, scale)
    within = biotorch_table(rep)[f"within {MARGINS['spread']:g} sd of our seeds"]
    verdict = cl.INCONCLUSIVE if (within == "–").any() else cl.HOLDS if (within == "yes").all() else cl.FAILS
    measured = f"{(within == 'yes').sum()} of {len(within)} rules within" + (
        "; fewer than 2 seeds somewhere" if (within == "–").any() else ""
    )
    return pd.concat(
        [table, cl.table([cl.Claim(claim4, test4, measured, verdict)], scale)], ignore_index=True
    )


def record_biotorch(
    out: Path | None = None, where: Path | None = None, seeds: int = BIOTORCH_SEEDS
) -> Path | None:
    """Record the reproduction's finished cells in ``out`` (default :func:`biotorch_out_dir`), the final
    ones with their histories, as ``<where>/every_rule/paper.json.gz`` (default: the clone's ``recorded/``);
    later runs and the chapter take them from there. None when no cell is finished."""
    out = biotorch_out_dir() if out is None else Path(out)
    rep = biotorch_results(out, seeds)
    final = set(rep.final.get("key", []))
    wanted = {c.key() for c in expand(biotorch_selection_spec())} | final
    cells = [r for r in read_results(out) if r.key in wanted]
    if not cells:
        return None
    return record.write(record.recorded_path(NOTEBOOK, "paper", where), NOTEBOOK, "paper", cells, final)


def main(argv: Sequence[str] | None = None) -> None:
    """Train the reproduction at BioTorch's setting, resumably: the lr selection, then every seed; with
    ``--record``, train nothing and record the finished cells (:func:`record_biotorch`)."""
    parser = argparse.ArgumentParser(
        prog="python -m fabook.experiments.every_rule",
        description="BioTorch's Fashion-MNIST LeNet table at its own setting (Ctrl-C stops; rerun resumes).",
    )
    parser.add_argument("--seeds", type=int, default=BIOTORCH_SEEDS, help="seeds per rule (default 3)")
    parser.add_argument("--jobs", type=int, default=2, help="cells trained in parallel (default 2)")
    parser.add_argument(
        "--record", action="store_true", help="train nothing: record the finished cells into recorded/"
    )
    args = parser.parse_args(argv)
    try:
        check_positive(seeds=args.seeds, jobs=args.jobs)
    except ValueError as e:
        parser.error(str(e))
    if args.record:
        path = record_biotorch(seeds=args.seeds)
        print(f"recorded into {path}" if path else f"nothing finished in {biotorch_out_dir()} to record")
        return
    require_data([BIOTORCH["dataset"]], "paper", False)
    out = biotorch_out_dir()
    selection = run_sweep(biotorch_selection_spec(), out, jobs=args.jobs)
    chosen = select.choose(selection, ["rule"])
    run_sweep(biotorch_final_spec(chosen, args.seeds), out, jobs=args.jobs)
    print(biotorch_table(biotorch_results(out, args.seeds)).to_string(index=False))


if __name__ == "__main__":
    main()
