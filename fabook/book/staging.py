"""Step 2: stage the book: its sources, the executed notebooks made fit for a page (scale note, no stderr),
and their figures, listed."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import fabook
from fabook.book.project import CONFIG, EXECUTED_DIR, STAGE_DIR, figures_dir, find_notebooks, write_repository

STAGED_FILES = ("_config.yml", "_toc.yml", "references.bib")
STAGED_DIRS = ("book",)
FIGURE_LIST_MARKER = "<!-- figure-list -->"
STATUS_MARKER = "<!-- book-status -->"
HIDDEN_TAGS = {"parameters": "hide-cell", "injected-parameters": "hide-cell"}
"""Cells a reader may open but need not see: the knobs (folded); cells that only glue numbers are removed."""
GENERATED_TAG = "fabook-generated"
NBVAL_MARK = "# NBVAL_CHECK_OUTPUT"

SCALE_NOTES = {
    "smoke": "the smallest setting: it shows that the code runs; its numbers say nothing about the claims",
    "cpu": "a reduced setting that runs on a laptop CPU in minutes; its numbers are not the paper's",
    "paper": "the paper's setting, as far as fabook reproduces it (see the notebook's parameters)",
}


def _commit(root: Path) -> str:
    """The checked-out commit (12 hex digits), or "unknown" outside a git clone."""
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def cite_line(name: str, stem: str, *, commit: str, recorded: str | None) -> str:
    """How to cite figure ``stem`` of notebook ``name``: book version, stable label, the code's commit and the
    commit of the recorded results it was drawn from (when it was)."""
    source = (
        f"recorded results of commit `{recorded}`" if recorded else "results computed when the book was built"
    )
    return (
        f"fabook {fabook.__version__}, figure `{name}/{stem}` (book commit `{commit}`, {source}); "
        f"`figures/{name}/{stem}.pdf`"
    )


def _figure_links(
    figures: Path, name: str, prefix: str, *, commit: str = "unknown", recorded: str | None = None
) -> list[str]:
    """Markdown list items, one per figure of notebook ``name``: an anchor (``fig-<notebook>-<figure>``), its
    downloads (PNG first) and the line to cite it with."""
    folder = figures / name
    if not folder.is_dir():
        return []
    items = []
    for stem in sorted({path.stem for path in folder.iterdir() if path.is_file()}):
        files = sorted(folder.glob(f"{stem}.*"), key=lambda path: (path.suffix != ".png", path.suffix))
        links = " · ".join(
            f'<a href="{prefix}figures/{name}/{path.name}">{path.suffix[1:].upper()}</a>' for path in files
        )
        anchor = f'<a id="fig-{name}-{stem}"></a>'
        cite = cite_line(name, stem, commit=commit, recorded=recorded)
        items.append(f"- {anchor}`figures/{name}/{stem}` — {links}  \n  cite: {cite}")
    return items


def _recorded_commit(name: str, scale: str) -> str | None:
    """The commit of notebook ``name``'s recorded results at ``scale`` when they are fresh, else None."""
    from fabook import record

    status = record.status(name, scale)
    return (status.commit or "unknown")[:12] if status.state == "fresh" else None


