"""Where the book's parts are: the project's folders, its notebooks, where figures go, the scales a notebook
runs at, and the repository address that ``_config.yml`` gives and the other files repeat."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

SCALES = ("smoke", "cpu", "paper")
EXECUTED_DIR = Path("_build/executed")
STAGE_DIR = Path("_build/stage")
HTML_DIR = Path("_build/html")
BUILD_LOG = Path("_build/book.log")
FIGURES_ENV = "FABOOK_FIGURES"
CONFIG = "_config.yml"
ADDRESS_FILES = ("README.md", "CITATION.cff", "book/*.md", "notebooks/*.ipynb")
"""Where the repository address appears besides _config.yml; :func:`write_repository` keeps it the same."""
ADDRESS = re.compile(
    r"(git\+https://github\.com/|git clone https://github\.com/|`https://github\.com/|"
    r"\\url\{https://github\.com/|repository-code: \"https://github\.com/|colab\.research\.google\.com/github/)"
    r"([\w-]+/[\w.-]*[\w-])"
)
"""Group 2: the ``owner/name`` of the repository, in each form the files write it (pip, BibTeX, Colab)."""


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
