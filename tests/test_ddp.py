"""Distributed training (DDP on CPU) with tracking on: only global rank zero writes to MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import history, only_run, run_cli, tabular_args


@pytest.mark.slow
def test_ddp_two_ranks_make_one_finished_run(tmp_path: Path, table_csv: Path, store: str) -> None:
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
    done = run_cli("fit", *tabular_args(table_csv, store), *ddp, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    client, run = only_run(store)
    assert run.info.status == "FINISHED"
    assert [step for step, _ in history(client, run.info.run_id, "val_loss")] == [0, 1]
    assert "train_loss" in run.data.metrics
    assert run.inputs.dataset_inputs  # the training table, logged once by rank zero
