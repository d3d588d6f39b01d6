"""``MLTabularLogger``: Lightning's ``MLFlowLogger``, made config-aware and resumable."""

from __future__ import annotations

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

from ml_tabular.checkpoint import LastEpochCheckpoint
from ml_tabular.logs import captured_log
from ml_tabular.mlops.recorder import TRAIN_LOG, RunRecorder
from ml_tabular.mlops.secrets import redact
from ml_tabular.mlops.tracking import DEFAULT_STORE_DIR, require_mlflow, resolve_tracking_uri, run_page

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # MLflow 3's UI opens such an experiment in its model-training view
_STATUSES = {"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


class MLTabularLogger(MLFlowLogger):
    """An ``MLFlowLogger`` that records a run the way ml_tabular promises.

    - metrics are stepped by epoch index (not by optimizer step);
    - :meth:`log_config` records the effective CLI config as dotted params and as
      ``configs/run_config.yaml``, the application config as ``configs/effective_app_config.yaml``,
      library versions and the uncommitted git diff; secrets are redacted everywhere;
    - the best and last checkpoints and ``logs/train.log`` are uploaded when the run ends, however it ends, and
      the run is closed FINISHED, FAILED or KILLED even if an upload fails;
    - a run reopened by ``run_id`` (resume) is set back to RUNNING and keeps its original params;
    - with ``add_only`` (``test``), metrics and the log are added to run ``run_id`` and nothing else there changes;
    - the experiment is tagged ``mlflow.experimentKind=custom_model_development`` (MLflow's model-training view).

    Args:
        experiment_name: MLflow experiment of the run.
        run_name: Name of a new run.
        tracking_uri: Tracking store; ``None`` -> ``MLFLOW_TRACKING_URI`` -> embedded SQLite store.
        tags: Tags of the run.
        run_id: Continue this existing run instead of starting one.
        log_artifacts: Upload configs, checkpoints, plots and logs.
        save_dir: Local folder for checkpoints (``<save_dir>/<experiment_id>/<run_id>/checkpoints``).
        app_config: The effective application config, stored as ``configs/effective_app_config.yaml``.
        add_only: Add metrics and ``log_name`` to the existing run ``run_id`` without reopening, retagging or
            closing it (what ``test`` does to the run that made its checkpoint).
        log_name: Artifact the captured log is uploaded as.
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
        app_config: dict[str, Any] | None = None,
        add_only: bool = False,
        log_name: str = TRAIN_LOG,
    ) -> None:
        require_mlflow()
        super().__init__(
            experiment_name=experiment_name,
            run_name=run_name,
            tracking_uri=resolve_tracking_uri(tracking_uri),
            tags=redact(tags or {}),
            run_id=run_id,
        )
        self._resuming = run_id is not None
        self._add_only = add_only and run_id is not None
        self._log_name = log_name
        self._local_dir = save_dir
        self._log_artifacts = log_artifacts
        self._app_config = app_config
        self._terminated = False
        self._recorder: RunRecorder | None = None
        self._checkpoint_callbacks: dict[str, ModelCheckpoint] = {}

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        starting = not self._initialized
        client = super().experiment
        if starting:
            client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
            if self.continues_run:
                client.update_run(self._run_id, status="RUNNING")
                self.recorder.set_tags(self.tags or {})
        return client

    @property
    def continues_run(self) -> bool:
        """Whether this logger reopens an existing run (resume), rather than starting one or only adding to one."""
        return self._resuming and not self._add_only

    @property
    def recorder(self) -> RunRecorder:
        """The writer for this logger's run (shared with :mod:`ml_tabular.mlops.mlflow_utils`)."""
        if self._recorder is None:
            self._recorder = RunRecorder(self._mlflow_client, self.run_id)
        return self._recorder

    @property
    def save_dir(self) -> str:
        """Local root of checkpoint folders (MLflow's own store may be remote)."""
        return self._local_dir

    @property
    def tracking_uri(self) -> str:
        return self._tracking_uri

    def summary(self) -> str:
        """One line naming the run and where to see it (its UI page, or ``ml_tabular ui`` for a local store)."""
        run = self.experiment.get_run(self.run_id)
        page = run_page(self.tracking_uri, self.experiment_id, self.run_id)
        return f"run '{run.info.run_name}' (id {self.run_id}, {run.info.status}): {page}"

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
        if self._add_only:
            return
        self.recorder.log_params({f"model.init_args.{k}": v for k, v in dict(params).items() if not k.startswith("_")})

    @rank_zero_only
    def log_config(self, config_yaml: str) -> None:
        """Record the effective run config (params + artifact), the app config and the environment."""
        self.recorder.log_configs(yaml.safe_load(config_yaml) or {}, self._app_config, self._log_artifacts)
        self.recorder.record_environment()

    @rank_zero_only
    def log_figure(self, figure: Any, artifact: str) -> None:
        if self._log_artifacts:
            self.experiment.log_figure(self.run_id, figure, artifact)

    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        self._checkpoint_callbacks[checkpoint_callback.state_key] = checkpoint_callback

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Upload best/last checkpoints and the log, then close the run as FINISHED, FAILED or KILLED (once).

        The run is closed even when an upload fails (the upload's error still propagates); with ``add_only``,
        only the log is added and the run's status and end time stay as they were.
        """
        if not self._initialized or self._terminated:
            return
        self._terminated = True
        try:
            if self._log_artifacts:
                self._upload_checkpoints()
                if captured_log():
                    self.recorder.log_text(captured_log(), self._log_name)
        finally:
            if not self._add_only:
                self.experiment.set_terminated(self.run_id, _STATUSES.get(status, status.upper()))

    def _upload_checkpoints(self) -> None:
        """The monitored best and the last checkpoint as ``checkpoints/best.ckpt`` and ``checkpoints/last.ckpt``."""
        files = {}
        for callback in self._checkpoint_callbacks.values():
            if isinstance(callback, LastEpochCheckpoint):
                files["last.ckpt"] = callback.best_model_path  # its one file is last.ckpt
            else:
                files.setdefault("last.ckpt", callback.last_model_path)
                files["best.ckpt"] = callback.best_model_path
        with tempfile.TemporaryDirectory() as tmp:
            for name, path in files.items():
                if path and Path(path).is_file():
                    shutil.copyfile(path, Path(tmp) / name)
            if any(Path(tmp).iterdir()):
                self.recorder.upload([tmp], "checkpoints")
