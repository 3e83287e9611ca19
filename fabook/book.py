"""Build the book: execute the notebooks, stage them with the pages, build the HTML, check it.

The book never executes a notebook itself (``execute_notebooks: "off"`` in ``_config.yml``). Instead:

1. :func:`execute_notebooks` runs every ``notebooks/*.ipynb`` once with papermill at one scale
   (``smoke``, ``cpu`` or ``paper``) into ``_build/executed/``;
2. :func:`stage` copies the book sources, the executed notebooks and ``figures/`` into ``_build/stage/``;
3. :func:`build` runs Jupyter Book on the stage into ``_build/html/``;
4. :func:`check_html` lists what is wrong with the built pages.

``python -m fabook.book --scale smoke --check`` runs all four (see :func:`main`).
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

SCALES = ("smoke", "cpu", "paper")
EXECUTED_DIR = Path("_build/executed")
STAGE_DIR = Path("_build/stage")
HTML_DIR = Path("_build/html")
BUILD_LOG = Path("_build/book.log")
STAGED_FILES = ("_config.yml", "_toc.yml", "references.bib")
STAGED_DIRS = ("book",)
FIGURES_ENV = "FABOOK_FIGURES"
FIGURE_LIST_MARKER = "<!-- figure-list -->"
API_PAGE = "book/api"
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
INDEX_PAGES = ("genindex.html", "py-modindex.html", "search.html")
UNRESOLVED_REF = re.compile(r'(?<!">)<code class="xref[^"]*"><span class="pre">([^<]*)</span>')
GENERATED_TAG = "fabook-generated"
KERNEL = "python3"
KERNEL_ARGS = ["--IPKernelApp.log_level=ERROR"]  # keeps "Kernel is running over TCP..." off the terminal
NBVAL_MARK = "# NBVAL_CHECK_OUTPUT"
TORCH_DOCSTRING = "Define the computation performed at every call"  # nn.Module.forward's, inherited
CONFIG = "_config.yml"
SCREENSHOT_DIR = Path("_build/screenshots")
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
ADDRESS_FILES = ("README.md", "CITATION.cff", "book/*.md", "notebooks/*.ipynb")
"""Where the repository address appears besides _config.yml; :func:`write_repository` keeps it the same."""
ADDRESS = re.compile(
    r"(git\+https://github\.com/|git clone https://github\.com/|`https://github\.com/|"
    r"\\url\{https://github\.com/|repository-code: \"https://github\.com/|colab\.research\.google\.com/github/)"
    r"([\w-]+/[\w.-]*[\w-])"
)
"""Group 2: the ``owner/name`` of the repository, in each form the files write it (pip, BibTeX, Colab)."""

SCALE_NOTES = {
    "smoke": "the smallest setting: it shows that the code runs; its numbers say nothing about the claims",
    "cpu": "a reduced setting that runs on a laptop CPU in minutes; its numbers are not the paper's",
    "paper": "the paper's setting, as far as fabook reproduces it (see the notebook's parameters)",
}


class NotebookError(RuntimeError):
    """One or more notebooks failed to execute; ``failures`` holds one line per notebook."""

    def __init__(self, failures: Sequence[str]):
        self.failures = list(failures)
        super().__init__(f"{len(self.failures)} notebook(s) failed:\n" + "\n".join(self.failures))


class BuildError(RuntimeError):
    """Jupyter Book exited with an error."""


def check_scale(scale: str) -> str:
    """Return ``scale`` if it is one of :data:`SCALES`, else raise ValueError naming the accepted ones."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}; accepted scales: {', '.join(SCALES)}")
    return scale


