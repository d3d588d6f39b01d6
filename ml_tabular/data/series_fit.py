"""The statistics fitted on the training stretches of series: target and covariate scaling, MASE scales."""

from __future__ import annotations

import logging
import math

import numpy as np

from ml_tabular.data.series import Series, series_name
from ml_tabular.data.series_state import SeriesScaling
from ml_tabular.data.windows import seasonal_naive_errors
from ml_tabular.errors import DataError

log = logging.getLogger(__name__)
SHOWN_NAMES = 5  # series named in a message about several


def joined(parts: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate(parts)``, without copying a single part."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _std(values: np.ndarray) -> float:
    std = float(np.nanstd(values))
    return std if std > 1e-12 else 1.0


def fit_scaling(series: list[Series], trains: list[tuple[int, int]], season_length: int, path: str) -> SeriesScaling:
    """Means and stds of the target and each covariate over every series' training rows ``trains[i]`` (``[begin,
    end)``), pooled, and the MASE scales (:func:`mase_scales`)."""
    train = joined([item.values[begin:end] for item, (begin, end) in zip(series, trains, strict=True)])
    scales, pooled = mase_scales(series, trains, season_length, path)
    n_features = train.shape[1] - 1
    return SeriesScaling(
        target_mean=float(np.nanmean(train[:, 0])),
        target_std=_std(train[:, 0]),
        feature_means=[float(np.nanmean(train[:, 1 + i])) for i in range(n_features)],
        feature_stds=[_std(train[:, 1 + i]) for i in range(n_features)],
        mase_scale=pooled,
        mase_scales=scales,
    )


def mase_scales(
    series: list[Series], trains: list[tuple[int, int]], season_length: int, path: str
) -> tuple[list[float], float]:
    """Each series' mean seasonal-naive absolute error over its training rows (NaN where it has none, with a
    warning: that series is left out of MASE), and the mean of all series' errors pooled; a :class:`DataError`
    when no series has one."""
    errors = []
    for item, (begin, end) in zip(series, trains, strict=True):
        gaps = item.breaks[begin + 1 : end].any()
        stamps = item.stamps[begin:end] if gaps else None  # with gaps, the season is found by time
        errors.append(seasonal_naive_errors(item.values[begin:end, 0], season_length, stamps, item.step_count))
    scales = [float(e.mean()) if e.size and e.mean() > 0 else math.nan for e in errors]
    pooled = joined(errors)
    if not pooled.size or not pooled.mean() > 0:
        raise DataError(
            f"no series in '{path}' has a seasonal-naive error over its training stretch (season_length="
            f"{season_length}: no two finite target values that far apart, or they are all equal), so MASE has no "
            "scale. Lower data.init_args.season_length (1: the naive error) or use a longer series."
        )
    left_out = [series_name(item) for item, scale in zip(series, scales, strict=True) if math.isnan(scale)]
    if left_out:
        log.warning(
            "MASE leaves out %d of %d series (%s%s): their training stretch has no seasonal-naive error "
            "(season_length=%d: too short, constant, or missing values)",
            len(left_out), len(series), ", ".join(left_out[:SHOWN_NAMES]), ", ..." * (len(left_out) > SHOWN_NAMES),
            season_length,
        )  # fmt: skip
    return scales, float(pooled.mean())
