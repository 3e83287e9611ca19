"""Li & Benna (2024), product feedback alignment (PFA): BP, FA, DFA, sign symmetry, PFA and PFA-o compared on
an MLP and a ResNet-20, the alignment of each rule's feedback and updates, sparse feedback (PFA over the
official density grid, FA, DFA and sign symmetry at its lowest density and at full density), the expansion
ratio, and PFA's lack of weight symmetry.

The recipe follows the official code's configs (jil095/product_feedback_alignment): SGD with momentum 0.9,
weight decay 1e-4 for every rule but PFA, whose large first-epoch decay is cut once; a multi-step learning
rate; DFA with a smaller learning rate on the ResNet; sparse PFA masks B and R at the same density, sparse
FA, DFA and sign symmetry mask their single feedback matrix (no rescale, as the official code). A reduced
scale keeps the recipe's proportions (:func:`cell`, :func:`regime_table`). Six claims are checked
(:func:`claims`), each with its test and margin fixed here before any run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

import fabook
from fabook import claims as cl
from fabook import data, regime, train
from fabook.book import check_scale
from fabook.cli import runs_dir
from fabook.metrics import angle_deg
from fabook.notebook import check_positive, require_data
from fabook.plots import layer_order
from fabook.sweep import history_frame, read_results, run_sweep

NOTEBOOK = "li2024_product_feedback_alignment"
SMOKE_DATASET = "fashion-mnist-small"
"""The data set of the smoke scale (both models)."""

RULES = ("bp", "fa", "dfa", "usf", "pfa", "pfa-o")
PFA_RULES = ("pfa", "pfa-o")
LABELS = {"bp": "BP", "fa": "FA", "dfa": "DFA", "usf": "sign symmetry", "pfa": "PFA", "pfa-o": "PFA-o"}
MODELS = ("mlp", "resnet20")
MODEL_LABELS = {"mlp": "MLP", "resnet20": "ResNet-20"}
DENSITIES = (0.05, 0.1, 0.17, 0.3, 0.5, 1.0)
"""Feedback densities of sparse PFA (the official grid): the fraction of entries kept by fixed random masks on
``B`` and, at the same density, on ``R`` (as the official code does)."""
SPARSE_OTHERS = ("fa", "dfa", "usf")
"""The rules the paper's sparse-feedback figure shows beside PFA: FA, DFA and sign symmetry (uSF)."""
OTHER_DENSITIES = (DENSITIES[0], 1.0)
"""Feedback densities of :data:`SPARSE_OTHERS`: the official grid's lowest and full. The official configs
(``exp_configs/mnist_ffn2_bsparse_sgd``) run them over the whole grid, 5 seeds each; the two ends keep the
``cpu`` budget, and the full-density cells are the comparison's own MLP cells."""
EXPANSIONS = (1, 2, 5, 10)
"""Expansion ratios k of PFA (``B`` is out × k·out)."""
STATIC_EXPANSIONS = (1, 2, 3, 5, 10, 20, 50)
"""k of the static computation (the paper's Figure 3): ``R = BᵀW``, no training."""


def pfa_options(k: int = 10, density: float = 1.0) -> dict:
    """PFA's rule options, every one explicit (defaults elsewhere may change); B and R masked alike."""
    return {"k": k, "orthogonal": False, "b_density": density, "r_density": density, "init": "weight"}


RULE_OPTIONS = {
    "fa": {"init": "weight"},
    "usf": {"scale": "weight"},
    "pfa": pfa_options(),
    "pfa-o": {"init": "weight"},
}
"""Explicit options per rule. Sign symmetry is uSF with ``|B|`` = the root-mean-square of the layer's initial
``W``, as the official code scales it (to the init std of W); random feedback (FA's ``B``, PFA's ``R``) is
drawn with the root-mean-square of the layer's ``W``."""

RECIPES = {
    "mlp": dict(model="mlp", depth=2, batch_size=64, lr=0.01, milestones=(0.5, 0.75), gamma=0.5,
                pfa_decay=(0.03, 9e-5), dfa_lr=0.01),
    "resnet20": dict(model="resnet20", batch_size=128, lr=0.1, milestones=(0.4, 0.6, 0.8), gamma=0.1,
                     pfa_decay=(0.005, 1e-4), dfa_lr=0.001),
}  # fmt: skip
"""The official configs: MNIST MLP (lr 0.01, ×0.5 at epochs 20 and 30 of 40; PFA decay 0.03 → 9e-5) and
CIFAR-10 ResNet-20 (lr 0.1, ÷10 at 100, 150, 200 of 250; PFA decay 0.005 → 1e-4; DFA lr 0.001). The
milestones are fractions of the epochs, so a shorter run keeps the schedule's shape. Momentum 0.9; weight
decay 1e-4 for every rule but PFA and PFA-o, which start with ``pfa_decay[0]`` for one epoch and then use
``pfa_decay[1]``."""
MOMENTUM, WEIGHT_DECAY = 0.9, 1e-4
PAPER_DATASETS = {"mlp": "mnist", "resnet20": "cifar10"}

