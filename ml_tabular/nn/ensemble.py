"""Parameter-efficient ensembles of MLPs (BatchEnsemble, as TabM uses it: Gorishniy et al. 2024, "TabM")."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ml_tabular.nn.mlp import ACTIVATIONS, Activation, Norm


class EnsembleLinear(nn.Module):
    """``k`` linear maps sharing one weight matrix, each with its own input/output scaling and bias.

    Member ``i`` computes ``((x_i * r_i) W^T) * s_i + b_i``: ``k`` models for the price of one plus
    ``k * (in + 2 out)`` parameters.

    Args:
        in_dim: Input width.
        out_dim: Output width.
        k: Ensemble members.
        random_signs: Initialise ``r`` with random +-1 (the first layer: it makes the members differ).
    """

    def __init__(self, in_dim: int, out_dim: int, k: int, random_signs: bool = False) -> None:
        super().__init__()
        shared = nn.Linear(in_dim, out_dim)
        self.weight = nn.Parameter(shared.weight.detach().clone())
        self.bias = nn.Parameter(shared.bias.detach().repeat(k, 1))
        r = torch.ones(k, in_dim)
        if random_signs:
            r = torch.where(torch.rand(k, in_dim) < 0.5, -r, r)
        self.r = nn.Parameter(r)
        self.s = nn.Parameter(torch.ones(k, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        # [B, k, in] -> [B, k, out]
        return (x * self.r) @ self.weight.T * self.s + self.bias


class _MemberNorm(nn.Module):
    """Batch or layer normalisation over ``[B, k, width]`` (batch statistics shared by the members)."""

    def __init__(self, norm: Norm, width: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(width) if norm == "batch" else nn.LayerNorm(width)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.reshape(-1, x.shape[-1])).reshape(x.shape)  # [B, k, W] -> [B*k, W] -> back


class EnsembleMLP(nn.Module):
    """``k`` MLPs in one (BatchEnsemble layers): ``[B, in_dim]`` -> ``[B, k, out_dim]``.

    Args:
        in_dim: Input width.
        hidden_dims: Width of each hidden layer.
        out_dim: Output width of each member.
        k: Ensemble members.
        dropout: Dropout probability after each hidden activation.
        norm: Normalisation after each hidden linear layer.
        activation: Hidden activation.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: list[int],
        out_dim: int,
        k: int,
        dropout: float = 0.0,
        norm: Norm = "none",
        activation: Activation = "relu",
    ) -> None:
        super().__init__()
        self.k = k
        layers: list[nn.Module] = []
        width = in_dim
        for i, hidden in enumerate(hidden_dims):
            layers.append(EnsembleLinear(width, hidden, k, random_signs=i == 0))
            if norm != "none":
                layers.append(_MemberNorm(norm, hidden))
            layers.append(ACTIVATIONS[activation]())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(EnsembleLinear(width, out_dim, k, random_signs=not hidden_dims))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x.unsqueeze(1).expand(-1, self.k, -1))  # [B, in] -> [B, k, in] -> [B, k, out]
