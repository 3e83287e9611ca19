"""The engine under bad input and faults (issue 16): refuse before training, stop when asked, never reuse
stale results."""

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import fabook
import fabook.train as train_module
from fabook import data, notebook, results
from fabook.cli import main
from fabook.experiments import intro
from fabook.sweep import expand, load_spec, read_results, run_sweep
from fabook.train import Config, load_result, result_path, train

TINY = dict(dataset="digits", epochs=1, max_train=100, max_test=60, batch_size=50, metrics_every=0)
TINY_ARGS = ["--dataset", "digits", "--epochs", "1", "--max-train", "100", "--max-test", "60"]
TINY_ARGS += ["--metrics-every", "0", "--no-progress"]
ROOT = Path(fabook.__file__).parent.parent


def tiny(**changes) -> Config:
    return Config(**{**TINY, **changes})


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if any cell starts training (loads its data)."""

    def load(*args, **kwargs):
        raise AssertionError("a cell started training")

    monkeypatch.setattr(data, "load", load)


@pytest.fixture
def read_only():
    """Make a folder and everything in it read-only (as root: immutable, which root obeys too)."""
    made = []

    def make(folder: Path) -> None:
        if os.geteuid() == 0:
            if subprocess.run(["chattr", "-R", "+i", str(folder)], capture_output=True).returncode:
                pytest.skip("cannot make a folder read-only for root here (chattr +i)")
        else:
            for p in [folder, *folder.rglob("*")]:
                p.chmod(p.stat().st_mode & ~0o222)
        made.append(folder)

    yield make
    for folder in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-R", "-i", str(folder)], check=True)
        else:
            for p in [folder, *folder.rglob("*")]:
                p.chmod(p.stat().st_mode | 0o200)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("fabook: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


# refuse before any work starts ------------------------------------------------------------------------------


def test_out_that_is_a_file_is_refused_before_training(tmp_path, capsys, no_training):
    file = tmp_path / "results.txt"
    file.write_text("notes")
    assert main(["run", *TINY_ARGS, "--out", str(file)]) == 2
    err = one_line_error(capsys)
    assert str(file) in err and "is a file" in err and "--out" in err
    assert file.read_text() == "notes"


def test_read_only_results_folder_is_refused_before_training(tmp_path, capsys, no_training, read_only):
    folder = tmp_path / "runs"
    folder.mkdir()
    read_only(folder)
    assert main(["run", *TINY_ARGS, "--out", str(folder)]) == 2
    assert str(folder) in one_line_error(capsys)


def test_FABOOK_RUNS_that_is_a_file_is_refused_before_training(tmp_path, monkeypatch, capsys, no_training):
    file = tmp_path / "runs"
    file.write_text("")
    monkeypatch.setenv("FABOOK_RUNS", str(file))
    assert main(["run", *TINY_ARGS]) == 2
    assert "is a file" in one_line_error(capsys)
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"name": "s", "base": TINY}))
    assert main(["sweep", str(spec), "--no-progress"]) == 2  # runs/<name> under a file
    err = one_line_error(capsys)
    assert str(file / "s") in err and "a part of the path is a file" in err and "$FABOOK_RUNS" in err


def test_unreachable_results_folder_says_what_to_do(tmp_path, capsys, no_training):
    (tmp_path / "drive").symlink_to(tmp_path / "unmounted")
    assert main(["run", *TINY_ARGS, "--out", str(tmp_path / "drive" / "runs")]) == 2
    err = one_line_error(capsys)
    assert "link to the missing" in err and "check the path" in err


def test_check_folder_creates_and_leaves_nothing_else(tmp_path):
    assert results.check_folder(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list((tmp_path / "a" / "b").iterdir()) == []
    with pytest.raises(results.OutputError, match="is a file"):
        results.check_folder(Path(__file__))


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(lr=-0.1), r"lr must be a finite number >= 0; got -0.1"),
        (dict(lr=float("nan")), r"lr must be a finite number >= 0; got nan"),
        (dict(lr=float("inf")), r"lr must be a finite number >= 0; got inf"),
        (dict(momentum=1.5), r"momentum must be a finite number in \[0, 1\); got 1.5"),
        (dict(weight_decay=-1e-4), r"weight_decay must be a finite number >= 0"),
        (dict(width=float("nan")), r"width must be a finite number > 0"),
        (dict(width=-2.0), r"width must be a finite number > 0"),
        (dict(rule="sc", rule_options={"p": float("nan")}), r"rule option p must be a finite number"),
        (dict(threads=0), r"threads must be >= 1"),
    ],
)
def test_numeric_fields_are_checked_for_range_and_finiteness(changes, match):
    with pytest.raises(ValueError, match=match):
        tiny(**changes)


def test_sweep_with_a_bad_value_in_one_cell_trains_none(tmp_path, no_training):
    spec = {"name": "lr", "base": TINY, "grid": {"lr": [0.01, -0.1]}}
    with pytest.raises(ValueError, match=r"sweep cell \{'lr': -0.1\}: lr must be a finite number >= 0"):
        run_sweep(spec, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_cli_lr_must_be_finite_and_not_negative(tmp_path, capsys, no_training, value):
    assert main(["run", *TINY_ARGS, "--lr", value, "--out", str(tmp_path)]) == 2
    assert "lr must be a finite number >= 0" in one_line_error(capsys)
    assert list(tmp_path.iterdir()) == []


def test_summary_of_a_missing_folder_or_a_file_fails(tmp_path, capsys):
    assert main(["summary", str(tmp_path / "typo")]) == 2
    assert "no results folder" in one_line_error(capsys)
    file = tmp_path / "r.json"
    file.write_text("{}")
    assert main(["summary", str(file)]) == 2
    assert "is a file, not a results folder" in one_line_error(capsys)
    (tmp_path / "empty").mkdir()
    assert main(["summary", str(tmp_path / "empty")]) == 0  # an empty folder is fine
    assert "no results" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["../../escape", "a/b", "..", "", "a\\b", 3])
def test_spec_name_is_a_folder_name(name):
    with pytest.raises(ValueError, match="sweep 'name' must be a folder name"):
        load_spec({"name": name, "base": TINY})


@dataclass(frozen=True)
class Knobs:
    scale: str = "cpu"
    datasets: tuple[str, ...] | None = None
    seeds: int | None = None
    download: bool = False
    noise: float = 0.0

    def __post_init__(self) -> None:
        notebook.check_types(self)


@pytest.mark.parametrize(
    "changes, match",
    [
        (dict(download="no"), r"download='no' must be True or False"),
        (dict(download=1), r"download=1 must be True or False"),
        (dict(datasets="digits"), r"datasets='digits' must be a list of strings or None, e.g. \['digits'\]"),
        (dict(datasets=["digits", 3]), r"datasets=\['digits', 3\] must be a list of strings"),
        (dict(seeds=True), r"seeds=True must be an integer or None"),
        (dict(seeds="3"), r"seeds='3' must be an integer or None"),
        (dict(noise="0.1"), r"noise='0.1' must be a number"),
        (dict(scale=None), r"scale=None must be a string"),
    ],
)
def test_notebook_parameters_are_checked_by_type_not_truthiness(changes, match):
    with pytest.raises(TypeError, match=match):
        Knobs(**changes)


def test_notebook_parameter_lists_become_tuples():
    knobs = Knobs(datasets=["digits", "iris"], noise=1, seeds=None)
    assert knobs.datasets == ("digits", "iris") and knobs.noise == 1


def test_intro_params_check_types():
    with pytest.raises(TypeError, match=r"rules='fa' must be a list of strings, e.g. \['fa'\]"):
        intro.Params(rules="fa")
    with pytest.raises(TypeError, match="jobs=True"):
        intro.Params(jobs=True)
    assert intro.Params(rules=["fa", "bp"]).rules == ("fa", "bp")


# stop when asked, lose nothing ------------------------------------------------------------------------------


@pytest.mark.parametrize("to", ["terminal", "parent"])
def test_ctrl_c_stops_every_worker_and_starts_nothing_new(tmp_path, to):
    """A Ctrl-C in a terminal reaches the whole process group; ``kill -INT`` only the parent. The cells are
    endless: only a stop ends the sweep, and a cell started after it would leave a new checkpoint."""
    base = {**TINY, "epochs": 10**6, "max_train": 100}
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"name": "s", "base": base, "grid": {"seed": list(range(4))}}))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = [
        sys.executable,
        "-m",
        "fabook",
        "sweep",
        str(spec),
        "--out",
        str(out),
        "--jobs",
        "2",
        "--no-progress",
    ]
    # as from a terminal: a shell's background job inherits SIGINT ignored (POSIX), and Python keeps it so
    sigint = functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    proc = subprocess.Popen(
        argv, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True, preexec_fn=sigint
    )
    try:
        deadline = time.monotonic() + 180
        while len(list(out.glob("*.ckpt.pt"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        in_flight = sorted(out.glob("*.ckpt.pt"))
        assert len(in_flight) == 2, "the two workers did not get under way"
        if to == "terminal":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            os.kill(proc.pid, signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            pytest.fail("the sweep went on training after the interrupt")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, err
    assert f"resume with: fabook sweep {spec} --out {out} --jobs 2" in err and "Traceback" not in err, err
    for _ in range(100):  # the workers are gone with the parent
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("worker processes outlived the sweep")
    assert sorted(out.glob("*.ckpt.pt")) == in_flight  # in-flight cells keep theirs; no other cell started
    assert all(results.load_checkpoint(p)["epoch"] >= 1 for p in in_flight)
    assert not list(out.glob("*.json"))
    assert not list(out.glob(".*")), list(out.glob(".*"))  # no temporary file or lock left


@pytest.fixture
def disk_full_on(monkeypatch):
    """Writes of files whose name contains ``what`` go to /dev/full (ENOSPC), from the ``nth`` such on."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    open_new = results._open_new

    def arm(what: str, nth: int = 1) -> None:
        count = [0]

        def fake(path):
            fd = open_new(path)
            if what in path.name:
                count[0] += 1
                if count[0] >= nth:
                    os.close(fd)
                    fd = os.open("/dev/full", os.O_WRONLY)
            return fd

        monkeypatch.setattr(results, "_open_new", fake)

    return arm


