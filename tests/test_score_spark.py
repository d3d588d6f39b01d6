"""``ml_tabular score --engine spark`` on ``local[2]``: the same answer as ``ml_tabular predict``, bound to loopback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ModelZoo, run_cli

pytestmark = pytest.mark.slow  # a Spark session takes ~20 s to start on 2 cores


def spark_score(model_zoo: ModelZoo, uri: str, source: Path, output: Path, *extra: str):
    return run_cli(
        "score", "--engine", "spark", "--spark-master", "local[2]", "--model", uri,
        "--input", str(source), "--output", str(output), "--chunk-rows", "7", *extra,
        cwd=output.parent, env={"MLFLOW_TRACKING_URI": model_zoo.store},
    )  # fmt: skip


@pytest.mark.parametrize(("kind", "source"), [("classifier", ".csv"), ("regressor", ".parquet")])
def test_spark_gives_what_predict_writes(model_zoo: ModelZoo, kind: str, source: str, tmp_path: Path) -> None:
    """A Parquet folder written by Spark, row for row (joined on the id column) equal to predict's to 1e-6."""
    trained = model_zoo.models[kind]
    rows = trained.rows_path
    if source == ".parquet":
        rows = tmp_path / "rows.parquet"
        trained.rows.to_parquet(rows, index=False)
    output = tmp_path / "scores.parquet"
    uri = trained.model_uri if kind == "classifier" else f"runs:/{trained.run_id}/model"
    done = spark_score(model_zoo, uri, rows, output, "--id-column", "id")
    assert done.returncode == 0, done.stderr[-4000:]
    assert output.is_dir() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    got = pd.read_parquet(output).sort_values("id").reset_index(drop=True)
    expected = model_zoo.models[kind].predicted
    assert got["id"].tolist() == trained.rows["id"].tolist()
    assert list(got.columns) == ["id", *expected.columns]
    if kind == "classifier":
        assert got["prediction"].astype(str).tolist() == expected["prediction"].astype(str).tolist()
    numbers = expected.select_dtypes("number").columns
    np.testing.assert_allclose(got[numbers].to_numpy(float), expected[numbers].to_numpy(float), rtol=0, atol=1e-6)
    assert f"{len(expected)} rows written to {output}" in done.stderr


def test_spark_refuses_a_forecaster_before_starting(model_zoo: ModelZoo, tmp_path: Path) -> None:
    trained = model_zoo.models["forecaster"]
    output = tmp_path / "scores.parquet"
    done = spark_score(model_zoo, trained.model_uri, trained.rows_path, output)
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ml_tabular: error: --engine spark: the model is a forecaster"), last
    assert not output.exists()
