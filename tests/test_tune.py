"""``ml_tabular tune``: an Optuna study of ``fit`` trials, tracked as nested MLflow runs under a study run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import run_cli, tabular_args

# TPE's seeded start draws lr 0.01, 1e-7, 0.01: the middle trial is worse than the first after epoch 0 (pruned)
SEARCH = {
    "sampler": {"type": "tpe", "seed": 10},
    "pruner": {"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
    "params": {"model.init_args.lr": [0.01, 1.0e-7]},
}


def cli_env() -> dict[str, str]:
    """The environment ``run_cli`` gives a command (no MLFLOW_*/ML_TABULAR_* variables)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_TABULAR_"))}
    return {**env, "PYTHONWARNINGS": "ignore"}


def write_search(folder: Path, spec: dict) -> Path:
    path = folder / "search.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def tune(tmp_path: Path, table_csv: Path, store: str, *args: str):
    fit_args = tabular_args(table_csv, store)  # --config first, then the fit overrides passed to every trial
    return run_cli("tune", *fit_args, *args, cwd=tmp_path)


@pytest.mark.slow
def test_study_parent_run_nested_trials_and_best_config(tmp_path: Path, table_csv: Path, store: str) -> None:
    from mlflow import MlflowClient

    done = tune(tmp_path, table_csv, store, "--search", str(write_search(tmp_path, SEARCH)), "--n-trials", "3")
    assert done.returncode == 0, done.stderr[-3000:]
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("ml_tabular_tabular_baselines")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["study_name"] == "tabular_search"
    assert (parent.data.tags["sampler"], parent.data.tags["pruner"]) == ("TPESampler", "MedianPruner")
    assert parent.data.params["best.model.init_args.lr"] == "0.01"
    trials = sorted((r for r in runs if r is not parent), key=lambda r: int(r.data.tags["trial_number"]))
    assert [r.data.tags["mlflow.parentRunId"] for r in trials] == [parent.info.run_id] * 3
    assert [r.info.run_name for r in trials] == [f"trial_{n}__tabular_mlp__dataset=table" for n in range(3)]
    assert [r.data.tags["trial_state"] for r in trials] == ["COMPLETE", "PRUNED", "COMPLETE"]
    assert all(r.info.status == "FINISHED" for r in trials)  # a pruned trial stopped early, cleanly
    assert [len(client.get_metric_history(r.info.run_id, "val_loss")) for r in trials] == [2, 1, 2]
    best = min(trials[0].data.metrics["val_loss"], trials[2].data.metrics["val_loss"])
    assert parent.data.metrics["best_value"] == pytest.approx(best)
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "best")}
    assert logged == {"best/best.yaml"}
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "plots")} >= {"plots/optimization_history.png"}

    config = yaml.safe_load((tmp_path / "best.yaml").read_text())
    assert config["model"]["init_args"]["lr"] == 0.01
    refit = run_cli("fit", "--config", "best.yaml", "--trainer.max_epochs", "1", cwd=tmp_path)
    assert refit.returncode == 0, refit.stderr[-3000:]
    assert len(client.search_runs([experiment.experiment_id])) == 5


BAD_SEARCHES = {
    "model.init_args.learning_rate": (
        {"low": 0.001, "high": 0.1},
        "search key 'model.init_args.learning_rate' is not in the run config",
    ),
    "model.init_args.dropout": ({"low": 0.5, "high": 0.1}, "the range is empty (low=0.5 must be below high=0.1)"),
    "model.init_args.activation": ({"low": 1, "high": 3}, "holds 'relu' in the run config, not a number"),
}


@pytest.mark.parametrize("key", list(BAD_SEARCHES))
def test_bad_search_space_is_one_line(tmp_path: Path, table_csv: Path, store: str, key: str) -> None:
    spec, message = BAD_SEARCHES[key]
    search = write_search(tmp_path, {"params": {key: spec}})
    done = tune(tmp_path, table_csv, store, "--search", str(search), "--n-trials", "1")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("ml_tabular: error: ")
    assert message in done.stderr, done.stderr[-2000:]


