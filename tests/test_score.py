"""``ml_tabular score``: any model URI, CSV or Parquet in chunks, the same answer as ``ml_tabular predict``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ModelZoo, TrainedModel, run_cli

from ml_tabular.cli import main

CHUNK_ROWS = "7"  # below the 40 (tabular) / 60 (series) rows scored: several chunks
ALIAS_NAME = "score_tests_classifier"  # a registered model of this file's own (the zoo's store is shared)


def numbers(frame: pd.DataFrame) -> np.ndarray:
    return frame.select_dtypes("number").to_numpy(dtype=np.float64)


def read_back(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)


@pytest.fixture(scope="module")
def uris(model_zoo: ModelZoo) -> dict[str, str]:
    """One URI of each form MLflow accepts: a registered alias, a run's model, a LoggedModel id."""
    import mlflow

    classifier = model_zoo.models["classifier"]
    mlflow.set_tracking_uri(model_zoo.store)  # the registry resolves a models:/m-... source in the current store
    try:
        version = mlflow.register_model(classifier.model_uri, ALIAS_NAME)
        mlflow.MlflowClient().set_registered_model_alias(ALIAS_NAME, "champion", version.version)
    finally:
        mlflow.set_tracking_uri(None)
    return {
        "classifier": f"models:/{ALIAS_NAME}@champion",
        "regressor": f"runs:/{model_zoo.models['regressor'].run_id}/model",
        "forecaster": model_zoo.models["forecaster"].model_uri,
    }


@pytest.fixture(scope="module")
def expected(model_zoo: ModelZoo) -> dict[str, pd.DataFrame]:
    """What ``ml_tabular predict --ckpt_path`` writes for each model's rows: the reference answer."""
    return {kind: trained.predicted for kind, trained in model_zoo.models.items()}


def input_file(trained: TrainedModel, suffix: str, folder: Path) -> Path:
    if suffix == ".csv":
        return trained.rows_path
    path = folder / "rows.parquet"
    trained.rows.to_parquet(path, index=False)
    return path


