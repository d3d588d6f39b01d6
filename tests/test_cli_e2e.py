"""End to end: drive ``ml_tabular`` in a subprocess as a user would, read the run back with MlflowClient."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import artifacts, history, make_table, only_run, run_cli, tabular_args
from mlflow import MlflowClient

pytestmark = pytest.mark.slow

CALLBACKS = '''
import os, signal
from lightning.pytorch.callbacks import Callback


class StopAtEpoch(Callback):
    """Raises an error (or sends Ctrl-C to this process) when epoch ``epoch`` ends."""

    def __init__(self, epoch: int, interrupt: bool = False):
        self.epoch, self.interrupt = epoch, interrupt

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch == self.epoch:
            if self.interrupt:
                os.kill(os.getpid(), signal.SIGINT)
            raise RuntimeError("boom: a bug in user code")
'''


def git_repo(path: Path) -> None:
    for args in (["init", "-q", "-b", "main"], ["add", "table.csv"], ["commit", "-qm", "data"]):
        subprocess.run(
            ["git", "-c", "user.email=t@t", "-c", "user.name=t", *args], cwd=path, check=True, capture_output=True
        )


def test_fit_records_params_metrics_tags_and_artifacts(tmp_path, table_csv, tracking_uri):
    git_repo(tmp_path)
    done = run_cli("fit", *tabular_args(table_csv, tracking_uri, epochs=2), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "task=auto -> classification" in done.stderr

    client, run = only_run(tracking_uri)
    assert run.info.run_name == "tabular_mlp__dataset=table__seed=42"
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model.init_args.dropout"] == "0.3"
    assert params["data.init_args.batch_size"] == "32"
    assert params["trainer.max_epochs"] == "2"
    assert params["seed_everything"] == "42"
    assert params["mlflow.enabled"] == "True"
    assert params["model.init_args.n_outputs"] == "2"  # linked from the data
    for key in ("train_loss", "val_loss", "val_accuracy", "val_f1", "val_auroc"):
        assert [step for step, _ in history(client, run.info.run_id, key)] == [0, 1], key
    tags = run.data.tags
    assert tags["model_type"] == "tabular_mlp"
    assert tags["framework"] == "pytorch-lightning"
    assert tags["env"] == "dev"
    assert tags["dataset_name"] == "table"
    assert tags["seed"] == "42"
    assert tags["git_branch"] == "main"
    assert tags["git_dirty"] == "false"
    assert len(tags["git_commit"]) == 40 and tags["mlflow.source.git.commit"] == tags["git_commit"]
    assert artifacts(client, run.info.run_id, "configs") == {"configs/run_config.yaml"}
    assert artifacts(client, run.info.run_id, "checkpoints") == {"checkpoints/best.ckpt", "checkpoints/last.ckpt"}
    config = client.download_artifacts(run.info.run_id, "configs/run_config.yaml", str(tmp_path))
    assert "class_path: ml_tabular.models.TabularMLP" in Path(config).read_text()


def test_regression_records_regression_metrics(tmp_path, table_csv, tracking_uri):
    args = tabular_args(table_csv, tracking_uri, epochs=1)
    args += ["--data.init_args.target", "amount", "--data.init_args.drop_columns", "[id, y]"]
    done = run_cli("fit", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    _, run = only_run(tracking_uri)
    assert {"val_rmse", "val_mae", "val_r2", "val_loss", "train_loss"} <= set(run.data.metrics)
    assert run.data.params["model.init_args.task"] == "regression"


def test_resume_continues_the_same_run_bit_identically(tmp_path, table_csv, tracking_uri):
    full_uri = f"sqlite:///{tmp_path / 'full.db'}"
    assert run_cli("fit", *tabular_args(table_csv, full_uri, epochs=4), cwd=tmp_path).returncode == 0
    assert run_cli("fit", *tabular_args(table_csv, tracking_uri, epochs=2), cwd=tmp_path).returncode == 0
    client, first = only_run(tracking_uri)
    last = client.download_artifacts(first.info.run_id, "checkpoints/last.ckpt", str(tmp_path))

    resumed = run_cli("fit", *tabular_args(table_csv, tracking_uri, epochs=4), "--ckpt_path", last, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    client, run = only_run(tracking_uri)  # still one run: the same one continued
    assert run.info.run_id == first.info.run_id and run.info.status == "FINISHED"
    _, full = only_run(full_uri)
    val = history(client, run.info.run_id, "val_loss")
    assert [step for step, _ in val] == [0, 1, 2, 3]
    assert [step for step, _ in history(client, run.info.run_id, "train_loss")] == [0, 1, 2, 3]
    assert val[-1][1] == pytest.approx(history(MlflowClient(full_uri), full.info.run_id, "val_loss")[-1][1], abs=1e-6)
    assert run.data.params["trainer.max_epochs"] == "2"  # a run keeps its first params ...
    assert "configs/run_config.resumed_1.yaml" in artifacts(client, run.info.run_id, "configs")  # ... and the new


def test_test_logs_to_the_checkpoint_run_and_predict_writes_a_table(tmp_path, table_csv, tracking_uri):
    assert run_cli("fit", *tabular_args(table_csv, tracking_uri, epochs=1), cwd=tmp_path).returncode == 0
    client, run = only_run(tracking_uri)
    best = client.download_artifacts(run.info.run_id, "checkpoints/best.ckpt", str(tmp_path))

    tested = run_cli("test", *tabular_args(table_csv, tracking_uri), "--ckpt_path", best, cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr[-3000:]
    client, run = only_run(tracking_uri)
    assert {"test_loss", "test_accuracy", "test_f1", "test_auroc"} <= set(run.data.metrics)

    new_rows = tmp_path / "new.csv"
    make_table(25, seed=7).drop(columns=["y"]).to_csv(new_rows, index=False)
    args = [*tabular_args(table_csv, tracking_uri), "--ckpt_path", best]
    args += ["--data.init_args.predict_path", str(new_rows), "--output", "out/preds.parquet"]
    predicted = run_cli("predict", *args, cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    preds = pd.read_parquet(tmp_path / "out" / "preds.parquet")
    assert list(preds.columns) == ["prediction", "prob_0", "prob_1"] and len(preds) == 25
    assert ((preds.prob_0 + preds.prob_1) - 1).abs().max() < 1e-5


@pytest.mark.parametrize(("interrupt", "status"), [(False, "FAILED"), (True, "KILLED")])
def test_a_run_that_stops_early_is_marked_and_keeps_its_checkpoints(
    tmp_path, table_csv, tracking_uri, interrupt, status
):
    (tmp_path / "user_callbacks.py").write_text(CALLBACKS)
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        "trainer:\n  callbacks:\n    - class_path: user_callbacks.StopAtEpoch\n"
        f"      init_args: {{epoch: 1, interrupt: {str(interrupt).lower()}}}\n"
    )
    args = [*tabular_args(table_csv, tracking_uri, epochs=5), "--config", str(overlay)]
    done = run_cli("fit", *args, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path)})
    assert done.returncode != 0
    client, run = only_run(tracking_uri)
    assert run.info.status == status
    assert [step for step, _ in history(client, run.info.run_id, "val_loss")] == [0, 1]
    assert artifacts(client, run.info.run_id, "checkpoints") == {"checkpoints/best.ckpt", "checkpoints/last.ckpt"}


def test_tracking_off_trains_without_importing_mlflow(tmp_path, table_csv, tracking_uri):
    args = [*tabular_args(table_csv, tracking_uri, epochs=1), "--mlflow.enabled", "false"]
    code = (
        "import sys\nfrom ml_tabular.cli import main\n"
        f"main({['fit', *args]!r})\n"
        "print('mlflow imported:', any(m.split('.')[0] == 'mlflow' for m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "mlflow imported: False" in done.stdout
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()
