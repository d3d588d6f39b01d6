"""Sliding windows over stored series: validity (gaps, missing values), split ranges in time, the MASE scale."""

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


def calendar_cutoffs(stamps: list[np.ndarray], val_fraction: float, test_fraction: float) -> tuple[int, int | None]:
    """The times validation and test start at, for every series alike: the steps of all series pooled in time
    order, the last ``test_fraction`` of them are test and the ``val_fraction`` before them validation (for one
    series, the rows :func:`chronological_bounds` gives).

    Args:
        stamps: Each series' int64 timestamps, ascending.
        val_fraction: Share of all steps from the validation start to the test start.
        test_fraction: Share of all steps from the test start on (0: no test stretch, ``None`` returned).
    """
    n_steps = sum(len(s) for s in stamps)
    n_test = round(n_steps * test_fraction)
    ranks = [n_steps - n_test - round(n_steps * val_fraction), n_steps - n_test]  # rows of the two starts
    pooled = stamps[0] if len(stamps) == 1 else np.concatenate(stamps)
    if len(stamps) > 1:  # in place: the k-th smallest times, no full sort and no second copy
        pooled.partition([rank for rank in ranks if rank < n_steps])
    after_end = max(int(s[-1]) for s in stamps) + 1  # a start no step reaches: an empty stretch
    val_start, test_start = (int(pooled[rank]) if rank < n_steps else after_end for rank in ranks)
    return val_start, test_start if n_test else None


def cutoff_bounds(stamps: np.ndarray, val_start: int, test_start: int | None) -> dict[str, tuple[int, int]]:
    """``[begin, end)`` of a series' train, val and test stretches, cut at times ``val_start`` and ``test_start``
    (``None``: no test stretch); a stretch may be empty."""
    val_begin = int(np.searchsorted(stamps, val_start))
    test_begin = len(stamps) if test_start is None else int(np.searchsorted(stamps, test_start))
    return {"train": (0, val_begin), "val": (val_begin, test_begin), "test": (test_begin, len(stamps))}


def seasonal_naive_errors(
    values: np.ndarray, season_length: int, stamps: np.ndarray | None = None, step: int = 0
) -> np.ndarray:
    """``|y_t - y_{t - m}|`` over a stretch, where ``t - m`` is the step ``season_length * step`` earlier in time
    (not ``m`` rows earlier: a gap in the timestamps would pair values at other distances); pairs holding a
    missing value, or whose earlier step is absent, are dropped. The in-sample error MASE is scaled by.

    Args:
        values: ``[T]`` the target over the stretch.
        season_length: ``m``, in steps.
        stamps: ``[T]`` its int64 timestamps, ascending; ``None`` for a stretch without gaps, where the step
            ``m`` steps earlier is ``m`` rows back.
        step: The sampling step, in the timestamps' unit.
    """
    if len(values) <= season_length:
        return values[:0]
    if stamps is None:
        diffs = values[season_length:] - values[:-season_length]
    else:
        earlier = stamps - season_length * step
        rows = np.searchsorted(stamps, earlier)
        found = rows < len(stamps)
        found[found] = stamps[rows[found]] == earlier[found]
        diffs = values[found] - values[rows[found]]
    np.abs(diffs, out=diffs)
    missing = np.isnan(diffs)
    return diffs[~missing] if missing.any() else diffs
