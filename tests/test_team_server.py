"""A team's tracking server: ``ml_tabular server`` on PostgreSQL with basic-auth and on SQLite, and ``ml_tabular fit``
against it as users run it — everything recorded, credentials and permissions checked on one line, concurrent fits.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import artifacts, history, make_table, only_run, run_cli, tabular_args
from postgres import PASSWORD as DB_PASSWORD
from servers import command_line, command_lines_with, descendants, free_port
from team_server import ADMIN_PASSWORD, TeamServer

from ml_tabular.errors import TrackingError
from ml_tabular.mlops.store_check import PROBE_TIMEOUT_SECONDS, check_tracking_store, tag_experiment_kind

ALICE, ALICE_PASSWORD = "alice", "alice-Password-3b7e"
BOB, BOB_PASSWORD = "bob", "bob-Password-c41d"
EXPERIMENT = "team_alice"
ADMINS_EXPERIMENT = "team_admin_only"  # bob may read it (MLflow's default READ), not write to it


@contextlib.contextmanager
def signed_in(server: TeamServer, user: str | None = None, password: str | None = None) -> Iterator[None]:
    """This process's MLflow client talks to ``server`` as ``user`` (the admin by default) inside the block."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in server.client_env(user, password).items():
            patch.setenv(name, value)
        yield


@dataclass
class Finished:
    returncode: int
    stderr: str
    seconds: float  # from the start of all the fits to this one's exit
    cwd: Path

    def error_lines(self) -> list[str]:
        assert "Traceback" not in self.stderr
        return [line for line in self.stderr.splitlines() if "error" in line.lower()]


