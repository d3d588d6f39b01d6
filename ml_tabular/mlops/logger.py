"""``MLTabularLogger``: Lightning's ``MLFlowLogger``, made config-aware and resumable."""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from ml_tabular.mlops.tracking import (
    DEFAULT_STORE_DIR,
    flatten,
    param_value,
    require_mlflow,
    resolve_tracking_uri,
    split_long_params,
)

log = logging.getLogger(__name__)

_STATUSES = {"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}
RUN_CONFIG = "configs/run_config.yaml"
LONG_PARAMS = "configs/long_params.yaml"


class MLTabularLogger(MLFlowLogger):
    """An ``MLFlowLogger`` that records a run the way ml_tabular promises.

    - metrics are stepped by epoch index (not by optimizer step);
    - :meth:`log_config` records the effective CLI config as dotted params and as
      ``configs/run_config.yaml``; values over MLflow's length limit go whole to an artifact;
    - the best and last checkpoints are uploaded to ``checkpoints/`` when the run ends, however it ends;
    - a run reopened by ``run_id`` (resume) is set back to RUNNING and keeps its original params.

    Args:
        experiment_name: MLflow experiment of the run.
        run_name: Name of a new run.
        tracking_uri: Tracking store; ``None`` -> ``MLFLOW_TRACKING_URI`` -> embedded SQLite store.
        tags: Tags of a new run.
        run_id: Continue this existing run instead of starting one.
        log_artifacts: Upload configs and checkpoints.
        save_dir: Local folder for checkpoints (``<save_dir>/<experiment_id>/<run_id>/checkpoints``).
    """

    def __init__(
        self,
        experiment_name: str = "ml_tabular",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, Any] | None = None,
        run_id: str | None = None,
        log_artifacts: bool = True,
        save_dir: str = DEFAULT_STORE_DIR,
    ) -> None:
        require_mlflow()
        super().__init__(
            experiment_name=experiment_name,
            run_name=run_name,
            tracking_uri=resolve_tracking_uri(tracking_uri),
            tags=tags,
            run_id=run_id,
        )
        self._resuming = run_id is not None
        self._local_dir = save_dir
        self._log_artifacts = log_artifacts
        self._terminated = False
        self._logged_params: dict[str, str] | None = None

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        reopen = self._resuming and not self._initialized
        client = super().experiment
        if reopen:
            client.update_run(self._run_id, status="RUNNING")
            for key, value in (self.tags or {}).items():
                client.set_tag(self._run_id, key, value)
        return client

    @property
    def save_dir(self) -> str:
        """Local root of checkpoint folders (MLflow's own store may be remote)."""
        return self._local_dir

    @property
    def tracking_uri(self) -> str:
        return self._tracking_uri

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log with step = epoch index (Lightning adds ``epoch`` to every metrics dict it logs)."""
        metrics = dict(metrics)
        epoch = metrics.pop("epoch", None)
        if metrics:
            super().log_metrics(metrics, step=int(epoch) if epoch is not None else step)

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        """Model hyperparameters (linked sizes included) as ``model.init_args.<name>`` params."""
        params = dict(params)
        self._log_params({f"model.init_args.{k}": v for k, v in params.items() if not k.startswith("_")})

    @rank_zero_only
    def log_config(self, config_yaml: str) -> None:
        """Record the effective config: dotted params plus ``configs/run_config.yaml``."""
        self._log_params(flatten(yaml.safe_load(config_yaml) or {}))
        if self._log_artifacts:
            self.experiment.log_text(self.run_id, config_yaml, self._free_artifact_name(RUN_CONFIG))

    def _free_artifact_name(self, name: str) -> str:
        """``name``, or ``<stem>.resumed_<k><suffix>`` if a resumed run already holds it."""
        folder, _, file = name.rpartition("/")
        taken = {Path(a.path).name for a in self.experiment.list_artifacts(self.run_id, folder or None)}
        stem, suffix = Path(file).stem, Path(file).suffix
        k = 0
        while file in taken:
            k += 1
            file = f"{stem}.resumed_{k}{suffix}"
        return f"{folder}/{file}" if folder else file

    def _log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        if self._logged_params is None:
            self._logged_params = dict(self.experiment.get_run(self.run_id).data.params)
        values = {k: param_value(v) for k, v in params.items()}
        changed = {k: v for k, v in values.items() if k in self._logged_params and self._logged_params[k] != v}
        if changed:
            log.warning("run %s keeps its first values for params changed since: %s", self.run_id, changed)
        new = {k: v for k, v in values.items() if k not in self._logged_params}
        fits, long = split_long_params(new)
        if long:
            self.experiment.log_text(self.run_id, yaml.safe_dump(long), self._free_artifact_name(LONG_PARAMS))
            fits.update({k: f"<{len(v)} characters: see artifact {LONG_PARAMS}>" for k, v in long.items()})
        batch = [Param(k, v) for k, v in fits.items()]
        for start in range(0, len(batch), 100):
            self.experiment.log_batch(self.run_id, params=batch[start : start + 100])
        self._logged_params.update(fits)

    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        self._checkpoint_callback = checkpoint_callback

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Upload best/last checkpoints and close the run as FINISHED, FAILED or KILLED (once)."""
        if not self._initialized or self._terminated:
            return
        self._terminated = True
        if self._log_artifacts and self._checkpoint_callback is not None:
            self._upload_checkpoints(self._checkpoint_callback)
        self.experiment.set_terminated(self.run_id, _STATUSES.get(status, status.upper()))

    def _upload_checkpoints(self, callback: ModelCheckpoint) -> None:
        files = {"best.ckpt": callback.best_model_path, "last.ckpt": callback.last_model_path}
        with tempfile.TemporaryDirectory() as tmp:
            for name, path in files.items():
                if path and Path(path).is_file():
                    shutil.copyfile(path, Path(tmp) / name)
            if any(Path(tmp).iterdir()):
                self.experiment.log_artifacts(self.run_id, tmp, "checkpoints")
