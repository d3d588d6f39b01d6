"""SIGTERM and SIGINT stop a command the same way: as an interruption, with exit code 128 + the signal number."""

from __future__ import annotations

import signal
from types import FrameType

_received: list[int] = []


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an interruption so Lightning and our callbacks treat it as Ctrl-C (run KILLED).

    Lightning's own SIGTERM handling only stops at the next batch and then exits 0 with the run FAILED.
    """


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def stop_on_signals() -> None:
    """Raise an interruption on SIGTERM and SIGINT (Lightning keeps a handler it finds and calls it too)."""
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _interrupt)


def interrupted_exit_code() -> int | None:
    """``128 + signum`` of the first signal received (143 for SIGTERM, 130 for SIGINT), ``None`` if none was."""
    return 128 + _received[0] if _received else None
