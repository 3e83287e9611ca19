"""Figures the notebooks share, drawn from :func:`fabook.sweep.history_frame` tables (seaborn)."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

METRIC_LABELS = {
    "test_acc": "test accuracy",
    "train_loss": "training loss (cross-entropy)",
    "weight_angle": "angle between W and B (degrees)",
    "grad_angle": "angle to the BP gradient (degrees)",
    "sign_concordance": "fraction of concordant signs",
}


PAGE_WIDTH = 10.0
"""Inches a full-width figure is drawn at: the book shows it ~800 px wide, so 11 pt text stays legible."""

FONT_SIZES = {"tick": 11, "label": 12, "title": 13, "legend": 11}
"""Text sizes (pt) of the shared figures, set on each figure (an rc_context would lose inline figures)."""


def over_training(
    history: pd.DataFrame, metric: str, *, hue: str = "label", by_layer: bool = False, title: str = ""
) -> Figure:
    """``metric`` against epoch, one line per ``hue`` (mean over seeds, band = ±1 sd); one panel per layer
    when ``by_layer``, two panels a row. The legend sits beside the curves (or in a spare panel), never on
    them."""
    rows = history[(history.metric == metric) & history.value.notna()]
    layers = sorted(rows.layer.unique(), key=layer_order) if by_layer else [None]
    ncols = min(len(layers), 2)
    nrows = math.ceil(len(layers) / ncols)
    size = (PAGE_WIDTH, 3.8 * nrows) if ncols > 1 else (0.75 * PAGE_WIDTH, 4.2)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False, sharey=True, layout="constrained")
    panels = list(axes.ravel())
    order = list(dict.fromkeys(rows[hue]))  # one colour per hue level in every panel, also where one lacks it
    for ax, layer in zip(panels, layers, strict=False):
        part = rows if layer is None else rows[rows.layer == layer]
        sns.lineplot(
            data=part, x="epoch", y="value", hue=hue, hue_order=order, errorbar="sd", marker="o", ax=ax
        )
        ax.set_xlabel("epoch", fontsize=FONT_SIZES["label"])
        ax.set_ylabel(METRIC_LABELS.get(metric, metric), fontsize=FONT_SIZES["label"])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.tick_params(labelsize=FONT_SIZES["tick"])
        if layer is not None:
            ax.set_title(f"layer {layer}", fontsize=FONT_SIZES["title"])
    handles, labels = panels[0].get_legend_handles_labels()
    for ax in panels[: len(layers)]:
        if ax.get_legend():
            ax.get_legend().remove()
    legend = dict(title="rule" if hue == "label" else hue, frameon=False, fontsize=FONT_SIZES["legend"])
    legend["title_fontsize"] = FONT_SIZES["label"]
    if spare := panels[len(layers) :]:
        for ax in spare:
            ax.axis("off")
        spare[0].legend(handles, labels, loc="center", **legend)
    elif handles:
        fig.legend(handles, labels, loc="outside right upper", **legend)
    if title:
        fig.suptitle(title, fontsize=FONT_SIZES["title"])
    return fig


def layer_order(name: str) -> tuple:
    """Sort layer names in depth order ('fc1' < 'fc2' < 'head'; numbered parts numerically)."""
    return (name in ("head", "fc"), [int(p) if p.isdigit() else p for p in name.replace(".", " ").split()])
