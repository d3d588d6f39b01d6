"""Forecasting network: an MLP over a window, with per-window normalisation, a linear path and calendar inputs."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from ml_tabular.nn.mlp import MLP, Activation, Norm


class RevIN(nn.Module):
    """Reversible instance normalisation (Kim et al. 2022) of one channel: each window by its own mean and std.

    ``normalise`` scales a window's values to mean 0, std 1 (then an optional learnable affine map);
    ``denormalise`` maps forecasts made on that scale back, so a level or scale shift of the input window
    shifts the forecast alike.

    Args:
        affine: Learn a scale and bias applied after normalising (and undone before denormalising).
        eps: Added to the variance, so a constant window divides by ``sqrt(eps)``, not 0.
    """

    def __init__(self, affine: bool = False, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1)) if affine else None
        self.bias = nn.Parameter(torch.zeros(1)) if affine else None

    def normalise(self, values: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``values [B, L]`` -> normalised ``[B, L]``, and each window's mean and std ``[B, 1]``."""
        mean = values.mean(dim=1, keepdim=True)
        std = (values.var(dim=1, keepdim=True, unbiased=False) + self.eps).sqrt()
        out = (values - mean) / std
        if self.weight is not None:
            out = out * self.weight + self.bias
        return out, mean, std

    def denormalise(self, values: Tensor, mean: Tensor, std: Tensor) -> Tensor:
        """Forecasts ``[B, H]`` on a window's normalised scale -> the scale of its input."""
        if self.weight is not None:
            values = (values - self.bias) / (self.weight + self.eps**2)  # as the paper's code
        return values * std + mean


class SeriesNet(MLP):
    """Maps input windows ``x [B, L, C]`` (target first) and the calendar features of the forecast steps
    ``[B, H, K]`` to forecasts ``[B, H]``: an :class:`MLP` over both, flattened, with two optional additions.

    The calendar features of the ``H`` forecast steps are known in advance (TiDE, Das et al. 2023); those of
    the input steps are not read: a window holds no gap, so they are a fixed shift of these. With ``revin``
    the target channel is normalised per window and the forecast mapped back (covariates keep their global
    scaling). With ``linear_skip`` a linear map of the same inputs is added to the MLP's output (NLinear/DLinear,
    Zeng et al. 2023): a linear autoregression on the window and the calendar, which :meth:`fit_linear` can set
    to its least-squares solution, so the MLP only has to learn what a linear model misses. Without the
    additions it is the plain :class:`MLP` (same parameter names: older checkpoints load).

    Args:
        input_size: Past steps in a window (``L``).
        horizon: Future steps forecast (``H``).
        n_channels: Values per past step, the target first (``C``).
        n_calendar: Calendar features per forecast step (``K``; 0: none).
        hidden_dims: Hidden layer widths of the MLP.
        dropout: Dropout after each hidden layer.
        norm: Normalisation after each hidden linear layer.
        activation: Hidden activation.
        revin: Normalise each window's target by its own mean and std.
        revin_affine: With ``revin``, learn an affine map of the normalised target.
        linear_skip: Add a linear map of the inputs to the forecast.
    """

    def __init__(
        self,
        input_size: int,
        horizon: int,
        n_channels: int,
        n_calendar: int,
        hidden_dims: list[int],
        dropout: float = 0.0,
        norm: Norm = "none",
        activation: Activation = "relu",
        revin: bool = False,
        revin_affine: bool = False,
        linear_skip: bool = False,
    ) -> None:
        in_dim = input_size * n_channels + horizon * n_calendar
        super().__init__(in_dim, hidden_dims, horizon, dropout, norm, activation)
        self.n_calendar = n_calendar
        self.revin = RevIN(revin_affine) if revin else None
        self.skip = nn.Linear(in_dim, horizon) if linear_skip else None

    def encode(self, x: Tensor, calendar: Tensor | None = None) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """The flattened inputs ``[B, L*C + H*K]``, and each window's mean and std ``[B, 1]`` (``None`` without
        revin)."""
        mean = std = None
        if self.revin is not None:
            target, mean, std = self.revin.normalise(x[:, :, 0])
            x = torch.cat([target.unsqueeze(2), x[:, :, 1:]], dim=2)
        flat = x.reshape(len(x), -1)  # [B, L, C] -> [B, L*C]
        if not self.n_calendar:
            return flat, mean, std
        if calendar is None:
            raise ValueError(f"this network reads {self.n_calendar} calendar features per forecast step: pass them")
        return torch.cat([flat, calendar.reshape(len(x), -1)], dim=1), mean, std  # [B, H, K] -> [B, H*K]

    def forward(self, x: Tensor, calendar: Tensor | None = None) -> Tensor:
        inputs, mean, std = self.encode(x, calendar)
        out = self.layers(inputs)
        if self.skip is not None:
            out = out + self.skip(inputs)
        if self.revin is not None:
            out = self.revin.denormalise(out, mean, std)
        return out

    @torch.no_grad()
    def fit_linear(
        self,
        batches: Iterable[tuple[Tensor, Tensor | None, Tensor]],
        ridge: float = 1e-3,
        total: Callable[[Tensor], Tensor] | None = None,
    ) -> int:
        """Set the linear path to the ridge regression of the targets on the inputs over ``batches`` of ``(x,
        calendar, y)`` (on the normalised scale with revin); the number of windows it was fitted on.

        The normal equations are summed batch by batch (memory ``[D, D]``, D the input width) and solved in
        float64; the penalty is ``ridge`` times the inputs' mean square, so it does not depend on their scale.
        ``total`` sums a tensor over the processes of a distributed run, so that every copy solves the same
        equations (each may see other windows).
        """
        if self.skip is None:
            raise ValueError("this network has no linear path to fit")
        gram, cross, count = None, None, 0
        for x, calendar, y in batches:
            inputs, mean, std = self.encode(x, calendar)
            target = y if mean is None else (y - mean) / std  # an affine map starts as the identity
            design = torch.cat([inputs, torch.ones(len(inputs), 1)], dim=1).double()  # the last column: the bias
            gram = design.T @ design if gram is None else gram + design.T @ design
            cross = design.T @ target.double() if cross is None else cross + design.T @ target.double()
            count += len(x)
        if gram is None:
            raise ValueError("no training window to fit the linear path on")
        if total is not None:
            gram, cross, count = total(gram), total(cross), int(total(torch.tensor(float(count))))
        penalty = torch.eye(len(gram), dtype=gram.dtype) * (ridge * gram.diagonal()[:-1].mean())
        penalty[-1, -1] = 0  # the bias is not penalised
        solution = torch.linalg.solve(gram + penalty, cross)  # [D + 1, H]
        self.skip.weight.copy_(solution[:-1].T)
        self.skip.bias.copy_(solution[-1])
        return count
