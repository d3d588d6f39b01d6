"""``ml_tabular register``: a run's MLflow model as a registered version with an alias and lineage tags, picked by
run id or as an experiment's best finished run with a model; aliases moved, versions archived; bad input on one line.

Everything is registered in the session's ``model_zoo`` store under names starting ``test_register_``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import ModelZoo, run_cli

from ml_tabular.cli import main

CONTEST = "test_register_contest"


@pytest.fixture(scope="module")
def contest(model_zoo: ModelZoo) -> dict[str, str]:
    """Run ids of an experiment in the zoo's store where the best run is not the one to pick.

    By val_loss (lower is better) / val_accuracy: ``C`` 0.1 / 0.99 FAILED with a model, ``B`` 0.2 / 0.95
    FINISHED without one, ``A`` 0.3 / 0.9 FINISHED with a real model (the zoo classifier's checkpoint), ``D``
    0.5 / 0.8 FINISHED with a model. Each logged a worse val_loss first, a git commit and a dataset digest.
    """
    import mlflow
    from mlflow import MlflowClient
    from mlflow.entities import Dataset, DatasetInput, LoggedModelOutput

    from ml_tabular.mlops.model import log_checkpoint_model

    client = MlflowClient(model_zoo.store)
    experiment = client.create_experiment(CONTEST)
    classifier = model_zoo.models["classifier"]
    runs = {}
    for name, status, val_loss, val_accuracy, model in [
        ("A", "FINISHED", 0.3, 0.9, "checkpoint"),
        ("B", "FINISHED", 0.2, 0.95, None),
        ("C", "FAILED", 0.1, 0.99, "bare"),
        ("D", "FINISHED", 0.5, 0.8, "bare"),
    ]:
        run_id = client.create_run(experiment, run_name=name, tags={"git_commit": f"commit_{name}"}).info.run_id
        for step, value in enumerate([val_loss + 0.05, val_loss]):
            client.log_metric(run_id, "val_loss", value, step=step)
        client.log_metric(run_id, "val_accuracy", val_accuracy, step=1)
        dataset = Dataset(name="table", digest=f"digest_{name}", source_type="local", source="{}")
        client.log_inputs(run_id, datasets=[DatasetInput(dataset)])
        if model == "checkpoint":
            rows = classifier.rows.drop(columns=[classifier.id_column]).head(5)
            log_checkpoint_model(model_zoo.store, run_id, classifier.checkpoint, rows)
        elif model == "bare":  # never to be picked: no files
            logged = client.create_logged_model(experiment, name="model", source_run_id=run_id)
            client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=1)])
        client.set_terminated(run_id, status)
        runs[name] = run_id
    mlflow.set_tracking_uri(None)  # log_checkpoint_model set it
    return runs


def register(store: str, *args: str) -> None:
    """``ml_tabular register ARGS`` in this process, on ``store``."""
    main(["register", *args, "--tracking-uri", store])


def predictions(store: str, uri: str, rows: pd.DataFrame) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(store)
    try:
        return mlflow.pyfunc.load_model(uri).predict(rows)
    finally:
        mlflow.set_tracking_uri(None)


def test_register_a_run_points_the_alias_at_a_version_that_predicts_as_the_run_model(
    model_zoo: ModelZoo, tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    name = "test_register_by_run"
    trained = model_zoo.models["classifier"]
    done = run_cli(
        "register", "--run-id", trained.run_id, "--name", name, "--alias", "champion",
        cwd=tmp_path, env={"MLFLOW_TRACKING_URI": model_zoo.store},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    client = MlflowClient(model_zoo.store)
    best = min(m.value for m in client.get_metric_history(trained.run_id, "val_loss"))
    uri = f"models:/{name}@champion"
    assert done.stdout == (
        f"'{name}' version 1 (run {trained.run_id}, val_loss={best:.6g}) has alias 'champion': use {uri}, "
        f"e.g. ml_tabular score --model {uri} --input new.csv --output predictions.parquet\n"
    )
    run = client.get_run(trained.run_id)
    version = client.get_model_version_by_alias(name, "champion")
    assert version.version == 1 and version.run_id == trained.run_id
    assert version.source == trained.model_uri and run.info.run_name in version.description
    assert {k: v for k, v in version.tags.items() if k != "metric_value"} == {
        "source_run_id": trained.run_id,
        "metric": "val_loss",
        "dataset_digest": run.inputs.dataset_inputs[0].dataset.digest,
        **({"git_commit": commit} if (commit := run.data.tags.get("mlflow.source.git.commit")) else {}),
    }  # git_commit when the run has one: MLflow tags the source's commit (ml_tabular run from a git checkout)
    assert float(version.tags["metric_value"]) == best
    model_id = trained.model_uri.removeprefix("models:/")
    assert name in client.get_logged_model(model_id).tags["mlflow.modelVersions"]  # the UI's link to the version
    pd.testing.assert_frame_equal(
        predictions(model_zoo.store, uri, trained.rows), predictions(model_zoo.store, trained.model_uri, trained.rows)
    )


def test_python_api_is_the_same_registration(model_zoo: ModelZoo, isolated: None) -> None:
    import mlflow
    from mlflow import MlflowClient

    from ml_tabular.mlops.mlflow_utils import register_best_model

    name = "test_register_api"
    trained = model_zoo.models["regressor"]
    mlflow.set_tracking_uri(model_zoo.store)
    first = register_best_model(trained.run_id, trained.model_uri, name)  # INTERFACE §5: the three-argument call
    second = register_best_model(trained.run_id, f"runs:/{trained.run_id}/model", name, "champion")
    client = MlflowClient(model_zoo.store)
    assert (first.version, second.version, first.aliases) == (1, 2, [])
    assert client.get_model_version_by_alias(name, "champion").source == trained.model_uri
    assert first.tags["source_run_id"] == trained.run_id and first.tags["metric"] == "val_loss"
    assert first.tags["dataset_digest"] == client.get_run(trained.run_id).inputs.dataset_inputs[0].dataset.digest


def test_register_best_finished_run_that_has_a_model(
    model_zoo: ModelZoo, contest: dict[str, str], tmp_path: Path, isolated: None
) -> None:
    from mlflow import MlflowClient

    name = "test_register_best"
    done = run_cli(
        "register", "--experiment", CONTEST, "--metric", "val_loss", "--mode", "min", "--name", name,
        "--alias", "staging", "--tracking-uri", model_zoo.store, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"'{name}' version 1 (run {contest['A']}, val_loss=0.3) has alias 'staging'" in done.stdout
    assert "passed over 1 better run(s) without an MLflow model" in done.stderr
    client = MlflowClient(model_zoo.store)
    tags = client.get_model_version_by_alias(name, "staging").tags
    assert tags == {
        "source_run_id": contest["A"],
        "metric": "val_loss",
        "metric_value": "0.3",  # the value it was chosen by
        "dataset_digest": "digest_A",
        "git_commit": "commit_A",
    }
    register(model_zoo.store, "--experiment", CONTEST, "--metric", "val_accuracy", "--name", name)  # max: its name
    register(model_zoo.store, "--experiment", CONTEST, "--mode", "max", "--name", name, "--alias", "worst")
    champion, worst = (client.get_model_version_by_alias(name, alias) for alias in ("champion", "worst"))
    assert (champion.version, champion.tags["source_run_id"], champion.tags["metric_value"]) == (2, contest["A"], "0.9")
    assert worst.tags["source_run_id"] == contest["D"]


def test_aliases_move_to_existing_versions_and_archived_is_a_tag(
    model_zoo: ModelZoo, contest: dict[str, str], isolated: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    name = "test_register_lifecycle"
    client = MlflowClient(model_zoo.store)
    for _ in range(2):
        register(model_zoo.store, "--run-id", contest["A"], "--name", name, "--alias", "staging")
    register(model_zoo.store, "--name", name, "--model-version", "2", "--alias", "production")
    assert "version 2" in capsys.readouterr().out.splitlines()[-1]
    register(model_zoo.store, "--name", name, "--archive", "1")
    assert capsys.readouterr().out.strip() == (
        f"'{name}' version 1 is archived (tag archived=true); it still loads as models:/{name}/1"
    )
    assert client.get_model_version(name, "1").tags["archived"] == "true"
    with pytest.raises(SystemExit) as stopped:
        register(model_zoo.store, "--name", name, "--archive", "2")
    assert stopped.value.code == 2
    assert "version 2 of 'test_register_lifecycle' still has alias(es) production, staging" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        register(model_zoo.store, "--name", name, "--model-version", "9", "--alias", "staging")
    assert f"registered model '{name}' has no version 9" in capsys.readouterr().err
    register(model_zoo.store, "--name", name, "--model-version", "1", "--alias", "staging")  # a rollback
    assert "archived" not in client.get_model_version(name, "1").tags
    assert client.get_registered_model(name).aliases == {"staging": 1, "production": 2}


BAD = {
    "unknown run": (["--run-id", "0" * 32], r"run '0{32}' is not in the tracking store sqlite:///.*: check the run id"),
    "unknown experiment": (["--experiment", "nope"], r"experiment 'nope' is not in the tracking store .*; it has \["),
    "misspelt metric": (
        ["--experiment", CONTEST, "--metric", "val_acuracy", "--mode", "max"],
        r"experiment 'test_register_contest' has no FINISHED run with metric 'val_acuracy'; "
        r"its FINISHED runs have \['val_accuracy', 'val_loss'\]\. Check --metric\.",
    ),
    "metric of unknown direction": (["--experiment", CONTEST, "--metric", "speed"], r"Say --mode min or --mode max"),
    "alias latest": (["--experiment", CONTEST, "--alias", "latest"], r"alias 'latest' is refused by MLflow: 'latest'"),
    "version-like alias": (["--experiment", CONTEST, "--alias", "v3"], r"Version alias name 'v3' is reserved"),
    "alias with a space": (["--experiment", CONTEST, "--alias", "my alias"], r"Names may only contain alphanumerics"),
    "archived as an alias": (["--experiment", CONTEST, "--alias", "archived"], r"'archived' is a version tag here"),
    "archive with an alias": (["--archive", "1", "--alias", "x"], r"--archive does not take --alias"),
    "no run nor experiment": ([], r"one of the arguments --run-id --experiment --model-version --archive is required"),
    "unknown version": (["--model-version", "7"], r"no registered model 'test_register_bad' in the tracking store"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_line_and_registers_nothing(
    case: str, model_zoo: ModelZoo, contest: dict[str, str], isolated: None, capsys: pytest.CaptureFixture[str]
) -> None:
    from mlflow import MlflowClient

    args, message = BAD[case]
    with pytest.raises(SystemExit) as stopped:
        register(model_zoo.store, *args, "--name", "test_register_bad")
    err = capsys.readouterr().err.strip().splitlines()
    assert stopped.value.code == 2
    assert err[0].startswith("ml_tabular: error: ") and len(err) <= 2, err  # a usage mistake adds "See: ... --help"
    assert re.search(message, err[0]), err[0]
    assert MlflowClient(model_zoo.store).search_registered_models("name = 'test_register_bad'") == []


def test_run_without_a_model_and_bad_names_are_one_line(
    model_zoo: ModelZoo, contest: dict[str, str], tmp_path: Path, isolated: None, capsys: pytest.CaptureFixture[str]
) -> None:
    done = run_cli(
        "register", "--run-id", contest["B"], "--name", "test_register_bad", cwd=tmp_path,
        env={"MLFLOW_TRACKING_URI": model_zoo.store},
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == (
        f"ml_tabular: error: run {contest['B']} (B, FINISHED) has no MLflow model: it was trained with "
        "mlflow.log_model false or stopped before fit ended. Train again with --mlflow.log_model true "
        "(the shipped configs have it on)."
    )
    with pytest.raises(SystemExit):
        register(model_zoo.store, "--run-id", contest["A"], "--name", "test/register")
    assert "cannot register a model named 'test/register': Invalid model name" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        register(model_zoo.store, "--run-id", contest["A"], "--metric", "val_f1", "--name", "test_register_bad")
    assert f"run {contest['A']} has no metric 'val_f1'; it has ['val_accuracy', 'val_loss']" in capsys.readouterr().err
