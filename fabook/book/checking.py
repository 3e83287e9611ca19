"""Step 4: what is wrong with a built book: its pages (tables, errors, paths, maths, links, figures), the
API page, the notebooks' install cells and figures, and each page rendered in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

from fabook.book.project import BUILD_LOG, CONFIG

API_PAGE = "book/api"
INDEX_PAGES = ("genindex.html", "py-modindex.html", "search.html")
UNRESOLVED_REF = re.compile(r'(?<!">)<code class="xref[^"]*"><span class="pre">([^<]*)</span>')
TORCH_DOCSTRING = "Define the computation performed at every call"  # nn.Module.forward's, inherited
SCREENSHOT_DIR = Path("_build/screenshots")
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


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