def assert_same_table(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    """Same columns, labels and timestamps; numbers to 1e-6 (a CSV reads class labels back as numbers)."""
    assert list(got.columns) == list(expected.columns)
    if expected["prediction"].dtype.kind not in "fi":
        assert got["prediction"].astype(str).tolist() == expected["prediction"].astype(str).tolist()
    if "timestamp" in expected:
        stamps = pd.to_datetime(got["timestamp"], utc=True)
        assert (stamps == pd.to_datetime(expected["timestamp"], utc=True)).all()
    columns = expected.select_dtypes("number").columns
    np.testing.assert_allclose(numbers(got[columns]), numbers(expected), rtol=0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["classifier", "regressor", "forecaster"])
@pytest.mark.parametrize(("source", "target"), [(".csv", ".parquet"), (".parquet", ".csv")])
def test_score_gives_what_predict_writes(model_zoo, uris, expected, kind, source, target, tmp_path) -> None:
    """In chunks of 7 rows, from every URI form, CSV -> Parquet and Parquet -> CSV: predict's table, to 1e-6."""
    trained = model_zoo.models[kind]
    output = tmp_path / f"scores{target}"
    ids = ["--id-column", trained.id_column] if trained.id_column else []
    done = run_cli(
        "score", "--model", uris[kind], "--input", str(input_file(trained, source, tmp_path)),
        "--output", str(output), "--chunk-rows", CHUNK_ROWS, *ids,
        cwd=tmp_path, env={"MLFLOW_TRACKING_URI": model_zoo.store},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = read_back(output)
    reference = expected[kind]
    if trained.id_column:
        assert got.columns[0] == trained.id_column
        assert got[trained.id_column].tolist() == trained.rows[trained.id_column].tolist()
        got = got.drop(columns=trained.id_column)
    assert_same_table(got, reference)
    assert f"{len(reference)} rows written to {output}" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary file left


@pytest.fixture
def scoring(model_zoo: ModelZoo, uris, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """Run ``ml_tabular score`` in this process on the zoo's store; returns (exit code, stderr lines)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", model_zoo.store)

    def score(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, list[str]]:
        capsys.readouterr()
        try:
            main(["score", *args])
            code = 0
        except SystemExit as exit_:
            code = exit_.code
        return code, capsys.readouterr().err.strip().splitlines()

    yield score
    import mlflow

    mlflow.set_tracking_uri(None)


def rows_file(model_zoo: ModelZoo, folder: Path, name: str, change=None) -> Path:
    """The classifier's rows, changed by ``change``, written to ``folder/name`` (CSV or Parquet)."""
    rows = model_zoo.models["classifier"].rows.copy()
    rows = change(rows) if change else rows
    path = folder / name
    rows.to_csv(path, index=False) if path.suffix == ".csv" else rows.to_parquet(path, index=False)
    return path


def with_text(rows: pd.DataFrame) -> pd.DataFrame:
    rows = rows.astype({"x1": str})  # numbers as text, as a Parquet file written from text would hold them
    rows.loc[20, "x1"] = "n/a yet"  # past the first chunk
    return rows


BAD_INPUTS = {
    # case: (uri, rows file, change, extra args, words the one line must hold)
    "unknown LoggedModel": ("models:/m-0123456789abcdef", "rows.csv", None, [], ["'models:/m-0123456789abcdef'"]),
    "unknown registered model": ("models:/no_such@champion", "rows.csv", None, [], ["'models:/no_such@champion'"]),
    "unknown alias": (f"models:/{ALIAS_NAME}@nope", "rows.csv", None, [], [f"'models:/{ALIAS_NAME}@nope'"]),
    "missing column": ("classifier", "rows.csv", lambda r: r.drop(columns="x1"), [], ["--input", "['x1']"]),
    "text in a numeric column (CSV)": ("classifier", "rows.csv", with_text, [], ["'x1'", "n/a yet"]),
    "text in a numeric column (Parquet)": ("classifier", "rows.parquet", with_text, [], ["'x1'", "n/a yet"]),
    "empty file": ("classifier", "rows.csv", lambda r: r.head(0), [], ["has no rows"]),
    "unknown id column": ("classifier", "rows.csv", None, ["--id-column", "row_id"], ["--id-column", "'row_id'"]),
    "id column for a forecaster": ("forecaster", "rows.csv", None, ["--id-column", "id"], ["--id-column", "series"]),
    "missing input file": ("classifier", "nothere.csv", None, [], ["--input", "nothere.csv", "does not exist"]),
    "unsupported output suffix": ("classifier", "rows.csv", None, ["--output", "s.xlsx"], ["--output", ".xlsx"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_leaves_no_output(scoring, model_zoo, uris, tmp_path, capsys, case) -> None:
    uri, name, change, extra, words = BAD_INPUTS[case]
    uri = uris.get(uri, uri)
    path = tmp_path / name if name == "nothere.csv" else rows_file(model_zoo, tmp_path, name, change)
    before = {p.name for p in tmp_path.iterdir()}
    code, lines = scoring(capsys, "--model", uri, "--input", str(path), "--output", "scores.parquet", *extra)
    errors = [line for line in lines if line.startswith("ml_tabular: error:")]
    assert code == 2 and len(errors) == 1, lines
    assert "Traceback" not in "\n".join(lines)
    for word in words:
        assert word in errors[0], errors[0]
    assert {p.name for p in tmp_path.iterdir()} == before  # no output, no temporary file


def test_run_without_a_model_names_the_uri(scoring, model_zoo, tmp_path, capsys) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(model_zoo.store)
    experiment = client.create_experiment("score_tests_no_model")
    run = client.create_run(experiment)
    client.set_terminated(run.info.run_id)
    path = rows_file(model_zoo, tmp_path, "rows.csv")
    uri = f"runs:/{run.info.run_id}/model"
    code, lines = scoring(capsys, "--model", uri, "--input", str(path), "--output", "scores.csv")
    assert code == 2 and lines[-1].startswith("ml_tabular: error:") and f"'{uri}'" in lines[-1], lines
    assert "mlflow.log_model" in lines[-1]
    assert not (tmp_path / "scores.csv").exists()


def test_integer_columns_are_scored_as_the_floats_the_signature_declares(scoring, model_zoo, tmp_path, capsys):
    """A Parquet file with an int64 feature column (MLflow refuses int64 for a double column) scores as floats."""
    path = rows_file(model_zoo, tmp_path, "ints.parquet", lambda r: r.assign(x1=r["x1"].round().astype("int64")))
    code, lines = scoring(capsys, "--model", model_zoo.models["classifier"].model_uri, "--input", str(path),
                          "--output", "scores.parquet", "--chunk-rows", CHUNK_ROWS)  # fmt: skip
    assert code == 0, lines
    floats = pd.read_parquet(path).astype({"x1": "float64"})
    import mlflow

    direct = mlflow.pyfunc.load_model(model_zoo.models["classifier"].model_uri).predict(floats.drop(columns="id"))
    np.testing.assert_allclose(numbers(pd.read_parquet(tmp_path / "scores.parquet")), numbers(direct), atol=1e-6)


def test_help_lists_the_flags(tmp_path) -> None:
    done = run_cli("score", "--help", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for flag in ("--model", "--input", "--output", "--id-column", "--chunk-rows", "--engine", "--spark-master"):
        assert flag in done.stdout


@pytest.mark.parametrize("command", ["score", "serve"])
def test_a_model_looked_up_where_no_store_is_creates_none(tmp_path: Path, command: str) -> None:
    flags = ["--input", "rows.csv", "--output", "out.csv"] if command == "score" else []
    done = run_cli(command, "--model", "models:/titanic@champion", *flags, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("ml_tabular: error: no MLflow tracking store at ")
    assert not (tmp_path / "mlruns" / "mlflow.db").exists(), "no store made in the user's folder"
