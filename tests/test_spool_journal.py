"""The spool's journal on its own: writes kept in order, sent once each through a real MLflow client, kept when
the server is away (a closed loopback port), and removed once all are sent."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import history
from servers import free_port

from ml_tabular.mlops.spool import Spool, SpoolRun, is_unavailable
from ml_tabular.mlops.tracking import environment


@pytest.fixture
def run(store: str):
    from mlflow import MlflowClient

    client = MlflowClient(store)
    experiment = client.create_experiment("spooled")
    return client, client.create_run(experiment).info.run_id


def keep_epochs(spool: Spool, epochs: int) -> None:
    now = int(time.time() * 1000)
    for epoch in range(epochs):
        spool.keep("log_batch", metrics=[["val_loss", 1.0 / (epoch + 1), now + epoch, epoch]], params=[], tags=[])


def test_kept_writes_are_sent_in_order_once_each(tmp_path: Path, run, store: str) -> None:
    client, run_id = run
    spool = Spool(tmp_path / "spool", SpoolRun(store, run_id))
    keep_epochs(spool, 3)
    log = tmp_path / "train.log"
    log.write_text("epoch 0\nepoch 1\n")
    spool.keep("log_artifact", {"path": log}, artifact_path="logs")
    log.unlink()  # the spool has its own copy (the original may be a temporary file)
    spool.keep("set_terminated", status="FINISHED", end_time=int(time.time() * 1000))
    assert spool.pending() == 5
    assert spool.describe() == "3 metric points, 1 artifacts, 1 run status"

    away = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    from mlflow import MlflowClient

    with environment({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}), pytest.raises(Exception) as refused:
        spool.send(MlflowClient(away), away)
    assert is_unavailable(refused.value)
    assert spool.pending() == 5, "nothing counted as sent"

    assert Spool.open(spool.folder).send(client) == 5
    assert history(client, run_id, "val_loss") == [(0, 1.0), (1, 0.5), (2, 1.0 / 3)]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(run_id, "logs")] == ["logs/train.log"]
    assert not spool.folder.exists()
    assert Spool.find(tmp_path) == []


def test_a_send_cut_short_goes_on_where_it_stopped(tmp_path: Path, run, store: str) -> None:
    client, run_id = run
    spool = Spool(tmp_path / "mlruns" / "1" / run_id / "spool", SpoolRun(store, run_id))
    keep_epochs(spool, 4)
    (spool.folder / "sent").write_text("2")  # a process died after sending the first two
    assert spool.pending() == 2
    assert Spool.find(tmp_path / "mlruns") == [spool.folder]
    assert spool.send(client) == 2
    assert [step for step, _ in history(client, run_id, "val_loss")] == [2, 3]


def test_a_client_error_is_not_taken_for_an_absent_server() -> None:
    from mlflow.exceptions import MlflowException, RestException

    def answer(code: str) -> RestException:  # what MLflow's client raises for a server's JSON error
        return RestException({"error_code": code, "message": code.lower()})

    assert not is_unavailable(answer("INVALID_PARAMETER_VALUE"))
    assert not is_unavailable(answer("UNAUTHENTICATED"))
    assert not is_unavailable(answer("PERMISSION_DENIED"))
    assert is_unavailable(answer("TEMPORARILY_UNAVAILABLE"))
    assert is_unavailable(MlflowException("API request to http://x/api failed with exception ConnectionError"))
