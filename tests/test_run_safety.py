"""Run safety: a bad ``--ckpt_path`` or flag stops before any run is touched, signals close a run KILLED with
128 + signum, and finishing a run (uploads, plots) cannot leave it RUNNING or turn a trained model into a failure.

The CLI tests drive ``python -m ml_tabular`` in a subprocess and read the store back with MlflowClient; the
logger and plot tests run in-process, where the failure can be injected.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import (
    TABULAR_CONFIG,
    artifacts,
    history,
    make_series,
    make_table,
    only_run,
    run_cli,
    tabular_args,
    timeseries_args,
)
from mlflow import MlflowClient
from mlflow.entities import ViewType

from ml_tabular.checkpoint import LastEpochCheckpoint
from ml_tabular.data.tabular import TabularDataModule
from ml_tabular.mlops import plots
from ml_tabular.mlops.logger import MLTabularLogger
from ml_tabular.models.tabular import TabularMLP

slow = pytest.mark.slow  # the subprocess tests; the in-process ones below stay unmarked

TABULAR_EXPERIMENT = "ml_tabular_tabular_baselines"
TIMESERIES_EXPERIMENT = "ml_tabular_time_series_baselines"
RESUMED_CONFIG = "configs/run_config.resumed_1.yaml"
ERROR = "ml_tabular: error:"

CALLBACKS = '''
import os, signal
from lightning.pytorch.callbacks import Callback


class SignalAtEpoch(Callback):
    """Sends ``signum`` to this process when epoch ``epoch`` ends (as ``kill -TERM <pid>`` or Ctrl-C would)."""

    def __init__(self, epoch: int, signum: str):
        self.epoch, self.signum = epoch, signum

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            os.kill(os.getpid(), getattr(signal, self.signum))
'''


# ----- helpers -----
def all_artifacts(client: MlflowClient, run_id: str, folder: str | None = None) -> dict[str, int | None]:
    """Every artifact file of a run (recursively) with its size."""
    found: dict[str, int | None] = {}
    for item in client.list_artifacts(run_id, folder):
        if item.is_dir:
            found.update(all_artifacts(client, run_id, item.path))
        else:
            found[item.path] = item.file_size
    return found


def artifact_digests(artifact_uri: str) -> dict[str, str]:
    """SHA-256 of every file under a local artifact root (the store here is local)."""
    root = Path(artifact_uri.removeprefix("file://"))
    if not root.is_dir():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def store_state(tracking_uri: str) -> dict:
    """Everything a user can see of a store: experiments, runs (status, times, tags, params, metrics) and each
    run's artifacts, byte for byte."""
    client = MlflowClient(tracking_uri)
    experiments = client.search_experiments(view_type=ViewType.ALL)
    state: dict = {
        "experiments": sorted(
            (e.experiment_id, e.name, e.lifecycle_stage, e.last_update_time, tuple(sorted(e.tags.items())))
            for e in experiments
        )
    }
    runs = client.search_runs([e.experiment_id for e in experiments], run_view_type=ViewType.ALL)
    for run in runs:
        info = run.info
        state[info.run_id] = {
            "status": info.status,
            "start_time": info.start_time,
            "end_time": info.end_time,
            "lifecycle_stage": info.lifecycle_stage,
            "tags": dict(run.data.tags),
            "params": dict(run.data.params),
            "metrics": dict(run.data.metrics),
            "artifacts": all_artifacts(client, info.run_id),
            "bytes": artifact_digests(info.artifact_uri),
        }
    return state


def one_error_line(done: subprocess.CompletedProcess, code: int = 2) -> str:
    """The single ``ml_tabular: error:`` line of a command that stopped cleanly with ``code``."""
    assert done.returncode == code, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith(ERROR)]
    assert len(errors) == 1, done.stderr[-3000:]
    return errors[0]