def test_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys, disk_full_on):
    disk_full_on(".ckpt.pt", nth=2)
    assert main(["run", *TINY_ARGS[:3], "3", *TINY_ARGS[4:], "--out", str(tmp_path)]) == 2
    assert "No space left on device" in one_line_error(capsys)
    (ckpt,) = tmp_path.glob("*.ckpt.pt")
    assert results.load_checkpoint(ckpt)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [ckpt.name]  # no temporary file or lock left


def test_full_disk_writing_the_result(tmp_path, disk_full_on):
    disk_full_on(".json")
    with pytest.raises(
        results.OutputError, match=r"cannot write .*\.json: No space left on device; free some space"
    ):
        train(tiny(), out_dir=tmp_path, progress=False)
    assert not list(tmp_path.glob("*.json"))


def test_read_only_archive_of_finished_cells_prints_its_table(tmp_path, capsys, read_only):
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"name": "s", "base": TINY, "grid": {"seed": [0, 1]}}))
    out = tmp_path / "archive"
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 0
    first = capsys.readouterr().out
    read_only(out)
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[:3] == first.splitlines()[:3]  # the header and both cells
    assert "summary.csv not saved" in captured.err


# never silently reuse or disagree ---------------------------------------------------------------------------


def test_results_of_other_code_are_kept_but_not_reused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(results, "numerics_version", lambda: "0123456789ab")
    old = train(tiny(), out_dir=tmp_path, progress=False)
    assert old.provenance["numerics"] == "0123456789ab"
    monkeypatch.setattr(results, "numerics_version", lambda: "ba9876543210")
    loads = []
    load = data.load
    monkeypatch.setattr(data, "load", lambda *a, **k: loads.append(a) or load(*a, **k))
    new = train(tiny(), out_dir=tmp_path, progress=False)
    assert loads, "the old code's result was reused"
    assert new.key != old.key and old.path.exists() and new.path.exists()
    assert {r.key for r in read_results(tmp_path)} == {old.key, new.key}
    assert load_result(old.path).key == old.key == old.path.stem
    assert main(["summary", str(tmp_path)]) == 0
    assert "1 result(s) come from other code" in capsys.readouterr().out


