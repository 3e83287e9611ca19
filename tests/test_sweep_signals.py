"""A sweep with --jobs 2 stopped by SIGTERM (what `timeout`, a CI limit or a scheduler sends) or by its
parent's death: no worker process trains on."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fabook

ROOT = Path(fabook.__file__).parent.parent
ENDLESS = dict(dataset="fashion-mnist-small", model="mlp", width=16, epochs=10**6, max_train=100, max_test=50)


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (an exited child nobody reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.fixture
def endless_sweep(tmp_path: Path):
    """``start()``: a sweep of 4 endless cells on 2 workers, returned once both have a checkpoint, with the
    workers' process ids."""
    if not Path("/proc/self/task").is_dir():
        pytest.skip("needs Linux's /proc to find the worker processes")
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"name": "s", "base": ENDLESS, "grid": {"seed": [0, 1, 2, 3]}}))
    out = tmp_path / "out"
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
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = []

    def start() -> tuple[subprocess.Popen, list[int], str]:
        proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
        procs.append(proc)
        deadline = time.monotonic() + 60
        while len(list(out.glob("*.ckpt.pt"))) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert len(list(out.glob("*.ckpt.pt"))) == 2, "the two workers did not get under way"
        workers = children(proc.pid)
        assert len(workers) == 2, workers
        return proc, workers, f"fabook sweep {spec} --out {out} --jobs 2 --no-progress"

    yield start
    for proc in procs:  # whatever the test left running
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def gone_within(pids: list[int], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not any(alive(pid) for pid in pids)


def test_sigterm_stops_every_worker_as_ctrl_c_does(endless_sweep) -> None:
    proc, workers, command = endless_sweep()
    proc.send_signal(signal.SIGTERM)  # the parent only, as `kill` does
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("the sweep went on after SIGTERM")
    assert proc.returncode == 130, err
    assert f"resume with: {command}" in err and "Traceback" not in err, err
    assert gone_within(workers, 2), "a worker outlived the sweep"


def test_workers_stop_when_the_sweep_is_killed(endless_sweep) -> None:
    proc, workers, _ = endless_sweep()
    proc.kill()  # SIGKILL: no handler runs, nothing tells the workers
    proc.communicate(timeout=10)
    assert gone_within(workers, 10), "a worker trained on after its sweep was killed"
