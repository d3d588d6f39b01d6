"""The MLflow helpers for hand-written scripts, secret redaction, and running without MLflow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import mlflow.tracking.fluent
import pytest
import yaml
from conftest import REPO, TABULAR_CONFIG, artifacts, history, only_run, tabular_args
from mlflow import MlflowClient

from ml_tabular.config import AppConfig, MlflowConfig
from ml_tabular.mlops.mlflow_utils import (
    get_mlflow_client,
    log_artifacts_from_paths,
    log_common_tags,
    log_config,
    log_metrics,
    set_experiment_from_config,
    start_run_with_config,
)
from ml_tabular.mlops.recorder import RunRecorder
from ml_tabular.mlops.secrets import is_secret_key, redact

SECRET_CFG = {
    "seed": 1,
    "db": {"password": "hunter2", "uri": "postgresql://bob:s3cret@db/x", "host": "db"},
    "api_token": "abc",
}


@pytest.fixture
def tracking(isolated: None, store: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppConfig]:
    """Tracking on, into this test's store; no active run or experiment outlives the test."""
    monkeypatch.setattr(mlflow.tracking.fluent, "_active_experiment_id", None)
    yield AppConfig(mlflow=MlflowConfig(enabled=True, tracking_uri=store))
    mlflow.end_run()
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)  # set by mlflow.set_experiment for subprocesses


@pytest.fixture
def run_cfg(table_csv: Path) -> dict:
    """The shipped tabular config (CLI layout) on the tiny test table."""
    config = yaml.safe_load(TABULAR_CONFIG.read_text())
    config["data"]["init_args"]["path"] = str(table_csv)
    return config


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_TABULAR_"))}
    return {**env, "PYTHONWARNINGS": "ignore", **extra}


