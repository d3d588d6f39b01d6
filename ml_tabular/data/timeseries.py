"""``TimeSeriesDataModule``: one or many series -> sliding windows (views), split by time."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from ml_tabular.data.batches import Index, TensorBatches, batch_loader
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
from ml_tabular.data.series import CHUNK_ROWS, SINGLE_SERIES, Series, SeriesTable, read_series
from ml_tabular.data.splits import SplitDefinition
from ml_tabular.data.tabular import check_fractions
from ml_tabular.data.windows import (
    chronological_bounds,
    clean_windows,
    missing_steps,
    seasonal_naive_errors,
    valid_window_starts,
)
from ml_tabular.errors import ConfigError, DataError

log = logging.getLogger(__name__)


@dataclass
class SeriesScaling:
    """Statistics fitted on the training stretches: target and covariate scaling, MASE scale."""

    target_mean: float
    target_std: float
    feature_means: list[float]
    feature_stds: list[float]
    mase_scale: float

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


@dataclass
class SeriesState:
    """All a trained time-series model needs of its data, saved in every checkpoint.

    The scaling fitted on the training stretches (target scale, MASE scale), the split definition, the
    format text timestamps were read in, and each series' id and last training timestamp (ISO 8601).
    """

    scaling: SeriesScaling
    split: SplitDefinition | None  # None in checkpoints made before the split was recorded
    text_format: str | None = None
    series_ids: list[str] = field(default_factory=list)
    last_timestamps: list[str] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        state = asdict(self)
        state["split"] = None if self.split is None else asdict(self.split)
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> SeriesState:
        state = dict(state)
        split = state.pop("split", None)
        scaling = SeriesScaling(**state.pop("scaling"))
        return cls(scaling, split and SplitDefinition(**split), **state)


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    """``np.concatenate(parts)``, without copying a single part."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _std(values: np.ndarray) -> float:
    std = float(np.nanstd(values))
    return std if std > 1e-12 else 1.0


