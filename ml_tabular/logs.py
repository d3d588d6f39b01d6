"""Console logging for the CLI, plus an in-memory copy of the run's log (uploaded as ``logs/train.log``)."""

from __future__ import annotations

import io
import logging
import sys
from typing import Any

CAPTURED_LOGGERS = ("ml_tabular", "lightning.pytorch", "lightning.fabric")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is now (tests and notebooks swap it between calls)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        """Ignored: the stream is looked up at every write."""


class RunLogHandler(logging.Handler):
    """Keeps every record of the captured loggers in memory for the whole process."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.buffer = io.StringIO()
        self.setFormatter(logging.Formatter(_FORMAT))

    def emit(self, record: logging.LogRecord) -> None:
        self.buffer.write(self.format(record) + "\n")

    def text(self) -> str:
        return self.buffer.getvalue()


_capture: RunLogHandler | None = None


def configure_logging() -> RunLogHandler:
    """``[ml_tabular]`` messages on stderr, and start capturing the run's log (idempotent)."""
    global _capture
    ours = logging.getLogger("ml_tabular")
    if not any(isinstance(h, _StderrHandler) for h in ours.handlers):
        console = _StderrHandler()
        console.setFormatter(logging.Formatter("[ml_tabular] %(message)s"))
        ours.addHandler(console)
        ours.setLevel(logging.INFO)
        ours.propagate = False
    if _capture is None:
        _capture = RunLogHandler()
        for name in CAPTURED_LOGGERS:
            logging.getLogger(name).addHandler(_capture)
    return _capture


def captured_log() -> str:
    """What has been logged since :func:`configure_logging` (empty if it was never called)."""
    return _capture.text() if _capture is not None else ""
