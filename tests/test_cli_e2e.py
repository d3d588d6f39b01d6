"""End to end: drive ``ml_tabular`` in a subprocess as a user would, read the run back with MlflowClient."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import artifacts, history, make_table, only_run, run_cli, tabular_args
from mlflow import MlflowClient

from ml_tabular.mlops.recorder import APP_CONFIG

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


@dataclass
class FittedRun:
    """One 2-epoch ``fit`` in a git repository, shared by the tests that only read it or build on it."""

    folder: Path
    data: Path
    tracking_uri: str
    stderr: str

    def run(self):
        return only_run(self.tracking_uri)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory) -> FittedRun:
    folder = tmp_path_factory.mktemp("fitted")
    data = folder / "table.csv"
    make_table().to_csv(data, index=False)
    git_repo(folder)
    tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
    done = run_cli("fit", *tabular_args(data, tracking_uri, epochs=2), cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]
    return FittedRun(folder, data, tracking_uri, done.stderr)


def test_fit_records_params_metrics_and_tags(fitted):
    assert "task=auto -> classification" in fitted.stderr
    client, run = fitted.run()
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
    assert tags["version.torch"] and tags["version.lightning"] and tags["version.mlflow"]


def test_fit_records_artifacts_and_the_dataset_input(fitted):
    client, run = fitted.run()
    run_id = run.info.run_id
    assert artifacts(client, run_id, "configs") == {"configs/run_config.yaml", "configs/effective_app_config.yaml"}
    assert artifacts(client, run_id, "checkpoints") == {"checkpoints/best.ckpt", "checkpoints/last.ckpt"}
    assert artifacts(client, run_id, "plots") == {
        f"plots/{name}.png" for name in ("learning_curve", "confusion_matrix", "roc_curve", "permutation_importance")
    }
    config = Path(client.download_artifacts(run_id, "configs/run_config.yaml", str(fitted.folder)))
    assert "class_path: ml_tabular.models.TabularMLP" in config.read_text()
    app = yaml.safe_load(Path(client.download_artifacts(run_id, APP_CONFIG, str(fitted.folder))).read_text())
    assert app["env"] == "dev" and app["mlflow"]["enabled"] is True
    log = Path(client.download_artifacts(run_id, "logs/train.log", str(fitted.folder))).read_text()
    assert "task=auto -> classification" in log and "max_epochs=2" in log
    (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
    assert dataset.name == "table" and dataset.source == f'{{"uri": "{fitted.data.resolve()}"}}'
    assert '"name": "color"' in dataset.schema and '"num_rows": 160' in dataset.profile
    assert len(dataset.digest) == 16


def test_test_logs_to_the_checkpoint_run_and_predict_writes_a_table(fitted, tmp_path):
    client, run = fitted.run()
    best = client.download_artifacts(run.info.run_id, "checkpoints/best.ckpt", str(tmp_path))
    tested = run_cli("test", *tabular_args(fitted.data, fitted.tracking_uri), "--ckpt_path", best, cwd=tmp_path)
    assert tested.returncode == 0, tested.stderr[-3000:]
    client, run = fitted.run()  # still the one run
    assert {"test_loss", "test_accuracy", "test_f1", "test_auroc"} <= set(run.data.metrics)

    new_rows = tmp_path / "new.csv"
    make_table(25, seed=7).drop(columns=["y"]).to_csv(new_rows, index=False)
    args = [*tabular_args(fitted.data, fitted.tracking_uri), "--ckpt_path", best]
    args += ["--data.init_args.predict_path", str(new_rows), "--output", "out/preds.parquet"]
    predicted = run_cli("predict", *args, cwd=tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    preds = pd.read_parquet(tmp_path / "out" / "preds.parquet")
    assert list(preds.columns) == ["prediction", "prob_0", "prob_1"] and len(preds) == 25
    assert ((preds.prob_0 + preds.prob_1) - 1).abs().max() < 1e-5


def test_regression_records_regression_metrics(tmp_path, table_csv, tracking_uri):
    args = tabular_args(table_csv, tracking_uri, epochs=1)
    args += ["--data.init_args.target", "amount", "--data.init_args.drop_columns", "[id, y]"]
    done = run_cli("fit", *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    client, run = only_run(tracking_uri)
    assert {"val_rmse", "val_mae", "val_r2", "val_loss", "train_loss"} <= set(run.data.metrics)
    assert run.data.params["model.init_args.task"] == "regression"
    assert "plots/predicted_vs_actual.png" in artifacts(client, run.info.run_id, "plots")


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
    assert artifacts(client, run.info.run_id, "logs") == {"logs/train.log"}


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