def test_numerics_version_follows_the_training_code():
    version = results.numerics_version()
    assert len(version) == 12 and tiny().key() != tiny().key(numerics="other")
    assert "train.py" in results.NUMERICS_SOURCES and "rules.py" in results.NUMERICS_SOURCES


def _versions_after(edits, module, tmp_path, monkeypatch) -> list[str]:
    """The numerics version of a package copy after each of ``edits`` (functions of the module's text)."""
    copy = tmp_path / "fabook"
    shutil.copytree(Path(results.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__", "*.gz"))
    versions = []
    with monkeypatch.context() as patch:
        patch.setattr(results, "__file__", str(copy / "results.py"))  # numerics_version hashes the copy
        for edit in edits:
            (copy / module).write_text(edit((copy / module).read_text()))
            results.numerics_version.cache_clear()
            versions.append(results.numerics_version())
    results.numerics_version.cache_clear()
    return versions


@pytest.mark.parametrize(
    "module", ["config.py", "batches.py", "loop.py", "train.py", "norm_constraint.py", "distributed.py"]
)
def test_an_edit_to_an_engine_module_changes_the_numerics_version(tmp_path, monkeypatch, module):
    unchanged, edited = _versions_after(
        [str, lambda text: text + "\n_EDIT = 1\n"], module, tmp_path, monkeypatch
    )
    assert unchanged != edited


def test_a_docstring_or_comment_edit_keeps_the_numerics_version(tmp_path, monkeypatch):
    def redocument(text: str) -> str:  # a new module docstring, a comment and an attribute docstring
        text = '"""Other words."""' + text.split('"""', 2)[2]
        return text.replace("X = 1\n", 'X = 1  # a comment\n"""X\'s docstring."""\n')

    before, after, changed = _versions_after(
        [lambda text: text + "\nX = 1\n", redocument, lambda text: text.replace("X = 1", "X = 2")],
        "rules.py",
        tmp_path,
        monkeypatch,
    )
    assert before == after != changed


def test_thread_count_is_part_of_the_cell():
    assert tiny(threads=2).key() != tiny().key()
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        under_two = train(tiny(epochs=2), progress=False)
        assert torch.get_num_threads() == 2  # restored after the cell
    finally:
        torch.set_num_threads(before)
    under_one = train(tiny(epochs=2), progress=False)
    assert under_two.provenance["threads"] == under_one.provenance["threads"] == 1
    assert [h["train_loss"] for h in under_two.history] == [h["train_loss"] for h in under_one.history]


def test_cli_run_has_threads(tmp_path):
    assert main(["run", *TINY_ARGS, "--threads", "2", "--out", str(tmp_path)]) == 0
    (path,) = tmp_path.glob("*.json")
    stored = json.loads(path.read_text())
    assert stored["config"]["threads"] == 2 and stored["provenance"]["threads"] == 2


def _in_thread(fn):
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("value", fn()), daemon=True)
    thread.start()
    return thread, box


def test_a_cell_another_process_trains_is_waited_for_then_loaded(tmp_path, monkeypatch):
    cfg = tiny()
    other = train(cfg, out_dir=tmp_path / "elsewhere", progress=False)  # what the other process writes
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("trained a cell another process trains"))
    out = tmp_path / "out"
    out.mkdir()
    with results.cell_lock(train_module.lock_path(cfg, out)):  # the other process, training the cell
        thread, box = _in_thread(lambda: train(cfg, out_dir=out, progress=False))
        thread.join(1.0)
        assert thread.is_alive() and not result_path(cfg, out).exists()
        shutil.copy(other.path, result_path(cfg, out))
    thread.join(30)
    assert box["value"] == other
    assert not train_module.lock_path(cfg, out).exists()


