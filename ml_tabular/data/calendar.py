"""Calendar features of time steps: the phase of each step in a day, a week or a year, as sin/cos pairs.

They are functions of the timestamp alone, so they are known for the steps a model forecasts. Times are int64
counts of a unit (the timestamp column's: ``ns``, ``us``, ``ms`` or ``s``) since 1970-01-01; each phase is
taken in integers in that unit, so a step's features do not depend on whether its time was read from a file
or computed as a forecast step's.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd
import torch
from torch import Tensor

CalendarFeature = Literal["time_of_day", "day_of_week", "time_of_year"]
DAY_SECONDS = 86_400
PERIOD_SECONDS: dict[str, int] = {  # the cycle each feature places a step in
    "time_of_day": DAY_SECONDS,
    "day_of_week": 7 * DAY_SECONDS,
    "time_of_year": 31_556_952,  # 365.2425 days: the Gregorian year
}
# a week's phase counts from Monday 00:00; 1970-01-01 was a Thursday
PHASE_SHIFT_SECONDS: dict[str, int] = {"time_of_day": 0, "day_of_week": 3 * DAY_SECONDS, "time_of_year": 0}
UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def features_for_step(step: pd.Timedelta) -> list[str]:
    """The features that vary between steps ``step`` apart and repeat within the data's likely span.

    Below a day: time of day and day of week; daily to weekly: day of week and time of year; weekly up to
    half a year: time of year; longer steps: none.
    """
    seconds = step.total_seconds()
    if seconds <= 0:
        return []
    if seconds < DAY_SECONDS:
        return ["time_of_day", "day_of_week"]
    if seconds < 7 * DAY_SECONDS:
        return ["day_of_week", "time_of_year"]
    if seconds <= PERIOD_SECONDS["time_of_year"] / 2:
        return ["time_of_year"]
    return []


def auto_features(steps: list[pd.Timedelta]) -> list[str]:
    """The union of :func:`features_for_step` over the series' sampling steps, in a fixed order."""
    chosen = {name for step in steps for name in features_for_step(step)}
    return [name for name in PERIOD_SECONDS if name in chosen]


def unit_of(dtype: np.dtype) -> str:
    """The unit of a ``datetime64`` dtype (``ns``, ``us``, ...); refused if calendar features cannot use it."""
    unit = np.datetime_data(dtype)[0]
    if unit not in UNITS_PER_SECOND:
        raise ValueError(f"timestamps in unit {unit!r}: calendar features need s, ms, us or ns")
    return unit


def window_times(first: Tensor, step: Tensor, count: int) -> Tensor:
    """Times ``[B, count]`` of ``count`` steps from ``first [B]`` on, ``step [B]`` apart (int64)."""
    return first.unsqueeze(1) + torch.arange(count, dtype=torch.int64) * step.unsqueeze(1)


def calendar_features(times: Tensor, names: list[str], unit: str) -> Tensor:
    """``times [...]`` (int64, in ``unit`` since 1970) -> float32 ``[..., 2 * len(names)]``: sin, cos of each phase."""
    per_second = UNITS_PER_SECOND[unit]
    columns = []
    for name in names:
        period = PERIOD_SECONDS[name] * per_second
        phase = torch.remainder(times + PHASE_SHIFT_SECONDS[name] * per_second, period).double() / period
        angle = (2 * math.pi) * phase
        columns += [angle.sin(), angle.cos()]
    return torch.stack(columns, dim=-1).float()
