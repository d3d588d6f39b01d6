"""Fitted tabular preprocessing: imputation, missing indicators, scaling, category codes, target coding.

Everything is fitted on the training split only and kept as plain Python values, so the state
travels in a checkpoint (``state_dict``) and turns raw rows into tensors again at predict time.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from ml_tabular.errors import DataError

MISSING_CODE = 0  # reserved categorical code for missing and unseen values


def numeric_values(frame: pd.DataFrame, column: str, path: str) -> np.ndarray:
    """``frame[column]`` as float64; text that is not a number raises a :class:`DataError`."""
    series = frame[column]
    if pd.api.types.is_bool_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() & series.notna()
    if bad.any():
        examples = series[bad].astype(str).unique()[:3].tolist()
        raise DataError(
            f"column '{column}' in '{path}' is numeric in the config but holds text such as {examples}. "
            "List it in data.init_args.categorical_columns, drop it with data.init_args.drop_columns, "
            "or clean the file."
        )
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _take(values: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    return values if rows is None else values[rows]


def _take_series(series: pd.Series, rows: np.ndarray | None) -> pd.Series:
    return series if rows is None else series.iloc[rows].reset_index(drop=True)


def _nonzero(std: float) -> float:
    return std if std > 1e-12 else 1.0


def _as_labels(series: pd.Series) -> pd.Series:
    """Category labels as strings, missing values kept as NA (so ``1`` and ``1.0`` read alike)."""
    labels = series.astype("string")
    if pd.api.types.is_float_dtype(series):
        whole = series.dropna()
        if (whole == whole.round()).all():
            labels = series.astype("Int64").astype("string")
    return labels


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
        target_mean / target_std: Training target statistics (regression).
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

    def fit(
        self, frame: pd.DataFrame, classes: list[str], path: str, rows: np.ndarray | None = None
    ) -> TabularPreprocessor:
        """Fit statistics on the training rows ``rows`` of ``frame`` (all rows if ``None``).

        ``classes`` is the full target label set.
        """
        self.means, self.stds, self.indicator_columns = [], [], []
        for column in self.numeric_columns:
            values = _take(numeric_values(frame, column, path), rows)
            finite = values[~np.isnan(values)]
            self.means.append(float(finite.mean()) if finite.size else 0.0)
            std = float(finite.std()) if finite.size > 1 else 1.0
            self.stds.append(std if std > 1e-12 else 1.0)
            if finite.size < values.size:
                self.indicator_columns.append(column)
        self.vocabularies = {
            c: sorted(_as_labels(_take_series(frame[c], rows)).dropna().unique().tolist())
            for c in self.categorical_columns
        }
        self.classes = classes
        if self.task == "regression":
            target = _take(numeric_values(frame, self.target, path), rows)
            self.target_mean = float(np.nanmean(target))
            self.target_std = _nonzero(float(np.nanstd(target)))
        return self

    def transform(
        self, frame: pd.DataFrame, path: str, with_target: bool = True, rows: np.ndarray | None = None
    ) -> dict[str, torch.Tensor]:
        """Raw rows -> ``x_num [N, n_numeric]`` float32, ``x_cat [N, n_cat]`` int64 and ``y [N]``.

        ``rows`` picks and orders the rows (all, in file order, if ``None``); each output is filled
        column by column, so no second copy of the table is made.
        """
        n = len(frame) if rows is None else len(rows)
        x_num = np.empty((n, self.n_numeric), dtype=np.float32)
        for i, column in enumerate(self.numeric_columns):
            values = _take(numeric_values(frame, column, path), rows)
            missing = np.isnan(values)
            x_num[:, i] = np.where(missing, 0.0, (values - self.means[i]) / self.stds[i])
            if column in self.indicator_columns:
                x_num[:, len(self.numeric_columns) + self.indicator_columns.index(column)] = missing
        x_cat = np.empty((n, len(self.categorical_columns)), dtype=np.int64)
        for i, column in enumerate(self.categorical_columns):
            lookup = {label: code + 1 for code, label in enumerate(self.vocabularies[column])}
            labels = _as_labels(_take_series(frame[column], rows))
            x_cat[:, i] = labels.map(lookup).fillna(MISSING_CODE).to_numpy(dtype=np.int64)
        tensors = {"x_num": torch.from_numpy(x_num), "x_cat": torch.from_numpy(x_cat)}
        if with_target:
            tensors["y"] = self.encode_target(_take_series(frame[self.target], rows), path)
        return tensors

    def encode_target(self, target: pd.Series, path: str) -> torch.Tensor:
        """Class indices (int64) for classification, standardised float32 values for regression."""
        if self.task == "classification":
            index = {label: i for i, label in enumerate(self.classes)}
            codes = _as_labels(target).map(index)
            if codes.isna().any():
                unknown = _as_labels(target)[codes.isna()].unique()[:3].tolist()
                raise DataError(
                    f"target '{self.target}' in '{path}' holds labels {unknown} the model was not trained on "
                    f"(known: {self.classes[:10]})."
                )
            return torch.from_numpy(codes.to_numpy(dtype=np.int64, copy=True))
        values = (numeric_values(target.to_frame(), self.target, path) - self.target_mean) / self.target_std
        return torch.from_numpy(values.astype(np.float32))

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TabularPreprocessor:
        return cls(**state)


def target_labels(target: pd.Series) -> list[str]:
    """Sorted distinct labels of a classification target (numbers sort numerically)."""
    labels = _as_labels(target).dropna().unique().tolist()
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)
