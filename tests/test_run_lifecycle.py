"""A run's life after ``fit``: resume, branch from an earlier checkpoint, ``test``, ``predict``, refusals.

Driven through the CLI in subprocesses as a user would; the tracking store is read back with MlflowClient.
One 3-epoch ``fit`` (monitored in ``max`` mode, so its best checkpoint is its worst epoch: a plateau) is
shared by the tests in a fixed order: branch from its early checkpoint, then resume it from ``last.ckpt``.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from conftest import history, make_table, run_cli, tabular_args
from mlflow import MlflowClient

pytestmark = pytest.mark.slow

EXPERIMENT = "ml_tabular_tabular_baselines"
EPOCHS = 3
BEST_NAME = re.compile(r"epoch=(\d+)-val_loss=[0-9.]+\.ckpt")
DIGEST = re.compile(r"(?<![0-9a-f])[0-9a-f]{16}(?![0-9a-f])")


# ----- reading the store back -----
def run_ids(tracking_uri: str) -> set[str]:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return {run.info.run_id for run in client.search_runs([experiment.experiment_id])}


def all_artifacts(client: MlflowClient, run_id: str, folder: str | None = None) -> set[str]:
    """Every artifact file of a run, folders walked."""
    found: set[str] = set()
    for item in client.list_artifacts(run_id, folder):
        found |= all_artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def run_state(tracking_uri: str, run_id: str) -> dict[str, Any]:
    """All of a run a user can see: status, times, tags, params, metric histories, artifacts."""
    client = MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    return {
        "status": run.info.status,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "tags": dict(run.data.tags),
        "params": dict(run.data.params),
        "metrics": {key: history(client, run_id, key) for key in sorted(run.data.metrics)},
        "artifacts": all_artifacts(client, run_id),
    }


def steps(tracking_uri: str, run_id: str, key: str) -> list[int]:
    return [step for step, _ in history(MlflowClient(tracking_uri), run_id, key)]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("ml_tabular: error:")]


def sha16(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def use_empty_store(folder: Path, empty_store: Path) -> str:
    """A copy of the initialised empty store in ``folder`` (creating one costs seconds per CLI call)."""
    shutil.copyfile(empty_store, folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


# ----- the shared plateau run -----
@dataclass
class PlateauRun:
    """A 3-epoch ``fit`` with ``--checkpoint.mode max``, as it was right after training."""

    folder: Path
    data: Path
    tracking_uri: str
    run_id: str
    checkpoints: Path  # <cwd>/mlruns/<experiment_id>/<run_id>/checkpoints
    kept: Path  # a copy of that folder taken right after the fit (later commands rewrite last.ckpt)
    best_epoch: int
    best: Path  # the monitored checkpoint in ``checkpoints``
    state: dict[str, Any]

    def args(self, epochs: int = EPOCHS) -> list[str]:
        return [*tabular_args(self.data, self.tracking_uri, epochs=epochs), "--checkpoint.mode", "max"]


@pytest.fixture(scope="module")
def plateau(tmp_path_factory, empty_store) -> PlateauRun:
    folder = tmp_path_factory.mktemp("plateau")
    data = folder / "table.csv"
    make_table().to_csv(data, index=False)
    tracking_uri = use_empty_store(folder, empty_store)
    args = [*tabular_args(data, tracking_uri, epochs=EPOCHS), "--checkpoint.mode", "max"]
    done = run_cli("fit", *args, cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_id,) = run_ids(tracking_uri)
    experiment_id = MlflowClient(tracking_uri).get_experiment_by_name(EXPERIMENT).experiment_id
    checkpoints = folder / "mlruns" / experiment_id / run_id / "checkpoints"
    kept = folder / "kept"
    shutil.copytree(checkpoints, kept)
    (best,) = [path for path in checkpoints.iterdir() if BEST_NAME.fullmatch(path.name)]
    best_epoch = int(BEST_NAME.fullmatch(best.name).group(1))
    return PlateauRun(
        folder, data, tracking_uri, run_id, checkpoints, kept, best_epoch, best, run_state(tracking_uri, run_id)
    )


@dataclass
class Branch:
    """``fit --ckpt_path <plateau's best (earlier) checkpoint>``: the plateau run before and after, the new run."""

    before: dict[str, Any]
    after: dict[str, Any]
    run_id: str
    stderr: str