SETTINGS = {
    "smoke": dict(datasets={"mlp": SMOKE_DATASET, "resnet20": SMOKE_DATASET}, max_test=500,
                  mlp=dict(width=64, max_train=1000, epochs=2, batch_size=64, seeds=1, metrics_every=1),
                  resnet20=dict(width=0.125, max_train=300, epochs=1, batch_size=16, seeds=1,
                                metrics_every=1)),
    "cpu": dict(datasets={"mlp": "fashion-mnist", "resnet20": "fashion-mnist"}, max_test=2000,
                mlp=dict(width=128, max_train=6000, epochs=10, batch_size=64, seeds=5, metrics_every=1),
                resnet20=dict(width=0.5, max_train=1600, epochs=10, batch_size=16, seeds=3, metrics_every=5)),
    "paper": dict(datasets=PAPER_DATASETS, max_test=None,
                  mlp=dict(width=512, max_train=None, epochs=40, batch_size=64, seeds=5, metrics_every=1),
                  resnet20=dict(width=1, max_train=None, epochs=250, batch_size=128, seeds=5, metrics_every=5,
                                val_fraction=0.1)),
}  # fmt: skip
"""Per scale and model. The MLP is also the model of the density and expansion sweeps (its k = 10, density 1
PFA cells and its density-1 FA, DFA and sign-symmetry cells are the comparison's). The ResNet's ``width``
multiplies its 16, 32, 64 channels; a ``batch_size`` below the official one scales the learning rate linearly.
At ``paper`` the ResNet holds out 10 % of CIFAR-10's training set (45,000 images train) and keeps the weights
of its best validation epoch, as the official run does. ``cpu`` runs on Fashion-MNIST, which neither of the
paper's settings uses; its sizes are ours: the MLP 2×128 on 6,000 images for 10 epochs (the heavy-decay epoch
is 10 % of the run), the ResNet at half width on 1,600 images at batch 16 for 10 epochs (1,000 steps), both
with PFA's early decay scaled so that its shrink matches the official one; widths and sizes fit the notebook
in ~10 minutes on 2 cores."""

PAPER = {  # test accuracy %, approx. (±0.3), read off the official repository's figures
    "mlp": {"bp": 98.38, "fa": 98.23, "dfa": 98.15, "usf": 98.25, "pfa": 98.39, "pfa-o": 98.42},
    "resnet20": {"bp": 91.44, "fa": 64.5, "dfa": 30.8, "usf": 89.97, "pfa": 90.75, "pfa-o": 91.39},
}
PAPER_SETTING = {"mlp": "MNIST MLP 2×512", "resnet20": "CIFAR-10 ResNet-20"}

MARGINS = dict(match=-2.0, short_resnet=5.0, short_contrast=2.0, angle_wb=20.0, angle_update=10.0,
               sparse=-1.5, sparse_density=0.1, order=2.0, r_angle=75.0, br_angle=30.0)  # fmt: skip
"""The claims' margins, fixed before any run (accuracy points, degrees); see :func:`claims`."""


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
        for arch in MODELS:
            if self.seeds is not None:
                s[arch]["seeds"] = self.seeds
            if self.epochs is not None:
                s[arch]["epochs"] = self.epochs
        return s

    @property
    def out_dir(self):
        return runs_dir() / NOTEBOOK / self.scale


def milestones(fractions: tuple[float, ...], epochs: int) -> str | None:
    """A step schedule at those fractions of ``epochs`` (``None`` when no milestone falls inside)."""
    at = sorted({m for f in fractions if 0 < (m := round(f * epochs)) < epochs})
    return f"step:{','.join(map(str, at))}" if at else None


def _recipe(arch: str, rule: str, options: dict, part: dict, dataset: str, max_test: int | None) -> dict:
    """The official recipe at ``part``'s sizes, PFA's early decay at its official value."""
    r = RECIPES[arch]
    schedule = milestones(r["milestones"], part["epochs"])
    if schedule is not None and r["gamma"] != 0.1:
        schedule += f";gamma={r['gamma']}"
    lr = (r["dfa_lr"] if rule == "dfa" else r["lr"]) * part["batch_size"] / r["batch_size"]
    out = dict(dataset=dataset, model=r["model"], rule=rule, rule_options=options, width=part["width"],
               batch_size=part["batch_size"], optimizer="sgd", lr=float(f"{lr:.4g}"), momentum=MOMENTUM,
               weight_decay=WEIGHT_DECAY, schedule=schedule, epochs=part["epochs"],
               max_train=part["max_train"], max_test=max_test, metrics_every=part["metrics_every"],
               val_fraction=part.get("val_fraction", 0.0))  # fmt: skip
    if arch == "mlp":
        out["depth"] = r["depth"]
    if arch == "resnet20":
        out["augment"] = "crop-flip"
    if rule in PFA_RULES:
        out |= dict(weight_decay=r["pfa_decay"][0], weight_decay_schedule=f"1:{r['pfa_decay'][1]}")
    return out


def exponents(fields: dict) -> tuple[float, float]:
    """``(A₁, A − A₁)``: a cell's decay exponent ``Σ η λ / (1 − μ)`` over its first epoch (PFA's heavy decay)
    and over the rest of the run (:func:`fabook.regime.decay_exponent`); ``exp(−A)`` is the shrink that
    decay alone applies to W (and R) over that part."""
    config = train.Config.from_dict(fields)
    first = regime.decay_exponent(config, first_epochs=1)
    return first, regime.decay_exponent(config) - first


def cell(arch: str, rule: str, options: dict, part: dict, dataset: str, max_test: int | None) -> dict:
    """One cell's config fields (no seed) in the official recipe for ``arch`` ("mlp" | "resnet20") at the
    sizes of ``part``. For PFA and PFA-o the heavy first epoch's decay is rescaled so that its exponent ``A₁``
    (:func:`exponents`) — the shrink ``exp(−A₁)`` it applies to W and R — equals the official run's: fewer
    or smaller steps ask for a larger decay. Every later decay keeps its official value (a shorter run applies
    less of it in all: :func:`regime_table` shows how much); the official cell keeps its values."""
    out = _recipe(arch, rule, options, part, dataset, max_test)
    if rule in PFA_RULES:
        official = _recipe(arch, rule, options, SETTINGS["paper"][arch], PAPER_DATASETS[arch], None)
        out["weight_decay"] = float(f"{out['weight_decay'] * exponents(official)[0] / exponents(out)[0]:.3g}")
    return out


