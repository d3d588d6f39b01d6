"""Time-series mistakes stop before training: exit code 2, one ``ml_tabular: error:`` line naming the culprit."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from conftest import TIMESERIES_CONFIG
from mlflow import MlflowClient

from ml_tabular.cli import main

EXPERIMENT = "ml_tabular_time_series_baselines"


@pytest.fixture(autouse=True)
def _isolated(isolated: None) -> None:
    """Every test here runs isolated (see conftest)."""


def traffic(n_steps: int = 400) -> pd.DataFrame:
    """An hourly series with the shipped config's columns, long enough for input 48 + horizon 12 per stretch."""
    steps = np.arange(n_steps)
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-01-01", periods=n_steps, freq="h"),
            "traffic_volume": 100 + 10 * np.sin(2 * np.pi * steps / 24),
            "temperature": 15 + 0.01 * steps,
        }
    )


def unparseable_timestamp() -> pd.DataFrame:
    frame = traffic().astype({"timestamp": str})
    frame.loc[5, "timestamp"] = "not a date"
    return frame


def duplicate_timestamp() -> pd.DataFrame:
    frame = traffic()
    frame.loc[10, "timestamp"] = frame.loc[9, "timestamp"]
    return frame


def duplicate_in_one_series() -> pd.DataFrame:
    south = duplicate_timestamp().assign(station="south")
    return pd.concat([traffic().assign(station="north"), south])


# case id -> (table written to series.csv, extra flags; substrings of the one error line)
CASES: dict[str, tuple[Callable[[], pd.DataFrame], list[str], tuple[str, ...]]] = {
    "unparseable_timestamp": (
        unparseable_timestamp,
        [],
        ("timestamp column 'timestamp'", "series.csv", "'not a date'"),
    ),
    "duplicate_timestamp": (
        duplicate_timestamp,
        [],
        ("series.csv", "duplicate timestamps", "2024-01-01 09:00:00"),
    ),
    "duplicate_in_named_series": (
        duplicate_in_one_series,
        ["--data.init_args.series_id_column", "station"],
        ("series.csv", "duplicate timestamps in series 'south'", "2024-01-01 09:00:00"),
    ),
    "series_shorter_than_a_window": (
        lambda: traffic(50),
        [],
        ("series.csv", "has 50 steps", "at least 60", "input_size=48, horizon=12"),
    ),
    "stretch_shorter_than_a_window": (
        lambda: traffic(200),
        [],
        ("series.csv", "the val stretch", "has 30 steps", "input_size + horizon = 60"),
    ),
    "horizon_zero": (traffic, ["--data.init_args.horizon", "0"], ("data.init_args.horizon", ">= 1", "got 0")),
    "input_size_zero": (traffic, ["--data.init_args.input_size", "0"], ("data.init_args.input_size", ">= 1", "got 0")),
    "missing_target": (
        traffic,
        ["--data.init_args.target", "nope"],
        ("data.init_args.target", "['nope'] not found", "series.csv"),
    ),
    "missing_feature": (
        traffic,
        ["--data.init_args.feature_columns", "[temperature, nope]"],
        ("data.init_args.feature_columns", "['nope'] not found", "series.csv"),
    ),
    "missing_timestamp_column": (
        lambda: traffic().rename(columns={"timestamp": "time"}),
        [],
        ("data.init_args.timestamp_column", "['timestamp'] not found", "series.csv"),
    ),
}


def assert_no_run(tracking_uri: str) -> None:
    """The store holds no run of the time-series experiment (or no such experiment at all)."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        assert client.search_runs([experiment.experiment_id]) == []


@pytest.mark.parametrize("case", CASES)
def test_time_series_mistake_exits_2_with_one_message(case, store, tmp_path, capsys):
    table, flags, expected = CASES[case]
    csv = tmp_path / "series.csv"
    table().to_csv(csv, index=False)
    args = [
        "fit",
        "--config", str(TIMESERIES_CONFIG),
        "--data.init_args.path", str(csv),
        "--mlflow.tracking_uri", store,
        "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false",
        *flags,
    ]  # fmt: skip

    with pytest.raises(SystemExit) as exc:
        main(args)

    assert exc.value.code == 2
    stderr = capsys.readouterr().err
    errors = [line for line in stderr.splitlines() if line.startswith("ml_tabular: error:")]
    assert len(errors) == 1, stderr
    for text in expected:
        assert text in errors[0], errors[0]
    assert "Traceback" not in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "series.csv"]  # no logs, no checkpoints
    assert_no_run(store)
