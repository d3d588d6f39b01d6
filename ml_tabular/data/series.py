"""Series read from a long table into arrays: rows in (series, time) order, gaps and repeated times found.

The work goes a chunk of ``CHUNK_ROWS`` rows at a time, so temporaries stay small however long the
series: reading holds about one copy of the columns used (int64 times, float32 values, int32 series codes).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.tseries.api import guess_datetime_format

from ml_tabular.data.io import TABLE_HEAD_ROWS, TableSource, arrow_numbers, read_batches, source_name
from ml_tabular.errors import DataError

CHUNK_ROWS = 1 << 16  # rows read, compared or scaled at a time
SINGLE_SERIES = "__series__"
DAY_MONTH_SWAP = {"%d": "%m", "%m": "%d"}


@dataclass
class Series:
    """One series as read, in time order: its id, raw values ``[T, 1 + F]`` (float32) and its times, summarised."""

    series_id: Any
    values: np.ndarray
    breaks: np.ndarray  # [T] True where the time since the previous row is not ``step`` (a gap)
    step: pd.Timedelta  # the sampling step: the median time between consecutive rows
    last: pd.Timestamp  # the time of the last row
    stamps: np.ndarray  # [T] int64 times in the table's ``unit`` (a view into the table's)

    @property
    def step_count(self) -> int:
        """The sampling step in the table's unit (the unit of ``stamps``)."""
        return int(self.step / pd.Timedelta(1, unit=self.last.unit))


@dataclass
class SeriesTable:
    """A long table read as series: raw values ``[N, 1 + F]`` (float32, all series end to end in (series,
    time) order) and their int64 times ``[N]``, each series (views into them), the first rows as read, the
    format its text timestamps were read with (``None``: stored dates/times) and the unit of its times (``ns``,
    ``us``, ...)."""

    values: np.ndarray
    stamps: np.ndarray
    series: list[Series]
    head: pd.DataFrame
    text_format: str | None = None
    unit: str = "ns"


@dataclass
class _Rows:
    """A table's rows as read: int64 timestamps of dtype ``time_type``, raw values ``[N, 1 + F]`` (float32), and
    each row's series as a code into ``ids`` (``codes`` is ``None`` for one series)."""

    stamps: np.ndarray
    values: np.ndarray
    codes: np.ndarray | None
    time_type: Any = None
    text_format: str | None = None
    ids: list[Any] = field(default_factory=list)

    def time(self, row: int) -> pd.Timestamp:
        """The timestamp of ``row``, in the column's unit and time zone."""
        return pd.DatetimeIndex(self.stamps[row : row + 1], dtype=self.time_type)[0]

    def sort(self) -> None:
        """Put the rows in (series, time) order; ``codes`` must follow the sorted ids."""
        order = _time_order(self.stamps, self.codes)
        if order is None:
            return
        self.stamps = self.stamps[order]  # one array at a time: peak memory grows by one array, not all
        self.values = self.values[order]
        if self.codes is not None:
            self.codes = self.codes[order]


def _median_step(stamps: np.ndarray, sample: int = 100_000) -> int:
    """Median difference of consecutive timestamps, from an evenly spaced sample (no full sort)."""
    if len(stamps) < 2:
        return 0
    picks = np.linspace(1, len(stamps) - 1, min(sample, len(stamps) - 1)).astype(np.int64)
    return int(np.median(stamps[picks] - stamps[picks - 1]))


def _gaps(stamps: np.ndarray, step: int) -> tuple[np.ndarray, int]:
    """``[T]`` True where the time since the previous row is not ``step``, and the first row whose time repeats
    the previous row's (0: none). Differences are taken a chunk at a time, never for the whole series."""
    gaps = np.zeros(len(stamps), dtype=bool)
    repeat = 0
    for begin in range(1, len(stamps), CHUNK_ROWS):
        end = min(begin + CHUNK_ROWS, len(stamps))
        diffs = stamps[begin:end] - stamps[begin - 1 : end - 1]
        np.not_equal(diffs, step, out=gaps[begin:end])
        if not repeat and not diffs.all():
            repeat = begin + int(np.argmin(diffs != 0))
    return gaps, repeat