def _check_data(params: Params) -> None:
    require_data(sorted(set(params.settings["datasets"].values())), params.scale, params.download)


def _cells(params: Params, arch: str, rules_options: list[tuple[str, dict]]) -> list[dict]:
    s = params.settings
    return [
        {**cell(arch, rule, options, s[arch], s["datasets"][arch], s["max_test"]), "seed": seed}
        for rule, options in rules_options
        for seed in range(s[arch]["seeds"])
    ]


def comparison_spec(params: Params) -> dict:
    """The paper's comparison: every rule × seed on the MLP and on the ResNet-20."""
    _check_data(params)
    cells = [
        c for arch in MODELS for c in _cells(params, arch, [(r, RULE_OPTIONS.get(r, {})) for r in RULES])
    ]
    return {"name": f"{NOTEBOOK}-comparison", "base": {}, "grid": {}, "conditions": cells}


def sparse_options(rule: str, density: float) -> dict:
    """The options of ``rule`` ("pfa" or one of :data:`SPARSE_OTHERS`) with its feedback kept at ``density``:
    PFA with k = 10 and B and R masked alike; the others with ``density`` added to their :data:`RULE_OPTIONS`
    below 1, and exactly those options at 1, so that the dense cell is the comparison's own."""
    if rule == "pfa":
        return pfa_options(10, density)
    if rule not in SPARSE_OTHERS:
        raise ValueError(f"rule={rule!r} has no sparse cells; expected 'pfa' or one of {SPARSE_OTHERS}")
    options = dict(RULE_OPTIONS.get(rule, {}))
    return options if density == 1 else options | {"density": density}


def sparse_spec(params: Params) -> dict:
    """On the MLP: PFA over feedback densities (k = 10; B and R masked) and expansion ratios (density 1), then
    FA, DFA and sign symmetry at :data:`OTHER_DENSITIES`, the same seeds."""
    _check_data(params)
    rules_options = [("pfa", sparse_options("pfa", d)) for d in DENSITIES]
    rules_options += [("pfa", pfa_options(k, 1.0)) for k in EXPANSIONS]
    rules_options += [(r, sparse_options(r, d)) for r in SPARSE_OTHERS for d in OTHER_DENSITIES]
    return {"name": f"{NOTEBOOK}-sparse", "base": {}, "grid": {},
            "conditions": _cells(params, "mlp", rules_options)}  # fmt: skip


# the quantities that decide the claims ---------------------------------------------------------------------


def _pfa_config(params: Params, arch: str) -> train.Config:
    s = params.settings
    fields = cell(arch, "pfa", RULE_OPTIONS["pfa"], s[arch], s["datasets"][arch], s["max_test"])
    return train.Config.from_dict(fields)


def regime_rows(params: Params, arch: str) -> dict[str, float | int]:
    """The quantities that decide the claims on ``arch``, from its PFA cell at ``params``' scale."""
    c = _pfa_config(params, arch)
    a1, total = regime.decay_exponent(c, first_epochs=1), regime.decay_exponent(c)
    full_lr = sum(lr == c.lr for lr in regime.epoch_lrs(c))
    return {
        "training images": regime.train_size(c),
        "epochs": c.epochs,
        "batch size": c.batch_size,
        "learning rate": c.lr,
        "optimizer steps": regime.steps(c),
        "steps at full learning rate": full_lr * regime.steps_per_epoch(c),
        "heavy-decay share of the run (%)": 100 / c.epochs,
        "heavy decay λ (PFA, PFA-o)": c.weight_decay,
        "later decay λ (PFA, PFA-o)": train.weight_decay_at(c, 2),
        "heavy decay per step, ηλ/(1 − μ)": c.lr * c.weight_decay * regime.momentum_gain(c),
        "heavy-decay shrink of W and R, exp(−A₁)": math.exp(-a1),
        "later shrink, exp(−(A − A₁))": math.exp(a1 - total),
        "seeds": params.settings[arch]["seeds"],
    }


def regime_table(params: Params, arch: str) -> pd.DataFrame:
    """:func:`regime_rows` at every scale (``params`` itself for its own scale, the defaults for the others)
    beside each other, with ``cpu / paper``; the first column names the model."""
    by_scale = {s: regime_rows(params if s == params.scale else Params(scale=s), arch) for s in regime.SCALES}
    rows = {q: {s: by_scale[s][q] for s in regime.SCALES} for q in by_scale["paper"]}
    return regime.table(rows).rename(columns={"quantity": f"{MODEL_LABELS[arch]}: quantity"})


# PFA's weights: no explicit symmetry, and the static limit R = BᵀW ------------------------------------------


def _symmetry_angles(model: torch.nn.Module) -> list[dict]:
    """Per PFA layer: ``angle_br`` = angle(W, B R), ``angle_r`` = the mean over R's k blocks ``R_j`` (rows
    j·out … (j+1)·out, each of W's shape) of angle(W, R_j), and ``angle_gram`` = angle(WᵀW, RᵀR)."""
    rows = []
    for name, layer in fabook.layers.rule_layers(model):
        w, r, b = layer.weight.detach(), layer.feedback_r.detach(), layer.feedback_b
        blocks = r.reshape(b.shape[1] // b.shape[0], *w.shape)
        rows.append(dict(layer=name, angle_br=angle_deg(w, b @ r),
                         angle_r=float(np.mean([angle_deg(w, block) for block in blocks])),
                         angle_gram=angle_deg(w.T @ w, r.T @ r)))  # fmt: skip
    return rows


def symmetry_run(fields: dict) -> pd.DataFrame:
    """Train one PFA (or PFA-o) MLP cell again, here rather than in the engine (whose results keep no
    weights), with the same recipe: model, data, optimizer, schedules and batch order; measure
    :func:`_symmetry_angles` at initialization and after every epoch."""
    cfg = train.Config.from_dict(fields)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)  # as the engine runs a cell: one key, one set of numbers
    try:
        return _symmetry_train(cfg)
    finally:
        torch.set_num_threads(threads)


