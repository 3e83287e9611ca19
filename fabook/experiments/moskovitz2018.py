"""Moskovitz, Litwin-Kumar & Abbott (2018), "Feedback alignment in deep convolutional networks".

The study: convolutional networks of increasing depth, plain and residual (:class:`fabook.models.DeepCNN`),
trained with BP, FA and the sign-concordant uSF and frSF; for the sign rules, the stabilizers one at a time
(batch norm, the norm constraint of :mod:`fabook.norm_constraint`, both) and the feedback's size (sized like
``W``, as the paper does, against Liao et al.'s ``|B| = 1``); per layer in the deepest network, the angles,
``‖B‖/‖W‖``, ``‖W‖`` and the error each rule sends down against BP's (the obstacles to scaling). Five claims
are checked (:func:`claims`), each with its test and margin fixed here before any run; :func:`regime` lists
the quantities that decide them at each scale. The paper's own numbers could not be obtained: the chapter
reports ours only.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fabook import claims as cl
from fabook import data, regime, train
from fabook.book import check_scale
from fabook.cli import runs_dir
from fabook.metrics import weight_alignment
from fabook.notebook import check_positive
from fabook.plots import layer_order
from fabook.sweep import history_frame, read_results, run_sweep

NOTEBOOK = "moskovitz2018_deep_cnns"
SMOKE_DATASET = "fashion-mnist-small"
"""The data set of the ``smoke`` scale (one constant, to switch to a smaller packaged subset)."""

RULES = ("bp", "fa", "usf", "frsf")
SIGN_RULES = ("usf", "frsf")
ARCHS = {"deepcnn": "plain", "deepcnn-res": "residual"}
STABILIZERS = {  # label -> (batch norm, norm constraint)
    "none": (False, False),
    "BN": (True, False),
    "norm": (False, True),
    "BN+norm": (True, True),
}
FEEDBACK_SCALES = {"weight": "B sized like W", 1.0: "|B| = 1"}
"""The sign rules' ``scale`` option -> label. ``"weight"``: the magnitudes' mean is the root-mean-square of
the layer's ``W`` at setup — the paper's feedback "scaled to W"; ``1``: Liao et al.'s ``|B| = 1``."""
FA_OPTIONS = {"init": "weight"}
"""FA's random ``B`` drawn with the root-mean-square of the layer's own weight (so ``Bᵀ δy`` has ``Wᵀ δy``'s
size), given explicitly so that a change of the rule's default does not change the recipe."""
STABILIZED = ("BN+norm", "B sized like W")
"""The sign rules' full recipe (all stabilizers), compared with BP at every depth."""
UNSTABILIZED = ("none", "|B| = 1")
"""The sign rules without any stabilizer."""
REFERENCE = "BN"
"""BP's and FA's recipe: the same networks with batch norm, no norm constraint."""
FORMER_SCALE = "fan_in"
"""The chapter's former sign feedback, ``|B| = 1/√fan_in`` (0.71× He-initialized weights): shown in the regime
table only, for what it compounds to with depth."""

OPTIMIZER = dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4, batch_size=128, schedule="cosine")
"""Every rule, every recipe: SGD annealed to 0 by a cosine over the run (stepped per epoch)."""

SETTINGS = {
    "smoke": dict(dataset=SMOKE_DATASET, depths=(2, 5), width=4, epochs=2, seeds=1, ablation_seeds=1,
                  max_train=1000, val_fraction=0.1, max_test=300, imagenet=False, device="cpu"),
    "cpu": dict(dataset="fashion-mnist", depths=(2, 5, 8), width=8, epochs=6, seeds=3, ablation_seeds=1,
                max_train=11000, val_fraction=1 / 11, max_test=5000, imagenet=False, device="cpu"),
    "paper": dict(dataset="fashion-mnist", depths=(2, 5, 8, 14, 20), width=16, epochs=20, seeds=3,
                  ablation_seeds=3, max_train=None, val_fraction=1 / 12, max_test=None, imagenet=True,
                  device="cuda"),
}  # fmt: skip
"""Per scale: the Fashion-MNIST studies (``seeds`` for the cells the claims read, ``ablation_seeds`` for the
cells only the stabilizer ablation reads; ``val_fraction`` of the ``max_train`` images held out to show the
plateau: 10,000 training and 1,000 validation images at ``cpu``); ``paper`` adds ImageNet ResNet-18
(:data:`IMAGENET`)."""

IMAGENET = dict(
    dataset="imagenet", model="resnet18", optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4,
    batch_size=256, epochs=90, schedule="step:30,60", num_workers=8, metrics_every=10, device="cuda",
)  # fmt: skip
"""The ``paper`` scale's ImageNet cells (torchvision's ResNet-18 recipe): BP, FA and the stabilized uSF
(ResNet-18 has batch norm built in; + norm constraint, ``B`` sized like ``W``); one seed."""

MIN_RESIDUAL_DEPTH = 5
"""Below it (depth 2: the first convolution and the head) there is no residual unit and the two families are
the same network, so only the plain one is trained."""

GAP_GROWTH = 2.0
"""Claim 1's margin (points): FA's gap to BP at the deepest exceeds the shallowest's by at least it."""
NEAR_BP = -3.0
"""Claim 2's margin (points): the stabilized sign rules' accuracy minus BP's is at least it."""
DEPTH_DROP = 5.0
"""Claim 3's margin (points): the unstabilized sign rules lose at least this much from the shallowest to the
deepest plain network."""
ANGLE_MARGIN = 20.0
"""Claim 4's margin (degrees): FA's lower-layer update–BP angle exceeds the stabilized sign rule's by at least
it, paired by seed."""
ERROR_DECADES = 1.0
"""Claim 5's level (decades, ``|log₁₀|`` of the error ratio): an error ten times BP's or a tenth of it has
exploded or vanished; within it, it has not."""


@dataclass(frozen=True)
class Params:
    """The notebook's knobs: ``scale`` (smoke | cpu | paper); overrides of the scale's ``seeds`` (the
    ablation-only cells keep at most their own number) and ``epochs``; ``jobs`` (parallel cells; default 1 at
    smoke, 2 otherwise); ``imagenet_root``, a folder holding ImageNet's ``train/`` and ``val/`` (or an
    ``imagenet/`` folder with them), for ``paper``."""

    scale: str = "cpu"
    seeds: int | None = None
    epochs: int | None = None
    jobs: int | None = None
    imagenet_root: str | None = None

    def __post_init__(self) -> None:
        check_scale(self.scale)
        check_positive(seeds=self.seeds, epochs=self.epochs, jobs=self.jobs)
        if self.imagenet_root is not None and not isinstance(self.imagenet_root, str | os.PathLike):
            raise TypeError(f"imagenet_root must be a folder path or None; got {self.imagenet_root!r}")

    @property
    def settings(self) -> dict:
        s = dict(SETTINGS[self.scale])
        s.update({k: v for k in ("seeds", "epochs") if (v := getattr(self, k)) is not None})
        s["ablation_seeds"] = min(s["ablation_seeds"], s["seeds"])
        s["jobs"] = self.jobs or (1 if self.scale == "smoke" else 2)
        return s

    @property
    def out_dir(self):
        return runs_dir() / NOTEBOOK / self.scale


