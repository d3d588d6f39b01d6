"""Console logging for the CLI, plus an in-memory copy of the run's log (uploaded as ``logs/train.log``)."""

from __future__ import annotations

import io
import logging

CAPTURED_LOGGERS = ("ml_tabular", "lightning.pytorch", "lightning.fabric")
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


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
    if not any(isinstance(h, logging.StreamHandler) and not isinstance(h, RunLogHandler) for h in ours.handlers):
        console = logging.StreamHandler()
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