def project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: the working directory) holding ``_config.yml``
    and ``notebooks/``: a notebook run from ``notebooks/`` writes where one run from the clone does. Without
    one (Colab, an installed package), ``start`` itself."""
    start = Path.cwd() if start is None else Path(start).resolve()
    for folder in (start, *start.parents):
        if (folder / CONFIG).is_file() and (folder / "notebooks").is_dir():
            return folder
    return start


def figures_dir(root: Path | None = None) -> Path:
    """Where notebooks save figures: ``$FABOOK_FIGURES`` if set, else ``<root>/figures`` (root: the
    :func:`project_root`)."""
    return Path(os.environ.get(FIGURES_ENV) or (project_root() if root is None else Path(root)) / "figures")


def repository(root: Path = Path(".")) -> tuple[str, str]:
    """(``owner/name``, branch) of ``repository.url`` / ``repository.branch`` in ``_config.yml``: the one
    place a fork edits."""
    import yaml

    config = yaml.safe_load((Path(root) / CONFIG).read_text(encoding="utf-8")) or {}
    repo = config.get("repository") or {}
    match = re.fullmatch(r"https://github\.com/([\w-]+/[\w.-]*[\w-])/?", str(repo.get("url", "")))
    if not match:
        raise ValueError(f"{Path(root) / CONFIG}: repository.url must be https://github.com/OWNER/NAME")
    return match.group(1), str(repo.get("branch", "main"))


def address_files(root: Path = Path(".")) -> list[Path]:
    """The files of :data:`ADDRESS_FILES` in ``root``."""
    return sorted(path for pattern in ADDRESS_FILES for path in Path(root).glob(pattern) if path.is_file())


def write_repository(root: Path = Path(".")) -> list[Path]:
    """Write ``_config.yml``'s repository into each address of :data:`ADDRESS_FILES`; return changed files."""
    slug, _ = repository(root)
    changed = []
    for path in address_files(root):
        text = path.read_text(encoding="utf-8")
        new = ADDRESS.sub(lambda m: m.group(1) + slug, text)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def stale_addresses(root: Path = Path(".")) -> list[str]:
    """One line per address in :data:`ADDRESS_FILES` that differs from ``_config.yml``'s repository."""
    slug, _ = repository(root)
    return [
        f"{path}: points at {m.group(2)}, _config.yml at {slug} (run `python -m fabook.book --no-build`)"
        for path in address_files(root)
        for m in ADDRESS.finditer(path.read_text(encoding="utf-8"))
        if m.group(2) != slug
    ]


def find_notebooks(root: Path = Path("."), only: Sequence[str] | None = None) -> list[Path]:
    """The notebooks in ``<root>/notebooks`` (sorted by name), or just those named in ``only``.

    A name may be given as ``intro_feedback_alignment``, ``intro_feedback_alignment.ipynb`` or a path.
    """
    found = sorted((Path(root) / "notebooks").glob("*.ipynb"))
    if only is None:
        return found
    by_name = {path.stem: path for path in found}
    chosen = []
    for name in only:
        stem = Path(name).stem
        if stem not in by_name:
            raise ValueError(f"no notebook named {name!r}; available: {', '.join(by_name) or 'none'}")
        chosen.append(by_name[stem])
    return chosen


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


def _figure_links(figures: Path, name: str, prefix: str) -> list[str]:
    """Markdown list items linking each figure of notebook ``name`` (PNG first, then its other formats)."""
    folder = figures / name
    if not folder.is_dir():
        return []
    items = []
    for stem in sorted({path.stem for path in folder.iterdir() if path.is_file()}):
        files = sorted(folder.glob(f"{stem}.*"), key=lambda path: (path.suffix != ".png", path.suffix))
        links = " · ".join(
            f'<a href="{prefix}figures/{name}/{path.name}">{path.suffix[1:].upper()}</a>' for path in files
        )
        items.append(f"- `figures/{name}/{stem}` — {links}")
    return items


def _generated_cell(text: str):
    import nbformat

    return nbformat.v4.new_markdown_cell(text, metadata={"tags": [GENERATED_TAG]})


