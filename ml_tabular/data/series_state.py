"""What a trained time-series model keeps of its data: scaling, MASE scales, the split, calendar features."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml_tabular.data.series import CHUNK_ROWS
from ml_tabular.data.splits import SplitDefinition


@dataclass
class SeriesScaling:
    """Statistics fitted on the training stretches: target and covariate scaling, MASE scales.

    ``mase_scales`` holds each series' in-sample seasonal-naive error (NaN where it has none: that series
    is left out of MASE); checkpoints made before it was recorded scale every series by the pooled
    ``mase_scale``.
    """

    target_mean: float
    target_std: float
    feature_means: list[float]
    feature_stds: list[float]
    mase_scale: float
    mase_scales: list[float] = field(default_factory=list)

    @property
    def offsets(self) -> np.ndarray:
        """Per-channel means (target first), float32."""
        return np.array([self.target_mean, *self.feature_means], dtype=np.float32)

    @property
    def scales(self) -> np.ndarray:
        """Per-channel stds (target first), float32."""
        return np.array([self.target_std, *self.feature_stds], dtype=np.float32)

    def scale(self, values: np.ndarray) -> np.ndarray:
        """``[T, 1 + F]`` raw (target first) -> standardised."""
        return (values - self.offsets) / self.scales

    def scale_in_place(self, values: np.ndarray) -> None:
        """Standardise ``values [T, 1 + F]`` in place, missing values -> 0."""
        for begin in range(0, len(values), CHUNK_ROWS):
            rows = values[begin : begin + CHUNK_ROWS]
            np.subtract(rows, self.offsets, out=rows)
            np.divide(rows, self.scales, out=rows)
            np.nan_to_num(rows, copy=False)

    def series_scales(self, n_series: int) -> list[float]:
        """The MASE scale of each of ``n_series`` series (the pooled one for each, in older checkpoints)."""
        return self.mase_scales or [self.mase_scale] * n_series


@dataclass(frozen=True)
class TimeSplit(SplitDefinition):
    """How series were split by time: validation from ``val_start`` on, test from ``test_start`` on, the same
    instants (ISO 8601) for every series; ``test_start`` ``None``: no test stretch. ``val_start`` ``None``: each
    series cut at its own ``val_fraction``/``test_fraction`` of steps (checkpoints made before the cutoffs)."""

    val_start: str | None = None
    test_start: str | None = None

    def cutoffs(self, unit: str) -> tuple[int, int | None]:
        """``val_start`` and ``test_start`` as int64 counts of ``unit`` since 1970."""
        assert self.val_start is not None, "a split by fractions has no cutoffs"
        test = None if self.test_start is None else time_count(self.test_start, unit)
        return time_count(self.val_start, unit), test


def time_count(text: str, unit: str) -> int:
    """ISO 8601 text as an int64 count of ``unit`` since 1970."""
    return int(pd.Timestamp(text).as_unit(unit).asm8.astype(np.int64))


def iso_time(count: int, unit: str) -> str:
    """An int64 time in ``unit`` as ISO 8601 text, every digit kept."""
    return pd.Timestamp(count, unit=unit).isoformat()


@dataclass
class SeriesState:
    """All a trained time-series model needs of its data, saved in every checkpoint.

    The scaling fitted on the training stretches (target scale, MASE scales), the split definition, the
    format text timestamps were read in, each series' id and last training timestamp (ISO 8601), and the
    calendar features the model reads (none in checkpoints made before them).
    """

    scaling: SeriesScaling
    split: TimeSplit | None  # None in checkpoints made before the split was recorded
    text_format: str | None = None
    series_ids: list[str] = field(default_factory=list)
    last_timestamps: list[str] = field(default_factory=list)
    calendar: list[str] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        state = asdict(self)
        state["split"] = None if self.split is None else asdict(self.split)
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> SeriesState:
        state = dict(state)
        split = state.pop("split", None)
        scaling = SeriesScaling(**state.pop("scaling"))
        return cls(scaling, split and TimeSplit(**split), **state)
