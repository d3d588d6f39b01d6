"""``ml_tabular tune`` workers on one PostgreSQL study, as a team runs them: started together on fresh databases, one
killed mid-trial (SIGKILL), the study resumed by a rerun; a storage that is not there is one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_cli, tabular_args
from postgres import PASSWORD
from servers import free_port
from test_tune import cli_env, write_search

SEARCH = {"sampler": {"type": "random", "seed": 3}, "params": {"model.init_args.lr": {"low": 1e-3, "high": 0.05}}}
EXPERIMENT = "ml_tabular_tabular_baselines"


def start_worker(folder: Path, table: Path, tracking: str, study: list[str], *args: str) -> subprocess.Popen:
    """``ml_tabular tune`` as a user starts it in a shell, in its own process group (killed as a group)."""
    command = [sys.executable, "-m", "ml_tabular", "tune", *tabular_args(table, tracking), *study, *args]
    log_path = folder / f"worker_{time.monotonic_ns()}.log"
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            command, cwd=folder, env=cli_env(), stdout=subprocess.DEVNULL, stderr=log, start_new_session=True
        )
    worker.log_path = log_path
    return worker


def finish(worker: subprocess.Popen) -> None:
    assert worker.wait(timeout=300) == 0, worker.log_path.read_text()[-3000:]


def study_runs(tracking: str):
    """The study's parent runs and its trial runs by trial number (each number once)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking)
    runs = client.search_runs([client.get_experiment_by_name(EXPERIMENT).experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    trials = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    numbers = [int(r.data.tags["trial_number"]) for r in trials]
    assert len(numbers) == len(set(numbers)), sorted(numbers)
    return parents, {int(r.data.tags["trial_number"]): r for r in trials}


def load_study(storage: str):
    import optuna

    return optuna.load_study(study_name="team", storage=storage)


@pytest.fixture
def databases(postgresql, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A fresh Optuna database and a fresh MLflow database (both have an ``alembic_version`` table: one each), as
    URLs without the password: libpq reads ``PGPASSWORD``, set here for this process and the workers, as the
    README shows (no password on a command line)."""
    name = request.node.name.split("[")[0].removeprefix("test_")[:40]
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    urls = [postgresql.create_database(f"{kind}_{name}") for kind in ("optuna", "mlflow")]
    return tuple(url.replace(f":{PASSWORD}@", "@") for url in urls)


@pytest.mark.slow
def test_two_workers_started_together_share_one_study(tmp_path: Path, table_csv: Path, databases) -> None:
    storage, tracking = databases
    study = ["--search", str(write_search(tmp_path, SEARCH)), "--storage", storage, "--study-name", "team"]
    workers = [start_worker(tmp_path, table_csv, tracking, study, "--n-trials", "2") for _ in range(2)]
    for worker in workers:
        finish(worker)

    trials = load_study(storage).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert {t.state.name for t in trials} <= {"COMPLETE", "PRUNED"}
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both took part
    parents, runs = study_runs(tracking)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(runs) == [0, 1, 2, 3]
    assert {r.data.tags["mlflow.parentRunId"] for r in runs.values()} == {parents[0].info.run_id}
    assert all(r.info.status == "FINISHED" for r in runs.values())


def running_trial_of(storage: str, pid: int, tracking: str) -> int | None:
    """The number of the trial worker ``pid`` is training now (its MLflow run made), if any."""
    import optuna

    try:
        trials = load_study(storage).get_trials(states=(optuna.trial.TrialState.RUNNING,))
        _, runs = study_runs(tracking)
    except Exception:  # the study or the experiment is not made yet
        return None
    mine = [t.number for t in trials if t.user_attrs.get("worker", "").endswith(f":{pid}") and t.number in runs]
    return mine[0] if mine else None


@pytest.mark.slow
def test_killed_worker_trial_fails_study_goes_on_and_resumes(tmp_path: Path, table_csv: Path, databases) -> None:
    storage, tracking = databases
    study = ["--search", str(write_search(tmp_path, SEARCH)), "--storage", storage, "--study-name", "team"]
    study += ["--heartbeat", "1"]  # a trial is stale after 3 s without a beat
    doomed = start_worker(tmp_path, table_csv, tracking, study, "--n-trials", "100")
    survivor = start_worker(tmp_path, table_csv, tracking, study, "--n-trials", "100", "--timeout", "25")
    deadline, killed = time.monotonic() + 240, None
    while killed is None and time.monotonic() < deadline and doomed.poll() is None:
        killed = running_trial_of(storage, doomed.pid, tracking)
        time.sleep(0.2)
    assert killed is not None, "the worker never got into a trial"
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(timeout=30)
    finish(survivor)

    import optuna

    trials = {t.number: t for t in load_study(storage).trials}
    assert trials[killed].state == optuna.trial.TrialState.FAIL  # by the survivor, through the heartbeat
    assert [n for n, t in trials.items() if t.state.name not in ("COMPLETE", "PRUNED")] == [killed]
    assert max(trials) > killed  # the study went on after the kill
    parents, runs = study_runs(tracking)
    assert sorted(runs) == sorted(trials)
    assert (runs[killed].info.status, runs[killed].data.tags["trial_state"]) == ("FAILED", "FAIL")
    assert all(r.info.status == "FINISHED" for n, r in runs.items() if n != killed)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"

    again = run_cli("tune", *tabular_args(table_csv, tracking), *study, "--n-trials", "1", cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert max(t.number for t in load_study(storage).trials) == max(trials) + 1  # the count goes on
    resumed, runs = study_runs(tracking)
    assert [p.info.run_id for p in resumed] == [parents[0].info.run_id] and max(runs) == max(trials) + 1


def test_unreachable_postgresql_is_one_line(tmp_path: Path, table_csv: Path, store: str) -> None:
    storage = f"postgresql+psycopg2://someone:pw-123@127.0.0.1:{free_port()}/optuna"  # nothing listens there
    search = str(write_search(tmp_path, SEARCH))
    started = time.monotonic()
    done = run_cli("tune", *tabular_args(table_csv, store), "--search", search, "--storage", storage, cwd=tmp_path)
    seconds = time.monotonic() - started
    assert done.returncode == 2, done.stderr[-2000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ml_tabular: error: cannot open the Optuna storage 'postgresql+psycopg2://someone:***@")
    assert "Connection refused" in last and "pw-123" not in done.stderr
    print(f"refused in {seconds:.1f} s: {last}")


def test_heartbeat_below_one_second_is_one_line(tmp_path: Path, table_csv: Path, store: str) -> None:
    search = str(write_search(tmp_path, SEARCH))
    done = run_cli(
        "tune", *tabular_args(table_csv, store), "--search", search, "--heartbeat", "0", "--n-trials", "1", cwd=tmp_path
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "ml_tabular: error: --heartbeat 0: a worker's heartbeat interval is a whole number of seconds, 1 or more."
    )
