"""SIGTERM and SIGINT for a long-running command: the first asks for a clean stop, the second
stops at once.

A clean stop finishes the batch in hand and saves its checkpoint. Stopping at once is still
safe: a checkpoint is saved only after BigQuery took the batch, so it is never ahead of what was
written; the next run reads again from it, and what comes twice is absorbed by ``event_id`` and
``seq``.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

logger = logging.getLogger(__name__)

EXIT_AT_ONCE = {signal.SIGINT: 130, signal.SIGTERM: 143}


class StopFlag:
    """Set by a signal handler (or a test): a long run stops after the work in hand."""

    def __init__(self) -> None:
        self.requested = False

    def request(self) -> None:
        """Ask the run to stop."""
        self.requested = True


@contextmanager
def stop_on_signals(request_stop: Callable[[], None]) -> Iterator[None]:
    """Within the block, the first SIGTERM/SIGINT calls ``request_stop``; a second one exits the
    process at once (code 130 for SIGINT, 143 for SIGTERM)."""
    received: list[int] = []

    def handle(number: int, frame: FrameType | None) -> None:
        if received:
            os._exit(EXIT_AT_ONCE.get(signal.Signals(number), 130))
        received.append(number)
        logger.warning(
            "%s: stopping after the batch in hand; a second signal stops at once.",
            signal.Signals(number).name,
        )
        request_stop()

    previous = {number: signal.signal(number, handle) for number in EXIT_AT_ONCE}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
