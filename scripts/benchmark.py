"""Performance benchmark of ml_tabular: training, memory, predict, startup and scale, judged by ratios.

    python scripts/benchmark.py [--rows N] [--epochs E] [--repeats R] [--series-points P]
                                [--memory-points M] [--scale N1,N2,...] [--threads T]
                                [--out benchmark.json] [--quick]

All data is generated in a temporary directory (nothing is downloaded). Every measurement is taken
R times (``--repeats``) and shown as min / median / max; every target is a RATIO of two numbers
measured in this same run, interleaved repeat by repeat, so a busy machine slows both sides alike.
A target's ratio is the median of its per-repeat ratios (the min/median/max columns of its row).

Measurements:
  1. tabular training rows/s: the Lightning path (``TabularDataModule`` on an N-row Parquet file with
     32 float features and a binary target, ``TabularMLP`` [256, 256, 256], batch 512, tracked in
     MLflow through ``MLTabularLogger`` on SQLite) vs a plain PyTorch loop doing the same math on the
     same tensors (target >= 0.9); tracking overhead (untracked - tracked) / untracked (<= 3 %).
  2. time-series training windows/s: ``TimeSeriesDataModule`` (P points, input 168, horizon 24) and
     ``TimeSeriesMLP`` [256, 256] vs a plain loop over the same windows (>= 0.9); tracking overhead.
  3. peak memory of ``TimeSeriesDataModule.setup("fit")`` on an M-point series, in a fresh
     subprocess, relative to the series as stored (M * 8 bytes of float64 values) (<= 2x).
  4. predict rows/s: the CLI's predict path (read the raw file, ``Trainer.predict``,
     ``predictions_frame``, Parquet write) vs a bare forward pass on ready tensors (>= 0.5).
  5. startup: ``python -m ml_tabular --help`` vs ``python -c "import lightning"`` (<= 1.3x).
  6. scale: per row count (``--scale``), each in its own subprocess: the peak memory of loading +
     ``setup("fit")`` relative to the feature bytes (rows * 32 * 4) (<= 2x), and tracked Lightning
     rows/s, as time per row relative to the smallest size (flat within 1.3x).

Training rates count the epochs after the first (warm-up) only; a scale point instead warms up
with a 20-batch fit, then times whole epochs. ``train`` rates time the epoch body
(``on_train_epoch_start`` -> ``on_train_epoch_end``); ``whole_epoch`` rates run to the next epoch's
start and so include the epoch-end metric flush to MLflow, which is what the overhead uses.
Peak memory is VmHWM from /proc/self/status: on Linux ``ru_maxrss`` survives fork + exec and so
reports the parent's peak in a child spawned from a large parent; both are stored in the JSON.

Torch runs on ``--threads`` threads (default 1) in every path. On a shared machine two threads are
a trap: when another process holds a core, each parallel op waits for the descheduled thread and
training runs 3-4x slower than on one thread; one thread only loses its share of the CPU.

``--quick`` runs everything at tiny sizes with one repeat, for the test; its numbers mean nothing.
The default run takes a few minutes on 2 cores; add ``--scale 10000,1000000,10000000`` for the
10M-row point (several more minutes and ~4 GB of memory).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning
import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from ml_tabular.data import TabularDataModule, TimeSeriesDataModule
from ml_tabular.data.io import read_table, write_table
from ml_tabular.models import TabularMLP, TimeSeriesMLP
from ml_tabular.nn import MLP, TabularNet

N_FEATURES = 32
BATCH_SIZE = 512
TABULAR_HIDDEN = [256, 256, 256]
SERIES_HIDDEN = [256, 256]
INPUT_SIZE = 168
HORIZON = 24
LR = 1e-3
WRITE_CHUNK = 1_000_000  # rows generated and written at a time, so writing 10M rows stays small
SCALE_MAX_TIMED_ROWS = 1_000_000  # above this, one timed epoch is enough
WARMUP_BATCHES = 20  # a scale point warms up with a short fit instead of a whole (maybe 10M-row) epoch

DEFAULTS = {
    "rows": 50_000,
    "epochs": 2,
    "repeats": 3,
    "series_points": 200_000,
    "memory_points": 5_000_000,
    "scale": "10000,100000,1000000",
    "scale_min_rows": 100_000,  # small scale points repeat epochs until this many rows are timed
}
QUICK = {
    "rows": 2_000,
    "epochs": 2,
    "repeats": 1,
    "series_points": 5_000,
    "memory_points": 20_000,
    "scale": "2000,4000",
    "scale_min_rows": 0,
}
MEMORY_DEFINITION = (
    "(VmHWM after setup('fit') - VmHWM after imports) / data bytes; VmHWM is the process's own peak RSS "
    "(/proc/self/status); ru_maxrss values are stored beside it but not used"
)


# ----- results -----
@dataclass
class Measurement:
    """Repeated values of one quantity."""

    name: str
    unit: str
    values: list[float]
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "min": min(self.values),
            "median": statistics.median(self.values),
            "max": max(self.values),
            "values": self.values,
            "note": self.note,
            **self.extra,
        }


@dataclass
class Target:
    """A ratio of two measurements and the bound it should meet; ``values`` are the per-repeat ratios."""

    name: str
    values: list[float]
    op: Literal["<=", ">="]
    threshold: float
    definition: str
    unit: str = "x"

    @property
    def ratio(self) -> float:
        return statistics.median(self.values)

    @property
    def met(self) -> bool:
        return self.ratio <= self.threshold if self.op == "<=" else self.ratio >= self.threshold

    def summary(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio,
            "target": f"{self.op} {self.threshold:g}",
            "met": self.met,
            "unit": self.unit,
            "min": min(self.values),
            "max": max(self.values),
            "values": self.values,
            "definition": self.definition,
        }


@dataclass
class Results:
    """What a suite measured and the targets it judged."""

    measurements: list[Measurement] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def extend(self, other: Results) -> None:
        self.measurements += other.measurements
        self.targets += other.targets


@dataclass
class Context:
    """Sizes and places shared by every suite."""

    tmp: Path
    rows: int
    epochs: int
    repeats: int
    series_points: int
    memory_points: int
    scale: list[int]
    scale_min_rows: int
    threads: int
    quick: bool

    def table(self) -> Path:
        """The N-row training table (written on first use)."""
        path = self.tmp / "table.parquet"
        if not path.exists():
            in_subprocess(write_table_file, path, self.rows)
        return path


def ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """Per-repeat ratios of two interleaved measurements."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def overheads(tracked: list[float], untracked: list[float]) -> list[float]:
    """Per-repeat slowdown in % of two rates: (untracked - tracked) / untracked."""
    return [100 * (off - on) / off for on, off in zip(tracked, untracked, strict=True)]


