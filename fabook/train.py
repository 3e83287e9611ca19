"""One training run (a *cell*): a :class:`~fabook.config.Config` in, a :class:`~fabook.config.Result` out.

A cell is identified by its config (:meth:`~fabook.config.Config.key`). Given an ``out_dir``, :func:`train`
writes the result to ``out_dir/<key>.json`` and a checkpoint after every epoch to ``out_dir/<key>.ckpt.pt``;
calling it again with the same config returns the stored result, or resumes from the checkpoint and ends with
the same numbers as an uninterrupted run (on the CPU). Every model goes through :func:`fabook.convert`,
``"bp"`` too. This module holds the driver (seeding, checkpoints, the epochs, the result); the rest of the
engine lives in :mod:`fabook.config` (what a cell is), :mod:`fabook.batches` (the data it reads) and
:mod:`fabook.loop` (one epoch and its measurements), whose names are importable from here as well.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from fabook import data, distributed, norm_constraint, results
from fabook.batches import CROP_PADDING, _Data, augment_batch, augmented, epoch_generator, validation_split
from fabook.config import (
    AUGMENTS,
    OPTIMIZERS,
    SCHEDULES,
    WEIGHT_DECAY_SCHEDULES,
    Config,
    Result,
    build_model,
    format_options,
    load_result,
    lock_path,
    make_optimizer,
    make_scheduler,
    parse_device,
    parse_schedule,
    parse_weight_decay_schedule,
    result_path,
    validate,
    weight_decay_at,
)
from fabook.loop import EVAL_BATCH, METRIC_BATCH, _EarlyStopping, _train_epoch, alignment, evaluate
from fabook.results import ResultFileError

__all__ = [  # this module's own names and, imported from here as before the engine's split, the others
    "AUGMENTS", "CHECKPOINT_SECONDS", "CROP_PADDING", "EVAL_BATCH", "METRIC_BATCH", "OPTIMIZERS", "SCHEDULES",
    "WEIGHT_DECAY_SCHEDULES", "Config", "Result", "alignment", "augment_batch", "augmented", "build_model",
    "epoch_generator", "evaluate", "format_options", "load_result", "lock_path", "make_optimizer",
    "make_scheduler", "parse_device", "parse_schedule", "parse_weight_decay_schedule", "result_path",
    "seed_everything", "train", "validate", "validation_split", "weight_decay_at",
]  # fmt: skip

CHECKPOINT_SECONDS = 5.0
"""A checkpoint is written after an epoch once this many seconds have passed since the last one (a write costs
~20 ms: after every epoch it would dominate cells of many short epochs). Resuming from any epoch gives the
same numbers."""


# randomness ------------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(device: torch.device) -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "random": random.getstate(),
    }


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    version, internal, gauss = state["random"]
    random.setstate((version, tuple(internal), gauss))


# the run ---------------------------------------------------------------------------------------------------


def train(
    config: Config | Mapping[str, Any], *, out_dir: str | Path | None = None, progress: bool = True
) -> Result:
    """Run one cell and return its :class:`~fabook.config.Result`.

    With ``out_dir``: a finished cell is loaded, not rerun; an interrupted one resumes from its checkpoint;
    the result is written to ``out_dir/<key>.json`` (atomically) and the checkpoint removed. The folder is
    checked writable before any work (:class:`~fabook.results.OutputError` otherwise), and a lock on the cell
    makes another process that asks for it meanwhile wait and then load this result. A non-finite
    training loss ends the cell early with ``diverged=True``. Training numbers are the running means over the
    epoch's batches; test numbers are measured after it. Randomness: global generators seeded from
    ``config.seed``; each epoch's order from :func:`~fabook.batches.epoch_generator`; measuring alignment
    consumes none.
    """
    cfg = config if isinstance(config, Config) else Config.from_dict(config)
    if out_dir is None:
        with _threads(cfg.threads):
            return _train(cfg, None, progress)
    if result_path(cfg, out_dir).exists():  # finished: loaded, also from a read-only folder
        return load_result(result_path(cfg, out_dir), cfg)
    results.check_folder(out_dir)  # before any work: a folder that cannot take the result fails now
    # another process on this cell: wait for it, then load its result (under torchrun rank 0 locks for all
    # ranks: a lock per rank would keep the others out of the collective rank 0 waits in)
    lock = results.cell_lock(lock_path(cfg, out_dir)) if distributed.is_main() else nullcontext()
    with lock, _threads(cfg.threads):
        return _train(cfg, out_dir, progress)


@contextmanager
def _threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train(cfg: Config, out_dir: str | Path | None, progress: bool) -> Result:
    json_path = ckpt_path = None
    if out_dir is not None:
        json_path = result_path(cfg, out_dir)
        ckpt_path = json_path.with_name(f"{cfg.key()}.ckpt.pt")
        if json_path.exists():
            return load_result(json_path, cfg)
    device = distributed.setup(validate(cfg, build=False), cfg.batch_size)

    seed_everything(cfg.seed)
    model = build_model(cfg).to(device)
    split = data.load(
        cfg.dataset, root=cfg.data_root, seed=cfg.seed, max_train=cfg.max_train, max_test=cfg.max_test
    )
    fit, val = validation_split(split.train, cfg.val_fraction, cfg.seed)
    train_set = _Data(fit, device, cfg.num_workers)
    test_set = _Data(split.test, device, cfg.num_workers)
    watch, watched = (_Data(val, device, cfg.num_workers), "val") if val is not None else (test_set, "test")
    stopper = _EarlyStopping(cfg.patience) if val is not None else None
    optimizer = make_optimizer(cfg, model.parameters())
    if cfg.constrain_norm:
        norm_constraint.hold_norms(optimizer, model)
    scheduler = make_scheduler(cfg, optimizer)
    probe = train_set.sample(METRIC_BATCH, cfg.seed) if cfg.metrics_every else None
    eval_batch = max(cfg.batch_size, EVAL_BATCH if test_set.tensors is not None else 256)

    history: list[dict[str, Any]] = []
    start, elapsed, resumed, epoch, diverged = results.now(), 0.0, [], 0, False
    if ckpt_path is not None and ckpt_path.exists():
        state = results.load_checkpoint(ckpt_path)
        if state.get("key") != cfg.key():
            raise ResultFileError(
                f"{ckpt_path} is a checkpoint of another config ({state.get('key')!r}); delete it"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"], device)
        history, epoch, start, elapsed = state["history"], state["epoch"], state["start"], state["wall_time"]
        resumed = [*state["resumed"], epoch]
        if stopper is not None:
            stopper.load_state_dict(state["early_stopping"])
    elif cfg.metrics_every:
        loss0, acc0, top5_0 = evaluate(model, watch.batches(eval_batch), top5=True)
        history.append(
            {"epoch": 0, f"{watched}_loss": loss0, f"{watched}_acc": acc0, f"{watched}_top5": top5_0}
            | {"layers": alignment(model, *probe)}
        )

    net = distributed.wrap(model)  # DistributedDataParallel under torchrun
    bar = tqdm(
        range(epoch + 1, cfg.epochs + 1), initial=epoch, total=cfg.epochs, unit="epoch", leave=False,
        desc=cfg.key(), disable=not (progress and distributed.is_main()),
    )  # fmt: skip
    saved = time.perf_counter()
    for epoch in bar:
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        if cfg.weight_decay_schedule is not None:
            for group in optimizer.param_groups:
                group["weight_decay"] = weight_decay_at(cfg, epoch)
        batches = train_set.batches(distributed.local_batch(cfg.batch_size), epoch_generator(cfg.seed, epoch))
        batches = augmented(batches, cfg.augment, epoch_generator(cfg.seed, epoch, stream=1))
        train_loss, train_acc = distributed.average(device, *_train_epoch(net, optimizer, batches))
        test_loss, test_acc, top5 = evaluate(model, watch.batches(eval_batch), top5=True)
        if scheduler is not None:
            scheduler.step()
        record = {
            "epoch": epoch,
            "lr": lr,
            "train_loss": train_loss,
            "train_acc": train_acc,
            f"{watched}_loss": test_loss,
            f"{watched}_acc": test_acc,
            f"{watched}_top5": top5,
            "time": time.perf_counter() - t0,
        }
        if cfg.weight_decay_schedule is not None:
            record["weight_decay"] = weight_decay_at(cfg, epoch)
        diverged = not math.isfinite(train_loss)
        if cfg.metrics_every and not diverged and (epoch % cfg.metrics_every == 0 or epoch == cfg.epochs):
            record["layers"] = alignment(model, *probe)
        history.append(results.jsonable(record))
        elapsed += time.perf_counter() - t0
        bar.set_postfix(loss=f"{train_loss:.3g}", test_acc=f"{test_acc:.3f}")
        if diverged or (stopper is not None and stopper.update(epoch, test_loss, test_acc, model)):
            break
        due = time.perf_counter() - saved >= CHECKPOINT_SECONDS
        if ckpt_path is not None and epoch < cfg.epochs and due and distributed.is_main():
            saved = time.perf_counter()
            state = dict(key=cfg.key(), epoch=epoch, history=history, start=start, wall_time=elapsed)
            state |= dict(early_stopping=stopper and stopper.state_dict())
            state |= dict(model=model.state_dict(), optimizer=optimizer.state_dict(), rng=_rng_state(device))
            results.save_checkpoint(
                ckpt_path, state | dict(scheduler=scheduler and scheduler.state_dict(), resumed=resumed)
            )
    bar.close()
    final = None
    if stopper is not None:
        final = stopper.restore(model)  # the best validation epoch's weights, then the test set's one use
        numbers = evaluate(model, test_set.batches(eval_batch), top5=True)
        final |= dict(zip(("loss", "acc", "top5"), numbers, strict=True))

    provenance = dict(seed=cfg.seed, n_train=train_set.n, n_test=test_set.n, threads=torch.get_num_threads())
    provenance |= dict(start=start, end=results.now(), resumed_at_epochs=resumed)
    provenance |= distributed.provenance(cfg.batch_size)
    provenance = {**results.provenance(device), **provenance}
    result = _result(cfg, history, diverged, elapsed, provenance, json_path, final)
    if json_path is not None and distributed.is_main():
        results.write_json(json_path, result.to_dict())
        ckpt_path.unlink(missing_ok=True)
    return result


def _result(
    cfg: Config,
    history: list[dict],
    diverged: bool,
    wall_time: float,
    provenance: dict,
    path,
    final: dict[str, Any] | None = None,
) -> Result:
    """The Result exactly as a reload of its file gives it (NaN -> None). ``final``: early stopping's
    restored epoch with its validation and (one) test numbers."""
    trained = [h for h in history if h["epoch"] > 0]
    accs = [h["test_acc"] for h in trained if h.get("test_acc") is not None]
    result = Result(
        config=cfg,
        history=history,
        test_acc=(trained or history or [{"test_acc": None}])[-1].get("test_acc"),
        test_top5=(trained or history or [{}])[-1].get("test_top5"),
        best_test_acc=max(accs) if accs else None,
        train_loss=trained[-1]["train_loss"] if trained else None,
        diverged=diverged,
        epochs_run=len(trained),
        wall_time=wall_time,
        provenance=provenance,
    )
    if final is not None:
        result.test_acc, result.test_top5, result.best_epoch = final["acc"], final["top5"], final["epoch"]
        result.val_loss, result.val_acc = final["val_loss"], final["val_acc"]
    return Result.from_dict(result.to_dict(), path)
