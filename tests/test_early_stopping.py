"""Early stopping on a validation split carved from the training set (``val_fraction``, ``patience``)."""

import importlib

import numpy as np
import pytest
import torch

from fabook import data, results
from fabook.train import Config, load_result, result_path, train, validation_split

train_module = importlib.import_module("fabook.train")
TINY = dict(dataset="digits", epochs=12, max_train=300, max_test=100, batch_size=50, metrics_every=0)


def tiny(**changes) -> Config:
    return Config(**{**TINY, "val_fraction": 0.25, "patience": 2, **changes})


def test_config_checks_the_new_fields():
    with pytest.raises(ValueError, match="val_fraction must be in"):
        tiny(val_fraction=1.0)
    with pytest.raises(ValueError, match="val_fraction must be in"):
        tiny(val_fraction=float("nan"))
    with pytest.raises(TypeError, match="val_fraction must be"):
        tiny(val_fraction="0.2")
    with pytest.raises(ValueError, match="needs a validation split"):
        Config(dataset="digits", patience=3)
    with pytest.raises(ValueError, match="patience must be >= 1"):
        tiny(patience=0)


def test_validation_split_is_stratified_disjoint_and_seeded():
    split = data.load("digits", max_train=400)
    fit, val = validation_split(split.train, 0.25, seed=3)
    assert len(val) == 100 and len(fit) == 300
    x, y = split.train.tensors
    rows = {tuple(r.flatten().tolist()) for r in fit.tensors[0]}
    assert not any(tuple(r.flatten().tolist()) in rows for r in val.tensors[0])
    counts, val_counts = (
        np.bincount(y.numpy(), minlength=10),
        np.bincount(val.tensors[1].numpy(), minlength=10),
    )
    assert np.all(np.abs(val_counts - counts / 4) <= 1)
    again, _ = validation_split(split.train, 0.25, seed=3)
    other, _ = validation_split(split.train, 0.25, seed=4)
    assert torch.equal(again.tensors[0], fit.tensors[0]) and not torch.equal(other.tensors[0], fit.tensors[0])
    assert validation_split(split.train, 0.0, seed=3) == (split.train, None)


def test_stops_on_patience_restores_best_weights_and_measures_the_test_set_once(monkeypatch):
    calls = []
    evaluate = train_module.evaluate

    def counted(model, batches, **options):
        out = evaluate(model, batches, **options)
        calls.append((*out[:2], {k: v.clone() for k, v in model.state_dict().items()}))
        return out

    monkeypatch.setattr(train_module, "evaluate", counted)
    cfg = tiny(epochs=60, lr=0.3, momentum=0.9, patience=2)  # a large step: the validation loss turns up
    result = train(cfg, progress=False)
    trained = [h for h in result.history if h["epoch"] > 0]
    assert all("val_loss" in h and "test_loss" not in h for h in trained)
    losses = [h["val_loss"] for h in trained]
    best = int(np.argmin(losses)) + 1
    assert result.best_epoch == best and result.val_loss == min(losses)
    assert result.val_acc == trained[best - 1]["val_acc"]
    assert result.epochs_run == best + 2 < 60  # stopped `patience` epochs after the best
    assert len(calls) == result.epochs_run + 1  # one validation per epoch, then the test set once
    assert result.test_acc == calls[-1][1] and result.best_test_acc is None
    tested, best_weights = calls[-1][2], calls[best - 1][2]  # the test saw the best epoch's weights
    assert all(torch.equal(tested[k], best_weights[k]) for k in tested)
    assert not all(torch.equal(tested[k], calls[-2][2][k]) for k in tested)
    assert result.provenance["n_train"] == 225


def test_without_patience_all_epochs_run_and_the_best_is_restored():
    result = train(tiny(epochs=4, patience=None), progress=False)
    assert result.epochs_run == 4
    assert result.best_epoch == 1 + int(np.argmin([h["val_loss"] for h in result.history]))


def test_resume_mid_run_gives_the_same_numbers(tmp_path, monkeypatch):
    cfg = tiny(epochs=60, lr=0.1, rule="brsf", batch_norm=True, metrics_every=2)
    whole = train(cfg, out_dir=tmp_path / "whole", progress=False)
    assert whole.epochs_run > 4
    save = results.save_checkpoint

    def save_then_stop(path, state):
        save(path, state)
        if state["epoch"] == whole.best_epoch + 1:  # after the best: the checkpoint must hold its weights
            raise KeyboardInterrupt

    monkeypatch.setattr(results, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, out_dir=tmp_path / "cut", progress=False)
    state = results.load_checkpoint(tmp_path / "cut" / f"{cfg.key()}.ckpt.pt")
    assert state["early_stopping"]["epoch"] == whole.best_epoch
    monkeypatch.setattr(results, "save_checkpoint", save)
    resumed = train(cfg, out_dir=tmp_path / "cut", progress=False)
    strip = [{k: v for k, v in h.items() if k != "time"} for h in whole.history]
    assert [{k: v for k, v in h.items() if k != "time"} for h in resumed.history] == strip
    assert (resumed.test_acc, resumed.best_epoch, resumed.val_acc) == (
        whole.test_acc,
        whole.best_epoch,
        whole.val_acc,
    )
    assert load_result(result_path(cfg, tmp_path / "cut")).best_epoch == whole.best_epoch


def test_checkpoints_wait_checkpoint_seconds(tmp_path, monkeypatch):
    written = []
    save = results.save_checkpoint
    monkeypatch.setattr(
        results, "save_checkpoint", lambda path, state: written.append(state["epoch"]) or save(path, state)
    )
    monkeypatch.setattr(train_module, "CHECKPOINT_SECONDS", 3600.0)
    train(tiny(epochs=5, patience=None), out_dir=tmp_path / "a", progress=False)
    assert written == []
    monkeypatch.setattr(train_module, "CHECKPOINT_SECONDS", 0.0)
    train(tiny(epochs=5, patience=None), out_dir=tmp_path / "b", progress=False)
    assert written == [1, 2, 3, 4]
