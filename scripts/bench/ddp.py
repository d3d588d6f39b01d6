"""DDP throughput: ``ml_tabular fit`` on 2 CPU processes (``--trainer.strategy ddp``, gloo) against 1 process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from bench.context import Context
from bench.paired import fit_args
from bench.results import Measurement, Results, rate, ratios
from bench.systems import BATCH_SIZE, TABULAR_HIDDEN

SCRIPTS = Path(__file__).resolve().parents[1]  # on PYTHONPATH, so every rank can load EpochClock


class EpochClock(Callback):
    """Appends each training epoch's body seconds and the examples all processes trained on in it to ``path``
    (JSON lines, written by global rank zero: the gradient all-reduce of every step keeps it in step with the others).

    Args:
        path: The JSON-lines file.
    """

    def __init__(self, path: str) -> None:
        self.path, self.start, self.examples = Path(path), 0.0, 0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start, self.examples = time.perf_counter(), 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx) -> None:
        self.examples += len(next(iter(batch.values())))

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        seconds = time.perf_counter() - self.start
        examples = int(trainer.strategy.reduce(torch.tensor(self.examples), reduce_op="sum"))  # after the clock stops
        if trainer.is_global_zero:
            with self.path.open("a") as file:
                file.write(json.dumps({"seconds": seconds, "examples": examples}) + "\n")


def fit_rate(ctx: Context, path: Path, processes: int) -> float:
    """Training examples/s of one tracked ``ml_tabular fit`` subprocess on ``processes`` CPU processes, over its
    epochs after the first (warm-up)."""
    clock = ctx.tmp / f"ddp_clock_{processes}.jsonl"
    clock.unlink(missing_ok=True)
    ddp = ["--trainer.strategy=ddp", f"--trainer.devices={processes}"] if processes > 1 else ["--trainer.devices=1"]
    args = [
        *fit_args("tabular", path, ctx.epochs, True, TABULAR_HIDDEN),
        f"--trainer.callbacks=[{{class_path: bench.ddp.EpochClock, init_args: {{path: {clock}}}}}]",
        "--trainer.accelerator=cpu",
        "--trainer.enable_progress_bar=false",
        *ddp,
    ]
    # each process on --threads threads (Lightning would otherwise split the cores among the DDP processes itself)
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS), "OMP_NUM_THREADS": str(ctx.threads), "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, "-m", "ml_tabular", *args], cwd=ctx.tmp, env=env, capture_output=True)
    if done.returncode != 0:
        raise RuntimeError(f"DDP benchmark fit on {processes} process(es) failed:\n{done.stderr.decode()[-3000:]}")
    epochs = [json.loads(line) for line in clock.read_text().splitlines()][1:]
    return rate(epochs[0]["examples"], [epoch["seconds"] for epoch in epochs])


def ddp_training(ctx: Context) -> Results:
    """1 and 2 processes alternating repeat by repeat; their ratio per repeat (no target: reported)."""
    path = ctx.table()
    rates: dict[int, list[float]] = {1: [], 2: []}
    for repeat in range(ctx.repeats):
        for processes in (1, 2) if repeat % 2 == 0 else (2, 1):  # a machine getting busier favours no side
            rates[processes].append(fit_rate(ctx, path, processes))
    note = (
        f"tracked `ml_tabular fit`, batch {BATCH_SIZE} per process, hidden {TABULAR_HIDDEN}, {ctx.threads} torch "
        f"thread(s) per process, {ctx.epochs - 1} timed epoch(s) per fit"
    )
    return Results(
        measurements=[
            Measurement("ddp_1_process_train", "rows/s", rates[1], note),
            Measurement("ddp_2_processes_train", "rows/s", rates[2], f"--trainer.strategy ddp, gloo; {note}"),
            Measurement(
                "ddp_2_vs_1_processes", "x", ratios(rates[2], rates[1]), "2-process / 1-process rate, per repeat"
            ),
        ]
    )
