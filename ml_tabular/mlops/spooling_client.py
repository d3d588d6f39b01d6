"""``SpoolingClient``: the ``MlflowClient`` of one training run, which keeps what an absent server does not take."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ml_tabular.mlops.secrets import redact_value
from ml_tabular.mlops.spool import Spool, dataset_input_json, is_unavailable
from ml_tabular.mlops.store_check import RETRIES_VAR, TIMEOUT_VAR, connection_failure, first_line, server_health
from ml_tabular.mlops.tracking import environment

log = logging.getLogger(__name__)

BACKOFF_VAR = "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR"
# during training (a user's own MLFLOW_HTTP_REQUEST_* settings win): a refused connection gives up after ~3 s and
# a server that never answers after 2 x 10 s, instead of MLflow's 7 retries with backoff 2 and 120 s (~4 min)
TRAINING_REQUESTS = {RETRIES_VAR: "1", BACKOFF_VAR: "1", TIMEOUT_VAR: "10"}
# sending what was kept: one quick attempt, as a failure only means it is kept for the next one
SENDING_REQUESTS = {RETRIES_VAR: "0", TIMEOUT_VAR: "10"}
PROBE_SECONDS = 2  # the health check before sending kept writes
REASON_CHARS = 200  # of a server's error message in a warning printed during training
RETRY_SECONDS = 10  # at least this long between two attempts to send kept writes (unless forced)


class SpoolingClient:
    """Passes every call on to ``client``; with a ``spool``, a write to ``run_id`` the server does not take (no
    connection, a timeout, HTTP 5xx) is kept there instead, and so is every write after it until :meth:`flush` has
    sent them all: the server gets them in the order they were made. HTTP requests get bounded retries.

    Args:
        client: The run's ``MlflowClient``.
        tracking_uri: Its tracking URI.
        run_id: The run whose writes are kept.
        spool: Where to keep them; ``None`` passes every error on (a local store has no server to wait for).
    """

    def __init__(self, client: Any, tracking_uri: str, run_id: str, spool: Spool | None) -> None:
        self._client = client
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self.spool = spool
        self.away = False  # a write was kept and not all are sent yet
        self._last_try = 0.0
        self._limits = {k: v for k, v in TRAINING_REQUESTS.items() if k not in os.environ}

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        if not callable(value):
            return value

        def bounded(*args: Any, **kwargs: Any) -> Any:
            with environment(self._limits):
                return value(*args, **kwargs)

        return bounded

    def log_batch(
        self, run_id: str, metrics: Sequence = (), params: Sequence = (), tags: Sequence = (), synchronous: Any = None
    ) -> Any:
        def keep() -> None:
            self.spool.keep(
                "log_batch",
                metrics=[[m.key, m.value, m.timestamp, m.step] for m in metrics],
                params=[[p.key, p.value] for p in params],
                tags=[[t.key, t.value] for t in tags],
            )

        send = lambda: self._client.log_batch(run_id, metrics, params, tags, synchronous=synchronous)  # noqa: E731
        return self._send_or_keep(run_id, send, keep)

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        keep = lambda: self.spool.keep("log_artifact", {"path": Path(local_path)}, artifact_path=artifact_path)  # noqa: E731
        self._send_or_keep(run_id, lambda: self._client.log_artifact(run_id, local_path, artifact_path), keep)

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        keep = lambda: self.spool.keep("log_artifacts", {"path": Path(local_dir)}, artifact_path=artifact_path)  # noqa: E731
        self._send_or_keep(run_id, lambda: self._client.log_artifacts(run_id, local_dir, artifact_path), keep)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        def keep() -> None:
            path = self.spool.file(Path(artifact_file).name)
            path.write_text(text, encoding="utf-8")
            self.spool.keep("log_artifact", {"path": path}, artifact_path=_folder(artifact_file))

        self._send_or_keep(run_id, lambda: self._client.log_text(run_id, text, artifact_file), keep)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str, **kwargs: Any) -> None:
        def keep() -> None:
            path = self.spool.file(Path(artifact_file).name)
            figure.savefig(path, **(kwargs.get("save_kwargs") or {}))  # matplotlib, as MlflowClient saves it
            self.spool.keep("log_artifact", {"path": path}, artifact_path=_folder(artifact_file))

        self._send_or_keep(run_id, lambda: self._client.log_figure(run_id, figure, artifact_file, **kwargs), keep)

    def log_inputs(self, run_id: str, datasets: Sequence | None = None, models: Sequence | None = None) -> None:
        keep = lambda: self.spool.keep("log_inputs", datasets=[dataset_input_json(d) for d in datasets or ()])  # noqa: E731
        self._send_or_keep(run_id, lambda: self._client.log_inputs(run_id, datasets, models), keep)

    def set_terminated(self, run_id: str, status: str | None = None, end_time: int | None = None) -> None:
        end_time = end_time or int(time.time() * 1000)  # kept: the run ended now, not when it is sent
        keep = lambda: self.spool.keep("set_terminated", status=status or "FINISHED", end_time=end_time)  # noqa: E731
        self._send_or_keep(run_id, lambda: self._client.set_terminated(run_id, status, end_time), keep)

    def list_artifacts(self, run_id: str, path: str | None = None) -> list:
        """The run's artifacts under ``path``; none known while the server is away (a name is then not checked for
        a clash with an earlier upload of a resumed run), which a failed listing also starts (nothing to keep)."""
        return self._send_or_keep(run_id, lambda: self._client.list_artifacts(run_id, path), lambda: None) or []

    def log_model(self, checkpoint: str, example: Any, tags: dict[str, Any], time_columns: tuple[str, ...]) -> Any:
        """:func:`~ml_tabular.mlops.model.log_checkpoint_model` for this run; its ``ModelInfo``, or ``None`` when it
        is kept for later."""
        from ml_tabular.mlops.model import log_checkpoint_model

        def keep() -> None:
            path = self.spool.file("example.parquet")
            example.to_parquet(path)
            self.spool.keep(
                "log_model", {"example": path}, checkpoint=str(Path(checkpoint).resolve()), tags=tags,
                time_columns=list(time_columns),
            )  # fmt: skip

        send = lambda: log_checkpoint_model(self.tracking_uri, self.run_id, checkpoint, example, tags, time_columns)  # noqa: E731
        return self._send_or_keep(self.run_id, send, keep)

    def flush(self, force: bool = False) -> bool:
        """Send the kept writes if the server answers; whether none is left. Tried at most every ``RETRY_SECONDS``
        unless ``force``."""
        if not self.away:
            return True
        if not force and time.monotonic() - self._last_try < RETRY_SECONDS:
            return False
        self._last_try = time.monotonic()
        try:
            server_health(self.tracking_uri, PROBE_SECONDS)
            with environment({k: v for k, v in SENDING_REQUESTS.items() if k not in os.environ}):
                sent = self.spool.send(self._client)
        except Exception as err:
            if not is_unavailable(err):
                log.warning("tracking server %s refused a kept write: %s", self._server, first_line(err, REASON_CHARS))
            return False
        self.away = False
        log.info("tracking server %s is back: the %d writes kept while it was away are sent", self._server, sent)
        return True

    @property
    def _server(self) -> str:
        return redact_value(self.tracking_uri)

    def _send_or_keep(self, run_id: str, send: Callable[[], Any], keep: Callable[[], None]) -> Any:
        if self.spool is None or run_id != self.run_id:
            return self._bounded(send)
        if not self.away:
            try:
                return self._bounded(send)
            except Exception as err:
                if not is_unavailable(err):
                    raise
                self._went_away(err)
        keep()
        return None

    def _bounded(self, call: Callable[[], Any]) -> Any:
        with environment(self._limits):
            return call()

    def _went_away(self, err: BaseException) -> None:
        self.away = True
        self._last_try = time.monotonic()
        log.warning(
            "tracking server %s is not taking writes (%s): training goes on, and what it misses is kept in %s and "
            "sent when it is back (at each epoch end, at the end of the run, or by `ml_tabular sync --run-id %s`)",
            self._server, self._reason(err), self.spool.folder, self.run_id,
        )  # fmt: skip

    def _reason(self, err: BaseException) -> str:
        """Why a write failed, in words: what happened to the connection, or the server's answer."""
        text = first_line(err, REASON_CHARS)
        if text.startswith("API request to") and " failed with " in text:  # no HTTP answer at all (rest_utils)
            return connection_failure(str(err), float(os.environ.get(TIMEOUT_VAR, TRAINING_REQUESTS[TIMEOUT_VAR])))
        return text


def _folder(artifact_file: str) -> str | None:
    folder = str(Path(artifact_file).parent)
    return None if folder == "." else folder
