"""Step 2: stage the book: its sources, the executed notebooks made fit for a page (scale note, no stderr),
and their figures, listed."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from fabook.book.project import CONFIG, EXECUTED_DIR, STAGE_DIR, figures_dir, find_notebooks, write_repository

STAGED_FILES = ("_config.yml", "_toc.yml", "references.bib")
STAGED_DIRS = ("book",)
FIGURE_LIST_MARKER = "<!-- figure-list -->"
GENERATED_TAG = "fabook-generated"
NBVAL_MARK = "# NBVAL_CHECK_OUTPUT"

SCALE_NOTES = {
    "smoke": "the smallest setting: it shows that the code runs; its numbers say nothing about the claims",
    "cpu": "a reduced setting that runs on a laptop CPU in minutes; its numbers are not the paper's",
    "paper": "the paper's setting, as far as fabook reproduces it (see the notebook's parameters)",
}


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
