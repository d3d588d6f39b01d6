"""``TimeSeriesMLP``: direct multi-horizon forecasting from a flattened input window."""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import Tensor, nn
from torchmetrics import (
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    Metric,
    MetricCollection,
    SymmetricMeanAbsolutePercentageError,
)
from torchmetrics.utilities import dim_zero_cat

from ml_tabular.models.base import Batch, LRSchedule, MLPSystem, batch_size, check_hparams
from ml_tabular.nn.series import SeriesNet

log = logging.getLogger(__name__)
_LOSSES: dict[str, type[nn.Module]] = {"mse": nn.MSELoss, "mae": nn.L1Loss, "huber": nn.HuberLoss}


class MeanAbsoluteScaledError(Metric):
    """MASE per series, averaged over the series: each series' mean absolute error over its own scale (its
    in-sample seasonal-naive error), so a long or large series weighs as much as any other.

    Errors are kept as one sum and count per series present in a batch (list states, concatenated across
    processes). A series whose scale is NaN (it has none) is left out.

    Args:
        scale: The scale of values updated without ``series``/``scale`` (all then count as one series).
    """

    full_state_update = False

    def __init__(self, scale: float = 1.0) -> None:
        super().__init__()
        self.default_scale = scale
        self.add_state("series", default=[], dist_reduce_fx="cat")
        self.add_state("error_sums", default=[], dist_reduce_fx="cat")
        self.add_state("counts", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor, target: Tensor, series: Tensor | None = None, scale: Tensor | None = None) -> None:
        """``preds``, ``target`` ``[N]``; ``series`` (int) and ``scale`` ``[N]``, each value's series and its scale."""
        if series is None or scale is None:
            series = torch.zeros(len(preds), dtype=torch.int64, device=preds.device)
            scale = torch.full_like(preds, self.default_scale)
        keep = ~torch.isnan(scale)
        ids, where = torch.unique(series[keep], return_inverse=True)
        scaled = (preds[keep] - target[keep]).abs() / scale[keep]
        self.series.append(ids)
        self.error_sums.append(
            torch.zeros(len(ids), dtype=scaled.dtype, device=scaled.device).index_add(0, where, scaled)
        )
        self.counts.append(torch.bincount(where, minlength=len(ids)))

    def compute(self) -> Tensor:
        series, sums, counts = (dim_zero_cat(s) for s in (self.series, self.error_sums, self.counts))
        n_series = int(series.max()) + 1 if len(series) else 0
        total = torch.zeros(n_series, dtype=sums.dtype, device=sums.device).index_add(0, series, sums)
        count = torch.zeros(n_series, dtype=counts.dtype, device=counts.device).index_add(0, series, counts)
        present = count > 0
        return (total[present] / count[present]).mean()


