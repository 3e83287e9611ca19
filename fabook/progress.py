"""Progress bars of training and sweeps: tqdm.auto's (widgets in Jupyter and Colab, with ipywidgets; text
on a terminal), or text on stderr wherever ``$FABOOK_PROGRESS`` is ``text``. ``python -m fabook.book`` runs
the notebooks so: it echoes each sweep's bar from their stderr to the terminal, and keeps stderr off the
pages (a widget would stay on them)."""

from __future__ import annotations

import os
from typing import Any

ENV = "FABOOK_PROGRESS"
MODES = ("auto", "text")


def bar(*args: Any, **kwargs: Any) -> Any:
    """``tqdm(*args, **kwargs)``: tqdm.auto's, or tqdm.std's under ``FABOOK_PROGRESS=text``."""
    mode = os.environ.get(ENV) or "auto"
    if mode not in MODES:
        raise ValueError(f"{ENV}={mode!r}; accepted: {', '.join(MODES)}")
    if mode == "text":
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(*args, **kwargs)
