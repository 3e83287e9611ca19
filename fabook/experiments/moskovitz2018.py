"""Moskovitz, Litwin-Kumar & Abbott (2018), "Feedback alignment in deep convolutional networks".

The study: convolutional networks of increasing depth, plain and residual (:class:`fabook.models.DeepCNN`),
trained with BP, FA and the sign-concordant uSF and frSF; for the sign rules, the stabilizers one at a time
(batch norm, the norm constraint of :mod:`fabook.norm_constraint`, both) and the feedback's scale
(``|B| = 1`` against ``|B| = 1/√fan_in``, W's size); per-layer angles in the deepest network. Four claims are
checked (:func:`claims`), each with its test and margin fixed here before any run. The paper's own numbers
could not be obtained: the chapter reports ours only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from fabook import claims as cl
from fabook import data
from fabook.book import check_scale
from fabook.cli import runs_dir
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
FEEDBACK_SCALES = {1.0: "|B| = 1", "fan_in": "|B| = 1/√fan_in"}
"""The sign rules' ``scale`` option -> label. ``1/√fan_in`` is the size of W's entries at initialization
(He init: √2/√fan_in), the paper's "feedback scaled to W"; ``1`` is Liao et al.'s ``|B| = 1``."""
FA_OPTIONS = {"init": "weight"}
"""FA's random ``B`` drawn with the root-mean-square of the layer's own weight (so ``Bᵀ δy`` has ``Wᵀ δy``'s
size), given explicitly so that a change of the rule's default does not change the recipe."""
STABILIZED = ("BN+norm", "|B| = 1/√fan_in")
"""The sign rules' full recipe (all stabilizers), compared with BP at every depth."""
UNSTABILIZED = ("none", "|B| = 1")
"""The sign rules without any stabilizer."""
REFERENCE = "BN"
"""BP's and FA's recipe: the same networks with batch norm, no norm constraint."""

OPTIMIZER = dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4, batch_size=128)
"""Every rule, every recipe (chosen so that BP trains the deepest plain network without batch norm)."""

SETTINGS = {
    "smoke": dict(dataset=SMOKE_DATASET, depths=(2, 5), width=4, epochs=1, seeds=1, max_train=1000,
                  max_test=300, imagenet=False, device="cpu"),
    "cpu": dict(dataset="fashion-mnist", depths=(2, 5, 8), width=8, epochs=3, seeds=2, max_train=6000,
                max_test=2000, imagenet=False, device="cpu"),
    "paper": dict(dataset="fashion-mnist", depths=(2, 5, 8, 14, 20), width=16, epochs=20, seeds=3,
                  max_train=None, max_test=None, imagenet=True, device="cuda"),
}  # fmt: skip
"""Per scale: the Fashion-MNIST studies; ``paper`` adds ImageNet ResNet-18 (:data:`IMAGENET`)."""

IMAGENET = dict(
    dataset="imagenet", model="resnet18", optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4,
    batch_size=256, epochs=90, schedule="step:30,60", num_workers=8, metrics_every=10, device="cuda",
)  # fmt: skip
"""The ``paper`` scale's ImageNet cells (torchvision's ResNet-18 recipe): BP, FA and the stabilized uSF
(ResNet-18 has batch norm built in; + norm constraint, ``|B| = 1/√fan_in``); one seed."""

MIN_RESIDUAL_DEPTH = 5
"""Below it (depth 2: the first convolution and the head) there is no residual unit and the two families are
the same network, so only the plain one is trained."""

LOWER_ANGLE = 60.0
"""Claim 4's level (degrees): the lower layers' update is "far from BP's gradient" above it."""


@dataclass(frozen=True)
class Params:
    """The notebook's knobs: ``scale`` (smoke | cpu | paper); overrides of the scale's ``seeds`` and
    ``epochs``; ``jobs`` (parallel cells; default 1 at smoke, 2 otherwise); ``imagenet_root``, a folder
    holding ImageNet's ``train/`` and ``val/`` (or an ``imagenet/`` folder with them), for ``paper``."""

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
        s["jobs"] = self.jobs or (1 if self.scale == "smoke" else 2)
        return s

    @property
    def out_dir(self):
        return runs_dir() / NOTEBOOK / self.scale


