"""Sweeps through submitit (fabook.launch), on its debug (in-process) and local (subprocess) executors."""

import importlib.util
import json

import pytest

import fabook.launch as launch
from fabook.cli import main
from fabook.sweep import expand, run_sweep

pytest.importorskip("submitit")

BASE = dict(dataset="digits", epochs=1, max_train=100, max_test=60, batch_size=50, metrics_every=0)
SPEC = {"name": "two", "base": BASE, "grid": {"rule": ["fa", "kp"]}}


def _flaky(fails: dict[str, int], calls: list[str]):
    """launch.train that raises for a rule as many times as ``fails`` says, then trains."""
    train = launch.train

    def flaky(cfg, **kwargs):
        calls.append(cfg.rule)
        if fails.get(cfg.rule, 0) > 0:
            fails[cfg.rule] -= 1
            raise RuntimeError(f"node lost while training {cfg.rule}")
        return train(cfg, **kwargs)

    return flaky


def test_failed_cell_is_resubmitted_and_the_sweep_matches_the_local_pool(tmp_path, monkeypatch):
    local = run_sweep(SPEC, tmp_path / "local", progress=False)
    calls: list[str] = []
    monkeypatch.setattr(launch, "train", _flaky({"kp": 1}, calls))
    options = dict(cluster="debug", retries=1, parameters={"timeout_min": 5})
    frame = run_sweep(SPEC, tmp_path / "sub", progress=False, engine="submitit", engine_options=options)
    assert sorted(calls) == ["fa", "kp", "kp"]  # kp failed once, ran again
    assert list(frame["key"]) == list(local["key"])
    assert list(frame["train_loss"]) == list(local["train_loss"])
    calls.clear()
    run_sweep(SPEC, tmp_path / "sub", progress=False, engine="submitit", engine_options=options)
    assert calls == []  # finished cells are loaded, not submitted


def test_cell_failing_every_attempt_is_named_and_the_others_kept(tmp_path, monkeypatch, capsys):
    calls: list[str] = []
    monkeypatch.setattr(launch, "train", _flaky({"kp": 5}, calls))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    out = tmp_path / "out"
    argv = ["sweep", str(spec), "--out", str(out), "--engine", "submitit", "--cluster", "debug"]
    assert main([*argv, "--retries", "2", "--no-progress"]) == 1
    err = capsys.readouterr().err
    kp = next(c for c in expand(SPEC) if c.rule == "kp")
    assert f"1 cell(s) failed after 3 attempt(s): {kp.key()}" in err and "node lost while training kp" in err
    assert calls.count("kp") == 3
    assert sorted(p.name for p in out.glob("*.json")) == [f"{expand(SPEC)[0].key()}.json"]  # fa's result


def test_local_executor_runs_cells_in_subprocesses(tmp_path):
    spec = {**SPEC, "grid": {"rule": ["fa"]}}
    local = run_sweep(spec, tmp_path / "local", progress=False)
    options = dict(cluster="local", parameters={"timeout_min": 5, "cpus_per_task": 1})
    frame = run_sweep(spec, tmp_path / "sub", progress=False, engine="submitit", engine_options=options)
    assert list(frame["train_loss"]) == list(local["train_loss"])
    assert list((tmp_path / "sub" / "submitit").glob("*/*_result.pkl"))


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--engine", "ray"], "unknown engine 'ray'; accepted: local, submitit"),
        (["--engine", "submitit", "--cluster", "pbs"], "unknown submitit cluster 'pbs'; accepted: auto"),
    ],
)
def test_bad_engine_is_refused_before_any_work(tmp_path, capsys, argv, match):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), *argv]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_submitit_is_named_with_its_install_command(tmp_path, capsys, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "submitit" else real(n, *a))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--engine", "submitit"]) == 2
    assert "pip install 'fabook[slurm]'" in capsys.readouterr().err
