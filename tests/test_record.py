import errno
import gzip
import json
import os
import types
from dataclasses import dataclass

import pytest
import torch

import fabook.results as results_module
import fabook.sweep as sweep_module
from fabook import data, notebook, record
from fabook.book import project_root
from fabook.results import OutputError, ResultFileError
from fabook.sweep import history_frame, read_results, run_sweep

BASE = dict(dataset="digits", epochs=2, max_train=100, max_test=60, batch_size=50, metrics_every=1)
SPEC = {"name": "t", "base": BASE, "grid": {"rule": ["fa", "bp"]}}
NB = "nb"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two tiny finished cells (fa, bp) in a runs folder, and their summary."""
    out = tmp_path_factory.mktemp("runs")
    summary = run_sweep(SPEC, out, progress=False)
    return out, summary, {r.config.rule: r for r in read_results(out)}


def _record(tmp_path, trained, histories=("fa",)) -> tuple:
    _, _, cells = trained
    where = tmp_path / "recorded"
    keys = {cells[rule].key for rule in histories}
    path = record.write(record.recorded_path(NB, "cpu", where), NB, "cpu", list(cells.values()), keys)
    return where, path


def _no_training(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a cell was trained")

    monkeypatch.setattr(sweep_module, "train", refuse)


def test_a_recording_stands_in_for_training(tmp_path, trained, monkeypatch):
    out, summary, cells = trained
    where, path = _record(tmp_path, trained)
    monkeypatch.setenv(record.RECORDED_ENV, str(where))
    _no_training(monkeypatch)
    fresh = tmp_path / "clone-runs"
    again = run_sweep(SPEC, fresh, progress=False)
    assert again.equals(summary)  # final numbers at full precision, wall time, keys, numerics
    assert sorted(p.name for p in fresh.glob("*.json")) == sorted(p.name for p in out.glob("*.json"))
    kept = history_frame([r for r in read_results(fresh) if r.config.rule == "fa"])
    original = history_frame([cells["fa"]])
    original = original[original.metric != "time"]  # per-epoch timings are not recorded
    assert len(kept) == len(original) > 20
    assert kept.value.to_numpy() == pytest.approx(original.value.to_numpy(), rel=1e-6, nan_ok=True)
    no_history = f"{path}.*keeps no per-epoch history.*make book && make record"
    with pytest.raises(ResultFileError, match=no_history):
        history_frame([r for r in read_results(fresh) if r.config.rule == "bp"])


def test_recorded_cells_need_no_data(tmp_path, trained, monkeypatch):
    where, _ = _record(tmp_path, trained)
    monkeypatch.setenv(record.RECORDED_ENV, str(where))
    monkeypatch.setattr(data, "missing", lambda name, root=None: "everything")
    _no_training(monkeypatch)
    assert run_sweep(SPEC, tmp_path / "runs", progress=False).equals(trained[1])
    monkeypatch.setenv(record.RECORDED_ENV, "off")
    with pytest.raises(FileNotFoundError, match="'digits' is not available here"):
        run_sweep(SPEC, tmp_path / "other", progress=False)


def test_other_numerics_code_trains_and_shows_stale(tmp_path, trained, monkeypatch):
    where, _ = _record(tmp_path, trained)
    monkeypatch.setenv(record.RECORDED_ENV, str(where))
    assert record.status(NB, "cpu", where).state == "fresh"
    monkeypatch.setattr(results_module, "numerics_version", lambda: "0123456789ab")
    configs = sweep_module.expand(SPEC)
    assert record.materialise(configs, tmp_path / "other") == 0
    s = record.status(NB, "cpu", where)
    assert (s.state, s.code_numerics, s.cells) == ("stale", "0123456789ab", 2)
    assert s.numerics == trained[2]["fa"].provenance["numerics"]


def test_status_and_the_page_note(tmp_path, trained, monkeypatch):
    where, _ = _record(tmp_path, trained)
    s = record.status(NB, "cpu", where)
    assert s.state == "fresh" and s.cells == 2 and s.wall_time is not None and s.wall_time >= 0
    assert s.recorded[:4].isdigit() and s.numerics == results_module.numerics_version()
    assert record.status("other", "cpu", where).state == "missing"
    table = record.status_table("cpu", [NB, "other"], where)
    assert list(table.state) == ["fresh", "missing"] and table.cells[0] == 2
    assert {"notebook", "scale", "wall time", "recorded", "commit", "numerics", "machine"} <= set(table)
    monkeypatch.setenv(record.RECORDED_ENV, str(where))
    note = notebook.provenance_note(NB, "cpu")
    assert note.startswith("Results at the `cpu` scale recorded on") and s.numerics in note
    assert "2 cells" in note and "Warning" not in note
    assert "no results are recorded" in notebook.provenance_note(NB, "smoke")
    monkeypatch.setenv(record.RECORDED_ENV, "off")
    assert "(recorded results off)" in notebook.provenance_note(NB, "cpu")
    monkeypatch.setenv(record.RECORDED_ENV, str(where))
    monkeypatch.setattr(results_module, "numerics_version", lambda: "0123456789ab")
    stale = notebook.provenance_note(NB, "cpu")
    assert stale.startswith("**Warning: stale") and "0123456789ab" in stale and record.REBUILD in stale


def test_provenance_of_a_recording(tmp_path, trained):
    _, path = _record(tmp_path, trained)
    prov = record.read_header(path)["provenance"]
    cells = trained[2].values()
    assert prov["numerics"] == results_module.numerics_version() and prov["threads"] == 1
    assert prov["cells_time"] == pytest.approx(sum(c.wall_time for c in cells))
    assert prov["wall_time"] >= 0 and prov["cpu_count"] == os.cpu_count() and prov["platform"]
    assert prov["recorded"] and "commit" in prov and sum(prov["cell_commits"].values()) == 2
    back = record.read(path).cells.values()  # a cell written from it, recorded again, keeps its provenance
    again = record.file_provenance(list(back))
    assert {k: again[k] for k in ("wall_time", "cells_time", "cell_commits", "numerics", "cpu_count")} == {
        k: prov[k] for k in ("wall_time", "cells_time", "cell_commits", "numerics", "cpu_count")
    }


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[: len(b) // 2],  # cut short: gzip's end is missing
        lambda b: b"not gzip at all",
        lambda b: gzip.compress(gzip.decompress(b).split(b"\n", 1)[0] + b"\n"),  # the header, no cells
        lambda b: gzip.compress(b'{"format": "something else"}\n'),
        lambda b: gzip.compress(gzip.decompress(b).replace(b'"history"', b'"hist"', 1)),
        lambda b: gzip.compress(gzip.decompress(b).replace(b'"test_acc"', b'"test_ac"', 1)),
        lambda b: b"",
    ],
)
def test_a_damaged_recording_names_itself_and_the_command(tmp_path, trained, monkeypatch, damage):
    where, path = _record(tmp_path, trained)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(record.RecordedFileError, match=f"{path}.*make book && make record.*git checkout"):
        record.read(path)
    monkeypatch.setenv(record.RECORDED_ENV, str(where))  # a sweep that consults it stops with the same error
    with pytest.raises(record.RecordedFileError, match=str(path)):
        run_sweep(SPEC, tmp_path / "runs", progress=False)


def test_a_failed_write_leaves_the_old_file(tmp_path, trained, monkeypatch):
    _, path = _record(tmp_path, trained)
    before = path.read_bytes()

    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OutputError, match="No space left"):
        _record(tmp_path, trained, histories=())
    assert path.read_bytes() == before and sorted(path.parent.iterdir()) == [path]


def test_the_history_round_trip_keeps_absent_fields_and_nones():
    history = [
        {"epoch": 0, "test_acc": 0.1, "layers": {"a": {"rule": "fa", "weight_angle": 88.123456789}}},
        {"epoch": 1, "lr": 0.01, "train_loss": None, "test_acc": 0.25, "time": 1.5,
         "layers": {"a": {"rule": "fa", "weight_angle": 80.0, "grad_angle": 70.5}, "b": {"rule": "bp"}}},
        {"epoch": 2, "lr": 0.01, "train_loss": 0.5, "test_acc": 1 / 3},
    ]  # fmt: skip
    back = record.unpack_history(json.loads(json.dumps(record.pack_history(history))))
    assert back[0] == {"epoch": 0, "test_acc": 0.1, "layers": {"a": {"rule": "fa", "weight_angle": 88.12346}}}
    assert back[1]["train_loss"] is None and "time" not in back[1]
    assert back[1]["layers"]["b"] == {"rule": "bp"}
    assert back[2] == {"epoch": 2, "lr": 0.01, "train_loss": 0.5, "test_acc": 0.33333334}


@dataclass(frozen=True)
class _Params:
    scale: str = "cpu"
    rules: tuple = ("fa",)


def _fake_experiment(runs):
    """An experiment module: its sweep asks for ``rules``, it reads the history of the first."""

    def run(params):
        spec = {**SPEC, "grid": {"rule": list(params.rules)}}
        summary = run_sweep(spec, runs, progress=False)
        history_frame([r for r in read_results(runs) if r.key == summary.key[0]])

    return types.SimpleNamespace(NOTEBOOK=NB, Params=_Params, run=run)


def _notebook(root, source):
    (root / "notebooks").mkdir(parents=True)
    cell = {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": source, "outputs": []}
    (root / "notebooks" / f"{NB}.ipynb").write_text(json.dumps({"cells": [cell]}))


def test_save_records_the_cells_and_histories_the_notebook_uses(tmp_path, trained, monkeypatch):
    runs = trained[0]
    _notebook(tmp_path, 'scale = "cpu"  # a comment\nrules = ("bp",)\n')
    monkeypatch.setattr(record, "experiment", lambda name: _fake_experiment(runs))
    path = record.save(NB, "cpu", root=tmp_path, where=tmp_path / "recorded")
    header = record.read_header(path)
    assert (header["cells"], header["histories"]) == (1, 1)  # fa is in the folder, but not used
    assert [r.config.rule for r in record.read(path).cells.values()] == ["bp"]
    _notebook(tmp_path / "other", 'scale = "cpu"\nrules = ("bp", "usf")\n')  # usf was never trained
    with pytest.raises(RuntimeError, match="1 of the 2 cells.*python -m fabook.book --scale cpu --only nb"):
        record.save(NB, "cpu", root=tmp_path / "other", where=tmp_path / "recorded")
    assert not list(runs.glob("*usf*"))


def test_reproduce_trains_anew_and_prints_what_differs(tmp_path, trained):
    where, path = _record(tmp_path, trained)
    lines = []
    assert record.reproduce([NB, "absent"], "cpu", tmp_path / "again", where=where, echo=lines.append) == 0
    assert "nb: every cell agrees" in lines and any("absent: no recorded results" in x for x in lines)
    text = gzip.decompress(path.read_bytes()).decode()
    acc = trained[2]["bp"].test_acc
    path.write_bytes(gzip.compress(text.replace(f'"test_acc":{acc!r}', '"test_acc":0.5').encode()))
    lines.clear()
    assert record.reproduce([NB], "cpu", tmp_path / "again", where=where, echo=lines.append) == 1
    assert "nb: 2 cells, 2 already trained" in lines[0]  # a rerun continues: nothing trains again
    assert any(f"test_acc: recorded 0.5, anew {acc!r}" in x for x in lines)
    assert lines[-1] == "nb: 1 of 2 cells differ"


def test_the_committed_recorded_results_match_the_code():
    """Fails when `recorded/` holds results of other numerics code than the committed one's (or lacks a
    notebook), naming the command that re-records them."""
    where = project_root() / "recorded"
    if not any(where.glob("*/*.json.gz")):
        pytest.skip("recorded/ holds no recorded results yet (`make book` then `make record` writes them)")
    table = record.status_table("cpu", where=where)
    bad = table[table.state != "fresh"]
    if not bad.empty:
        pytest.fail(
            f"recorded results stale (other numerics than this code's {results_module.numerics_version()}) "
            f"or missing:\n{bad.to_string(index=False)}\nre-record them: `{record.REBUILD}`",
            pytrace=False,
        )


def test_the_status_page_lists_recordings_at_other_scales_apart(tmp_path, trained, monkeypatch):
    from fabook.book import staging

    where, _ = _record(tmp_path, trained)
    _, _, cells = trained
    record.write(record.recorded_path(NB, "paper", where), NB, "paper", list(cells.values()), ())
    monkeypatch.setenv(record.RECORDED_ENV, str(where))
    monkeypatch.setattr(record, "notebooks", lambda root=None: [NB, "other"])
    assert record.recorded_scales() == record.recorded_scales(where) == ["cpu", "paper"]
    text = staging._status_text(["cpu"])
    cpu, paper = text.split("**Scale `paper`**")
    assert "**Scale `cpu`**" in cpu and "| other | missing |" in cpu
    assert f"| {NB} | fresh | 2 |" in paper and "other" not in paper
    model = "".join(f"; {m}" for m in record.processors(results_module.device_name(torch.device("cpu"))))
    assert f"({os.cpu_count()} CPUs{model}) |" in paper and "glibc" not in text  # the machine, short
    assert staging._short_machine("Linux-6.18.44-fc-v1272-x86_64-with-glibc2.36 (2 CPUs; AMD EPYC)") == (
        "Linux x86_64 (2 CPUs; AMD EPYC)"
    )


def test_a_recordings_processors_are_named_from_its_cells_devices():
    names = ["cpu (AMD EPYC 9B14, 1 threads)", "cpu (x86_64, 2 threads)", "NVIDIA H100 80GB HBM3"]
    assert record.processors(names + names[:1]) == ["AMD EPYC 9B14", "NVIDIA H100 80GB HBM3"]
    assert record.processors("cpu (x86_64, 1 threads)") == [] == record.processors(None)


def test_the_recorded_wall_time_leaves_out_pauses_between_resumed_runs():
    t = "2026-01-01T00:{:02d}:00+00:00".format
    assert record._busy_seconds([(t(0), t(10)), (t(5), t(12)), (t(40), t(41))]) == 13 * 60
    assert record._busy_seconds([(t(0), t(10)), (t(2), t(3))]) == 10 * 60
    assert record._busy_seconds([]) is None
