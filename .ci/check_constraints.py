"""CI's check that it tests the pinned set: every package that fabook[book,dev] pulls in is installed here at
constraints.txt's version (`make install` asked pip for exactly those). A user's environment may hold newer
releases, so this is no pytest test. Exit 1 naming each difference: python .ci/check_constraints.py"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from constraints import closure, project_requirements

ROOT = Path(__file__).resolve().parents[1]


def read_pins(path: Path) -> dict[str, str]:
    """name -> version of each ``name==version`` line."""
    lines = path.read_text().splitlines()
    return dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith("#"))


def differences(pins: Mapping[str, str], installed: Mapping[str, str]) -> list[str]:
    """One line per installed package (canonical name -> version) that is unpinned or at another version
    than its pin (a local build tag such as ``+cpu`` aside)."""
    return [
        f"{name} {version} installed, "
        + (f"{pins[name]} pinned" if name in pins else "not in constraints.txt (make constraints)")
        for name, version in sorted(installed.items())
        if pins.get(name) != version.split("+")[0]
    ]


if __name__ == "__main__":
    found = differences(
        read_pins(ROOT / "constraints.txt"), closure(project_requirements(ROOT / "pyproject.toml"))
    )
    for line in found:
        print(f"constraints: {line}", file=sys.stderr)
    print(
        f"constraints: {len(found)} package(s) differ from constraints.txt"
        if found
        else "constraints: all pinned"
    )
    sys.exit(1 if found else 0)
