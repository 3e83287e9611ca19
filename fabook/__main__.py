"""``python -m fabook``: the ``fabook`` command (:mod:`fabook.cli`)."""

import sys

from fabook.cli import main

sys.exit(main())
