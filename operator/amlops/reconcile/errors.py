"""The only error vocabulary above the Azure adapters.

Adapters classify Azure's answers (azure/errors.py) into one of these two; the engine turns them into
conditions: retryable → ``Reconciling`` (reason ``WaitingForAzure``/``Throttled``), terminal → ``Stalled`` with
Azure's error code as the reason. Any other exception is a bug (or an answer amlops cannot read), never a wait for
Azure: ``Stalled`` ``InternalError``, its traceback logged, tried again with a bounded back-off.
"""

from __future__ import annotations


class ReconcileError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class RetryableError(ReconcileError):
    """Transient: 429, 5xx, timeouts, another operation in progress. Try again after ``delay`` seconds."""

    def __init__(self, reason: str, message: str, delay: float = 10.0) -> None:
        super().__init__(reason, message)
        self.delay = delay


class TerminalError(ReconcileError):
    """Needs a human: invalid spec, quota, authorization, a missing parent. ``reason`` is Azure's code."""


class Deferred(Exception):  # noqa: N818 (not an error: a pass that ends early on purpose)
    """Not a failure: the pass cannot go on before ``delay`` seconds (a write whose turn in ARM's budget comes
    then) and ends without writing anything; the object is looked at again then. Not a :class:`ReconcileError`,
    so no adapter or client that handles those takes it for one."""

    def __init__(self, delay: float, message: str) -> None:
        super().__init__(message)
        self.delay = delay
