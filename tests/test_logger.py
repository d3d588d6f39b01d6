"""``MLTabularLogger`` against a real SQLite store, and the tracking helpers behind it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import artifacts, history
from mlflow import MlflowClient

from ml_tabular.errors import ConfigError, TrackingError
from ml_tabular.mlops.logger import MLTabularLogger
from ml_tabular.mlops.tracking import flatten, format_run_name, git_state, resolve_tracking_uri

EXPERIMENT = "logger_tests"
RUN_CONFIG = """\
seed_everything: 42
trainer:
  max_epochs: 2
model:
  class_path: ml_tabular.models.TabularMLP
  init_args:
    hidden_dims: [64, 32]
    dropout: 0.3
    embedding_dims: null
"""


@pytest.fixture(autouse=True)
def _isolated(isolated: None) -> None:
    """Every test here runs isolated (see conftest)."""


def new_logger(store: str, **kwargs) -> MLTabularLogger:
    return MLTabularLogger(experiment_name=EXPERIMENT, run_name="run", tracking_uri=store, **kwargs)


def read_artifact(client: MlflowClient, run_id: str, path: str, tmp_path: Path) -> str:
    destination = tmp_path / "downloads" / run_id
    destination.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(destination))).read_text()


# ----- MLTabularLogger -----
def test_log_config_records_dotted_params_and_the_yaml(store, tmp_path):
    logger = new_logger(store, app_config={"env": "dev", "mlflow": {"enabled": True}})

    logger.log_config(RUN_CONFIG)

    client, run_id = MlflowClient(store), logger.run_id
    params = client.get_run(run_id).data.params
    assert params["model.init_args.dropout"] == "0.3"
    assert params["model.init_args.hidden_dims"] == "[64, 32]"
    assert params["model.init_args.embedding_dims"] == "null"
    assert params["model.class_path"] == "ml_tabular.models.TabularMLP"
    assert params["trainer.max_epochs"] == "2"
    assert params["seed_everything"] == "42"
    assert "model" not in params and "model.init_args" not in params
    assert artifacts(client, run_id, "configs") == {"configs/run_config.yaml", "configs/effective_app_config.yaml"}
    assert yaml.safe_load(read_artifact(client, run_id, "configs/run_config.yaml", tmp_path)) == yaml.safe_load(
        RUN_CONFIG
    )
    app = yaml.safe_load(read_artifact(client, run_id, "configs/effective_app_config.yaml", tmp_path))
    assert app == {"env": "dev", "mlflow": {"enabled": True}}


def test_long_param_value_is_kept_whole_in_an_artifact(store, tmp_path):
    note = "x" * 7000
    logger = new_logger(store)

    logger.log_config(yaml.safe_dump({"data": {"init_args": {"note": note, "batch_size": 32}}}))

    client, run_id = MlflowClient(store), logger.run_id
    params = client.get_run(run_id).data.params
    assert params["data.init_args.batch_size"] == "32"
    assert "configs/long_params.yaml" in params["data.init_args.note"]
    assert len(params["data.init_args.note"]) < 6000
    long_params = yaml.safe_load(read_artifact(client, run_id, "configs/long_params.yaml", tmp_path))
    assert long_params == {"data.init_args.note": note}


def test_log_metrics_steps_by_epoch_and_records_epoch(store):
    logger = new_logger(store)

    logger.log_metrics({"val_loss": 1.0, "epoch": 3}, step=117)
    logger.log_metrics({"train_loss": 2.0}, step=5)

    client, run_id = MlflowClient(store), logger.run_id
    assert history(client, run_id, "val_loss") == [(3, 1.0)]
    assert history(client, run_id, "train_loss") == [(5, 2.0)]
    assert history(client, run_id, "epoch") == [(3, 3.0)]  # recorded, as MLFlowLogger does


def test_resumed_run_is_running_and_keeps_its_first_params(store, tmp_path):
    first = new_logger(store)
    first.log_config(RUN_CONFIG)
    first.finalize("failed")
    run_id = first.run_id
    client = MlflowClient(store)
    assert client.get_run(run_id).info.status == "FAILED"

    resumed = new_logger(store, run_id=run_id)
    assert resumed.run_id == run_id
    assert client.get_run(run_id).info.status == "RUNNING"
    resumed.log_config(RUN_CONFIG.replace("dropout: 0.3", "dropout: 0.5") + "data:\n  batch_size: 16\n")

    params = client.get_run(run_id).data.params
    assert params["model.init_args.dropout"] == "0.3"
    assert params["data.batch_size"] == "16"  # a new key is still recorded
    assert artifacts(client, run_id, "configs") == {"configs/run_config.yaml", "configs/run_config.resumed_1.yaml"}
    assert "dropout: 0.3" in read_artifact(client, run_id, "configs/run_config.yaml", tmp_path)
    assert "dropout: 0.5" in read_artifact(client, run_id, "configs/run_config.resumed_1.yaml", tmp_path)
    assert [r.info.run_id for r in client.search_runs([client.get_run(run_id).info.experiment_id])] == [run_id]


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("success", None, "FINISHED"),
        ("killed", None, "KILLED"),
        ("failed", None, "FAILED"),
        ("killed", "failed", "KILLED"),  # Lightning reports an interrupt as a failure after our callback named it
        ("success", "failed", "FAILED"),  # a test that crashes after fit, in one process: as MLFlowLogger
    ],
)
def test_finalize_sets_the_run_status(store, first, second, expected):
    logger = new_logger(store)
    client, run_id = MlflowClient(store), logger.run_id
    assert client.get_run(run_id).info.status == "RUNNING"

    logger.finalize(first)
    if second:
        logger.finalize(second)

    assert client.get_run(run_id).info.status == expected


# ----- tracking helpers -----
def test_resolve_tracking_uri_defaults_to_sqlite_under_cwd(tmp_path):
    uri = resolve_tracking_uri(None)

    assert uri == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert (tmp_path / "mlruns").is_dir()


def test_resolve_tracking_uri_honours_the_environment(tmp_path, monkeypatch):
    env_uri = f"sqlite:///{tmp_path}/from_env/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env_uri)

    assert resolve_tracking_uri(None) == env_uri
    assert (tmp_path / "from_env").is_dir()
    assert resolve_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"  # the config wins
    assert not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize("uri", ["file:./mlruns", "./mlruns"])
def test_resolve_tracking_uri_refuses_a_file_store_unless_allowed(uri, monkeypatch):
    with pytest.raises(TrackingError, match="MLFLOW_ALLOW_FILE_STORE=true") as error:
        resolve_tracking_uri(uri)
    assert f"'{uri}' is a file store" in str(error.value)
    assert "SQLite" in str(error.value)

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    assert resolve_tracking_uri(uri) == uri


def test_flatten_makes_dotted_keys_and_keeps_lists_and_empty_mappings():
    config = {
        "model": {"init_args": {"dropout": 0.1, "hidden_dims": [64, 32], "embedding_dims": None}},
        "seed_everything": 42,
        "extra": {},
    }

    assert flatten(config) == {
        "model.init_args.dropout": 0.1,
        "model.init_args.hidden_dims": [64, 32],
        "model.init_args.embedding_dims": None,
        "seed_everything": 42,
        "extra": {},
    }


def test_format_run_name_fills_the_template():
    fields = {"dataset": "titanic", "seed": 42}

    assert format_run_name("tabular_mlp__dataset={dataset}__seed={seed}", fields) == (
        "tabular_mlp__dataset=titanic__seed=42"
    )
    assert format_run_name(None, fields) is None


def test_format_run_name_names_the_unknown_and_the_known_fields():
    with pytest.raises(ConfigError) as error:
        format_run_name("mlp__{horizon}", {"dataset": "titanic", "seed": 42})

    message = str(error.value)
    assert "mlflow.run_name" in message and "horizon" in message
    assert "['dataset', 'seed']" in message


def git(repo: Path, *args: str) -> str:
    command = ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args]
    return subprocess.run(command, cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def test_git_state_reports_commit_branch_and_dirtiness(tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text("print('v1')\n")
    git(repo, "add", "train.py")
    git(repo, "commit", "-qm", "first")
    commit = git(repo, "rev-parse", "HEAD")

    assert git_state(repo) == {"git_commit": commit, "git_branch": "main", "git_dirty": "false"}
    (repo / "notes.txt").write_text("untracked files do not count\n")
    assert git_state(repo)["git_dirty"] == "false"
    (repo / "train.py").write_text("print('v2')\n")
    assert git_state(repo)["git_dirty"] == "true"
    monkeypatch.chdir(repo)
    assert git_state() == {"git_commit": commit, "git_branch": "main", "git_dirty": "true"}


def test_git_state_is_empty_outside_a_repository(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()

    assert git_state(plain) == {}
    assert git_state() == {}  # the working directory, tmp_path
