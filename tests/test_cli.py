import dataclasses
import json
import runpy
import sys

import pytest

import fabook
from fabook.cli import main

TINY = [
    "--dataset",
    "digits",
    "--epochs",
    "1",
    "--max-train",
    "100",
    "--max-test",
    "60",
    "--metrics-every",
    "0",
]


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["sweep", "--help"], ["datasets", "--help"]])
def test_help_everywhere_with_examples(capsys, argv):
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "usage: fabook" in out and "example" in out


def test_run_prints_metrics_and_path_and_resumes(tmp_path, capsys):
    argv = ["run", *TINY, "--rule", "sc", "--option", "p=0.5", "--out", str(tmp_path), "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    path = next(tmp_path.glob("digits-mlp-sc-s0-*.json"))
    assert "test_acc" in out and str(path) in out
    stored = json.loads(path.read_text())
    assert stored["config"]["rule_options"] == {"p": 0.5} and stored["config"]["max_train"] == 100
    mtime = path.stat().st_mtime_ns
    assert main(argv) == 0 and path.stat().st_mtime_ns == mtime


def test_run_uses_FABOOK_RUNS(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FABOOK_RUNS", str(tmp_path / "r"))
    assert main(["run", *TINY, "--no-progress", "--optimizer", "bm", "--lr", "1e-3"]) == 0
    assert len(list((tmp_path / "r").glob("*.json"))) == 1


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--rule", "nope"], "unknown rule 'nope'; accepted: bp"),
        (["--model", "cnn", "--dataset", "iris"], "cnn cannot take input_shape"),
        (["--rule", "sc", "--option", "q=1"], "'q'"),
        (["--option", "p"], "expected NAME=VALUE"),
    ],
)
def test_run_errors_name_the_bad_value(tmp_path, capsys, extra, message):
    assert main(["run", *TINY, *extra, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_sweep_writes_results_and_summary(tmp_path, capsys):
    spec = {"name": "s", "base": {"dataset": "digits", "epochs": 1, "max_train": 100, "metrics_every": 0}}
    spec["grid"] = {"rule": ["bp", "fa"]}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec))
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "2 cells" in out and (tmp_path / "out" / "summary.csv").exists()
    assert len(list((tmp_path / "out").glob("digits-mlp-*.json"))) == 2
    assert main(["summary", str(tmp_path / "out")]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # header and two cells


def test_datasets_and_rules(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "fashion-mnist" in out and "available" in out
    assert main(["rules"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()[1:]] == list(fabook.RULES)
    assert "Feedback alignment (Lillicrap" in out


def test_python_dash_m_fabook(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["fabook", "--help"])
    with pytest.raises(SystemExit) as exit:
        runpy.run_module("fabook", run_name="__main__")
    assert exit.value.code == 0 and "fabook run" in capsys.readouterr().out


def test_book_is_forwarded(monkeypatch):
    book = pytest.importorskip("fabook.book")
    seen = []
    monkeypatch.setattr(book, "main", lambda argv: seen.append(argv) or 0)
    assert main(["book", "--scale", "smoke", "--check"]) == 0
    assert seen == [["--scale", "smoke", "--check"]]


def test_run_has_a_flag_for_every_config_field():
    from fabook.cli import parser
    from fabook.train import Config

    run = parser()._subparsers._group_actions[0].choices["run"]
    dests = {action.dest for action in run._actions}
    assert {f.name for f in dataclasses.fields(Config)} <= dests
