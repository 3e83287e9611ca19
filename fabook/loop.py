"""One epoch of training, the measurements after it (loss and accuracy, gradient and weight alignment) and
early stopping on a validation split."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import fabook
from fabook import results

METRIC_BATCH = 256
"""Samples in the fixed train batch on which gradient alignment is measured."""
EVAL_BATCH = 1024


class _EarlyStopping:
    """Tracks the epoch of lowest validation loss and a copy of its weights; says when to stop."""

    def __init__(self, patience: int | None):
        self.patience, self.best = patience, None

    def update(self, epoch: int, val_loss: float, val_acc: float, model: nn.Module) -> bool:
        """Record epoch ``epoch``; True when ``patience`` epochs have passed without a lower loss."""
        if math.isfinite(val_loss) and (self.best is None or val_loss < self.best["loss"]):
            weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.best = dict(epoch=epoch, loss=val_loss, acc=val_acc, weights=weights)
        best_epoch = self.best["epoch"] if self.best else 0
        return self.patience is not None and epoch - best_epoch >= self.patience

    def restore(self, model: nn.Module) -> dict[str, Any]:
        """Load the best weights into ``model``; their epoch and validation numbers."""
        if self.best is None:
            return dict(epoch=None, val_loss=None, val_acc=None)
        model.load_state_dict(self.best["weights"])
        return dict(epoch=self.best["epoch"], val_loss=self.best["loss"], val_acc=self.best["acc"])

    def state_dict(self) -> dict[str, Any] | None:
        return self.best

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        self.best = state


def _train_epoch(
    model: nn.Module, optimizer: torch.optim.Optimizer, batches: Iterator
) -> tuple[float, float]:
    """One pass of training; the running mean loss and accuracy (summed on the device: no sync per batch)."""
    model.train()
    device = next(model.parameters()).device
    loss_sum, correct, n = torch.zeros((), device=device), torch.zeros((), dtype=torch.long, device=device), 0
    for xb, yb in batches:
        out = model(xb)
        loss = F.cross_entropy(out, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum.add_(loss.detach(), alpha=len(yb))
        correct.add_((out.detach().argmax(1) == yb).sum())
        n += len(yb)
    return (loss_sum.item() / n, correct.item() / n) if n else (math.nan, math.nan)


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterator, *, top5: bool = False) -> tuple[float, ...]:
    """Mean cross-entropy and accuracy of ``model`` (in eval mode) over ``batches``; with ``top5`` also the
    top-5 accuracy (the label among the 5 largest logits; all of them when there are fewer than 5)."""
    model.eval()
    loss_sum = torch.zeros(())
    correct = correct5 = n = 0
    for xb, yb in batches:
        out = model(xb)
        loss_sum += F.cross_entropy(out.float(), yb, reduction="sum").cpu()
        correct += int((out.argmax(1) == yb).sum())
        if top5:
            best = out.topk(min(5, out.shape[1]), dim=1).indices
            correct5 += int((best == yb[:, None]).any(1).sum())
        n += len(yb)
    numbers = (loss_sum.item() / n, correct / n, correct5 / n) if n else (math.nan,) * 3
    return numbers if top5 else numbers[:2]


def alignment(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Per rule layer: ``weight_angle`` (deg), ``sign_concordance``, ``norm_ratio``, ``distance``
    (``‖W − B‖``), ``weight_norm`` (``‖W‖``), ``grad_angle`` (deg, the rule's weight gradient vs backprop's on
    the batch, in training mode) and ``error_ratio`` (the error reaching the layer's output, rule's norm over
    BP's; :func:`fabook.metrics.gradient_alignment`). Leaves the model and the global random state as they
    were."""
    was_training = model.training
    model.train()  # the gradients training makes (gradient_alignment works on a copy of the model)
    with torch.random.fork_rng(devices=_cuda_devices(model)):
        weights = fabook.metrics.weight_alignment(model)
        grads = fabook.metrics.gradient_alignment(model, inputs, targets)
    model.train(was_training)
    out: dict[str, dict[str, Any]] = {}
    for row in weights.to_dict("records"):
        out[row["layer"]] = {
            "rule": row["rule"],
            "weight_angle": row["angle_deg"],
            "sign_concordance": row["sign_concordance"],
            "norm_ratio": row["norm_ratio"],
            "distance": row["distance"],
            "weight_norm": row["weight_norm"],
        }
    for row in grads.to_dict("records"):
        entry = out.setdefault(row["layer"], {"rule": row["rule"]})
        entry["grad_angle"], entry["error_ratio"] = row["angle_deg"], row["error_ratio"]
    return results.jsonable(out)


def _cuda_devices(model: nn.Module) -> list[int]:
    return sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