def _only_glue(source: str) -> bool:
    """Whether a cell's code is only ``glue(...)`` calls (numbers for the text, no output of its own)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    calls = [s.value for s in body if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)]
    names = [getattr(c.func, "id", getattr(c.func, "attr", "")) for c in calls]
    return bool(body) and len(calls) == len(body) and all(n == "glue" for n in names)


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
        if cell.source.lstrip().startswith(NBVAL_MARK) or _only_glue(cell.source):
            tags.append("remove-cell")
        tags += [HIDDEN_TAGS[t] for t in list(tags) if t in HIDDEN_TAGS]
        tags[:] = list(dict.fromkeys(tags))


def _scale_of(nb) -> str:
    return nb.metadata.get("papermill", {}).get("parameters", {}).get("scale", "unknown")


def _annotate(nb, name: str, figures: Path, *, commit: str = "unknown", recorded: str | None = None) -> None:
    """Add a note on the scale below the notebook's title and, if it has figures, links to them at its end."""
    scale = _scale_of(nb)
    note = (
        f":::{{note}}\nThis page was executed with `scale = {scale!r}`: "
        f"{SCALE_NOTES.get(scale, 'an unknown scale')}. "
        "See [How the reproductions work](../book/reproductions.md).\n:::"
    )
    headings = [
        i for i, cell in enumerate(nb.cells) if cell.cell_type == "markdown" and cell.source.startswith("#")
    ]
    nb.cells.insert(headings[0] + 1 if headings else 0, _generated_cell(note))
    if links := _figure_links(figures, name, "../", commit=commit, recorded=recorded):
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
    (``figures/<notebook>/``) in ``_extra/figures`` (served as ``figures/`` by ``html_extra_path``), listed
    with a line to cite each on the page that holds :data:`FIGURE_LIST_MARKER`; the page that holds
    :data:`STATUS_MARKER` gets the table of each notebook's recorded results.
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
    commit, recorded, scales = _commit(root), {}, set()
    for source in find_notebooks(root):
        executed = executed_dir / source.name
        if not executed.is_file():
            print(f"warning: {source} has not been executed; its page will be missing", file=sys.stderr)
            continue
        if (figures / source.stem).is_dir():
            shutil.copytree(figures / source.stem, extra / source.stem)
        nb = nbformat.read(executed, as_version=4)
        scales.add(_scale_of(nb))
        recorded[source.stem] = _recorded_commit(source.stem, _scale_of(nb))
        _for_the_page(nb)
        _annotate(nb, source.stem, extra, commit=commit, recorded=recorded[source.stem])
        nbformat.write(nb, stage_dir / "notebooks" / source.name)
    names = sorted(path.name for path in extra.iterdir() if path.is_dir())
    lines = []
    for name in names:
        links = _figure_links(extra, name, "../", commit=commit, recorded=recorded.get(name))
        lines += [f"**{name}**", "", *links, ""]
    _replace_marker(
        stage_dir, FIGURE_LIST_MARKER, "\n".join(lines) or "No notebook has saved a figure in this build."
    )
    _replace_marker(stage_dir, STATUS_MARKER, _status_text(sorted(scales - {"unknown"}) or ["cpu"]))
    return stage_dir


def _status_text(scales: list[str]) -> str:
    """A markdown table per scale: each notebook's recorded results (state, cells, wall time, commit); then
    the recordings at other scales (runs made apart from the book's build, as every_rule's ``paper`` run)."""
    from fabook import record

    others = sorted(set(record.recorded_scales()) - set(scales))
    parts = []
    for scale in [*scales, *others]:
        table = record.status_table(scale)
        if scale in others:
            table = table[table.state != "missing"].astype({"cells": int})
        table = table.drop(columns="scale").assign(machine=table.machine.map(_short_machine))
        header = "| " + " | ".join(table.columns) + " |"
        rule = "|" + "|".join("---" for _ in table.columns) + "|"
        rows = [
            "| " + " | ".join(str(v) if str(v) else "–" for v in row) + " |"
            for row in table.itertuples(False)
        ]
        parts.append("\n".join([f"**Scale `{scale}`**", "", header, rule, *rows]))
    return "\n\n".join(parts)


def _short_machine(machine: str) -> str:
    """``"Linux-6.18.44-fc-x86_64-with-glibc2.36 (2 CPUs)"`` -> ``"Linux x86_64 (2 CPUs)"``: what a reader
    compares (system, architecture, cores), short enough for the status table."""
    if not machine:
        return machine
    from fabook.results import ARCHITECTURES

    arch = next((a for a in ARCHITECTURES if a in machine), "")
    cpus = machine[machine.index("(") :] if "(" in machine else ""
    return " ".join(filter(None, [machine.split("-")[0], arch, cpus]))


def _replace_marker(stage_dir: Path, marker: str, text: str) -> None:
    """Replace ``marker`` in every staged page of ``book/`` that holds it with ``text``."""
    for page in (stage_dir / "book").rglob("*.md"):
        content = page.read_text(encoding="utf-8")
        if marker in content:
            page.write_text(content.replace(marker, text), encoding="utf-8")
