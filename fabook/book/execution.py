"""Step 1: execute the notebooks with papermill at one scale, reporting a sweep's progress and each
failure."""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from fabook.book.project import EXECUTED_DIR, FIGURES_ENV, check_scale, figures_dir, find_notebooks

KERNEL = "python3"
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]  # keeps "Kernel is running over TCP..." off the terminal


class NotebookError(RuntimeError):
    """One or more notebooks failed to execute; ``failures`` holds one line per notebook."""

    def __init__(self, failures: Sequence[str]):
        self.failures = list(failures)
        super().__init__(f"{len(self.failures)} notebook(s) failed:\n" + "\n".join(self.failures))


def _parameters_cell(nb) -> int:
    """Index of the cell tagged ``parameters``, which must assign ``scale``; ValueError otherwise."""
    for index, cell in enumerate(nb.cells):
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            if not re.search(r"^\s*scale\s*(:[^=]*)?=", cell.source, re.MULTILINE):
                raise ValueError(f"its 'parameters' cell (cell {index}) does not assign `scale`")
            return index
    raise ValueError("it has no cell tagged 'parameters' (papermill could not set its scale)")


def _describe_failure(notebook: Path, params_index: int, err: Exception) -> str:
    """One line naming the notebook, the failing cell (index in the source notebook) and the error."""
    index = getattr(err, "cell_index", None)
    if index is None:
        return f"{notebook}: {type(err).__name__}: {err}"
    if index > params_index:  # papermill inserts its injected-parameters cell after the parameters cell
        index -= 1
    first_line = next((line for line in err.source.splitlines() if line.strip()), "")
    return (
        f"{notebook}: cell {index} (0-based, In [{err.exec_count}]) raised {err.ename}: {err.evalue}"
        f" -- {first_line.strip()}"
    )


SWEEP_BAR = re.compile(
    r"(?P<name>[^\r\n:]+): *\d+%\|[^|]*\| *(?P<done>\d+)/(?P<total>\d+) \[(?P<times>[^\]]*)\]"
)


class _SweepProgress:
    """A file for papermill's ``stderr_file``: the notebook's stderr goes to the page only, but a sweep's
    progress bar (``name: 40%|...| 8/20 [00:10<00:15, ...]``) is printed to the terminal as a line, at its
    first and last cell and at most every ``every`` seconds in between."""

    def __init__(self, prefix: str, echo=print, every: float = 10.0) -> None:
        self.prefix, self.echo, self.every = prefix, echo, every
        self.last: tuple[str, str] | None = None
        self.printed = -math.inf

    def write(self, text: str) -> int:
        for match in SWEEP_BAR.finditer(text):
            if "cell" not in match.group("times"):  # a training bar (epochs, steps), not a sweep's cells
                continue
            done, total = match.group("done", "total")
            now = time.monotonic()
            due = done in ("0", total) or now - self.printed >= self.every
            if (match.group("name"), done) != self.last and due:
                self.last, self.printed = (match.group("name"), done), now
                elapsed, _, left = match.group("times").partition(",")[0].partition("<")
                eta = f", about {left} left" if left and "?" not in left and done != total else ""
                self.echo(f"{self.prefix}sweep {match.group('name').strip()}: {done}/{total} cells "
                          f"({elapsed} elapsed{eta})")  # fmt: skip
        return len(text)

    def flush(self) -> None:
        pass


def execute_notebooks(
    scale: str,
    out_dir: Path = EXECUTED_DIR,
    notebooks: Iterable[Path | str] | None = None,
    *,
    root: Path = Path("."),
    progress: bool = True,
) -> list[Path]:
    """Execute notebooks with papermill at ``scale`` into ``out_dir``; return the executed paths.

    Each notebook runs in its own folder with ``scale`` injected after its ``parameters`` cell and with
    ``$FABOOK_FIGURES`` pointing at :func:`figures_dir`, so figures land where :func:`stage` finds them.
    All notebooks run; if any failed, :class:`NotebookError` names each with its failing cell and error.
    """
    import nbformat
    import papermill

    check_scale(scale)
    paths = find_notebooks(root) if notebooks is None else [Path(nb) for nb in notebooks]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = figures_dir(root).resolve()
    previous = os.environ.get(FIGURES_ENV)
    os.environ[FIGURES_ENV] = str(figures)
    executed, failures = [], []
    try:
        for number, notebook in enumerate(paths, 1):
            out = out_dir / notebook.name
            if progress:
                print(f"[{number}/{len(paths)}] {notebook} (scale={scale})", flush=True)
            start = time.perf_counter()
            try:
                params_index = _parameters_cell(nbformat.read(notebook, as_version=4))
            except ValueError as err:
                failures.append(f"{notebook}: {err}; see README.md, 'Writing a notebook'")
                continue
            echo = (_echo_beside_bar if sys.stderr.isatty() else print) if progress else (lambda line: None)
            try:
                papermill.execute_notebook(
                    notebook.resolve(),
                    out.resolve(),
                    parameters={"scale": scale},
                    kernel_name=KERNEL,
                    cwd=notebook.resolve().parent,
                    progress_bar=_cell_bar(progress),
                    stderr_file=_SweepProgress("    ", echo),
                    extra_arguments=KERNEL_ARGS,
                )
            except Exception as err:  # papermill, nbclient and kernel errors all end the same way
                failures.append(_describe_failure(notebook, params_index, err))
                if progress:
                    print(f"    FAILED: {failures[-1]}", flush=True)
                continue
            executed.append(out)
            if progress:
                print(f"    ok in {time.perf_counter() - start:.1f} s -> {out}", flush=True)
    finally:
        if previous is None:
            os.environ.pop(FIGURES_ENV, None)
        else:
            os.environ[FIGURES_ENV] = previous
    if failures:
        raise NotebookError(failures)
    return executed


def _cell_bar(progress: bool) -> bool | dict:
    """papermill's bar of the notebook's cells: redrawn in a terminal, a line every 60 s in a log (CI)."""
    if not progress:
        return False
    return (
        {"desc": "    cells"}
        if sys.stderr.isatty()
        else {"desc": "    cells", "mininterval": 60, "ascii": True}
    )


def _echo_beside_bar(line: str) -> None:
    """Print ``line`` above papermill's cell bar without breaking it."""
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)
