"""``MLTabularLogger``: Lightning's ``MLFlowLogger``, made config-aware and resumable."""

from __future__ import annotations

import logging
import shutil
import tempfile
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from lightning.fabric.utilities.logger import _convert_params, _flatten_dict  # what MLFlowLogger uses; no public twin
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_only

from ml_tabular.checkpoint import LastEpochCheckpoint
from ml_tabular.logs import captured_log
from ml_tabular.mlops.recorder import TRAIN_LOG, RunRecorder
from ml_tabular.mlops.secrets import redact, redact_value
from ml_tabular.mlops.spool import SPOOL_DIR, Spool, SpoolRun
from ml_tabular.mlops.spooling_client import SpoolingClient
from ml_tabular.mlops.store_check import tag_experiment_kind
from ml_tabular.mlops.tracking import DEFAULT_STORE_DIR, require_mlflow, resolve_tracking_uri, run_page

log = logging.getLogger(__name__)

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"  # MLflow 3's UI opens such an experiment in its model-training view
CLI_HPARAMS = ("_class_path", "_instantiator")  # LightningCLI's bookkeeping in a model's hparams
_STATUSES = {"success": "FINISHED", "finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


class MLTabularLogger(MLFlowLogger):
    """Lightning's ``MLFlowLogger`` with ml_tabular's record of a run; a drop-in replacement for it.

    It takes the base class's arguments with the same names, order and meaning, and adds:

    - :meth:`log_config` records the effective CLI config as dotted params and as ``configs/run_config.yaml``,
      the application config as ``configs/effective_app_config.yaml``, library versions and the uncommitted git
      diff; secrets are redacted in params, tags and artifacts;
    - ``logs/train.log`` is uploaded and the run closed FINISHED, FAILED or KILLED however it ends, even when an
      upload fails;
    - a run reopened by ``run_id`` (resume) is set back to RUNNING and keeps its original params; with
      ``add_only`` (``test``), metrics and the log are added to it and nothing else there changes;
    - the experiment is tagged ``mlflow.experimentKind=custom_model_development`` (MLflow's model-training view);
    - with a tracking server, what it does not take during the run (it stopped, hangs or answers 5xx) is kept in
      ``<save_dir>/<experiment_id>/<run_id>/spool`` while training goes on, and sent in order when it is back (tried
      at each epoch end and at the end), or later by ``ml_tabular sync``; requests get bounded retries and timeouts.

    Where it differs from the base, on purpose: the default store is the SQLite file ``<save_dir>/mlflow.db``
    (MLflow 3 refuses ``file:`` stores); metrics are stepped by the epoch index when Lightning passes ``epoch``
    (ml_tabular logs epoch metrics only; ``epoch`` is recorded once per epoch); param values are never cut at 250
    characters (past MLflow's 6000 they are kept whole in ``configs/long_params.yaml``); ``log_model=True``
    uploads the best and last checkpoints as ``checkpoints/best.ckpt`` and ``checkpoints/last.ckpt`` (stable
    names to register or download); ``save_dir`` is also where checkpoints are written, whatever the store.

    Args:
        experiment_name: MLflow experiment of the run.
        run_name: Name of a new run.
        tracking_uri: Tracking store; ``None`` -> ``MLFLOW_TRACKING_URI`` -> ``sqlite:///<save_dir>/mlflow.db``.
        tags: Tags of a new run.
        save_dir: Local folder of the embedded store and of checkpoints (``<save_dir>/<experiment>/<run>/checkpoints``).
        log_model: Upload checkpoints: ``True`` the best and last at the end, ``"all"`` also every checkpoint as it
            is saved (with Lightning's ``metadata.yaml`` and ``aliases.txt``), ``False`` none.
        prefix: Put at the start of metric keys (joined with ``-``).
        artifact_location: Artifact location of a new experiment (``None``: the store's default).
        run_id: Continue this existing run instead of starting one.
        synchronous: Whether each logging call blocks until done (``None``: MLflow's default); for params, tags
            and metrics alike.
        log_artifacts: Upload configs, checkpoints, plots and logs (``False``: params, tags and metrics only).
        app_config: The effective application config, stored as ``configs/effective_app_config.yaml``.
        add_only: Add metrics and ``log_name`` to the existing run ``run_id`` without reopening, retagging or
            closing it (what ``test`` does to the run that made its checkpoint).
        log_name: Artifact the captured log is uploaded as.
    """

    def __init__(
        self,
        experiment_name: str = "lightning_logs",
        run_name: str | None = None,
        tracking_uri: str | None = None,
        tags: dict[str, Any] | None = None,
        save_dir: str | None = "./mlruns",
        log_model: Literal[True, False, "all"] = False,
        prefix: str = "",
        artifact_location: str | None = None,
        run_id: str | None = None,
        synchronous: bool | None = None,
        *,
        log_artifacts: bool = True,
        app_config: dict[str, Any] | None = None,
        add_only: bool = False,
        log_name: str = TRAIN_LOG,
    ) -> None:
        require_mlflow()
        save_dir = save_dir or DEFAULT_STORE_DIR
        self._store_uri = resolve_tracking_uri(tracking_uri, save_dir)
        super().__init__(
            experiment_name=experiment_name,
            run_name=run_name,
            tracking_uri=self._store_uri,
            tags=redact(tags or {}),
            save_dir=save_dir,
            log_model=log_model,
            prefix=prefix,
            artifact_location=artifact_location,
            run_id=run_id,
            synchronous=synchronous,
        )
        self._resuming = run_id is not None
        self._add_only = add_only and run_id is not None
        self._log_name = log_name
        self._local_dir = save_dir
        self._synchronous = synchronous
        self._checkpoint_uploads = log_model
        self._epoch_logged: int | None = None
        self._log_artifacts = log_artifacts
        self._app_config = app_config
        self._closed_as: str | None = None
        self._config_logged = False
        self._recorder: RunRecorder | None = None
        self._client: SpoolingClient | None = None
        self._logged: dict[str, list[tuple[int, float]]] = {}  # what this process logged, for when the server is away
        self._checkpoint_callbacks: dict[str, ModelCheckpoint] = {}

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The run's :class:`~ml_tabular.mlops.spooling_client.SpoolingClient` (an ``MlflowClient``)."""
        if self._client is None:  # first use: the run now exists (created, or found by run_id)
            client = super().experiment
            remote = self._store_uri.startswith(("http://", "https://"))
            spool = Spool(self._spool_dir(), SpoolRun(self._store_uri, self._run_id)) if remote else None
            self._client = SpoolingClient(client, self._store_uri, self._run_id, spool)
            tag_experiment_kind(client, self.experiment_id)
            if self.continues_run:
                client.update_run(self.run_id, status="RUNNING")
                self.recorder.set_tags(self.tags or {})
        return self._client

    def _spool_dir(self) -> Path:
        """Where writes the server did not take are kept: beside the run's checkpoints."""
        return Path(self._local_dir, self._experiment_id, self._run_id, SPOOL_DIR)  # the base's, set by opening

    @property
    def continues_run(self) -> bool:
        """Whether this logger reopens an existing run (resume), rather than starting one or only adding to one."""
        return self._resuming and not self._add_only

    @property
    def recorder(self) -> RunRecorder:
        """The writer for this logger's run (shared with :mod:`ml_tabular.mlops.mlflow_utils`)."""
        if self._recorder is None:
            self._recorder = RunRecorder(self.experiment, self.run_id, self._synchronous)
        return self._recorder

    @property
    def save_dir(self) -> str:
        """Local root of checkpoint folders (MLflow's own store may be remote)."""
        return self._local_dir

    @property
    def tracking_uri(self) -> str:
        return self._store_uri

    def summary(self) -> str:
        """One line naming the run and where to see it (its UI page, or ``ml_tabular ui`` for a local store)."""
        page = run_page(self.tracking_uri, self.experiment_id, self.run_id)
        if self.experiment.away:
            return f"run {self.run_id}: {page} once `ml_tabular sync --run-id {self.run_id}` has sent what is kept"
        run = self.experiment.get_run(self.run_id)
        return f"run '{run.info.run_name}' (id {self.run_id}, {run.info.status}): {page}"

    @rank_zero_only
    def save(self) -> None:
        """Lightning calls this after each logging call (epoch ends here): send kept writes if the server is back."""
        if self._client is not None:
            self._client.flush()

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log with step = the epoch index when ``metrics`` holds Lightning's ``epoch``, which is recorded once per
        epoch too (not by ``add_only``: a test adds no epoch to the run)."""
        metrics = dict(metrics)
        epoch = metrics.get("epoch")
        if epoch is not None:
            step = int(epoch)
            if self._add_only or step == self._epoch_logged:  # once per epoch (train and val both bring it)
                metrics.pop("epoch")
            self._epoch_logged = step
        if metrics:
            super().log_metrics(metrics, step=step)
            for key, value in metrics.items():
                self._logged.setdefault(key, []).append((step or 0, float(value)))

    def metric_history(self, key: str) -> list[tuple[int, float]]:
        """``(step, value)`` of metric ``key`` in logging order: the store's (a resumed run's earlier epochs too), or
        while the tracking server is away, what this process logged."""
        if self.experiment.away:
            return list(self._logged.get(key, []))
        return [(m.step, m.value) for m in self.experiment.get_metric_history(self.run_id, key)]

    @rank_zero_only
    def log_hyperparams(self, params: dict[str, Any] | Namespace) -> None:
        """Params as the base logs them (nested keys joined by ``/``), untruncated and redacted.

        Once :meth:`log_config` has recorded the CLI's config, the model's init args Lightning passes here are
        already params as ``model.init_args.<name>``, and are not repeated.
        """
        if self._add_only:
            return
        # Lightning's own helpers, so any params (Namespace, lists of dicts, None) become the base's keys and values
        params = {k: str(v) for k, v in _flatten_dict(_convert_params(params)).items()}
        if self._config_logged:
            logged = self.recorder.logged_params()
            params = {k: v for k, v in params.items() if f"model.init_args.{k}" not in logged and k not in CLI_HPARAMS}
        self.recorder.log_params(params)

    @rank_zero_only
    def log_config(self, config_yaml: str) -> None:
        """Record the effective run config (params + artifact), the app config and the environment."""
        self.recorder.log_configs(yaml.safe_load(config_yaml) or {}, self._app_config, self._log_artifacts)
        self.recorder.record_environment()
        self._config_logged = True

    @rank_zero_only
    def log_figure(self, figure: Any, artifact: str) -> None:
        if self._log_artifacts:
            self.experiment.log_figure(self.run_id, figure, artifact)

    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        """Remember the callback (best and last are uploaded at the end); with ``log_model="all"`` (or ``True`` and
        ``save_top_k=-1``), upload its new checkpoints now, as the base does."""
        self._checkpoint_callbacks[checkpoint_callback.state_key] = checkpoint_callback
        if self._log_artifacts:
            super().after_save_checkpoint(checkpoint_callback)

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Upload best/last checkpoints and the log, then close the run as FINISHED, FAILED or KILLED.

        The run is closed even when an upload fails (the upload's error still propagates). A second call closes
        it again with the new status (a ``test`` that fails after a ``fit`` in one process marks the run FAILED, as
        the base does), except that ``failed`` right after ``killed`` keeps KILLED (Lightning reports an interrupt
        as a failure after our callback named it). With ``add_only``, the status and end time stay as they were.
        """
        closing = _STATUSES.get(status, status.upper())
        if self._client is None or (self._closed_as == "KILLED" and closing == "FAILED"):
            return
        first = self._closed_as is None
        self._closed_as = closing
        try:
            if self._log_artifacts and first:
                if self._checkpoint_uploads:
                    self._upload_checkpoints()
                if captured_log() and (closing == "FINISHED" or not self._add_only):  # a refused test adds nothing
                    self.recorder.log_text(captured_log(), self._log_name)
        finally:
            if not self._add_only:
                self.experiment.set_terminated(self.run_id, closing)
            if not self.experiment.flush(force=True):
                log.warning(
                    "tracking server %s is still away: %s of run %s are kept in %s; send them with "
                    "`ml_tabular sync --run-id %s` when it is back",
                    redact_value(self._store_uri), self.experiment.spool.describe(), self.run_id,
                    self.experiment.spool.folder, self.run_id,
                )  # fmt: skip

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
