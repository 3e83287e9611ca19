"""Figures the notebooks share, drawn from :func:`fabook.sweep.history_frame` tables (seaborn)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

METRIC_LABELS = {
    "test_acc": "test accuracy",
    "train_loss": "training loss (cross-entropy)",
    "weight_angle": "angle between W and B (degrees)",
    "grad_angle": "angle to the BP gradient (degrees)",
    "sign_concordance": "fraction of concordant signs",
}


def over_training(
    history: pd.DataFrame, metric: str, *, hue: str = "label", by_layer: bool = False, title: str = ""
) -> Figure:
    """``metric`` against epoch, one line per ``hue`` (mean over seeds, band = ±1 sd); one panel per layer
    when ``by_layer``."""
    rows = history[(history.metric == metric) & history.value.notna()]
    layers = sorted(rows.layer.unique(), key=layer_order) if by_layer else [None]
    fig, axes = plt.subplots(1, len(layers), figsize=(4.2 * len(layers), 3.4), squeeze=False, sharey=True)
    for ax, layer in zip(axes[0], layers, strict=True):
        part = rows if layer is None else rows[rows.layer == layer]
        sns.lineplot(data=part, x="epoch", y="value", hue=hue, errorbar="sd", marker="o", ax=ax)
        ax.set_xlabel("epoch")
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        if layer is not None:
            ax.set_title(f"layer {layer}")
        if ax is not axes[0][-1] and ax.get_legend():
            ax.get_legend().remove()
        elif ax.get_legend():
            ax.get_legend().set_title("rule" if hue == "label" else hue)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def layer_order(name: str) -> tuple:
    """Sort layer names in depth order ('fc1' < 'fc2' < 'head'; numbered parts numerically)."""
    return (name in ("head", "fc"), [int(p) if p.isdigit() else p for p in name.replace(".", " ").split()])
