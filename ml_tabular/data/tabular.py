"""``TabularDataModule``: a CSV/Parquet table -> preprocessed tensors in memory, split and batched."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from ml_tabular.data.batches import TensorBatches, batch_loader, process_share
from ml_tabular.data.io import (
    INPUT_ROWS,
    TABLE_HEAD_ROWS,
    TableFile,
    TableLike,
    file_sha256,
    floats_for_integers,
    require_columns,
)
from ml_tabular.data.preprocessing import TabularPreprocessor, class_index
from ml_tabular.data.splits import SPLITS, SplitDefinition, split_indices
from ml_tabular.errors import ConfigError, DataError

log = logging.getLogger(__name__)

MAX_AUTO_CLASSES = 20  # an integer target with at most this many values is read as classes by task=auto


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Validate split fractions: ``0 < val``, ``0 <= test`` and ``val + test < 1``."""
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"data.init_args.val_fraction={val_fraction} and test_fraction={test_fraction} must satisfy "
            "0 < val_fraction, 0 <= test_fraction and val_fraction + test_fraction < 1."
        )


@dataclass
class TabularState:
    """All a trained tabular model needs of its data, saved in every checkpoint.

    The fitted preprocessing (task, classes, vocabularies, scalers, target scale: the linked sizes follow
    from it) and the split definition. ``prepare()`` fits it from the training split; ``load_state_dict``
    restores it from a checkpoint, and then no data file is read until a split or a prediction is asked for.
    """

    preprocessor: TabularPreprocessor
    split: SplitDefinition | None  # None in checkpoints made before the split was recorded

    def state_dict(self) -> dict[str, Any]:
        return {
            "preprocessor": self.preprocessor.state_dict(),
            "split": None if self.split is None else asdict(self.split),
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> TabularState:
        split = state.get("split")
        return cls(TabularPreprocessor.from_state_dict(state["preprocessor"]), split and SplitDefinition(**split))


class TabularDataModule(pl.LightningDataModule):
    """A table of rows for classification or regression, split and preprocessed in memory.

    ``prepare()`` (or ``setup("fit")``) reads the table and fits the state (:class:`TabularState`) on the
    training split; a checkpoint restores the state instead, and the sizes the CLI links into the model are
    read from it.

    Args:
        path: CSV or Parquet file with one row per example.
        target: Column to predict.
        task: ``classification``, ``regression``, or ``auto`` (text/bool targets and integer targets with
            at most 20 distinct values are classes; anything else is regression).
        categorical_columns: Columns embedded as categories; ``null`` takes every non-numeric column.
        numeric_columns: Columns used as numbers; ``null`` takes every remaining column.
        drop_columns: Columns ignored entirely (ids, leaks).
        val_fraction: Share of rows for validation.
        test_fraction: Share of rows for the test split (0 for none).
        batch_size: Rows per batch.
        seed: Seed of the split and of the per-epoch shuffle order.
        predict_path: Table to predict on with ``predict`` (``null`` predicts on ``path``); the target
            column may be absent.
        numeric_transform: ``standard`` scales each numeric column by its training mean and std; ``quantile``
            first maps it through its training quantiles to normal scores (robust to skew and outliers).
        target_transform: ``log1p`` trains a regression on ``log(1 + y)`` (for skewed positive targets such as
            prices) and predicts on the original scale; ``none`` uses the target as is.
    """

    def __init__(
        self,
        path: str,
        target: str,
        task: Literal["auto", "classification", "regression"] = "auto",
        categorical_columns: list[str] | None = None,
        numeric_columns: list[str] | None = None,
        drop_columns: list[str] | None = None,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        batch_size: int = 256,
        seed: int = 42,
        predict_path: str | None = None,
        numeric_transform: Literal["standard", "quantile"] = "standard",
        target_transform: Literal["none", "log1p"] = "none",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)  # into checkpoints, so a model loads without its config
        check_fractions(val_fraction, test_fraction)
        if batch_size < 1:
            raise ConfigError(f"data.init_args.batch_size must be >= 1, got {batch_size}.")
        self.path = path
        self.target = target
        self.task = task
        self.categorical_columns = categorical_columns
        self.numeric_columns = numeric_columns
        self.drop_columns = drop_columns or []
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.batch_size = batch_size
        self.seed = seed
        self.predict_path = predict_path
        self.numeric_transform = numeric_transform
        self.target_transform = target_transform
        self.state: TabularState | None = None
        self.splits: dict[str, dict[str, torch.Tensor]] = {}
        self.table_head: pd.DataFrame | None = None  # first raw rows, describing the table (schema, example)
        self.table_rows = 0

    # ----- facts the model needs (linked by the CLI), all read from the state -----
    @property
    def dataset_name(self) -> str:
        """Name of the data set: the file name without suffix."""
        return Path(self.path).stem

    @property
    def n_numeric(self) -> int:
        """Width of the numeric input (scaled columns plus missing indicators)."""
        return self.fitted.n_numeric

    @property
    def cardinalities(self) -> list[int]:
        """Codes per categorical column (missing/unseen code included)."""
        return self.fitted.cardinalities

    @property
    def resolved_task(self) -> str:
        """``classification`` or ``regression``, after ``auto`` is decided."""
        return self.fitted.task

    @property
    def n_outputs(self) -> int:
        """Number of classes (classification) or 1 (regression)."""
        return len(self.fitted.classes) if self.fitted.task == "classification" else 1

    @property
    def target_mean(self) -> float:
        return self.fitted.target_mean

    @property
    def target_std(self) -> float:
        return self.fitted.target_std

    @property
    def fitted_target_transform(self) -> str:
        """The target transform the state was fitted with (``none`` for classification)."""
        return self.fitted.target_transform

    @property
    def fitted(self) -> TabularPreprocessor:
        """The fitted preprocessing of the state (``prepare()`` or a restored checkpoint makes it)."""
        if self.state is None:
            raise RuntimeError("TabularDataModule has no state yet: call prepare() (or setup('fit')) first.")
        return self.state.preprocessor

    # ----- preparation -----
    def prepare(self) -> None:
        """Read the training file, fit the state on its training split (unless one was restored) and build the splits.

        With a restored state, the file must be the one it was fitted on (same SHA-256): its splits are drawn
        again with the stored seed and fractions and transformed with the stored preprocessing, nothing refitted.
        """
        sha256 = file_sha256(self.path) if Path(self.path).is_file() else ""
        if sha256 and self.state is not None and self.state.split is not None:
            self.state.split.check_file(self.path, sha256)  # before reading: a changed file may not even parse
        table = TableFile(self.path)
        self.table_head, self.table_rows = table.head(TABLE_HEAD_ROWS), len(table)
        require_columns(table.columns, [self.target], "data.init_args.target", self.path)
        for key in ("categorical_columns", "numeric_columns", "drop_columns"):
            require_columns(table.columns, getattr(self, key) or [], f"data.init_args.{key}", self.path)
        split = self.state.split if self.state is not None and self.state.split is not None else None
        split = split or SplitDefinition(sha256, len(table), self.seed, self.val_fraction, self.test_fraction)
        prep, rows, sizes, y = self._plan(table, split)
        if self.state is None:
            self.state = TabularState(prep.fit(table, self.path, rows=rows[: sizes[0]]), split)
        tensors = prep.transform(table, self.path, with_target=y is None, rows=rows)
        if y is not None:
            tensors["y"] = y
        ends = np.cumsum(sizes)
        self.splits = {
            name: {k: t[end - size : end] for k, t in tensors.items()}
            for name, size, end in zip(SPLITS, sizes, ends, strict=True)
        }
        log.info(
            "data: %s rows (train %d, val %d, test %d), %d numeric + %d missing indicators, %d categorical",
            len(rows), *sizes, len(prep.numeric_columns), len(prep.indicator_columns), len(prep.categorical_columns),
        )  # fmt: skip

    def _plan(
        self, table: TableFile, split: SplitDefinition
    ) -> tuple[TabularPreprocessor, np.ndarray, list[int], torch.Tensor | None]:
        """The preprocessing (fitted if restored, else still to fit), the file rows in split order, the split sizes
        and the class indices.

        Rows come in split order (train, val, test), so each split is a slice (a view) of one set of
        tensors; rows whose target is missing are left out. The class indices (classification) stratify
        the split and come in the same order; a regression target is left to ``transform``, which scales it.
        """
        target, kept = self._usable_target(table[self.target])
        if self.state is None:
            task = self._resolve_task(target)
            categorical, numeric = self._column_roles(table)
            classes, strata = self._classes(target) if task == "classification" else ([], None)
            prep = TabularPreprocessor(
                numeric, categorical, self.target, task, classes=classes, numeric_transform=self.numeric_transform,
                target_transform=self.target_transform if task == "regression" else "none",
            )  # fmt: skip
        else:
            prep = self.state.preprocessor
            strata = prep.encode_target(target, self.path).numpy() if prep.task == "classification" else None
        index = self._split(len(target), strata, split)
        order = np.concatenate([index[name] for name in SPLITS])
        y = None if strata is None else torch.from_numpy(strata[order])
        return prep, order if kept is None else kept[order], [len(index[name]) for name in SPLITS], y

    def _classes(self, target: pd.Series) -> tuple[list[str], np.ndarray]:
        """Sorted target labels and each row's class index; a single class raises a :class:`DataError`."""
        classes, index = class_index(target)
        if len(classes) < 2:
            raise DataError(
                f"target '{self.target}' in '{self.path}' has a single class {classes}; classification needs "
                "at least two. Check the target column or the file."
            )
        return classes, index

    def _split(self, n_rows: int, strata: np.ndarray | None, split: SplitDefinition) -> dict[str, np.ndarray]:
        """Positions (among the usable rows) of each split, stratified by class index for classification."""
        index = split_indices(n_rows, split.val_fraction, split.test_fraction, split.seed, strata)
        if len(index["train"]) == 0 or len(index["val"]) == 0:
            raise DataError(
                f"'{self.path}' has {n_rows} usable rows: too few for a training and a validation split "
                f"with val_fraction={split.val_fraction}, test_fraction={split.test_fraction}."
            )
        return index

    def _usable_target(self, target: pd.Series) -> tuple[pd.Series, np.ndarray | None]:
        """The target without missing values, and the file rows it keeps (``None``: every row)."""
        missing = target.isna().to_numpy()
        if missing.all():
            raise DataError(f"target '{self.target}' in '{self.path}' is empty in every row.")
        if not missing.any():
            return target, None
        log.warning("data: dropped %d rows whose target '%s' is missing", missing.sum(), self.target)
        kept = np.flatnonzero(~missing)
        return target.iloc[kept].reset_index(drop=True), kept

    def _resolve_task(self, target: pd.Series) -> str:
        if self.task != "auto":
            return self.task
        numeric = pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target)
        n_unique = target.nunique()
        whole = numeric and bool((target == target.round()).all())
        task = "classification" if not numeric or (whole and n_unique <= MAX_AUTO_CLASSES) else "regression"
        log.info(
            "data: task=auto -> %s (target '%s' is %s with %d distinct values); "
            "set data.init_args.task to override",
            task, self.target, "numeric" if numeric else "non-numeric", n_unique,
        )  # fmt: skip
        return task

    def _column_roles(self, table: TableFile) -> tuple[list[str], list[str]]:
        used = {self.target, *self.drop_columns}
        if self.categorical_columns is None:
            rest = [c for c in table.columns if c not in used and c not in (self.numeric_columns or [])]
            categorical = [c for c in rest if not table.is_numeric(c)]
        else:
            categorical = list(self.categorical_columns)
        if self.numeric_columns is None:
            numeric = [c for c in table.columns if c not in used and c not in categorical]
        else:
            numeric = list(self.numeric_columns)
        overlap = (set(categorical) & set(numeric)) | ((set(categorical) | set(numeric)) & used)
        if overlap:
            raise ConfigError(
                f"column(s) {sorted(overlap)} are given more than one role (target, drop, categorical, "
                "numeric). Give each column one role in data.init_args."
            )
        if not categorical and not numeric:
            raise DataError(f"'{self.path}' has no input columns besides the target '{self.target}'.")
        return categorical, numeric

    # ----- Lightning hooks -----
    def setup(self, stage: str) -> None:
        if stage != "predict" and not self.splits:
            self.prepare()

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        tensors = self.splits[split]
        if len(tensors["y"]) == 0:
            raise ConfigError(f"the {split} split is empty: set data.init_args.{split}_fraction above 0.")
        return batch_loader(TensorBatches(tensors), self.batch_size, shuffle, self.seed, process_share(self.trainer))

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        path = self.predict_path or self.path
        key = "data.init_args.predict_path" if self.predict_path else "data.init_args.path"
        return self.rows_loader(TableFile(path, key), key, path)

    @property
    def input_columns(self) -> list[str]:
        """The raw columns the model reads."""
        return self.fitted.numeric_columns + self.fitted.categorical_columns

    def rows_loader(self, rows: TableLike, key: str = "model input", name: str = INPUT_ROWS) -> DataLoader:
        """Batches of raw ``rows`` (a file, or a DataFrame named ``name``) to predict on, with the fitted
        preprocessing; unseen categories take the unknown code, the target column may be absent."""
        require_columns(list(rows.columns), self.input_columns, key, name)
        tensors = self.fitted.transform(rows, name, with_target=False)
        return batch_loader(TensorBatches(tensors), self.batch_size, shuffle=False, seed=self.seed)

    def example_rows(self, n_rows: int = 5) -> pd.DataFrame:
        """The first training rows as the model takes them (input columns only, integers as floats so that a
        missing value is allowed): an MLflow model's input example."""
        assert self.table_head is not None, "prepare() reads the table head"
        return floats_for_integers(self.table_head[self.input_columns].head(n_rows))

    def predictions_frame(self, outputs: list[torch.Tensor]) -> pd.DataFrame:
        """Predictions as a table: ``prediction`` plus ``prob_<class>`` columns for classification."""
        values = torch.cat(outputs).numpy()
        fitted = self.fitted
        if fitted.task == "regression":
            return pd.DataFrame({"prediction": values.reshape(-1)})
        classes = np.array(fitted.classes, dtype=object)
        frame = pd.DataFrame({"prediction": classes[values.argmax(axis=1)]})
        for i, label in enumerate(fitted.classes):
            frame[f"prob_{label}"] = values[:, i]
        return frame

    # ----- checkpoint state -----
    def state_dict(self) -> dict[str, Any]:
        return {} if self.state is None else self.state.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.state = TabularState.from_state_dict(state_dict)