def test_a_sweep_first_trains_the_cells_no_one_else_trains(tmp_path, monkeypatch):
    spec = {"base": TINY, "grid": {"seed": [0, 1]}}
    first, second = expand(spec)
    other = train(first, out_dir=tmp_path / "elsewhere", progress=False)
    seeds = []
    load = data.load
    monkeypatch.setattr(data, "load", lambda *a, **k: seeds.append(k["seed"]) or load(*a, **k))
    out = tmp_path / "out"
    out.mkdir()
    with results.cell_lock(train_module.lock_path(first, out)):
        thread, box = _in_thread(lambda: run_sweep(spec, out, progress=False))
        deadline = time.monotonic() + 60
        while not result_path(second, out).exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seeds == [1]
        shutil.copy(other.path, result_path(first, out))
    thread.join(30)
    assert seeds == [1] and list(box["value"].seed) == [0, 1]


def test_result_files_and_checkpoints_respect_the_umask(tmp_path, monkeypatch):
    modes = []
    save = results.save_checkpoint
    monkeypatch.setattr(results, "save_checkpoint", lambda p, s: modes.append(save(p, s).stat().st_mode))
    before = os.umask(0o022)
    try:
        result = train(tiny(epochs=2), out_dir=tmp_path, progress=False)
    finally:
        os.umask(before)
    assert [m & 0o777 for m in modes] == [0o644]
    assert result.path.stat().st_mode & 0o777 == 0o644


def test_figures_respect_the_umask(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from fabook.notebook import save_figure

    monkeypatch.setenv("FABOOK_FIGURES", str(tmp_path))
    fig = plt.figure()
    before = os.umask(0o022)
    try:
        paths = save_figure(fig, "nb", "fig")
    finally:
        os.umask(before)
        plt.close(fig)
    assert [p.stat().st_mode & 0o777 for p in paths] == [0o644, 0o644]
