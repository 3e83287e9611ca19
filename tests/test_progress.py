"""fabook.progress: widgets in a Jupyter kernel (ipywidgets, as the `book` extra installs), text on stderr
under FABOOK_PROGRESS=text (how the book runs the notebooks)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import fabook
from fabook import progress

ROOT = Path(fabook.__file__).parent.parent


def test_text_mode_and_a_bad_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from tqdm.std import tqdm

    monkeypatch.setenv(progress.ENV, "text")
    assert type(progress.bar(range(2), disable=True)) is tqdm
    monkeypatch.setenv(progress.ENV, "widgets")
    with pytest.raises(ValueError, match="FABOOK_PROGRESS='widgets'; accepted: auto, text"):
        progress.bar(range(2))


@pytest.mark.skipif(
    importlib.util.find_spec("ipywidgets") is None, reason="ipywidgets (the book extra) missing"
)
def test_in_a_kernel_a_widget_unless_text_is_asked_for() -> None:
    import nbclient
    from nbformat.v4 import new_code_cell, new_notebook

    source = (
        f"import os, sys\nsys.path.insert(0, {str(ROOT)!r})\nfrom fabook import progress\n"
        "from tqdm.notebook import tqdm_notebook\n"
        "for mode in ('auto', 'text'):\n"
        "    os.environ['FABOOK_PROGRESS'] = mode\n"
        "    widget = isinstance(progress.bar(range(1), disable=True), tqdm_notebook)\n"
        "    print(mode, 'widget' if widget else 'text')"
    )
    nb = new_notebook(cells=[new_code_cell(source)])
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    printed = "".join(o.get("text", "") for o in nb.cells[0].outputs if o.get("name") == "stdout")
    assert printed == "auto widget\ntext text\n"
