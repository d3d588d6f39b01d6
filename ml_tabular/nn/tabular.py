"""Tabular network: categorical embeddings concatenated with numeric features, then an MLP."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ml_tabular.nn.embeddings import CategoricalEmbeddings
from ml_tabular.nn.mlp import MLP, Activation, Norm


class TabularNet(nn.Module):
    """Maps ``x_num [B, n_numeric]`` and ``x_cat [B, n_cat]`` to ``[B, out_dim]``.

    Args:
        n_numeric: Width of the numeric input.
        cardinalities: Codes per categorical column.
        out_dim: Output width (classes, or 1 for regression).
        hidden_dims: Hidden layer widths.
        dropout: Dropout after each hidden layer.
        norm: Normalisation after each hidden linear layer.
        activation: Hidden activation.
        embedding_dims: Embedding width per categorical column (default ``min(50, (card + 1) // 2)``).
    """

    def __init__(
        self,
        n_numeric: int,
        cardinalities: list[int],
        out_dim: int,
        hidden_dims: list[int],
        dropout: float = 0.0,
        norm: Norm = "none",
        activation: Activation = "relu",
        embedding_dims: list[int] | None = None,
    ) -> None:
        super().__init__()
        self.embeddings = CategoricalEmbeddings(cardinalities, embedding_dims)
        self.mlp = MLP(n_numeric + self.embeddings.out_dim, hidden_dims, out_dim, dropout, norm, activation)

    def forward(self, x_num: Tensor, x_cat: Tensor) -> Tensor:
        # [B, n_numeric] ++ [B, sum(embedding dims)] -> [B, in_dim]
        return self.mlp(torch.cat([x_num, self.embeddings(x_cat)], dim=1))
