"""The book's addresses on GitHub besides the repository's: its site on GitHub Pages and its workflows (the
README's badges), both derived from ``repository.url`` in ``_config.yml``.

:func:`rewrite` writes them into a text, :func:`stale` names those that differ; every ``*.github.io``
address in such a text is taken to be the book's (fabook links no other GitHub Pages site).
"""

from __future__ import annotations

import re

REPOSITORY = re.compile(r"https://github\.com/([\w-]+)/([\w.-]*[\w-])/?")
SITE = re.compile(r"https://[\w-]+\.github\.io/(?:[\w.-]*[\w-]/)?")
WORKFLOWS = re.compile(r"https://github\.com/[\w-]+/[\w.-]*[\w-]/actions/workflows/")


def _owner_name(repo_url: str) -> tuple[str, str]:
    match = REPOSITORY.fullmatch(repo_url)
    if match is None:
        raise ValueError(
            f"not a GitHub repository address: {repo_url!r}; expected https://github.com/OWNER/NAME"
        )
    return match.group(1), match.group(2)


def site_url(repo_url: str) -> str:
    """Where GitHub Pages serves the repository's site: ``https://owner.github.io/NAME/`` (GitHub writes the
    host in lower case), or ``https://owner.github.io/`` for the repository named ``OWNER.github.io``."""
    owner, name = _owner_name(repo_url)
    host = f"https://{owner.lower()}.github.io/"
    return host if name.lower() == f"{owner.lower()}.github.io" else f"{host}{name}/"


def workflows_url(repo_url: str) -> str:
    """The folder of the repository's workflow pages (``test.yml`` and its ``badge.svg`` below it)."""
    owner, name = _owner_name(repo_url)
    return f"https://github.com/{owner}/{name}/actions/workflows/"


def rewrite(text: str, repo_url: str) -> str:
    """``text`` with every site address and workflow address made the repository's."""
    text = SITE.sub(site_url(repo_url), text)
    return WORKFLOWS.sub(workflows_url(repo_url), text)


def stale(text: str, repo_url: str) -> list[str]:
    """The site and workflow addresses in ``text`` that are not the repository's."""
    ours = {site_url(repo_url), workflows_url(repo_url)}
    return [
        m.group(0) for pattern in (SITE, WORKFLOWS) for m in pattern.finditer(text) if m.group(0) not in ours
    ]
