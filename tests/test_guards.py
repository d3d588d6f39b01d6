"""Data and hyperparameter guards: category labels canonicalised per value, out-of-range hyperparameters stopped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_tabular.data.preprocessing import MISSING_CODE, TabularPreprocessor, class_index
from ml_tabular.data.tabular import TabularDataModule
from ml_tabular.errors import ModelError
from ml_tabular.models.tabular import TabularMLP
from ml_tabular.models.timeseries import TimeSeriesMLP

MIXED = [1.0, 2.0, 2.5, np.nan, 1.0, 2.0, 1.0, 2.0]  # one non-whole value among whole floats


def frame_of(values: list | np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"c": values, "y": np.arange(len(values), dtype=float)})


def fit(values: list, rows: np.ndarray | None = None) -> TabularPreprocessor:
    """A preprocessor with the one categorical column ``c``, fitted on ``rows`` of ``values``."""
    return TabularPreprocessor([], ["c"], "y", "regression").fit(frame_of(values), "t.csv", rows)


def codes(prep: TabularPreprocessor, values: list | np.ndarray) -> list[int]:
    return prep.transform(frame_of(values), "t.csv", with_target=False)["x_cat"][:, 0].tolist()


# ----- category labels -----
def test_a_non_whole_float_does_not_change_the_labels_of_the_whole_ones():
    prep = fit(MIXED)

    assert prep.vocabularies["c"] == ["1", "2", "2.5"]
    seen = codes(prep, MIXED)
    assert [code for code, value in zip(seen, MIXED, strict=True) if np.isnan(value)] == [MISSING_CODE]
    assert all(code != MISSING_CODE for code, value in zip(seen, MIXED, strict=True) if not np.isnan(value))
    assert codes(prep, [1.0]) == [seen[0]]  # a predict file without 2.5 reads 1.0 as in training
    assert codes(prep, [2.0, 1.0, 2.5]) == [seen[1], seen[0], seen[2]]


def test_training_rows_keep_their_codes_when_a_non_whole_value_is_only_outside_them():
    train = np.arange(len(MIXED))[np.array(MIXED) != 2.5]  # 2.5 only in a validation row

    prep = fit(MIXED, rows=train)
    seen = codes(prep, MIXED)

    assert prep.vocabularies["c"] == ["1", "2"]
    assert seen == [1, 2, MISSING_CODE, MISSING_CODE, 1, 2, 1, 2]  # only 2.5 (unseen) and NaN get code 0


def test_integers_floats_and_mixed_objects_read_alike():
    prep = fit([1, 2, 1, 2])  # an integer column

    assert codes(prep, [1.0, 2.5, 2.0]) == [1, MISSING_CODE, 2]
    assert codes(prep, [2.0, "x", 1]) == [2, MISSING_CODE, 1]  # an object column
    assert codes(prep, np.array([1.0, 2.0], dtype=np.float32)) == [1, 2]


def test_text_labels_are_kept_as_typed():
    assert fit(["1.0", "a", "1", None]).vocabularies["c"] == ["1", "1.0", "a"]


def test_extreme_floats_get_labels():
    prep = fit([1e20, np.inf, -0.0, 0.1 + 0.2, 2.0**63])

    assert prep.vocabularies["c"] == ["0", "0.30000000000000004", str(10**20), str(2**63), "inf"]


@pytest.mark.parametrize(
    ("target", "classes", "index"),
    [
        ([0, 1, 1, 0], ["0", "1"], [0, 1, 1, 0]),
        ([0.0, 1.0, np.nan, 1.0], ["0", "1"], [0, 1, -1, 1]),
        ([0.0, 0.5, 1.0, 10.0], ["0", "0.5", "1", "10"], [0, 1, 2, 3]),
        (["b", "a", "b", None], ["a", "b"], [1, 0, 1, -1]),
    ],
)
def test_class_labels_are_canonical_per_value(target, classes, index):
    found, rows = class_index(pd.Series(target))

    assert found == classes
    assert rows.tolist() == index


def test_a_float_target_with_a_non_whole_class_encodes_rows_without_it():
    classes, _ = class_index(pd.Series([0.0, 0.5, 1.0, 0.0]))
    prep = TabularPreprocessor([], [], "y", "classification", classes=classes)

    assert prep.encode_target(pd.Series([1.0, 0.0]), "predict.csv").tolist() == [2, 0]


def prepared(frame: pd.DataFrame, tmp_path: Path) -> TabularDataModule:
    frame.to_csv(tmp_path / "table.csv", index=False)
    dm = TabularDataModule(str(tmp_path / "table.csv"), "y", categorical_columns=["c"], val_fraction=0.2)
    dm.setup("fit")
    return dm


def test_a_csv_category_column_with_a_non_whole_value_outside_training_keeps_the_training_codes(tmp_path: Path):
    n = 60
    frame = pd.DataFrame({"c": [1.0, 2.0] * (n // 2), "x": np.arange(n, dtype=float), "y": np.arange(n) % 2})
    whole = prepared(frame, tmp_path)
    i = whole.fitted.numeric_columns.index("x")
    val_row = round(whole.splits["val"]["x_num"][0, i].item() * whole.fitted.stds[i] + whole.fitted.means[i])
    frame.loc[val_row, "c"] = 2.5  # one validation row; the split does not depend on c

    dm = prepared(frame, tmp_path)

    assert dm.fitted.vocabularies["c"] == ["1", "2"]
    assert (dm.splits["train"]["x_cat"] != MISSING_CODE).all()


# ----- hyperparameters -----
BAD_HPARAMS = [
    ("dropout", 1.5),
    ("dropout", 1.0),
    ("dropout", -0.1),
    ("dropout", float("nan")),
    ("hidden_dims", [0]),
    ("hidden_dims", [32, -4]),
    ("lr", 0.0),
    ("lr", -1.0),
    ("weight_decay", -1.0),
]
MODELS = {
    "tabular": lambda **kwargs: TabularMLP(n_numeric=2, cardinalities=[3], **kwargs),
    "timeseries": lambda **kwargs: TimeSeriesMLP(input_size=4, horizon=2, **kwargs),
}


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("key", "value"), BAD_HPARAMS)
def test_out_of_range_hyperparameters_raise_one_line_naming_the_key(model, key, value):
    with pytest.raises(ModelError, match=rf"^model\.init_args\.{key} ") as raised:
        MODELS[model](**{key: value})

    assert "\n" not in str(raised.value)


def test_out_of_range_embedding_dims_raise_a_model_error():
    with pytest.raises(ModelError, match=r"model\.init_args\.embedding_dims entries must be >= 1, got \[0\]"):
        TabularMLP(n_numeric=2, cardinalities=[3], embedding_dims=[0])


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    "kwargs", [{"dropout": 0.0}, {"dropout": 0.99}, {"hidden_dims": []}, {"weight_decay": 0.0}, {"lr": 1e-6}]
)
def test_edge_values_in_range_build(model, kwargs):
    MODELS[model](**kwargs)  # an empty hidden_dims is a linear model
