"""``ml_tabular ui``: the MLflow UI on a local store, and clear answers for stores it cannot serve."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
from servers import Proc, command_lines_with, descendants, free_port, kill_all, processes, running, wait_until_ready

from ml_tabular.cli import main
from ml_tabular.commands import ui


@pytest.mark.slow
def test_ui_serves_the_store_on_the_loopback_address(tmp_path, store):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_TABULAR_"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ml_tabular", "ui", "--port", str(port), "--tracking_uri", store],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/health", proc, body="OK")
        url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=5"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            experiments = json.loads(response.read())["experiments"]
        assert [e["name"] for e in experiments] == ["Default"]  # the store given, not another one
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


def test_ui_on_a_tracking_server_only_points_at_it(isolated, capsys):
    started = time.monotonic()

    with pytest.raises(SystemExit) as exited:
        main(["ui", "--tracking_uri", "http://127.0.0.1:9"])

    assert exited.value.code == 0
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert "server" in err and "http://127.0.0.1:9" in err


def test_ui_refuses_a_file_store(isolated, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["ui", "--tracking_uri", "file:./mlruns"])

    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.startswith("ml_tabular: error:") and "file store" in err and "MLFLOW_ALLOW_FILE_STORE" in err


@pytest.mark.slow
def test_ui_hides_the_store_uri_and_takes_its_server_down_on_sigterm(tmp_path, store):
    from mlflow import MlflowClient

    MlflowClient(store).create_experiment("only_in_this_store")  # shows that the server got this store
    cwd = tmp_path / "cwd"  # not the store's folder: a server ignoring the URI would make its own store here
    cwd.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_TABULAR_"))}
    env["MLFLOW_TRACKING_URI"] = store  # not --tracking_uri: no command line may hold the URI, not even ours
    proc = subprocess.Popen(
        [sys.executable, "-m", "ml_tabular", "ui", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own group, so the test can tell the server's group from it
    )
    below: list[Proc] = []
    groups = {proc.pid}
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/health", proc, body="OK")
        url = f"http://127.0.0.1:{port}/ajax-api/2.0/mlflow/experiments/search?max_results=5"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert "only_in_this_store" in [e["name"] for e in json.loads(response.read())["experiments"]]
        below = descendants(proc.pid)
        groups |= {p.pgid for p in below}
        assert below, "the server should run below ml_tabular ui"
        assert command_lines_with(store.removeprefix("sqlite:///")) == []

        os.kill(proc.pid, signal.SIGTERM)  # ml_tabular ui alone, as a service manager or `kill` would
        returncode = proc.wait(timeout=20)

        late = [p for p in processes().values() if p.pgid in groups - {proc.pid}]  # started after the snapshot
        assert running(below + late) == []
        assert returncode == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        kill_all(below, groups)


def test_ui_passes_the_store_uri_in_the_environment_and_logs_no_password(isolated, monkeypatch, caplog):
    uri = "postgresql://bob:s3cret@db.example:5432/mlflow"
    started = {}
    monkeypatch.setattr(ui, "run_server", lambda command, env: started.update(command=command, env=env) or 0)

    with caplog.at_level(logging.INFO, logger=ui.__name__):
        assert ui.ui(tracking_uri=uri, port=5123) == 0

    assert started["env"][ui.STORE_URI_ENV_VAR] == uri
    assert started["command"][-6:] == ["--host", "127.0.0.1", "--port", "5123", "--workers", "1"]
    assert not any("s3cret" in arg for arg in started["command"])
    assert "db.example" in caplog.text and "s3cret" not in caplog.text