def _symmetry_train(cfg: train.Config) -> pd.DataFrame:
    train.seed_everything(cfg.seed)
    model = train.build_model(cfg)
    x, y = data.load(cfg.dataset, seed=cfg.seed, max_train=cfg.max_train, max_test=cfg.max_test).train.tensors
    optimizer = train.make_optimizer(cfg, model.parameters())
    scheduler = train.make_scheduler(cfg, optimizer)
    rows = [dict(epoch=0, **a) for a in _symmetry_angles(model)]
    for epoch in range(1, cfg.epochs + 1):
        for group in optimizer.param_groups:
            group["weight_decay"] = train.weight_decay_at(cfg, epoch)
        for idx in torch.randperm(len(y), generator=train.epoch_generator(cfg.seed, epoch)).split(
            cfg.batch_size
        ):
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        rows += [dict(epoch=epoch, **a) for a in _symmetry_angles(model)]
    return pd.DataFrame(rows).assign(rule=cfg.rule, seed=cfg.seed)


SYMMETRY_SEEDS = 3
"""Seeds of the symmetry runs (at most the MLP's): the angles they test are tens of degrees apart."""


def symmetry(params: Params) -> pd.DataFrame:
    """:func:`symmetry_run` for PFA and PFA-o on the MLP, seeds 0 … min(3, the MLP's seeds) − 1."""
    s = params.settings
    seeds = min(SYMMETRY_SEEDS, s["mlp"]["seeds"])
    fields = [cell("mlp", r, RULE_OPTIONS[r], s["mlp"], s["datasets"]["mlp"], None) for r in PFA_RULES]
    return pd.concat([symmetry_run({**f, "seed": seed}) for f in fields for seed in range(seeds)])


def static_alignment(n: int = 512, draws: int = 3) -> pd.DataFrame:
    """The paper's Figure 3, computed: for an n × n layer as fabook draws it (``W``, and PFA's ``B`` with
    expansion ratio k) and ``R = BᵀW`` — where PFA's learning takes ``R`` — the angle between ``W`` and
    ``B R = B Bᵀ W``, per k in :data:`STATIC_EXPANSIONS` and draw, beside the random-matrix prediction
    ``arccos(1/√(1 + 1/k))`` (the mean and mean square of ``B Bᵀ``'s eigenvalues are 1 and 1 + 1/k)."""
    rows = []
    for k in STATIC_EXPANSIONS:
        for draw in range(draws):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(draw)
                layer = fabook.Linear(n, n, rule="pfa", k=k)
            w, b = layer.weight.detach(), layer.feedback_b
            rows.append(dict(k=k, draw=draw, angle=angle_deg(w, (b @ b.T) @ w),
                             predicted=math.degrees(math.acos(1 / math.sqrt(1 + 1 / k)))))  # fmt: skip
    return pd.DataFrame(rows)


def spectrum(k: int, n: int = 512) -> np.ndarray:
    """Eigenvalues of ``B Bᵀ`` for PFA's ``B`` (n outputs, expansion ratio k), one draw."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        b = fabook.Linear(n, n, rule="pfa", k=k).feedback_b.double()
    return torch.linalg.eigvalsh(b @ b.T).numpy()


# runs ------------------------------------------------------------------------------------------------------


@dataclass
class Runs:
    """What the notebook shows: per-cell summaries (``test_pct`` added), per-epoch histories and the
    symmetry runs' angles."""

    comparison: pd.DataFrame
    history: pd.DataFrame
    sparse: pd.DataFrame
    sparse_history: pd.DataFrame
    symmetry: pd.DataFrame


def _with_history(summary: pd.DataFrame, out_dir) -> tuple[pd.DataFrame, pd.DataFrame]:
    summary = summary.copy()
    summary["test_pct"] = 100 * summary.test_acc.astype(float)
    summary["arch"] = summary.model
    keys = set(summary.key)
    return summary, history_frame([r for r in read_results(out_dir) if r.key in keys])


def run(params: Params) -> Runs:
    """Run (or resume) the comparison and the sparse/expansion sweep, then the symmetry runs."""
    comparison = run_sweep(comparison_spec(params), params.out_dir, jobs=params.jobs)
    sparse = run_sweep(sparse_spec(params), params.out_dir, jobs=params.jobs)
    comparison, history = _with_history(comparison, params.out_dir)
    sparse, sparse_history = _with_history(sparse, params.out_dir)
    return Runs(comparison, history, feedback_columns(sparse), sparse_history, symmetry(params))


def training_minutes(runs: Runs) -> float:
    """CPU-minutes of training over the comparison and the sweeps, each cell once (they share dense cells)."""
    cells = pd.concat([runs.comparison, runs.sparse]).drop_duplicates("key")
    return float(cells.wall_time.sum()) / 60


def feedback_columns(summary: pd.DataFrame) -> pd.DataFrame:
    """``summary`` with ``density`` (PFA's ``b_density``, the others' ``density``, 1 when absent) and ``k``
    (PFA's expansion ratio; NaN for the other rules) read from each cell's rule options."""
    options = summary.rule_options
    return summary.assign(density=[float(o.get("b_density", o.get("density", 1.0))) for o in options],
                          k=[float(o.get("k", np.nan)) for o in options])  # fmt: skip


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
            row[f"{MODEL_LABELS[arch]} seeds"] = len(part)
            if scale == "paper":
                row[f"paper, {PAPER_SETTING[arch]} % (approx.)"] = PAPER[arch][rule]
        rows.append(row)
    return pd.DataFrame(rows)


