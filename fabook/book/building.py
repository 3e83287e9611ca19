"""Step 3: build the staged book with Jupyter Book, the log kept and its warnings listed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from fabook.book.project import BUILD_LOG, HTML_DIR, STAGE_DIR

ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class BuildError(RuntimeError):
    """Jupyter Book exited with an error."""


def build(stage_dir: Path = STAGE_DIR, *, root: Path = Path("."), quiet: bool = False) -> list[str]:
    """Build the staged book into ``<root>/_build/html``; return Sphinx's warnings.

    The full log goes to ``<root>/_build/book.log``. Raises :class:`BuildError` if Jupyter Book fails.
    """
    root = Path(root)
    log_path = root / BUILD_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    html = root / HTML_DIR
    if html.exists():  # Sphinx never deletes pages, so a page from an earlier build could hide a missing one
        shutil.rmtree(html)
    env = dict(os.environ, NO_COLOR="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root.resolve()), env.get("PYTHONPATH")]))
    command = [
        sys.executable,
        "-c",
        "from jupyter_book.cli.main import main; main()",
        "build",
        str(stage_dir),
        "--path-output",
        str(root),
        "--all",
    ]
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    log = ANSI_ESCAPE.sub("", result.stdout + result.stderr)
    log_path.write_text(log, encoding="utf-8")
    warnings = build_warnings(log_path)
    if result.returncode != 0:
        raise BuildError(f"jupyter-book failed (exit {result.returncode}); log: {log_path}\n{log[-3000:]}")
    if not quiet:
        print(f"built {html} in {time.perf_counter() - start:.0f} s, {len(warnings)} warning(s)")
        for line in warnings:
            print(f"    {line}")
    return warnings


def build_warnings(log_path: Path = BUILD_LOG) -> list[str]:
    """The warning and error lines of a Jupyter Book log (empty if there is no log)."""
    if not Path(log_path).is_file():
        return []
    pattern = re.compile(r"\b(WARNING|ERROR|CRITICAL|SEVERE):")
    return [line for line in Path(log_path).read_text(encoding="utf-8").splitlines() if pattern.search(line)]
