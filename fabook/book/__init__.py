"""Build the book: execute the notebooks, stage them with the pages, build the HTML, check it.

The book never executes a notebook itself (``execute_notebooks: "off"`` in ``_config.yml``). Instead, one
module per step:

1. :mod:`fabook.book.execution`: :func:`execute_notebooks` runs every ``notebooks/*.ipynb`` once with
   papermill at one scale (``smoke``, ``cpu`` or ``paper``) into ``_build/executed/``;
2. :mod:`fabook.book.staging`: :func:`stage` copies the book sources, the executed notebooks and
   ``figures/`` into ``_build/stage/``;
3. :mod:`fabook.book.building`: :func:`build` runs Jupyter Book on the stage into ``_build/html/``;
4. :mod:`fabook.book.checking`: :func:`check_html` lists what is wrong with the built pages (and
   :func:`screenshot` renders them in headless Chromium).

:mod:`fabook.book.project` knows where things are (the project root, its notebooks and figures, the scales,
the repository address). ``python -m fabook.book --scale smoke --check`` runs all four (:func:`main`, in
:mod:`fabook.book.cli`). Every function and class, and the constants naming a place, are importable from
``fabook.book``.
"""

from fabook.book.building import BuildError, build, build_warnings
from fabook.book.checking import (
    API_PAGE,
    SCREENSHOT_DIR,
    api_modules,
    check_html,
    figure_problems,
    find_chromium,
    install_problems,
    machine_paths,
    page_problems,
    screenshot,
    toc_files,
)
from fabook.book.cli import main
from fabook.book.execution import NotebookError, execute_notebooks
from fabook.book.project import (
    BUILD_LOG,
    CONFIG,
    EXECUTED_DIR,
    FIGURES_ENV,
    HTML_DIR,
    SCALES,
    STAGE_DIR,
    address_files,
    check_scale,
    figures_dir,
    find_notebooks,
    project_root,
    repository,
    stale_addresses,
    write_repository,
)
from fabook.book.staging import FIGURE_LIST_MARKER, STAGED_FILES, stage

__all__ = [
    "API_PAGE", "BUILD_LOG", "CONFIG", "EXECUTED_DIR", "FIGURES_ENV", "FIGURE_LIST_MARKER", "HTML_DIR",
    "SCALES", "SCREENSHOT_DIR", "STAGED_FILES", "STAGE_DIR", "BuildError", "NotebookError", "address_files",
    "api_modules", "build", "build_warnings", "check_html", "check_scale", "execute_notebooks",
    "figure_problems", "figures_dir", "find_chromium", "find_notebooks", "install_problems", "machine_paths",
    "main", "page_problems", "project_root", "repository", "screenshot", "stage", "stale_addresses",
    "toc_files", "write_repository",
]  # fmt: skip