def run_python(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -c CODE ARGS`` in ``cwd``, without MLFLOW_*/ML_TABULAR_* variables; output captured."""
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def read_artifact(client: MlflowClient, run_id: str, path: str, tmp_path: Path) -> str:
    destination = tmp_path / "downloads" / run_id
    destination.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, path, str(destination))).read_text()


# ----- tracking off -----
def test_disabled_helpers_do_nothing(isolated, store, tmp_path, monkeypatch, run_cfg):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)  # where a leaky helper would write
    cfg = AppConfig()
    (tmp_path / "note.txt").write_text("hello")

    with start_run_with_config(cfg, run_cfg) as run:
        assert run is None
        log_config(cfg, run_cfg)
        log_common_tags(cfg, run_cfg)
        log_metrics({"a": 1.0}, step=1)
        log_artifacts_from_paths([tmp_path / "note.txt"], "extras")

    assert get_mlflow_client(cfg) is None
    assert set_experiment_from_config(cfg) is None
    assert mlflow.active_run() is None
    client = MlflowClient(store)
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert client.search_runs(["0"]) == []
    assert not (tmp_path / "mlruns").exists()


def test_disabled_config_logs_nothing_into_an_active_run(tracking, run_cfg):
    mlflow.set_tracking_uri(tracking.mlflow.tracking_uri)

    with mlflow.start_run() as run:
        log_config(AppConfig(), run_cfg)
        log_common_tags(AppConfig(), run_cfg)

    data = MlflowClient(tracking.mlflow.tracking_uri).get_run(run.info.run_id).data
    assert data.params == {}
    assert "model_type" not in data.tags


def test_disabled_helpers_never_import_mlflow(tmp_path):
    code = """
import sys
from ml_tabular.config import AppConfig
from ml_tabular.mlops import mlflow_utils as mu
cfg = AppConfig()
with mu.start_run_with_config(cfg, {"seed": 1}) as run:
    mu.log_config(cfg, {"seed": 1})
    mu.log_common_tags(cfg, {"seed": 1})
    mu.log_metrics({"a": 1.0}, step=0)
    mu.log_artifacts_from_paths([sys.argv[1]])
print(run, mu.get_mlflow_client(cfg), mu.set_experiment_from_config(cfg), "mlflow" in sys.modules)
"""
    (tmp_path / "note.txt").write_text("hello")

    done = run_python(code, str(tmp_path / "note.txt"), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["None", "None", "None", "False"]


# ----- tracking on -----
def test_start_run_with_config_records_a_finished_run(tracking, run_cfg, tmp_path):
    with start_run_with_config(tracking, run_cfg) as run:
        assert mlflow.active_run().info.run_id == run.info.run_id

    client, recorded = only_run(tracking.mlflow.tracking_uri)
    run_id = recorded.info.run_id
    assert run_id == run.info.run_id
    assert recorded.info.status == "FINISHED"
    assert recorded.info.run_name == "tabular_mlp__dataset=table__seed=42"
    params = recorded.data.params
    assert params["model.init_args.dropout"] == "0.3"
    assert params["model.init_args.hidden_dims"] == "[64, 32]"
    assert params["data.init_args.path"] == run_cfg["data"]["init_args"]["path"]
    assert params["trainer.max_epochs"] == "40"
    assert params["seed_everything"] == "42"
    tags = recorded.data.tags
    assert {k: tags[k] for k in ("model_type", "env", "dataset_name", "seed", "framework")} == {
        "model_type": "tabular_mlp",
        "env": "dev",
        "dataset_name": "table",
        "seed": "42",
        "framework": "pytorch",
    }
    assert tags["version.torch"]
    assert artifacts(client, run_id, "configs") == {"configs/run_config.yaml", "configs/effective_app_config.yaml"}
    assert yaml.safe_load(read_artifact(client, run_id, "configs/run_config.yaml", tmp_path)) == run_cfg
    app = yaml.safe_load(read_artifact(client, run_id, "configs/effective_app_config.yaml", tmp_path))
    assert app == tracking.to_dict()
    assert mlflow.active_run() is None


def test_explicit_run_name_and_experiment(tracking, run_cfg):
    tracking.mlflow.experiment_name = "my_exp"

    with start_run_with_config(tracking, run_cfg, run_name="by_hand"):
        pass

    _, recorded = only_run(tracking.mlflow.tracking_uri, "my_exp")
    assert recorded.info.run_name == "by_hand"


def test_log_metrics_records_every_metric_at_the_step(tracking, run_cfg):
    with start_run_with_config(tracking, run_cfg) as run:
        log_metrics({"a": 1, "b": 2}, step=3)

    client = MlflowClient(tracking.mlflow.tracking_uri)
    assert history(client, run.info.run_id, "a") == [(3, 1.0)]
    assert history(client, run.info.run_id, "b") == [(3, 2.0)]


def test_log_artifacts_from_paths_uploads_under_the_subdir(tracking, run_cfg, tmp_path):
    (tmp_path / "note.txt").write_text("hello")

    with start_run_with_config(tracking, run_cfg) as run:
        log_artifacts_from_paths([tmp_path / "note.txt"], "extras")

    client = MlflowClient(tracking.mlflow.tracking_uri)
    assert artifacts(client, run.info.run_id, "extras") == {"extras/note.txt"}
    assert read_artifact(client, run.info.run_id, "extras/note.txt", tmp_path) == "hello"


@pytest.mark.parametrize(("error", "status"), [(RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")])
def test_an_exception_in_the_block_ends_the_run_and_propagates(tracking, run_cfg, error, status):
    with pytest.raises(error), start_run_with_config(tracking, run_cfg):
        raise error("boom")

    _, recorded = only_run(tracking.mlflow.tracking_uri)
    assert recorded.info.status == status
    assert mlflow.active_run() is None


def test_get_mlflow_client_and_experiment_point_at_the_configured_store(tracking):
    client = get_mlflow_client(tracking)
    experiment_id = set_experiment_from_config(tracking, "ts_mlp")

    assert client.tracking_uri == mlflow.get_tracking_uri() == tracking.mlflow.tracking_uri
    assert client.get_experiment(experiment_id).name == "ml_tabular_time_series_baselines"


# ----- secrets -----
def test_secrets_are_redacted_in_params_tags_and_the_config_artifact(tracking, tmp_path):
    with start_run_with_config(tracking, SECRET_CFG) as run:
        pass

    client = MlflowClient(tracking.mlflow.tracking_uri)
    recorded = client.get_run(run.info.run_id)
    params, tags = recorded.data.params, recorded.data.tags
    assert params["db.password"] == "***"
    assert params["api_token"] == "***"
    assert params["db.uri"] == "postgresql://bob:***@db/x"
    assert params["db.host"] == "db"
    run_config = read_artifact(client, run.info.run_id, "configs/run_config.yaml", tmp_path)
    assert yaml.safe_load(run_config)["db"] == {"password": "***", "uri": "postgresql://bob:***@db/x", "host": "db"}
    for text in [*params.values(), *tags.values(), run_config]:
        assert "hunter2" not in text and "s3cret" not in text and text != "abc"


def test_recorder_redacts_tag_values(tracking):
    client = MlflowClient(tracking.mlflow.tracking_uri)
    run_id = client.create_run("0").info.run_id

    RunRecorder(client, run_id).set_tags({"source": "postgresql://bob:s3cret@db/x", "hf_token": "abc", "team": "ml"})

    tags = client.get_run(run_id).data.tags
    assert tags["source"] == "postgresql://bob:***@db/x"
    assert tags["hf_token"] == "***"
    assert tags["team"] == "ml"


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("db.password", True),
        ("passwd", True),
        ("api_key", True),
        ("apikey", True),
        ("hf_token", True),
        ("AWS_SECRET_ACCESS_KEY", True),
        ("credentials", True),
        ("model.init_args.lr", False),
        ("batch_size", False),
        ("tokenizer", False),
        ("monkey", False),
        ("num_tokens", False),
        ("db.host", False),
    ],
)
def test_is_secret_key(key, secret):
    assert is_secret_key(key) is secret


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        ({"password": "hunter2"}, {"password": "***"}),
        ({"db": {"pwd": 1234, "port": 5432}}, {"db": {"pwd": "***", "port": 5432}}),
        ({"token": None}, {"token": None}),
        ({"uri": "postgresql://bob:s3cret@db/x"}, {"uri": "postgresql://bob:***@db/x"}),
        ({"uris": ["https://u:p@h/a", "sqlite:///x.db"]}, {"uris": ["https://u:***@h/a", "sqlite:///x.db"]}),
        ({"uri": "http://bob@host:5000/x"}, {"uri": "http://bob@host:5000/x"}),
        ({"broker": "redis://:s3cret@cache:6379/0"}, {"broker": "redis://:***@cache:6379/0"}),
        ({"keys": ["a", "b"], "api_key": ["a", "b"]}, {"keys": ["a", "b"], "api_key": ["***", "***"]}),
    ],
    ids=["key", "nested-int", "none-stays", "uri", "uri-list", "no-password", "uri-no-user", "list-under-key"],
)
def test_redact(tree, expected):
    original = json.loads(json.dumps(tree))

    assert redact(tree) == expected
    assert tree == original  # a copy: the caller's config is untouched


# ----- MLflow not installed -----
def test_tracking_on_without_mlflow_stops_with_one_line(tmp_path, table_csv):
    code = """
import json, sys
sys.modules["mlflow"] = None  # `import mlflow` now fails, as it does when MLflow is not installed
from ml_tabular.cli import main
main(json.loads(sys.argv[1]))
"""
    args = ["fit", *tabular_args(table_csv, f"sqlite:///{tmp_path / 'mlflow.db'}", epochs=1)]

    done = run_python(code, json.dumps(args), cwd=tmp_path)

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    named = [line for line in done.stderr.splitlines() if "ml_tabular[mlops]" in line]
    assert len(named) == 1
    assert named[0].startswith("ml_tabular: error:") and "mlflow.enabled false" in named[0]
    assert not (tmp_path / "mlflow.db").exists()
    assert not (tmp_path / "mlruns").exists() and not (tmp_path / "lightning_logs").exists()


# ----- the example script -----
@pytest.mark.slow
def test_example_manual_loop_tracks_its_epochs(tmp_path, empty_store):
    (tmp_path / "data").symlink_to(REPO / "data")
    (tmp_path / "configs").symlink_to(REPO / "configs")
    shutil.copyfile(empty_store, tmp_path / "x.db")
    uri = f"sqlite:///{tmp_path / 'x.db'}"

    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "example_manual_loop.py"), "--epochs", "2"],
        cwd=tmp_path,
        env=clean_env(MLFLOW_TRACKING_URI=uri, GIT_CEILING_DIRECTORIES=str(tmp_path.parent)),
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr
    client, run = only_run(uri)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "manual_loop__dataset=titanic"
    assert [step for step, _ in history(client, run.info.run_id, "val_loss")] == [0, 1]
    assert run.data.tags["framework"] == "pytorch"
    assert run.data.tags["dataset_name"] == "titanic"
    assert run.data.params["data.init_args.target"] == "Survived"
