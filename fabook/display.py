"""How a notebook shows a table on its page: whole (no cut cells or columns), wrapped, split when wide.

pandas' own display cuts text at 50 characters and drops middle columns with ``...``; the book's check
(:func:`fabook.book.check_html`) fails a page that shows either. Every chapter shows its tables with
:func:`show`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd
from IPython.display import HTML

MAX_COLUMNS = 8
"""Columns per table on a page; a wider table is split into several with its index (and ``repeat``) kept."""

STYLE = (
    "<style>.fabook-table table{border-collapse:collapse;margin:0.4em 0 1.2em;font-size:0.9em}"
    ".fabook-table th,.fabook-table td{padding:0.25em 0.6em;border-bottom:1px solid #ddd;"
    "text-align:left;vertical-align:top;white-space:normal;max-width:32em}"
    ".fabook-table td.num{text-align:right;white-space:nowrap}</style>"
)


def _cell(value: object, digits: int) -> tuple[str, bool]:
    """(text, is a number) of one cell; a missing value is an en dash, never ``nan``."""
    if value is None or (pd.api.types.is_scalar(value) and not isinstance(value, str) and pd.isna(value)):
        return "–", False
    if isinstance(value, bool | np.bool_):
        return str(bool(value)), False
    if isinstance(value, float | np.floating):
        rounded = round(float(value), digits)
        if rounded == 0 and value != 0:  # a small number (an lr of 1.6e-05) must not read as 0.0
            return f"{float(value):.{max(digits, 2)}g}", True
        return str(rounded), True
    return str(value), isinstance(value, int | np.integer)


def _table(frame: pd.DataFrame, index: bool, digits: int) -> str:
    names = [str(n) for n in frame.index.names] if index else []
    head = "".join(f"<th>{html.escape('' if n == 'None' else n)}</th>" for n in names)
    head += "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for key, row in zip(frame.index, frame.itertuples(index=False), strict=True):
        keys = (key if isinstance(key, tuple) else (key,)) if index else ()
        cells = [f"<th>{html.escape(str(k))}</th>" for k in keys]
        for value in row:
            text, number = _cell(value, digits)
            cells.append(
                f'<td class="num">{html.escape(text)}</td>' if number else f"<td>{html.escape(text)}</td>"
            )
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def to_html(
    frame: pd.DataFrame,
    *,
    empty: str = "",
    index: bool | None = None,
    max_columns: int = MAX_COLUMNS,
    repeat: Sequence[str] = (),
    digits: int = 2,
) -> str:
    """``frame`` as HTML, every cell in full; see :func:`show`."""
    if frame.empty:
        if not empty:
            raise ValueError("an empty table needs `empty`: the sentence a reader sees instead of it")
        return f'<div class="fabook-table"><p>{html.escape(empty)}</p></div>'
    if index is None:  # a RangeIndex says nothing; any other index is a column of the table
        index = not isinstance(frame.index, pd.RangeIndex)
    missing = [c for c in repeat if c not in frame.columns]
    if missing:
        raise ValueError(
            f"repeat names columns {missing} that the table lacks; columns: {list(frame.columns)}"
        )
    rest = [c for c in frame.columns if c not in repeat]
    step = max(1, max_columns - len(repeat))
    parts = [frame[[*repeat, *rest[i : i + step]]] for i in range(0, len(rest), step)] or [frame]
    tables = "".join(_table(part, index, digits) for part in parts)
    return f'{STYLE}<div class="fabook-table">{tables}</div>'


def show(
    frame: pd.DataFrame,
    *,
    empty: str = "",
    index: bool | None = None,
    max_columns: int = MAX_COLUMNS,
    repeat: Sequence[str] = (),
    digits: int = 2,
) -> HTML:
    """Show ``frame`` whole on the page: no cell is cut, text wraps, floats get at most ``digits`` decimals.

    A table wider than ``max_columns`` is split into consecutive tables of that many columns, each keeping
    the index and the ``repeat`` columns (e.g. ``"scale"``). An empty ``frame`` shows the sentence ``empty``
    (required then, so that a reader learns what the table would have said). ``index`` defaults to showing
    any index but a plain 0..n-1 one.
    """
    return HTML(
        to_html(frame, empty=empty, index=index, max_columns=max_columns, repeat=repeat, digits=digits)
    )
