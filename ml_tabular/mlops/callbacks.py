"""Callbacks that tie a training run to its MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from ml_tabular.errors import ConfigError
from ml_tabular.mlops.logger import MLTabularLogger

RUN_ID_KEY = "mlflow_run_id"


def _mlflow_loggers(trainer: pl.Trainer) -> list[MLTabularLogger]:
    return [logger for logger in trainer.loggers if isinstance(logger, MLTabularLogger)]


class MlflowRunCallback(Callback):
    """Ties training to its MLflow run: logs the training table as a dataset input, writes the run id
    into every checkpoint (so ``--ckpt_path`` resumes the same run), and closes the run as KILLED on
    Ctrl-C or FAILED on an error, uploading the checkpoints it has."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        data = trainer.datamodule
        if getattr(data, "table_head", None) is None or trainer.ckpt_path is not None:
            return  # not one of ours, or a resumed run that already has its input
        for logger in _mlflow_loggers(trainer):
            logger.recorder.log_dataset(data.dataset_name, data.path, data.table_head, data.table_rows, data.target)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        for logger in _mlflow_loggers(trainer):
            checkpoint[RUN_ID_KEY] = logger.run_id

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        status = "killed" if isinstance(exception, KeyboardInterrupt) else "failed"
        for logger in _mlflow_loggers(trainer):
            logger.finalize(status)


def run_id_from_checkpoint(ckpt_path: str) -> str | None:
    """The MLflow run id stored in a checkpoint, or ``None`` if it was made without tracking."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise ConfigError(f"--ckpt_path: checkpoint '{path}' does not exist. Pass the path of a .ckpt file.")
    try:
        checkpoint: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises a variety of unpickling errors for a file that is not a checkpoint
        raise ConfigError(f"--ckpt_path: '{path}' is not a readable Lightning checkpoint ({err}).") from err
    return checkpoint.get(RUN_ID_KEY)
