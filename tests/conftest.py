"""Shared fixtures: tiny tables in tmp_path, a per-test SQLite tracking store, a CLI runner."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
TABULAR_CONFIG = REPO / "configs" / "tabular.yaml"
TIMESERIES_CONFIG = REPO / "configs" / "timeseries.yaml"
# test files that start servers, Spark, PostgreSQL or several training processes: marked ``heavy``, which plain
# ``pytest`` leaves out (pyproject's addopts) and ``make test`` runs after the rest (``pytest -m heavy``)
HEAVY_FILES = {
    "test_benchmark.py",
    "test_ddp.py",
    "test_score_spark.py",
    "test_serve.py",
    "test_spool.py",
    "test_team_server.py",
    "test_tune_ddp.py",
    "test_tune_workers.py",
    "test_ui.py",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in HEAVY_FILES:
            item.add_marker(pytest.mark.heavy)


def make_table(n_rows: int = 160, seed: int = 0) -> pd.DataFrame:
    """A small mixed table: numeric + categorical inputs, missing values, binary target ``y``."""
    rng = np.random.default_rng(seed)
    x1 = rng.normal(size=n_rows)
    x2 = rng.normal(5, 2, size=n_rows)
    color = rng.choice(["red", "green", "blue"], size=n_rows)
    size = rng.choice(["S", "M", "L", "XL"], size=n_rows)
    logit = 1.5 * x1 + (color == "red") * 1.0 - 0.3 * (x2 - 5)
    frame = pd.DataFrame(
        {
            "id": np.arange(n_rows),
            "x1": x1,
            "x2": x2,
            "color": color,
            "size": size,
            "y": (logit + rng.normal(scale=0.5, size=n_rows) > 0).astype(int),
            "amount": 3.0 * x1 + rng.normal(scale=0.1, size=n_rows),
        }
    )
    frame.loc[rng.random(n_rows) < 0.15, "x2"] = np.nan
    frame.loc[rng.random(n_rows) < 0.1, "color"] = None
    return frame


@pytest.fixture
def single_thread() -> Iterator[None]:
    """Run torch on one thread: on a busy 2-CPU machine, two spinning threads make many tiny steps take seconds."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def table_csv(tmp_path: Path) -> Path:
    path = tmp_path / "table.csv"
    make_table().to_csv(path, index=False)
    return path


def make_series(n_steps: int = 400, seed: int = 0) -> pd.DataFrame:
    """An hourly series with a daily cycle, trend, noise and a covariate; columns timestamp, value, temp."""
    rng = np.random.default_rng(seed)
    hour = np.arange(n_steps) % 24
    value = 10 + 5 * np.sin(2 * np.pi * hour / 24) + 0.01 * np.arange(n_steps) + rng.normal(0, 0.3, n_steps)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n_steps, freq="h"),
            "value": value,
            "temp": rng.normal(0, 1, n_steps),
        }
    )


@pytest.fixture
def series_csv(tmp_path: Path) -> Path:
    path = tmp_path / "series.csv"
    make_series().to_csv(path, index=False)
    return path


@pytest.fixture
def tracking_uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An initialised, empty SQLite tracking store (creating one takes seconds, copying it milliseconds)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(path.parent)  # the Default experiment's artifact folder is resolved against the cwd
        MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tracking_uri: str, empty_store: Path) -> str:
    """``tracking_uri``, holding an empty store before the code under test runs (so any run it made shows)."""
    shutil.copyfile(empty_store, tracking_uri.removeprefix("sqlite:///"))
    return tracking_uri


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Work in tmp_path, outside any git repository, with no MLFLOW_*/ML_TABULAR_* variables, and leak none:
    MLflow's ``set_tracking_uri`` (called by the logger) exports ``MLFLOW_TRACKING_URI``."""
    import mlflow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))  # git looks no further up
    for name in [n for n in os.environ if n.startswith(("MLFLOW_", "ML_TABULAR_"))]:
        monkeypatch.delenv(name)
    yield
    mlflow.set_tracking_uri(None)


def tabular_args(data_path: Path, tracking_uri: str, epochs: int = 2, log_model: bool = False) -> list[str]:
    """CLI args training the shipped tabular config on ``data_path`` (target ``y``) for a few epochs; the MLflow
    model only with ``log_model`` (it adds seconds to a run; tests/test_mlflow_model.py covers it)."""
    return [
        "--config", str(TABULAR_CONFIG),
        "--data.init_args.path", str(data_path),
        "--data.init_args.target", "y",
        "--data.init_args.categorical_columns", "[color, size]",
        "--data.init_args.drop_columns", "[id, amount]",
        "--data.init_args.batch_size", "32",
        "--trainer.max_epochs", str(epochs),
        "--trainer.enable_progress_bar", "false",
        "--mlflow.tracking_uri", tracking_uri,
        "--mlflow.log_model", str(log_model).lower(),
    ]  # fmt: skip


