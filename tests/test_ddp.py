"""Distributed training (DDP on CPU) with tracking on: only global rank zero writes to MLflow, each rank trains and
validates on its own share of the rows, and the logged epoch metrics are those of the whole split."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import history, make_table, only_run, run_cli, tabular_args

DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
# 32 validation rows in batches of 12: 3 batches, which a padding sampler shares out as 4 (one counted twice)
ODD_BATCHES = ["--data.init_args.batch_size", "12"]


@dataclass
class DdpRun:
    folder: Path
    csv: Path
    store: str
    stderr: str


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory: pytest.TempPathFactory) -> DdpRun:
    """One 2-epoch ``fit`` on 2 CPU ranks, shared by the tests that only read it."""
    folder = tmp_path_factory.mktemp("ddp")
    csv, store = folder / "table.csv", f"sqlite:///{folder / 'mlflow.db'}"
    make_table().to_csv(csv, index=False)
    done = run_cli("fit", *tabular_args(csv, store), *ODD_BATCHES, *DDP, cwd=folder, env={"PYTHONWARNINGS": "default"})
    assert done.returncode == 0, done.stderr[-3000:]
    return DdpRun(folder, csv, store, done.stderr)


def printed_metrics(stdout: str) -> dict[str, float]:
    """The metrics of the table Lightning prints after ``validate``/``test``."""
    return {name: float(value) for name, value in re.findall(r"^\s*(val_\w+)\s+([-\d.e]+)\s*$", stdout, re.M)}


@pytest.mark.slow
def test_ddp_two_ranks_make_one_finished_run(ddp_run: DdpRun) -> None:
    assert "Traceback" not in ddp_run.stderr
    assert "sync_dist" not in ddp_run.stderr  # every epoch metric is reduced across the ranks
    client, run = only_run(ddp_run.store)
    assert run.info.status == "FINISHED"
    assert [step for step, _ in history(client, run.info.run_id, "val_loss")] == [0, 1]
    assert [step for step, _ in history(client, run.info.run_id, "train_loss")] == [0, 1]
    assert run.inputs.dataset_inputs  # the training table, logged once by rank zero


@pytest.mark.slow
def test_ddp_val_metrics_are_those_of_the_whole_validation_set(ddp_run: DdpRun) -> None:
    client, run = only_run(ddp_run.store)
    last = next(ddp_run.folder.rglob("checkpoints/last.ckpt"))  # saved after the last validation
    args = [*tabular_args(ddp_run.csv, ddp_run.store), *ODD_BATCHES, "--mlflow.enabled", "false"]
    done = run_cli("validate", *args, "--ckpt_path", str(last), cwd=ddp_run.folder)  # one process, every row once
    assert done.returncode == 0, done.stderr[-3000:]

    single = printed_metrics(done.stdout)

    assert set(single) == {"val_loss", "val_accuracy", "val_f1", "val_auroc"}
    for name, value in single.items():
        assert history(client, run.info.run_id, name)[-1][1] == pytest.approx(value, rel=1e-5), name