def _for_the_page(nb) -> None:
    """What the page must not show: stderr (warnings, progress bars) leaves every cell, and the test-only
    ``# NBVAL_CHECK_OUTPUT`` cells get the ``remove-cell`` tag (nbval checks them in the executed copy)."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.get("outputs", []) if o.get("name") != "stderr"]
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if cell.source.lstrip().startswith(NBVAL_MARK) and "remove-cell" not in tags:
            tags.append("remove-cell")


def _annotate(nb, name: str, figures: Path) -> None:
    """Add a note on the scale below the notebook's title and, if it has figures, links to them at its end."""
    scale = nb.metadata.get("papermill", {}).get("parameters", {}).get("scale", "unknown")
    note = (
        f":::{{note}}\nThis page was executed with `scale = {scale!r}`: "
        f"{SCALE_NOTES.get(scale, 'an unknown scale')}. "
        "See [How the reproductions work](../book/reproductions.md).\n:::"
    )
    headings = [
        i for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown" and cell.source.startswith("#")
    ]
    nb.cells.insert(headings[0] + 1 if headings else 0, _generated_cell(note))
    if links := _figure_links(figures, name, "../"):
        listing = "\n".join(links)
        nb.cells.append(
            _generated_cell(f"**Figures of this page** (stable paths, to download and cite):\n\n{listing}")
        )


def stage(
    executed_dir: Path = EXECUTED_DIR,
    stage_dir: Path = STAGE_DIR,
    *,
    root: Path = Path("."),
    figures: Path | None = None,
) -> Path:
    """Copy the book sources, the executed notebooks and their figures into a fresh ``stage_dir``.

    First the repository address of ``_config.yml`` is written wherever else it appears (see
    :func:`write_repository`). Only executed notebooks whose source is in ``<root>/notebooks`` are staged (a
    missing one is reported), without stderr or test-only cells (:func:`_for_the_page`), with their figures
    (``figures/<notebook>/``) in ``_extra/figures`` (served as ``figures/`` by ``html_extra_path``), listed on
    the page that holds :data:`FIGURE_LIST_MARKER`.
    """
    import nbformat

    root, stage_dir, executed_dir = Path(root), Path(stage_dir), Path(executed_dir)
    figures = figures_dir(root) if figures is None else Path(figures)
    for path in write_repository(root):
        print(f"wrote the repository address of {CONFIG} into {path}")
    if stage_dir.exists():
        shutil.rmtree(stage_dir)
    stage_dir.mkdir(parents=True)
    for name in STAGED_FILES:
        shutil.copy2(root / name, stage_dir / name)
    for name in STAGED_DIRS:
        shutil.copytree(root / name, stage_dir / name)
    extra = stage_dir / "_extra" / "figures"
    extra.mkdir(parents=True)
    (stage_dir / "notebooks").mkdir()
    for source in find_notebooks(root):
        executed = executed_dir / source.name
        if not executed.is_file():
            print(f"warning: {source} has not been executed; its page will be missing", file=sys.stderr)
            continue
        if (figures / source.stem).is_dir():
            shutil.copytree(figures / source.stem, extra / source.stem)
        nb = nbformat.read(executed, as_version=4)
        _for_the_page(nb)
        _annotate(nb, source.stem, extra)
        nbformat.write(nb, stage_dir / "notebooks" / source.name)
    _write_figure_list(stage_dir, extra)
    return stage_dir


def _write_figure_list(stage_dir: Path, extra: Path) -> None:
    """Replace :data:`FIGURE_LIST_MARKER` in the staged pages with a list of every staged figure."""
    names = sorted(path.name for path in extra.iterdir() if path.is_dir())
    lines = []
    for name in names:
        lines += [f"**{name}**", "", *_figure_links(extra, name, "../"), ""]
    listing = "\n".join(lines) or "No notebook has saved a figure in this build."
    for page in (stage_dir / "book").rglob("*.md"):
        text = page.read_text(encoding="utf-8")
        if FIGURE_LIST_MARKER in text:
            page.write_text(text.replace(FIGURE_LIST_MARKER, listing), encoding="utf-8")


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


