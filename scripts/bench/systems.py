"""ml_tabular's DataModules, model and a bare Trainer, built directly (predict, memory and scale), and epoch timing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from ml_tabular.data import TabularDataModule, TimeSeriesDataModule
from ml_tabular.models import TabularMLP

BATCH_SIZE = 512
TABULAR_HIDDEN = [256, 256, 256]
SERIES_HIDDEN = [256, 256]
INPUT_SIZE = 168
HORIZON = 24
LR = 1e-3


def tabular_datamodule(path: Path, predict_path: Path | None = None) -> TabularDataModule:
    """The default splits (70 % of the rows train), batches of 512."""
    predict = None if predict_path is None else str(predict_path)
    return TabularDataModule(str(path), target="y", task="classification", batch_size=BATCH_SIZE, predict_path=predict)


def series_datamodule(path: Path) -> TimeSeriesDataModule:
    """The default splits (the first 70 % of the steps train), batches of 512."""
    return TimeSeriesDataModule(
        str(path), target="value", input_size=INPUT_SIZE, horizon=HORIZON, batch_size=BATCH_SIZE
    )


def tabular_system(dm: TabularDataModule, hidden: list[int] = TABULAR_HIDDEN) -> TabularMLP:
    torch.manual_seed(0)
    return TabularMLP(
        n_numeric=dm.n_numeric,
        cardinalities=dm.cardinalities,
        n_outputs=dm.n_outputs,
        task=dm.resolved_task,
        hidden_dims=hidden,
        dropout=0.0,
        norm="none",
        lr=LR,
    )


class TrackingClock:
    """Wall time spent inside a logger's calls, measured by wrapping them on the instance."""

    METHODS = ("log_hyperparams", "log_metrics", "save")

    def __init__(self, logger: pl.loggers.Logger | None = None) -> None:
        self.seconds = 0.0
        for name in self.METHODS if logger is not None else ():
            setattr(logger, name, self._timed(getattr(logger, name)))

    def _timed(self, method: Callable[..., None]) -> Callable[..., None]:
        def timed(*args: Any, **kwargs: Any) -> None:
            start = time.perf_counter()
            try:
                method(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed


class EpochTimer(Callback):
    """Wall time of each training epoch: its body, the whole epoch up to the next one's start, and the
    part of the whole epoch spent in the trainer's logger (``tracking``)."""

    def __init__(self) -> None:
        self.body: list[float] = []
        self.whole: list[float] = []
        self.tracking: list[float] = []
        self._clock = TrackingClock()
        self._start: float | None = None
        self._tracked_before = 0.0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._clock = TrackingClock(trainer.logger)

    def _close(self) -> None:
        if self._start is not None:
            self.whole.append(time.perf_counter() - self._start)
            self.tracking.append(self._clock.seconds - self._tracked_before)
            self._start = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()
        self._start, self._tracked_before = time.perf_counter(), self._clock.seconds

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self._start is not None
        self.body.append(time.perf_counter() - self._start)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()  # the last epoch's end-of-epoch logging has run by now


def make_logger(tmp: Path, name: str) -> pl.loggers.Logger:
    """An ``MLTabularLogger`` on the SQLite store in ``tmp`` (imported here: only tracked runs need MLflow)."""
    from ml_tabular.mlops.logger import MLTabularLogger

    return MLTabularLogger(
        experiment_name="benchmark",
        run_name=name,
        tracking_uri=f"sqlite:///{tmp}/mlflow.db",
        save_dir=str(tmp / "mlruns"),
    )


def trainer(
    epochs: int, logger: pl.loggers.Logger | bool, root: Path, callbacks: list[Callback], batches: int | None = None
) -> pl.Trainer:
    """The benchmark's Trainer: CPU, no validation, checkpoints or progress bar; ``batches`` per epoch if given."""
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        limit_train_batches=batches,
        default_root_dir=str(root),
    )


def fit_timed(
    system: pl.LightningModule, dm: pl.LightningDataModule, epochs: int, logger: pl.loggers.Logger | bool, root: Path
) -> EpochTimer:
    """Fit ``system`` for ``epochs`` epochs and return the epoch times (and the logger's share of them)."""
    timer = EpochTimer()
    trainer(epochs, logger, root, [timer]).fit(system, datamodule=dm)
    return timer
