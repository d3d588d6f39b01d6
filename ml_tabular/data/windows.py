"""Sliding windows over stored series: validity (gaps, missing values) and chronological split ranges."""

from __future__ import annotations

import numpy as np


def missing_steps(values: np.ndarray) -> np.ndarray:
    """``[T]`` True where any channel of ``values [T, C]`` is NaN, one channel at a time (no ``[T, C]`` mask)."""
    bad = np.isnan(values[:, 0])
    for channel in range(1, values.shape[1]):
        bad |= np.isnan(values[:, channel])
    return bad


def clean_windows(bad: np.ndarray, breaks: np.ndarray, width: int) -> np.ndarray:
    """``[T - width + 1]`` bool: True where the window ``[s, s + width)`` holds no missing value and no gap.

    Args:
        bad: ``[T]`` bool, a missing value at step t.
        breaks: ``[T]`` bool, a gap in time between step t-1 and t.
        width: Window length (input + horizon).
    """
    clean = _all_within(~bad, width)
    if width > 1:  # a break at the window's own first step is fine: only gaps inside the window matter
        clean &= _all_within(~breaks[1:], width - 1)
    return clean


def _all_within(ok: np.ndarray, length: int) -> np.ndarray:
    """``[len(ok) - length + 1]``: whether ``ok[s : s + length]`` is all True, for each s; overwrites ``ok``.

    Each pass ANDs every span with the one ``shift`` steps later, growing spans to ``length`` in
    ``log2(length)`` passes with no memory beyond ``ok`` (unlike a running count).
    """
    n, span = len(ok), 1
    while span < length:
        shift = min(span, length - span)
        n -= shift
        if n <= 0:
            return ok[:0]
        ok[:n] &= ok[shift : n + shift]
        span += shift
    return ok[:n]


def valid_window_starts(
    clean: np.ndarray, begin: int, end: int, width: int, stride: int, dtype: type[np.integer] = np.int64
) -> np.ndarray:
    """Starts ``s`` in ``[begin, end - width]`` (every ``stride``) whose window is clean (see :func:`clean_windows`)."""
    stop = end - width + 1
    starts, keep = np.arange(begin, stop, stride, dtype=dtype), clean[begin:stop:stride]
    return starts if keep.all() else starts[keep]


def chronological_bounds(length: int, val_fraction: float, test_fraction: float) -> dict[str, tuple[int, int]]:
    """``[begin, end)`` of the train, val and test stretches of a series of ``length`` steps, in time order."""
    n_test = round(length * test_fraction)
    n_val = round(length * val_fraction)
    n_train = length - n_val - n_test
    return {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, length)}


def seasonal_naive_errors(values: np.ndarray, season_length: int) -> np.ndarray:
    """``|y_t - y_{t-m}|`` over a stretch, NaN pairs dropped: the in-sample error MASE is scaled by."""
    diffs = values[season_length:] - values[:-season_length]
    np.abs(diffs, out=diffs)
    missing = np.isnan(diffs)
    return diffs[~missing] if missing.any() else diffs
