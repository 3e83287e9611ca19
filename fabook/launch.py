"""Where a sweep's cells run: a pool of processes here (the default) or a cluster through submitit.

``fabook sweep spec.json --engine submitit --slurm slurm_partition=gpu --slurm gpus_per_node=1`` hands each
cell that is not finished to `submitit <https://github.com/facebookincubator/submitit>`_ as one SLURM job
(``pip install 'fabook[slurm]'``). The jobs run :func:`fabook.train` into the sweep's results folder, which
must be on a file system the compute nodes share; submitit's logs go to ``<out>/submitit/``. A job that
fails (a node lost, a time limit) is submitted again, up to ``retries`` times: it resumes from the cell's
last checkpoint. Cells that still fail are named with their logs in :class:`CellsFailedError`; the
finished ones are kept, and running the sweep again runs only what is missing.
"""

from __future__ import annotations

import importlib.util
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from fabook.train import Config, Result, load_result, result_path, train

ENGINES = ("local", "submitit")
CLUSTERS = ("auto", "slurm", "local", "debug")
"""submitit's clusters: auto (SLURM where ``sbatch`` exists, else local processes), slurm, local
(subprocesses here), debug (in this process, one after another)."""


class CellsFailedError(RuntimeError):
    """Cells whose jobs failed on every attempt."""


def check(engine: str, cluster: str = "auto") -> None:
    """ValueError for an unknown engine or cluster, or an engine that is not installed here."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; accepted: {', '.join(ENGINES)}")
    if cluster not in CLUSTERS:
        raise ValueError(f"unknown submitit cluster {cluster!r}; accepted: {', '.join(CLUSTERS)}")
    if engine == "submitit" and importlib.util.find_spec("submitit") is None:
        raise ValueError(
            "engine 'submitit' needs the submitit package, not installed here: pip install 'fabook[slurm]'"
        )


def run_cell(config: Config, out_dir: str) -> str:
    """One cell, as a cluster job runs it: train (resuming if interrupted); the result file's path."""
    return str(train(config, out_dir=out_dir, progress=False).path)


def run_submitit(
    configs: Sequence[Config],
    out_dir: str | Path,
    *,
    retries: int = 1,
    cluster: str = "auto",
    parameters: Mapping[str, Any] | None = None,
) -> dict[str, Result]:
    """Run ``configs`` as submitit jobs (one per cell, submitted together) and wait for them.

    ``parameters`` go to ``AutoExecutor.update_parameters`` (``timeout_min``, ``gpus_per_node``,
    ``slurm_partition``, ...). A failed job is resubmitted up to ``retries`` times. Returns the results by
    key; raises :class:`CellsFailedError` naming the cells that failed every attempt."""
    check("submitit", cluster)
    if retries < 0:
        raise ValueError(f"retries must be >= 0; got {retries!r}")
    import submitit

    out = Path(out_dir)
    folder = out / "submitit" / "%j"
    executor = submitit.AutoExecutor(folder=folder, cluster=None if cluster == "auto" else cluster)
    executor.update_parameters(name="fabook", **dict(parameters or {}))
    with executor.batch():  # one job array on SLURM
        jobs = [(cfg, 0, executor.submit(run_cell, cfg, str(out))) for cfg in configs]
    queue, done, failed = deque(jobs), {}, []
    while queue:
        cfg, attempt, job = queue.popleft()
        error = job.exception()  # waits for the job; None when it succeeded
        if error is None:
            done[cfg.key()] = load_result(result_path(cfg, out), cfg)
        elif attempt < retries:
            queue.append((cfg, attempt + 1, executor.submit(run_cell, cfg, str(out))))
        else:
            failed.append(f"{cfg.key()} (job {job.job_id}: {_first_line(error)}; log {job.paths.stderr})")
    if failed:
        raise CellsFailedError(
            f"{len(failed)} cell(s) failed after {retries + 1} attempt(s): " + "; ".join(failed)
            + ". Finished cells are kept; run the sweep again to retry the rest."
        )  # fmt: skip
    return done


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1] if text else ''}"
