"""Sliding windows over stored series: validity (gaps, missing values) and chronological split ranges."""

from __future__ import annotations

import numpy as np


def valid_window_starts(
    bad: np.ndarray, breaks: np.ndarray, begin: int, end: int, width: int, stride: int
) -> np.ndarray:
    """Starts ``s`` in ``[begin, end - width]`` (every ``stride``) whose window ``[s, s + width)`` is clean.

    Args:
        bad: ``[T]`` bool, a missing value at step t.
        breaks: ``[T]`` bool, a gap in time between step t-1 and t.
        begin: First step of the stretch the windows must lie in.
        end: One past the last step of that stretch.
        width: Window length (input + horizon).
        stride: Steps between consecutive window starts.
    """
    counter = np.int32 if len(bad) < 2**31 else np.int64
    starts = np.arange(begin, end - width + 1, stride, dtype=counter)
    if starts.size == 0:
        return starts
    bad_sum = np.zeros(len(bad) + 1, dtype=counter)
    np.cumsum(bad, out=bad_sum[1:])
    break_sum = np.zeros(len(breaks) + 1, dtype=counter)
    np.cumsum(breaks, out=break_sum[1:])
    clean = bad_sum[starts + width] == bad_sum[starts]
    # a break at the window's own first step is fine: only gaps inside the window matter
    clean &= break_sum[starts + width] == break_sum[starts + 1]
    return starts[clean]


def chronological_bounds(length: int, val_fraction: float, test_fraction: float) -> dict[str, tuple[int, int]]:
    """``[begin, end)`` of the train, val and test stretches of a series of ``length`` steps, in time order."""
    n_test = round(length * test_fraction)
    n_val = round(length * val_fraction)
    n_train = length - n_val - n_test
    return {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, length)}


def seasonal_naive_errors(values: np.ndarray, season_length: int) -> np.ndarray:
    """``|y_t - y_{t-m}|`` over a stretch, NaN pairs dropped: the in-sample error MASE is scaled by."""
    diffs = np.abs(values[season_length:] - values[:-season_length])
    return diffs[~np.isnan(diffs)]
