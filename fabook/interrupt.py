"""SIGTERM handled as Ctrl-C: what ``timeout``, a CI time limit or a scheduler sends stops a run the way an
interrupt does (sweep workers stopped, checkpoints kept, the resume message printed), instead of killing the
process at once and leaving its worker processes training on."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt in the main thread, as SIGINT does; the previous
    handler comes back after it. In another thread (where Python cannot set handlers) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
