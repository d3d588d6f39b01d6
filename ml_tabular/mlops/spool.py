"""The tracking spool: what a tracking server did not take during a run, kept beside the run's checkpoints and sent
later, in order, once each.

A spool is a folder ``<save_dir>/<experiment_id>/<run_id>/spool`` holding ``run.json`` (server and run),
``journal.jsonl`` (one write per line, in the order they were made), ``sent`` (how many of them the server has
taken) and ``files/`` (copies of the artifacts to upload). Each write is idempotent on the server (a metric point,
a param of the same value, a tag, an artifact by name, the run's status), so a write sent again after a crash
between sending it and counting it changes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SPOOL_DIR = "spool"
RUN_FILE, JOURNAL, SENT, FILES = "run.json", "journal.jsonl", "sent", "files"


def is_unavailable(err: BaseException) -> bool:
    """Whether ``err`` means the server is away or overloaded (no connection, a timeout, HTTP 5xx) rather than a
    refusal of the request itself (HTTP 4xx: wrong input, credentials, permissions)."""
    import requests
    from mlflow.exceptions import MlflowException

    if isinstance(err, requests.RequestException):  # artifact uploads raise these for HTTP errors
        return err.response is None or err.response.status_code >= 500
    if isinstance(err, MlflowException):  # no connection and timeouts are INTERNAL_ERROR (500) too
        return err.get_http_status_code() >= 500
    return isinstance(err, (ConnectionError, TimeoutError))


@dataclass(frozen=True)
class SpoolRun:
    """Where a spool's writes go."""

    tracking_uri: str
    run_id: str


class Spool:
    """The journal of one run's unsent tracking writes (see the module docstring for its files).

    Args:
        folder: The spool folder (created at the first write kept).
        target: The server and run the writes are for.
    """

    def __init__(self, folder: str | Path, target: SpoolRun) -> None:
        self.folder = Path(folder).resolve()
        self.target = target

    @classmethod
    def open(cls, folder: str | Path) -> Spool:
        """The spool a run left in ``folder``."""
        saved = json.loads((Path(folder) / RUN_FILE).read_text())
        return cls(folder, SpoolRun(saved["tracking_uri"], saved["run_id"]))

    @staticmethod
    def find(save_dir: str | Path) -> list[Path]:
        """Spool folders with writes still to send under ``save_dir`` (``<experiment>/<run>/spool``)."""
        return sorted(path.parent for path in Path(save_dir).glob(f"*/*/{SPOOL_DIR}/{RUN_FILE}"))

    def pending(self) -> int:
        """How many writes are kept and not yet sent."""
        return max(len(self._journal()) - self._sent(), 0)

    def keep(self, op: str, files: dict[str, Path] | None = None, **fields: Any) -> None:
        """Add the write ``op`` with ``fields`` to the journal; ``files`` (field -> local file or folder) are copied
        into the spool first, as the originals may be temporary (those made by :meth:`file` are already there)."""
        with self._lock():
            if not (self.folder / RUN_FILE).is_file():
                self.folder.mkdir(parents=True, exist_ok=True)
                _write_atomic(self.folder / RUN_FILE, json.dumps(vars(self.target)))
            number = self._count()
            for field, source in (files or {}).items():
                source = Path(source).resolve()
                if not source.is_relative_to(self.folder):
                    source = _copy(source, self.folder / FILES / str(number) / source.name)
                fields[field] = str(source.relative_to(self.folder))
            with open(self.folder / JOURNAL, "a", encoding="utf-8") as journal:
                journal.write(json.dumps({"op": op, **fields}) + "\n")
                journal.flush()
                os.fsync(journal.fileno())

    def file(self, name: str) -> Path:
        """A new path inside the spool for a file written by the caller (a figure, a text, an example table)."""
        number = self._count()
        path = self.folder / FILES / str(number) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def send(self, client: Any, tracking_uri: str | None = None) -> int:
        """Send the kept writes in order through ``client`` (an ``MlflowClient`` of ``tracking_uri``, by default the
        run's server), counting each as it is taken; the first failure stops and is raised (the rest stay kept). When
        all are sent the spool is removed. Returns how many were sent now."""
        target = SpoolRun(tracking_uri or self.target.tracking_uri, self.target.run_id)
        with self._lock():
            ops = self._journal()
            start = done = self._sent()
            for op in ops[start:]:
                _apply(client, target, self.folder, op)
                done += 1
                _write_atomic(self.folder / SENT, str(done))
            if done >= len(ops):
                shutil.rmtree(self.folder, ignore_errors=True)
        return done - start

    def describe(self) -> str:
        """What is kept, in words: ``12 metric points, 3 params, 2 artifacts, the run's status``."""
        counts: dict[str, int] = {}
        for op in self._journal()[self._sent() :]:
            for kind, n in _kinds(op).items():
                counts[kind] = counts.get(kind, 0) + n
        return ", ".join(f"{n} {kind}" for kind, n in counts.items()) or "nothing"

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """One writer at a time: the training process and ``ml_tabular sync`` may both reach a spool."""
        from filelock import FileLock

        self.folder.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(self.folder.parent / f".{SPOOL_DIR}.lock"):
            yield

    def _journal(self) -> list[dict]:
        path = self.folder / JOURNAL
        if not path.is_file():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def _count(self) -> int:
        """Writes in the journal (sent or not): the number of the next one."""
        path = self.folder / JOURNAL
        if not path.is_file():
            return 0
        with open(path, "rb") as journal:
            return sum(1 for line in journal if line.strip())

    def _sent(self) -> int:
        path = self.folder / SENT
        return int(path.read_text()) if path.is_file() else 0


