"""``TabularMLP``: classification or regression on preprocessed table rows."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn
from torchmetrics import (
    AUROC,
    Accuracy,
    F1Score,
    MeanAbsoluteError,
    MeanSquaredError,
    MetricCollection,
    R2Score,
)

from ml_tabular.errors import ModelError
from ml_tabular.models.base import Batch, MLPSystem, check_hparams
from ml_tabular.nn import TabularNet


def _classification_metrics(n_classes: int) -> MetricCollection:
    kwargs = {"task": "binary"} if n_classes == 2 else {"task": "multiclass", "num_classes": n_classes}
    return MetricCollection(
        {
            "accuracy": Accuracy(**kwargs),
            "f1": F1Score(**kwargs, **({} if n_classes == 2 else {"average": "macro"})),
            "auroc": AUROC(**kwargs),
        }
    )


def _regression_metrics() -> MetricCollection:
    return MetricCollection({"rmse": MeanSquaredError(squared=False), "mae": MeanAbsoluteError(), "r2": R2Score()})


class TabularMLP(MLPSystem):
    """MLP over numeric features and categorical embeddings.

    The first six arguments describe the data; the CLI links them from the DataModule.

    Args:
        n_numeric: Width of the numeric input (linked).
        cardinalities: Codes per categorical column (linked).
        n_outputs: Number of classes, or 1 for regression (linked).
        task: ``classification`` (cross-entropy) or ``regression`` (MSE on the standardised target) (linked).
        target_mean: Training target mean, to report regression metrics on the original scale (linked).
        target_std: Training target std (linked).
        hidden_dims: Hidden layer widths.
        dropout: Dropout probability after each hidden layer.
        norm: Normalisation after each hidden linear layer: ``none``, ``batch`` or ``layer``.
        activation: Hidden activation.
        embedding_dims: Embedding width per categorical column; ``null`` uses ``min(50, (card + 1) // 2)``.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
    """

    model_type = "tabular_mlp"

    def __init__(
        self,
        n_numeric: int = 0,
        cardinalities: list[int] | None = None,
        n_outputs: int = 1,
        task: Literal["classification", "regression"] = "regression",
        target_mean: float = 0.0,
        target_std: float = 1.0,
        hidden_dims: list[int] = [256, 128],  # noqa: B006 - read only; a list keeps the CLI help plain
        dropout: float = 0.1,
        norm: Literal["none", "batch", "layer"] = "none",
        activation: Literal["relu", "gelu", "silu", "tanh", "leaky_relu"] = "relu",
        embedding_dims: list[int] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_hparams(hidden_dims, dropout, lr, weight_decay, embedding_dims)
        cardinalities = cardinalities or []
        if task == "classification" and n_outputs < 2:
            raise ModelError(f"classification needs n_outputs >= 2 classes, got {n_outputs}.")
        if n_numeric + len(cardinalities) == 0:
            raise ModelError("TabularMLP has no inputs: n_numeric is 0 and there are no categorical columns.")
        if embedding_dims is not None and len(embedding_dims) != len(cardinalities):
            raise ModelError(
                f"model.init_args.embedding_dims has {len(embedding_dims)} entries for "
                f"{len(cardinalities)} categorical columns; give one per column or null."
            )
        self.net = TabularNet(
            n_numeric, cardinalities, n_outputs, hidden_dims, dropout, norm, activation, embedding_dims
        )
        self.loss_fn: nn.Module = nn.CrossEntropyLoss() if task == "classification" else nn.MSELoss()
        metrics = _classification_metrics(n_outputs) if task == "classification" else _regression_metrics()
        self._init_metrics(metrics)

    def forward(self, x_num: Tensor, x_cat: Tensor) -> Tensor:
        """Logits ``[B, n_classes]`` (classification) or standardised values ``[B, 1]`` (regression)."""
        return self.net(x_num, x_cat)

    def loss_and_output(self, batch: Batch) -> tuple[Tensor, Tensor]:
        out = self(batch["x_num"], batch["x_cat"])
        if self.hparams.task == "regression":
            out = out.squeeze(1)
        return self.loss_fn(out, batch["y"]), out

    def metric_inputs(self, output: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
        """Probabilities (of class 1 when binary) and class indices, or values on the original scale."""
        if self.hparams.task == "classification":
            probs = output.softmax(dim=1)
            return (probs[:, 1] if self.hparams.n_outputs == 2 else probs), batch["y"]
        return self.unscale(output), self.unscale(batch["y"])

    def unscale(self, values: Tensor) -> Tensor:
        """Standardised target values -> the original scale."""
        return values * self.hparams.target_std + self.hparams.target_mean

    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Class probabilities ``[B, n_classes]``, or predictions ``[B]`` on the original scale."""
        out = self(batch["x_num"], batch["x_cat"])
        if self.hparams.task == "classification":
            return out.softmax(dim=1)
        return self.unscale(out.squeeze(1))


__all__ = ["TabularMLP"]
