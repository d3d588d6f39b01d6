"""``ml_tabular fit`` as a user runs it, a plain PyTorch loop doing the same math interleaved with it step by step.

A fit here is :class:`ml_tabular.cli.MLTabularCLI` on a shipped config (``configs/tabular.yaml`` or
``configs/timeseries.yaml``) with the benchmark's sizes as command-line overrides, run in this process on
the default tracking store of the working directory: the Trainer, its callbacks (checkpoint, progress bar,
MLflow run, plots) and its logger are the ones the command builds. Validation is off, since training is
what is timed, and so is the config's early stopping, which needs validation.

This machine's speed drifts by 10 % and more within seconds, so the plain loop gets no run of its own: one of
its steps runs after every Lightning step (outside the Lightning epoch's timing), and each Lightning epoch is
compared with the plain steps interleaved with it.
"""

from __future__ import annotations

import contextlib
import copy
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from bench.systems import BATCH_SIZE, HORIZON, INPUT_SIZE, LR, EpochTimer
from ml_tabular.cli import MLTabularCLI
from ml_tabular.data import TimeSeriesDataModule
from ml_tabular.data.calendar import calendar_features, window_times
from ml_tabular.mlops.tracking import default_tracking_uri

REPO = Path(__file__).resolve().parents[2]
DATA_FLAGS = {
    "tabular": [
        f"--config={REPO / 'configs' / 'tabular.yaml'}",
        "--data.init_args.target=y",
        "--data.init_args.task=classification",
        "--data.init_args.categorical_columns=null",
        "--data.init_args.drop_columns=[]",
        "--data.init_args.val_fraction=0.15",
        "--data.init_args.test_fraction=0.15",
    ],
    "series": [
        f"--config={REPO / 'configs' / 'timeseries.yaml'}",
        "--data.init_args.target=value",
        "--data.init_args.timestamp_column=timestamp",
        "--data.init_args.feature_columns=null",
        f"--data.init_args.input_size={INPUT_SIZE}",
        f"--data.init_args.horizon={HORIZON}",
    ],
}


def fit_args(
    kind: Literal["tabular", "series"], path: Path, epochs: int, tracked: bool, hidden: list[int]
) -> list[str]:
    """``ml_tabular fit`` arguments: the shipped config of ``kind`` on ``path``, benchmark sizes, no validation."""
    return [
        "fit",
        *DATA_FLAGS[kind],
        f"--data.init_args.path={path}",
        f"--data.init_args.batch_size={BATCH_SIZE}",
        f"--model.init_args.hidden_dims={hidden}",
        "--model.init_args.dropout=0.0",
        "--model.init_args.norm=none",
        f"--model.init_args.lr={LR}",
        "--model.init_args.weight_decay=0.0",
        f"--trainer.max_epochs={epochs}",
        "--trainer.limit_val_batches=0",
        "--trainer.num_sanity_val_steps=0",
        "--trainer.callbacks=[{class_path: bench.paired.PairedSteps}]",  # in place of early stopping
        "--checkpoint.monitor=train_loss",
        "--checkpoint.filename={epoch}-{train_loss:.4f}",
        f"--mlflow.enabled={str(tracked).lower()}",
        f"--mlflow.tracking_uri={default_tracking_uri()}",
    ]


def run_fit(args: list[str]) -> PairedSteps:
    """Run ``ml_tabular fit`` with ``args`` in this process, its progress bar and warnings silenced; its timer."""
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        cli = MLTabularCLI(args=args)
    return next(c for c in cli.trainer.callbacks if isinstance(c, PairedSteps))


class PlainLoop:
    """A hand-written training loop, one step at a time: a shuffled order, ``loss_of(batch index)``, backward, AdamW.

    Args:
        net: The network trained.
        loss_of: Loss of the batch made of the given training examples.
        count: Training examples.
        batch_size: Examples per step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
    """

    def __init__(
        self,
        net: nn.Module,
        loss_of: Callable[[Tensor], Tensor],
        count: int,
        batch_size: int,
        lr: float,
        weight_decay: float,
    ) -> None:
        self.net, self.loss_of, self.count, self.batch_size = net.train(), loss_of, count, batch_size
        self.optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
        self.generator = torch.Generator().manual_seed(0)
        self._order, self._next = torch.empty(0, dtype=torch.long), count

    def step(self) -> float:
        """Train on the next ``batch_size`` examples of the order (a new order each epoch); its wall time in seconds."""
        start = time.perf_counter()
        if self._next >= self.count:
            self._order, self._next = torch.randperm(self.count, generator=self.generator), 0
        loss = self.loss_of(self._order[self._next : self._next + self.batch_size])
        self._next += self.batch_size
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - start


def plain_loop(model: pl.LightningModule, dm: pl.LightningDataModule) -> PlainLoop:
    """The model's math without Lightning: a copy of its network and its loss, on the DataModule's training tensors."""
    net, loss_fn, hparams = copy.deepcopy(model.net), model.loss_fn, model.hparams
    if isinstance(dm, TimeSeriesDataModule):
        names = dm.state.calendar
        view = dm.values.unfold(0, dm.input_size + dm.horizon, 1)  # [T - W + 1, C, W], no copy
        starts = dm.starts["train"]

        def loss_of(index: Tensor) -> Tensor:
            begin = starts[index]
            window = view[begin]  # [B, C, W]
            calendar = None
            if names:  # the forecast steps' calendar features, from each window's first time and its series' step
                step = dm.series_steps[torch.searchsorted(dm.offsets, begin, right=True) - 1]
                times = window_times(dm.stamps[begin] + dm.input_size * step, step, dm.horizon)
                calendar = calendar_features(times, names, dm.unit)  # [B, H, K]
            x = window[:, :, : dm.input_size].transpose(1, 2)  # [B, C, L] -> [B, L, C]
            return loss_fn(net(x, calendar), window[:, 0, dm.input_size :])

        return PlainLoop(net, loss_of, len(starts), dm.batch_size, hparams.lr, hparams.weight_decay)

    train = dm.splits["train"]
    x_num, x_cat, y = train["x_num"], train["x_cat"], train["y"]

    def loss_of(index: Tensor) -> Tensor:
        out = net(x_num[index], x_cat[index])
        return loss_fn(out.squeeze(1) if out.shape[1] == 1 else out, y[index])

    return PlainLoop(net, loss_of, len(y), dm.batch_size, hparams.lr, hparams.weight_decay)


class PairedSteps(EpochTimer):
    """An :class:`EpochTimer` that trains one step of :func:`plain_loop` after every training step, outside the
    epoch's timing: ``plain`` holds the plain seconds of each epoch, ``examples`` the training examples."""

    def __init__(self) -> None:
        super().__init__()
        self.plain: list[float] = []
        self.examples = 0
        self._loop: PlainLoop | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        self._loop = plain_loop(pl_module, trainer.datamodule)  # a copy of the network before any training
        self.examples = self._loop.count

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self.plain.append(0.0)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: object) -> None:
        assert self._loop is not None and self._start is not None
        seconds = self._loop.step()
        self.plain[-1] += seconds
        self._start += seconds  # the epoch's clock does not count the plain step