def _sign_cell(rule: str, stabilizers: str, feedback: str) -> dict:
    bn, norm = STABILIZERS[stabilizers]
    scale = next(k for k, v in FEEDBACK_SCALES.items() if v == feedback)
    return dict(rule=rule, rule_options={"scale": scale}, batch_norm=bn, constrain_norm=norm)


def _base(settings: dict) -> dict:
    """The config fields every Fashion-MNIST cell of a scale shares (no device)."""
    keys = ("dataset", "width", "epochs", "max_train", "val_fraction", "max_test")
    return {**{k: settings[k] for k in keys}, **OPTIMIZER}


def _cells(params: Params) -> tuple[list[dict], list[dict]]:
    """The conditions (config fields, no seed) the claims read — the depth sweep: both architectures (the
    residual one from :data:`MIN_RESIDUAL_DEPTH`); BP, FA and the stabilized sign rules; the unstabilized sign
    rules on the plain networks — and those only the ablation reads: in the deepest plain network, every
    other stabilizers × feedback size of the sign rules. Every cell of the deepest plain network records the
    per-layer metrics every epoch."""
    s = params.settings
    deepest = max(s["depths"])
    base = {**_base(s), "device": s["device"]}
    sweep = []
    for model in ARCHS:
        for depth in s["depths"]:
            if model == "deepcnn-res" and depth < MIN_RESIDUAL_DEPTH:
                continue
            measured = int(model == "deepcnn" and depth == deepest)
            cell = {**base, "model": model, "depth": depth, "metrics_every": measured}
            sweep += [{**cell, "rule": "bp", "batch_norm": True}]
            sweep += [{**cell, "rule": "fa", "rule_options": FA_OPTIONS, "batch_norm": True}]
            sweep += [{**cell, **_sign_cell(r, *STABILIZED)} for r in SIGN_RULES]
            if model == "deepcnn":
                sweep += [{**cell, **_sign_cell(r, *UNSTABILIZED)} for r in SIGN_RULES]
    cell = {**base, "model": "deepcnn", "depth": deepest, "metrics_every": 1}
    recipes = [(stab, feedback) for stab in STABILIZERS for feedback in FEEDBACK_SCALES.values()]
    ablation = [
        {**cell, **_sign_cell(rule, *recipe)}
        for rule in SIGN_RULES
        for recipe in recipes
        if recipe not in (STABILIZED, UNSTABILIZED)
    ]
    return sweep, ablation


def conditions(params: Params) -> list[dict]:
    """One dict of config fields per condition (no seed): the claims' cells, then the ablation-only ones."""
    sweep, ablation = _cells(params)
    return sweep + ablation


def imagenet_conditions(params: Params) -> list[dict]:
    """The ``paper`` scale's ImageNet cells (none at the other scales); FileNotFoundError naming the folder
    and how to get it when ImageNet is not there."""
    if not params.settings["imagenet"]:
        return []
    root = params.imagenet_root
    lack = data.missing("imagenet", root)
    if lack is not None:
        raise FileNotFoundError(
            f"scale 'paper' trains ImageNet ResNet-18: missing {lack}; set imagenet_root to a folder with "
            f"train/ and val/ ({data.get_info('imagenet').fetch})"
        )
    out = [{**IMAGENET, "rule": "bp"}, {**IMAGENET, "rule": "fa", "rule_options": FA_OPTIONS}]
    return [*out, {**IMAGENET, **_sign_cell("usf", *STABILIZED), "batch_norm": False}]


def spec(params: Params) -> dict:
    """The Fashion-MNIST study as one sweep: the claims' conditions × ``seeds``, the ablation-only ones ×
    ``ablation_seeds``."""
    s = params.settings
    sweep, ablation = _cells(params)
    cells = [{**c, "seed": seed} for c in sweep for seed in range(s["seeds"])]
    cells += [{**c, "seed": seed} for c in ablation for seed in range(s["ablation_seeds"])]
    return {"name": NOTEBOOK, "base": {}, "grid": {}, "conditions": cells}


def _label(frame: pd.DataFrame) -> pd.DataFrame:
    """Add ``arch``, ``stabilizers``, ``feedback``, ``recipe`` and ``method`` (rule and recipe) columns."""
    frame = frame.copy()
    for flag in ("batch_norm", "constrain_norm"):
        frame[flag] = frame[flag].fillna(False).astype(bool) if flag in frame else False
    frame["arch"] = frame.model.map(ARCHS).fillna(frame.model)
    frame["stabilizers"] = [
        next(k for k, v in STABILIZERS.items() if v == (bn, cn))
        for bn, cn in zip(frame.batch_norm, frame.constrain_norm, strict=True)
    ]
    frame["feedback"] = [
        FEEDBACK_SCALES.get(o.get("scale"), "") if r in SIGN_RULES else ""
        for r, o in zip(frame.rule, frame.rule_options, strict=True)
    ]
    frame["recipe"] = [
        f"{s}, {f}" if f else s for s, f in zip(frame.stabilizers, frame.feedback, strict=True)
    ]
    frame["method"] = [
        f"{r} ({RECIPE_NAMES.get(rec, rec)})" if r in SIGN_RULES else r
        for r, rec in zip(frame.rule, frame.recipe, strict=True)
    ]
    return frame


BN_ONLY = ("BN", "B sized like W")
"""The stabilized recipe without the norm constraint: what the constraint changes."""
RECIPE_NAMES = {", ".join(STABILIZED): "stabilized", ", ".join(UNSTABILIZED): "unstabilized",
                ", ".join(BN_ONLY): "BN only"}  # fmt: skip
"""Short names of the sign rules' recipes in the ``method`` column."""


