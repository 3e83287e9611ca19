"""Liao, Leibo & Poggio (2016), "How important is weight symmetry in backpropagation?", on many data sets.

The study: BP (plain SGD) against asymmetric feedback — FA (random B) and the sign-symmetric uSF, brSF,
frSF — each with and without batch normalization (BN) and Batch Manhattan (BM), plus a sweep of the fraction
of feedback signs that agree with W. Four claims are checked (:func:`claims`), each with its test and
threshold fixed here (:data:`EQUIVALENCE_MARGIN`, :data:`MOST`, :data:`SGD_MARGIN`, :data:`GAP_THRESHOLD`);
every verdict comes from an interval, and one that straddles its threshold reads "inconclusive".

Protocol (:func:`run`): every condition trains with early stopping on a validation split carved from its
training set, for up to a step budget; its learning rate is chosen per (data set, rule, recipe) from one grid
per optimizer (the same for every rule, BP included) on the validation split of the selection seed(s), and
the condition then trains on every seed with that lr; each cell measures the test set once, on its restored
best-validation weights (:mod:`fabook.select`). Two additions serve the claims: frSF and BP get more seeds
on the data sets with at most :data:`SMALL_TEST` test samples (:func:`extra_spec`), and the plain recipe
trains again at the lr chosen for its BN recipe (:func:`plain_at_bn_spec`). The earlier fixed-lr protocol
(:data:`OPTIMIZER`, a shorter budget, no validation split) runs beside it as the "before". :func:`plan`
counts the cells; :func:`regime_table` shows the quantities that decide the claims at each scale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter, ScalarFormatter
from scipy import stats

from fabook import claims as cl
from fabook import data, regime, select
from fabook.book import check_scale
from fabook.cli import runs_dir
from fabook.notebook import check_positive, require_data
from fabook.sweep import expand, history_frame, read_results, run_sweep
from fabook.train import Config, format_options, validate

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
    "smoke": dict(datasets=("fashion-mnist-small", "iris", "gunpoint", "japanese-vowels"), seeds=1,
                  small_seeds=2, levels=(0.0, 0.5), model="mlp", width=32, steps=80, min_epochs=2,
                  max_epochs=30, max_train=300, max_test=300),
    "cpu": dict(datasets=OFFLINE, seeds=3, small_seeds=10, levels=(0.0, 0.25, 0.5, 0.75), model="mlp",
                width=128, steps=1000, min_epochs=5, max_epochs=1000, max_train=6000, max_test=2000),
    "paper": dict(datasets=PAPER_SETS, seeds=3, small_seeds=10, levels=(0.0, 0.25, 0.5, 0.75), model="cnn",
                  width=64, steps=100000, min_epochs=30, max_epochs=200, max_train=None, max_test=None),
}  # fmt: skip
"""Per scale. ``steps`` is the budget of SGD steps per cell (early stopping may end it sooner); a data set's
epochs follow from its training split's size, clipped to [min_epochs, max_epochs]. ``small_seeds``: the seeds
of frSF and BP on the data sets with at most :data:`SMALL_TEST` test samples (claims 1 and 3; those cells
cost seconds). The sign-concordance sweep's level p = 1 is frSF itself."""

DEPTH = 2
"""Hidden layers of the MLP (conv blocks of the CNN). A deeper MLP (4 hidden layers, where the paper's
many feedback crossings begin) on three sets is not run: the sign rules and BP in four recipes there would add
about a tenth to the ``cpu`` cells (:func:`plan`), past its budget of 20 minutes on 2 cores."""

SMALL_TEST = 250
"""A data set with at most this many test samples (one sample ≥ 0.4 points) gets ``small_seeds`` seeds for
frSF and BP."""

LR_GRIDS = {
    "smoke": {"sgd": (0.01, 0.05), "bm": (5e-4, 2e-3)},
    "cpu": {"sgd": (0.001, 0.003, 0.01, 0.03, 0.1), "bm": (1.5625e-5, 6.25e-5, 2.5e-4, 1e-3, 4e-3)},
    "paper": {"sgd": (0.001, 0.003, 0.01, 0.03, 0.1), "bm": (1.5625e-5, 6.25e-5, 2.5e-4, 1e-3, 4e-3)},
}
"""The lr grids per scale, one per optimizer and the same for every rule (BP included); each holds, or
brackets, the fixed lr of the "before" protocol (:data:`OPTIMIZER`). Widened once, by the rule of
:func:`lr_counts`, after the first full ``cpu`` run (2026-12-01) with three points each, (0.003, 0.01, 0.03)
and (2.5e-4, 1e-3, 4e-3): there BM's lowest lr won 128 of 224 choices and SGD's lowest and highest 68 and
56, so BM got two points below and SGD one at each end. The claims' tests did not change."""

VAL_FRACTION = 0.2
"""Share of each training set held out (stratified) for early stopping and lr selection."""
SELECT_SEEDS = 1
"""The lr is chosen on the validation split of seeds ``0 .. SELECT_SEEDS-1``; those cells are reused."""

BEFORE = {
    "smoke": dict(seeds=1, steps=40, min_epochs=1, max_epochs=3),
    "cpu": dict(seeds=1, steps=300, min_epochs=3, max_epochs=60),
    "paper": dict(seeds=1, steps=40000, min_epochs=20, max_epochs=100),
}
"""The earlier protocol, kept as the "before": fixed lrs (:data:`OPTIMIZER`), this budget (about 300 SGD
steps at the cpu scale), no validation split, the last epoch's test accuracy; the same data sets, one seed
(two until the claims' tests were rewritten, whose extra cells this pays for)."""

