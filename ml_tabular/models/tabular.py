"""``TabularMLP``: classification or regression on preprocessed table rows."""

from __future__ import annotations

from typing import Literal

import torch
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
from ml_tabular.models.base import Batch, LRSchedule, MLPSystem, check_hparams
from ml_tabular.nn import TabularNet
from ml_tabular.nn.tabular import NumericEmbedding


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
        numeric_embedding: ``periodic`` turns each numeric feature into a vector of trainable sin/cos features
            (Gorishniy et al. 2022; helps where a target depends on a feature irregularly); ``none`` feeds it raw.
        numeric_embedding_dim: Width of each numeric feature's embedding.
        ensemble_size: Members of a parameter-efficient ensemble (BatchEnsemble MLPs, as in TabM); each is
            trained on every batch and the prediction is their mean. 1: a single MLP.
        target_transform: How the regression target was transformed before scaling: ``log1p`` trains on
            ``log(1 + y)`` (skewed positive targets) and predicts on the original scale (linked).
        lr: AdamW learning rate (the peak rate under a schedule).
        weight_decay: AdamW weight decay.
        lr_schedule: ``constant``, or ``warmup_cosine``: linear warm-up over the first 10 % of the training steps,
            then cosine decay to 0 (needs ``trainer.max_epochs``).
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
        numeric_embedding: NumericEmbedding = "none",
        numeric_embedding_dim: int = 16,
        ensemble_size: int = 1,
        target_transform: Literal["none", "log1p"] = "none",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_schedule: LRSchedule = "constant",
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        check_hparams(hidden_dims, dropout, lr, weight_decay, embedding_dims)
        for key, value in {"numeric_embedding_dim": numeric_embedding_dim, "ensemble_size": ensemble_size}.items():
            if value < 1:
                raise ModelError(f"model.init_args.{key} must be >= 1, got {value}.")
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
            n_numeric, cardinalities, n_outputs, hidden_dims, dropout, norm, activation, embedding_dims,
            numeric_embedding, numeric_embedding_dim, ensemble_size,
        )  # fmt: skip
        self.loss_fn: nn.Module = nn.CrossEntropyLoss() if task == "classification" else nn.MSELoss()
        metrics = _classification_metrics(n_outputs) if task == "classification" else _regression_metrics()
        self._init_metrics(metrics)

    def forward(self, x_num: Tensor, x_cat: Tensor) -> Tensor:
        """Per ensemble member: logits ``[B, k, n_classes]`` (classification) or standardised values ``[B, k, 1]``."""
        return self.net(x_num, x_cat)

    def loss_and_output(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """The members' mean loss (each member learns from the whole batch) and their outputs ``[B, k, out]``."""
        out = self(batch["x_num"], batch["x_cat"])
        k = out.shape[1]
        if self.hparams.task == "classification":
            loss = self.loss_fn(out.flatten(0, 1), batch["y"].repeat_interleave(k))  # [B*k, C] vs [B*k]
        else:
            loss = self.loss_fn(out.squeeze(2), batch["y"].unsqueeze(1).expand(-1, k))  # [B, k] vs [B, k]
        return loss, out

    def combine(self, output: Tensor) -> Tensor:
        """The ensemble's prediction from ``[B, k, out]``: mean class probabilities ``[B, C]``, or the mean
        standardised value ``[B]``."""
        if self.hparams.task == "classification":
            return output.softmax(dim=2).mean(dim=1)
        return output.squeeze(2).mean(dim=1)

    def metric_inputs(self, output: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
        """Probabilities (of class 1 when binary) and class indices, or values on the original scale."""
        combined = self.combine(output)
        if self.hparams.task == "classification":
            return (combined[:, 1] if self.hparams.n_outputs == 2 else combined), batch["y"]
        return self.unscale(combined), self.unscale(batch["y"])

    def unscale(self, values: Tensor) -> Tensor:
        """Standardised (and transformed) target values -> the original scale."""
        values = values * self.hparams.target_std + self.hparams.target_mean
        return torch.expm1(values) if self.hparams.target_transform == "log1p" else values

    def predict_step(self, batch: Batch, batch_idx: int) -> Tensor:
        """Class probabilities ``[B, n_classes]``, or predictions ``[B]`` on the original scale."""
        combined = self.combine(self(batch["x_num"], batch["x_cat"]))
        return combined if self.hparams.task == "classification" else self.unscale(combined)


__all__ = ["TabularMLP"]
