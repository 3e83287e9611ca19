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


def figures_dir(root: Path = Path(".")) -> Path:
    """Where notebooks save figures: ``$FABOOK_FIGURES`` if set, else ``<root>/figures``."""
    return Path(os.environ.get(FIGURES_ENV) or Path(root) / "figures")


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
            try:
                papermill.execute_notebook(
                    notebook.resolve(),
                    out.resolve(),
                    parameters={"scale": scale},
                    kernel_name=KERNEL,
                    cwd=notebook.resolve().parent,
                    progress_bar=progress and sys.stderr.isatty(),
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

    Only executed notebooks whose source is in ``<root>/notebooks`` are staged (a missing one is reported),
    with their figures (``figures/<notebook>/``) in ``_extra/figures`` (served as ``figures/`` by
    ``html_extra_path``), listed on the page that holds :data:`FIGURE_LIST_MARKER`.
    """
    import nbformat

    root, stage_dir, executed_dir = Path(root), Path(stage_dir), Path(executed_dir)
    figures = figures_dir(root) if figures is None else Path(figures)
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


def check_html(
    html_dir: Path,
    notebooks: Iterable[Path | str],
    *,
    toc: Path | None = None,
    figures: Path | None = None,
    api_modules: Iterable[str] = (),
) -> list[str]:
    """List the problems of a built book; empty when it is fine.

    Checks that each notebook has a page with a Colab launch link; that no page shows an error output or a
    traceback; that every local image, link and ``figures/`` file resolves to a non-empty file; that every
    ``{func}``-style reference outside the API page resolved (the API page's docstrings may name torch
    types, which have no target without the internet); and, when
    given, that each notebook is in ``toc`` (and each toc notebook exists), that each file in
    ``figures/<notebook>/`` was published, and that each module in ``api_modules`` is on the API page.
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
        colab = (
            rf'href="https://colab\.research\.google\.com/github/[^"]+/notebooks/{re.escape(name)}\.ipynb"'
        )
        if not re.search(colab, page.read_text(encoding="utf-8")):
            problems.append(f"{page}: no Colab launch link to notebooks/{name}.ipynb")
    for page in sorted(html_dir.rglob("*.html")):
        if "_static" in page.relative_to(html_dir).parts:
            continue
        text = page.read_text(encoding="utf-8")
        if 'class="output traceback' in text or "Traceback (most recent call last)" in text:
            problems.append(f"{page}: shows an error output (traceback)")
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
        problems += [
            f"{api}: no documentation for {module} (did autodoc fail to import it? see {BUILD_LOG})"
            for module in api_modules
            if f'id="module-{module}"' not in text
        ]
    return problems


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
            )
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