def _codes(ids: pa.ChunkedArray, labels: dict[Any, int]) -> np.ndarray:
    """``[N]`` int32 code of each id, numbering ids in order of first sight (``labels``: id -> code, grown)."""
    if pa.types.is_dictionary(ids.type):  # a pandas category column: dictionary_encode would return it as it is
        ids = pc.cast(ids, ids.type.value_type)
    encoded = pc.dictionary_encode(ids.combine_chunks(), null_encoding="encode")
    codes = [labels.setdefault(label, len(labels)) for label in encoded.dictionary.to_pylist()]
    return np.array(codes, dtype=np.int32)[encoded.indices.to_numpy()]


def _sorted_ids(codes: np.ndarray, labels: dict[Any, int]) -> list[Any]:
    """Renumber ``codes`` (in place) so that codes follow the sorted ids; those ids, in that order."""
    ids = pd.Series(list(labels), dtype=object)
    order = ids.sort_values(na_position="first").index.to_numpy()
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order))
    for begin in range(0, len(codes), CHUNK_ROWS):  # ``np.take(rank, codes, out=codes)`` copies ``codes`` twice
        rows = codes[begin : begin + CHUNK_ROWS]
        rows[:] = rank[rows]
    return ids[order].tolist()


def _time_order(stamps: np.ndarray, codes: np.ndarray | None) -> np.ndarray | None:
    """Row order sorting by (series, time), or ``None`` when the rows already are in that order."""
    ordered = stamps[1:] >= stamps[:-1]
    if codes is not None:
        ordered &= codes[1:] == codes[:-1]
        ordered |= codes[1:] > codes[:-1]
    if ordered.all():
        return None
    return np.argsort(stamps, kind="stable") if codes is None else np.lexsort((stamps, codes))


def _group_bounds(codes: np.ndarray | None, n_rows: int) -> list[tuple[int, int]]:
    """``[begin, end)`` of each run of equal codes in sorted rows (one run without codes)."""
    change = np.array([], dtype=np.int64) if codes is None else np.flatnonzero(codes[1:] != codes[:-1]) + 1
    edges = [0, *change.tolist(), n_rows]
    return list(itertools.pairwise(edges))


def read_series(
    source: TableSource,
    key: str,
    timestamp_column: str,
    value_columns: list[str],
    series_id_column: str | None,
    timestamp_format: str | None = None,
) -> SeriesTable:
    """Read ``source`` (a file, or rows in memory) batch by batch, sort it by (series, time), cut it into series.

    Text timestamps are read with ``timestamp_format`` (a strptime format), else with the format settled on the
    first batch (see :func:`_text_format`). A repeated timestamp within a series and a timestamp that is not a
    date/time raise a :class:`DataError`.
    """
    rows, head = _read_rows(source, key, timestamp_column, value_columns, series_id_column, timestamp_format)
    path = source_name(source)
    rows.sort()
    bounds = _group_bounds(rows.codes, len(rows.values))
    series = [_series(rows, begin, end, path) for begin, end in bounds]
    unit = np.datetime_data(rows.time_type)[0] if rows.time_type is not None else "ns"
    return SeriesTable(rows.values, rows.stamps, series, head, rows.text_format, unit)


def _read_rows(
    source: TableSource,
    key: str,
    timestamp_column: str,
    value_columns: list[str],
    series_id_column: str | None,
    timestamp_format: str | None,
) -> tuple[_Rows, pd.DataFrame]:
    """The rows in file order, in preallocated arrays, and the first ``TABLE_HEAD_ROWS`` rows as read."""
    id_columns = [series_id_column] if series_id_column else []
    n_rows, batches = read_batches(source, key, [timestamp_column, *value_columns, *id_columns], CHUNK_ROWS)
    path = source_name(source)
    values = np.empty((n_rows, len(value_columns)), dtype=np.float32)
    codes = np.empty(n_rows, dtype=np.int32) if id_columns else None
    rows = _Rows(np.empty(n_rows, dtype=np.int64), values, codes, text_format=timestamp_format)
    labels: dict[Any, int] = {}
    head: list[pa.Table] = []
    begin = 0
    for batch in batches:
        table, end = pa.Table.from_batches([batch]), begin + batch.num_rows
        stamps, rows.text_format = _timestamps(table, timestamp_column, path, rows.text_format)
        rows.stamps[begin:end], rows.time_type = stamps.asi8, stamps.dtype
        for i, column in enumerate(value_columns):
            values[begin:end, i] = arrow_numbers(table, column, path)
        if rows.codes is not None:
            rows.codes[begin:end] = _codes(table.column(series_id_column), labels)
        if begin < TABLE_HEAD_ROWS:
            head.append(table.slice(0, TABLE_HEAD_ROWS - begin))
        begin = end
    if rows.codes is not None:
        rows.ids = _sorted_ids(rows.codes, labels)
    return rows, pa.concat_tables(head).to_pandas()


