"""``TimeSeriesMLP``: direct multi-horizon forecasting from a flattened input window."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn
from torchmetrics import (
    MeanAbsoluteError,
    MeanAbsolutePercentageError,
    MeanSquaredError,
    MetricCollection,
    SymmetricMeanAbsolutePercentageError,
)

from ml_tabular.models.base import Batch, MLPSystem, check_hparams
from ml_tabular.nn import MLP

_LOSSES: dict[str, type[nn.Module]] = {"mse": nn.MSELoss, "mae": nn.L1Loss, "huber": nn.HuberLoss}


class MeanAbsoluteScaledError(MeanAbsoluteError):
    """MASE: mean absolute error divided by a fixed scale (the in-sample seasonal-naive MAE)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def compute(self) -> Tensor:
        return super().compute() / self.scale


class TimeSeriesMLP(MLPSystem):
    """MLP that reads ``input_size`` steps of the target (and covariates) and predicts ``horizon`` steps.

    The first five arguments describe the data; the CLI links them from the DataModule.

    Args:
        input_size: Past steps in a window (linked).
        horizon: Future steps predicted at once (linked).
        n_channels: Values per step: the target plus each covariate (linked).
        target_mean: Training target mean, to report metrics on the original scale (linked).
        target_std: Training target std (linked).
        mase_scale: In-sample seasonal-naive MAE of the training data, MASE's denominator (linked).
        hidden_dims: Hidden layer widths.
        dropout: Dropout probability after each hidden layer.
        norm: Normalisation after each hidden linear layer: ``none``, ``batch`` or ``layer``.
        activation: Hidden activation.
        loss: Training loss on the standardised target: ``mse``, ``mae`` or ``huber``.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
    """

    model_type = "ts_mlp"

    def __init__(
        self,
        input_size: int = 48,
        horizon: int = 12,
        n_channels: int = 1,
        target_mean: float = 0.0,
        target_std: float = 1.0,
        mase_scale: float = 1.0,
        hidden_dims: list[int] = [256, 128],  # noqa: B006 - read only; a list keeps the CLI help plain
        dropout: float = 0.1,
        norm: Literal["none", "batch", "layer"] = "none",
        activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu"] = "relu",
        loss: Literal["mse", "mae", "huber"] = "mse",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_hparams(hidden_dims, dropout, lr, weight_decay)
        self.net = MLP(input_size * n_channels, hidden_dims, horizon, dropout, norm, activation)
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

    def forward(self, x: Tensor) -> Tensor:
        """Standardised forecasts ``[B, horizon]`` from windows ``x [B, input_size, n_channels]``."""
        return self.net(x.reshape(x.shape[0], -1))  # [B, L, C] -> [B, L*C]

    def unscale(self, values: Tensor) -> Tensor:
        """Standardised target values -> the original scale."""
        return values * self.hparams.target_std + self.hparams.target_mean

    def loss_and_output(self, batch: Batch) -> tuple[Tensor, Tensor]:
        out = self(batch["x"])
        return self.loss_fn(out, batch["y"]), out

    def metric_inputs(self, output: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
        """Forecasts and actuals on the original scale, every horizon step counted: ``[B, H] -> [B*H]``."""
        return self.unscale(output).reshape(-1), self.unscale(batch["y"]).reshape(-1)

    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Forecasts ``[B, horizon]`` on the original scale."""
        return self.unscale(self(batch["x"]))
