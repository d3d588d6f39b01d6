"""``TabularDataModule`` and ``TabularPreprocessor`` in-process, on the tiny mixed table of ``conftest``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_table

from ml_tabular.data.splits import split_indices
from ml_tabular.data.tabular import TabularDataModule

SPLITS = ("train", "val", "test")
VAL, TEST = 0.2, 0.15


def fitted(path: str | Path, target: str = "y", **kwargs) -> TabularDataModule:
    """A DataModule on ``path`` with ``id`` kept as a numeric input (so rows can be traced), set up for fit."""
    options = {"drop_columns": ["amount"] if target == "y" else ["y"], "val_fraction": VAL, "test_fraction": TEST}
    dm = TabularDataModule(str(path), target, **{**options, **kwargs})
    dm.setup("fit")
    return dm


def row_ids(dm: TabularDataModule, split: str) -> np.ndarray:
    """File row numbers of ``split``, read back from its scaled ``id`` column."""
    prep = dm.fitted
    i = prep.numeric_columns.index("id")
    scaled = dm.splits[split]["x_num"][:, i].double().numpy()
    return np.rint(scaled * prep.stds[i] + prep.means[i]).astype(int)


def write(frame: pd.DataFrame, tmp_path: Path, name: str = "table.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_split_sizes_follow_the_fractions_and_rows_are_disjoint_and_complete(table_csv):
    frame = pd.read_csv(table_csv)
    dm = fitted(table_csv)
    ids = {split: row_ids(dm, split) for split in SPLITS}

    counts = frame["y"].value_counts()  # stratified: each class is rounded on its own
    for split, fraction in (("val", VAL), ("test", TEST)):
        assert len(ids[split]) == sum(round(n * fraction) for n in counts)
        assert abs(len(ids[split]) - len(frame) * fraction) <= len(counts)
    assert sum(len(v) for v in ids.values()) == len(frame)
    assert len(set(ids["train"]) | set(ids["val"]) | set(ids["test"])) == len(frame)
    assert sorted(np.concatenate(list(ids.values()))) == list(range(len(frame)))


def test_regression_split_sizes_are_the_rounded_fractions(table_csv):
    dm = fitted(table_csv, target="amount")

    sizes = {split: len(dm.splits[split]["y"]) for split in SPLITS}

    assert sizes == {"val": 32, "test": 24, "train": 160 - 32 - 24}  # round(160 * 0.2), round(160 * 0.15)


def test_same_seed_gives_the_same_split_and_another_seed_another(table_csv):
    first, again, other = fitted(table_csv, seed=1), fitted(table_csv, seed=1), fitted(table_csv, seed=2)

    for split in SPLITS:
        np.testing.assert_array_equal(row_ids(first, split), row_ids(again, split))
        torch.testing.assert_close(first.splits[split]["x_num"], again.splits[split]["x_num"])
    assert set(row_ids(first, "val")) != set(row_ids(other, "val"))


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_classification_split_is_stratified(tmp_path, seed):
    frame = make_table(300)
    frame["y"] = (np.arange(300) % 5 == 0).astype(int)  # 20 % positives
    dm = fitted(write(frame, tmp_path), seed=seed)

    for split in SPLITS:  # a plain random split of 45-195 rows strays by 0.03-0.06 (one std)
        share = dm.splits[split]["y"].float().mean().item()
        assert share == pytest.approx(frame["y"].mean(), abs=0.02), split


def test_numeric_scaling_is_fitted_on_training_rows_only(table_csv):
    frame = pd.read_csv(table_csv)
    dm = fitted(table_csv)
    train = frame.iloc[row_ids(dm, "train")]

    for column in ("x1", "x2"):
        i = dm.fitted.numeric_columns.index(column)
        values = train[column].dropna().to_numpy()
        assert dm.fitted.means[i] == pytest.approx(values.mean(), rel=1e-9)
        assert dm.fitted.stds[i] == pytest.approx(values.std(), rel=1e-9)
        assert dm.fitted.means[i] != pytest.approx(frame[column].mean(), rel=1e-6)
        assert dm.fitted.stds[i] != pytest.approx(frame[column].std(ddof=0), rel=1e-6)
    scaled = dm.splits["train"]["x_num"][:, dm.fitted.numeric_columns.index("x1")]
    assert scaled.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert scaled.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)


def test_missing_numeric_values_get_an_indicator_and_impute_to_zero(table_csv):
    frame = pd.read_csv(table_csv)
    dm = fitted(table_csv)
    prep = dm.fitted
    train = frame.iloc[row_ids(dm, "train")]
    x_num = dm.splits["train"]["x_num"]

    assert train["x2"].isna().any() and not train["x1"].isna().any()
    assert prep.indicator_columns == ["x2"]
    assert dm.n_numeric == len(prep.numeric_columns) + 1 == x_num.shape[1] == 4
    missing = torch.tensor(train["x2"].isna().to_numpy())
    x2 = x_num[:, prep.numeric_columns.index("x2")]
    indicator = x_num[:, len(prep.numeric_columns)]
    torch.testing.assert_close(indicator, missing.float())
    assert (x2[missing] == 0).all()
    assert (x2[~missing] != 0).all()


def test_missing_and_unseen_categories_map_to_code_zero(table_csv):
    frame = pd.read_csv(table_csv)
    dm = fitted(table_csv)
    prep = dm.fitted
    col = prep.categorical_columns.index("color")

    assert prep.vocabularies["color"] == ["blue", "green", "red"]
    assert dm.cardinalities == [4, 5]
    codes = prep.transform(frame, str(table_csv))["x_cat"][:, col].numpy()
    missing = frame["color"].isna().to_numpy()
    assert missing.any() and (codes[missing] == 0).all()
    expected = frame["color"][~missing].map({"blue": 1, "green": 2, "red": 3}).to_numpy()
    np.testing.assert_array_equal(codes[~missing], expected)

    new = frame.head(3).assign(color=["purple", "red", None], size=["XXL", "S", "M"])
    x_cat = prep.transform(new, "new.csv", with_target=False)["x_cat"]
    assert x_cat.tolist() == [[0, 0], [3, 3], [0, 2]]  # size vocabulary: L, M, S, XL


def test_auto_task_reads_a_binary_integer_target_as_two_classes(table_csv):
    dm = fitted(table_csv)

    assert (dm.resolved_task, dm.n_outputs, dm.fitted.classes) == ("classification", 2, ["0", "1"])
    assert dm.splits["train"]["y"].dtype == torch.int64


def test_auto_task_reads_a_float_target_as_regression_scaled_on_training_rows(table_csv):
    frame = pd.read_csv(table_csv)
    dm = fitted(table_csv, target="amount")
    train = frame["amount"].iloc[row_ids(dm, "train")].to_numpy()

    assert (dm.resolved_task, dm.n_outputs) == ("regression", 1)
    assert dm.target_mean == pytest.approx(train.mean(), rel=1e-9)
    assert dm.target_std == pytest.approx(train.std(), rel=1e-9)
    assert dm.target_mean != pytest.approx(frame["amount"].mean(), rel=1e-6)
    y = dm.splits["train"]["y"].double().numpy()
    np.testing.assert_allclose(y * dm.target_std + dm.target_mean, train, atol=1e-5)


def test_auto_task_reads_a_text_target_as_classes(tmp_path):
    frame = make_table()
    frame["label"] = np.where(frame["y"] == 1, "yes", "no")
    dm = fitted(write(frame, tmp_path), target="label", drop_columns=["y", "amount"])

    assert (dm.resolved_task, dm.n_outputs, dm.fitted.classes) == ("classification", 2, ["no", "yes"])
    torch.testing.assert_close(dm.splits["train"]["y"].unique(), torch.tensor([0, 1]))


def test_auto_task_reads_an_integer_target_with_many_values_as_regression(table_csv):
    dm = fitted(table_csv, target="id", drop_columns=["y", "amount"])

    assert (dm.resolved_task, dm.n_outputs) == ("regression", 1)


def test_categorical_columns_default_to_the_non_numeric_columns(table_csv):
    dm = fitted(table_csv)

    assert dm.fitted.categorical_columns == ["color", "size"]
    assert dm.fitted.numeric_columns == ["id", "x1", "x2"]
    assert dm.splits["train"]["x_cat"].shape[1] == 2


def test_state_dict_round_trip_transforms_rows_identically(table_csv, tmp_path):
    dm = fitted(table_csv)
    torch.save(dm.state_dict(), tmp_path / "state.pt")

    # the restored DataModule must not need the training file to transform new rows
    restored = TabularDataModule(str(tmp_path / "absent.csv"), "y", predict_path=str(table_csv))
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))

    assert restored.fitted == dm.fitted
    assert (restored.n_numeric, restored.cardinalities, restored.n_outputs) == (dm.n_numeric, dm.cardinalities, 2)
    expected = dm.fitted.transform(pd.read_csv(table_csv), str(table_csv), with_target=False)
    batch = next(iter(restored.predict_dataloader()))  # one batch: 160 rows < batch_size 256
    for key in ("x_num", "x_cat"):
        torch.testing.assert_close(batch[key], expected[key])


def test_predictions_frame_has_class_probabilities_for_classification(table_csv):
    dm = fitted(table_csv)
    probs = [torch.tensor([[0.9, 0.1], [0.3, 0.7]]), torch.tensor([[0.4, 0.6]])]

    frame = dm.predictions_frame(probs)

    assert list(frame.columns) == ["prediction", "prob_0", "prob_1"]
    assert frame["prediction"].tolist() == ["0", "1", "1"]
    np.testing.assert_allclose(frame["prob_1"], [0.1, 0.7, 0.6], rtol=1e-6)


def test_predictions_frame_has_only_the_prediction_for_regression(table_csv):
    dm = fitted(table_csv, target="amount")

    frame = dm.predictions_frame([torch.tensor([1.5, -2.0]), torch.tensor([3.0])])

    assert list(frame.columns) == ["prediction"]
    np.testing.assert_allclose(frame["prediction"], [1.5, -2.0, 3.0])


def test_parquet_input_gives_the_same_data_as_csv(table_csv, tmp_path):
    parquet = tmp_path / "table.parquet"
    pd.read_csv(table_csv).to_parquet(parquet, index=False)

    from_csv, from_parquet = fitted(table_csv), fitted(parquet)

    assert from_parquet.fitted == from_csv.fitted
    assert from_parquet.dataset_name == "table"
    for split in SPLITS:
        for key, tensor in from_csv.splits[split].items():
            torch.testing.assert_close(from_parquet.splits[split][key], tensor)


def test_rows_with_a_missing_target_are_left_out_and_the_others_keep_their_values(tmp_path):
    frame = make_table(200)
    frame["y"] = frame["y"].astype(float)
    frame.loc[::7, "y"] = np.nan
    path = tmp_path / "table.parquet"
    frame.to_parquet(path, index=False)
    dm = fitted(path)

    ids = np.concatenate([row_ids(dm, split) for split in SPLITS])
    assert sorted(ids) == np.flatnonzero(frame["y"].notna()).tolist()
    for split in SPLITS:
        rows = frame.iloc[row_ids(dm, split)]
        torch.testing.assert_close(dm.splits[split]["y"], torch.tensor(rows["y"].to_numpy(), dtype=torch.int64))
        i = dm.fitted.numeric_columns.index("x1")
        x1 = dm.splits[split]["x_num"][:, i].double().numpy() * dm.fitted.stds[i] + dm.fitted.means[i]
        np.testing.assert_allclose(x1, rows["x1"], atol=1e-5)


def test_predict_reads_a_file_without_the_target(table_csv, tmp_path):
    dm = fitted(table_csv)
    features = pd.read_csv(table_csv).drop(columns=["y", "amount"])
    dm.predict_path = str(tmp_path / "features.parquet")
    features.to_parquet(dm.predict_path, index=False)

    batch = next(iter(dm.predict_dataloader()))

    assert set(batch) == {"x_num", "x_cat"}
    expected = dm.fitted.transform(pd.read_csv(table_csv), str(table_csv), with_target=False)
    for key in ("x_num", "x_cat"):
        torch.testing.assert_close(batch[key], expected[key])


def test_pandas_index_of_a_parquet_file_is_not_an_input(tmp_path):
    path = tmp_path / "table.parquet"
    make_table().iloc[::2].to_parquet(path)  # a non-range index is stored as a column

    dm = fitted(path)

    assert dm.fitted.numeric_columns == ["id", "x1", "x2"]
    assert list(dm.table_head.columns) == list(make_table().columns)


def test_a_boolean_column_with_missing_values_defaults_to_categorical(tmp_path):
    frame = make_table()
    frame["flag"] = np.where(frame["id"] % 2 == 0, "True", "False")
    frame.loc[::9, "flag"] = None
    frame["done"] = frame["id"] % 3 == 0  # no missing values: a number

    dm = fitted(write(frame, tmp_path))

    assert dm.fitted.categorical_columns == ["color", "size", "flag"]
    assert dm.fitted.numeric_columns == ["id", "x1", "x2", "done"]


def test_split_indices_stratify_integer_classes_in_the_rounded_fractions():
    strata = np.random.default_rng(0).integers(0, 13, size=1000)

    index = split_indices(len(strata), 0.2, 0.1, seed=3, strata=strata)

    assert np.array_equal(np.sort(np.concatenate(list(index.values()))), np.arange(len(strata)))
    for name, fraction in (("val", 0.2), ("test", 0.1)):
        assert all(np.all(np.diff(rows) > 0) for rows in index.values())  # sorted, no repeats
        for k, count in enumerate(np.bincount(strata)):
            assert np.sum(strata[index[name]] == k) == round(count * fraction)
    again = split_indices(len(strata), 0.2, 0.1, seed=3, strata=strata)
    assert all(np.array_equal(index[name], again[name]) for name in SPLITS)


@pytest.mark.parametrize("name", ["table.csv", "table.parquet"])
def test_integers_beyond_float64_precision_load_as_numbers(tmp_path, name):
    frame = pd.DataFrame({"big": [2**60 + i for i in range(40)], "x": np.arange(40.0), "y": [0, 1] * 20})
    path = tmp_path / name
    frame.to_csv(path, index=False) if name.endswith(".csv") else frame.to_parquet(path)

    dm = fitted(path, task="classification", drop_columns=[])

    assert dm.fitted.numeric_columns == ["big", "x"]
    assert torch.isfinite(dm.splits["train"]["x_num"]).all()


def test_large_integer_ids_with_missing_values_stay_distinct_categories(tmp_path):
    ids = pd.array([2**60 + i % 4 for i in range(40)], dtype="Int64")
    ids[::10] = pd.NA
    frame = pd.DataFrame({"merchant": ids, "x": np.arange(40.0), "y": np.arange(40.0)})
    frame.to_parquet(tmp_path / "table.parquet")

    dm = fitted(tmp_path / "table.parquet", categorical_columns=["merchant"], drop_columns=[])

    assert dm.fitted.vocabularies["merchant"] == [str(2**60 + i) for i in range(4)]
    assert dm.cardinalities == [5]  # four ids and the missing/unseen code
