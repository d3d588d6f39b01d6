"""Callbacks that tie a training run to its MLflow run."""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from ml_tabular.checkpoint import RUN_ID_KEY
from ml_tabular.mlops.logger import MLTabularLogger


def _mlflow_loggers(trainer: pl.Trainer) -> list[MLTabularLogger]:
    """The trainer's MLflow loggers on global rank zero; none on other ranks (under DDP only rank zero writes)."""
    if not trainer.is_global_zero:
        return []
    return [logger for logger in trainer.loggers if isinstance(logger, MLTabularLogger)]


class MlflowRunCallback(Callback):
    """Ties training to its MLflow run: logs the training table as a dataset input of a new run, writes the run
    id into every checkpoint (so ``--ckpt_path`` finds the run again), and closes the run as KILLED on Ctrl-C or
    SIGTERM or FAILED on an error, uploading the checkpoints it has."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        data = trainer.datamodule
        if getattr(data, "table_head", None) is None:
            return  # not one of ours
        for logger in _mlflow_loggers(trainer):
            if not logger.continues_run:  # a resumed run already has its input
                logger.recorder.log_dataset(data.dataset_name, data.path, data.table_head, data.table_rows, data.target)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        for logger in _mlflow_loggers(trainer):
            checkpoint[RUN_ID_KEY] = logger.run_id

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        status = "killed" if isinstance(exception, KeyboardInterrupt) else "failed"  # SIGTERM arrives as one too
        for logger in _mlflow_loggers(trainer):
            logger.finalize(status)