@pytest.fixture(scope="module")
def branched(plateau) -> Branch:
    before = run_state(plateau.tracking_uri, plateau.run_id)
    done = run_cli("fit", *plateau.args(), "--ckpt_path", str(plateau.best), cwd=plateau.folder)
    assert done.returncode == 0, done.stderr[-3000:]
    new = run_ids(plateau.tracking_uri) - {plateau.run_id}
    assert len(new) == 1, new
    return Branch(before, run_state(plateau.tracking_uri, plateau.run_id), new.pop(), done.stderr)


# ----- 1. last.ckpt is the last epoch, and resuming from it continues the run -----
def test_last_ckpt_is_the_last_epoch_even_when_the_monitored_best_is_earlier(plateau):
    assert plateau.checkpoints.is_dir()  # <cwd>/mlruns/<experiment_id>/<run_id>/checkpoints
    names = {path.name for path in plateau.kept.iterdir()}
    assert names == {"last.ckpt", plateau.best.name}
    val = plateau.state["metrics"]["val_loss"]
    assert [step for step, _ in val] == [0, 1, 2]
    # mode max: the monitored "best" is the epoch with the highest val_loss (a plateau, for the old last.ckpt)
    assert plateau.best_epoch == max(val, key=lambda sv: sv[1])[0]
    assert plateau.best_epoch < EPOCHS - 1, "precondition: the monitored checkpoint must be an earlier epoch"
    assert torch.load(plateau.kept / "last.ckpt", weights_only=True)["epoch"] == EPOCHS - 1
    assert torch.load(plateau.kept / plateau.best.name, weights_only=True)["epoch"] == plateau.best_epoch


@dataclass
class Resume:
    """``fit --trainer.max_epochs 5 --ckpt_path <plateau run's last.ckpt>`` after the branch was made."""

    ids_before: set[str]
    ids_after: set[str]
    state: dict[str, Any]
    stderr: str
    last_epoch: int  # of the run's last.ckpt afterwards


@pytest.fixture(scope="module")
def resumed(plateau, branched) -> Resume:
    # after ``branched``: it needs the plateau run as it was after its first fit
    ids_before = run_ids(plateau.tracking_uri)
    last = plateau.checkpoints / "last.ckpt"
    done = run_cli("fit", *plateau.args(epochs=5), "--ckpt_path", str(last), cwd=plateau.folder)
    assert done.returncode == 0, done.stderr[-3000:]
    state = run_state(plateau.tracking_uri, plateau.run_id)
    last_epoch = torch.load(last, weights_only=True)["epoch"]
    return Resume(ids_before, run_ids(plateau.tracking_uri), state, done.stderr, last_epoch)


def test_resume_from_last_ckpt_after_a_plateau_continues_the_run_without_repeating_epochs(plateau, resumed):
    assert resumed.ids_after == resumed.ids_before  # the same run continued, no new one
    assert resumed.state["status"] == "FINISHED"
    metrics = resumed.state["metrics"]
    assert [step for step, _ in metrics["val_loss"]] == [0, 1, 2, 3, 4]
    assert [step for step, _ in metrics["train_loss"]] == [0, 1, 2, 3, 4]
    # the first three epochs are the ones logged by the first fit, untouched
    assert metrics["val_loss"][:3] == plateau.state["metrics"]["val_loss"]
    assert f"resuming run {plateau.run_id} after its epoch {EPOCHS - 1}" in resumed.stderr
    assert resumed.last_epoch == 4


def test_fit_and_resume_log_no_metric_twice_at_one_step(plateau, resumed):
    for when, state in (("first fit", plateau.state), ("resumed", resumed.state)):
        for key, values in state["metrics"].items():
            logged = [step for step, _ in values]
            assert len(logged) == len(set(logged)), (when, key, logged)


