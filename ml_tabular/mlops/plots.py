"""Plots logged under ``plots/`` in a run (matplotlib ``Figure`` objects, no pyplot state)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from ml_tabular.mlops.logger import MLTabularLogger
from ml_tabular.mlops.tabular_plots import tabular_figures

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from torch.utils.data import DataLoader

log = logging.getLogger(__name__)

N_FORECASTS = 4


@torch.no_grad()
def _forecasts(model: pl.LightningModule, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, forecasts and actuals on the original scale: ``[N, L]``, ``[N, H]``, ``[N, H]``."""
    was_training = model.training
    model.eval()
    inputs, preds, actuals = [], [], []
    for batch in loader:
        preds.append(model.predict_step(batch, 0))
        actuals.append(model.unscale(batch["y"]))
        inputs.append(model.unscale(batch["x"][:, :, 0]))
    model.train(was_training)
    return torch.cat(inputs), torch.cat(preds), torch.cat(actuals)


def forecast_figures(model: pl.LightningModule, data: pl.LightningDataModule, history: Any) -> dict[str, Figure]:
    """``forecast_vs_actual`` for a few validation windows and ``error_by_horizon_step`` over all of them."""
    from matplotlib.figure import Figure

    inputs, preds, actuals = _forecasts(model, data.val_dataloader())
    n_input, horizon = inputs.shape[1], preds.shape[1]
    picks = torch.linspace(0, len(preds) - 1, min(N_FORECASTS, len(preds))).long()
    forecast = Figure(figsize=(10, 2.4 * len(picks)))
    for row, i in enumerate(picks.tolist()):
        ax = forecast.add_subplot(len(picks), 1, row + 1)
        ax.plot(range(n_input), inputs[i], color="0.5", label="input")
        ax.plot(range(n_input, n_input + horizon), actuals[i], color="k", label="actual")
        ax.plot(range(n_input, n_input + horizon), preds[i], color="tab:orange", label="forecast")
        ax.set_title(f"validation window {i}", fontsize=9)
    forecast.axes[0].legend(loc="upper left", fontsize=8)
    forecast.axes[-1].set_xlabel("step in window")
    forecast.tight_layout()

    errors = Figure(figsize=(6, 3.5))
    ax = errors.add_subplot()
    steps = range(1, horizon + 1)
    ax.bar(steps, (preds - actuals).abs().mean(dim=0), color="tab:blue")
    ax.set_xlabel("horizon step")
    ax.set_ylabel("mean absolute error")
    ax.set_title("validation error by horizon step")
    errors.tight_layout()
    return {"forecast_vs_actual": forecast, "error_by_horizon_step": errors}


FIGURE_MAKERS = {"ts_mlp": forecast_figures, "tabular_mlp": tabular_figures}
HISTORY = ("train_loss", "val_loss")


class RunPlotsCallback(Callback):
    """At the end of ``fit``, logs the model family's plots on the validation split to ``plots/``."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        make = FIGURE_MAKERS.get(getattr(pl_module, "model_type", ""))
        loggers = [logger for logger in trainer.loggers if isinstance(logger, MLTabularLogger)]
        if make is None or not loggers or trainer.datamodule is None or not trainer.is_global_zero:
            return
        try:
            self._log_plots(make, pl_module, trainer.datamodule, loggers)
        except Exception as err:  # a plot is a report: it must not fail a run that trained well
            log.warning(
                "plots: could not make or log the plots (%s: %s); the run is unaffected", type(err).__name__, err
            )

    @staticmethod
    def _log_plots(make: Any, model: pl.LightningModule, data: Any, loggers: list[MLTabularLogger]) -> None:
        logger = loggers[0]
        history = {key: logger.metric_history(key) for key in HISTORY}
        for name, figure in make(model, data, history).items():
            for logger in loggers:
                logger.log_figure(figure, f"plots/{name}.png")
