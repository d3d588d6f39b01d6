"""Embeddings of numeric features: each scalar becomes a vector (Gorishniy et al. 2022, "On Embeddings for
Numerical Features in Tabular Deep Learning")."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PeriodicEmbeddings(nn.Module):
    """PLR embeddings: ``x -> ReLU(Linear([cos(2 pi c x), sin(2 pi c x)]))`` with trainable frequencies ``c``,
    a separate linear map per feature.

    Args:
        n_features: Numeric features embedded.
        dim: Output width per feature.
        n_frequencies: Frequencies per feature.
        sigma: Standard deviation of the initial frequencies (inputs are standardised: ~0.1 to 1).
    """

    def __init__(self, n_features: int, dim: int = 16, n_frequencies: int = 16, sigma: float = 0.1) -> None:
        super().__init__()
        self.frequencies = nn.Parameter(torch.randn(n_features, n_frequencies) * sigma)
        bound = 1 / math.sqrt(2 * n_frequencies)  # nn.Linear's default initialisation, per feature
        self.weight = nn.Parameter(torch.empty(n_features, 2 * n_frequencies, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_features, dim).uniform_(-bound, bound))
        self.out_dim = n_features * dim

    def forward(self, x: Tensor) -> Tensor:
        angles = 2 * math.pi * x.unsqueeze(-1) * self.frequencies  # [B, F] -> [B, F, K]
        periodic = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)  # [B, F, 2K]
        out = torch.einsum("bfk,fkd->bfd", periodic, self.weight) + self.bias  # [B, F, D]
        return torch.relu(out).flatten(1)  # [B, F * D]
