"""Embeddings for integer-coded categorical columns."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def embedding_dim(cardinality: int) -> int:
    """Default embedding width for a column with ``cardinality`` codes: ``min(50, (card + 1) // 2)``."""
    return min(50, (cardinality + 1) // 2)


class CategoricalEmbeddings(nn.Module):
    """One embedding table per categorical column, outputs concatenated.

    Args:
        cardinalities: Number of codes per column, the reserved missing/unseen code 0 included.
        dims: Embedding width per column; ``None`` applies :func:`embedding_dim` to each.
    """

    def __init__(self, cardinalities: list[int], dims: list[int] | None = None) -> None:
        super().__init__()
        dims = dims if dims is not None else [embedding_dim(c) for c in cardinalities]
        if len(dims) != len(cardinalities):
            raise ValueError(f"{len(dims)} embedding dims given for {len(cardinalities)} categorical columns")
        self.tables = nn.ModuleList(nn.Embedding(c, d) for c, d in zip(cardinalities, dims, strict=True))
        self.out_dim = sum(dims)

    def forward(self, codes: Tensor) -> Tensor:
        # [B, n_categorical] int64 -> [B, sum(dims)]
        if not self.tables:
            return codes.new_zeros((codes.shape[0], 0), dtype=torch.float32)
        return torch.cat([table(codes[:, i]) for i, table in enumerate(self.tables)], dim=1)
