"""The command line of the book: ``python -m fabook.book`` (see :func:`main`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fabook.book.building import BuildError, build, build_warnings
from fabook.book.checking import (
    API_PAGE,
    SCREENSHOT_DIR,
    api_modules,
    check_html,
    figure_problems,
    install_problems,
    machine_paths,
    screenshot,
)
from fabook.book.execution import NotebookError, execute_notebooks
from fabook.book.project import (
    BUILD_LOG,
    EXECUTED_DIR,
    HTML_DIR,
    SCALES,
    STAGE_DIR,
    check_scale,
    figures_dir,
    find_notebooks,
    repository,
    stale_addresses,
)
from fabook.book.staging import stage


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m fabook.book --scale {smoke,cpu,paper} [--only NAME...] [--check] ...``."""
    parser = argparse.ArgumentParser(
        prog="python -m fabook.book",
        description="Execute the notebooks with papermill, build the book into _build/html, check it.",
    )
    parser.add_argument("--scale", default="cpu", help=f"one of {', '.join(SCALES)} (default: cpu)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="execute only these notebooks")
    parser.add_argument("--no-execute", action="store_true", help="reuse the notebooks in _build/executed")
    parser.add_argument("--no-build", action="store_true", help="do not stage and build the book")
    parser.add_argument("--check", action="store_true", help="check the built book; exit 1 on a problem")
    parser.add_argument("--root", type=Path, default=Path("."), help="the repository (default: .)")
    parser.add_argument(
        "--no-screenshots", action="store_true", help=f"with --check: no page screenshots ({SCREENSHOT_DIR})"
    )
    args = parser.parse_args(argv)
    root = args.root
    try:
        check_scale(args.scale)
        if not args.no_execute:
            notebooks = find_notebooks(root, args.only)
            if not notebooks:
                raise ValueError(f"no notebooks in {root / 'notebooks'}")
            execute_notebooks(args.scale, root / EXECUTED_DIR, notebooks, root=root)
        if not args.no_build:
            stage(root / EXECUTED_DIR, root / STAGE_DIR, root=root)
            build(root / STAGE_DIR, root=root)
        if args.check:
            problems = check_html(
                root / HTML_DIR,
                find_notebooks(root),
                toc=root / "_toc.yml",
                figures=figures_dir(root),
                api_modules=api_modules(root / f"{API_PAGE}.md"),
                repository=repository(root),
                machine_paths=machine_paths(root),
            )
            problems += stale_addresses(root) + install_problems(find_notebooks(root))
            problems += figure_problems(sorted((root / EXECUTED_DIR).glob("*.ipynb")))
            if not args.no_screenshots:
                problems += screenshot(root / HTML_DIR, root / SCREENSHOT_DIR)
                print(f"screenshots of every page: {root / SCREENSHOT_DIR}")
            problems += [f"build warning: {line}" for line in build_warnings(root / BUILD_LOG)]
            for problem in problems:
                print(f"problem: {problem}", file=sys.stderr)
            if problems:
                print(f"{len(problems)} problem(s) in {root / HTML_DIR}", file=sys.stderr)
                return 1
            print(f"checked {root / HTML_DIR}: no problems")
    except (ValueError, NotebookError, BuildError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0