# ----- 2. an earlier checkpoint of a run that went further starts a new, tagged run -----
def test_fit_from_an_earlier_checkpoint_starts_a_new_run_tagged_with_its_source(plateau, branched):
    client = MlflowClient(plateau.tracking_uri)
    new = client.get_run(branched.run_id)
    assert new.info.status == "FINISHED"
    assert new.data.tags["source_run_id"] == plateau.run_id
    assert new.data.tags["source_epoch"] == str(plateau.best_epoch)
    assert new.data.tags["source_checkpoint"] == str(plateau.best.resolve())
    assert steps(plateau.tracking_uri, branched.run_id, "val_loss") == list(range(plateau.best_epoch + 1, EPOCHS))

    assert branched.after == branched.before  # the original: metrics, status, end_time, tags, params, artifacts
    assert branched.after["status"] == "FINISHED"
    said = [line for line in branched.stderr.splitlines() if "starting a new run" in line]
    assert len(said) == 1, said
    assert plateau.run_id in said[0] and f"source_epoch={plateau.best_epoch}" in said[0]


# ----- 3. test adds its metrics and log to the run that made the checkpoint, nothing else -----
@pytest.fixture(scope="module")
def tested(plateau, branched, tmp_path_factory) -> tuple[dict[str, Any], dict[str, Any], str]:
    """``test`` on the branched run's last.ckpt (a run with source_* tags, which must survive): before, after."""
    last = plateau.checkpoints.parents[1] / branched.run_id / "checkpoints" / "last.ckpt"
    before = run_state(plateau.tracking_uri, branched.run_id)
    done = run_cli("test", *plateau.args(), "--ckpt_path", str(last), cwd=tmp_path_factory.mktemp("tested"))
    assert done.returncode == 0, done.stderr[-3000:]
    return before, run_state(plateau.tracking_uri, branched.run_id), done.stderr


def test_test_adds_metrics_and_its_log_and_leaves_the_run_as_it_was(plateau, branched, tested):
    before, after, stderr = tested
    for key in ("status", "start_time", "end_time", "tags", "params"):
        assert after[key] == before[key], key
    assert after["status"] == "FINISHED"
    added = set(after["metrics"]) - set(before["metrics"])
    assert {"test_loss", "test_accuracy"} <= added and all(key.startswith("test_") for key in added), added
    assert after["artifacts"] - before["artifacts"] == {"logs/test.log"}
    assert before["artifacts"] <= after["artifacts"]
    assert run_ids(plateau.tracking_uri) == {plateau.run_id, branched.run_id}  # no run made by test
    assert f"test: adding its metrics and log to run {branched.run_id}" in stderr


def test_test_leaves_the_existing_metric_histories_as_they_were(tested):
    before, after, _ = tested
    assert {key: after["metrics"][key] for key in before["metrics"]} == before["metrics"]


# ----- 4. predict needs the checkpoint and the new rows, not the training file -----
def predict_as_the_file_changes(train: Path, args: list[str], new_rows: Path, cwd: Path) -> pd.DataFrame:
    """Predict ``new_rows`` with the training file ``train`` edited in place (values changed, rows appended),
    then deleted; both predictions must be the same table, byte for byte."""
    changed = pd.read_csv(train)
    changed["x1"] = changed["x1"] * 3 + 1
    changed["color"] = "red"
    pd.concat([changed, make_table(60, seed=11)]).to_csv(train, index=False)
    outputs = []
    for state in ("changed", "deleted"):
        if state == "deleted":
            train.unlink()
        output = cwd / f"predictions_{state}.csv"
        predict_args = ["--data.init_args.predict_path", str(new_rows), "--output", str(output)]
        done = run_cli("predict", *args, *predict_args, cwd=cwd)
        assert done.returncode == 0, (state, done.stderr[-3000:])
        assert f"predictions: {len(pd.read_csv(new_rows))} rows written to {output}" in done.stderr + done.stdout
        outputs.append(output)
    assert not (cwd / "lightning_logs").exists()
    frames = [pd.read_csv(output) for output in outputs]
    pd.testing.assert_frame_equal(frames[1], frames[0])
    assert outputs[1].read_bytes() == outputs[0].read_bytes()
    return frames[0]