def gaps(summary: pd.DataFrame) -> pd.DataFrame:
    """Per model and rule (BP excluded): mean test accuracy minus BP's, in points, beside the paper's gap on
    CIFAR-10 ResNet-20 (``paper_gap``)."""
    means = summary.groupby(["arch", "rule"]).test_pct.mean()
    rows = [
        dict(
            arch=arch,
            rule=rule,
            gap=means[arch, rule] - means[arch, "bp"],
            paper_gap=PAPER["resnet20"][rule] - PAPER["resnet20"]["bp"],
        )  # fmt: skip
        for arch in MODELS
        for rule in RULES[1:]
        if (arch, "bp") in means and (arch, rule) in means
    ]
    return pd.DataFrame(rows, columns=["arch", "rule", "gap", "paper_gap"])


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
    out = {}
    for key, part in rows.groupby("key"):
        names = sorted(part.layer.unique(), key=layer_order)
        keep = names[1:] if layers == "used" else names[:-1]
        out[key] = part[(part.epoch == part.epoch.max()) & part.layer.isin(keep)].value.mean()
    return pd.Series(out, dtype=float)


def angles(summary: pd.DataFrame, history: pd.DataFrame) -> pd.DataFrame:
    """Per cell, each the mean over layers at the end of training: ``angle_wb`` (W vs the backward weight: B,
    or B·R for PFA), ``norm_ratio`` (‖B‖/‖W‖, ‖B·R‖/‖W‖ for PFA), over the layers whose feedback is used, and
    ``angle_update`` (the rule's weight update vs BP's gradient) over the layers that receive feedback."""
    frame = summary.set_index("key")
    frame["angle_wb"] = _layer_mean(history, "weight_angle", "used")
    frame["norm_ratio"] = _layer_mean(history, "norm_ratio", "used")
    frame["angle_update"] = _layer_mean(history, "grad_angle", "fed")
    return frame.reset_index()


