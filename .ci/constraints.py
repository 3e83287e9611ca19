"""Write constraints.txt: the exact versions of fabook[book,dev] and everything it pulls in, as installed in
this (tested) environment. Run it after `make test` passes with newer versions: python .ci/constraints.py"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

HEADER = """\
# Tested versions of all that `pip install '.[book,dev]'` installs (Python 3.11, Linux); `make` and CI use it:
#   pip install -c constraints.txt -e '.[book,dev]'
# pyproject.toml keeps the ranges fabook works with; regenerate this file with `python .ci/constraints.py`.
"""


def closure(roots: dict[str, set[str]]) -> dict[str, str]:
    """name -> installed version of ``roots`` (name -> extras) and all that they require, markers applied."""
    found: dict[str, str] = {}
    todo = list(roots.items())
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a marker-less optional dependency that is not installed here
        if key in found and not extras:
            continue
        found[key] = dist.version
        for text in dist.requires or []:
            req = Requirement(text)
            envs = [{"extra": extra} for extra in extras or {""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                todo.append((req.name, set(req.extras)))
    return found


def project_requirements(pyproject: Path, extras: tuple[str, ...] = ("book", "dev")) -> dict[str, set[str]]:
    """The dependencies in ``pyproject.toml`` (not an installed copy's, which may be older) and ``extras``."""
    project = tomllib.loads(pyproject.read_text())["project"]
    texts = project["dependencies"] + [t for e in extras for t in project["optional-dependencies"][e]]
    return {(req := Requirement(t)).name: set(req.extras) for t in texts}


if __name__ == "__main__":
    pins = closure(project_requirements(Path(__file__).resolve().parents[1] / "pyproject.toml"))
    lines = [f"{name}=={version}" for name, version in sorted(pins.items())]
    Path(sys.argv[1] if len(sys.argv) > 1 else "constraints.txt").write_text(HEADER + "\n".join(lines) + "\n")
    print(f"{len(lines)} pins")