def fits_at_once(folder: Path, jobs: dict[str, tuple[dict[str, str], list[str]]]) -> dict[str, Finished]:
    """Start one ``ml_tabular fit ARGS`` per job at the same moment, each in its own folder with ``env`` (tracking
    server, credentials) added to a clean environment, as users would; wait for all."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_TABULAR_"))}
    procs = {}
    started = time.monotonic()
    for name, (env, args) in jobs.items():
        (folder / name).mkdir()
        with open(folder / name / "stderr.txt", "w") as err:
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", "ml_tabular", "fit", *args],
                cwd=folder / name,
                env=clean | env | {"PYTHONWARNINGS": "ignore"},
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
    seconds: dict[str, float] = {}
    while len(seconds) < len(procs) and time.monotonic() - started < 600:
        for name, proc in procs.items():
            if name not in seconds and proc.poll() is not None:
                seconds[name] = time.monotonic() - started
        time.sleep(0.2)
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
    return {
        name: Finished(proc.wait(), (folder / name / "stderr.txt").read_text(), seconds.get(name, 600), folder / name)
        for name, proc in procs.items()
    }


def run_count(server: TeamServer) -> int:
    """Runs on the server, in every experiment (as the admin sees them)."""
    from mlflow import MlflowClient

    with signed_in(server):
        client = MlflowClient(server.url)
        return len(client.search_runs([e.experiment_id for e in client.search_experiments()]))


@pytest.fixture(scope="module")
def team(auth_server: TeamServer) -> TeamServer:
    """The PostgreSQL server with the users alice and bob, added by the admin as the README shows."""
    from mlflow import MlflowClient

    with warnings.catch_warnings():  # mlflow.server imports Starlette's deprecated WSGI middleware
        warnings.simplefilter("ignore")
        from mlflow.server import get_app_client

    with signed_in(auth_server):
        auth = get_app_client("basic-auth", tracking_uri=auth_server.url)
        auth.create_user(username=ALICE, password=ALICE_PASSWORD)
        auth.create_user(username=BOB, password=BOB_PASSWORD)
        MlflowClient(auth_server.url).create_experiment(ADMINS_EXPERIMENT)
    return auth_server


@pytest.fixture(scope="module")
def alice_run(team: TeamServer, tmp_path_factory: pytest.TempPathFactory):
    """alice trains on the server with the MLflow model on; the fit, and her run."""
    folder = tmp_path_factory.mktemp("alice")
    table = folder / "table.csv"
    make_table().to_csv(table, index=False)
    args = [*tabular_args(table, "null", log_model=True), "--mlflow.experiment_name", EXPERIMENT]  # null: the env's
    env = team.client_env(ALICE, ALICE_PASSWORD) | {"ML_TABULAR_ENV": "prod"}
    done = fits_at_once(folder, {"fit": (env, args)})["fit"]
    assert done.returncode == 0, done.stderr[-3000:]
    with signed_in(team, ALICE, ALICE_PASSWORD):
        _, run = only_run(team.url, EXPERIMENT)
    return done, run


@pytest.mark.slow
def test_a_fit_on_the_team_server_records_everything_a_local_run_does(team, alice_run) -> None:
    done, run = alice_run
    with signed_in(team, ALICE, ALICE_PASSWORD):
        client, run = only_run(team.url, EXPERIMENT)
        run_id = run.info.run_id

        assert run.info.status == "FINISHED"
        assert run.data.params["trainer.max_epochs"] == "2"
        assert "model.init_args.dropout" in run.data.params
        for key in ("train_loss", "val_loss", "val_accuracy", "val_auroc"):
            assert [step for step, _ in history(client, run_id, key)] == [0, 1], key
        tags = run.data.tags
        assert (tags["model_type"], tags["framework"], tags["env"]) == ("tabular_mlp", "pytorch-lightning", "prod")
        assert tags["dataset_name"] == "table" and tags["mlflow.user"] == ALICE
        assert artifacts(client, run_id, "configs") == {"configs/run_config.yaml", "configs/effective_app_config.yaml"}
        assert artifacts(client, run_id, "checkpoints") == {"checkpoints/best.ckpt", "checkpoints/last.ckpt"}
        assert "plots/learning_curve.png" in artifacts(client, run_id, "plots")
        assert artifacts(client, run_id, "logs") == {"logs/train.log"}
        (dataset_input,) = run.inputs.dataset_inputs
        assert dataset_input.dataset.name == "table" and dataset_input.dataset.digest
    # artifacts went through the server to its destination; the client kept only its checkpoints, and no store
    assert list(team.artifacts.rglob("run_config.yaml")) and list(team.artifacts.rglob("train.log"))
    assert not list(done.cwd.rglob("*.db")) and not list(done.cwd.rglob("run_config.yaml"))


@pytest.mark.slow
def test_the_server_model_loads_and_registers(team, alice_run, tmp_path) -> None:
    import mlflow

    _, run = alice_run
    rows = make_table(12, seed=1).drop(columns=["y", "amount"]).astype({"id": "float64"})
    model_id = run.outputs.model_outputs[-1].model_id
    register = ["register", "--run-id", run.info.run_id, "--name", "team_classifier", "--alias", "champion"]

    done = run_cli(*register, cwd=tmp_path, env=team.client_env(ALICE, ALICE_PASSWORD))

    assert done.returncode == 0, done.stderr[-2000:]
    with signed_in(team, ALICE, ALICE_PASSWORD):
        mlflow.set_tracking_uri(team.url)
        try:
            predictions = mlflow.pyfunc.load_model(f"models:/{model_id}").predict(rows)
            registered = mlflow.pyfunc.load_model("models:/team_classifier@champion").predict(rows)
        finally:
            mlflow.set_tracking_uri(None)
    assert len(predictions) == 12 and {"prediction", "prob_0", "prob_1"} <= set(predictions.columns)
    assert registered.equals(predictions)


@pytest.mark.slow
def test_no_password_or_token_reaches_the_run(team, alice_run, tmp_path) -> None:
    import mlflow

    done, run = alice_run
    model_id = run.outputs.model_outputs[-1].model_id
    with signed_in(team, ALICE, ALICE_PASSWORD):
        download = mlflow.artifacts.download_artifacts
        run_files = Path(download(run_id=run.info.run_id, tracking_uri=team.url, dst_path=str(tmp_path / "run")))
        download(f"models:/{model_id}", tracking_uri=team.url, dst_path=str(tmp_path / "model"))
        model = mlflow.MlflowClient(team.url).get_logged_model(model_id)
    texts = [*run.data.params.values(), *run.data.tags.values(), *model.params.values(), *model.tags.values()]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert run_files / "logs" / "train.log" in files and any(p.suffix == ".ckpt" for p in files)
    token = base64.b64encode(f"{ALICE}:{ALICE_PASSWORD}".encode()).decode()  # what basic-auth sends
    for secret in (ALICE_PASSWORD, token, ADMIN_PASSWORD, DB_PASSWORD):
        assert not [t for t in [*texts, done.stderr] if secret in t]
        assert not [p for p in files if secret.encode() in p.read_bytes()], secret


@pytest.fixture(scope="module")
def refused(team: TeamServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Finished]:
    """Three fits stopped before training, run at once: a wrong password, no permission, no server at all."""
    folder = tmp_path_factory.mktemp("refused")
    table = folder / "table.csv"
    make_table().to_csv(table, index=False)
    args = tabular_args(table, "null")
    before = run_count(team)
    finished = fits_at_once(
        folder,
        {
            "wrong_password": (team.client_env(ALICE, "not-alices-password"), args),
            "no_permission": (
                team.client_env(BOB, BOB_PASSWORD),
                [*args, "--mlflow.experiment_name", ADMINS_EXPERIMENT],
            ),
            "no_server": ({"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}"}, args),
        },
    )
    assert run_count(team) == before  # no run made, so none left RUNNING
    for done in finished.values():  # and nothing trained: no checkpoint folder
        assert done.returncode == 2 and not (done.cwd / "mlruns").exists(), done.stderr[-2000:]
        assert done.seconds < 60, done.seconds  # Python start-up included; MLflow's own retries take ~4 min
    return finished


@pytest.mark.slow
def test_a_wrong_password_stops_before_training_on_one_line(team, refused) -> None:
    assert refused["wrong_password"].error_lines() == [
        f"ml_tabular: error: tracking server {team.url} refused user 'alice' (HTTP 401: wrong user name or "
        "password). Set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to your account there."
    ]


@pytest.mark.slow
def test_a_user_without_permission_is_told_which_experiment(team, refused) -> None:
    assert refused["no_permission"].error_lines() == [
        f"ml_tabular: error: tracking server {team.url}: user 'bob' has no permission to write to experiment "
        f"'{ADMINS_EXPERIMENT}' (HTTP 403). Ask its owner or an admin for EDIT permission on it, or use another "
        "--mlflow.experiment_name."
    ]


@pytest.mark.slow
def test_fit_against_a_server_that_is_not_there_is_one_line(refused) -> None:
    (line,) = refused["no_server"].error_lines()
    assert line.startswith("ml_tabular: error: tracking server http://127.0.0.1:")
    assert line.endswith(
        "is not reachable (connection refused). Start it (see `ml_tabular server --help`), or train on the local "
        "store instead: --mlflow.tracking_uri null and unset MLFLOW_TRACKING_URI."
    )


@pytest.mark.slow
def test_the_server_check_answers_within_seconds(team, monkeypatch) -> None:
    with signed_in(team, ALICE, "not-alices-password"):
        started = time.monotonic()
        with pytest.raises(TrackingError, match="HTTP 401"):
            check_tracking_store(team.url, EXPERIMENT)
        assert time.monotonic() - started <= 10

    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)  # no credentials at all
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    with pytest.raises(TrackingError, match=r"asks for a user name and password \(HTTP 401\)"):
        check_tracking_store(team.url, EXPERIMENT)


def test_a_server_that_is_not_there_is_one_line_fast(isolated, monkeypatch) -> None:
    import mlflow  # noqa: F401  (imported before the clock starts: the check is timed, not Python's imports)

    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
    started = time.monotonic()

    with pytest.raises(TrackingError) as refused:
        check_tracking_store(url, EXPERIMENT)

    assert time.monotonic() - started < 5
    assert str(refused.value) == (
        f"tracking server {url} is not reachable (connection refused). Start it (see `ml_tabular server --help`), "
        "or train on the local store instead: --mlflow.tracking_uri null and unset MLFLOW_TRACKING_URI."
    )


@pytest.mark.slow
def test_a_server_that_never_answers_is_one_line_within_15_s(isolated) -> None:
    with socket.socket() as silent:  # connections are accepted by the kernel, then nothing is ever said
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        started = time.monotonic()
        with pytest.raises(TrackingError, match=rf"not reachable \(no answer within {PROBE_TIMEOUT_SECONDS} s\)"):
            check_tracking_store(url, EXPERIMENT)
        assert time.monotonic() - started <= 15


@pytest.mark.slow
@pytest.mark.parametrize("where", ["sqlite_server", "fresh_local_store"])
def test_four_fits_at_once_all_finish_complete(where: str, request, tmp_path) -> None:
    from mlflow import MlflowClient

    if where == "sqlite_server":
        server: TeamServer = request.getfixturevalue("sqlite_server")
        uri = server.url
    else:
        uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"  # no file yet: the four fits create it together
    table = tmp_path / "table.csv"
    make_table().to_csv(table, index=False)
    experiment = f"concurrent_{where}"  # new: the four create it together too
    args = [*tabular_args(table, uri), "--mlflow.experiment_name", experiment]
    jobs = {f"fit{seed}": ({}, [*args, "--seed_everything", str(seed)]) for seed in range(4)}

    finished = fits_at_once(tmp_path, jobs)

    assert [done.returncode for done in finished.values()] == [0] * 4, [d.stderr[-2000:] for d in finished.values()]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert sorted(r.data.tags["seed"] for r in runs) == ["0", "1", "2", "3"]
    for run in runs:
        assert run.info.status == "FINISHED"
        assert [step for step, _ in history(client, run.info.run_id, "val_loss")] == [0, 1]
        assert run.data.params["trainer.max_epochs"] == "2"
        assert artifacts(client, run.info.run_id, "logs") == {"logs/train.log"}
        assert "checkpoints/last.ckpt" in artifacts(client, run.info.run_id, "checkpoints")


@pytest.mark.slow
def test_the_server_is_modest_and_keeps_its_secrets_off_command_lines(team) -> None:
    below = descendants(team.proc.pid)  # mlflow server, uvicorn, its resource tracker, one worker; no job runner
    assert 2 <= len(below) <= 5, [command_line(p.pid) for p in below]
    for secret in (DB_PASSWORD, ADMIN_PASSWORD):
        assert command_lines_with(secret) == []


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ([], {}, "ml_tabular server needs a database: set MLFLOW_BACKEND_STORE_URI or pass --backend-store-uri."),
        (
            ["--auth"],
            {"MLFLOW_BACKEND_STORE_URI": "sqlite:///m.db", "MLFLOW_FLASK_SERVER_SECRET_KEY": "k"},
            "--auth needs MLFLOW_AUTH_ADMIN_PASSWORD in the environment: MLFLOW_AUTH_ADMIN_PASSWORD is the password "
            "of the user 'admin' (>= 12 characters), MLFLOW_FLASK_SERVER_SECRET_KEY a long random string, the same "
            "on every replica (python -c 'import secrets; print(secrets.token_hex(32))').",
        ),
        (
            ["--auth"],
            {
                "MLFLOW_BACKEND_STORE_URI": "sqlite:///m.db",
                "MLFLOW_AUTH_ADMIN_PASSWORD": "short",
                "MLFLOW_FLASK_SERVER_SECRET_KEY": "k",
            },
            "MLFLOW_AUTH_ADMIN_PASSWORD has 5 characters: MLflow's basic-auth needs at least 12.",
        ),
        (
            ["--backend-store-uri", "./mlruns"],
            {},
            "backend store './mlruns' is not a database URI: use postgresql+psycopg2://... or "
            "sqlite:////absolute/path/mlflow.db.",
        ),
    ],
)
def test_server_refuses_what_cannot_work_on_one_line(isolated, monkeypatch, capsys, args, env, message) -> None:
    from ml_tabular.cli import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)

    with pytest.raises(SystemExit) as exited:
        main(["server", "--artifacts-destination", "artifacts", *args])

    assert exited.value.code == 2
    assert capsys.readouterr().err == f"ml_tabular: error: {message}\n"


def test_server_on_a_taken_port_is_one_line(isolated, capsys, tmp_path) -> None:
    from ml_tabular.cli import main

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        store = f"sqlite:///{tmp_path / 'mlflow.db'}"
        with pytest.raises(SystemExit) as exited:
            main(["server", "--backend-store-uri", store, "--artifacts-destination", "a", "--port", str(port)])

    assert exited.value.code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def test_experiment_tagged_by_many_fits_at_once(sqlite_server: TeamServer) -> None:
    """Fits starting together all tag their experiment; the server's inserts clash (HTTP 400, UNIQUE constraint
    failed: a plain set_experiment_tag fails in some of 8 threads), which tag_experiment_kind takes as done."""
    import threading

    from mlflow import MlflowClient

    experiment_id = MlflowClient(sqlite_server.url).create_experiment("tagged_at_once")
    start, errors = threading.Barrier(8), []

    def one() -> None:
        start.wait()
        try:
            tag_experiment_kind(MlflowClient(sqlite_server.url), experiment_id)
        except Exception as err:  # any failure is the finding
            errors.append(err)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert MlflowClient(sqlite_server.url).get_experiment(experiment_id).tags["mlflow.experimentKind"]
