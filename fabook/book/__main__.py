"""``python -m fabook.book``: the book's command line (:func:`fabook.book.cli.main`)."""

import sys

from fabook.book.cli import main

sys.exit(main())
