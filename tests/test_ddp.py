"""Distributed training (DDP on CPU) with tracking on: only global rank zero writes to MLflow, each rank trains and
validates on its own share of the rows, and the logged epoch metrics are those of the whole split."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import history, make_table, only_run, run_cli, tabular_args
from servers import free_port

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


@pytest.mark.slow
def test_ddp_resume_continues_the_same_run(tmp_path: Path, table_csv: Path, store: str) -> None:
    first = run_cli("fit", *tabular_args(table_csv, store, epochs=1), *DDP, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    last = next(tmp_path.rglob("checkpoints/last.ckpt"))

    resumed = run_cli("fit", *tabular_args(table_csv, store, epochs=2), *DDP, "--ckpt_path", str(last), cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stderr[-3000:]
    client, run = only_run(store)
    assert run.info.status == "FINISHED"
    for key in ("train_loss", "val_loss"):
        assert [step for step, _ in history(client, run.info.run_id, key)] == [0, 1], key  # each epoch once


def node(rank: int, port: int, fit_args: list[str], folder: Path) -> subprocess.Popen:
    """One simulated machine: ``torchrun`` starting one ``ml_tabular fit`` process, in its own process group."""
    folder.mkdir()
    launch = ["--nnodes=2", f"--node_rank={rank}", "--nproc_per_node=1", "--master_addr=127.0.0.1"]
    nodes = ["--trainer.num_nodes", "2", "--trainer.devices", "1", "--trainer.strategy", "ddp"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_TABULAR_"))}
    torchrun = [sys.executable, "-m", "torch.distributed.run", *launch, f"--master_port={port}"]
    return subprocess.Popen(
        [*torchrun, "-m", "ml_tabular", "fit", *fit_args, *nodes, "--trainer.accelerator", "cpu"],
        cwd=folder,
        env={**env, "PYTHONWARNINGS": "ignore"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


@pytest.mark.slow
def test_two_nodes_on_loopback_make_one_finished_run(tmp_path: Path, table_csv: Path, store: str) -> None:
    port = free_port()
    nodes = [node(rank, port, tabular_args(table_csv, store), tmp_path / f"node{rank}") for rank in (0, 1)]
    try:
        outputs = [proc.communicate(timeout=240)[0] for proc in nodes]
    finally:
        for proc in nodes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)

    for proc, output in zip(nodes, outputs, strict=True):
        assert proc.returncode == 0, output[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in outputs[1]  # Lightning took its rank from torchrun's environment
    client, run = only_run(store)
    assert run.info.status == "FINISHED"
    assert [step for step, _ in history(client, run.info.run_id, "val_loss")] == [0, 1]
    assert list((tmp_path / "node0").rglob("checkpoints/last.ckpt"))
    # global rank zero alone writes checkpoints (the uploaded copies go to the experiment's artifact folder, here on
    # whichever node created the experiment: a team server keeps them on the server instead)
    assert not [path for path in (tmp_path / "node1").rglob("*.ckpt") if "artifacts" not in path.parts]