def _sign_cell(rule: str, stabilizers: str, feedback: str) -> dict:
    bn, norm = STABILIZERS[stabilizers]
    scale = next(k for k, v in FEEDBACK_SCALES.items() if v == feedback)
    return dict(rule=rule, rule_options={"scale": scale}, batch_norm=bn, constrain_norm=norm)


def conditions(params: Params) -> list[dict]:
    """One dict of config fields per condition (no seed): the depth sweep (both architectures; BP, FA and the
    stabilized sign rules; the unstabilized sign rules on the plain networks; the residual ones from
    :data:`MIN_RESIDUAL_DEPTH`) and, in the deepest plain network, every stabilizer × feedback scale for the
    sign rules. Duplicates are dropped."""
    s = params.settings
    deepest = max(s["depths"])
    base = dict(dataset=s["dataset"], width=s["width"], epochs=s["epochs"], max_train=s["max_train"],
                max_test=s["max_test"], device=s["device"], **OPTIMIZER)  # fmt: skip
    out = []
    for model in ARCHS:
        for depth in s["depths"]:
            if model == "deepcnn-res" and depth < MIN_RESIDUAL_DEPTH:
                continue
            cell = {**base, "model": model, "depth": depth, "metrics_every": int(depth == deepest)}
            out += [{**cell, "rule": "bp", "batch_norm": True}]
            out += [{**cell, "rule": "fa", "rule_options": FA_OPTIONS, "batch_norm": True}]
            out += [{**cell, **_sign_cell(r, *STABILIZED)} for r in SIGN_RULES]
            if model == "deepcnn":
                out += [{**cell, **_sign_cell(r, *UNSTABILIZED), "metrics_every": 0} for r in SIGN_RULES]
    cell = {**base, "model": "deepcnn", "depth": deepest, "metrics_every": 0}
    for rule in SIGN_RULES:
        for stabilizers in STABILIZERS:
            for feedback in FEEDBACK_SCALES.values():
                out.append({**cell, **_sign_cell(rule, stabilizers, feedback)})
    unique = {}
    for c in out:
        key = tuple(sorted((k, str(v)) for k, v in c.items() if k != "metrics_every"))
        unique.setdefault(key, c)
    return list(unique.values())


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
    """The Fashion-MNIST study as one sweep: conditions × seeds."""
    seeds = range(params.settings["seeds"])
    cells = [{**c, "seed": seed} for c in conditions(params) for seed in seeds]
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
    stab, unstab = ", ".join(STABILIZED), ", ".join(UNSTABILIZED)
    names = {stab: "stabilized", unstab: "unstabilized"}
    frame["method"] = [
        f"{r} ({names.get(rec, rec)})" if r in SIGN_RULES else r
        for r, rec in zip(frame.rule, frame.recipe, strict=True)
    ]
    return frame


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
    scale (columns), mean ± sd over seeds; BP's and FA's (with BN) beside them."""
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


def angle_table(history: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Per layer of the deepest plain network (input first), after training: the angle between W and B and
    between the rule's update and BP's gradient, mean over seeds, per method."""
    rows = _angles(history)
    if rows.empty:
        return pd.DataFrame(columns=["scale", "layer"])
    table = rows.pivot_table(index=["index", "layer"], columns=["metric", "method"], values="value")
    table = table.round(1)
    names = {"weight_angle": "W–B", "grad_angle": "update–BP"}
    table.columns = [f"{names[m]} {meth} (°)" for m, meth in table.columns]
    table = table.reset_index().drop(columns="index")
    table.insert(0, "scale", scale)
    return table


def imagenet_table(imagenet: pd.DataFrame) -> pd.DataFrame:
    """The ``paper`` scale's ImageNet ResNet-18 cells: top-1 test accuracy and whether training diverged."""
    if imagenet.empty:
        return pd.DataFrame(columns=["scale", "method", "top-1 %", "diverged", "epochs"])
    out = imagenet.assign(scale="paper")[["scale", "method", "test_pct", "diverged", "epochs_run"]]
    return out.rename(columns={"test_pct": "top-1 %", "epochs_run": "epochs"}).round(2)