def toc_files(toc: Path) -> list[str]:
    """Every ``file:`` and ``root:`` entry of a Jupyter Book ``_toc.yml``, without extension."""
    import yaml

    found: list[str] = []

    def walk(node) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("file", "root") and isinstance(value, str):
                    found.append(str(Path(value).with_suffix("")) if Path(value).suffix else value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(yaml.safe_load(Path(toc).read_text(encoding="utf-8")))
    return found


def api_modules(api_page: Path) -> list[str]:
    """Modules documented by ``automodule`` directives (rST or MyST syntax) in the API page's source."""
    pattern = r"^(?:```\{automodule\}|\.\. automodule::)\s+(\S+)"
    return re.findall(pattern, Path(api_page).read_text(encoding="utf-8"), re.MULTILINE)


class _Links(HTMLParser):
    """Collects local ``src``/``href`` targets of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for key, value in attrs:
            if key in ("src", "href") and value and tag in ("img", "a", "source", "embed", "object"):
                parts = urlsplit(value)
                if not parts.scheme and not parts.netloc and parts.path:
                    self.targets.append(unquote(parts.path))


class _Reading(HTMLParser):
    """What a reader sees of a page: the text of each table's rows, and prose outside maths and code (which
    must hold no TeX)."""

    SKIP = ("script", "style", "pre", "code", "math", "textarea")

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []  # per table, its rows; the first row with <th> is the head
        self.prose: list[str] = []
        self._skip: list[str] = []  # open elements whose text is not prose
        self._cell: list[str] | None = None
        self._depth = 0  # table nesting

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = (dict(attrs).get("class") or "").split()
        if self._skip or tag in self.SKIP or "math" in classes:
            self._skip.append(tag)
        if tag == "table":
            self._depth += 1
            self.tables.append([])
        elif tag == "tr" and self._depth:
            self.tables[-1].append([])
        elif tag in ("td", "th") and self._depth:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if self._skip and self._skip[-1] == tag:
            self._skip.pop()
        if tag in ("td", "th") and self._cell is not None and self.tables and self.tables[-1]:
            self.tables[-1][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table" and self._depth:
            self._depth -= 1

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if not self._skip:
            self.prose.append(data)


CUT_CELL = re.compile(r"(\.\.\.|…)$")
NAN_CELL = re.compile(r"(?i)(^|\W)nan($|\W)")
RAW_TEX = re.compile(r"\$[^$\n]*\\[A-Za-z]+[^$\n]*\$|\\\(|\\\[|\\begin\{")
CDN_MATHS = re.compile(r"<script[^>]+src=\"(?:https?:)?//[^\"]*mathjax", re.IGNORECASE)
EMPTY_OUTPUT = re.compile(r'<div class="cell_output docutils container">\s*</div>')


def page_problems(page: Path, text: str, machine_paths: Sequence[str] = ()) -> list[str]:
    """What a reader must not see on one built page: tables with cut cells (``...``), NaN cells or nothing
    but a header, paths of the machine that built it, stderr output, TeX that is not rendered as maths,
    MathJax from a CDN, and empty outputs."""
    problems = []
    reading = _Reading()
    reading.feed(text)
    for number, rows in enumerate(reading.tables, 1):
        cells = [cell for row in rows for cell in row]
        if cut := [cell for cell in cells if CUT_CELL.search(cell)]:
            problems.append(f"{page}: table {number} has cut cells ({cut[0]!r}); use fabook.display.show")
        if nan := [cell for cell in cells if NAN_CELL.search(cell)]:
            problems.append(f"{page}: table {number} shows NaN ({nan[0]!r}); say what is missing")
        if len(rows) < 2:
            problems.append(f"{page}: table {number} is empty; say in words what it would have shown")
    for path in machine_paths:
        if path in text:
            problems.append(f"{page}: shows a path of the machine that built it ({path})")
    if 'class="output stderr' in text:
        problems.append(f"{page}: shows a stderr output (a warning or a progress bar)")
    if tex := RAW_TEX.search("".join(reading.prose)):
        problems.append(f"{page}: TeX not rendered as maths ({tex.group(0)[:40]!r})")
    if CDN_MATHS.search(text):
        problems.append(f"{page}: loads MathJax from a CDN (an offline copy shows raw TeX)")
    if EMPTY_OUTPUT.search(text) or "Empty DataFrame" in text:
        problems.append(f"{page}: has an empty output")
    return problems


def check_html(
    html_dir: Path,
    notebooks: Iterable[Path | str],
    *,
    toc: Path | None = None,
    figures: Path | None = None,
    api_modules: Iterable[str] = (),
    repository: tuple[str, str] | None = None,
    machine_paths: Sequence[str] = (),
) -> list[str]:
    """List the problems of a built book; empty when it is fine.

    Checks that each notebook has a page with a Colab launch link; that no page shows an error output or a
    traceback; that every local image, link and ``figures/`` file resolves to a non-empty file; that every
    ``{func}``-style reference outside the API page resolved (the API page's docstrings may name torch
    types, which have no target without the internet); and, when
    given, that each notebook is in ``toc`` (and each toc notebook exists), that each file in
    ``figures/<notebook>/`` was published, that each module in ``api_modules`` is on the API page, and that
    the Colab links open ``repository`` (``(owner/name, branch)``). Every page also passes
    :func:`page_problems` (``machine_paths``: text that would give away the building machine).
    """
    html_dir = Path(html_dir)
    names = [Path(nb).stem for nb in notebooks]
    if not html_dir.is_dir():
        return [f"{html_dir}: no built book here (run `python -m fabook.book`)"]
    problems = []
    if toc is not None:
        listed = {entry for entry in toc_files(toc) if entry.startswith("notebooks/")}
        problems += [
            f"notebooks/{name}.ipynb is not in {toc}: add it under 'Reproductions'"
            for name in names
            if f"notebooks/{name}" not in listed
        ]
        problems += [
            f"{toc} lists {entry} but notebooks/ has no such notebook"
            for entry in sorted(listed - {f"notebooks/{name}" for name in names})
        ]
    for name in names:
        page = html_dir / "notebooks" / f"{name}.html"
        if not page.is_file():
            problems.append(f"{page}: no page for notebooks/{name}.ipynb")
            continue
        where = (
            '[^"]+'
            if repository is None
            else re.escape("/".join(repository[:1] + ("blob",) + repository[1:]))
        )
        colab = (
            rf'href="https://colab\.research\.google\.com/github/{where}/notebooks/{re.escape(name)}\.ipynb"'
        )
        if not re.search(colab, page.read_text(encoding="utf-8")):
            target = (
                "" if repository is None else f" in {repository[0]} (branch {repository[1]}, from {CONFIG})"
            )
            problems.append(f"{page}: no Colab launch link to notebooks/{name}.ipynb{target}")
    for page in sorted(html_dir.rglob("*.html")):
        if "_static" in page.relative_to(html_dir).parts:
            continue
        text = page.read_text(encoding="utf-8")
        if 'class="output traceback' in text or "Traceback (most recent call last)" in text:
            problems.append(f"{page}: shows an error output (traceback)")
        if page.relative_to(html_dir).as_posix() not in INDEX_PAGES:
            problems += page_problems(page, text, machine_paths)
        if page.relative_to(html_dir).as_posix() not in (f"{API_PAGE}.html", *INDEX_PAGES):
            problems += [f"{page}: unresolved reference {ref}" for ref in UNRESOLVED_REF.findall(text)]
        parser = _Links()
        parser.feed(text)
        for target in sorted(set(parser.targets)):
            path = (page.parent / target).resolve()
            if not path.exists() or (path.is_file() and path.stat().st_size == 0):
                problems.append(f"{page}: {target} is {'empty' if path.exists() else 'missing'}")
    published = html_dir / "figures"
    for path in sorted(published.rglob("*")) if published.is_dir() else []:
        if path.is_file() and path.stat().st_size == 0:
            problems.append(f"{path}: empty figure file")
    if figures is not None:
        for name in names:
            for source in sorted((Path(figures) / name).glob("*")) if (Path(figures) / name).is_dir() else []:
                if not (published / name / source.name).is_file():
                    problems.append(f"{source}: not published as {published / name / source.name}")
    if api_modules := list(api_modules):
        api = html_dir / f"{API_PAGE}.html"
        text = api.read_text(encoding="utf-8") if api.is_file() else ""
        if TORCH_DOCSTRING in text:
            problems.append(f"{api}: shows torch's own docstring ({TORCH_DOCSTRING!r}), not fabook's")
        problems += [
            f"{api}: no documentation for {module} (did autodoc fail to import it? see {BUILD_LOG})"
            for module in api_modules
            if f'id="module-{module}"' not in text
        ]
    return problems


INSTALL_CELL = re.compile(r'%pip install -q "fabook\[book\] @ git\+https://github\.com/[\w-]+/[\w.-]*[\w-]"')


def install_problems(notebooks: Iterable[Path]) -> list[str]:
    """A notebook whose first code cell does not install ``fabook[book]`` from GitHub the way Colab needs."""
    import nbformat

    problems = []
    for path in notebooks:
        code = [cell for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]
        if not code or not INSTALL_CELL.search(code[0].source):
            problems.append(
                f'{path}: its first code cell must `%pip install -q "fabook[book] @ git+<repository>"` when '
                "fabook is missing (Colab); see README.md, 'Writing a notebook'"
            )
    return problems


def figure_problems(executed: Iterable[Path]) -> list[str]:
    """A cell of an executed notebook that saves a figure (``save_figure``) but shows none on its page."""
    import nbformat

    problems = []
    for path in executed:
        for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
            shown = any("image/png" in out.get("data", {}) for out in cell.get("outputs", []))
            if cell.cell_type == "code" and "save_figure(" in cell.source and not shown:
                problems.append(f"{path}: cell {index} saves a figure but shows none")
    return problems


def find_chromium() -> str | None:
    """The headless browser used for screenshots, if one is installed."""
    return next((found for name in CHROMIUM if (found := shutil.which(name))), None)


def screenshot(html_dir: Path, out_dir: Path = SCREENSHOT_DIR, *, browser: str | None = None) -> list[str]:
    """Render every page of the book in headless Chromium: a PNG per page in ``out_dir`` (to look at), and
    a problem for each page whose maths MathJax left unrendered once its scripts ran (or that did not load).
    """
    browser = browser or find_chromium()
    if browser is None:
        return [f"no headless browser ({', '.join(CHROMIUM)}) to screenshot {html_dir}"]
    out_dir = Path(out_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    base.append("--virtual-time-budget=8000")
    problems = []
    for page in sorted(Path(html_dir).rglob("*.html")):
        relative = page.relative_to(html_dir)
        if "_static" in relative.parts or relative.as_posix() in INDEX_PAGES:
            continue
        url = page.resolve().as_uri()
        shot = out_dir / f"{relative.with_suffix('').as_posix().replace('/', '__')}.png"
        run = dict(capture_output=True, text=True, timeout=120)
        height = 16000  # then cut to the page's content
        subprocess.run([*base, f"--window-size=1280,{height}", f"--screenshot={shot.resolve()}", url], **run)
        if not shot.is_file():
            problems.append(f"{page}: headless Chromium made no screenshot")
            continue
        _trim(shot)
        if 'class="math' in page.read_text(encoding="utf-8"):
            dom = subprocess.run([*base, "--dump-dom", url], **run).stdout
            if "mjx-container" not in dom or re.search(
                r'class="math notranslate nohighlight">\s*(\\[(\[]|\$)', dom
            ):
                problems.append(f"{page}: maths not rendered by MathJax in headless Chromium")
    return problems


def _trim(png: Path) -> None:
    """Cut the blank rows below a page's content off its screenshot."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as image:
        gray = np.asarray(image.convert("L"))
        # rows with more ink than the sidebar's border, above what the theme pins to the window's bottom
        inked = np.flatnonzero((gray[:-120] < 245).sum(axis=1) > 4)
        bottom = int(inked[-1]) + 40 if inked.size else gray.shape[0]
        if bottom < gray.shape[0]:
            image.crop((0, 0, gray.shape[1], bottom)).save(png)


def machine_paths(root: Path = Path(".")) -> list[str]:
    """Text that gives away the machine that built the book: the clone's absolute path, the home folder,
    ``site-packages``."""
    home = str(Path.home())
    return [str(Path(root).resolve()), "site-packages", *([home + "/"] if home not in ("/", "") else [])]


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


if __name__ == "__main__":
    sys.exit(main())
