"""``ml_tabular serve``: the scoring server answers as ``predict`` does, says what is wrong, stops with its group."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import ModelZoo
from servers import (
    Proc,
    command_line,
    command_lines_with,
    descendants,
    free_port,
    kill_all,
    processes,
    running,
    wait_until_ready,
)

from ml_tabular.cli import main


def start_serve(model_uri: str, store: str, cwd: Path, port: int) -> subprocess.Popen:
    """``ml_tabular serve`` as a user starts it, the store given by ``MLFLOW_TRACKING_URI``; output in ``cwd``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_TABULAR_"))}
    env.update(MLFLOW_TRACKING_URI=store, PYTHONWARNINGS="ignore")
    with open(cwd / "out.txt", "w") as out, open(cwd / "err.txt", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "ml_tabular", "serve", "--model", model_uri, "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own group, so the test can tell the server's group from it
        )


def post(url: str, body: bytes, content_type: str = "application/json") -> tuple[int, dict]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def split_json(rows: pd.DataFrame) -> bytes:
    """``rows`` as MLflow's ``dataframe_split`` JSON (a missing value is null)."""
    return json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}).encode()


def assert_same_table(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert list(got.columns) == list(expected.columns)
    for column in expected.columns:
        if pd.api.types.is_numeric_dtype(expected[column]):
            np.testing.assert_allclose(got[column].to_numpy(float), expected[column].to_numpy(float), rtol=0, atol=1e-6)
        elif pd.api.types.is_datetime64_any_dtype(expected[column]):
            assert pd.to_datetime(got[column], utc=True).tolist() == pd.to_datetime(expected[column], utc=True).tolist()
        else:
            assert got[column].astype(str).tolist() == expected[column].astype(str).tolist()


def stop_and_check_group(proc: subprocess.Popen, signum: int, store: str) -> int:
    """Send ``signum`` to ``ml_tabular serve`` alone; check that nothing of its server is left; its exit code."""
    below: list[Proc] = descendants(proc.pid)
    groups = {proc.pid} | {p.pgid for p in below}
    try:
        assert any("uvicorn" in line for line in (command_line(p.pid) for p in below)), (
            "uvicorn should run below ml_tabular serve"
        )
        assert command_lines_with(store.removeprefix("sqlite:///")) == []  # the store only in the environment
        os.kill(proc.pid, signum)
        returncode = proc.wait(timeout=30)
        late = [p for p in processes().values() if p.pgid in groups - {proc.pid}]  # started after the snapshot
        assert running(below + late) == []
        return returncode
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        kill_all(below, groups)


def printed_curl(out: Path) -> tuple[str, bytes]:
    """The URL and body of the ``curl`` example ``serve`` printed, read as a shell would."""
    [line] = [line for line in out.read_text().splitlines() if line.startswith("curl ")]
    words = shlex.split(line)
    url = next(w for w in words if w.startswith("http://"))
    return url, words[words.index("-d") + 1].encode()


@pytest.mark.slow
def test_served_classifier_answers_as_predict_and_says_what_is_wrong(model_zoo: ModelZoo, tmp_path: Path) -> None:
    trained = model_zoo.models["classifier"]
    port = free_port()
    proc = start_serve(trained.model_uri, model_zoo.store, tmp_path, port)
    try:
        expected = trained.predicted
        wait_until_ready(f"http://127.0.0.1:{port}/ping", proc)
        url = f"http://127.0.0.1:{port}/invocations"
        assert f"{trained.model_uri} on {url}" in (tmp_path / "err.txt").read_text()

        status, answer = post(*printed_curl(tmp_path / "out.txt"))
        assert status == 200 and len(answer["predictions"]) == 5  # the model's input example: 5 training rows

        for body, content_type in [
            (split_json(trained.rows), "application/json"),
            (trained.rows_path.read_bytes(), "text/csv"),
        ]:
            status, answer = post(url, body, content_type)
            assert status == 200, answer
            assert_same_table(pd.DataFrame(answer["predictions"]), expected)

        status, answer = post(url, split_json(trained.rows.drop(columns=["x1"])))
        assert status == 400 and "missing inputs" in answer["message"] and "x1" in answer["message"]
        status, answer = post(url, split_json(trained.rows.head(2).astype({"x2": object}).assign(x2="tall")))
        assert status == 400 and "x2" in answer["message"] and "could not convert string to float" in answer["message"]
    finally:
        returncode = stop_and_check_group(proc, signal.SIGTERM, model_zoo.store)
    assert returncode == 128 + signal.SIGTERM


@pytest.mark.slow
def test_served_forecaster_from_a_run_uri_answers_as_predict(model_zoo: ModelZoo, tmp_path: Path) -> None:
    trained = model_zoo.models["forecaster"]
    port = free_port()
    proc = start_serve(f"runs:/{trained.run_id}/model", model_zoo.store, tmp_path, port)
    try:
        expected = trained.predicted
        wait_until_ready(f"http://127.0.0.1:{port}/ping", proc)
        rows = trained.rows.astype({"timestamp": str})  # as a client sends them: text, as in the CSV file
        status, answer = post(f"http://127.0.0.1:{port}/invocations", split_json(rows))
        assert status == 200, answer
        assert_same_table(pd.DataFrame(answer["predictions"]), expected)
        status, answer = post(f"http://127.0.0.1:{port}/invocations", split_json(rows.head(5)))
        assert status == 400 and "needs at least 24" in answer["message"]
    finally:
        returncode = stop_and_check_group(proc, signal.SIGINT, model_zoo.store)
    assert returncode == 0  # Ctrl-C


def serve_in_process(capsys: pytest.CaptureFixture, *args: str) -> str:
    """Run ``ml_tabular serve ARGS`` here; it must stop with exit code 2 and one ``ml_tabular: error:`` line."""
    with pytest.raises(SystemExit) as exited:
        main(["serve", *args])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [line for line in err.splitlines() if line.startswith("ml_tabular: error:")]
    return line


def test_unknown_model_or_alias_is_one_line(isolated, store: str, capsys) -> None:
    from mlflow import MlflowClient

    MlflowClient(store).create_registered_model("titanic")

    line = serve_in_process(capsys, "--model", "models:/titanic@champion", "--tracking_uri", store)
    assert "models:/titanic@champion" in line and "alias champion not found" in line and "runs:/" in line

    line = serve_in_process(capsys, "--model", "models:/nope/1", "--tracking_uri", store)
    assert "models:/nope/1" in line and "nope not found" in line


def test_a_store_that_does_not_exist_is_one_line(isolated, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "elsewhere" / "mlflow.db"

    line = serve_in_process(capsys, "--model", "models:/titanic@champion", "--tracking_uri", f"sqlite:///{missing}")

    assert str(missing) in line and "MLFLOW_TRACKING_URI" in line
    assert not missing.exists()  # no empty store made on the way


def test_a_port_in_use_is_one_line(isolated, store: str, capsys) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        line = serve_in_process(
            capsys, "--model", "models:/titanic@champion", "--port", str(port), "--tracking_uri", store
        )
    assert f"127.0.0.1:{port}" in line and "--port" in line