def run(params: Params) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Run (or resume) the study: the Fashion-MNIST summary (one row per cell, with :func:`_label`'s
    columns and ``test_pct``), its per-epoch history, and the ImageNet summary (empty below ``paper``)."""
    s = params.settings
    summary = _label(run_sweep(spec(params), params.out_dir, jobs=s["jobs"]))
    summary["test_pct"] = 100 * summary.test_acc.astype(float)
    keys = set(summary.key)
    history = history_frame([r for r in read_results(params.out_dir) if r.key in keys])
    history["method"] = history.key.map(summary.set_index("key").method)
    imagenet = pd.DataFrame()
    cells = imagenet_conditions(params)
    if cells:
        if params.imagenet_root is not None:
            os.environ["FABOOK_DATA"] = str(params.imagenet_root)  # the workers' data root
        imagenet = run_sweep(
            {"name": f"{NOTEBOOK}-imagenet", "base": {}, "grid": {}, "conditions": cells},
            params.out_dir / "imagenet",
        )
        imagenet = _label(imagenet)
        imagenet["test_pct"] = 100 * imagenet.test_acc.astype(float)
    return summary, history, imagenet


# the regime: what decides the claims at each scale ---------------------------------------------------------


def _deepest_config(scale: str, **fields: object) -> train.Config:
    """The deepest plain network of ``scale``'s sweep, with ``fields`` (the rule and recipe), seed 0."""
    s = SETTINGS[scale]
    return train.Config(**_base(s), model="deepcnn", depth=max(s["depths"]), seed=0, **fields)


def init_ratios(config: train.Config) -> pd.Series:
    """``‖B‖/‖W‖`` per rule layer (input first) of ``config``'s network as its seed initializes it."""
    train.seed_everything(config.seed)
    frame = weight_alignment(train.build_model(config))
    return frame.set_index("layer").norm_ratio


def compounded(ratios: pd.Series) -> float:
    """``∏ ‖B‖/‖W‖`` over every layer above the input layer: the factor that, with batch norm, the error
    reaching the input layer carries against BP's (each layer's feedback scales what it sends down by its
    ``‖B‖/‖W‖``; batch norm divides by the forward scale, which BP's ``W`` cancels and ``B`` does not)."""
    return float(np.prod(ratios.iloc[1:].to_numpy()))


REGIME_FEEDBACK = {
    "uSF, B sized like W": dict(rule="usf", rule_options={"scale": "weight"}),
    "frSF, B sized like W": dict(rule="frsf", rule_options={"scale": "weight"}),
    "FA": dict(rule="fa", rule_options=FA_OPTIONS),
    "uSF, |B| = 1": dict(rule="usf", rule_options={"scale": 1.0}),
    "uSF, |B| = 1/√fan_in (former recipe)": dict(rule="usf", rule_options={"scale": FORMER_SCALE}),
}
"""The feedback whose size the regime table compounds over depth."""


def regime_table() -> pd.DataFrame:
    """The quantities that decide the claims at ``paper``, ``cpu`` and ``smoke``, computed from the very
    configs each scale trains (:mod:`fabook.regime`), and ``‖B‖/‖W‖`` at initialization in each scale's
    deepest plain network."""
    rows: dict[str, dict[str, object]] = {}
    for scale in regime.SCALES:
        s = SETTINGS[scale]
        config = _deepest_config(scale, **_sign_cell("usf", *STABILIZED))
        values = {
            "training images": regime.train_size(config),
            "validation images (plateau)": (s["max_train"] or data.CATALOGUE[s["dataset"]].n_train)
            - regime.train_size(config),
            "test images": s["max_test"] or data.CATALOGUE[s["dataset"]].n_test,
            "epochs": config.epochs,
            "optimizer steps": regime.steps(config),
            "Σ η over the run (cosine)": regime.lr_sum(config),
            "weight decay exponent Σ ηλ/(1 − μ)": regime.decay_exponent(config),
            "depths (weight layers)": ", ".join(map(str, s["depths"])),
            "deepest network (weight layers)": max(s["depths"]),
            "width (first-stage channels)": s["width"],
            "seeds, cells the claims read": s["seeds"],
            "seeds, ablation-only cells": s["ablation_seeds"],
        }
        for name, fields in REGIME_FEEDBACK.items():
            ratios = init_ratios(_deepest_config(scale, batch_norm=True, **fields))
            if name.endswith("like W") or name == "FA":
                values[f"‖B‖/‖W‖ at init, {name} (min–max over layers)"] = (
                    f"{ratios.min():.2f}–{ratios.max():.2f}"
                )
            values[f"∏ ‖B‖/‖W‖ above the input layer, {name}"] = compounded(ratios)
        for quantity, value in values.items():
            rows.setdefault(quantity, {})[scale] = value
    return regime.table(rows)


# tables ----------------------------------------------------------------------------------------------------


def _mean_sd(values: pd.Series) -> str:
    return f"{values.mean():.1f} ± {values.std(ddof=1):.1f}" if len(values) > 1 else f"{values.mean():.1f}"