# cells the claims and tables use ---------------------------------------------------------------------------


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
    names = ["bp", "fa"] + [f"{r} ({k})" for k in ("stabilized", "unstabilized") for r in SIGN_RULES]
    return [n for n in names if n in set(frame.method)]


def _pct(summary: pd.DataFrame, **where: object) -> pd.Series:
    """Test accuracy % per seed of the cells matching ``where`` (column == value), indexed by seed."""
    part = summary
    for column, value in where.items():
        part = part[part[column] == value]
    return part.set_index("seed").test_pct


def _angles(history: pd.DataFrame) -> pd.DataFrame:
    """Per-layer angles at the last measured epoch of the deepest plain network's depth-sweep cells (from a
    history with :func:`run`'s ``method`` column), with ``index`` (1 = the input layer)."""
    if history.empty or "layer" not in history:
        return pd.DataFrame()
    rows = history[history.metric.isin(["weight_angle", "grad_angle"]) & (history.layer != "")]
    rows = rows[rows.model == "deepcnn"]
    if rows.empty:
        return pd.DataFrame()
    rows = rows[rows.depth == rows.depth.max()]
    rows = rows[rows.epoch == rows.groupby("key").epoch.transform("max")]
    order = sorted(rows.layer.unique(), key=layer_order)
    return rows.assign(index=rows.layer.map({n: i + 1 for i, n in enumerate(order)}))


def _chance(summary: pd.DataFrame) -> float:
    """Chance accuracy % of the summary's data set."""
    return 100 / data.get_info(summary.dataset.iloc[0]).num_classes


def _combine(verdicts: list[str]) -> str:
    """Holds if every part holds; does not hold if some part does not and none holds; else inconclusive."""
    if verdicts and all(v == cl.HOLDS for v in verdicts):
        return cl.HOLDS
    if cl.FAILS in verdicts and cl.HOLDS not in verdicts:
        return cl.FAILS
    return cl.INCONCLUSIVE


def _beyond(values: pd.Series, level: float) -> tuple[str, str]:
    """Is the mean of ``values`` above ``level``? ``"above"``/``"below"`` when mean ± 2 SE is entirely on one
    side, ``"unsure"`` otherwise (or with fewer than 2 values); and the text ``"72.1 ± 3.0°"``."""
    v = pd.Series(values, dtype=float).dropna()
    if v.empty:
        return "unsure", "n/a"
    if len(v) < 2:
        return "unsure", f"{v.mean():.1f}° (1 seed)"
    half = 2 * v.std(ddof=1) / np.sqrt(len(v))
    side = "above" if v.mean() - half > level else "below" if v.mean() + half < level else "unsure"
    return side, f"{v.mean():.1f} ± {half:.1f}°"


# the claims ------------------------------------------------------------------------------------------------


