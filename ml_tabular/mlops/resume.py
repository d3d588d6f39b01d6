"""Which MLflow run a checkpoint's ``fit`` or ``test`` writes to, decided before any run is touched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ml_tabular.checkpoint import CheckpointInfo

SOURCE_RUN_TAG = "source_run_id"
SOURCE_EPOCH_TAG = "source_epoch"
SOURCE_CHECKPOINT_TAG = "source_checkpoint"
# Lightning sends an epoch's training metrics after its checkpoints are saved, so the last train_loss step is the
# last epoch with a checkpoint; validation metrics come before, and may belong to an epoch cut short by a signal.
COMPLETED_EPOCH_METRIC = "train_loss"
FALLBACK_EPOCH_METRICS = ("val_loss", "epoch")


@dataclass
class RunChoice:
    """The run to write to: ``run_id`` to continue or add to, else a new run carrying ``tags``; ``message`` says so."""

    run_id: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    message: str = ""


def _source_tags(info: CheckpointInfo) -> dict[str, str]:
    tags = {SOURCE_EPOCH_TAG: str(info.epoch), SOURCE_CHECKPOINT_TAG: str(info.path.resolve())}
    return tags | ({SOURCE_RUN_TAG: info.run_id} if info.run_id else {})


def _live_run(client: Any, run_id: str) -> Any | None:
    """The run ``run_id`` in this store, or ``None`` if it is not there (another store) or deleted."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        return None
    return None if run.info.lifecycle_stage == "deleted" else run


def last_logged_epoch(client: Any, run_id: str) -> int | None:
    """The last epoch index the run completed, as its epoch metrics show (``None`` before any)."""
    for keys in ((COMPLETED_EPOCH_METRIC,), FALLBACK_EPOCH_METRICS):
        steps = [m.step for key in keys for m in client.get_metric_history(run_id, key)]
        if steps:
            return max(steps)
    return None


def choose_run(client: Any, info: CheckpointInfo, subcommand: str) -> RunChoice:
    """``test`` adds to the run that made the checkpoint; ``fit`` continues it from its last epoch, and starts a
    new run tagged with the source (run id, epoch, file) from an earlier epoch, so no history is rewritten."""
    run = _live_run(client, info.run_id) if info.run_id else None
    where = f"run {info.run_id}" if info.run_id else "no run (made without tracking)"
    if run is None:
        gone = f"run {info.run_id} is not in this tracking store" if info.run_id else "it was made without tracking"
        return RunChoice(tags=_source_tags(info), message=f"checkpoint epoch {info.epoch}: {gone}; starting a new run")
    if subcommand != "fit":
        return RunChoice(run.info.run_id, message=f"{subcommand}: adding its metrics and log to {where}")
    last = last_logged_epoch(client, run.info.run_id)
    if last is None or info.epoch >= last:
        return RunChoice(run.info.run_id, message=f"resuming {where} after its epoch {info.epoch}")
    return RunChoice(
        tags=_source_tags(info),
        message=(
            f"checkpoint is epoch {info.epoch} of {where}, which went on to epoch {last}: starting a new run "
            f"tagged {SOURCE_RUN_TAG}={info.run_id}, {SOURCE_EPOCH_TAG}={info.epoch} (the original stays as it is)"
        ),
    )
