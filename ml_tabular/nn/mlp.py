"""A feed-forward stack: Linear -> norm -> activation -> dropout, then a linear head."""

from __future__ import annotations

from typing import Literal

from torch import Tensor, nn

Norm = Literal["none", "batch", "layer"]
Activation = Literal["relu", "gelu", "silu", "tanh", "leaky_relu"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
}


def _norm_layer(norm: Norm, width: int) -> nn.Module:
    if norm == "batch":
        return nn.BatchNorm1d(width)
    if norm == "layer":
        return nn.LayerNorm(width)
    return nn.Identity()


class MLP(nn.Module):
    """Multi-layer perceptron mapping ``[B, in_dim]`` to ``[B, out_dim]``.

    Args:
        in_dim: Input width.
        hidden_dims: Width of each hidden layer, in order.
        out_dim: Output width.
        dropout: Dropout probability after each hidden activation.
        norm: Normalisation after each hidden linear layer.
        activation: Hidden activation function.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dims: list[int],
        out_dim: int,
        dropout: float = 0.0,
        norm: Norm = "none",
        activation: Activation = "relu",
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for hidden in hidden_dims:
            layers += [nn.Linear(width, hidden), _norm_layer(norm, hidden), ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