def alignment_table(summary: pd.DataFrame, history: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Per model and rule, the final angles and norm ratio (mean ± sd over seeds); DFA has no per-layer B
    (blank)."""
    frame = angles(summary, history)
    rows = []
    for arch in MODELS:
        for rule in RULES:
            part = frame[(frame.arch == arch) & (frame.rule == rule)]
            if part.empty:
                continue
            has_b = part.angle_wb.notna().any()
            rows.append({"model": MODEL_LABELS[arch], "rule": LABELS[rule], "scale": scale,
                         "angle W–B (°)": _mean_sd(part.angle_wb) if has_b else "",
                         "‖B‖/‖W‖": _mean_sd(part.norm_ratio) if has_b else "",
                         "angle update–BP (°)": _mean_sd(part.angle_update)})  # fmt: skip
    return pd.DataFrame(rows)


def density_sweeps(sparse: pd.DataFrame) -> pd.DataFrame:
    """The density sweeps of ``sparse`` (:func:`feedback_columns` applied): PFA's at k = 10 and the other
    rules', with ``label`` naming the rule."""
    pfa = (sparse.rule == "pfa") & (sparse.k == 10)
    part = sparse[pfa | sparse.rule.isin(SPARSE_OTHERS)]
    return part.assign(label=[f"{LABELS[r]} (k = 10)" if r == "pfa" else LABELS[r] for r in part.rule])


def density_change(sparse: pd.DataFrame, density: float = OTHER_DENSITIES[0]) -> pd.Series:
    """Per rule of the density sweeps (``"pfa"`` and :data:`SPARSE_OTHERS`, those present): mean test
    accuracy at ``density`` minus that at density 1, in points."""
    means = density_sweeps(sparse).groupby(["rule", "density"]).test_pct.mean()
    rules = [r for r in ("pfa", *SPARSE_OTHERS) if (r, density) in means and (r, 1.0) in means]
    return pd.Series({r: means[r, density] - means[r, 1.0] for r in rules}, dtype=float)


def sparse_table(sparse: pd.DataFrame, history: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Sparse feedback on the MLP: per rule and density (PFA at k = 10; FA, DFA, sign symmetry) and per
    expansion ratio of PFA (density 1): test accuracy, its change from density 1 (difference of means), the
    final angle between W and the feedback (B·R for PFA, B for FA and sign symmetry; DFA has none: blank)
    and their norm ratio, each mean ± sd over seeds."""
    frame = angles(sparse, history)
    dens = density_sweeps(frame)
    ks = frame[(frame.rule == "pfa") & (frame.density == 1.0)].assign(label="PFA")
    rows = []
    for sweep, part, by in (("feedback density", dens, "density"), ("PFA's expansion ratio k", ks, "k")):
        for rule in [r for r in ("pfa", *SPARSE_OTHERS) if r in set(part.rule)]:
            one = part[part.rule == rule]
            dense = one[one.density == 1.0].test_pct.mean()
            for v, group in one.groupby(by):
                has_b = group.angle_wb.notna().any()
                change = f"{group.test_pct.mean() - dense:+.2f}" if by == "density" else ""
                rows.append({"rule": group.label.iloc[0], "sweep": sweep, "value": f"{v:g}", "scale": scale,
                             "seeds": len(group), "test accuracy %": _mean_sd(group.test_pct),
                             "change from density 1 (pts)": change,
                             "angle W–feedback (°)": _mean_sd(group.angle_wb) if has_b else "",
                             "‖feedback‖/‖W‖": _mean_sd(group.norm_ratio) if has_b else ""})  # fmt: skip
    return pd.DataFrame(rows)


def _final_symmetry(sym: pd.DataFrame) -> pd.DataFrame:
    """Per rule and seed, the symmetry angles at the last epoch, mean over the layers whose feedback is
    used."""
    last = sym[sym.epoch == sym.epoch.max()]
    used = sorted(last.layer.unique(), key=layer_order)[1:]
    return last[last.layer.isin(used)].groupby(["rule", "seed"])[["angle_br", "angle_r", "angle_gram"]].mean()


def symmetry_table(sym: pd.DataFrame, scale: str) -> pd.DataFrame:
    """Per rule, at initialization and at the end: the angles of :func:`_symmetry_angles` (mean ± sd over
    seeds, each seed the mean over the layers whose feedback is used)."""
    used = sorted(sym.layer.unique(), key=layer_order)[1:]
    rows = []
    for (rule, epoch), part in sym[sym.layer.isin(used) & sym.epoch.isin([0, sym.epoch.max()])].groupby(
        ["rule", "epoch"]
    ):
        per_seed = part.groupby("seed")[["angle_br", "angle_r", "angle_gram"]].mean()
        rows.append({"rule": LABELS[rule], "epoch": int(epoch), "scale": scale, "seeds": len(per_seed),
                     "angle W–B·R (°)": _mean_sd(per_seed.angle_br),
                     "angle W–R blocks (°)": _mean_sd(per_seed.angle_r),
                     "angle WᵀW–RᵀR (°)": _mean_sd(per_seed.angle_gram)})  # fmt: skip
    return pd.DataFrame(rows)


# claims ----------------------------------------------------------------------------------------------------

DECIDED_BY = {
    "match": ("resnet20", "optimizer steps"),
    "short": ("resnet20", "optimizer steps"),
    "align": ("mlp", "heavy-decay shrink of W and R, exp(−A₁)"),
    "sparse": ("mlp", "heavy-decay shrink of W and R, exp(−A₁)"),
    "order": ("resnet20", "steps at full learning rate"),
    "symmetry": ("mlp", "heavy-decay shrink of W and R, exp(−A₁)"),
}
"""For each claim, the quantity of :func:`regime_rows` that most decides it at a reduced scale: the length of
the ResNet's training for the accuracy gaps (the paper's FA and DFA failures grow over 88,000 steps), the
early decay's shrink for the alignment of B·R (it is what draws R to BᵀW). The claims table shows its value
at the run's scale beside the paper's."""


def _combine(verdicts: list[str]) -> str:
    """Holds if every part holds, does not hold if any part fails, else inconclusive."""
    if verdicts and all(v == cl.HOLDS for v in verdicts):
        return cl.HOLDS
    return cl.FAILS if cl.FAILS in verdicts else cl.INCONCLUSIVE


def _per_seed_gap(summary: pd.DataFrame, arch: str, rule: str) -> pd.Series:
    """BP − rule per seed (seeds paired by index): a gap sample whose spread estimates the gap's."""
    part = summary[summary.arch == arch].groupby(["rule", "seed"]).test_pct.mean()
    return (part.get("bp", pd.Series(dtype=float)) - part.get(rule, pd.Series(dtype=float))).dropna()


def beyond(values: pd.Series, bound: float, *, above: bool, unit: str = "°") -> tuple[str, str]:
    """Is the mean of ``values`` ≥ ``bound`` (``above``) or ≤ it? Decided on the mean ± 2 standard errors
    over seeds: holds if the whole interval is on the claimed side, does not hold if it is all on the
    other, inconclusive if it straddles the bound or there are fewer than 2 seeds."""
    v = pd.Series(values, dtype=float).dropna()
    mean = v.mean()
    if len(v) < 2:
        return f"{mean:.1f}{unit} ({len(v)} seed; too few to estimate the error)", cl.INCONCLUSIVE
    half = 2 * v.std(ddof=1) / math.sqrt(len(v))
    low, high = (mean - half, mean + half) if above else (-(mean + half), -(mean - half))
    sign = 1 if above else -1
    measured = f"{mean:.1f} ± {half:.1f}{unit} ({len(v)} seeds)"
    if low >= sign * bound:
        return measured, cl.HOLDS
    return measured, cl.FAILS if high < sign * bound else cl.INCONCLUSIVE


def _number(value: float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:.3g}"


def claims(runs: Runs, params: Params) -> pd.DataFrame:
    """The paper's six claims, decided by tests fixed before any run (margins in :data:`MARGINS`; accuracy
    and angle differences by :func:`fabook.claims.at_least`, a difference of means ± 2 standard errors over
    seeds; single angles by :func:`beyond`, a mean ± 2 standard errors):

    1. PFA and PFA-o match BP — test acc. rule − BP ≥ −2 points, on both models (4 tests, all must hold);
    2. FA and DFA fall well short of BP in the ResNet, much less so in the MLP — for each of FA and DFA,
       BP − rule on the ResNet ≥ 5 points, and that gap exceeds the MLP's by ≥ 2 points (4 tests);
    3. PFA aligns far better than FA — on both models, angle W–B: FA − PFA ≥ 20°, and angle update–BP:
       FA − PFA ≥ 10° (4 tests);
    4. sparse PFA (B and R masked) keeps its accuracy — test acc. at density 0.1 − density 1 ≥ −1.5 points
       (k = 10);
    5. the rules' coarse order on the ResNet is the paper's, DFA < FA < min(sign symmetry, PFA, PFA-o) —
       FA − DFA ≥ 2 points and each of sign symmetry, PFA, PFA-o − FA ≥ 2 points (4 tests);
    6. PFA learns without explicit weight symmetry — after training, on the MLP, angle(W, R) ≥ 75° (R's
       k blocks, each of W's shape, against W) while angle(W, B·R) ≤ 30°, for PFA and PFA-o (4 tests).

    Each row also names the quantity that most decides the claim at this scale (:data:`DECIDED_BY`).
    """
    m, s = MARGINS, runs.comparison
    pct = {(a, r): s[(s.arch == a) & (s.rule == r)].test_pct for a in MODELS for r in RULES}
    out = []

    pairs = [(r, a) for r in PFA_RULES for a in MODELS]
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

    sp = runs.sparse[(runs.sparse.rule == "pfa") & (runs.sparse.k == 10)]
    dense, sparse = sp[sp.density == 1.0].test_pct, sp[sp.density == m["sparse_density"]].test_pct
    measured, verdict = cl.at_least(sparse, dense, m["sparse"], unit=" pts")
    means = sp.groupby("density").test_pct.mean()
    kept = [d for d in sorted(means.index) if means[d] - means.get(1.0, np.nan) >= m["sparse"]]
    out.append(cl.Claim(
        f"Sparse PFA (B and R masked) keeps its accuracy down to feedback density {m['sparse_density']:g}",
        f"test acc. at density {m['sparse_density']:g} − density 1 ≥ {m['sparse']:g} pts (k = 10)",
        f"{measured}; lowest density whose mean is within the margin: {kept[0]:g}" if kept else measured,
        verdict,
    ))  # fmt: skip

    res = {r: pct["resnet20", r] for r in RULES}
    tests = [("FA − DFA", cl.at_least(res["fa"], res["dfa"], m["order"]))]
    tests += [(f"{LABELS[r]} − FA", cl.at_least(res[r], res["fa"], m["order"])) for r in ("usf", *PFA_RULES)]
    out.append(cl.Claim(
        "The rules' coarse order on the ResNet is the paper's: DFA < FA < min(sign symmetry, PFA, PFA-o)",
        f"ResNet test acc. FA − DFA ≥ {m['order']:g} pts and sign symmetry, PFA, PFA-o − FA ≥ "
        f"{m['order']:g} pts each (all 4 must hold)",
        "; ".join(f"{name}: {measured}" for name, (measured, _) in tests),
        _combine([verdict for _, (_, verdict) in tests]),
    ))  # fmt: skip

    final = _final_symmetry(runs.symmetry)
    parts, verdicts = [], []
    for rule in PFA_RULES:
        part = final.loc[rule]
        r_angle = beyond(part.angle_r, m["r_angle"], above=True)
        br_angle = beyond(part.angle_br, m["br_angle"], above=False)
        parts.append(f"{LABELS[rule]}: W–R {r_angle[0]}, W–B·R {br_angle[0]}")
        verdicts += [r_angle[1], br_angle[1]]
    out.append(cl.Claim(
        "PFA learns without explicit weight symmetry: R stays far from W while B·R comes close to it",
        f"after training (MLP): angle(W, R's blocks) ≥ {m['r_angle']:g}° and angle(W, B·R) ≤ "
        f"{m['br_angle']:g}°, for PFA and PFA-o (all 4 must hold)",
        "; ".join(parts),
        _combine(verdicts),
    ))  # fmt: skip

    table = cl.table(out, params.scale)
    here = {a: regime_rows(params, a) for a in MODELS}
    paper = {a: regime_rows(Params(scale="paper"), a) for a in MODELS}
    table["decided most by (this scale vs paper)"] = [
        f"{MODEL_LABELS[a]} {q}: {_number(here[a][q])} vs {_number(paper[a][q])}"
        for a, q in DECIDED_BY.values()
    ]
    return table


# figures ---------------------------------------------------------------------------------------------------

METRIC_NAMES = {"weight_angle": "angle W vs B (°)", "grad_angle": "angle update vs BP (°)",
                "norm_ratio": "‖B‖/‖W‖ (‖B·R‖/‖W‖ for PFA)"}  # fmt: skip


def gap_figure(summary: pd.DataFrame, scale: str) -> Figure:
    """Our gap to BP (each model, this scale) against the paper's CIFAR-10 ResNet-20 gap, a point per rule."""
    frame = gaps(summary)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for arch, marker in zip(MODELS, ("o", "s"), strict=True):
        part = frame[frame.arch == arch]
        ax.scatter(part.paper_gap, part.gap, marker=marker, s=50, label=MODEL_LABELS[arch])
        for _, row in part.iterrows():
            ax.annotate(LABELS[row.rule], (row.paper_gap, row.gap), textcoords="offset points", xytext=(5, 3),
                        fontsize=8)  # fmt: skip
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.margins(x=0.15, y=0.1)  # room for the rule names
    ax.set_xlabel("paper: gap to BP, CIFAR-10 ResNet-20 (points, approx.)")
    ax.set_ylabel(f"ours: gap to BP (points, scale {scale})")
    ax.legend(title="our model", loc="lower right")
    fig.tight_layout()
    return fig


def _layer_index(history: pd.DataFrame) -> pd.DataFrame:
    rows = history[history.layer != ""].copy()
    order = {name: i + 1 for i, name in enumerate(sorted(rows.layer.unique(), key=layer_order))}
    rows["depth"] = rows.layer.map(order)
    return rows


def alignment_over_training(history: pd.DataFrame, arch: str, metric: str, scale: str) -> Figure:
    """``metric`` per layer over training for every rule on ``arch`` that has it: one panel per rule, one
    line per layer (mean over seeds), coloured by depth (colour bar: layer 1 = the input layer)."""
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
    axes[0][0].set_ylabel(METRIC_NAMES[metric])
    bar = fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=list(axes[0]), pad=0.01)
    bar.set_label("layer (1 = input side)")
    fig.suptitle(f"{MODEL_LABELS[arch]}, scale {scale}")
    return fig