OPTIMIZER = {
    False: dict(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=1e-4),
    True: dict(optimizer="bm", lr=5e-4, momentum=0.9, weight_decay=1e-4),
}
"""Without / with Batch Manhattan, in the "before" protocol. The new one keeps momentum and weight decay and
chooses the lr from :data:`LR_GRIDS`."""

TRACKED = {"smoke": "fashion-mnist-small", "cpu": "fashion-mnist", "paper": "cifar10"}
"""The data set whose alignment angles are measured during training (metrics cost time; the others skip
them); when a run's ``datasets`` leave it out, the first of them is tracked instead."""

CURVE_SETS = {"smoke": ("fashion-mnist-small", "japanese-vowels"),
              "cpu": ("fashion-mnist", "digits", "japanese-vowels"),
              "paper": ("mnist", "cifar10", "svhn")}  # fmt: skip
"""Where the figure of accuracy over training steps (SGD vs BM) is drawn; the run's first sets stand in for
those it leaves out."""

SELECT_BY = ["dataset", "rule", "options", "batch_norm", "optimizer"]
"""A learning rate is chosen per (data set, rule with its options, recipe)."""

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
            names = self.datasets
            if isinstance(names, str) or not isinstance(names, (list, tuple)) or not names:
                raise TypeError(
                    f"datasets must be a non-empty list of names (e.g. [{names!r}]) or None; got {names!r}"
                )
            bad = [n for n in names if not isinstance(n, str)]
            if bad:
                raise TypeError(f"datasets must hold names (str); got {bad}")
            object.__setattr__(self, "datasets", tuple(dict.fromkeys(names)))
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

    @property
    def tracked(self) -> str:
        """The data set whose alignment is measured: :data:`TRACKED`'s, or the run's first without it."""
        names = self.settings["datasets"]
        return TRACKED[self.scale] if TRACKED[self.scale] in names else names[0]

    @property
    def curve_sets(self) -> tuple[str, ...]:
        """The data sets of the training-curve figure (:data:`CURVE_SETS` present, else the first ones)."""
        names = self.settings["datasets"]
        chosen = [n for n in CURVE_SETS[self.scale] if n in names]
        rest = [n for n in names if n not in chosen]
        return tuple(chosen + rest)[: len(CURVE_SETS[self.scale])]


def epochs_for(n_train: int, s: dict) -> int:
    """Epochs that give about ``s['steps']`` steps of batch :data:`BATCH` on ``n_train`` samples."""
    return int(min(max(math.ceil(s["steps"] * BATCH / n_train), s["min_epochs"]), s["max_epochs"]))


def n_fit(name: str, s: dict) -> int:
    """Training samples of ``name`` left after the cap and the validation split."""
    n_train = min(data.get_info(name).n_train, s["max_train"] or data.get_info(name).n_train)
    return n_train - math.ceil(VAL_FRACTION * n_train)


def steps_per_epoch(name: str, s: dict) -> int:
    """SGD steps in one epoch of ``name``'s training split (batch :data:`BATCH`)."""
    return math.ceil(n_fit(name, s) / BATCH)


