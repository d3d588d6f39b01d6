"""A forecaster with every new option on survives its checkpoint: predict needs neither the config's options nor the
training file, and the in-process ``Predictor`` (what the MLflow model runs) gives the same forecast."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import make_series, run_cli, timeseries_args

from ml_tabular.predictor import Predictor

pytestmark = pytest.mark.slow
OPTIONS = [
    "--model.init_args.revin", "true",
    "--model.init_args.revin_affine", "true",
    "--model.init_args.linear_skip", "least_squares",
    "--data.init_args.calendar", "auto",
    "--mlflow.enabled", "false",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-epoch fit with the options on: (folder, CLI args, checkpoint, recent rows file)."""
    folder = tmp_path_factory.mktemp("options")
    data, rows = folder / "series.csv", folder / "recent.csv"
    make_series(300).to_csv(data, index=False)
    make_series(60, seed=1).to_csv(rows, index=False)
    args = [*timeseries_args(data, "sqlite:///unused.db"), *OPTIONS, "--trainer.default_root_dir", str(folder)]
    done = run_cli("fit", *args, cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return folder, args, next(folder.rglob("epoch=*.ckpt")), rows


def forecast(folder, args, checkpoint, rows, name: str) -> pd.DataFrame:
    flags = ["--ckpt_path", str(checkpoint), "--data.init_args.predict_path", str(rows), "--output", name]
    done = run_cli("predict", *args, *flags, cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return pd.read_csv(folder / name, parse_dates=["timestamp"])


def test_the_checkpoint_holds_the_options_and_the_calendar(trained):
    _, _, checkpoint, _ = trained
    saved = torch.load(checkpoint, weights_only=True)

    hparams = saved["hyper_parameters"]
    assert (hparams["revin"], hparams["revin_affine"], hparams["linear_skip"], hparams["n_calendar"]) == (
        True,
        True,
        "least_squares",
        4,
    )
    state = saved["TimeSeriesDataModule"]
    assert state["calendar"] == ["time_of_day", "day_of_week"]
    assert state["split"]["val_start"] and state["split"]["test_start"]
    assert {"net.revin.weight", "net.skip.weight"} <= set(saved["state_dict"])


def test_predict_from_the_checkpoint_alone_gives_the_same_forecast(trained):
    folder, args, checkpoint, rows = trained
    before = forecast(folder, args, checkpoint, rows, "before.csv")
    (folder / "series.csv").unlink()

    after = forecast(folder, args, checkpoint, rows, "after.csv")
    in_process = Predictor.from_checkpoint(checkpoint).predict(pd.read_csv(rows))

    pd.testing.assert_frame_equal(after, before)
    assert list(after.columns) == ["timestamp", "step", "prediction"] and len(after) == 6
    pd.testing.assert_series_equal(in_process["prediction"], after["prediction"], check_dtype=False, rtol=1e-5)
    assert list(in_process["timestamp"]) == list(after["timestamp"])
