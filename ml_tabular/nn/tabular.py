"""Tabular network: numeric features (raw or embedded) and categorical embeddings, then an MLP or an ensemble."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ml_tabular.nn.embeddings import CategoricalEmbeddings
from ml_tabular.nn.ensemble import EnsembleMLP
from ml_tabular.nn.mlp import MLP, Activation, Norm
from ml_tabular.nn.numeric import PeriodicEmbeddings

NumericEmbedding = Literal["none", "periodic"]


class TabularNet(nn.Module):
    """Maps ``x_num [B, n_numeric]`` and ``x_cat [B, n_cat]`` to ``[B, ensemble_size, out_dim]``.

    Args:
        n_numeric: Width of the numeric input.
        cardinalities: Codes per categorical column.
        out_dim: Output width (classes, or 1 for regression).
        hidden_dims: Hidden layer widths.
        dropout: Dropout after each hidden layer.
        norm: Normalisation after each hidden linear layer.
        activation: Hidden activation.
        embedding_dims: Embedding width per categorical column (default ``min(50, (card + 1) // 2)``).
        numeric_embedding: ``periodic`` embeds each numeric feature (:class:`PeriodicEmbeddings`); ``none`` feeds
            it as is.
        numeric_embedding_dim: Width of each numeric feature's embedding.
        ensemble_size: Members of a BatchEnsemble MLP (1: a plain MLP).
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
        numeric_embedding: NumericEmbedding = "none",
        numeric_embedding_dim: int = 16,
        ensemble_size: int = 1,
    ) -> None:
        super().__init__()
        self.embeddings = CategoricalEmbeddings(cardinalities, embedding_dims)
        periodic = numeric_embedding == "periodic" and n_numeric > 0
        self.numeric = PeriodicEmbeddings(n_numeric, numeric_embedding_dim) if periodic else nn.Identity()
        in_dim = (self.numeric.out_dim if periodic else n_numeric) + self.embeddings.out_dim
        if ensemble_size > 1:
            self.mlp: nn.Module = EnsembleMLP(in_dim, hidden_dims, out_dim, ensemble_size, dropout, norm, activation)
        else:
            self.mlp = MLP(in_dim, hidden_dims, out_dim, dropout, norm, activation)

    def forward(self, x_num: Tensor, x_cat: Tensor) -> Tensor:
        # [B, numeric width] ++ [B, sum(embedding dims)] -> [B, in_dim] -> [B, k, out_dim]
        out = self.mlp(torch.cat([self.numeric(x_num), self.embeddings(x_cat)], dim=1))
        return out if out.dim() == 3 else out.unsqueeze(1)
