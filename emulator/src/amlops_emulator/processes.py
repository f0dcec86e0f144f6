"""Helpers shared by the emulator's two process runners (the Batch node agent and Azure ML's run executor)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket


def kill_group(pid: int) -> None:
    """SIGKILL a process group started with ``start_new_session=True``: the shell and everything it started."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (the kernel's pick), for a rendezvous the user processes open."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])