def patience_for(epochs: int) -> int:
    """Early stopping's patience: a fifth of the epoch budget, at least 5 epochs."""
    return max(5, epochs // 5)


def check_data(params: Params) -> None:
    """FileNotFoundError naming every missing data set and how to get it (after downloading, if asked)."""
    require_data(list(params.settings["datasets"]), params.scale, params.download)


def conditions(params: Params, *, before: bool = False) -> list[dict]:
    """One dict of config fields per (data set, rule, recipe) and per sweep level: the study's cells
    without the seed and (new protocol) without the lr; ``before``: the fixed-lr protocol's, lr included.
    Raises FileNotFoundError when a data set is missing (:func:`check_data`)."""
    check_data(params)
    return _conditions(params, before=before)


def _conditions(params: Params, *, before: bool = False) -> list[dict]:
    s = params.settings
    budget = {**s, **BEFORE[params.scale]} if before else s
    out = []
    for name in s["datasets"]:
        info = data.get_info(name)
        n_train = min(info.n_train, s["max_train"] or info.n_train)
        epochs = epochs_for(n_train if before else n_fit(name, s), budget)
        metrics = name == params.tracked and not before
        base = dict(
            dataset=name, model=s["model"], width=s["width"], depth=DEPTH, batch_size=BATCH, epochs=epochs,
            max_train=s["max_train"], max_test=s["max_test"],
            metrics_every=max(1, epochs // 15) if metrics else 0,
        )  # fmt: skip
        if not before:
            base |= dict(val_fraction=VAL_FRACTION, patience=patience_for(epochs))
        for (bn, bm), _ in RECIPES.items():
            for rule in RULES:
                opts = {"rule_options": dict(PAPER_SCALE)} if rule in SIGN_RULES else {}
                out.append({**base, **_optimizer(bm, before), "rule": rule, **opts, "batch_norm": bn})
        for p in s["levels"]:
            options = {"p": p, **PAPER_SCALE}
            out.append({**base, **_optimizer(True, before), "rule": "sc", "rule_options": options,
                        "batch_norm": True})  # fmt: skip
    return out


def _optimizer(bm: bool, before: bool) -> dict:
    fields = dict(OPTIMIZER[bm])
    if not before:
        del fields["lr"]
    return fields


def _recipe(cell: dict) -> str:
    return RECIPES[(cell["batch_norm"], cell["optimizer"] == "bm")]


def _is_main(cell: dict) -> bool:
    """frSF in the ``MAIN`` recipe or BP in plain SGD with BN: the pair of claim 3."""
    return (cell["rule"], _recipe(cell)) in (("frsf", MAIN), ("bp", "BN"))


def small_sets(params: Params) -> tuple[str, ...]:
    """The run's data sets with at most :data:`SMALL_TEST` test samples (after ``max_test``)."""
    s = params.settings
    return tuple(
        n for n in s["datasets"] if min(data.get_info(n).n_test, s["max_test"] or math.inf) <= SMALL_TEST
    )


def _extra_conditions(params: Params) -> list[dict]:
    """frSF (``MAIN``) and BP (BN) on the small data sets: the conditions that get ``small_seeds``."""
    small = set(small_sets(params))
    return [c for c in _conditions(params) if c["dataset"] in small and _is_main(c)]


def _plain_conditions(params: Params) -> list[dict]:
    """The plain recipe of BP and the sign rules: trained again at their BN recipe's lr."""
    return [c for c in _conditions(params) if c["rule"] in ("bp", *SIGN_RULES) and _recipe(c) == "plain"]


def _sweep(name: str, cells: list[dict]) -> dict:
    return {"name": name, "base": {}, "grid": {}, "conditions": cells}


def _select_key(cell: dict, *, batch_norm: bool | None = None) -> tuple:
    """The :data:`SELECT_BY` key of a condition (with ``batch_norm`` replaced, if given)."""
    bn = cell["batch_norm"] if batch_norm is None else batch_norm
    return cell["dataset"], cell["rule"], format_options(cell.get("rule_options", {})), bn, cell["optimizer"]


def _chosen_lrs(chosen: pd.DataFrame) -> dict[tuple, float]:
    return {tuple(row[c] for c in SELECT_BY): row["lr"] for _, row in chosen.iterrows()}


def selection_spec(params: Params) -> dict:
    """The lr selection: every condition × its optimizer's lr grid × the selection seeds."""
    seeds = range(min(SELECT_SEEDS, params.settings["seeds"]))
    return _sweep(
        f"{NOTEBOOK}: lr selection", select.grid_cells(conditions(params), LR_GRIDS[params.scale], seeds)
    )


def final_spec(params: Params, chosen: pd.DataFrame) -> dict:
    """Every condition with its chosen lr, on every seed (the selection seeds' cells are reused)."""
    lrs = _chosen_lrs(chosen)
    cells = [
        {**c, "lr": lrs[_select_key(c)], "seed": seed}
        for c in conditions(params)
        for seed in range(params.settings["seeds"])
    ]
    return _sweep(f"{NOTEBOOK}: chosen lrs", cells)


def extra_spec(params: Params, chosen: pd.DataFrame) -> dict:
    """frSF (``MAIN``) and BP (BN) at their chosen lr on the small data sets' further seeds, up to
    ``small_seeds`` in all (claims 1 and 3)."""
    lrs, s = _chosen_lrs(chosen), params.settings
    seeds = range(s["seeds"], s["small_seeds"])
    cells = [
        {**c, "lr": lrs[_select_key(c)], "seed": seed} for c in _extra_conditions(params) for seed in seeds
    ]
    return _sweep(f"{NOTEBOOK}: more seeds on small sets", cells)


def plain_at_bn_spec(params: Params, chosen: pd.DataFrame) -> dict:
    """The plain recipe of BP and the sign rules at the lr chosen for the same rule with BN, every seed
    (claim 4's second protocol; a cell whose lr the plain recipe chose itself, or the selection trained,
    is loaded, not trained)."""
    lrs = _chosen_lrs(chosen)
    cells = [
        {**c, "lr": lrs[_select_key(c, batch_norm=True)], "seed": seed}
        for c in _plain_conditions(params)
        for seed in range(params.settings["seeds"])
    ]
    return _sweep(f"{NOTEBOOK}: plain recipe at its BN lr", cells)


def before_spec(params: Params) -> dict:
    """The fixed-lr protocol on the same data sets and conditions, on its own (fewer) seeds."""
    seeds = range(min(BEFORE[params.scale]["seeds"], params.settings["seeds"]))
    return _sweep(
        f"{NOTEBOOK}: before", [{**c, "seed": s} for c in conditions(params, before=True) for s in seeds]
    )


def _steps(cell: dict) -> int:
    """The SGD-step budget of a cell (any lr: it does not change the count)."""
    return regime.steps(Config(**{"lr": OPTIMIZER[False]["lr"], **cell}))


def plan(params: Params) -> pd.DataFrame:
    """Per sweep, the cells it trains at most and their SGD steps in all (the budget; early stopping ends
    most cells sooner). Counted without the data files, from the same conditions the sweeps train; the
    selection's cells of seed 0 are counted once (the chosen lr's are reused), and so are protocol B's."""
    s = params.settings
    n_select = min(SELECT_SEEDS, s["seeds"])
    grids = LR_GRIDS[params.scale]
    parts = {
        "lr selection": [(c, len(grids[c["optimizer"]]) * n_select) for c in _conditions(params)],
        "chosen lrs, further seeds": [(c, s["seeds"] - n_select) for c in _conditions(params)],
        "more seeds on small sets": [
            (c, max(0, s["small_seeds"] - s["seeds"])) for c in _extra_conditions(params)
        ],
        "plain at its BN lr (at most)": [(c, s["seeds"] - n_select) for c in _plain_conditions(params)],
        "before": [
            (c, min(BEFORE[params.scale]["seeds"], s["seeds"])) for c in _conditions(params, before=True)
        ],
    }
    rows = [
        {
            "sweep": name,
            "cells": sum(k for _, k in cells),
            "SGD steps (budget)": sum(k * _steps(c) for c, k in cells),
        }
        for name, cells in parts.items()
    ]
    return pd.DataFrame(rows)


def _grid_text(lrs: tuple[float, ...]) -> str:
    return f"{len(lrs)} points, {min(lrs):g}–{max(lrs):g}"


def regime_rows(params: Params | None = None, scales: tuple[str, ...] = regime.SCALES) -> dict[str, dict]:
    """The quantities that decide the claims, per scale, from each scale's own conditions (``params``'s for
    its scale, e.g. other data sets or seeds; the defaults for the others)."""
    rows: dict[str, dict[str, object]] = {}
    for scale in scales:
        here = params if params is not None and params.scale == scale else Params(scale=scale)
        s = here.settings
        cells = _conditions(here)
        before = _conditions(here, before=True)
        values = {
            "model (depth: hidden layers or conv blocks)": f"{s['model']}, depth {DEPTH}, width {s['width']}",
            "data sets": len(s["datasets"]),
            f"data sets with ≤ {SMALL_TEST} test samples": len(small_sets(here)),
            "training samples, largest set": max(regime.train_size(Config(lr=0.01, **c)) for c in cells),
            "SGD steps per cell, median over sets (budget)": int(np.median([_steps(c) for c in cells])),
            "lr grid, SGD": _grid_text(LR_GRIDS[scale]["sgd"]),
            "lr grid, Batch Manhattan": _grid_text(LR_GRIDS[scale]["bm"]),
            "seeds per condition": s["seeds"],
            f"seeds of frSF and BP, sets with ≤ {SMALL_TEST} test samples": (
                max(s["seeds"], s["small_seeds"]) if small_sets(here) else None
            ),
            "concordance levels p (and frSF, p = 1)": len(s["levels"]),
            "before: seeds": min(BEFORE[scale]["seeds"], s["seeds"]),
            "before: SGD steps per cell, median over sets": int(np.median([_steps(c) for c in before])),
            "cells trained (at most)": int(plan(here).cells.sum()),
        }
        for name, value in values.items():
            rows.setdefault(name, {})[scale] = value
    return rows


def regime_table(params: Params | None = None, scales: tuple[str, ...] = regime.SCALES) -> pd.DataFrame:
    """:func:`regime_rows` as a table: one row per quantity, one column per scale and ``cpu / paper``."""
    return regime.table(regime_rows(params, scales), scales=scales)


@dataclass
class Study:
    """What :func:`run` returns: ``summary`` (the chosen-lr cells, every seed), ``selection`` (every cell of
    the lr grid), ``chosen`` (:func:`fabook.select.choose`), ``extra`` (frSF and BP on the small sets' further
    seeds), ``plain_at_bn`` (the plain recipe at its BN recipe's lr), ``before`` (the fixed-lr protocol's
    cells), ``history`` (epochs of the tracked and curve data sets' cells, with ``step``)."""

    summary: pd.DataFrame
    selection: pd.DataFrame
    chosen: pd.DataFrame
    extra: pd.DataFrame
    plain_at_bn: pd.DataFrame
    before: pd.DataFrame
    history: pd.DataFrame


def run(params: Params) -> Study:
    """Run (or resume) the study: lr selection, the chosen lrs on every seed, the small sets' further seeds,
    the plain recipe at its BN lr, the "before" protocol. The selection's and the "before" cells are checked
    before the first trains."""
    jobs = params.settings["jobs"]
    sel_spec, old_spec = selection_spec(params), before_spec(params)
    for cfg in expand(old_spec):  # the selection's cells are checked by run_sweep before any trains
        validate(cfg, build=False)
    selection = _annotate(run_sweep(sel_spec, params.out_dir, jobs=jobs))
    chosen = select.choose(selection, SELECT_BY)
    summary = _annotate(run_sweep(final_spec(params, chosen), params.out_dir, jobs=jobs))
    plain_at_bn = _annotate(run_sweep(plain_at_bn_spec(params, chosen), params.out_dir, jobs=jobs))
    more = extra_spec(params, chosen)  # empty without small sets or when the seeds already reach small_seeds
    extra = _annotate(run_sweep(more, params.out_dir, jobs=jobs)) if more["conditions"] else summary.iloc[:0]
    before = _annotate(run_sweep(old_spec, params.out_dir / "before", jobs=jobs))
    wanted = summary.dataset.eq(params.tracked) | (
        summary.dataset.isin(params.curve_sets) & summary.rule.isin(["bp", "frsf"])
    )
    keys = set(summary.key[wanted])
    history = history_frame([r for r in read_results(params.out_dir) if r.key in keys])
    s = params.settings
    history["step"] = history.epoch * history.dataset.map({d: steps_per_epoch(d, s) for d in s["datasets"]})
    if "optimizer" in history:
        history["recipe"] = [
            RECIPES[(bn, opt == "bm")] for bn, opt in zip(history.batch_norm, history.optimizer, strict=True)
        ]
    return Study(summary, selection, chosen, extra, plain_at_bn, before, history)


def _annotate(summary: pd.DataFrame) -> pd.DataFrame:
    """Add ``recipe``, ``concordance`` and ``test_pct`` columns to a sweep summary."""
    summary["recipe"] = [
        RECIPES[(bn, opt == "bm")] for bn, opt in zip(summary.batch_norm, summary.optimizer, strict=True)
    ]
    summary["concordance"] = [
        o.get("p", 1.0) if r in ("sc", "frsf") else np.nan
        for r, o in zip(summary.rule, summary.rule_options, strict=True)
    ]
    summary["test_pct"] = 100 * summary.test_acc.astype(float)
    return summary


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
    ``"mean ± sd"`` text (the mean alone where a single seed gives no sd)."""
    main = summary[summary.rule.isin(RULES)]
    pivot = dict(index="dataset", columns=["rule", "recipe"], values="test_pct")
    table = main.pivot_table(**pivot, aggfunc="mean")
    if sd:
        spread = main.pivot_table(**pivot, aggfunc="std").reindex_like(table)
        sd_text = spread.map(lambda s: "" if pd.isna(s) else f" ± {s:.1f}")
        table = (table.map(lambda m: f"{m:.1f}") + sd_text).where(table.notna(), "")
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


EQUIVALENCE_MARGIN = 2.0
"""Claim 1: two sign rules are equivalent on a data set when their difference of mean accuracies ± 2 SE
lies within ± this many points (:func:`fabook.claims.equivalent`)."""
MOST = 0.5
"""Claim 1 holds when the 95 % Wilson interval of the share of decided data sets that are equivalent lies
above this ("most data sets"), and does not hold when it lies below. A higher bar cannot be shown with 16
sets: even 15 equivalent sets out of 15 leave the interval's lower end at 80 %."""
SGD_MARGIN = -1.0
"""Claim 3: frSF (``MAIN``) minus BP (plain SGD with BN), in points, pooled over data sets, at least this."""
GAP_THRESHOLD = 0.25
"""Claim 4: the pooled normalised gap (best of BN/BM/BN+BM − plain) / (best − chance) of the sign rules at
least this: without BN and BM a rule loses at least a quarter of what it learns above chance."""
MIN_HEADROOM = 5.0
"""Claim 4: a (data set, rule) whose best recipe is less than this many points above chance has no headroom
to normalise by and is left out (and counted)."""
BOOTSTRAP = dict(resamples=4000, level=0.95, seed=0)
"""The pooled intervals of claims 3 and 4 (:func:`fabook.claims.bootstrap_pooled`): data sets resampled, and
within each its seeds."""
CLAIM4_PROTOCOLS = {
    "own": "each recipe at its own chosen lr",
    "bn_lr": "the plain recipe at the lr chosen for its BN recipe",
}


def _seeds(frame: pd.DataFrame, dataset: str, rule: str, recipe: str) -> np.ndarray:
    part = frame[(frame.dataset == dataset) & (frame.rule == rule) & (frame.recipe == recipe)]
    return part.test_pct.to_numpy(dtype=float)


def equivalence_by_set(main: pd.DataFrame) -> pd.DataFrame:
    """Claim 1 per data set: each pair of sign rules' difference (``MAIN`` recipe, ± 2 SE) and the set's
    status — ``holds`` when every pair is within ± :data:`EQUIVALENCE_MARGIN`, ``does not hold`` when any
    pair is wholly outside it, else ``inconclusive`` (undecided)."""
    rows = []
    for name in sorted(set(main.dataset)):
        row: dict[str, object] = {"dataset": name}
        verdicts = []
        for a, b in ((a, b) for i, a in enumerate(SIGN_RULES) for b in SIGN_RULES[i + 1 :]):
            measured, verdict = cl.equivalent(
                _seeds(main, name, a, MAIN), _seeds(main, name, b, MAIN), EQUIVALENCE_MARGIN
            )
            row[f"{a} − {b} (pts)"] = measured
            verdicts.append(verdict)
        row["equivalent"] = (
            cl.FAILS if cl.FAILS in verdicts else cl.HOLDS if set(verdicts) == {cl.HOLDS} else cl.INCONCLUSIVE
        )
        rows.append(row)
    return pd.DataFrame(rows)


def headroom_gaps(summary: pd.DataFrame, plain: pd.DataFrame) -> pd.DataFrame:
    """Per data set and rule of ``plain``'s plain-recipe cells: the best stabilised recipe (BN, BM or BN+BM,
    by mean test accuracy in ``summary``), its mean, the plain recipe's mean in ``plain``, chance
    (100 / classes) and the gap in points and normalised by the headroom, (best − plain) / (best − chance)."""
    stabilised = summary[summary.rule.isin(RULES) & (summary.recipe != "plain")]
    means = stabilised.groupby(["dataset", "rule", "recipe"]).test_pct.mean()
    plain_means = plain[plain.recipe == "plain"].groupby(["dataset", "rule"]).test_pct.mean()
    rows = []
    for (name, rule), plain_mean in plain_means.items():
        if (name, rule) not in means.index.droplevel("recipe"):
            continue
        recipe = means.loc[(name, rule)].idxmax()
        best = means.loc[(name, rule, recipe)]
        chance = 100 / data.get_info(name).num_classes
        headroom = best - chance
        rows.append(dict(dataset=name, rule=rule, best_recipe=recipe, best=best, plain=plain_mean,
                         chance=chance, gap=best - plain_mean, headroom=headroom,
                         normalised=(best - plain_mean) / headroom if headroom > 0 else np.nan))  # fmt: skip
    columns = ["dataset", "rule", "best_recipe", "best", "plain", "chance", "gap", "headroom", "normalised"]
    return pd.DataFrame(rows, columns=columns)


def _pooled_gap(summary: pd.DataFrame, plain: pd.DataFrame) -> tuple[tuple[float, float, float], int, int]:
    """Claim 4's pooled normalised gap of the sign rules with its interval, the (data set, rule) pairs used
    and those left out for too little headroom."""
    gaps = headroom_gaps(summary, plain)
    gaps = gaps[gaps.rule.isin(SIGN_RULES)]
    used = gaps[gaps.headroom >= MIN_HEADROOM]
    units, headrooms = [], []
    for name, part in used.groupby("dataset"):
        arms = []
        for row in part.itertuples():
            arms += [_seeds(summary, name, row.rule, row.best_recipe), _seeds(plain, name, row.rule, "plain")]
        units.append(arms)
        headrooms.append(part.headroom.to_numpy())
    if not units:
        return (np.nan, np.nan, np.nan), 0, len(gaps)

    def statistic(i: int, m: list[np.ndarray]) -> np.ndarray:
        return np.mean([(m[2 * k] - m[2 * k + 1]) / h for k, h in enumerate(headrooms[i])], axis=0)

    return cl.bootstrap_pooled(units, statistic, **BOOTSTRAP), len(used), len(gaps) - len(used)


def claims(
    summary: pd.DataFrame, scale: str, *, plain_at_bn: pd.DataFrame, extra: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The four claims, claim 4 under two lr protocols; each test and threshold fixed before any run, each
    verdict from an interval (one straddling its threshold reads "inconclusive"):

    1. magnitudes don't matter — per data set, uSF, brSF and frSF (``MAIN`` recipe) are equivalent when every
       pairwise difference ± 2 SE lies within ± :data:`EQUIVALENCE_MARGIN` points, not equivalent when one
       lies wholly outside, else undecided (:func:`equivalence_by_set`); holds if the Wilson interval of the
       share of equivalent sets among the decided ones lies above :data:`MOST`, does not hold if below;
    2. more concordant signs are better — Spearman correlation between the concordance p and accuracy
       centred per data set, pooled over data sets and seeds: holds if ρ > 0 with one-sided p < 0.01, does not
       hold if its 95 % Fisher-z interval lies below 0; also reported: the share of sets with ρ > 0;
    3. 100 % concordant signs with random magnitudes (frSF, ``MAIN``) match or beat SGD (BP, plain SGD with
       BN) — the per-set difference of means, averaged over data sets, with a bootstrap interval over sets and
       seeds (:data:`BOOTSTRAP`): holds if the interval lies at or above :data:`SGD_MARGIN`, does not hold if
       below;
    4. BN and/or BM are indispensable for asymmetric BP, on the sign rules (whose ``|B| = 1`` is what they
       tame) — the gap (best of BN/BM/BN+BM − plain) / (best − chance) per (data set, sign rule), averaged,
       with a bootstrap interval over sets and seeds: holds if the interval lies at or above
       :data:`GAP_THRESHOLD`, does not hold if below; judged twice (:data:`CLAIM4_PROTOCOLS`): the plain
       recipe at its own chosen lr (``summary``) and at its BN recipe's (``plain_at_bn``). BP's and FA's
       pooled gaps are reported beside it.

    ``extra``: further seeds of frSF and BP (claims 1 and 3 use them; claim 2 does not, to keep p = 1 at
    the sweep's seeds).
    """
    out = []
    main = _main_cells(summary if extra is None else pd.concat([summary, extra], ignore_index=True))

    by_set = equivalence_by_set(main)
    status = by_set.equivalent
    decided = status[status != cl.INCONCLUSIVE]
    k = int((decided == cl.HOLDS).sum())
    low, high = cl.share_interval(k, len(decided))
    out.append(cl.Claim(
        "Feedback magnitudes don't matter: uSF ≈ brSF ≈ frSF",
        f"per data set, every pairwise difference ± 2 SE within ± {EQUIVALENCE_MARGIN:g} pts (equivalent), "
        "one wholly outside (not), else undecided; holds if the 95 % interval of the share equivalent among "
        f"decided sets lies above {MOST:.0%}",
        f"equivalent on {cl.count_text(k, len(decided), 'decided sets')}; undecided on "
        f"{(status == cl.INCONCLUSIVE).sum()} of {len(status)} sets",
        cl.by_interval(low, high, MOST) if len(decided) else cl.INCONCLUSIVE,
    ))  # fmt: skip

    sweep = _sweep_cells(summary)
    sweep["centred"] = sweep.test_pct - sweep.groupby("dataset").test_pct.transform("mean")
    rho, p_two = stats.spearmanr(sweep.concordance, sweep.centred)
    p_one = p_two / 2 if rho > 0 else 1 - p_two / 2
    per_set = sweep.groupby("dataset")[["concordance", "test_pct"]].apply(
        lambda g: stats.spearmanr(g.concordance, g.test_pct)[0] if g.test_pct.nunique() > 1 else np.nan
    )
    half = 1.96 * 1.06 / math.sqrt(max(len(sweep) - 3, 1))  # Fisher z for Spearman (Fieller et al. 1957)
    low, high = np.tanh(np.arctanh(np.clip(rho, -0.999, 0.999)) + np.array([-half, half]))
    verdict = cl.HOLDS if rho > 0 and p_one < 0.01 else cl.FAILS if high < 0 else cl.INCONCLUSIVE
    out.append(cl.Claim(
        "More concordant feedback signs are better",
        "Spearman ρ(p, accuracy centred per data set) > 0 with one-sided p < 0.01; does not hold if its 95 % "
        "interval lies below 0",
        f"ρ = {rho:.2f} (95 % CI {low:.2f} to {high:.2f}; one-sided p = {p_one:.1e}; n = {len(sweep)}); "
        f"ρ > 0 on {cl.count_text(int((per_set > 0).sum()), int(per_set.notna().sum()), 'sets')}",
        verdict,
    ))  # fmt: skip

    units = [
        [_seeds(part, name, "frsf", MAIN), _seeds(part, name, "bp", "BN")]
        for name, part in main.groupby("dataset")
        if len(_seeds(part, name, "frsf", MAIN)) and len(_seeds(part, name, "bp", "BN"))
    ]
    if units:
        diff, low, high = cl.bootstrap_pooled(units, lambda i, m: m[0] - m[1], **BOOTSTRAP)
        measured = (
            f"mean frSF − BP {diff:+.2f} pts (95 % CI {low:+.2f} to {high:+.2f}) over {len(units)} sets"
        )
        verdict = cl.by_interval(low, high, SGD_MARGIN)
    else:
        measured, verdict = "no data set with both frSF and BP", cl.INCONCLUSIVE
    out.append(cl.Claim(
        "100 % concordant signs with random magnitudes (frSF) match or beat SGD",
        f"frSF − BP (BN) per data set, averaged over sets, ≥ {SGD_MARGIN:g} pt: its 95 % bootstrap interval "
        "(over sets and seeds) at or above it holds, wholly below does not",
        measured,
        verdict,
    ))  # fmt: skip

    plains = {"own": summary, "bn_lr": plain_at_bn}
    for protocol, plain in plains.items():
        (gap, low, high), used, left_out = _pooled_gap(summary, plain)
        controls = []
        for rule in ("bp", "fa"):
            ctrl = headroom_gaps(summary, plain)
            ctrl = ctrl[(ctrl.rule == rule) & (ctrl.headroom >= MIN_HEADROOM)]
            if len(ctrl):
                controls.append(f"{rule.upper()}'s {ctrl.normalised.mean():.2f}")
        out.append(cl.Claim(
            f"BN and/or BM are indispensable for asymmetric BP (sign rules; {CLAIM4_PROTOCOLS[protocol]})",
            f"(best of BN/BM/BN+BM − plain) / (best − chance) per (data set, sign rule), averaged, ≥ "
            f"{GAP_THRESHOLD:g}: its 95 % bootstrap interval (over sets and seeds) at or above it holds, "
            "wholly below does not",
            f"mean normalised gap {gap:.2f} (95 % CI {low:.2f} to {high:.2f}) over {used} pairs"
            + (f", {left_out} left out (best < chance + {MIN_HEADROOM:g} pts)" if left_out else "")
            + (f"; {', '.join(controls)}" if controls else ""),
            cl.by_interval(low, high, GAP_THRESHOLD) if used else cl.INCONCLUSIVE,
        ))  # fmt: skip
    return cl.table(out, scale)


def claims_by_set(
    summary: pd.DataFrame, scale: str, *, plain_at_bn: pd.DataFrame, extra: pd.DataFrame | None = None
) -> pd.DataFrame:
    """What each data set contributes to claims 1, 3 and 4: the sign rules' equivalence, frSF − BP (± 2 SE,
    with the seeds of each), and the sign rules' mean normalised gap under both lr protocols."""
    main = _main_cells(summary if extra is None else pd.concat([summary, extra], ignore_index=True))
    table = equivalence_by_set(main)[["dataset", "equivalent"]].rename(columns={"equivalent": "claim 1"})
    table["claim 3: frSF − BP"] = [
        cl.at_least(_seeds(main, n, "frsf", MAIN), _seeds(main, n, "bp", "BN"), SGD_MARGIN, unit=" pts")[0]
        for n in table.dataset
    ]
    for protocol, plain in (("own lr", summary), ("plain at BN's lr", plain_at_bn)):
        gaps = headroom_gaps(summary, plain)
        gaps = gaps[gaps.rule.isin(SIGN_RULES)].groupby("dataset").normalised.mean()
        table[f"claim 4 ({protocol})"] = table.dataset.map(gaps).round(2)
    table.insert(1, "scale", scale)
    return table


def lr_table(chosen: pd.DataFrame, scale: str) -> pd.DataFrame:
    """The chosen lr per data set (rows) and rule × recipe (columns; the concordance levels as ``sc p=…``)."""
    frame = chosen.copy()
    frame["recipe"] = [
        RECIPES[(bn, opt == "bm")] for bn, opt in zip(frame.batch_norm, frame.optimizer, strict=True)
    ]
    frame["column"] = [
        f"{r} {c}" if r != "sc" else f"sc {_level(o)} {c}"
        for r, o, c in zip(frame.rule, frame.options, frame.recipe, strict=True)
    ]
    order = [f"{r} {c}" for r in RULES for c in RECIPES.values()]
    order += sorted(set(frame.column) - set(order))
    table = (
        frame.pivot(index="dataset", columns="column", values="lr")
        .reindex(columns=order)
        .dropna(axis=1, how="all")
    )
    table = table.map(lambda v: f"{v:g}")
    table.columns.name = None
    table.insert(0, "scale", scale)
    return table


def _level(options: str) -> str:
    """``"p=0.5, scale=1.0"`` -> ``"p=0.5"``: the concordance level of an ``sc`` cell's options."""
    return next(part for part in options.split(", ") if part.startswith("p="))


def lr_counts(chosen: pd.DataFrame, scale: str) -> pd.DataFrame:
    """How often each lr of each grid was chosen (a grid whose edge wins often is too narrow)."""
    counts = chosen.groupby(["optimizer", "lr"]).size().rename("times chosen").reset_index()
    grids = LR_GRIDS[scale]
    counts["grid position"] = [
        "lowest" if lr == min(grids[o]) else "highest" if lr == max(grids[o]) else "inside"
        for o, lr in zip(counts.optimizer, counts.lr, strict=True)
    ]
    counts["lr"] = counts.lr.map(lambda v: f"{v:g}")
    counts.insert(0, "scale", scale)
    return counts


def before_after(study: Study, scale: str) -> pd.DataFrame:
    """Per rule and recipe: the mean test accuracy over data sets and seeds under the fixed-lr protocol
    ("before") and under early stopping with chosen lrs ("after"), on the data sets both ran."""
    sets = set(study.before.dataset) & set(study.summary.dataset)
    rows = []
    for label, frame in (("before", study.before), ("after", study.summary)):
        part = frame[frame.rule.isin(RULES) & frame.dataset.isin(sets)]
        rows.append(part.groupby(["rule", "recipe"]).test_pct.mean().rename(f"{label} %"))
    table = pd.concat(rows, axis=1).reindex([(r, c) for r in RULES for c in RECIPES.values()]).round(1)
    table["change (pts)"] = (table["after %"] - table["before %"]).round(1)
    table = table.reset_index()
    table.insert(0, "scale", scale)
    return table


def verdict_change(study: Study, scale: str) -> pd.DataFrame:
    """Each claim's verdict under the fixed-lr protocol ("before", its seeds) and under the new one."""
    # the fixed-lr protocol gives plain and BN the same SGD lr: its plain cells are those of both protocols
    before = claims(study.before, scale, plain_at_bn=study.before)
    after = claims(study.summary, scale, plain_at_bn=study.plain_at_bn, extra=study.extra)
    return pd.DataFrame(
        {"claim": after.claim, "scale": scale, "before (fixed lr, short budget)": before.verdict,
         "before: measured": before.measured, "after (chosen lr, early stopping)": after.verdict}
    )  # fmt: skip


# figures ---------------------------------------------------------------------------------------------------

UPDATES = {"BN": "SGD (BN)", "BN+BM": "Batch Manhattan (BN+BM)"}


def curves_figure(history: pd.DataFrame, sets: tuple[str, ...], before_steps: int) -> Figure:
    """Validation accuracy over SGD steps, BP and frSF, with SGD (BN) and with Batch Manhattan (BN+BM), one
    panel per data set (mean over seeds); the dotted line marks the "before" protocol's budget."""
    curves = history[
        (history.metric == "val_acc") & history.dataset.isin(sets) & history.rule.isin(["bp", "frsf"])
        & history.recipe.isin(["BN", "BN+BM"]) & (history.epoch > 0)
    ].copy()  # fmt: skip
    curves["value"] *= 100
    curves["update"] = curves.recipe.map(UPDATES)
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.6), squeeze=False, sharey=False)
    for ax, name in zip(axes[0], sets, strict=True):
        part = curves[curves.dataset == name]
        sns.lineplot(data=part, x="step", y="value", hue="update", style="rule", errorbar=None, ax=ax,
                     hue_order=list(UPDATES.values()), style_order=["bp", "frsf"])  # fmt: skip
        ax.axvline(before_steps, color="grey", linestyle=":", linewidth=1, label="old budget")
        ax.set_title(name)
        ax.set_xlabel("SGD steps")
        ax.set_ylabel("validation accuracy (%)")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        if ax is not axes[0][-1] and ax.get_legend():
            ax.get_legend().remove()
    if axes[0][-1].get_legend():
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1.0), title=None)
    fig.tight_layout()
    return fig


def heatmap(summary: pd.DataFrame, scale: str) -> Figure:
    """Data set × (rule, recipe) mean test accuracy."""
    table = accuracy_table(summary, scale).drop(columns="scale")
    fig, ax = plt.subplots(figsize=(0.36 * table.shape[1] + 2.6, 0.32 * table.shape[0] + 2.2))
    sns.heatmap(table, annot=True, fmt=".0f", cmap="viridis", vmin=0, vmax=100, ax=ax,
                cbar_kws={"label": "test accuracy (%)"}, annot_kws={"fontsize": 9})  # fmt: skip
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
