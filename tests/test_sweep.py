import json
import pickle
import sys

import pandas as pd
import pytest

import fabook.sweep as sweep_module
from fabook.sweep import expand, history_frame, load_results, load_spec, run_sweep
from fabook.train import Config, result_path

BASE = dict(dataset="digits", epochs=1, max_train=100, max_test=60, batch_size=50, metrics_every=1)


def test_expand_is_grid_times_conditions_in_order():
    spec = {
        "name": "t",
        "base": BASE,
        "grid": {"rule": ["fa", "usf"], "seed": [0, 1]},
        "conditions": [{"batch_norm": False}, {"batch_norm": True, "optimizer": "bm", "lr": 1e-3}],
    }
    cells = expand(spec)
    assert len(cells) == 8 and all(isinstance(c, Config) for c in cells)
    assert [(c.rule, c.seed, c.batch_norm) for c in cells[:3]] == [
        ("fa", 0, False),
        ("fa", 0, True),
        ("fa", 1, False),
    ]
    assert cells[1].optimizer == "bm" and cells[0].optimizer == "sgd" and cells[0].epochs == 1
    assert len({c.key() for c in cells}) == 8


def test_expand_options_duplicates_and_files(tmp_path):
    spec = {"base": BASE, "grid": {"rule": ["sc"], "rule_options": [{"p": 0.5}, {"p": 1.0}, {"p": 0.5}]}}
    cells = expand(spec)
    assert [c.rule_options for c in cells] == [{"p": 0.5}, {"p": 1.0}]
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    assert expand(path) == cells
    assert expand({"base": {**BASE, "rule": "kp"}}) == [Config(**{**BASE, "rule": "kp"})]


@pytest.mark.parametrize(
    "spec, match",
    [
        ({"base": BASE, "grids": {}}, r"'grids'.*accepted: name, base, grid, conditions"),
        ({"base": BASE, "grid": {"rule": "fa"}}, r"grid 'rule' must be a non-empty list"),
        ({"base": BASE, "grid": {"rule": ["fa"]}, "conditions": [{"rule": "bp"}]}, r"'rule'.*both"),
        ({"base": BASE, "conditions": []}, r"conditions"),
        ({"base": {**BASE, "epoch": 2}}, r"'epoch'"),
    ],
)
def test_bad_specs_are_refused(spec, match):
    with pytest.raises(ValueError, match=match):
        expand(spec)


def test_bad_spec_file(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text("{oops")
    with pytest.raises(ValueError, match="spec.json is not valid JSON"):
        load_spec(path)


def test_every_cell_is_validated_before_any_runs(tmp_path):
    spec = {"base": BASE, "grid": {"rule": ["fa", "nope"]}}
    with pytest.raises(ValueError, match="'nope'"):
        run_sweep(spec, tmp_path, progress=False)
    assert not tmp_path.exists() or list(tmp_path.iterdir()) == []


def test_run_sweep_summary_resume_and_history(tmp_path, monkeypatch):
    spec = {
        "name": "t",
        "base": BASE,
        "grid": {"rule": ["fa", "dfa"]},
        "conditions": [{"batch_norm": False}, {"batch_norm": True}],
    }
    frame = run_sweep(spec, tmp_path, progress=False)
    assert len(frame) == 4 and list(frame["rule"]) == ["fa", "fa", "dfa", "dfa"]
    for column in ("dataset", "rule", "options", "rule_options", "label", "batch_norm", "seed", "test_acc"):
        assert column in frame
    for column in ("best_test_acc", "train_loss", "diverged", "wall_time", "key"):
        assert column in frame
    assert frame["test_acc"].between(0, 1).all() and not frame["diverged"].any()

    calls = []
    monkeypatch.setattr(sweep_module, "train", lambda *a, **k: calls.append(a) or pytest.fail("rerun"))
    again = run_sweep(spec, tmp_path, progress=False)
    pd.testing.assert_frame_equal(again, frame)
    assert calls == []

    stored = load_results(tmp_path)
    assert sorted(stored["key"]) == sorted(frame["key"])

    long = history_frame(tmp_path)
    assert list(long.columns[:5]) == ["key", "epoch", "metric", "layer", "value"]
    assert {"rule", "batch_norm", "label", "seed"} <= set(long.columns)
    assert {"test_acc", "train_loss", "weight_angle", "grad_angle", "sign_concordance", "norm_ratio"} <= set(
        long["metric"]
    )
    angles = long[(long.metric == "grad_angle") & (long.epoch == 1)]
    assert len(angles) == 4 * 3 and angles["layer"].ne("").all()
    assert long[long.metric == "test_acc"]["layer"].eq("").all()
    assert long["value"].dtype == float


def test_interrupted_sweep_runs_only_what_is_missing(tmp_path, monkeypatch):
    spec = {"base": BASE, "grid": {"seed": [0, 1]}}
    first = run_sweep(spec, tmp_path, progress=False)
    result_path(expand(spec)[1], tmp_path).unlink()
    ran = []
    train = sweep_module.train
    monkeypatch.setattr(sweep_module, "train", lambda cfg, **k: ran.append(cfg.seed) or train(cfg, **k))
    again = run_sweep(spec, tmp_path, progress=False)
    assert ran == [1]
    assert list(again["test_acc"]) == list(first["test_acc"])


def test_parallel_jobs_give_the_same_results(tmp_path):
    assert pickle.loads(pickle.dumps(Config(**BASE))) == Config(**BASE)  # what "spawn" workers need
    assert sweep_module.start_method([Config(**BASE)]) == ("fork" if sys.platform == "linux" else "spawn")
    assert sweep_module.start_method([Config(**{**BASE, "device": "cuda"})]) == "spawn"
    spec = {"base": BASE, "grid": {"rule": ["fa", "kp"]}}
    serial = run_sweep(spec, tmp_path / "serial", progress=False)
    parallel = run_sweep(spec, tmp_path / "parallel", jobs=2, progress=False)
    assert list(parallel["key"]) == list(serial["key"])
    assert list(parallel["train_loss"]) == list(serial["train_loss"])


def test_load_results_skips_other_json_with_a_warning(tmp_path):
    (tmp_path / "notes.json").write_text('{"a": 1}')
    with pytest.warns(UserWarning, match="notes.json"):
        assert load_results(tmp_path).empty