class TimeSeriesDataModule(pl.LightningDataModule):
    """Sliding windows of ``input_size`` past steps predicting the next ``horizon`` steps.

    Each series is split by time: train is the first stretch, then validation, then test; a window
    lies wholly inside one stretch. Windows are views into the stored series (``Tensor.unfold``);
    a window holding a missing value (target or covariate) or a gap in the timestamps is skipped,
    and the count is logged. Target and covariates are standardised with training-stretch statistics.

    Args:
        path: CSV or Parquet file in long format: one row per (series, timestamp).
        target: Column to forecast.
        timestamp_column: Column with the time of each row: dates/times as stored, ISO 8601 text, or other text.
        timestamp_format: strptime format of a text timestamp column (e.g. ``%d/%m/%Y %H:%M``); ``null``: the
            format pandas guesses from the first value (day first if only that reads every value).
        feature_columns: Past covariates fed to the model beside the target (``null`` for none).
        series_id_column: Column naming the series of each row, for several series in one table.
        input_size: Past steps the model sees.
        horizon: Future steps it predicts.
        stride: Steps between consecutive window starts.
        season_length: Season of the seasonal-naive error that scales MASE (1 = naive, no season).
        val_fraction: Share of each series' steps (the end, before test) for validation.
        test_fraction: Share of each series' last steps for test.
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
        self.path = path
        self.target = target
        self.timestamp_column = timestamp_column
        self.timestamp_format = timestamp_format
        self.feature_columns = feature_columns or []
        self.series_id_column = series_id_column
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
        """Mean in-sample seasonal-naive absolute error of the training stretches (original scale)."""
        return self.fitted.mase_scale

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

    def _name(self, item: Series) -> str:
        return "the series" if item.series_id == SINGLE_SERIES else f"series '{item.series_id}'"

    def _check_length(self, item: Series, needed: int, what: str, path: str | None = None) -> None:
        if len(item.values) < needed:
            raise DataError(
                f"{self._name(item)} in '{path or self.path}' has {len(item.values)} steps; {what} needs at least "
                f"{needed} (input_size={self.input_size}, horizon={self.horizon}). "
                + (
                    f"Send the last {needed} steps of each series."
                    if path == INPUT_ROWS
                    else "Use a smaller input_size/horizon or a longer series."
                )
            )

    def _split_bounds(self, item: Series, definition: SplitDefinition) -> dict[str, tuple[int, int]]:
        width = self.input_size + self.horizon
        self._check_length(item, width, "one window of input_size + horizon")
        split = chronological_bounds(len(item.values), definition.val_fraction, definition.test_fraction)
        for name, (begin, end) in split.items():
            if (name != "test" or definition.test_fraction > 0) and end - begin < width:
                raise DataError(
                    f"the {name} stretch of {self._name(item)} in '{self.path}' has {end - begin} steps, fewer than "
                    f"input_size + horizon = {width}: no window fits. Lower input_size/horizon or raise "
                    "data.init_args.val_fraction/test_fraction."
                )
        return split

    # ----- preparation -----
    def prepare(self) -> None:
        """Read the training series, fit the state on the training stretches (unless one was restored), build windows.

        With a restored state, the file must be the one it was fitted on (same SHA-256): the stretches are cut
        with the stored fractions and scaled with the stored statistics, nothing refitted.
        """
        restored = self.state
        sha256 = file_sha256(self.path) if Path(self.path).is_file() else ""
        if restored is not None and restored.split is not None:
            restored.split.check_file(self.path, sha256)
        table = self._read_series(self.path, "data.init_args.path")
        self.table_head, self.table_rows = table.head, len(table.values)
        values, series = table.values, table.series
        split = restored.split if restored is not None and restored.split is not None else None
        split = split or SplitDefinition(sha256, len(values), self.seed, self.val_fraction, self.test_fraction)
        bounds = [self._split_bounds(item, split) for item in series]
        if restored is None:
            self.state = SeriesState(
                self._fit_scaling(series, bounds),
                split,
                table.text_format,
                [str(item.series_id) for item in series],
                [item.last.isoformat() for item in series],
            )
        self._build_windows(values, series, bounds, split)

    def _fit_scaling(self, series: list[Series], bounds: list[dict[str, tuple[int, int]]]) -> SeriesScaling:
        trains = [item.values[slice(*b["train"])] for item, b in zip(series, bounds, strict=True)]
        mase_scale = self._mase_scale(trains)
        train = _joined(trains)
        n_features = len(self.feature_columns)
        return SeriesScaling(
            target_mean=float(np.nanmean(train[:, 0])),
            target_std=_std(train[:, 0]),
            feature_means=[float(np.nanmean(train[:, 1 + i])) for i in range(n_features)],
            feature_stds=[_std(train[:, 1 + i]) for i in range(n_features)],
            mase_scale=mase_scale,
        )

    def _mase_scale(self, trains: list[np.ndarray]) -> float:
        """Mean seasonal-naive absolute error over the training stretches (1 if there is none)."""
        naive = _joined([seasonal_naive_errors(train[:, 0], self.season_length) for train in trains])
        return float(naive.mean()) if naive.size and naive.mean() > 0 else 1.0

    def _build_windows(
        self,
        values: np.ndarray,
        series: list[Series],
        bounds: list[dict[str, tuple[int, int]]],
        definition: SplitDefinition,
    ) -> None:
        """Window starts of each split, then ``values`` (all series end to end) standardised in place."""
        index_type = np.int32 if len(values) < 2**31 else np.int64
        starts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
        offset = 0
        for item, split in zip(series, bounds, strict=True):
            for name, found in self._window_starts(item, split, index_type).items():
                found += offset
                starts[name].append(found)
            offset += len(item.values)
        self.fitted.scale_in_place(values)
        self.values = torch.from_numpy(values)
        self.starts = {name: torch.from_numpy(_joined(parts)) for name, parts in starts.items()}
        for name in ("train", "val", "test") if definition.test_fraction > 0 else ("train", "val"):
            if len(self.starts[name]) == 0:
                raise DataError(
                    f"the {name} stretch of '{self.path}' has no complete window: every window holds a gap or a "
                    "missing value. Fill the gaps, or lower input_size/horizon."
                )
        width = self.input_size + self.horizon
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
        assert self.values is not None
        view = self.values.unfold(0, self.input_size + self.horizon, 1)  # [T - W + 1, C, W], no copy
        window = view[starts]  # [B, C, W]: only this batch is copied
        return {"x": window[:, :, : self.input_size].transpose(1, 2), "y": window[:, 0, self.input_size :]}

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        starts = self.starts[split]

        def make_batch(index: Index) -> dict[str, Tensor]:
            return self._windows(starts[index])

        return batch_loader(TensorBatches({"start": starts}, make_batch), self.batch_size, shuffle, self.seed)

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
        series = self._read_series(source, key).series
        inputs, index = [], []
        for item in series:
            self._check_length(item, self.input_size, "a forecast (one input window)", path)
            last = item.values[-self.input_size :]
            if np.isnan(last).any() or item.breaks[len(item.breaks) - self.input_size + 1 :].any():
                raise DataError(
                    f"the last {self.input_size} steps of {self._name(item)} in '{path}' have missing "
                    "values or a gap; a forecast needs a complete input window."
                )
            inputs.append(self.fitted.scale(last).astype(np.float32))
            future = item.last + item.step * np.arange(1, self.horizon + 1)
            index.append(
                pd.DataFrame({"series_id": item.series_id, "timestamp": future, "step": range(1, self.horizon + 1)})
            )
        self.forecast_index = pd.concat(index, ignore_index=True)
        x = torch.from_numpy(np.stack(inputs))  # [n_series, L, C]
        return batch_loader(TensorBatches({"x": x}), self.batch_size, shuffle=False, seed=self.seed)

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
            stamps = pd.to_datetime(stamps, format=text_format or "mixed", errors="coerce", utc=True)
        frame = frame.iloc[np.lexsort([stamps.to_numpy(), *(frame[c].to_numpy() for c in ids)])]
        frame = frame.groupby(ids, sort=False).tail(self.input_size) if ids else frame.tail(self.input_size)
        return floats_for_integers(frame.reset_index(drop=True), (self.timestamp_column, *ids))

    # ----- checkpoint state -----
    def state_dict(self) -> dict[str, Any]:
        return {} if self.state is None else self.state.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.state = SeriesState.from_state_dict(state_dict)