def rate(count: int, seconds: list[float]) -> float:
    """Examples per second over the timed epochs (``seconds``, the first epoch already dropped)."""
    return count * len(seconds) / sum(seconds)


# ----- generated data -----
def write_table_file(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` rows of 32 float32 features ``f00..f31`` and a binary int target ``y``, as Parquet."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=N_FEATURES).astype(np.float32)
    schema = pa.schema([*(pa.field(f"f{i:02d}", pa.float32()) for i in range(N_FEATURES)), pa.field("y", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for begin in range(0, rows, WRITE_CHUNK):
            n = min(WRITE_CHUNK, rows - begin)
            x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
            y = (x @ weights + rng.normal(size=n).astype(np.float32) > 0).astype(np.int64)
            writer.write_table(pa.Table.from_arrays([*x.T, y], schema=schema))


def write_series_file(path: Path, points: int, seed: int = 0) -> None:
    """One minute-level series (``timestamp``, float64 ``value`` with a daily cycle and noise), as Parquet."""
    rng = np.random.default_rng(seed)
    step = np.arange(points)
    value = 10 + 5 * np.sin(2 * np.pi * step / 1440) + rng.normal(0, 0.5, points)
    stamps = pd.date_range("2000-01-01", periods=points, freq="min")
    pq.write_table(pa.table({"timestamp": stamps, "value": value}), path)


def in_subprocess(function: Callable[..., None], *args: Any) -> None:
    """Run ``function(*args)`` in a forked process, so its memory never counts in this one."""
    process = multiprocessing.get_context("fork").Process(target=function, args=args)
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"{function.__name__}{args} failed with exit code {process.exitcode}")


# ----- systems and plain loops -----
def tabular_datamodule(path: Path, predict_path: Path | None = None) -> TabularDataModule:
    """The default splits (70 % of the rows train), batches of 512."""
    predict = None if predict_path is None else str(predict_path)
    return TabularDataModule(str(path), target="y", task="classification", batch_size=BATCH_SIZE, predict_path=predict)


def series_datamodule(path: Path) -> TimeSeriesDataModule:
    """The default splits (the first 70 % of the steps train), batches of 512."""
    return TimeSeriesDataModule(
        str(path), target="value", input_size=INPUT_SIZE, horizon=HORIZON, batch_size=BATCH_SIZE
    )


def tabular_system(dm: TabularDataModule) -> TabularMLP:
    torch.manual_seed(0)
    return TabularMLP(
        n_numeric=dm.n_numeric,
        cardinalities=dm.cardinalities,
        n_outputs=dm.n_outputs,
        task=dm.resolved_task,
        hidden_dims=TABULAR_HIDDEN,
        dropout=0.0,
        norm="none",
        lr=LR,
    )


def series_system(dm: TimeSeriesDataModule) -> TimeSeriesMLP:
    torch.manual_seed(0)
    return TimeSeriesMLP(
        input_size=dm.input_size,
        horizon=dm.horizon,
        n_channels=dm.n_channels,
        target_mean=dm.target_mean,
        target_std=dm.target_std,
        mase_scale=dm.mase_scale,
        hidden_dims=SERIES_HIDDEN,
        dropout=0.0,
        norm="none",
        lr=LR,
    )


class EpochTimer(Callback):
    """Wall time of each training epoch: its body, and the whole epoch up to the next one's start."""

    def __init__(self) -> None:
        self.body: list[float] = []
        self.whole: list[float] = []
        self._start: float | None = None

    def _close(self) -> None:
        if self._start is not None:
            self.whole.append(time.perf_counter() - self._start)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self._start is not None
        self.body.append(time.perf_counter() - self._start)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close()  # the last epoch's end-of-epoch logging has run by now
        self._start = None


def make_logger(tmp: Path, name: str) -> pl.loggers.Logger:
    """An ``MLTabularLogger`` on the SQLite store in ``tmp`` (imported here: only tracked runs need MLflow)."""
    from ml_tabular.mlops.logger import MLTabularLogger

    return MLTabularLogger(
        experiment_name="benchmark",
        run_name=name,
        tracking_uri=f"sqlite:///{tmp}/mlflow.db",
        save_dir=str(tmp / "mlruns"),
    )


def trainer(
    epochs: int, logger: pl.loggers.Logger | bool, root: Path, callbacks: list[Callback], batches: int | None = None
) -> pl.Trainer:
    """The benchmark's Trainer: CPU, no validation, checkpoints or progress bar; ``batches`` per epoch if given."""
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=logger,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        limit_train_batches=batches,
        default_root_dir=str(root),
    )


def fit_timed(
    system: pl.LightningModule, dm: pl.LightningDataModule, epochs: int, logger: pl.loggers.Logger | bool, root: Path
) -> EpochTimer:
    """Fit ``system`` for ``epochs`` epochs and return the epoch times."""
    timer = EpochTimer()
    trainer(epochs, logger, root, [timer]).fit(system, datamodule=dm)
    return timer


def plain_epochs(
    net: nn.Module, loss_of: Callable[[Tensor], Tensor], count: int, epochs: int, seed: int = 0
) -> list[float]:
    """Train ``net`` with AdamW for ``epochs`` shuffled epochs of ``loss_of(index)``; seconds per epoch."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=LR, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    net.train()
    seconds = []
    for _ in range(epochs):
        start = time.perf_counter()
        order = torch.randperm(count, generator=generator)
        for begin in range(0, count, BATCH_SIZE):
            loss = loss_of(order[begin : begin + BATCH_SIZE])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    return seconds


def plain_tabular(dm: TabularDataModule, epochs: int) -> list[float]:
    """The tabular math without Lightning: same network, same tensors, index slicing per batch."""
    train = dm.splits["train"]
    x_num, x_cat, y = train["x_num"], train["x_cat"], train["y"]
    torch.manual_seed(0)
    net = TabularNet(dm.n_numeric, dm.cardinalities, dm.n_outputs, TABULAR_HIDDEN, dropout=0.0, norm="none")

    def loss_of(index: Tensor) -> Tensor:
        return nn.functional.cross_entropy(net(x_num[index], x_cat[index]), y[index])

    return plain_epochs(net, loss_of, len(y), epochs)


def plain_series(dm: TimeSeriesDataModule, epochs: int) -> list[float]:
    """The forecasting math without Lightning: windows gathered from ``unfold`` at the train starts."""
    assert dm.values is not None
    width = INPUT_SIZE + HORIZON
    view = dm.values.unfold(0, width, 1)  # [T - W + 1, C, W], no copy
    starts = dm.starts["train"]
    torch.manual_seed(0)
    net = MLP(INPUT_SIZE * dm.n_channels, SERIES_HIDDEN, HORIZON, dropout=0.0, norm="none")

    def loss_of(index: Tensor) -> Tensor:
        window = view[starts[index]]  # [B, C, W]
        x = window[:, :, :INPUT_SIZE].transpose(1, 2).reshape(len(index), -1)  # [B, L, C] -> [B, L*C]
        return nn.functional.mse_loss(net(x), window[:, 0, INPUT_SIZE:])

    return plain_epochs(net, loss_of, len(starts), epochs)


# ----- suites -----
RUN_ORDER = ("tracked", "plain", "untracked")


def compare_training(
    ctx: Context,
    label: str,
    unit: str,
    count: int,
    system: Callable[[], pl.LightningModule],
    dm: pl.LightningDataModule,
    plain: Callable[[], list[float]],
) -> Results:
    """Tracked Lightning, plain torch and untracked Lightning, interleaved repeat by repeat."""
    runs: dict[str, list[float]] = {k: [] for k in (*RUN_ORDER, "tracked_whole", "untracked_whole")}
    for repeat in range(ctx.repeats):
        # every other repeat runs in reverse, so a machine getting busier or quieter favours no side
        for kind in RUN_ORDER if repeat % 2 == 0 else RUN_ORDER[::-1]:
            if kind == "plain":
                runs["plain"].append(rate(count, plain()[1:]))
                continue
            logger = make_logger(ctx.tmp, f"{label}-{repeat}") if kind == "tracked" else False
            timer = fit_timed(system(), dm, ctx.epochs, logger, ctx.tmp)
            runs[kind].append(rate(count, timer.body[1:]))
            runs[f"{kind}_whole"].append(rate(count, timer.whole[1:]))
    note = f"{count} training examples, batch {BATCH_SIZE}, {ctx.epochs - 1} timed epoch(s) per repeat"
    whole = "to the next epoch's start: epoch-end logging included"
    return Results(
        measurements=[
            Measurement(f"{label}_train_tracked", unit, runs["tracked"], note),
            Measurement(f"{label}_train_plain_torch", unit, runs["plain"], note),
            Measurement(f"{label}_train_untracked", unit, runs["untracked"], note),
            Measurement(f"{label}_whole_epoch_tracked", unit, runs["tracked_whole"], whole),
            Measurement(f"{label}_whole_epoch_untracked", unit, runs["untracked_whole"], whole),
        ],
        targets=[
            Target(
                f"{label}_lightning_vs_plain",
                ratios(runs["tracked"], runs["plain"]),
                ">=",
                0.9,
                f"{label}_train_tracked / {label}_train_plain_torch",
            ),
            Target(
                f"{label}_tracking_overhead",
                overheads(runs["tracked_whole"], runs["untracked_whole"]),
                "<=",
                3.0,
                f"100 * (untracked - tracked) / untracked, whole-epoch {unit}",
                unit="%",
            ),
        ],
    )


def tabular_training(ctx: Context) -> Results:
    dm = tabular_datamodule(ctx.table())
    dm.setup("fit")
    count = len(dm.splits["train"]["y"])
    return compare_training(
        ctx, "tabular", "rows/s", count, lambda: tabular_system(dm), dm, lambda: plain_tabular(dm, ctx.epochs)
    )


def series_training(ctx: Context) -> Results:
    path = ctx.tmp / "series.parquet"
    in_subprocess(write_series_file, path, ctx.series_points)
    dm = series_datamodule(path)
    dm.setup("fit")
    count = len(dm.starts["train"])
    return compare_training(
        ctx, "series", "windows/s", count, lambda: series_system(dm), dm, lambda: plain_series(dm, ctx.epochs)
    )


def series_memory(ctx: Context) -> Results:
    path = ctx.tmp / "long_series.parquet"
    in_subprocess(write_series_file, path, ctx.memory_points)
    data_bytes = ctx.memory_points * 8
    marks = [run_worker("series-memory", {"path": str(path)}, ctx) for _ in range(ctx.repeats)]
    path.unlink()
    grown = [growth(m) for m in marks]
    return Results(
        measurements=[
            Measurement(
                "series_setup_peak_memory",
                "MB",
                [g / 1e6 for g in grown],
                f"{ctx.memory_points} points",
                {"marks": marks},
            )
        ],
        targets=[
            Target(
                "series_memory_vs_values",
                [g / data_bytes for g in grown],
                "<=",
                2.0,
                f"{MEMORY_DEFINITION}; data bytes = n_points * 8 (the float64 target values as stored)",
            )
        ],
    )


def cli_predict_seconds(model: TabularMLP, dm: TabularDataModule, output: Path, root: Path) -> float:
    """The CLI's predict path: read + transform the raw file, ``Trainer.predict``, frame, Parquet write."""
    predictor = trainer(1, False, root, [])
    start = time.perf_counter()
    outputs = predictor.predict(model, datamodule=dm, return_predictions=True)
    write_table(dm.predictions_frame(outputs), output)
    return time.perf_counter() - start


def bare_forward_seconds(model: TabularMLP, x_num: Tensor, x_cat: Tensor) -> float:
    """A forward pass over ready tensors, in batches of the same size, without autograd."""
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for begin in range(0, len(x_num), BATCH_SIZE):
            model(x_num[begin : begin + BATCH_SIZE], x_cat[begin : begin + BATCH_SIZE])
    return time.perf_counter() - start


def predict_throughput(ctx: Context) -> Results:
    path = ctx.table()
    dm = tabular_datamodule(path, predict_path=path)
    model = tabular_system(dm)
    ready = dm.fitted.transform(read_table(path), str(path), with_target=False)
    count = len(ready["x_num"])
    cli, bare = [], []
    for _ in range(ctx.repeats):
        cli.append(count / cli_predict_seconds(model, dm, ctx.tmp / "predictions.parquet", ctx.tmp))
        bare.append(count / bare_forward_seconds(model, ready["x_num"], ready["x_cat"]))
    note = f"{count} rows, batch {BATCH_SIZE}"
    return Results(
        measurements=[
            Measurement("predict_cli_path", "rows/s", cli, note + "; Parquet in, Parquet out"),
            Measurement("predict_bare_forward", "rows/s", bare, note),
        ],
        targets=[
            Target("predict_cli_vs_bare", ratios(cli, bare), ">=", 0.5, "predict_cli_path / predict_bare_forward")
        ],
    )


def wall_seconds(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def startup(ctx: Context) -> Results:
    commands = {
        "startup_ml_tabular_help": [sys.executable, "-m", "ml_tabular", "--help"],
        "startup_import_lightning": [sys.executable, "-c", "import lightning"],
    }
    # no warm-up run: this process has imported lightning, so its files are in the page cache
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(ctx.repeats):
        for name, command in commands.items():
            times[name].append(wall_seconds(command, ctx.tmp))
    help_s, import_s = times["startup_ml_tabular_help"], times["startup_import_lightning"]
    return Results(
        measurements=[Measurement(name, "s", values) for name, values in times.items()],
        targets=[
            Target(
                "startup_help_vs_import",
                ratios(help_s, import_s),
                "<=",
                1.3,
                "wall time of `python -m ml_tabular --help` / of `python -c 'import lightning'`",
            )
        ],
    )


def scale_epochs(train_rows: int, repeats: int, min_rows: int) -> int:
    """Timed epochs at one scale point: at least ``min_rows`` rows, but one epoch when the data is big."""
    if train_rows * repeats > SCALE_MAX_TIMED_ROWS:
        return 1
    return max(repeats, -(-min_rows // train_rows))


def scale_point(ctx: Context, rows: int) -> dict[str, Any]:
    path = ctx.tmp / f"scale_{rows}.parquet"
    in_subprocess(write_table_file, path, rows)
    spec = {"path": str(path), "repeats": ctx.repeats, "min_rows": ctx.scale_min_rows, "tmp": str(ctx.tmp)}
    try:
        return run_worker("tabular-scale", spec, ctx)
    finally:
        path.unlink()


def scale(ctx: Context) -> Results:
    points = {rows: scale_point(ctx, rows) for rows in sorted(ctx.scale)}
    smallest = min(points)
    base_rate = statistics.median(points[smallest]["rows_per_s"])
    results = Results()
    for rows, point in points.items():
        grown, marks = growth(point["memory"]), {"marks": point["memory"]}
        results.measurements += [
            Measurement(f"scale_{rows}_train_tracked", "rows/s", point["rows_per_s"], f"{point['train_rows']} rows"),
            Measurement(f"scale_{rows}_setup_peak_memory", "MB", [grown / 1e6], "one sample", marks),
        ]
        results.targets.append(
            Target(
                f"scale_{rows}_memory_vs_data",
                [grown / (rows * N_FEATURES * 4)],
                "<=",
                2.0,
                f"{MEMORY_DEFINITION}; data bytes = rows * 32 * 4",
            )
        )
        if rows != smallest:
            per_row = base_rate / statistics.median(point["rows_per_s"])
            results.targets.append(
                Target(f"scale_{rows}_time_per_row_vs_{smallest}", [per_row], "<=", 1.3, "median s/row vs smallest")
            )
    return results


# ----- measuring subprocesses -----
def memory_mark() -> dict[str, int]:
    """This process's peak resident set so far: VmHWM in bytes, and ru_maxrss in KiB for reference."""
    with open("/proc/self/status") as status:
        vmhwm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    return {"vmhwm_bytes": vmhwm, "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def growth(marks: dict[str, dict[str, int]]) -> int:
    """Bytes the peak grew by between the ``baseline`` and ``peak`` marks of a worker."""
    return marks["peak"]["vmhwm_bytes"] - marks["baseline"]["vmhwm_bytes"]


def worker_series_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of building a ``TimeSeriesDataModule`` and calling ``setup("fit")``."""
    baseline = memory_mark()
    series_datamodule(Path(spec["path"])).setup("fit")
    return {"baseline": baseline, "peak": memory_mark()}


def worker_tabular_scale(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of loading + ``setup("fit")`` of one table, then the tracked training rate on it."""
    baseline = memory_mark()
    dm = tabular_datamodule(Path(spec["path"]))
    dm.setup("fit")
    memory = {"baseline": baseline, "peak": memory_mark()}
    count = len(dm.splits["train"]["y"])
    tmp = Path(spec["tmp"])
    trainer(1, False, tmp, [], batches=WARMUP_BATCHES).fit(tabular_system(dm), datamodule=dm)
    epochs = scale_epochs(count, spec["repeats"], spec["min_rows"])
    timer = fit_timed(tabular_system(dm), dm, epochs, make_logger(tmp, f"scale-{count}"), tmp)
    return {"memory": memory, "train_rows": count, "rows_per_s": [count / s for s in timer.body]}


WORKERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "series-memory": worker_series_memory,
    "tabular-scale": worker_tabular_scale,
}


def run_worker(name: str, spec: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Run a measurement in a fresh interpreter; it prints its result as the last line of stdout."""
    script = str(Path(__file__).resolve())
    command = [sys.executable, script, "--worker", name, "--spec", json.dumps(spec), "--threads", str(ctx.threads)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ctx.tmp)
    if done.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----- report -----
def number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def table_rows(results: Results) -> Iterator[list[str]]:
    for m in results.measurements:
        s = m.summary()
        yield [m.name, number(s["min"]), number(s["median"]), number(s["max"]), m.unit, "", ""]
    for t in results.targets:
        spread = [number(min(t.values)), number(t.ratio), number(max(t.values))]
        yield [t.name, *spread, t.unit, f"{number(t.ratio)} {t.op} {t.threshold:g}", "yes" if t.met else "NO"]


def print_table(results: Results) -> None:
    header = ["name", "min", "median", "max", "unit", "ratio/target", "met?"]
    rows = [header, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    left = (0, 4, 5)  # name, unit and target read left to right; numbers line up on the right
    for i, row in enumerate(rows):
        cells = zip(row, widths, strict=True)
        print("  ".join(cell.ljust(w) if j in left else cell.rjust(w) for j, (cell, w) in enumerate(cells)))
        if i == 0:
            print("  ".join("-" * w for w in widths))


def report(results: Results, ctx: Context, seconds: float, load_before: tuple[float, ...]) -> dict[str, Any]:
    """The JSON document: the run's settings and machine, every measurement and every target."""
    config = {k: v for k, v in asdict(ctx).items() if k != "tmp"}
    return {
        "meta": {
            **config,
            "batch_size": BATCH_SIZE,
            "wall_seconds": seconds,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "lightning": lightning.__version__,
            "memory_definition": MEMORY_DEFINITION,
            "ratio_definition": "median of per-repeat ratios of interleaved measurements",
        },
        "measurements": {m.name: m.summary() for m in results.measurements},
        "targets": {t.name: t.summary() for t in results.targets},
    }


# ----- entry point -----
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sizes = {
        "--rows": "tabular rows",
        "--epochs": "epochs per training run, the first untimed",
        "--repeats": "repeats of every measurement",
        "--series-points": "series length for the training measurement",
        "--memory-points": "series length for the memory measurement",
    }
    for flag, text in sizes.items():
        parser.add_argument(flag, type=int, help=f"{text} (default {DEFAULTS[flag[2:].replace('-', '_')]:,})")
    parser.add_argument("--scale", help=f"comma-separated row counts (default {DEFAULTS['scale']})")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: see the docstring)")
    parser.add_argument("--out", type=Path, default=Path("benchmark.json"), help="JSON results file")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: a smoke test")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", default="{}", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def make_context(args: argparse.Namespace, tmp: Path) -> Context:
    preset = QUICK if args.quick else DEFAULTS
    value = {k: v if getattr(args, k, None) is None else getattr(args, k) for k, v in preset.items()}
    if value["epochs"] < 2 or value["repeats"] < 1:
        raise SystemExit("--epochs must be >= 2 (the first is warm-up) and --repeats >= 1")
    if value["repeats"] < 3 and not args.quick:
        print("note: fewer than 3 repeats; min/median/max say little", file=sys.stderr)
    scale_rows = [int(n) for n in str(value.pop("scale")).split(",") if n.strip()]
    return Context(tmp=tmp, scale=scale_rows, threads=args.threads, quick=args.quick, **value)


def quiet() -> None:
    """Keep the table readable: no Lightning banners, MLflow migrations or single-process warnings."""
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is imported, here and in workers
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "ml_tabular"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("lightning.pytorch.loggers.mlflow").setLevel(logging.ERROR)  # "Experiment ... not found"
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", category=FutureWarning)


SUITES: dict[str, Callable[[Context], Results]] = {
    "tabular training": tabular_training,
    "series training": series_training,
    "series memory": series_memory,
    "predict": predict_throughput,
    "startup": startup,
    "scale": scale,
}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet()
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](json.loads(args.spec))))
        return
    started, load_before = time.perf_counter(), os.getloadavg()
    results = Results()
    with tempfile.TemporaryDirectory(prefix="ml_tabular_bench_") as tmp:
        ctx = make_context(args, Path(tmp))
        for name, suite in SUITES.items():
            print(f"[{time.perf_counter() - started:6.1f}s] {name} ...", file=sys.stderr, flush=True)
            results.extend(suite(ctx))
        payload = report(results, ctx, time.perf_counter() - started, load_before)
    print_table(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"\n{len(results.targets)} targets, {sum(t.met for t in results.targets)} met; wrote {args.out}")


if __name__ == "__main__":
    main()
