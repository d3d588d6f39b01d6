"""A server run as a child in its own process group, and stopped with that whole group (``ui``, ``serve``)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

log = logging.getLogger(__name__)

# SIGHUP too: the server runs in its own session, so closing the terminal no longer reaches it directly.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_GRACE_SECONDS = 5.0  # the server, its worker and job runner stop in about 1.5 s on a busy 2-core machine


class _Stopped(Exception):
    """Raised by the signal handler to leave ``Popen.wait`` for the cleanup."""


class _StopSignals:
    """Which stop signal came first, and whether the handler may interrupt the main thread now."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.interruptible = False

    def handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        # Raise at most once and only while waiting: raising inside Popen would lose the child's pid,
        # raising inside the cleanup would cut it short.
        if self.interruptible:
            self.interruptible = False
            raise _Stopped

    def wait(self, server: subprocess.Popen) -> int | None:
        """The server's exit code, or None if a stop signal came before the wait (raises ``_Stopped`` during it)."""
        self.interruptible = True
        if self.signum is not None:  # came while the server was starting: only recorded then
            self.interruptible = False
            return None
        returncode = server.wait()
        self.interruptible = False
        return returncode

    @contextmanager
    def installed(self) -> Iterator[_StopSignals]:
        """Handle the stop signals inside the block; restore the previous handlers after it."""
        previous = {signum: signal.signal(signum, self.handle) for signum in STOP_SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def run_server(command: list[str], env: dict[str, str]) -> int:
    """Run ``command`` in a new session until it exits or a stop signal comes, then stop its process group.

    When this process is stopped (SIGINT, SIGTERM, SIGHUP) or the server ends for any other reason, the
    whole group gets SIGTERM and, after a few seconds, SIGKILL, so no worker is left behind.

    Returns:
        The server's exit code; 0 after Ctrl-C (SIGINT), else ``128 + signal number`` when stopped by a
        signal (143 for SIGTERM, 129 for SIGHUP), as a shell reports a process killed by it.
    """
    server = None
    returncode = None
    with _StopSignals().installed() as stop:
        try:
            server = subprocess.Popen(command, env=env, start_new_session=True)
            returncode = stop.wait(server)
        except _Stopped:
            pass  # the finally below stops the server
        finally:
            if server is not None:
                stop_group(server)
    if stop.signum is None:
        return returncode if returncode is not None else 0  # not None: only a stop signal leaves it unset
    return 0 if stop.signum == signal.SIGINT else 128 + stop.signum


def stop_group(server: subprocess.Popen) -> None:
    """SIGTERM the process group that ``server`` leads, SIGKILL it if anyone outlasts the grace time; reap ``server``.

    Also run when the server exited on its own: its workers may have outlived it, still in its group.
    """
    group = server.pid  # start_new_session: the server leads its own group, whose id is its pid
    _signal_group(group, signal.SIGTERM)
    grace = STOP_GRACE_SECONDS
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        server.poll()  # reap the leader, our child: as a zombie it would count as running
        if not _group_running(group):
            return
        time.sleep(0.1)
    log.warning("the server did not stop within %.0f s: killing it", grace)
    _signal_group(group, signal.SIGKILL)
    server.wait()


def _group_running(group: int) -> bool:
    """Whether process group ``group`` has a process that is not a zombie.

    Zombies have exited but still count for ``killpg``; orphans wait for init to reap them, which can take
    seconds, or forever in a container whose init does not reap. Without ``/proc`` (macOS) they count.
    """
    if not _signal_group(group, 0):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        state, _ppid, pgrp = text[text.rindex(")") + 2 :].split(maxsplit=3)[:3]  # the name may hold ") "
        if int(pgrp) == group and state not in ("Z", "X"):
            return True
    return False


def _signal_group(group: int, signum: int) -> bool:
    """Send ``signum`` to process group ``group``; False if the group has no process left."""
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        return False
    return True