REFUSED_TRIALS = {  # what a multi-process trial cannot do; tests/test_tune_ddp.py runs what it can
    "in-memory study": (
        ["--trainer.strategy", "ddp", "--trainer.devices", "2"],
        "a tune trial on several processes (trainer strategy=ddp, devices=2, num_nodes=1) reports to its study from "
        "other processes: pass --storage URL (e.g. sqlite:///study.db).",
    ),
    "spawned processes": (
        ["--trainer.strategy", "ddp_spawn", "--trainer.devices", "2", "--storage", "sqlite:///study.db"],
        "a tune trial on several processes runs as its own `ml_tabular fit` command, whose processes Lightning "
        "starts with --trainer.strategy ddp, not ddp_spawn.",
    ),
    "several machines": (
        ["--trainer.strategy", "ddp", "--trainer.num_nodes", "2", "--storage", "sqlite:///study.db"],
        "a tune trial runs on the machine of its tune worker (trainer num_nodes=2): use --trainer.devices N for its "
        "processes there, and one `ml_tabular tune` worker per machine on one --storage.",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_TRIALS))
def test_multi_process_trials_it_cannot_run_are_one_line(tmp_path: Path, table_csv: Path, store: str, case: str):
    flags, message = REFUSED_TRIALS[case]
    done = tune(tmp_path, table_csv, store, "--search", str(write_search(tmp_path, SEARCH)), *flags)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == f"ml_tabular: error: {message}", done.stderr[-2000:]
    assert not (tmp_path / "study.db").exists()  # refused before the study is made


def test_search_space_ranges_and_choices(tmp_path: Path) -> None:
    import optuna

    from ml_tabular.mlops.search_space import load_search_space

    spec = {
        "params": {
            "data.init_args.batch_size": {"low": 16, "high": 256, "log": True},
            "model.init_args.dropout": {"low": 0.0, "high": 0.5, "step": 0.1},
            "model.init_args.hidden_dims": [[64, 32], [16]],
        }
    }
    space = load_search_space(write_search(tmp_path, spec))
    assert [(p.type, p.log) for p in space.params] == [("int", True), ("float", False), ("categorical", False)]
    assert (space.metric, space.direction, space.sampler, space.pruner) == (
        "val_loss", "minimize", {"type": "tpe"}, {"type": "median"}
    )  # fmt: skip
    fixed = {"data.init_args.batch_size": 64, "model.init_args.dropout": 0.2, "model.init_args.hidden_dims": "[16]"}
    assert space.suggest(optuna.trial.FixedTrial(fixed))["model.init_args.hidden_dims"] == [16]


def test_unreachable_storage_is_one_line(tmp_path: Path, table_csv: Path, store: str) -> None:
    search = write_search(tmp_path, SEARCH)
    storage = f"sqlite:///{tmp_path}/missing/folder/study.db"
    done = tune(tmp_path, table_csv, store, "--search", str(search), "--storage", storage)
    assert done.returncode == 2
    assert f"ml_tabular: error: cannot open the Optuna storage '{storage}'" in done.stderr, done.stderr[-2000:]


def test_study_with_another_direction_is_one_line(tmp_path: Path, table_csv: Path, store: str) -> None:
    import optuna

    storage = f"sqlite:///{tmp_path}/study.db"
    optuna.create_study(storage=storage, study_name="mine", direction="maximize")
    search = write_search(tmp_path, SEARCH)
    done = tune(tmp_path, table_csv, store, "--search", str(search), "--storage", storage, "--study-name", "mine")
    assert done.returncode == 2
    assert "exists with direction maximize, the search asks minimize" in done.stderr, done.stderr[-2000:]


@pytest.mark.slow
def test_two_workers_share_one_study_on_sqlite(tmp_path: Path, table_csv: Path, tracking_uri: str) -> None:
    store = tracking_uri  # no file yet: like the study's, the workers create it together
    search = str(write_search(tmp_path, SEARCH))
    study = ["--search", search, "--storage", f"sqlite:///{tmp_path}/study.db", "--study-name", "shared"]
    command = ["tune", *tabular_args(table_csv, store), *study, "--n-trials", "1", "--output", "{}.yaml"]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "ml_tabular", *[a.format(i) for a in command]],
            cwd=tmp_path, env=cli_env(), stderr=subprocess.PIPE, text=True,
        )
        for i in range(2)
    ]  # fmt: skip
    assert [w.wait(timeout=300) for w in workers] == [0, 0], [w.stderr.read()[-2000:] for w in workers]
    import optuna

    trials = optuna.load_study(study_name="shared", storage=f"sqlite:///{tmp_path}/study.db").trials
    assert sorted(t.number for t in trials) == [0, 1]
    from mlflow import MlflowClient

    client = MlflowClient(store)
    runs = client.search_runs([client.get_experiment_by_name("ml_tabular_tabular_baselines").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1  # the study's run, reopened by each worker
    assert sorted(r.data.tags.get("trial_number", "") for r in runs) == ["", "0", "1"]
