"""The headless browser of the book's page check (a screenshot of every page, MathJax rendered): found here,
or the check skips it and says how to get one. Screenshots are a check for developers and CI: the book
builds without a browser.

``python -m fabook.browser`` prints the browser the check uses (exit 0), or what to install (exit 1).
"""

from __future__ import annotations

import os
import shutil
import sys

ENV = "FABOOK_BROWSER"
NAMES = ("chromium", "chromium-browser", "google-chrome")
HOW = (
    "on Debian: sudo apt-get install chromium (Ubuntu: chromium-browser), or install Google Chrome; "
    f"or set {ENV} to a Chromium or Chrome executable"
)


def find() -> str | None:
    """The browser's path: ``$FABOOK_BROWSER`` when set (``none`` hides every browser, as on a newcomer's
    machine), else the first of :data:`NAMES` on the PATH; None when there is none. ValueError when
    ``$FABOOK_BROWSER`` names no executable."""
    chosen = os.environ.get(ENV, "")
    if not chosen:
        return next((found for name in NAMES if (found := shutil.which(name))), None)
    if chosen.lower() == "none":
        return None
    found = shutil.which(chosen)
    if found is None:
        raise ValueError(
            f"{ENV}={chosen!r} is not an executable; set it to Chromium's or Chrome's, or 'none'"
        )
    return found


def skipped() -> str:
    """The line the check prints when :func:`find` finds no browser."""
    return f"screenshots skipped: no headless browser ({', '.join(NAMES)}); to get them: {HOW}"


def main() -> int:
    try:
        found = find()
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(found or skipped())
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main())
