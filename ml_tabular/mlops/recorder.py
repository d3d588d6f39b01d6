"""``RunRecorder``: everything ml_tabular writes into one MLflow run, for the logger and the helpers alike."""

from __future__ import annotations

import json
import logging
import platform
import subprocess
import warnings
from collections.abc import Iterable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ml_tabular.data.io import file_sha256
from ml_tabular.mlops.secrets import redact, redact_text
from ml_tabular.mlops.tracking import flatten, param_value, split_long_params

log = logging.getLogger(__name__)

RUN_CONFIG = "configs/run_config.yaml"
APP_CONFIG = "configs/effective_app_config.yaml"
LONG_PARAMS = "configs/long_params.yaml"
GIT_DIFF = "git/uncommitted.diff"
TRAIN_LOG = "logs/train.log"
TEST_LOG = "logs/test.log"
MAX_DIFF_BYTES = 1_000_000
DIGEST_CHARS = 16  # a dataset digest: the first hex digits of the file's SHA-256
LIBRARIES = ("torch", "lightning", "torchmetrics", "mlflow", "ml_tabular")


class RunRecorder:
    """Writes params, tags, metrics, config and text artifacts to the run ``run_id`` through ``client``.

    Params are the dotted flattening of a config; values past MLflow's length limit are kept whole in
    ``configs/long_params.yaml``; a run that already has a param keeps its first value (resume).
    Everything passes through :func:`~ml_tabular.mlops.secrets.redact` first.
    """

    def __init__(self, client: Any, run_id: str, synchronous: bool | None = None) -> None:
        self.client = client
        self.run_id = run_id
        self._batch_kwargs = {} if synchronous is None else {"synchronous": synchronous}  # as MLFlowLogger passes it
        self._params: dict[str, str] | None = None

    def logged_params(self) -> dict[str, str]:
        """The run's params, read once and then kept up to date by :meth:`log_params`."""
        if self._params is None:
            self._params = dict(self.client.get_run(self.run_id).data.params)
        return self._params

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        logged = self.logged_params()
        values = {k: param_value(v) for k, v in flatten(redact(dict(params))).items()}
        changed = {k: v for k, v in values.items() if k in logged and logged[k] != v}
        if changed:
            log.info("run %s keeps its first param values; changed since (see configs/): %s", self.run_id, changed)
        fits, long = split_long_params({k: v for k, v in values.items() if k not in logged})
        if long:
            self.log_text(yaml.safe_dump(long), LONG_PARAMS)
            fits.update({k: f"<{len(v)} characters: see artifact {LONG_PARAMS}>" for k, v in long.items()})
        batch = [Param(k, v) for k, v in fits.items()]
        for start in range(0, len(batch), 100):
            self.client.log_batch(self.run_id, params=batch[start : start + 100], **self._batch_kwargs)
        logged.update(fits)

    def log_configs(
        self, run_config: Mapping[str, Any], app_config: Mapping[str, Any] | None = None, artifacts: bool = True
    ) -> None:
        """The run config as dotted params; with ``artifacts``, it as ``configs/run_config.yaml`` and the app
        config as ``configs/effective_app_config.yaml``. Secrets are redacted in all of them."""
        self.log_params(run_config)
        if artifacts:
            self.log_yaml(run_config, RUN_CONFIG)
            if app_config is not None:
                self.log_yaml(app_config, APP_CONFIG)

    def log_yaml(self, data: Mapping[str, Any], artifact: str) -> None:
        self.log_text(yaml.safe_dump(redact(dict(data)), sort_keys=False), artifact)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        tags = redact(dict(tags))
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()], **self._batch_kwargs)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """All metrics in one ``log_batch`` call (one round trip, whatever their number)."""
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self.client.log_batch(self.run_id, metrics=batch, **self._batch_kwargs)

    def log_text(self, text: str, artifact: str) -> str:
        """Upload ``text`` as ``artifact``; a resumed run's existing file is kept and a ``.resumed_<k>`` added."""
        artifact = self.free_artifact_name(artifact)
        self.client.log_text(self.run_id, text, artifact)
        return artifact

    def free_artifact_name(self, name: str) -> str:
        folder, _, file = name.rpartition("/")
        taken = {Path(a.path).name for a in self.client.list_artifacts(self.run_id, folder or None)}
        stem, suffix = Path(file).stem, Path(file).suffix
        k = 0
        while file in taken:
            k += 1
            file = f"{stem}.resumed_{k}{suffix}"
        return f"{folder}/{file}" if folder else file

    def record_environment(self, cwd: str | Path | None = None) -> None:
        """Library versions as tags, and the uncommitted git diff as an artifact when the tree is dirty."""
        versions = {"version.python": platform.python_version()}
        for name in LIBRARIES:
            try:
                versions[f"version.{name}"] = metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        self.set_tags(versions)
        diff = _git_diff(cwd)
        if diff:
            self.log_text(diff, GIT_DIFF)

    def log_dataset(self, name: str, path: str | Path, head: pd.DataFrame, n_rows: int, targets: str) -> None:
        """The training table as an MLflow dataset input: name, source, file digest, schema, profile."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.models import infer_signature

        path = Path(path).resolve()
        with warnings.catch_warnings():  # its hint on integer columns is about model signatures, not a dataset
            warnings.simplefilter("ignore", UserWarning)
            schema = infer_signature(head).inputs.to_dict()
        dataset = Dataset(
            name=name,
            digest=file_sha256(path)[:DIGEST_CHARS],
            source_type="local",
            source=json.dumps({"uri": str(path)}),
            schema=json.dumps({"mlflow_colspec": schema}),
            profile=json.dumps({"num_rows": n_rows, "num_elements": n_rows * head.shape[1], "targets": targets}),
        )
        tags = [InputTag("mlflow.data.context", "training")]
        self.client.log_inputs(self.run_id, datasets=[DatasetInput(dataset, tags)])

    def upload(self, paths: Iterable[str | Path], artifact_subdir: str | None = None) -> None:
        for path in map(Path, paths):
            if path.is_dir():
                self.client.log_artifacts(self.run_id, str(path), artifact_subdir)
            else:
                self.client.log_artifact(self.run_id, str(path), artifact_subdir)


def _git_diff(cwd: str | Path | None) -> str:
    """The uncommitted changes under ``cwd`` (``git diff HEAD``), secrets redacted, at most ``MAX_DIFF_BYTES``."""
    try:
        done = subprocess.run(["git", "diff", "HEAD"], cwd=cwd, capture_output=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    kept = done.stdout[:MAX_DIFF_BYTES]
    if len(done.stdout) > MAX_DIFF_BYTES:
        kept = kept[: kept.rfind(b"\n") + 1] or kept  # whole lines: a password cut short would escape redaction
    diff = redact_text(kept.decode("utf-8", errors="replace"))
    if len(done.stdout) > MAX_DIFF_BYTES:
        diff += f"\n[ml_tabular: diff cut at {MAX_DIFF_BYTES} of {len(done.stdout)} bytes]\n"
    return diff