def claims(summary: pd.DataFrame, history: pd.DataFrame, scale: str) -> pd.DataFrame:
    """The four claims, each with its statistic and margin (fixed before any run; D₁, Dₙ: the shallowest and
    the deepest network of the sweep; accuracies are test accuracy in points, decided on the difference of
    the seed means ± 2 standard errors by :func:`fabook.claims.at_least`):

    1. FA's gap to BP grows with depth — per architecture, (BP − FA)(Dₙ) − (BP − FA)(D₁) ≥ 2 points (gaps
       paired by seed; D₁ is the architecture's shallowest, :data:`MIN_RESIDUAL_DEPTH` for residual); holds
       if it holds for plain and residual networks, does not hold if it fails for one and holds for neither;
    2. sign-concordant feedback with the stabilizers (BN + norm constraint + ``|B| = 1/√fan_in``) stays
       within 3 points of BP at every depth — per architecture, depth and sign rule, stabilized − BP ≥ −3
       points; holds if every one holds, does not hold if any fails;
    3. without the stabilizers (no BN, no constraint, ``|B| = 1``) sign-concordant feedback degrades in the
       deeper networks — on the plain networks, per sign rule, accuracy(D₁) − accuracy(Dₙ) ≥ 5 points;
       holds if it holds for uSF and frSF;
    4. in the deepest plain network FA's updates in the lower layers (the lower half of the weight layers)
       are far from BP's gradient, the stabilized sign-concordant ones are not — the mean angle between
       update and BP gradient over those layers (last epoch, per seed; mean ± 2 SE) is above
       :data:`LOWER_ANGLE` for FA and below it for uSF and frSF; does not hold if FA's is below or a sign
       rule's above; else inconclusive.
    """
    depths = sorted(summary.depth.unique())
    d1, dn = depths[0], depths[-1]
    out = []

    parts, texts = [], []
    for model, arch in ARCHS.items():
        own = sorted(summary.depth[summary.model == model].unique())
        lo, hi = own[0], own[-1]
        bp = {d: _pct(summary, model=model, depth=d, rule="bp", recipe=REFERENCE) for d in (lo, hi)}
        fa = {d: _pct(summary, model=model, depth=d, rule="fa", recipe=REFERENCE) for d in (lo, hi)}
        gaps = {d: bp[d] - fa[d] for d in (lo, hi)}
        measured, verdict = cl.at_least(gaps[hi], gaps[lo], 2.0, unit=" pts")
        parts.append(verdict)
        texts.append(
            f"{arch}: gap {gaps[lo].mean():.1f} (depth {lo}) → {gaps[hi].mean():.1f} pts (depth {hi}), "
            f"growth {measured}"
        )
    out.append(cl.Claim(
        "FA's gap to BP grows with depth",
        "per architecture, (BP − FA) at the deepest − at the shallowest network ≥ 2 pts (± 2 SE over seeds)",
        "; ".join(texts), _combine(parts),
    ))  # fmt: skip

    parts, worst = [], None
    stab = ", ".join(STABILIZED)
    for model, arch in ARCHS.items():
        for d in sorted(summary.depth[summary.model == model].unique()):
            bp = _pct(summary, model=model, depth=d, rule="bp", recipe=REFERENCE)
            for rule in SIGN_RULES:
                sign = _pct(summary, model=model, depth=d, rule=rule, recipe=stab)
                measured, verdict = cl.at_least(sign, bp, -3.0, unit=" pts")
                parts.append(verdict)
                diff = sign.mean() - bp.mean()
                if worst is None or diff < worst[0]:
                    worst = (diff, f"worst: {rule} {arch} depth {d}, {measured}")
    n_ok = sum(v == cl.HOLDS for v in parts)
    verdict = cl.FAILS if cl.FAILS in parts else _combine(parts)
    out.append(cl.Claim(
        "Sign-concordant feedback with the stabilizers stays close to BP at every depth",
        "per architecture, depth and sign rule: stabilized − BP ≥ −3 pts (± 2 SE); holds if all do",
        f"holds for {n_ok}/{len(parts)}; {worst[1] if worst else 'n/a'}", verdict,
    ))  # fmt: skip

    parts, texts = [], []
    unstab = ", ".join(UNSTABILIZED)
    for rule in SIGN_RULES:
        shallow = _pct(summary, model="deepcnn", depth=d1, rule=rule, recipe=unstab)
        deep = _pct(summary, model="deepcnn", depth=dn, rule=rule, recipe=unstab)
        measured, verdict = cl.at_least(shallow, deep, 5.0, unit=" pts")
        parts.append(verdict)
        texts.append(f"{rule}: {shallow.mean():.1f} % → {deep.mean():.1f} %, drop {measured}")
    out.append(cl.Claim(
        "Without the stabilizers, sign-concordant feedback degrades in the deeper networks",
        f"plain networks, per sign rule: accuracy at depth {d1} − at depth {dn} ≥ 5 pts (± 2 SE)",
        "; ".join(texts), _combine(parts),
    ))  # fmt: skip

    angles = _angles(history)
    sides, texts = {}, []
    if not angles.empty:
        lower = angles[(angles.metric == "grad_angle") & (angles["index"] <= angles["index"].max() // 2)]
        per_seed = lower.groupby(["method", "seed"]).value.mean()
        for method in ["fa"] + [f"{r} (stabilized)" for r in SIGN_RULES]:
            values = (
                per_seed[method] if method in per_seed.index.get_level_values(0) else pd.Series(dtype=float)
            )
            sides[method], text = _beyond(values, LOWER_ANGLE)
            texts.append(f"{method} {text}")
    fa_side, sign_sides = sides.get("fa", "unsure"), [v for k, v in sides.items() if k != "fa"]
    if fa_side == "above" and sign_sides and all(s == "below" for s in sign_sides):
        verdict = cl.HOLDS
    elif fa_side == "below" or "above" in sign_sides:
        verdict = cl.FAILS
    else:
        verdict = cl.INCONCLUSIVE
    out.append(cl.Claim(
        "In the deepest network FA's lower-layer updates are far from BP's gradient, sign-concordant not",
        f"depth {dn}, plain: mean update–BP angle over the lower half of the layers (± 2 SE) "
        f"> {LOWER_ANGLE:g}° for FA, < {LOWER_ANGLE:g}° for stabilized uSF and frSF",
        "; ".join(texts) or "no angles measured", verdict,
    ))  # fmt: skip
    return cl.table(out, scale)


# figures ---------------------------------------------------------------------------------------------------


def depth_figure(summary: pd.DataFrame, scale: str) -> Figure:
    """Test accuracy against depth, one panel per architecture, one line per method (mean ± sd)."""
    sweep = _depth_cells(summary)
    order = _method_order(sweep)
    fig, axes = plt.subplots(1, len(ARCHS), figsize=(10, 3.8), sharey=True)
    for ax, arch in zip(axes, ARCHS.values(), strict=True):
        part = sweep[sweep.arch == arch]
        sns.lineplot(data=part, x="depth", y="test_pct", hue="method", hue_order=order, style="method",
                     style_order=order, markers=True, dashes=False, errorbar="sd", ax=ax)  # fmt: skip
        ax.axhline(_chance(summary), color="grey", linestyle="--", linewidth=1, label="chance")
        ax.set_title(f"{arch} networks")
        ax.set_xlabel("weight layers")
        ax.set_ylabel("test accuracy (%)")
        ax.set_xticks(sorted(part.depth.unique()))
        if ax is axes[0] and ax.get_legend():
            ax.get_legend().remove()
        elif ax.get_legend():
            ax.legend(title="rule (recipe)", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.suptitle(f"Fashion-MNIST, scale {scale}")
    fig.tight_layout()
    return fig


def ablation_figure(summary: pd.DataFrame, scale: str) -> Figure:
    """The deepest plain network: sign rules' accuracy per stabilizers, bars per rule × feedback scale."""
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
    rows = _angles(history)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    titles = {"weight_angle": "W vs B", "grad_angle": "update vs BP gradient"}
    order = _method_order(rows) if not rows.empty else []
    for ax, (metric, title) in zip(axes, titles.items(), strict=True):
        part = rows[rows.metric == metric] if not rows.empty else rows
        if not part.empty:
            sns.lineplot(data=part, x="index", y="value", hue="method", hue_order=order, marker="o",
                         errorbar="sd", ax=ax)  # fmt: skip
        ax.axhline(LOWER_ANGLE, color="grey", linestyle=":", linewidth=1)
        ax.set_title(title)
        ax.set_xlabel("layer (1 = input side)")
        ax.set_ylabel("angle (degrees)")
        if ax is axes[0] and ax.get_legend():
            ax.get_legend().remove()
        elif ax.get_legend():
            ax.legend(title="rule (recipe)", loc="center left", bbox_to_anchor=(1.0, 0.5))
    depth = int(rows.depth.max()) if not rows.empty else "?"
    fig.suptitle(f"depth {depth}, plain network, after training, scale {scale}")
    fig.tight_layout()
    return fig