def _kinds(op: dict) -> dict[str, int]:
    if op["op"] == "log_batch":
        counts = {"metric points": len(op["metrics"]), "params": len(op["params"]), "tags": len(op["tags"])}
        return {kind: n for kind, n in counts.items() if n}
    if op["op"] in ("log_artifact", "log_artifacts"):
        return {"artifacts": 1}
    return {{"set_terminated": "run status", "log_model": "MLflow model", "log_inputs": "dataset input"}[op["op"]]: 1}


def _apply(client: Any, target: SpoolRun, folder: Path, op: dict) -> None:
    """Send one kept write."""
    from mlflow.entities import Metric, Param, RunTag

    run_id, kind = target.run_id, op["op"]
    if kind == "log_batch":
        client.log_batch(
            run_id,
            metrics=[Metric(*m) for m in op["metrics"]],
            params=[Param(*p) for p in op["params"]],
            tags=[RunTag(*t) for t in op["tags"]],
            synchronous=True,
        )
    elif kind == "log_artifact":
        client.log_artifact(run_id, str(folder / op["path"]), op["artifact_path"])
    elif kind == "log_artifacts":
        client.log_artifacts(run_id, str(folder / op["path"]), op["artifact_path"])
    elif kind == "log_inputs":
        client.log_inputs(run_id, datasets=[_dataset_input(d) for d in op["datasets"]])
    elif kind == "set_terminated":
        client.set_terminated(run_id, op["status"], op["end_time"])
    elif kind == "log_model":
        import pandas as pd

        from ml_tabular.mlops.model import log_checkpoint_model

        example = pd.read_parquet(folder / op["example"])
        log_checkpoint_model(
            target.tracking_uri, run_id, op["checkpoint"], example, op["tags"], tuple(op["time_columns"])
        )
    else:
        raise ValueError(f"unknown spooled write {kind!r}")


def dataset_input_json(dataset_input: Any) -> dict:
    """A ``DatasetInput`` as JSON (its protobuf form), to keep in the journal."""
    from google.protobuf.json_format import MessageToDict

    return MessageToDict(dataset_input.to_proto())


def _dataset_input(data: dict) -> Any:
    from google.protobuf.json_format import ParseDict
    from mlflow.entities import DatasetInput
    from mlflow.protos.service_pb2 import DatasetInput as DatasetInputProto

    return DatasetInput.from_proto(ParseDict(data, DatasetInputProto()))


def _copy(source: Path, copy: Path) -> Path:
    copy.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, copy)
    else:
        shutil.copyfile(source, copy)
    return copy


def _write_atomic(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text)
    os.replace(temp, path)
