"""The systems under test (ml_tabular's DataModules, models and Trainer) and the plain PyTorch loops they face."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from ml_tabular.data import TabularDataModule, TimeSeriesDataModule
from ml_tabular.models import TabularMLP, TimeSeriesMLP
from ml_tabular.nn import MLP, TabularNet

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


def series_system(dm: TimeSeriesDataModule) -> TimeSeriesMLP:
    torch.manual_seed(0)
    return TimeSeriesMLP(
        input_size=dm.input_size,
        horizon=dm.horizon,
        n_channels=dm.n_channels,
        target_mean=dm.target_mean,
        target_std=dm.target_std,
        mase_scale=dm.mase_scale,
        hidden_dims=SERIES_HIDDEN,
        dropout=0.0,
        norm="none",
        lr=LR,
    )


class TrackingClock:
    """Wall time spent inside a logger's calls, measured by wrapping them on the instance."""

    METHODS = ("log_hyperparams", "log_metrics", "save")

    def __init__(self, logger: pl.loggers.Logger) -> None:
        self.seconds = 0.0
        for name in self.METHODS:
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
    part of the whole epoch spent in the logger (``tracking``, when a :class:`TrackingClock` is given)."""

    def __init__(self, clock: TrackingClock | None = None) -> None:
        self.body: list[float] = []
        self.whole: list[float] = []
        self.tracking: list[float] = []
        self._clock = clock
        self._start: float | None = None
        self._tracked_before = 0.0

    def _tracked(self) -> float:
        return self._clock.seconds if self._clock is not None else 0.0

    def _close(self) -> None:
        if self._start is not None:
            self.whole.append(time.perf_counter() - self._start)
            self.tracking.append(self._tracked() - self._tracked_before)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()
        self._start, self._tracked_before = time.perf_counter(), self._tracked()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self._start is not None
        self.body.append(time.perf_counter() - self._start)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()  # the last epoch's end-of-epoch logging has run by now
        self._start = None


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
    timer = EpochTimer(TrackingClock(logger) if isinstance(logger, pl.loggers.Logger) else None)
    trainer(epochs, logger, root, [timer]).fit(system, datamodule=dm)
    return timer


def plain_epochs(
    net: nn.Module, loss_of: Callable[[Tensor], Tensor], count: int, epochs: int, seed: int = 0
) -> list[float]:
    """Train ``net`` with AdamW for ``epochs`` shuffled epochs of ``loss_of(index)``; seconds per epoch."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(count, generator=generator)
        for begin in range(0, count, BATCH_SIZE):
            loss = loss_of(order[begin : begin + BATCH_SIZE])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    return seconds


def plain_tabular(dm: TabularDataModule, epochs: int, hidden: list[int] = TABULAR_HIDDEN) -> list[float]:
    """The tabular math without Lightning: same network, same tensors, index slicing per batch."""
    train = dm.splits["train"]
    x_num, x_cat, y = train["x_num"], train["x_cat"], train["y"]
    torch.manual_seed(0)
    net = TabularNet(dm.n_numeric, dm.cardinalities, dm.n_outputs, hidden, dropout=0.0, norm="none")

    def loss_of(index: Tensor) -> Tensor:
        return nn.functional.cross_entropy(net(x_num[index], x_cat[index]), y[index])

    return plain_epochs(net, loss_of, len(y), epochs)


def plain_series(dm: TimeSeriesDataModule, epochs: int) -> list[float]:
    """The forecasting math without Lightning: windows gathered from ``unfold`` at the train starts."""
    assert dm.values is not None
    width = INPUT_SIZE + HORIZON
    view = dm.values.unfold(0, width, 1)  # [T - W + 1, C, W], no copy
    starts = dm.starts["train"]
    torch.manual_seed(0)
    net = MLP(INPUT_SIZE * dm.n_channels, SERIES_HIDDEN, HORIZON, dropout=0.0, norm="none")

    def loss_of(index: Tensor) -> Tensor:
        window = view[starts[index]]  # [B, C, W]
        x = window[:, :, :INPUT_SIZE].transpose(1, 2).reshape(len(index), -1)  # [B, L, C] -> [B, L*C]
        return nn.functional.mse_loss(net(x), window[:, 0, INPUT_SIZE:])

    return plain_epochs(net, loss_of, len(starts), epochs)