def depth_table(summary: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Test accuracy % (mean ± sd over seeds) per architecture and depth (rows) and method (columns)."""
    sweep = _depth_cells(summary)
    table = sweep.groupby(["arch", "depth", "method"]).test_pct.apply(_mean_sd).unstack("method")
    order = [m for m in _method_order(sweep) if m in table.columns]
    table = table[order].fillna("—").reset_index()
    table.insert(0, "scale", scale)
    return table


def ablation_table(summary: pd.DataFrame, scale: str) -> pd.DataFrame:
    """The deepest plain network: sign rules' test accuracy % per stabilizers (rows) and rule × feedback
    size (columns), mean ± sd over seeds; BP's and FA's (with BN) beside them."""
    deep = _ablation_cells(summary)
    table = (
        deep.groupby(["stabilizers", "rule", "feedback"])
        .test_pct.apply(_mean_sd)
        .unstack(["rule", "feedback"])
    )
    table = table.reindex(list(STABILIZERS))
    table = table[[(r, f) for r in SIGN_RULES for f in FEEDBACK_SCALES.values() if (r, f) in table.columns]]
    table.columns = [f"{r} {f}" for r, f in table.columns]
    ref = _reference(summary, "deepcnn", deep.depth.max())
    for rule in ("bp", "fa"):
        table[f"{rule} (BN)"] = _mean_sd(ref[ref.rule == rule].test_pct) if (ref.rule == rule).any() else "—"
    table = table.reset_index()
    table.insert(0, "scale", scale)
    return table


def _layer_table(rows: pd.DataFrame, columns: dict[str, str], scale: str, digits: int) -> pd.DataFrame:
    """Per layer (input first) and ``columns`` (metric -> label) × method, mean over seeds."""
    if rows.empty:
        return pd.DataFrame(columns=["scale", "layer"])
    table = rows.pivot_table(index=["index", "layer"], columns=["metric", "method"], values="value")
    table = table[[c for c in table.columns if c[0] in columns]].round(digits)
    table.columns = [f"{columns[m]} {meth}" for m, meth in table.columns]
    table = table.reset_index().drop(columns="index")
    table.insert(0, "scale", scale)
    return table


def angle_table(history: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Per layer of the deepest plain network (input first), after training: the angle between W and B and
    between the rule's update and BP's gradient, mean over seeds, for BP, FA and the stabilized sign rules."""
    rows = _last(_layers(history, ("weight_angle", "grad_angle"), ANGLE_METHODS))
    return _layer_table(rows, {"weight_angle": "W–B (°)", "grad_angle": "update–BP (°)"}, scale, 1)


def norm_ratio_table(history: pd.DataFrame, scale: str) -> pd.DataFrame:
    """The recorded ``‖B‖/‖W‖`` per layer of the deepest plain network at initialization and after training,
    mean over seeds, for FA and the sign rules stabilized and with BN only."""
    rows = _layers(history, ("norm_ratio",), OBSTACLE_METHODS)
    if rows.empty:
        return pd.DataFrame(columns=["scale", "layer"])
    first = rows[rows.epoch == 0].assign(metric="init")
    last = _trained(rows).assign(metric="trained")
    labels = {"init": "‖B‖/‖W‖ init", "trained": "‖B‖/‖W‖ trained"}
    return _layer_table(pd.concat([first, last]), labels, scale, 3)


def error_table(history: pd.DataFrame, scale: str) -> pd.DataFrame:
    """The error that reaches each layer's output (input first) against BP's, ``‖δy‖ rule / ‖δy‖ BP``, at
    initialization and after training, mean over seeds, in the deepest plain network (the numbers of
    :func:`obstacle_figure`)."""
    rows = _layers(history, ("error_ratio",), OBSTACLE_METHODS)
    if rows.empty:
        return pd.DataFrame(columns=["scale", "layer"])
    first = rows[rows.epoch == 0].assign(metric="init")
    last = _trained(rows).assign(metric="trained")
    return _layer_table(pd.concat([first, last]), {"init": "init", "trained": "trained"}, scale, 3)


def weight_growth(history: pd.DataFrame) -> pd.DataFrame:
    """Per cell and layer of the deepest plain network without the constraint (BP, FA, the sign rules with BN
    only) and with it (the stabilized sign rules): ``growth = ‖W_T‖/‖W_0‖`` after training, and
    ``effective_lr = Σ_e η_e/‖W_{e−1}‖² ÷ Σ_e η_e/‖W_0‖²`` — the summed effective learning rate of batch
    norm's scale-invariant weights (epoch ``e`` trained with lr ``η_e`` from the norm at its start) against
    what it is with ``‖W‖`` held at ``‖W_0‖``. ``top``: the head, the one layer with no batch norm after it
    (there the effective lr means nothing; its norm sets the logits' scale)."""
    norms = _layers(history, ("weight_norm",), GROWTH_METHODS)
    columns = ["key", "layer", "index", "top", "method", "seed", "growth", "effective_lr"]
    if norms.empty:
        return pd.DataFrame(columns=columns)
    lrs = history[(history.metric == "lr") & history.key.isin(norms.key)]
    lr = lrs.set_index(["key", "epoch"]).value
    top = norms["index"].max()
    out = []
    for (key, layer), part in norms.groupby(["key", "layer"]):
        w = part.set_index("epoch").value.sort_index()
        epochs = [e for e in w.index if e > 0 and (key, e) in lr.index and e - 1 in w.index]
        if 0 not in w.index or not epochs:
            continue
        eta = np.array([lr[(key, e)] for e in epochs])
        before = np.array([w[e - 1] for e in epochs])
        row = part.iloc[0]
        out.append(dict(key=key, layer=layer, index=row["index"], top=row["index"] == top, method=row.method,
                        seed=row.seed, growth=w[epochs[-1]] / w[0],
                        effective_lr=float((eta / before**2).sum() / (eta / w[0] ** 2).sum())))  # fmt: skip
    return pd.DataFrame(out, columns=columns)


def _median_range(values: pd.Series) -> str:
    return f"{values.median():.2f} ({values.min():.2f}–{values.max():.2f})"


def growth_table(summary: pd.DataFrame, history: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Per method in the deepest plain network: whether ``‖W‖`` is held; for the layers with batch norm after
    them, ``‖W‖``'s growth over training and the summed effective learning rate against the held norm's
    (:func:`weight_growth`; median over layers and seeds, with the range), and the head's growth; the test
    accuracy."""
    growth = weight_growth(history)
    columns = ["scale", "method", "norm held", "BN layers: ‖W_T‖/‖W_0‖", "BN layers: Σ η/‖W‖² vs held",
               "head: ‖W_T‖/‖W_0‖", "test accuracy %", "seeds"]  # fmt: skip
    if growth.empty:
        return pd.DataFrame(columns=columns)
    deep = summary[(summary.model == "deepcnn") & (summary.depth == summary.depth.max())]
    rows = []
    for method in [m for m in GROWTH_METHODS if m in set(growth.method)]:
        g = growth[growth.method == method]
        bn, head = g[~g.top.astype(bool)], g[g.top.astype(bool)]
        cells = deep[deep.method == method]
        rows.append([scale, method, "yes" if cells.constrain_norm.all() else "no", _median_range(bn.growth),
                     _median_range(bn.effective_lr), _median_range(head.growth), _mean_sd(cells.test_pct),
                     len(cells)])  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


EFFECTIVE_LR_DROP = 0.8
"""The level the guess about the norm constraint is checked against: its mechanism is there if, without the
constraint, the BN layers' summed effective learning rate is below this share of the held norm's (median)."""


def constraint_effect(summary: pd.DataFrame, history: pd.DataFrame) -> str:
    """What the norm constraint changed in the deepest plain network, as sentences computed from the run:
    without it (the sign rules with BN only), the BN layers' ``‖W‖`` growth and summed effective lr (the
    guess's mechanism is there if that is below :data:`EFFECTIVE_LR_DROP`) and the head's growth; with it,
    ``‖W‖`` held; and the accuracy the constraint cost or gained per sign rule (stabilized − BN only, over
    the seeds both have)."""
    growth = weight_growth(history)
    free = growth[growth.method.isin([_name(r, BN_ONLY) for r in SIGN_RULES])]
    held = growth[growth.method.isin([_name(r, STABILIZED) for r in SIGN_RULES])]
    if free.empty or held.empty:
        return "Not measured at this scale: the runs lack the per-epoch weight norms of both recipes."
    bn, head = free[~free.top.astype(bool)], free[free.top.astype(bool)]
    deep = summary[(summary.model == "deepcnn") & (summary.depth == summary.depth.max())]
    diffs = []
    for rule in SIGN_RULES:
        with_c = deep[deep.method == _name(rule, STABILIZED)].set_index("seed").test_pct
        without = deep[deep.method == _name(rule, BN_ONLY)].set_index("seed").test_pct
        both = with_c.index.intersection(without.index)
        if len(both):
            d = (with_c[both] - without[both]).mean()
            diffs.append(f"{rule} {d:+.1f} points ({len(both)} seed{'s' if len(both) != 1 else ''})")
    share = bn.effective_lr.median()
    there = "is there" if share < EFFECTIVE_LR_DROP else "is not there"
    return (
        f"Without the constraint (BN only) the sign rules' layers with BN after them ended at a median "
        f"{bn.growth.median():.2f}× their initial ‖W‖ (range {bn.growth.min():.2f}–{bn.growth.max():.2f}), "
        f"so their effective learning rate η/‖W‖² summed over the run was {share:.2f}× what it is with ‖W‖ "
        f"held: the guess's mechanism {there} (level {EFFECTIVE_LR_DROP:g}×). The head, with no BN after it, "
        f"ended at {head.growth.median():.2f}× its initial norm; the constraint holds it, and with it the "
        f"logits' scale, at {held[held.top.astype(bool)].growth.median():.2f}×. Under the constraint the "
        f"effective lr followed the cosine schedule (down to {_last_lr_fraction(history):.2f} of its start "
        f"in the last epoch). The constraint changed test accuracy by {'; '.join(diffs) or 'n/a'} "
        f"(stabilized − BN only)."
    )


def _last_lr_fraction(history: pd.DataFrame) -> float:
    lrs = history[history.metric == "lr"].groupby("epoch").value.mean()
    return float(lrs.iloc[-1] / lrs.iloc[0])


def plateau(history: pd.DataFrame, summary: pd.DataFrame) -> dict[str, object]:
    """How much the last epoch still added to validation accuracy (points) in the cells the claims read that
    did not diverge: the mean and the largest gain, with the cell it came from."""
    cells = _depth_cells(summary)
    cells = cells[~cells.diverged.astype(bool)]
    val = history[(history.metric == "val_acc") & history.key.isin(cells.key) & (history.epoch > 0)]
    if val.empty or val.epoch.max() < 2:
        return {"mean": math.nan, "max": math.nan, "where": "n/a"}
    last = val.epoch.max()
    per = val[val.epoch >= last - 1].pivot_table(index="key", columns="epoch", values="value")
    gain = 100 * (per[last] - per[last - 1]).dropna()
    top = cells.set_index("key").loc[gain.idxmax()]
    return {"mean": float(gain.mean()), "max": float(gain.max()),
            "where": f"{top.method}, {top.arch}, depth {top.depth}, seed {top.seed}"}  # fmt: skip


def imagenet_table(imagenet: pd.DataFrame) -> pd.DataFrame:
    """The ``paper`` scale's ImageNet ResNet-18 cells: top-1 test accuracy and whether training diverged."""
    if imagenet.empty:
        return pd.DataFrame(columns=["scale", "method", "top-1 %", "diverged", "epochs"])
    out = imagenet.assign(scale="paper")[["scale", "method", "test_pct", "diverged", "epochs_run"]]
    return out.rename(columns={"test_pct": "top-1 %", "epochs_run": "epochs"}).round(2)


# cells the claims and tables use ---------------------------------------------------------------------------


def _name(rule: str, recipe: tuple[str, str]) -> str:
    """The ``method`` label of a sign rule with ``recipe`` (stabilizers, feedback)."""
    joined = ", ".join(recipe)
    return f"{rule} ({RECIPE_NAMES.get(joined, joined)})"


ANGLE_METHODS = ("bp", "fa", *(_name(r, STABILIZED) for r in SIGN_RULES))
"""The methods whose angles the chapter shows (the unstabilized ones diverge before any is measured)."""
OBSTACLE_METHODS = ("fa", *(_name(r, rec) for rec in (STABILIZED, BN_ONLY, UNSTABILIZED) for r in SIGN_RULES))
"""The methods whose error and ``‖B‖/‖W‖`` per layer the chapter shows."""
GROWTH_METHODS = ("bp", "fa", *(_name(r, rec) for rec in (BN_ONLY, STABILIZED) for r in SIGN_RULES))
"""The methods whose ``‖W‖`` over training the chapter shows (BN; without and with the constraint)."""


def _depth_cells(summary: pd.DataFrame) -> pd.DataFrame:
    """The depth sweep: BP and FA with BN, the sign rules stabilized, and (plain) unstabilized."""
    ref = summary.rule.isin(["bp", "fa"]) & (summary.recipe == REFERENCE)
    sign = summary.rule.isin(SIGN_RULES) & summary.recipe.isin(
        [", ".join(STABILIZED), ", ".join(UNSTABILIZED)]
    )
    return summary[ref | sign]


def _ablation_cells(summary: pd.DataFrame) -> pd.DataFrame:
    plain = summary[(summary.model == "deepcnn") & summary.rule.isin(SIGN_RULES)]
    return plain[plain.depth == summary.depth.max()]


def _reference(summary: pd.DataFrame, model: str, depth: int) -> pd.DataFrame:
    at = summary[(summary.model == model) & (summary.depth == depth)]
    return at[at.rule.isin(["bp", "fa"]) & (at.recipe == REFERENCE)]


def _method_order(frame: pd.DataFrame) -> list[str]:
    return [n for n in METHODS if n in set(frame.method)]


def _pct(summary: pd.DataFrame, **where: object) -> pd.Series:
    """Test accuracy % per seed of the cells matching ``where`` (column == value), indexed by seed."""
    part = summary
    for column, value in where.items():
        part = part[part[column] == value]
    return part.set_index("seed").test_pct


def _layers(history: pd.DataFrame, metrics: tuple[str, ...], methods: tuple[str, ...]) -> pd.DataFrame:
    """The per-layer ``metrics`` of ``methods`` in the deepest plain network, every recorded epoch (from a
    history with :func:`run`'s ``method`` column), with ``index`` (1 = the input layer)."""
    if history.empty or "layer" not in history:
        return pd.DataFrame()
    rows = history[history.metric.isin(metrics) & (history.layer != "") & history.method.isin(methods)]
    rows = rows[rows.model == "deepcnn"]
    if rows.empty:
        return pd.DataFrame()
    rows = rows[rows.depth == rows.depth.max()]
    order = sorted(rows.layer.unique(), key=layer_order)
    return rows.assign(index=rows.layer.map({n: i + 1 for i, n in enumerate(order)}))


def _last(rows: pd.DataFrame) -> pd.DataFrame:
    """Each cell's rows at its last recorded epoch."""
    if rows.empty:
        return rows
    return rows[rows.epoch == rows.groupby("key").epoch.transform("max")]


def _trained(rows: pd.DataFrame) -> pd.DataFrame:
    """Each cell's rows at its last recorded epoch after training; none of the unstabilized rules, which
    diverge (their last record is from before the non-finite step, or from initialization)."""
    last = _last(rows)
    if last.empty:
        return last
    return last[(last.epoch > 0) & ~last.method.isin([_name(r, UNSTABILIZED) for r in SIGN_RULES])]


def _chance(summary: pd.DataFrame) -> float:
    """Chance accuracy % of the summary's data set."""
    return 100 / data.get_info(summary.dataset.iloc[0]).num_classes


def _all_hold(verdicts: list[str]) -> str:
    """Holds if every part holds; does not hold if any part does not; else inconclusive."""
    if cl.FAILS in verdicts:
        return cl.FAILS
    return cl.HOLDS if verdicts and all(v == cl.HOLDS for v in verdicts) else cl.INCONCLUSIVE


def _combine(verdicts: list[str]) -> str:
    """Holds if every part holds; does not hold if some part does not and none holds; else inconclusive."""
    if verdicts and all(v == cl.HOLDS for v in verdicts):
        return cl.HOLDS
    if cl.FAILS in verdicts and cl.HOLDS not in verdicts:
        return cl.FAILS
    return cl.INCONCLUSIVE


def _interval(values: pd.Series) -> tuple[float, float]:
    """Mean and half-width (2 standard errors) of ``values``; half-width NaN with fewer than 2."""
    v = pd.Series(values, dtype=float).dropna()
    half = 2 * v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else math.nan
    return float(v.mean()) if len(v) else math.nan, float(half)


def _test(values: pd.Series, passes: Callable[[float], bool], fails: Callable[[float], bool]) -> str:
    """Verdict on ``values``' mean ± 2 SE: holds if ``passes`` holds at both ends of the interval, does not
    hold if ``fails`` does; inconclusive otherwise (an interval across the level, or fewer than 2 values)."""
    mean, half = _interval(values)
    if math.isnan(half):
        return cl.INCONCLUSIVE
    ends = (mean - half, mean + half)
    if all(passes(e) for e in ends):
        return cl.HOLDS
    return cl.FAILS if all(fails(e) for e in ends) else cl.INCONCLUSIVE


def _text(values: pd.Series, unit: str, digits: int = 1, sign: str = "") -> str:
    """``"72.1 ± 3.0°"`` (mean ± 2 SE), or ``"72.1° (1 seed)"``; ``sign="+"`` to sign the mean."""
    mean, half = _interval(values)
    n = pd.Series(values, dtype=float).notna().sum()
    if math.isnan(half):
        return f"{mean:{sign}.{digits}f}{unit} ({n} seed{'s' if n != 1 else ''})"
    return f"{mean:{sign}.{digits}f} ± {half:.{digits}f}{unit}"


def _paired(a: pd.Series, b: pd.Series, margin: float, unit: str) -> tuple[str, str]:
    """Is ``a − b`` (paired by the seed index) at least ``margin``? ``(measured, verdict)``, :func:`_test`."""
    diff = (a - b).dropna()
    verdict = _test(diff, lambda e: e >= margin, lambda e: e < margin)
    text = _text(diff, unit, sign="+")
    return (text if len(diff) < 2 else f"{text} (paired, {len(diff)} seeds)"), verdict


# the claims ------------------------------------------------------------------------------------------------


def claims(summary: pd.DataFrame, history: pd.DataFrame, scale: str) -> pd.DataFrame:
    """The five claims, each with its statistic and margin (fixed before any run; D₁, Dₙ: the shallowest and
    the deepest network of the sweep; accuracies are test accuracy in points; an interval is the mean ± 2
    standard errors over seeds, and a verdict is inconclusive when it straddles the margin or there is one
    seed):

    1. FA's gap to BP grows with depth — per architecture, (BP − FA)(Dₙ) − (BP − FA)(D₁) ≥ :data:`GAP_GROWTH`
       (gaps paired by seed; D₁ is the architecture's shallowest, :data:`MIN_RESIDUAL_DEPTH` for residual;
       :func:`fabook.claims.at_least`); holds if it holds for plain and residual networks, does not hold if
       it fails for one and holds for neither;
    2. sign-concordant feedback with the stabilizers (BN + norm constraint + ``B`` sized like ``W``) stays
       close to BP at every depth — per architecture, depth and sign rule, stabilized − BP ≥ :data:`NEAR_BP`;
       holds if every one holds, does not hold if any fails;
    3. without the stabilizers (no BN, no constraint, ``|B| = 1``) sign-concordant feedback degrades in the
       deeper networks — on the plain networks, per sign rule, accuracy(D₁) − accuracy(Dₙ) ≥
       :data:`DEPTH_DROP`; holds if it holds for uSF and frSF;
    4. in the deepest plain network FA's updates in the lower layers (the lower half of the weight layers)
       are further from BP's gradient than the stabilized sign rules' — per seed, FA's mean update–BP angle
       over those layers (last epoch) minus the sign rule's ≥ :data:`ANGLE_MARGIN` (paired by seed); holds if
       it holds for uSF and frSF, does not hold if either fails;
    5. the obstacle to depth is feedback not sized like W: in the deepest plain network at initialization the
       unstabilized sign rules' error reaching the input layer is off BP's by ≥ :data:`ERROR_DECADES` decade
       (``|log₁₀ ratio|`` per seed), while with the stabilizers every layer's error stays within it of BP's,
       at initialization and after training (the largest ``|log₁₀ ratio|`` over layers and recorded epochs,
       per seed); holds if all four parts hold, does not hold if any fails.
    """
    depths = sorted(summary.depth.unique())
    d1, dn = depths[0], depths[-1]
    out = []

    parts, texts = [], []
    for model, arch in ARCHS.items():
        own = sorted(summary.depth[summary.model == model].unique())
        lo, hi = own[0], own[-1]
        if lo == hi:
            parts.append(cl.INCONCLUSIVE)
            texts.append(f"{arch}: one depth only ({lo})")
            continue
        bp = {d: _pct(summary, model=model, depth=d, rule="bp", recipe=REFERENCE) for d in (lo, hi)}
        fa = {d: _pct(summary, model=model, depth=d, rule="fa", recipe=REFERENCE) for d in (lo, hi)}
        gaps = {d: bp[d] - fa[d] for d in (lo, hi)}
        measured, verdict = cl.at_least(gaps[hi], gaps[lo], GAP_GROWTH, unit=" pts")
        parts.append(verdict)
        texts.append(
            f"{arch}: gap {gaps[lo].mean():.1f} (depth {lo}) → {gaps[hi].mean():.1f} pts (depth {hi}), "
            f"growth {measured}"
        )
    out.append(cl.Claim(
        "FA's gap to BP grows with depth",
        f"per architecture, (BP − FA) at the deepest − at the shallowest network ≥ {GAP_GROWTH:g} pts",
        "; ".join(texts), _combine(parts),
    ))  # fmt: skip

    parts, worst = [], None
    stab = ", ".join(STABILIZED)
    for model, arch in ARCHS.items():
        for d in sorted(summary.depth[summary.model == model].unique()):
            bp = _pct(summary, model=model, depth=d, rule="bp", recipe=REFERENCE)
            for rule in SIGN_RULES:
                sign = _pct(summary, model=model, depth=d, rule=rule, recipe=stab)
                measured, verdict = cl.at_least(sign, bp, NEAR_BP, unit=" pts")
                parts.append(verdict)
                diff = sign.mean() - bp.mean()
                if worst is None or diff < worst[0]:
                    worst = (diff, f"worst: {rule} {arch} depth {d}, {measured}")
    n_ok = sum(v == cl.HOLDS for v in parts)
    out.append(cl.Claim(
        "Sign-concordant feedback with the stabilizers stays close to BP at every depth",
        f"per architecture, depth and sign rule: stabilized − BP ≥ {NEAR_BP:g} pts; holds if all do",
        f"holds for {n_ok}/{len(parts)}; {worst[1] if worst else 'n/a'}", _all_hold(parts),
    ))  # fmt: skip

    parts, texts = [], []
    unstab = ", ".join(UNSTABILIZED)
    for rule in SIGN_RULES:
        shallow = _pct(summary, model="deepcnn", depth=d1, rule=rule, recipe=unstab)
        deep = _pct(summary, model="deepcnn", depth=dn, rule=rule, recipe=unstab)
        measured, verdict = cl.at_least(shallow, deep, DEPTH_DROP, unit=" pts")
        parts.append(verdict)
        texts.append(f"{rule}: {shallow.mean():.1f} % → {deep.mean():.1f} %, drop {measured}")
    out.append(cl.Claim(
        "Without the stabilizers, sign-concordant feedback degrades in the deeper networks",
        f"plain networks, per sign rule: accuracy at depth {d1} − at depth {dn} ≥ {DEPTH_DROP:g} pts",
        "; ".join(texts), _combine(parts),
    ))  # fmt: skip

    angles = _last(_layers(history, ("grad_angle",), ANGLE_METHODS))
    parts, texts = [], []
    if not angles.empty:
        lower = angles[angles["index"] <= angles["index"].max() // 2]
        per_seed = lower.groupby(["method", "seed"]).value.mean()
        fa = per_seed.get("fa", pd.Series(dtype=float))
        for rule in SIGN_RULES:
            method = _name(rule, STABILIZED)
            sign = per_seed.get(method, pd.Series(dtype=float))
            measured, verdict = _paired(fa, sign, ANGLE_MARGIN, "°")
            parts.append(verdict)
            texts.append(f"FA {_text(fa, '°')} − {rule} {_text(sign, '°')}: {measured}")
    out.append(cl.Claim(
        "In the deepest network FA's lower-layer updates are far from BP's gradient, sign-concordant not",
        f"depth {dn}, plain, lower half of the layers, last epoch: FA's mean update–BP angle − the "
        f"stabilized sign rule's ≥ {ANGLE_MARGIN:g}° (paired by seed), for uSF and frSF",
        "; ".join(texts) or "no angles measured", _all_hold(parts) if parts else cl.INCONCLUSIVE,
    ))  # fmt: skip

    errors = _layers(history, ("error_ratio",), OBSTACLE_METHODS)
    parts, texts = [], []
    if not errors.empty:
        decades = errors.assign(value=np.abs(np.log10(errors.value)))
        for rule in SIGN_RULES:
            unstab_rows = decades[(decades.method == _name(rule, UNSTABILIZED)) & (decades.epoch == 0)]
            at_input = unstab_rows[unstab_rows["index"] == 1].set_index("seed").value
            parts.append(_test(at_input, lambda e: e >= ERROR_DECADES, lambda e: e < ERROR_DECADES))
            texts.append(f"{rule} unstabilized, input layer at init: {_text(at_input, ' decades', 2)}")
        for rule in SIGN_RULES:
            stab_rows = decades[decades.method == _name(rule, STABILIZED)]
            worst_layer = stab_rows.groupby("seed").value.max()
            parts.append(_test(worst_layer, lambda e: e < ERROR_DECADES, lambda e: e >= ERROR_DECADES))
            texts.append(f"{rule} stabilized, worst layer and epoch: {_text(worst_layer, ' decades', 2)}")
    out.append(cl.Claim(
        "Feedback not sized like W is an obstacle that compounds with depth; the stabilizers remove it",
        f"depth {dn}, plain, |log₁₀(‖δy‖ rule / ‖δy‖ BP)|: unstabilized at the input layer at init ≥ "
        f"{ERROR_DECADES:g}; stabilized at every layer, init and trained, < {ERROR_DECADES:g}",
        "; ".join(texts) or "no errors measured", _all_hold(parts) if parts else cl.INCONCLUSIVE,
    ))  # fmt: skip
    return cl.table(out, scale)


# figures ---------------------------------------------------------------------------------------------------


METHODS = ("bp", "fa", *(_name(r, rec) for rec in (STABILIZED, BN_ONLY, UNSTABILIZED) for r in SIGN_RULES))
"""Every method a figure draws, in legend order."""
PALETTE = dict(zip(METHODS, sns.color_palette("tab10", len(METHODS)), strict=True))
"""One colour per method, the same in every figure."""


def _hue(order: list[str]) -> dict:
    """seaborn's arguments for one line per method, in ``order``, in the method's own colour."""
    return dict(hue="method", hue_order=order, palette={m: PALETTE[m] for m in order})


def _legend_right(axes: list, title: str) -> None:
    """One legend, right of the last panel."""
    for ax in axes[:-1]:
        if ax.get_legend():
            ax.get_legend().remove()
    if axes[-1].get_legend():
        axes[-1].legend(title=title, loc="center left", bbox_to_anchor=(1.0, 0.5))


def depth_figure(summary: pd.DataFrame, scale: str) -> Figure:
    """Test accuracy against depth, one panel per architecture, one line per method (mean ± sd)."""
    sweep = _depth_cells(summary)
    order = _method_order(sweep)
    fig, axes = plt.subplots(1, len(ARCHS), figsize=(10, 3.8), sharey=True)
    for ax, arch in zip(axes, ARCHS.values(), strict=True):
        part = sweep[sweep.arch == arch]
        sns.lineplot(data=part, x="depth", y="test_pct", **_hue(order), style="method",
                     style_order=order, markers=True, dashes=False, errorbar="sd", ax=ax)  # fmt: skip
        ax.axhline(_chance(summary), color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set_title(f"{arch} networks")
        ax.set_xlabel("weight layers")
        ax.set_ylabel("test accuracy (%)")
        ax.set_xticks(sorted(part.depth.unique()))
    _legend_right(list(axes), "rule (recipe)")
    fig.suptitle(f"Fashion-MNIST, scale {scale}")
    fig.tight_layout()
    return fig


def plateau_figure(history: pd.DataFrame, summary: pd.DataFrame, scale: str) -> Figure:
    """Validation accuracy per epoch in the deepest plain and residual networks, the methods the claims read
    that did not diverge (mean ± sd over seeds): where training stands when it ends."""
    cells = _depth_cells(summary)
    cells = cells[(cells.depth == cells.depth.max()) & ~cells.diverged.astype(bool)]
    val = history[(history.metric == "val_acc") & history.key.isin(cells.key) & (history.epoch > 0)]
    val = val.assign(pct=100 * val.value, arch=val.model.map(ARCHS))
    order = _method_order(cells)
    fig, axes = plt.subplots(1, len(ARCHS), figsize=(10, 3.6), sharey=True)
    for ax, arch in zip(axes, ARCHS.values(), strict=True):
        part = val[val.arch == arch]
        if not part.empty:
            sns.lineplot(data=part, x="epoch", y="pct", **_hue(order), marker="o",
                         errorbar="sd", ax=ax)  # fmt: skip
        ax.set_title(f"{arch}, depth {int(cells.depth.max()) if not cells.empty else '?'}")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("validation accuracy (%)")
    _legend_right(list(axes), "rule (recipe)")
    fig.suptitle(f"validation accuracy per epoch (cosine lr), scale {scale}")
    fig.tight_layout()
    return fig


def ablation_figure(summary: pd.DataFrame, scale: str) -> Figure:
    """The deepest plain network: sign rules' accuracy per stabilizers, bars per rule × feedback size."""
    deep = _ablation_cells(summary).assign(
        condition=lambda f: [f"{r}, {s}" for r, s in zip(f.rule, f.feedback, strict=True)]
    )
    fig, ax = plt.subplots(figsize=(8, 3.8))
    hue_order = [f"{r}, {f}" for r in SIGN_RULES for f in FEEDBACK_SCALES.values()]
    sns.barplot(data=deep, x="stabilizers", y="test_pct", hue="condition", order=list(STABILIZERS),
                hue_order=hue_order, errorbar="sd", ax=ax)  # fmt: skip
    ref = _reference(summary, "deepcnn", deep.depth.max())
    for rule, style in (("bp", "-"), ("fa", ":")):
        if (ref.rule == rule).any():
            ax.axhline(
                ref[ref.rule == rule].test_pct.mean(), color="black", linestyle=style, label=f"{rule} (BN)"
            )
    ax.set_xlabel("stabilizers (BN: batch norm; norm: W held at its initial norm)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"depth {deep.depth.max()}, plain, scale {scale}")
    ax.legend(title="rule, feedback", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def angle_figure(history: pd.DataFrame, scale: str) -> Figure:
    """The deepest plain network after training: per layer (input first), the angle between W and B and
    between the update and BP's gradient, one line per method (mean ± sd over seeds)."""
    rows = _last(_layers(history, ("weight_angle", "grad_angle"), ANGLE_METHODS))
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    titles = {"weight_angle": "W vs B", "grad_angle": "update vs BP gradient"}
    order = _method_order(rows) if not rows.empty else []
    for ax, (metric, title) in zip(axes, titles.items(), strict=True):
        part = rows[rows.metric == metric] if not rows.empty else rows
        if not part.empty:
            sns.lineplot(data=part, x="index", y="value", **_hue(order), marker="o",
                         errorbar="sd", ax=ax)  # fmt: skip
        ax.set_title(title)
        ax.set_xlabel("layer (1 = input side)")
        ax.set_ylabel("angle (degrees)")
    _legend_right(list(axes), "rule (recipe)")
    depth = int(rows.depth.max()) if not rows.empty else "?"
    fig.suptitle(f"depth {depth}, plain network, after training, scale {scale}")
    fig.tight_layout()
    return fig


def obstacle_figure(history: pd.DataFrame, scale: str) -> Figure:
    """The deepest plain network, per layer (input first): the error reaching the layer against BP's at
    initialization and after training, and ``‖B‖/‖W‖`` after training (log scales; mean over seeds). The
    unstabilized rules, which diverge, appear at initialization only."""
    errors = _layers(history, ("error_ratio", "norm_ratio"), OBSTACLE_METHODS)
    panels = {"error at init": ("error_ratio", True), "error trained": ("error_ratio", False),
              "‖B‖/‖W‖ trained": ("norm_ratio", False)}  # fmt: skip
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    order = _method_order(errors) if not errors.empty else []
    for ax, (title, (metric, init)) in zip(axes, panels.items(), strict=True):
        if not errors.empty:
            part = errors[errors.metric == metric]
            part = part[part.epoch == 0] if init else _trained(part)
            if not part.empty:
                sns.lineplot(data=part, x="index", y="value", **_hue(order), marker="o",
                             errorbar=None, ax=ax)  # fmt: skip
        ax.axhline(1.0, color="grey", linewidth=1)
        for level in (10.0**ERROR_DECADES, 10.0**-ERROR_DECADES):
            ax.axhline(level, color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("layer (1 = input side)")
        ax.set_ylabel("rule / BP (error), ‖B‖/‖W‖")
    _legend_right(list(axes), "rule (recipe)")
    depth = int(errors.depth.max()) if not errors.empty else "?"
    fig.suptitle(f"depth {depth}, plain network: the error each layer receives against BP's, scale {scale}")
    fig.tight_layout()
    return fig
