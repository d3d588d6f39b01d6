"""``TimeSeriesDataModule``: one or many series -> sliding windows (views), split by time."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ml_tabular.data.batches import Index, TensorBatches, batch_loader, process_share
from ml_tabular.data.calendar import PERIOD_SECONDS, CalendarFeature, auto_features, calendar_features, window_times
from ml_tabular.data.io import (
    INPUT_ROWS,
    TableSource,
    file_sha256,
    floats_for_integers,
    read_table,
    require_columns,
    source_name,
    table_columns,
)
from ml_tabular.data.series import Series, SeriesTable, read_series, series_name
from ml_tabular.data.series_fit import fit_scaling, joined
from ml_tabular.data.series_state import SeriesScaling, SeriesState, TimeSplit, iso_time
from ml_tabular.data.tabular import check_fractions
from ml_tabular.data.windows import (
    calendar_cutoffs,
    chronological_bounds,
    clean_windows,
    cutoff_bounds,
    missing_steps,
    valid_window_starts,
)
from ml_tabular.errors import ConfigError, DataError

log = logging.getLogger(__name__)


class TimeSeriesDataModule(pl.LightningDataModule):
    """Sliding windows of ``input_size`` past steps predicting the next ``horizon`` steps.

    All series are split at the same instants: validation starts where the last ``val_fraction + test_fraction``
    of all steps (every series pooled, in time order) begin, test where the last ``test_fraction`` begin; a
    window lies wholly inside one stretch, so no training window reaches into another series' validation
    time. Windows are views into the stored series (``Tensor.unfold``); a window holding a missing value
    (target or covariate) or a gap in the timestamps is skipped, and the count is logged. Target and
    covariates are standardised with training-stretch statistics. Batches hold ``x [B, L, C]``, ``y [B, H]``,
    each window's ``series`` (its index) and ``mase_scale`` (its series' MASE scale, NaN for none), and with
    calendar features those of the forecast steps, ``calendar [B, H, K]`` (known in advance).

    Args:
        path: CSV or Parquet file in long format: one row per (series, timestamp).
        target: Column to forecast.
        timestamp_column: Column with the time of each row: dates/times as stored, ISO 8601 text, or other text.
        timestamp_format: strptime format of a text timestamp column (e.g. ``%d/%m/%Y %H:%M``); ``null``: the
            format pandas guesses from the first value (day first if only that reads every value).
        feature_columns: Past covariates fed to the model beside the target (``null`` for none).
        series_id_column: Column naming the series of each row, for several series in one table.
        calendar: Calendar features of the forecast steps (sin/cos of each step's phase in a day, week or year;
            known in advance, so they are model inputs): ``auto`` picks them from each series' sampling step
            (below a day: ``time_of_day``, ``day_of_week``; daily: ``day_of_week``, ``time_of_year``; weekly:
            ``time_of_year``), a list names them, ``null``: none.
        input_size: Past steps the model sees.
        horizon: Future steps it predicts.
        stride: Steps between consecutive window starts.
        season_length: Season of the seasonal-naive error that scales MASE (1 = naive, no season), in steps.
        val_fraction: Share of all steps (the end, before test) for validation.
        test_fraction: Share of all steps (the end) for test.
        batch_size: Windows per batch.
        seed: Seed of the per-epoch shuffle order of training windows.
        predict_path: Series to forecast beyond their end with ``predict`` (``null``: ``path``).
    """

    def __init__(
        self,
        path: str,
        target: str,
        timestamp_column: str = "timestamp",
        timestamp_format: str | None = None,
        feature_columns: list[str] | None = None,
        series_id_column: str | None = None,
        calendar: list[CalendarFeature] | Literal["auto"] | None = None,
        input_size: int = 48,
        horizon: int = 12,
        stride: int = 1,
        season_length: int = 1,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        batch_size: int = 256,
        seed: int = 42,
        predict_path: str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # into checkpoints, so a model loads without its config
        check_fractions(val_fraction, test_fraction)
        for key, value in {"input_size": input_size, "horizon": horizon, "stride": stride}.items():
            if value < 1:
                raise ConfigError(f"data.init_args.{key} must be >= 1, got {value}.")
        if season_length < 1 or batch_size < 1:
            raise ConfigError("data.init_args.season_length and batch_size must be >= 1.")
        if calendar not in (None, "auto") and not set(calendar) <= set(PERIOD_SECONDS):
            raise ConfigError(
                f"data.init_args.calendar must be auto, null or a list of {list(PERIOD_SECONDS)}, got {calendar}."
            )
        self.path = path
        self.target = target
        self.timestamp_column = timestamp_column
        self.timestamp_format = timestamp_format
        self.feature_columns = feature_columns or []
        self.series_id_column = series_id_column
        self.calendar = calendar
        self.input_size = input_size
        self.horizon = horizon
        self.stride = stride
        self.season_length = season_length
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.batch_size = batch_size
        self.seed = seed
        self.predict_path = predict_path
        self.state: SeriesState | None = None
        self.values: Tensor | None = None  # [T_total, 1 + F], all series end to end, standardised
        self.starts: dict[str, Tensor] = {}  # split -> window start steps into ``values``
        self.stamps: Tensor | None = None  # [T_total] int64 time of each step, in ``unit``
        self.unit = "ns"
        self.offsets: Tensor | None = None  # [S + 1] first step of each series in ``values``, then T_total
        self.series_steps: Tensor | None = None  # [S] int64 sampling step of each series, in ``unit``
        self.series_scales: Tensor | None = None  # [S] float32 MASE scale of each series (NaN: none)
        self.forecast_index: pd.DataFrame | None = None  # what each predicted row is (set by predict)
        self.table_head: pd.DataFrame | None = None  # first raw rows, describing the table (schema, example)
        self.table_rows = 0

    # ----- facts the model needs (linked by the CLI) -----
    @property
    def dataset_name(self) -> str:
        return Path(self.path).stem

    @property
    def n_channels(self) -> int:
        """Values per time step the model sees: the target plus each covariate."""
        return 1 + len(self.feature_columns)

    @property
    def target_mean(self) -> float:
        return self.fitted.target_mean

    @property
    def target_std(self) -> float:
        return self.fitted.target_std

    @property
    def mase_scale(self) -> float:
        """Mean in-sample seasonal-naive absolute error of the training stretches, pooled (original scale)."""
        return self.fitted.mase_scale

    @property
    def n_calendar(self) -> int:
        """Calendar values per step: a sin and a cos per feature of the state."""
        if self.state is None:
            raise RuntimeError("TimeSeriesDataModule has no state yet: call prepare() (or setup('fit')) first.")
        return 2 * len(self.state.calendar)

    @property
    def fitted(self) -> SeriesScaling:
        """The fitted scaling of the state (``prepare()`` or a restored checkpoint makes it)."""
        if self.state is None:
            raise RuntimeError("TimeSeriesDataModule has no state yet: call prepare() (or setup('fit')) first.")
        return self.state.scaling

    # ----- reading -----
    @property
    def input_columns(self) -> list[str]:
        """The raw columns the model reads: series id (if any), timestamp, target, covariates."""
        ids = [self.series_id_column] if self.series_id_column else []
        return [*ids, self.timestamp_column, self.target, *self.feature_columns]

    def _read_series(self, path: TableSource, key: str) -> SeriesTable:
        """The series of ``path`` (a file named by config key ``key``, or rows in memory)."""
        names = table_columns(path, key)
        id_columns = [self.series_id_column] if self.series_id_column else []
        settings = {"timestamp_column": [self.timestamp_column], "target": [self.target]}
        settings |= {"feature_columns": self.feature_columns, "series_id_column": id_columns}
        for setting, columns in settings.items():
            require_columns(names, columns, f"data.init_args.{setting}", path)
        value_columns = [self.target, *self.feature_columns]
        trained_format = self.state.text_format if self.state is not None else None
        text_format = self.timestamp_format or trained_format  # predict reads text as training did
        return read_series(path, key, self.timestamp_column, value_columns, self.series_id_column, text_format)

    def _check_length(self, item: Series, needed: int, what: str, path: str | None = None) -> None:
        if len(item.values) < needed:
            raise DataError(
                f"{series_name(item)} in '{path or self.path}' has {len(item.values)} steps; {what} needs at least "
                f"{needed} (input_size={self.input_size}, horizon={self.horizon}). "
                + (
                    f"Send the last {needed} steps of each series."
                    if path == INPUT_ROWS
                    else "Use a smaller input_size/horizon or a longer series."
                )
            )

    def _split_bounds(self, item: Series, split: TimeSplit, unit: str) -> dict[str, tuple[int, int]]:
        """Rows ``[begin, end)`` of ``item``'s train, val and test stretches."""
        width = self.input_size + self.horizon
        self._check_length(item, width, "one window of input_size + horizon")
        if split.val_start is not None:
            return cutoff_bounds(item.stamps, *split.cutoffs(unit))
        bounds = chronological_bounds(len(item.values), split.val_fraction, split.test_fraction)
        for name, (begin, end) in bounds.items():
            if (name != "test" or split.test_fraction > 0) and end - begin < width:
                raise DataError(
                    f"the {name} stretch of {series_name(item)} in '{self.path}' has {end - begin} steps, fewer than "
                    f"input_size + horizon = {width}: no window fits. Lower input_size/horizon or raise "
                    "data.init_args.val_fraction/test_fraction."
                )
        return bounds

    def _check_stretches(self, bounds: list[dict[str, tuple[int, int]]], split: TimeSplit) -> None:
        """Raise a :class:`DataError` when a stretch is too short for one window in every series."""
        width = self.input_size + self.horizon
        for name in ("train", "val", "test") if split.test_fraction > 0 else ("train", "val"):
            longest = max(end - begin for stretches in bounds for begin, end in [stretches[name]])
            if longest < width:
                steps = f"{longest} steps" if len(bounds) == 1 else f"at most {longest} steps in any series"
                raise DataError(
                    f"the {name} stretch of '{self.path}' has {steps}, fewer than input_size + horizon = {width}: "
                    "no window fits. Lower input_size/horizon or raise data.init_args.val_fraction/test_fraction."
                )

    # ----- preparation -----
    def prepare(self) -> None:
        """Read the training series, fit the state on the training stretches (unless one was restored), build windows.

        With a restored state, the file must be the one it was fitted on (same SHA-256): the stretches are cut
        where the stored split says and scaled with the stored statistics, nothing refitted.
        """
        restored = self.state
        sha256 = file_sha256(self.path) if Path(self.path).is_file() else ""
        if restored is not None and restored.split is not None:
            restored.split.check_file(self.path, sha256)
        table = self._read_series(self.path, "data.init_args.path")
        self.table_head, self.table_rows = table.head, len(table.values)
        split = (
            restored.split if restored is not None and restored.split is not None else self._new_split(table, sha256)
        )
        if split.val_start is not None:
            log.info("data: validation from %s, test from %s (every series)", split.val_start, split.test_start)
        bounds = [self._split_bounds(item, split, table.unit) for item in table.series]
        self._check_stretches(bounds, split)
        if restored is None:
            self.state = SeriesState(
                fit_scaling(table.series, [b["train"] for b in bounds], self.season_length, self.path),
                split,
                table.text_format,
                [str(item.series_id) for item in table.series],
                [item.last.isoformat() for item in table.series],
                self._calendar_features(table.series),
            )
        self._build_windows(table, bounds, split)

    def _new_split(self, table: SeriesTable, sha256: str) -> TimeSplit:
        """Cutoffs at the pooled steps' ``val_fraction``/``test_fraction`` (see :func:`calendar_cutoffs`)."""
        val_start, test_start = calendar_cutoffs(
            [item.stamps for item in table.series], self.val_fraction, self.test_fraction
        )
        return TimeSplit(
            sha256,
            len(table.values),
            self.seed,
            self.val_fraction,
            self.test_fraction,
            iso_time(val_start, table.unit),
            None if test_start is None else iso_time(test_start, table.unit),
        )

    def _calendar_features(self, series: list[Series]) -> list[str]:
        if self.calendar == "auto":
            return auto_features([item.step for item in series])
        return list(self.calendar or [])

    def _build_windows(self, table: SeriesTable, bounds: list[dict[str, tuple[int, int]]], split: TimeSplit) -> None:
        """Window starts of each split, then ``values`` (all series end to end) standardised in place."""
        values, series = table.values, table.series
        index_type = np.int32 if len(values) < 2**31 else np.int64
        starts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
        offsets = [0]
        for item, stretches in zip(series, bounds, strict=True):
            for name, found in self._window_starts(item, stretches, index_type).items():
                found += offsets[-1]
                starts[name].append(found)
            offsets.append(offsets[-1] + len(item.values))
        self.fitted.scale_in_place(values)
        self.values = torch.from_numpy(values)
        self.starts = {name: torch.from_numpy(joined(parts)) for name, parts in starts.items()}
        self.stamps, self.unit = torch.from_numpy(table.stamps), table.unit
        self.offsets = torch.tensor(offsets, dtype=self.starts["train"].dtype)
        self.series_steps = torch.tensor([item.step_count for item in series], dtype=torch.int64)
        self.series_scales = torch.tensor(self.fitted.series_scales(len(series)), dtype=torch.float32)
        width = self.input_size + self.horizon
        for name in ("train", "val", "test") if split.test_fraction > 0 else ("train", "val"):
            if len(self.starts[name]) == 0:
                raise DataError(
                    f"the {name} stretch of '{self.path}' has no complete window: every window holds a gap or a "
                    "missing value. Fill the gaps, or lower input_size/horizon."
                )
        possible = sum(
            len(range(begin, end - width + 1, self.stride)) for split in bounds for begin, end in split.values()
        )
        kept = sum(len(s) for s in self.starts.values())
        log.info(
            "data: %d series, %d steps; windows train %d, val %d, test %d (%d skipped for gaps/missing values)",
            len(series), len(values), *(len(self.starts[n]) for n in ("train", "val", "test")), possible - kept,
        )  # fmt: skip

    def _window_starts(
        self, item: Series, split: dict[str, tuple[int, int]], index_type: type[np.integer]
    ) -> dict[str, np.ndarray]:
        """Starts (steps into ``item``) of the windows of each stretch holding no gap and no missing value."""
        width = self.input_size + self.horizon
        clean = clean_windows(missing_steps(item.values), item.breaks, width)
        return {
            name: valid_window_starts(clean, begin, end, width, self.stride, index_type)
            for name, (begin, end) in split.items()
        }

    # ----- batches -----
    def _windows(self, starts: Tensor) -> dict[str, Tensor]:
        assert self.values is not None and self.offsets is not None
        width = self.input_size + self.horizon
        view = self.values.unfold(0, width, 1)  # [T - W + 1, C, W], no copy
        window = view[starts]  # [B, C, W]: only this batch is copied
        series = torch.searchsorted(self.offsets, starts, right=True) - 1  # [B]
        batch = {
            "x": window[:, :, : self.input_size].transpose(1, 2),
            "y": window[:, 0, self.input_size :],
            "series": series,
            "mase_scale": self.series_scales[series],
        }
        if self.state.calendar:  # a window holds no gap: its step k is at its first step's time + k steps
            step = self.series_steps[series]
            times = window_times(self.stamps[starts] + self.input_size * step, step, self.horizon)
            batch["calendar"] = calendar_features(times, self.state.calendar, self.unit)  # [B, H, K]
        return batch

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        starts = self.starts[split]

        def make_batch(index: Index) -> dict[str, Tensor]:
            return self._windows(starts[index])

        batches = TensorBatches({"start": starts}, make_batch)
        return batch_loader(batches, self.batch_size, shuffle, self.seed, process_share(self.trainer))

    def setup(self, stage: str) -> None:
        if stage != "predict" and self.values is None:
            self.prepare()

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    # ----- forecasting beyond the end -----
    def predict_dataloader(self) -> DataLoader:
        path = self.predict_path or self.path
        key = "data.init_args.predict_path" if self.predict_path else "data.init_args.path"
        return self.rows_loader(path, key)

    def rows_loader(self, source: TableSource, key: str = "model input") -> DataLoader:
        """One input window per series: the last ``input_size`` steps of each series of ``source`` (a file, or
        rows in memory in long form), to forecast the ``horizon`` steps after its end."""
        path = source_name(source)
        table = self._read_series(source, key)
        inputs, calendars, index = [], [], []
        for item in table.series:
            self._check_length(item, self.input_size, "a forecast (one input window)", path)
            last = item.values[-self.input_size :]
            if np.isnan(last).any() or item.breaks[len(item.breaks) - self.input_size + 1 :].any():
                raise DataError(
                    f"the last {self.input_size} steps of {series_name(item)} in '{path}' have missing "
                    "values or a gap; a forecast needs a complete input window."
                )
            inputs.append(self.fitted.scale(last).astype(np.float32))
            if self.state.calendar:  # the forecast steps: one step, two steps, ... after the last
                step = torch.tensor([item.step_count])
                times = window_times(torch.tensor([int(item.stamps[-1])]) + step, step, self.horizon)
                calendars.append(calendar_features(times, self.state.calendar, table.unit))
            future = item.last + item.step * np.arange(1, self.horizon + 1)
            index.append(
                pd.DataFrame({"series_id": item.series_id, "timestamp": future, "step": range(1, self.horizon + 1)})
            )
        self.forecast_index = pd.concat(index, ignore_index=True)
        batch = {"x": torch.from_numpy(np.stack(inputs))}  # [n_series, L, C]
        if calendars:
            batch["calendar"] = torch.cat(calendars)  # [n_series, H, K]
        return batch_loader(TensorBatches(batch), self.batch_size, shuffle=False, seed=self.seed)

    def predictions_frame(self, outputs: list[Tensor]) -> pd.DataFrame:
        """One row per (series, future step): ``timestamp``, ``step`` (1..horizon), ``prediction``."""
        assert self.forecast_index is not None, "predict_dataloader() makes the forecast index"
        frame = self.forecast_index.assign(prediction=torch.cat(outputs).reshape(-1).numpy())
        if self.series_id_column is None:
            return frame.drop(columns="series_id")
        return frame.rename(columns={"series_id": self.series_id_column})

    def example_rows(self, n_series: int = 2) -> pd.DataFrame:
        """The last ``input_size`` training rows of the first ``n_series`` series, in long form as the model
        takes them (value integers as floats, so a missing value is allowed): an MLflow model's input example.
        Reads the training file."""
        frame = read_table(self.path, "data.init_args.path", self.input_columns)
        ids = [self.series_id_column] if self.series_id_column else []
        if ids:
            frame = frame[frame[ids[0]].isin(frame[ids[0]].drop_duplicates().head(n_series))]
        stamps = frame[self.timestamp_column]
        if not pd.api.types.is_datetime64_any_dtype(stamps):  # text: in time order, not in text order
            text_format = self.state.text_format if self.state is not None else None
            # no text format settled: the file's reader parsed the text itself, which it does for ISO 8601 only
            stamps = pd.to_datetime(stamps, format=text_format or "ISO8601", errors="coerce", utc=True)
        frame = frame.iloc[np.lexsort([stamps.to_numpy(), *(frame[c].to_numpy() for c in ids)])]
        frame = frame.groupby(ids, sort=False).tail(self.input_size) if ids else frame.tail(self.input_size)
        return floats_for_integers(frame.reset_index(drop=True), (self.timestamp_column, *ids))

    # ----- checkpoint state -----
    def state_dict(self) -> dict[str, Any]:
        return {} if self.state is None else self.state.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.state = SeriesState.from_state_dict(state_dict)