def test_predict_classification_ignores_the_training_file(plateau, tmp_path):
    train = tmp_path / "table.csv"
    shutil.copyfile(plateau.data, train)  # the same bytes the checkpoint was trained on
    new_rows = tmp_path / "new.csv"
    make_table(25, seed=7).drop(columns=["y"]).to_csv(new_rows, index=False)
    cwd = tmp_path / "work"
    cwd.mkdir()
    args = [*tabular_args(train, plateau.tracking_uri), "--ckpt_path", str(plateau.kept / "last.ckpt")]
    frame = predict_as_the_file_changes(train, args, new_rows, cwd)
    assert list(frame.columns) == ["prediction", "prob_0", "prob_1"] and len(frame) == 25


def test_predict_regression_ignores_the_training_file(tmp_path, empty_store):
    train = tmp_path / "table.csv"
    make_table().to_csv(train, index=False)
    tracking_uri = use_empty_store(tmp_path, empty_store)
    args = tabular_args(train, tracking_uri, epochs=2)
    args += ["--data.init_args.target", "amount", "--data.init_args.drop_columns", "[id, y]"]
    done = run_cli("fit", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (ckpt,) = (tmp_path / "mlruns").glob("*/*/checkpoints/last.ckpt")

    new_rows = tmp_path / "new.csv"
    make_table(31, seed=7).drop(columns=["amount"]).to_csv(new_rows, index=False)
    cwd = tmp_path / "work"
    cwd.mkdir()
    frame = predict_as_the_file_changes(train, [*args, "--ckpt_path", str(ckpt)], new_rows, cwd)
    assert list(frame.columns) == ["prediction"] and len(frame) == 31


# ----- 5. validate/test refuse a training file that is not the one trained on -----
@pytest.fixture(scope="module")
def refused_test(plateau, tmp_path_factory) -> tuple[Any, dict[str, Any], dict[str, Any], Path]:
    """``test`` on the plateau run's checkpoint with an edited copy of the training file."""
    folder = tmp_path_factory.mktemp("refused")
    changed = folder / "table.csv"
    frame = make_table()
    frame.loc[0, "x1"] += 1.0
    frame.to_csv(changed, index=False)
    args = [*tabular_args(changed, plateau.tracking_uri), "--checkpoint.mode", "max"]
    before = run_state(plateau.tracking_uri, plateau.run_id)
    done = run_cli("test", *args, "--ckpt_path", str(plateau.kept / "last.ckpt"), cwd=folder)
    return done, before, run_state(plateau.tracking_uri, plateau.run_id), changed


def test_test_with_a_changed_training_file_exits_2_naming_both_digests(plateau, refused_test):
    done, before, after, changed = refused_test
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    (line,) = error_lines(done.stderr)
    digests = DIGEST.findall(line)
    assert len(digests) == 2 and digests[0] != digests[1], line
    assert set(digests) == {sha16(changed), sha16(plateau.data)}
    for key in ("status", "start_time", "end_time", "tags", "params", "metrics"):
        assert after[key] == before[key], key


def test_test_with_a_changed_training_file_adds_no_artifact(refused_test):
    done, before, after, _ = refused_test
    assert done.returncode == 2
    assert after["artifacts"] == before["artifacts"]


# ----- 6. commands that use a trained model need --ckpt_path -----
def test_predict_test_validate_without_ckpt_path_exit_2_with_one_line(tmp_path, table_csv, tracking_uri):
    commands = ("predict", "test", "validate")

    def call(command: str):
        cwd = tmp_path / command
        cwd.mkdir()
        return run_cli(command, *tabular_args(table_csv, tracking_uri), cwd=cwd)

    with ThreadPoolExecutor(max_workers=2) as pool:  # each only parses: cheap, mostly imports
        results = dict(zip(commands, pool.map(call, commands), strict=True))
    for command, done in results.items():
        assert done.returncode == 2, (command, done.stderr[-3000:])
        assert "Traceback" not in done.stderr, command
        (line,) = error_lines(done.stderr)
        assert "--ckpt_path" in line and command in line, line
        assert not (tmp_path / command / "lightning_logs").exists()
