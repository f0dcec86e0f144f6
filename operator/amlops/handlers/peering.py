"""The work queue stands still while kopf has paused this operator in favour of a peer (``--peering``).

kopf keeps its pause in a toggle only its own tasks see (it stops its timers and daemons and its watch streams
with it) and offers no hook for an operator's own tasks. What it does say is each decision, in these lines of
its peering logger (``kopf/_core/engines/peering.py``; kopf is pinned to the 1.45 series in pyproject.toml, and
``tests/chart/test_peering.py`` shows the standby replica making no pass).
"""

from __future__ import annotations

import logging

from amlops.handlers.workqueue import WorkQueue

KOPF_PEERING_LOGGER = "kopf._core.engines.peering"
PAUSING = ("Pausing operations in favour of", "Pausing all operators, including self")
RESUMING = ("Resuming operations after the pause",)


class PeeringPause(logging.Handler):
    def __init__(self, queue: WorkQueue) -> None:
        super().__init__(level=logging.INFO)
        self._queue = queue

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(PAUSING):
            self._queue.pause()
        elif message.startswith(RESUMING):
            self._queue.resume()


def follow(queue: WorkQueue) -> PeeringPause:
    """Pause ``queue`` whenever kopf pauses the operator; returns the handler, for ``unfollow``."""
    handler = PeeringPause(queue)
    logger = logging.getLogger(KOPF_PEERING_LOGGER)
    logger.addHandler(handler)
    if not logger.isEnabledFor(logging.INFO):
        logger.setLevel(logging.INFO)
    return handler


def unfollow(handler: PeeringPause) -> None:
    logging.getLogger(KOPF_PEERING_LOGGER).removeHandler(handler)
