"""``python -m fabook.data ensure NAME...``: get each data set onto this machine (:func:`fabook.data.ensure`).

Exit status 2, with one message naming every way to get the set, when one cannot be had.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .fetch import PROBE_SECONDS, ensure


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fabook.data", description="fabook's data sets")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    get = sub.add_parser(
        "ensure", help="make each NAME loadable offline: here, else download, else its Debian package"
    )
    get.add_argument("names", nargs="*", metavar="NAME", help="data set names (`fabook datasets`)")
    get.add_argument(
        "--timeout", type=float, default=PROBE_SECONDS, help="seconds to wait for a download server"
    )
    args = parser.parse_args(argv)
    try:
        for name in args.names:
            print(ensure(name, timeout=args.timeout))
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
