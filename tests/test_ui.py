"""``ml_tabular ui``: the MLflow UI on a local store, and clear answers for stores it cannot serve."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from ml_tabular.cli import main


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Poll ``url`` until it answers ``OK``; fail early if the server process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ml_tabular ui exited with code {proc.returncode}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.read().decode().strip() == "OK":
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not answer OK within {timeout} s")


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
        wait_for_health(f"http://127.0.0.1:{port}/health", proc)
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
