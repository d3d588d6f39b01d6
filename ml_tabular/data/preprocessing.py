"""Fitted tabular preprocessing: imputation, missing indicators, scaling, category codes, target coding.

Everything is fitted on the training split only and kept as plain Python values, so the state
travels in a checkpoint (``state_dict``) and turns raw rows into tensors again at predict time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch

from ml_tabular.data.io import TableLike, numeric_values, series_numbers
from ml_tabular.errors import DataError

MISSING_CODE = 0  # reserved categorical code for missing and unseen values
NUMERIC_BLOCK = 4  # numeric columns written to x_num per pass (a float32 buffer of this many columns)
N_QUANTILES = 256  # training quantiles kept per column by numeric_transform: quantile
QUANTILE_CLIP = 1e-4  # uniform scores are kept in [clip, 1 - clip]: the normal scores stay within +-3.7


def _quantiles(values: np.ndarray) -> list[float]:
    """``N_QUANTILES`` evenly spaced quantiles of the non-missing ``values`` (empty if all are missing)."""
    finite = values[~np.isnan(values)]
    if not finite.size:
        return []
    return np.quantile(finite, np.linspace(0, 1, min(N_QUANTILES, finite.size))).tolist()


def _normal_scores(values: np.ndarray, quantiles: list[float]) -> None:
    """Map ``values`` in place through the training quantiles to normal scores (missing stay NaN).

    Interpolated upwards and downwards and averaged, so a value repeated over many quantiles (a discrete
    feature) lands in the middle of its run, as scikit-learn's ``QuantileTransformer`` does.
    """
    if not quantiles:
        return
    q = np.asarray(quantiles)
    levels = np.linspace(0, 1, len(q))
    up = np.interp(values, q, levels)
    down = np.interp(-values, -q[::-1], levels[::-1])
    scores = np.clip(0.5 * (up + down), QUANTILE_CLIP, 1 - QUANTILE_CLIP)
    missing = np.isnan(values)
    values[:] = torch.special.ndtri(torch.from_numpy(scores)).numpy()
    values[missing] = np.nan


def _take(values: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return values if rows is None else values[rows]


def _take_series(series: pd.Series, rows: np.ndarray | None) -> pd.Series:
    return series if rows is None else series.iloc[rows]


def _gather(values: np.ndarray, rows: np.ndarray | None, out: np.ndarray) -> np.ndarray:
    """``values[rows]`` (all of ``values`` if ``rows`` is None), written into ``out``."""
    if rows is None:
        np.copyto(out, values)
        return out
    return np.take(values, rows, out=out, mode="clip")  # "raise" would buffer the output


def _nonzero(std: float) -> float:
    return std if std > 1e-12 else 1.0


def _moments(values: np.ndarray) -> tuple[float, float, bool]:
    """Mean and std (1.0 if constant or single) of the non-missing ``values``, and whether any is missing."""
    missing = np.isnan(values)
    has_missing = bool(missing.any())
    finite = values[~missing] if has_missing else values
    mean = float(finite.mean()) if finite.size else 0.0
    std = float(finite.std()) if finite.size > 1 else 1.0
    return mean, _nonzero(std), has_missing


def _float_labels(values: pd.Series) -> pd.Series:
    """Labels of floats: a whole number as its integer text (``1.0`` -> ``"1"``), any other as pandas writes it.

    Each value is labelled on its own, so a value reads the same whatever other values its column holds.
    """
    numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
    whole = np.isfinite(numbers)
    whole[whole] = numbers[whole] == np.trunc(numbers[whole])
    fits = whole & (np.abs(numbers) < 2.0**63)
    # Arrow writes int64 as text in one pass, ~10x faster than numpy's str: millions of distinct ids add up
    labels = pc.cast(pa.array(np.where(fits, numbers, 0.0).astype(np.int64)), pa.string())
    if not fits.all():
        others = values[~fits].astype("string").to_numpy(dtype=object, na_value=None)  # 2.5, inf, NA; float32 as such
        beyond = whole[~fits]  # whole but past int64 (1e20): exact text from Python ints, not "1e+20"
        others[beyond] = [str(int(number)) for number in numbers[~fits][beyond]]
        labels = pc.replace_with_mask(labels, pa.array(~fits), pa.array(others, pa.string()))
    return pd.Series(pd.array(labels, dtype="string"), index=values.index)


def _object_label(value: Any) -> str:
    """One value of a mixed column as a label: a whole float as its integer text, anything else as ``str``."""
    if isinstance(value, float | np.floating) and np.isfinite(value) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _as_labels(values: pd.Series) -> pd.Series:
    """Category labels of ``values`` as strings, missing kept as NA, each value canonicalised on its own.

    Numbers read alike whatever their dtype: ``1`` and ``1.0`` both give ``"1"``, and a non-whole float
    keeps its shortest text (``"2.5"``). Text is kept as typed (``"1.0"`` stays ``"1.0"``): a text
    column's labels are the user's words, not numbers to reformat. Booleans give ``"True"``/``"False"``.
    Meant for the distinct values of a column (see ``_distinct_labels``): a float or text column costs
    one vectorised pass, a mixed (object) column one Python call per value.
    """
    if isinstance(values.dtype, pd.CategoricalDtype):  # a dictionary-encoded Parquet column: label its values
        values = values.astype(values.dtype.categories.dtype)
    if pd.api.types.is_float_dtype(values):
        return _float_labels(values)
    if values.dtype == object:
        return values.map(_object_label, na_action="ignore").astype("string")
    return values.astype("string")


def _distinct_labels(series: pd.Series) -> tuple[np.ndarray, pd.Series]:
    """Each row's index into the distinct values of ``series`` (-1 if missing), and their labels (``_as_labels``).

    Labels are made once per distinct value, not once per row.
    """
    codes, uniques = pd.factorize(series)
    return codes, _as_labels(pd.Series(uniques))


def _vocabulary(series: pd.Series) -> list[str]:
    return sorted(_distinct_labels(series)[1].unique().tolist())


def _look_up(codes: np.ndarray, labels: pd.Series, lookup: dict[str, int], default: int) -> np.ndarray:
    """Row labels ``labels[codes]`` looked up in ``lookup`` (int64); missing and unknown labels give ``default``."""
    found = labels.map(lookup).fillna(default).to_numpy(dtype=np.int64)
    return np.append(found, default)[codes]  # code -1 (missing) picks the appended default


@dataclass
class TabularPreprocessor:
    """Column roles plus statistics fitted on the training split.

    Attributes:
        numeric_columns: Numeric input columns, in model order.
        categorical_columns: Categorical input columns, in model order.
        target: Target column.
        task: ``classification`` or ``regression``.
        means / stds: Training mean and std per numeric column (std 1.0 where constant).
        indicator_columns: Numeric columns that had missing training values; each adds a 0/1 feature.
        vocabularies: Training labels per categorical column; code ``i + 1`` is label ``i``, 0 is missing/unseen.
        classes: Target labels (classification); class index ``i`` is ``classes[i]``.
        target_mean / target_std: Training target statistics (regression), after ``target_transform``.
        numeric_transform: ``standard`` scales numeric columns by mean and std; ``quantile`` first maps them
            through their training quantiles to normal scores (robust to skew and outliers).
        quantiles: Training quantiles per numeric column (``quantile`` only).
        target_transform: ``log1p`` fits and predicts ``log(1 + y)`` (regression); ``none`` the target as is.
    """

    numeric_columns: list[str]
    categorical_columns: list[str]
    target: str
    task: str
    means: list[float] = field(default_factory=list)
    stds: list[float] = field(default_factory=list)
    indicator_columns: list[str] = field(default_factory=list)
    vocabularies: dict[str, list[str]] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    target_mean: float = 0.0
    target_std: float = 1.0
    numeric_transform: str = "standard"
    quantiles: list[list[float]] = field(default_factory=list)
    target_transform: str = "none"

    @property
    def n_numeric(self) -> int:
        """Width of the numeric input: scaled columns plus missing indicators."""
        return len(self.numeric_columns) + len(self.indicator_columns)

    @property
    def cardinalities(self) -> list[int]:
        """Codes per categorical column, the reserved missing/unseen code included."""
        return [len(self.vocabularies[c]) + 1 for c in self.categorical_columns]

    def feature_groups(self) -> dict[str, tuple[list[int], list[int]]]:
        """Raw column -> (its ``x_num`` columns, its ``x_cat`` columns); a missing indicator goes with its column."""
        groups: dict[str, tuple[list[int], list[int]]] = {}
        for i, column in enumerate(self.numeric_columns):
            groups[column] = ([i], [])
        for k, column in enumerate(self.indicator_columns):
            groups[column][0].append(len(self.numeric_columns) + k)
        for j, column in enumerate(self.categorical_columns):
            groups[column] = ([], [j])
        return groups

    def fit(self, frame: TableLike, path: str, rows: np.ndarray | None = None) -> TabularPreprocessor:
        """Fit statistics on the training rows ``rows`` of ``frame`` (all rows if ``None``)."""
        self.means, self.stds, self.indicator_columns, self.quantiles = [], [], [], []
        buffer = np.empty(len(frame) if rows is None else len(rows))
        for column in self.numeric_columns:
            values = _gather(numeric_values(frame, column, path), rows, buffer)
            if self.numeric_transform == "quantile":
                self.quantiles.append(_quantiles(values))
                _normal_scores(values, self.quantiles[-1])
            mean, std, has_missing = _moments(values)
            self.means.append(mean)
            self.stds.append(std)
            if has_missing:
                self.indicator_columns.append(column)
        self.vocabularies = {c: _vocabulary(_take_series(frame[c], rows)) for c in self.categorical_columns}
        if self.task == "regression":
            target = self._transformed_target(_take(numeric_values(frame, self.target, path), rows), path)
            self.target_mean = float(np.nanmean(target))
            self.target_std = _nonzero(float(np.nanstd(target)))
        return self

    def transform(
        self, frame: TableLike, path: str, with_target: bool = True, rows: np.ndarray | None = None
    ) -> dict[str, torch.Tensor]:
        """Raw rows -> ``x_num [N, n_numeric]`` float32, ``x_cat [N, n_cat]`` int64 and ``y [N]``.

        ``rows`` picks and orders the rows (all, in file order, if ``None``). ``frame`` is read a
        column at a time and each output filled in place, so no second copy of the table is made; the
        target comes first, so its temporaries are gone before ``x_num`` is allocated.
        """
        y = self.encode_target(_take_series(frame[self.target], rows), path) if with_target else None
        n = len(frame) if rows is None else len(rows)
        x_cat = np.empty((n, len(self.categorical_columns)), dtype=np.int64)
        for i, column in enumerate(self.categorical_columns):
            lookup = {label: code + 1 for code, label in enumerate(self.vocabularies[column])}
            x_cat[:, i] = _look_up(*_distinct_labels(_take_series(frame[column], rows)), lookup, MISSING_CODE)
        tensors = {"x_num": torch.from_numpy(self._numeric(frame, path, rows, n)), "x_cat": torch.from_numpy(x_cat)}
        return tensors if y is None else tensors | {"y": y}

    def _numeric(self, frame: TableLike, path: str, rows: np.ndarray | None, n: int) -> np.ndarray:
        """Scaled numeric columns (missing -> 0), then the missing indicators, as one float32 matrix.

        Columns are scaled into a row-major block of ``NUMERIC_BLOCK`` and copied into the matrix
        together: a strided pass over the matrix per block, not per column.
        """
        x_num = np.empty((n, self.n_numeric), dtype=np.float32)
        values, missing = np.empty(n), np.empty(n, dtype=bool)
        block = np.empty((min(NUMERIC_BLOCK, len(self.numeric_columns)), n), dtype=np.float32)
        for start in range(0, len(self.numeric_columns), NUMERIC_BLOCK):
            columns = self.numeric_columns[start : start + NUMERIC_BLOCK]
            for j, column in enumerate(columns):
                _gather(numeric_values(frame, column, path), rows, values)
                if self.quantiles:
                    _normal_scores(values, self.quantiles[start + j])
                np.isnan(values, out=missing)
                values -= self.means[start + j]
                np.divide(values, self.stds[start + j], out=block[j])
                block[j][missing] = 0.0
                if column in self.indicator_columns:
                    x_num[:, len(self.numeric_columns) + self.indicator_columns.index(column)] = missing
            x_num[:, start : start + len(columns)] = block[: len(columns)].T
        return x_num

    def encode_target(self, target: pd.Series, path: str) -> torch.Tensor:
        """Class indices (int64) for classification, standardised float32 values for regression."""
        if self.task == "classification":
            codes = _look_up(*_distinct_labels(target), {label: i for i, label in enumerate(self.classes)}, -1)
            if (codes < 0).any():
                unknown = _as_labels(target)[codes < 0].unique()[:3].tolist()
                raise DataError(
                    f"target '{self.target}' in '{path}' holds labels {unknown} the model was not trained on "
                    f"(known: {self.classes[:10]})."
                )
            return torch.from_numpy(codes)
        values = self._transformed_target(series_numbers(target, self.target, path), path)
        return torch.from_numpy(((values - self.target_mean) / self.target_std).astype(np.float32))

    def _transformed_target(self, values: np.ndarray, path: str) -> np.ndarray:
        """``values`` after ``target_transform``; ``log1p`` of a value <= -1 raises a :class:`DataError`."""
        if self.target_transform != "log1p":
            return values
        if (values <= -1).any():
            raise DataError(
                f"target '{self.target}' in '{path}' has values <= -1 (min {np.nanmin(values)}), which "
                "data.init_args.target_transform log1p cannot take. Use target_transform none."
            )
        return np.log1p(values)

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TabularPreprocessor:
        return cls(**state)


def class_index(target: pd.Series) -> tuple[list[str], np.ndarray]:
    """Sorted distinct labels of a classification target (numbers sort numerically), and each row's index in them.

    A missing label has index -1.
    """
    codes, labels = _distinct_labels(target)
    distinct = labels.unique().tolist()
    try:
        classes = sorted(distinct, key=float)
    except ValueError:
        classes = sorted(distinct)
    return classes, _look_up(codes, labels, {label: i for i, label in enumerate(classes)}, -1)