def copy_store(source: Path, target: Path) -> str:
    """A copy of a folder holding ``mlflow.db`` and its ``mlruns`` artifacts, re-pointed at the copy (so a test that
    writes to a run cannot change the shared one)."""
    shutil.copytree(source, target)
    with sqlite3.connect(target / "mlflow.db") as db:
        db.execute(
            "UPDATE experiments SET artifact_location = replace(artifact_location, ?, ?)", (str(source), str(target))
        )
        db.execute("UPDATE runs SET artifact_uri = replace(artifact_uri, ?, ?)", (str(source), str(target)))
    db.close()
    return f"sqlite:///{target / 'mlflow.db'}"


def checkpoint_epoch(path: str | Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=True)["epoch"]


def local_checkpoints(folder: Path, name: str = "last.ckpt") -> list[Path]:
    """The run-local checkpoints ``mlruns/<experiment_id>/<run_id>/checkpoints/<name>`` under ``folder``."""
    return sorted(folder.glob(f"mlruns/*/*/checkpoints/{name}"))


def cli_env(**extra: str) -> dict[str, str]:
    """The environment ``run_cli`` gives a command (no MLFLOW_*/ML_TABULAR_* variables), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_TABULAR_"))}
    return {**env, "PYTHONWARNINGS": "ignore", **extra}


# ----- one tabular and one time-series fit, in one store, shared by the tests that must not change it -----
@dataclass
class Fits:
    folder: Path
    table: Path
    series: Path
    tracking_uri: str
    tabular_run_id: str
    timeseries_run_id: str

    @property
    def tabular_last(self) -> Path:
        (path,) = self.folder.glob(f"mlruns/*/{self.tabular_run_id}/checkpoints/last.ckpt")
        return path

    @property
    def timeseries_last(self) -> Path:
        (path,) = self.folder.glob(f"mlruns/*/{self.timeseries_run_id}/checkpoints/last.ckpt")
        return path


@pytest.fixture(scope="module")
def fits(tmp_path_factory) -> Fits:
    folder = tmp_path_factory.mktemp("fits")
    table, series = folder / "table.csv", folder / "series.csv"
    make_table().to_csv(table, index=False)
    make_series().to_csv(series, index=False)
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    for args in (timeseries_args(series, tracking_uri, epochs=1), tabular_args(table, tracking_uri, epochs=2)):
        done = run_cli("fit", *args, cwd=folder)
        assert done.returncode == 0, done.stderr[-3000:]
    _, tabular = only_run(tracking_uri, TABULAR_EXPERIMENT)
    _, timeseries = only_run(tracking_uri, TIMESERIES_EXPERIMENT)
    return Fits(folder, table, series, tracking_uri, tabular.info.run_id, timeseries.info.run_id)


# ----- A: a bad --ckpt_path stops before any run is touched -----
def bad_checkpoint(kind: str, folder: Path, fits: Fits) -> Path:
    """A ``--ckpt_path`` of ``kind`` in ``folder`` (``foreign``: a time-series checkpoint, for the tabular config)."""
    bad = folder / "bad"
    bad.mkdir()
    path = bad / f"{kind}.ckpt"
    if kind == "folder":
        path.mkdir()
    elif kind == "empty":
        path.touch()
    elif kind == "truncated":
        data = fits.tabular_last.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "text":  # a YAML-ish note saved as .ckpt
        path.write_text("epoch: 3\nstate_dict: weights\n")
    elif kind == "lfs_pointer":  # a checkpoint kept in Git LFS, cloned without `git lfs pull`
        path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab\nsize 1048576\n")
    elif kind == "plain_dict":
        torch.save({"a": 1}, path)
    elif kind == "foreign":
        return fits.timeseries_last  # made by the time-series run in the store: would reopen it if accepted
    return path


BAD_CHECKPOINTS = [
    *[("fit", kind) for kind in ("missing", "folder", "empty", "truncated", "lfs_pointer", "plain_dict", "foreign")],
    ("fit", "text"),
    ("predict", "missing"),
    ("predict", "foreign"),
    ("test", "foreign"),  # `test` adds to the checkpoint's run: the time-series run here, if the check let it by
]


@slow
@pytest.mark.parametrize(("subcommand", "kind"), BAD_CHECKPOINTS)
def test_a_bad_checkpoint_stops_with_one_line_and_leaves_the_store_as_it_was(fits, tmp_path, subcommand, kind):
    ckpt = bad_checkpoint(kind, tmp_path, fits)
    args = [*tabular_args(fits.table, fits.tracking_uri), "--ckpt_path", str(ckpt)]
    if subcommand == "predict":
        args += ["--data.init_args.predict_path", str(fits.table), "--output", "preds.csv"]
    before, files_before = store_state(fits.tracking_uri), set(tmp_path.iterdir())

    done = run_cli(subcommand, *args, cwd=tmp_path)

    error = one_error_line(done)
    assert "--ckpt_path" in error and ckpt.name in error, error
    if kind == "foreign":
        assert "TimeSeriesMLP" in error and "TabularMLP" in error, error
    assert store_state(fits.tracking_uri) == before  # no new run or experiment; the existing runs byte for byte
    assert RESUMED_CONFIG not in all_artifacts(MlflowClient(fits.tracking_uri), fits.timeseries_run_id)
    assert set(tmp_path.iterdir()) == files_before  # no mlruns/, lightning_logs/ or predictions either


# ----- B: model flags that disagree with the checkpoint -----
@slow
def test_a_model_flag_that_disagrees_with_the_checkpoint_stops_and_names_both_values(fits, tmp_path):
    args = [*tabular_args(fits.table, fits.tracking_uri), "--ckpt_path", str(fits.tabular_last)]
    before = store_state(fits.tracking_uri)

    done = run_cli("fit", *args, "--model.init_args.dropout", "0.05", cwd=tmp_path)

    error = one_error_line(done)
    assert "--model.init_args.dropout" in error and "0.05" in error and "0.3" in error, error
    assert store_state(fits.tracking_uri) == before
    assert not (tmp_path / "mlruns").exists()


@slow
def test_a_model_flag_equal_to_the_checkpoint_value_is_accepted(fits, tmp_path):
    tracking_uri = copy_store(fits.folder, tmp_path / "copy")
    last = tmp_path / "copy" / fits.tabular_last.relative_to(fits.folder)
    args = [*tabular_args(fits.table, tracking_uri), "--ckpt_path", str(last), "--model.init_args.dropout", "0.3"]

    done = run_cli("fit", *args, cwd=tmp_path / "copy")

    assert done.returncode == 0, done.stderr[-3000:]
    assert "disagree" not in done.stderr
    client, run = only_run(tracking_uri, TABULAR_EXPERIMENT)  # the same run, continued
    assert run.info.run_id == fits.tabular_run_id and run.info.status == "FINISHED"
    assert RESUMED_CONFIG in artifacts(client, run.info.run_id, "configs")


# ----- C: SIGTERM / SIGINT -> KILLED, 128 + signum -----
@dataclass
class Killed:
    folder: Path
    tracking_uri: str
    done: subprocess.CompletedProcess
    code: int


@pytest.fixture(scope="module", params=[("SIGTERM", 143), ("SIGINT", 130)], ids=["SIGTERM", "SIGINT"])
def killed(request, tmp_path_factory) -> Killed:
    """A 20-epoch fit (no early stopping) that sends itself the signal when epoch 1 ends."""
    name, code = request.param
    folder = tmp_path_factory.mktemp(f"killed_{name}")
    table = folder / "table.csv"
    make_table().to_csv(table, index=False)
    (folder / "user_callbacks.py").write_text(CALLBACKS)
    overlay = folder / "overlay.yaml"  # replaces the config's callbacks: EarlyStopping goes
    overlay.write_text(
        "trainer:\n  callbacks:\n    - class_path: user_callbacks.SignalAtEpoch\n"
        f"      init_args: {{epoch: 1, signum: {name}}}\n"
    )
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    args = [*tabular_args(table, tracking_uri, epochs=20), "--config", str(overlay)]
    done = run_cli("fit", *args, cwd=folder, env={"PYTHONPATH": str(folder)})
    return Killed(folder, tracking_uri, done, code)


@slow
def test_a_signal_stops_the_fit_with_128_plus_signum_and_the_run_killed(killed):
    assert killed.done.returncode == killed.code, killed.done.stderr[-3000:]
    assert "Traceback" not in killed.done.stderr, killed.done.stderr[-3000:]
    client, run = only_run(killed.tracking_uri)
    assert run.info.status == "KILLED" and run.info.end_time is not None
    assert [step for step, _ in history(client, run.info.run_id, "val_loss")] == [0, 1]  # stopped at epoch 1
    assert "checkpoints/last.ckpt" in artifacts(client, run.info.run_id, "checkpoints")
    assert "logs/train.log" in artifacts(client, run.info.run_id, "logs")


@slow
def test_the_last_checkpoint_of_a_killed_run_is_its_last_completed_epoch(killed, tmp_path):
    """The interruption comes at the end of epoch 1, after its validation metrics were logged but before its
    checkpoint was written: epoch 0 is the last completed one (its train_loss is the last the run has), and resuming
    from last.ckpt continues this run (mlops/resume.py reads completed epochs from train_loss)."""
    client, run = only_run(killed.tracking_uri)
    last_logged = max(step for step, _ in history(client, run.info.run_id, "train_loss"))
    (local,) = local_checkpoints(killed.folder)
    uploaded = client.download_artifacts(run.info.run_id, "checkpoints/last.ckpt", str(tmp_path))
    assert checkpoint_epoch(local) == checkpoint_epoch(uploaded) == last_logged


@slow
def test_an_external_sigterm_kills_the_run_with_143(tmp_path, table_csv, tracking_uri):
    args = [*tabular_args(table_csv, tracking_uri, epochs=1000), "--trainer.callbacks", "[]"]  # no early stopping
    with (tmp_path / "stderr.txt").open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ml_tabular", "fit", *args],
            cwd=tmp_path,
            env=cli_env(),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            deadline = time.monotonic() + 120
            while not local_checkpoints(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()[-3000:]
            assert local_checkpoints(tmp_path), "no last.ckpt within 120 s"
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    output = (tmp_path / "stderr.txt").read_text()

    assert code == 143, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    client, run = only_run(tracking_uri)
    assert run.info.status == "KILLED" and run.info.end_time is not None
    assert "checkpoints/last.ckpt" in artifacts(client, run.info.run_id, "checkpoints")
    uploaded = client.download_artifacts(run.info.run_id, "checkpoints/last.ckpt", str(tmp_path / "download"))
    (local,) = local_checkpoints(tmp_path)
    assert checkpoint_epoch(uploaded) == checkpoint_epoch(local)  # the upload is the latest one


# ----- D: finishing a run is exception-safe (in-process) -----
@pytest.fixture
def logger(isolated, store, tmp_path) -> MLTabularLogger:
    made = MLTabularLogger(
        experiment_name="run_safety",
        run_name="run",
        tracking_uri=store,
        save_dir=str(tmp_path / "mlruns"),
        log_model=True,  # upload the checkpoints at the end
    )
    assert MlflowClient(store).get_run(made.run_id).info.status == "RUNNING"  # started
    return made


def failing(*args, **kwargs):
    raise OSError("No space left on device")


@pytest.mark.parametrize(("status", "expected"), [("success", "FINISHED"), ("killed", "KILLED")])
def test_a_failed_checkpoint_upload_still_closes_the_run(logger, store, tmp_path, monkeypatch, status, expected):
    checkpoint = tmp_path / "last.ckpt"
    checkpoint.write_bytes(b"weights")
    callback = LastEpochCheckpoint(dirpath=str(tmp_path))
    callback.best_model_path = str(checkpoint)
    logger.after_save_checkpoint(callback)
    monkeypatch.setattr(logger.recorder, "upload", failing)

    with pytest.raises(OSError, match="No space left"):
        logger.finalize(status)

    run = MlflowClient(store).get_run(logger.run_id)
    assert run.info.status == expected and run.info.end_time is not None


@pytest.mark.parametrize(("status", "expected"), [("success", "FINISHED"), ("killed", "KILLED")])
def test_a_failed_log_upload_still_closes_the_run(logger, store, monkeypatch, status, expected):
    monkeypatch.setattr("ml_tabular.mlops.logger.captured_log", lambda: "2024 INFO ml_tabular: a line\n")
    monkeypatch.setattr(logger.recorder, "log_text", failing)

    with pytest.raises(OSError, match="No space left"):
        logger.finalize(status)

    run = MlflowClient(store).get_run(logger.run_id)
    assert run.info.status == expected and run.info.end_time is not None


# ----- E: a plotting error is a warning, not a failed run (in-process) -----
def test_a_plot_that_fails_is_a_warning_and_the_run_finishes(isolated, store, tmp_path, monkeypatch, caplog):
    def broken_figures(*args, **kwargs):
        raise RuntimeError("boom: a plotting bug")

    monkeypatch.setitem(plots.FIGURE_MAKERS, "tabular_mlp", broken_figures)
    make_table().to_csv(tmp_path / "table.csv", index=False)
    torch.manual_seed(0)
    data = TabularDataModule(
        str(tmp_path / "table.csv"), "y", categorical_columns=["color", "size"], drop_columns=["id", "amount"]
    )
    data.prepare()
    model = TabularMLP(
        data.n_numeric,
        data.cardinalities,
        data.n_outputs,
        data.resolved_task,
        data.target_mean,
        data.target_std,
        hidden_dims=[16],
    )
    logger = MLTabularLogger(
        experiment_name="run_safety", run_name="plots", tracking_uri=store, save_dir=str(tmp_path / "mlruns")
    )
    trainer = pl.Trainer(
        max_epochs=1,
        logger=logger,
        callbacks=[plots.RunPlotsCallback()],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    ours = logging.getLogger("ml_tabular")  # may not propagate to caplog's root handler (configure_logging)
    ours.addHandler(caplog.handler)
    try:
        trainer.fit(model, datamodule=data)
    finally:
        ours.removeHandler(caplog.handler)

    assert MlflowClient(store).get_run(logger.run_id).info.status == "FINISHED"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name.startswith("ml_tabular")]
    assert any("plot" in r.getMessage().lower() for r in warnings), [r.getMessage() for r in caplog.records]


# ----- F, G: config mistakes are one short message -----
@pytest.fixture(scope="module")
def typo(tmp_path_factory) -> subprocess.CompletedProcess:
    folder = tmp_path_factory.mktemp("typo")
    return run_cli("fit", "--config", str(TABULAR_CONFIG), "--model.init_args.dropuot", "0.2", cwd=folder)


@slow
def test_a_config_typo_is_an_error_and_a_pointer_to_help_not_the_usage(typo):
    assert typo.returncode == 2, typo.stderr[-3000:]
    assert "Traceback" not in typo.stderr
    assert ERROR in typo.stderr and "dropuot" in typo.stderr
    assert "--help" in typo.stderr
    assert "usage:" not in typo.stderr


@slow
def test_a_config_typo_message_is_short(typo):
    assert len(typo.stderr.strip().splitlines()) <= 6, typo.stderr


@slow
def test_a_config_typo_points_to_a_runnable_help_command(typo):
    assert "ml_tabular fit --help" in typo.stderr and "__main__.py" not in typo.stderr, typo.stderr


@slow
@pytest.mark.parametrize(
    ("flag", "value", "key"),
    [("--trainer.max_epochs", "-2", "trainer.max_epochs"), ("--model.init_args.dropout", "1.5", "dropout")],
)
def test_an_out_of_range_value_stops_with_one_line_naming_the_key(tmp_path, table_csv, store, flag, value, key):
    done = run_cli("fit", *tabular_args(table_csv, store), flag, value, cwd=tmp_path)

    error = one_error_line(done)
    assert key in error and value in error, error
    assert (
        MlflowClient(store).search_runs([e.experiment_id for e in MlflowClient(store).search_experiments()]) == []
    )  # no run started