def _timestamps(
    table: pa.Table, column_name: str, path: str, text_format: str | None
) -> tuple[pd.DatetimeIndex, str | None]:
    """The batch's timestamps (no zone: times with an offset become UTC) and the format text was read with."""
    column = table.column(column_name)
    if pa.types.is_timestamp(column.type) or pa.types.is_date(column.type):
        return pd.DatetimeIndex(column.to_numpy(zero_copy_only=False)), text_format
    raw = column.to_pandas()
    text_format = text_format or _text_format(raw)
    stamps = _to_datetime(raw, text_format)
    if stamps.isna().any():
        bad = raw[stamps.isna()].astype(str).unique()[:3].tolist()
        raise DataError(
            f"timestamp column '{column_name}' in '{path}' has values that are not dates/times in the format "
            f"'{text_format}': {bad}. Fix those rows, set data.init_args.timestamp_format (a strptime format such "
            "as '%d/%m/%Y %H:%M'), or point data.init_args.timestamp_column at the right column."
        )
    index = pd.DatetimeIndex(stamps)
    if index.tz is not None:  # instants in UTC without a zone, as Arrow reads ISO text with offsets
        index = index.tz_convert("UTC").tz_localize(None)
    return index.as_unit("ns"), text_format  # pandas picks the unit from the text; every batch must share one


def _to_datetime(raw: pd.Series, text_format: str) -> pd.Series:
    """``raw`` text parsed with ``text_format`` (NaT where it does not fit)."""
    try:
        return pd.to_datetime(raw, errors="coerce", format=text_format)
    except ValueError:  # offsets that differ, as daylight saving time makes them
        return pd.to_datetime(raw, errors="coerce", format=text_format, utc=True)


def _text_format(raw: pd.Series) -> str:
    """The one format all of ``raw`` is read with: pandas' guess from the first value, the guess with day and
    month swapped when only that reads every value (``01/03`` first, ``13/03`` later: day first), or ISO 8601
    in any of its forms (``2024-01-01`` beside ``2024-01-01 01:00``). When none reads every value, the guess
    (or ISO 8601), for the caller to name the values it does not read: each value guessed alone would take
    ``03/04`` as March 4 and ``13/04`` as April 13 in one column."""
    guess = guess_datetime_format(str(raw.iloc[0]))
    swapped = guess and re.sub("%[dm]", lambda code: DAY_MONTH_SWAP[code.group()], guess)
    for candidate in (guess, swapped, "ISO8601"):
        if candidate and _to_datetime(raw, candidate).notna().all():
            return candidate
    return guess or "ISO8601"


def series_name(item: Series) -> str:
    """How messages name a series: ``the series`` when the table holds one, else ``series 'ID'``."""
    return "the series" if item.series_id == SINGLE_SERIES else f"series '{item.series_id}'"


def _series(rows: _Rows, begin: int, end: int, path: str) -> Series:
    """Rows ``[begin, end)`` (one series, sorted) as a :class:`Series`; repeated timestamps raise."""
    series_id = SINGLE_SERIES if rows.codes is None else rows.ids[rows.codes[begin]]
    step = _median_step(rows.stamps[begin:end])
    gaps, repeat = _gaps(rows.stamps[begin:end], step)
    if repeat:
        where = "" if rows.codes is None else f" in series '{series_id}'"
        raise DataError(
            f"'{path}' has duplicate timestamps{where}, e.g. {rows.time(begin + repeat)}. "
            "Each series needs one row per timestamp: aggregate or drop the duplicates "
            "(or set data.init_args.series_id_column if the table holds several series)."
        )
    last = rows.time(end - 1)
    stamps = rows.stamps[begin:end]
    return Series(series_id, rows.values[begin:end], gaps, pd.Timedelta(step, unit=last.unit), last, stamps)