def sparse_figure(
    sparse: pd.DataFrame, history: pd.DataFrame, comparison: pd.DataFrame, scale: str
) -> Figure:
    """Sparse feedback on the MLP against its density — PFA (k = 10; B and R masked) over the grid, FA, DFA
    and sign symmetry (B masked; dotted) at :data:`OTHER_DENSITIES` — test accuracy, with BP on the same MLP
    dashed; the final angle W–feedback (B·R for PFA, B otherwise; DFA has none); the norm ratio; and PFA's
    test accuracy against the expansion ratio k (density 1)."""
    frame = angles(sparse, history)
    dens = density_sweeps(frame)
    ks = frame[(frame.rule == "pfa") & (frame.density == 1.0)]
    order = [label for label in (f"{LABELS['pfa']} (k = 10)", *(LABELS[r] for r in SPARSE_OTHERS))
             if label in set(dens.label)]  # fmt: skip
    palette = dict(zip(order, sns.color_palette(n_colors=len(order)), strict=True))
    dashes = {label: "" if label == order[0] else (2, 2) for label in order}  # dotted: two densities only
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.8), layout="constrained")
    for ax, y, label in zip(axes[:3], ("test_pct", "angle_wb", "norm_ratio"),
                            ("test accuracy (%)", "angle W vs feedback at the end (°)",
                             "‖feedback‖/‖W‖ at the end"), strict=True):  # fmt: skip
        sns.lineplot(data=dens, x="density", y=y, hue="label", hue_order=order, palette=palette,
                     style="label", style_order=order, dashes=dashes, markers=["o"] * len(order),
                     errorbar="sd", ax=ax)  # fmt: skip
        ax.set_xscale("log")
        ax.set_xticks(list(DENSITIES), [f"{d:g}" for d in DENSITIES])
        ax.set_xlabel("feedback density (B, and R for PFA)")
        ax.set_ylabel(label)
    bp = comparison[(comparison.arch == "mlp") & (comparison.rule == "bp")].test_pct
    if not bp.empty:
        axes[0].axhline(bp.mean(), color="black", linestyle="--", linewidth=1, label=LABELS["bp"])
    axes[0].legend(fontsize=7, loc="best")
    for ax in axes[1:3]:
        ax.get_legend().remove()
    sns.lineplot(data=ks, x="k", y="test_pct", marker="o", errorbar="sd", ax=axes[3])
    axes[3].set_xticks(list(EXPANSIONS))
    axes[3].set_xlabel("PFA's expansion ratio k (density 1)")
    axes[3].set_ylabel("test accuracy (%)")
    fig.suptitle(f"Sparse feedback on the MLP, scale {scale} (mean ± sd over seeds)")
    return fig


