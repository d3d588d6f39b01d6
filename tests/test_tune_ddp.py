"""Search x scale: ``ml_tabular tune`` trials that each train on 2 CPU processes (DDP), reporting to a SQLite study."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml
from conftest import run_cli, tabular_args
from test_tune import SEARCH, write_search

DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]


@pytest.mark.slow
def test_ddp_trials_are_finished_nested_runs_of_the_study(tmp_path: Path, table_csv: Path, store: str) -> None:
    import optuna
    from mlflow import MlflowClient

    storage = f"sqlite:///{tmp_path}/study.db"
    search = ["--search", str(write_search(tmp_path, SEARCH)), "--storage", storage, "--study-name", "ddp"]
    started = time.monotonic()
    done = run_cli("tune", *tabular_args(table_csv, store, epochs=1), *DDP, *search, "--n-trials", "2", cwd=tmp_path)
    seconds = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]

    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("ml_tabular_tabular_baselines")
    runs = client.search_runs([experiment.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    trials = sorted((r for r in runs if r is not parent), key=lambda r: int(r.data.tags["trial_number"]))
    assert parent.info.status == "FINISHED"
    assert [r.data.tags["mlflow.parentRunId"] for r in trials] == [parent.info.run_id] * 2
    assert [r.info.status for r in trials] == ["FINISHED", "FINISHED"]  # one run per trial, made by its rank zero
    # lr 1e-7 after lr 0.01: the second trial's epoch is worse than the median, pruned through the study's database
    assert [r.data.tags["trial_state"] for r in trials] == ["COMPLETE", "PRUNED"]
    assert [len(client.get_metric_history(r.info.run_id, "val_loss")) for r in trials] == [1, 1]
    assert {"val_loss", "val_accuracy", "train_loss"} <= set(trials[0].data.metrics)

    study = optuna.load_study(study_name="ddp", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]
    assert study.best_value == pytest.approx(trials[0].data.metrics["val_loss"])
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    trainer = best["trainer"]
    assert (best["model"]["init_args"]["lr"], trainer["strategy"], str(trainer["devices"])) == (0.01, "ddp", "2")
    print(f"2 DDP trials of 1 epoch on 2 processes: {seconds:.1f} s")
