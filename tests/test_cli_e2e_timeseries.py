"""End to end for the time-series family: fit, resume, predict through the CLI, read back from MLflow."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import REPO, artifacts, history, make_series, only_run, run_cli, timeseries_args
from mlflow import MlflowClient

pytestmark = pytest.mark.slow
EXPERIMENT = "ml_tabular_time_series_baselines"


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One 2-epoch ``fit`` on a small series: (folder, data path, tracking URI)."""
    folder = tmp_path_factory.mktemp("fitted")
    data = folder / "series.csv"
    make_series().to_csv(data, index=False)
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    done = run_cli("fit", *timeseries_args(data, tracking_uri), cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, data, tracking_uri


def test_fit_records_forecast_metrics_plots_and_names(fitted):
    _, _, tracking_uri = fitted
    client, run = only_run(tracking_uri, EXPERIMENT)
    assert run.info.run_name == "ts_mlp__dataset=series__input=24__horizon=6"
    assert run.data.tags["model_type"] == "ts_mlp"
    assert run.data.params["model.init_args.n_channels"] == "2"  # target + temp, linked from the data
    for key in ("train_loss", "val_loss", "val_mse", "val_mae", "val_mape", "val_smape", "val_mase"):
        assert [step for step, _ in history(client, run.info.run_id, key)] == [0, 1], key
    assert artifacts(client, run.info.run_id, "plots") == {
        "plots/forecast_vs_actual.png",
        "plots/error_by_horizon_step.png",
    }
    (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
    assert dataset.name == "series" and '"num_rows": 400' in dataset.profile


def test_predict_writes_the_next_horizon_with_timestamps(fitted, tmp_path):
    _, data, tracking_uri = fitted
    client, run = only_run(tracking_uri, EXPERIMENT)
    best = client.download_artifacts(run.info.run_id, "checkpoints/best.ckpt", str(tmp_path))
    args = [*timeseries_args(data, tracking_uri), "--ckpt_path", best, "--output", "forecast.csv"]
    done = run_cli("predict", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    forecast = pd.read_csv(tmp_path / "forecast.csv", parse_dates=["timestamp"])
    assert list(forecast.columns) == ["timestamp", "step", "prediction"]
    last = make_series().timestamp.iloc[-1]
    assert list(forecast.timestamp) == [last + pd.Timedelta(hours=h) for h in range(1, 7)]
    assert forecast.prediction.between(0, 30).all()  # the series lives around 10 +- 5


def test_resume_matches_an_uninterrupted_run(tmp_path, series_csv, tracking_uri):
    full_uri = f"sqlite:///{tmp_path / 'full.db'}"
    assert run_cli("fit", *timeseries_args(series_csv, full_uri, epochs=3), cwd=tmp_path).returncode == 0
    assert run_cli("fit", *timeseries_args(series_csv, tracking_uri, epochs=1), cwd=tmp_path).returncode == 0
    client, first = only_run(tracking_uri, EXPERIMENT)
    last = client.download_artifacts(first.info.run_id, "checkpoints/last.ckpt", str(tmp_path))
    args = [*timeseries_args(series_csv, tracking_uri, epochs=3), "--ckpt_path", last]
    assert run_cli("fit", *args, cwd=tmp_path).returncode == 0

    client, run = only_run(tracking_uri, EXPERIMENT)
    assert run.info.run_id == first.info.run_id
    resumed = history(client, run.info.run_id, "val_mase")
    assert [step for step, _ in resumed] == [0, 1, 2]
    _, full = only_run(full_uri, EXPERIMENT)
    uninterrupted = history(MlflowClient(full_uri), full.info.run_id, "val_mase")
    assert resumed[-1][1] == pytest.approx(uninterrupted[-1][1], abs=1e-6)


@pytest.mark.parametrize("config", ["tabular.yaml", "timeseries.yaml"])
def test_every_shipped_config_runs_on_its_demo_data(tmp_path, tracking_uri, config):
    (tmp_path / "data").symlink_to(REPO / "data")  # the configs name data/ relative to the working dir
    args = ["--config", str(REPO / "configs" / config), "--mlflow.tracking_uri", tracking_uri]
    args += [
        "--trainer.max_epochs",
        "1",
        "--trainer.limit_train_batches",
        "2",
        "--trainer.enable_progress_bar",
        "false",
    ]
    done = run_cli("fit", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    experiment = "ml_tabular_tabular_baselines" if config == "tabular.yaml" else EXPERIMENT
    _, run = only_run(tracking_uri, experiment)
    assert run.info.status == "FINISHED" and "val_loss" in run.data.metrics