def static_figure(static: pd.DataFrame, sparse: pd.DataFrame, history: pd.DataFrame, scale: str) -> Figure:
    """The paper's Figure 3 computed: angle(W, B Bᵀ W) against k (draws, and the prediction), beside the final
    angle W–B·R of the trained MLP (this scale); and the eigenvalues of B Bᵀ for k = 1 and 10."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    ax = axes[0]
    sns.lineplot(
        data=static, x="k", y="angle", marker="o", errorbar="sd", ax=ax, label="R = BᵀW (no training)"
    )
    curve = static.groupby("k").predicted.first()
    ax.plot(curve.index, curve.values, color="grey", linestyle=":", label="arccos(1/√(1 + 1/k))")
    trained = angles(sparse, history)
    trained = trained[(trained.rule == "pfa") & (trained.density == 1.0)]
    if not trained.empty:
        sns.lineplot(data=trained, x="k", y="angle_wb", marker="s", errorbar="sd", ax=ax,
                     label=f"trained MLP, end (scale {scale})")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xticks(list(STATIC_EXPANSIONS), [str(k) for k in STATIC_EXPANSIONS])
    ax.set_xlabel("expansion ratio k")
    ax.set_ylabel("angle W vs B·R (°)")
    ax.legend(fontsize=8)
    for k in (1, 10):
        axes[1].hist(spectrum(k), bins=60, alpha=0.6, density=True, label=f"k = {k}")
    axes[1].set_xlabel("eigenvalue of B Bᵀ (512 × 512)")
    axes[1].set_ylabel("density")
    axes[1].legend()
    return fig


def symmetry_figure(sym: pd.DataFrame, scale: str) -> Figure:
    """PFA and PFA-o on the MLP over training: angle(W, B·R), angle(W, R's blocks) and angle(WᵀW, RᵀR), mean
    over the layers whose feedback is used (band: sd over seeds)."""
    used = sorted(sym.layer.unique(), key=layer_order)[1:]
    columns = ["angle_br", "angle_r", "angle_gram"]
    per_seed = sym[sym.layer.isin(used)].groupby(["rule", "seed", "epoch"])[columns].mean()
    long = per_seed.reset_index().melt(id_vars=["rule", "seed", "epoch"], var_name="angle", value_name="deg")
    long["angle"] = long.angle.map({"angle_br": "W vs B·R", "angle_r": "W vs R (k blocks)",
                                    "angle_gram": "WᵀW vs RᵀR"})  # fmt: skip
    fig, axes = plt.subplots(1, len(PFA_RULES), figsize=(11, 3.8), sharey=True, layout="constrained")
    for ax, rule in zip(axes, PFA_RULES, strict=True):
        sns.lineplot(data=long[long.rule == rule], x="epoch", y="deg", hue="angle", marker="o", errorbar="sd",
                     ax=ax)  # fmt: skip
        ax.set_title(LABELS[rule])
        ax.set_ylabel("angle (°)")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[-1].get_legend().remove()
    fig.suptitle(f"MLP, scale {scale}")
    return fig