class TimeSeriesMLP(MLPSystem):
    """MLP that reads ``input_size`` steps of the target (and covariates) and predicts ``horizon`` steps.

    The first seven arguments describe the data; the CLI links them from the DataModule. ``revin`` and
    ``linear_skip`` are off by default, as in the models of older checkpoints; the shipped config chooses.

    Args:
        input_size: Past steps in a window (linked).
        horizon: Future steps predicted at once (linked).
        n_channels: Values per step: the target plus each covariate (linked).
        n_calendar: Calendar values per forecast step (linked; 0: none).
        target_mean: Training target mean, to report metrics on the original scale (linked).
        target_std: Training target std (linked).
        mase_scale: Pooled in-sample seasonal-naive MAE of the training data (linked): MASE's scale for batches
            that do not carry each series' own (``mase_scale`` and ``series`` keys).
        hidden_dims: Hidden layer widths.
        dropout: Dropout probability after each hidden layer.
        norm: Normalisation after each hidden linear layer: ``none``, ``batch`` or ``layer``.
        activation: Hidden activation.
        revin: Normalise the target of each input window by its own mean and std and map the forecast back
            (RevIN, Kim et al. 2022): the network sees shapes, not levels.
        revin_affine: With ``revin``, learn a scale and bias of the normalised target.
        linear_skip: Add a linear map of the MLP's inputs (window and calendar) to its output (NLinear/DLinear,
            Zeng et al. 2023): ``trained`` with the MLP from a random start; ``least_squares`` first set to the
            ridge regression on the training windows (before the first step), so training starts from a linear
            autoregression and the MLP learns what it misses; ``none``.
        loss: Training loss on the standardised target: ``mse``, ``mae`` or ``huber``.
        lr: AdamW learning rate (the peak rate under a schedule).
        weight_decay: AdamW weight decay.
        lr_schedule: ``constant``, or ``warmup_cosine``: linear warm-up over the first 10 % of the training steps,
            then cosine decay to 0 (needs ``trainer.max_epochs``).
    """

    model_type = "ts_mlp"

    def __init__(
        self,
        input_size: int = 48,
        horizon: int = 12,
        n_channels: int = 1,
        n_calendar: int = 0,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        mase_scale: float = 1.0,
        hidden_dims: list[int] = [256, 128],  # noqa: B006 - read only; a list keeps the CLI help plain
        dropout: float = 0.1,
        norm: Literal["none", "batch", "layer"] = "none",
        activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu"] = "relu",
        revin: bool = False,
        revin_affine: bool = False,
        linear_skip: Literal["none", "trained", "least_squares"] = "none",
        loss: Literal["mse", "mae", "huber"] = "mse",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_schedule: LRSchedule = "constant",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_hparams(hidden_dims, dropout, lr, weight_decay)
        self.net = SeriesNet(
            input_size, horizon, n_channels, n_calendar, hidden_dims, dropout, norm, activation,
            revin, revin_affine, linear_skip != "none",
        )  # fmt: skip
        self.loss_fn = _LOSSES[loss]()
        metrics = MetricCollection(
            {
                "mse": MeanSquaredError(),
                "mae": MeanAbsoluteError(),
                "mape": MeanAbsolutePercentageError(),
                "smape": SymmetricMeanAbsolutePercentageError(),
                "mase": MeanAbsoluteScaledError(mase_scale),
            }
        )
        self._init_metrics(metrics)

    def forward(self, x: Tensor, calendar: Tensor | None = None) -> Tensor:
        """Standardised forecasts ``[B, horizon]`` from windows ``x [B, input_size, n_channels]`` and the calendar
        features of the forecast steps ``[B, horizon, n_calendar]``."""
        return self.net(x, calendar)

    def unscale(self, values: Tensor) -> Tensor:
        """Standardised target values -> the original scale."""
        return values * self.hparams.target_std + self.hparams.target_mean

    def loss_and_output(self, batch: Batch) -> tuple[Tensor, Tensor]:
        out = self(batch["x"], batch.get("calendar"))
        return self.loss_fn(out, batch["y"]), out

    def metric_inputs(self, output: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
        """Forecasts and actuals on the original scale, every horizon step counted: ``[B, H] -> [B*H]``."""
        return self.unscale(output).reshape(-1), self.unscale(batch["y"]).reshape(-1)

    def _evaluation_step(self, batch: Batch, stage: str) -> None:
        """The shared step, with each value's series and MASE scale passed to the metrics (MASE reads them)."""
        loss, preds, target = self.compute(batch)
        self.losses[f"{stage}_loss"].update(loss, weight=batch_size(batch))
        extra = {}
        if "series" in batch:  # each window's -> each value's: [B] -> [B*H], as metric_inputs lays values out
            horizon = batch["y"].shape[1]
            extra = {
                "series": batch["series"].repeat_interleave(horizon),
                "scale": batch["mase_scale"].repeat_interleave(horizon),
            }
        self.metrics[f"{stage}_metrics"].update(preds, target, **extra)

    def on_train_start(self) -> None:
        """With ``linear_skip: least_squares``, fit the linear path on the training windows before the first step;
        a run resumed or branched from a checkpoint keeps its weights."""
        if self.hparams.linear_skip != "least_squares" or self.trainer.ckpt_path is not None:
            return
        batches = ((batch["x"], batch.get("calendar"), batch["y"]) for batch in self.trainer.train_dataloader)
        strategy = self.trainer.strategy  # on several processes, every copy must solve the same sums
        count = self.net.fit_linear(batches, total=lambda sums: strategy.reduce(sums, reduce_op="sum"))
        if self.trainer.is_global_zero:
            log.info("model: linear path fitted by least squares on %d training windows", count)

    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Forecasts ``[B, horizon]`` on the original scale."""
        return self.unscale(self(batch["x"], batch.get("calendar")))
