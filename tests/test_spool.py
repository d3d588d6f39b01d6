"""Training survives its tracking server: a real ``ml_tabular server`` killed, hung or cut from its database in the
middle of a real run (paused at chosen epochs by tests/epoch_gate.py); what it missed is kept beside the checkpoints
and sent once it is back, by the run itself or by ``ml_tabular sync``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import artifacts, history, run_cli, tabular_args
from epoch_gate import gate_args, wait_for
from servers import descendants, kill_all
from team_server import TeamServer, team_server

pytestmark = pytest.mark.slow
EPOCHS = 5
EXPERIMENT = "ml_tabular_tabular_baselines"


def start_fit(folder: Path, server: TeamServer, gate: Path, epochs: list[int], *extra: str) -> subprocess.Popen:
    """``ml_tabular fit`` against ``server`` in ``folder``, pausing at ``epochs`` (see :func:`gate_args`)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_TABULAR_"))}
    tests = str(Path(__file__).parent)
    env |= {"PYTHONWARNINGS": "ignore", "PYTHONPATH": os.pathsep.join([tests, env.get("PYTHONPATH", "")])}
    args = tabular_args(folder / "table.csv", server.url, epochs=EPOCHS)
    command = [sys.executable, "-m", "ml_tabular", "fit", *args, *gate_args(gate, epochs), *extra]
    return subprocess.Popen(command, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def crash(server: TeamServer) -> None:
    """SIGKILL the server and every process below it at once, as a machine losing it would."""
    below = descendants(server.proc.pid)
    kill_all(below, {server.proc.pid, *(p.pgid for p in below)})
    server.proc.wait(timeout=30)


def finished(fit: subprocess.Popen) -> str:
    _, stderr = fit.communicate(timeout=300)
    assert fit.returncode == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    return stderr


def check_complete(url: str, folder: Path, log_model: bool = False) -> None:
    """The run on the server has every epoch's metrics once, its checkpoints, plots and log, and is FINISHED; no
    spool is left."""
    from mlflow import MlflowClient

    client = MlflowClient(url)
    [run] = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    for key in ("val_loss", "train_loss", "epoch"):
        assert [step for step, _ in history(client, run_id, key)] == list(range(EPOCHS)), key
    assert {"checkpoints/best.ckpt", "checkpoints/last.ckpt"} <= artifacts(client, run_id, "checkpoints")
    assert "logs/train.log" in artifacts(client, run_id, "logs")
    assert artifacts(client, run_id, "plots")
    assert run.data.params["model.init_args.dropout"]
    if log_model:
        [model] = client.search_logged_models([run.info.experiment_id])
        assert model.source_run_id == run_id and model.status == "READY"
    assert not list(folder.glob("mlruns/*/*/spool")), "the spool is removed once sent"


@pytest.fixture
def gate(tmp_path: Path, table_csv: Path) -> Path:
    """The fits' working folder is tmp_path, holding table.csv; the returned folder is where they pause."""
    table_csv.rename(tmp_path / "table.csv")
    return tmp_path / "gate"


@pytest.fixture
def sqlite_backed(tmp_path: Path) -> tuple[Path, str]:
    """A server folder and its SQLite store URI (kept across the server's restarts)."""
    folder = tmp_path / "server"
    folder.mkdir()
    return folder, f"sqlite:///{folder / 'mlflow.db'}"


def test_server_killed_mid_run_gets_everything_when_it_is_back(
    tmp_path: Path, gate: Path, sqlite_backed: tuple[Path, str]
) -> None:
    folder, store = sqlite_backed
    with team_server(folder, store, auth=False) as server:
        fit = start_fit(tmp_path, server, gate, [2, 4])
        wait_for(gate / "at-2")
        crash(server)
        lost = time.monotonic()
    (gate / "go-2").touch()
    wait_for(gate / "at-4")  # epochs 2 and 3 trained with the server away
    assert time.monotonic() - lost < 60
    assert list(tmp_path.glob("mlruns/*/*/spool/journal.jsonl")), "what the server missed is kept"
    with team_server(folder, store, auth=False, port=server.port) as back:
        (gate / "go-4").touch()
        stderr = finished(fit)
        assert "is not taking writes" in stderr and "is back" in stderr
        check_complete(back.url, tmp_path)


def test_server_gone_for_good_then_sync(tmp_path: Path, gate: Path, sqlite_backed: tuple[Path, str]) -> None:
    folder, store = sqlite_backed
    with team_server(folder, store, auth=False) as server:
        fit = start_fit(tmp_path, server, gate, [1], "--mlflow.log_model", "true")
        wait_for(gate / "at-1")
        crash(server)
    (gate / "go-1").touch()
    stderr = finished(fit)
    assert "ml_tabular sync --run-id" in stderr
    [spool] = tmp_path.glob("mlruns/*/*/spool")
    run_id = spool.parent.name

    refused = run_cli("sync", cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"ml_tabular: error: tracking server {server.url} is not reachable")
    assert len(refused.stderr.strip().splitlines()) == 1
    assert spool.is_dir()

    with team_server(folder, store, auth=False, port=server.port) as back:
        done = run_cli("sync", "--run-id", run_id, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.startswith(f"run {run_id}: sent ") and "(run FINISHED)" in done.stdout
        check_complete(back.url, tmp_path, log_model=True)
        again = run_cli("sync", cwd=tmp_path)
        assert again.stdout.startswith("nothing to send")


def hung_listener(port: int) -> socket.socket:
    """A socket on ``port`` that takes connections (the kernel completes them) and never answers."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    return sock


def test_database_stopped_for_20_s_mid_run(tmp_path: Path, gate: Path) -> None:
    from postgres import running_postgres

    (tmp_path / "server").mkdir()
    with (
        running_postgres() as database,
        team_server(tmp_path / "server", database.create_database("mlflow"), auth=False) as server,
    ):
        fit = start_fit(tmp_path, server, gate, [1, 3])
        wait_for(gate / "at-1")
        database.stop()
        stopped = time.monotonic()
        (gate / "go-1").touch()
        wait_for(gate / "at-3")  # epochs 1 and 2 trained while the server answered 5xx
        time.sleep(max(0.0, 20 - (time.monotonic() - stopped)))
        database.start()
        (gate / "go-3").touch()
        stderr = finished(fit)
        assert "is not taking writes" in stderr and "is back" in stderr
        check_complete(server.url, tmp_path)


def test_server_that_never_answers(tmp_path: Path, gate: Path, sqlite_backed: tuple[Path, str]) -> None:
    folder, store = sqlite_backed
    with team_server(folder, store, auth=False) as server:
        port = server.port
        fit = start_fit(tmp_path, server, gate, [1, 3])
        wait_for(gate / "at-1")
        crash(server)
    with hung_listener(port):
        lost = time.monotonic()
        (gate / "go-1").touch()
        wait_for(gate / "at-3")
        waited = time.monotonic() - lost  # two epochs of training and the bounded wait for the hung server
    assert waited < 60, waited
    print(f"server hung: training went on after {waited:.1f} s (two epochs included)")
    with team_server(folder, store, auth=False, port=port) as back:
        (gate / "go-3").touch()
        stderr = finished(fit)
        assert "is not taking writes (no answer within 10 s)" in stderr
        check_complete(back.url, tmp_path)