def only_run(tracking_uri: str, experiment: str = "ml_tabular_tabular_baselines"):
    """The client and the single run of ``experiment`` in the store (fails if there is not exactly one)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return client, runs[0]


def history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    """``(step, value)`` pairs of a metric, in logging order."""
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def artifacts(client, run_id: str, folder: str) -> set[str]:
    """Artifact paths directly under ``folder`` of a run."""
    return {a.path for a in client.list_artifacts(run_id, folder)}


def timeseries_args(data_path: Path, tracking_uri: str, epochs: int = 2, log_model: bool = False) -> list[str]:
    """CLI args training the shipped time-series config on ``data_path`` (target ``value``)."""
    return [
        "--config", str(TIMESERIES_CONFIG),
        "--data.init_args.path", str(data_path),
        "--data.init_args.target", "value",
        "--data.init_args.feature_columns", "[temp]",
        "--data.init_args.input_size", "24",
        "--data.init_args.horizon", "6",
        "--data.init_args.batch_size", "32",
        "--model.init_args.hidden_dims", "[32]",
        "--trainer.max_epochs", str(epochs),
        "--trainer.enable_progress_bar", "false",
        "--mlflow.tracking_uri", tracking_uri,
        "--mlflow.log_model", str(log_model).lower(),
    ]  # fmt: skip


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m ml_tabular ARGS`` in ``cwd`` as a user would; output is captured as text."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_TABULAR_"))}
    full_env["PYTHONWARNINGS"] = "ignore"
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "ml_tabular", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@dataclass
class TrainedModel:
    """A model trained by the CLI with its MLflow model logged (see :func:`model_zoo`).

    Attributes:
        run_id: Its MLflow run.
        model_uri: Its LoggedModel (``models:/m-...``).
        checkpoint: Its best checkpoint on disk.
        config: CLI args giving its config (``--config`` and the data overrides it was trained with).
        rows: Raw rows to predict on (integers as floats, as the signature asks), also saved as ``rows_path``.
        id_column: A column of ``rows`` the model does not read, or ``None``.
        predicted: What ``ml_tabular predict --ckpt_path`` writes for ``rows``: the reference answer of the
            pyfunc, ``score`` and ``serve`` tests (made after the training file was deleted).
    """

    run_id: str
    model_uri: str
    checkpoint: Path
    config: list[str]
    rows: pd.DataFrame
    rows_path: Path
    id_column: str | None = None
    predicted: pd.DataFrame | None = None

    def predict_with_cli(self, folder: Path) -> pd.DataFrame:
        """Run ``ml_tabular predict`` from the checkpoint on ``rows_path`` in ``folder``; its table."""
        output = folder / "predictions.parquet"
        done = run_cli(
            "predict", *self.config, "--mlflow.enabled", "false", "--ckpt_path", str(self.checkpoint),
            "--data.init_args.predict_path", str(self.rows_path), "--output", str(output), cwd=folder,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        return pd.read_parquet(output)


@dataclass
class ModelZoo:
    """A store with a ``classifier``, a ``regressor`` and a ``forecaster``, their training files deleted."""

    store: str
    folder: Path
    models: dict[str, TrainedModel]


def _train_for_zoo(name: str, args: list[str], folder: Path, store: str, rows: pd.DataFrame, id_column: str | None):
    from mlflow import MlflowClient

    work = folder / name
    work.mkdir()
    done = run_cli("fit", *args, "--mlflow.experiment_name", f"zoo_{name}", cwd=work)
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(store)
    run = client.search_runs([client.get_experiment_by_name(f"zoo_{name}").experiment_id])[0]
    model_id = run.outputs.model_outputs[-1].model_id
    checkpoint = next(path for path in work.rglob("epoch=*.ckpt"))
    rows_path = work / "rows.csv"
    rows.to_csv(rows_path, index=False)
    pairs = zip(args[::2], args[1::2], strict=True)
    config = [a for flag, value in pairs if not flag.startswith(("--trainer", "--mlflow")) for a in (flag, value)]
    return TrainedModel(run.info.run_id, f"models:/{model_id}", checkpoint, config, rows, rows_path, id_column)


@pytest.fixture(scope="session")
def model_zoo(tmp_path_factory: pytest.TempPathFactory, empty_store: Path) -> ModelZoo:
    """Three models trained once per session with ``mlflow.log_model`` on, in one SQLite store; the training
    files are deleted afterwards (a model must load from its checkpoint alone)."""
    folder = tmp_path_factory.mktemp("zoo")
    store = f"sqlite:///{folder / 'mlflow.db'}"
    shutil.copyfile(empty_store, folder / "mlflow.db")
    table, series = folder / "table.csv", folder / "series.csv"
    make_table(240).to_csv(table, index=False)
    make_series().to_csv(series, index=False)
    table_rows = make_table(40, seed=1).drop(columns=["y", "amount"]).astype({"id": "float64"})
    series_rows = make_series(60, seed=1)
    regression = ["--data.init_args.target", "amount", "--data.init_args.task", "regression"]
    regression += ["--data.init_args.drop_columns", "[id, y]"]
    models = {
        "classifier": _train_for_zoo(
            "classifier", tabular_args(table, store, log_model=True), folder, store, table_rows, "id"
        ),
        "regressor": _train_for_zoo(
            "regressor", [*tabular_args(table, store, log_model=True), *regression], folder, store, table_rows, "id"
        ),
        "forecaster": _train_for_zoo(
            "forecaster", timeseries_args(series, store, log_model=True), folder, store, series_rows, None
        ),
    }
    table.unlink()
    series.unlink()
    for name, trained in models.items():
        trained.predicted = trained.predict_with_cli(folder / name)
    return ModelZoo(store, folder, models)


@pytest.fixture(scope="session")
def postgresql():
    """A PostgreSQL server for the session (tests/postgres.py), on a free loopback port."""
    from postgres import running_postgres

    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def auth_server(postgresql, tmp_path_factory: pytest.TempPathFactory):
    """``ml_tabular server --auth`` on a PostgreSQL database, for the session (tests/team_server.py)."""
    from team_server import team_server

    uri = postgresql.create_database("mlflow")
    with team_server(tmp_path_factory.mktemp("auth_server"), uri, auth=True) as server:
        yield server


@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory: pytest.TempPathFactory):
    """``ml_tabular server`` on a SQLite store, without authentication, for the session."""
    from team_server import team_server

    folder = tmp_path_factory.mktemp("sqlite_server")
    with team_server(folder, f"sqlite:///{folder / 'mlflow.db'}", auth=False) as server:
        yield server
