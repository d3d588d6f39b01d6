"""Performance benchmark of ml_tabular: training, memory, predict, startup and scale, judged by ratios.

    python scripts/benchmark.py [--rows N] [--epochs E] [--repeats R] [--series-points P]
                                [--memory-points M] [--scale N1,N2,...] [--threads T]
                                [--out benchmark.json] [--quick]

All data is generated in a temporary directory, which is also the working directory of the fits (nothing
is downloaded, nothing is written elsewhere). Every measurement is taken R times (``--repeats``; for
training, every timed epoch of R fits) and shown as min / median / max; every target is a RATIO of two
numbers measured in this same run, interleaved, so a busy machine slows both sides alike. A target's ratio
is the median of its per-repeat (per-epoch) ratios (the min/median/max columns of its row).

Measurements:
  1. tabular training rows/s: ``ml_tabular fit`` as a user runs it (``MLTabularCLI`` on
     ``configs/tabular.yaml``, in this process: its Trainer, checkpoint and progress-bar callbacks, and the
     MLflow logger on the default SQLite store) on an N-row Parquet file with 32 float features and a binary
     target, ``TabularMLP`` [256, 256, 256], batch 512, validation off; against a plain PyTorch loop doing the
     same math (a copy of the model's network, its loss, AdamW) on the same tensors (target >= 0.9). Tracking
     overhead: the time spent inside the logger's calls as a share of the epoch (<= 3 %), and the same cost
     seen from outside, tracked vs untracked (Lightning's CSV logger) fits. Lightning's own cost per step is
     measured beside it on a network of one 8-unit layer, where the math is almost free (``tiny_step_*``).
  2. time-series training windows/s: the same on ``configs/timeseries.yaml`` (P points, input 168, horizon
     24, ``TimeSeriesMLP`` [256, 256]) (>= 0.9); tracking overhead.
  3. peak memory of ``TimeSeriesDataModule.setup("fit")`` on an M-point series, in a fresh
     subprocess, relative to the series as stored: M * 16 bytes (an int64 timestamp and a float64 value
     per point) (<= 2x); the ratio to the values alone (M * 8) is kept in the JSON too.
  4. predict rows/s: the CLI's predict path (read the raw file, ``Trainer.predict``,
     ``predictions_frame``, Parquet write) vs a bare forward pass on ready tensors (>= 0.5).
  5. startup: ``python -m ml_tabular --help`` vs ``python -c "import lightning"`` (<= 1.3x).
  6. scale: per row count (``--scale``), each in its own subprocess: the peak memory of loading +
     ``setup("fit")`` relative to the feature bytes (rows * 32 * 4) (<= 2x), and tracked Lightning
     rows/s, as time per row relative to the smallest size (flat within 1.3x).
  7. score: ``ml_tabular score``'s path (the MLflow model loaded by URI, Parquet read, scored and written in
     chunks) vs a bare forward pass of its network on the same rows as ready tensors (>= 0.5); its peak memory
     scoring 2M rows vs 100k rows, each in a fresh interpreter (<= 1.2x: flat in the input size).
  8. serving: ``ml_tabular serve`` on a model trained here, p50 latency of a one-row JSON request over 200
     sequential requests per repeat (reported, no target), and the time from start to the first ``/ping``.
  9. DDP: tracked ``ml_tabular fit`` subprocesses on the N-row table with ``--trainer.strategy ddp
     --trainer.devices 2`` (CPU, gloo) and on one process, alternating, each process on ``--threads`` threads:
     rows/s over the epochs after the first, and their ratio per repeat (reported, no target).
 10. tune: ``ml_tabular tune`` in this process (5 trials of the shipped tabular config on 10k rows, 2 epochs, a
     new SQLite study), its trials' ``fit`` calls timed inside it: the overhead per trial, (tune - its fits) /
     trials, in seconds (<= 1 s); the same fits run alone right after it are reported beside them.
 11. remote tracking: tracked ``ml_tabular fit`` subprocesses to ``ml_tabular server`` (SQLite store, one worker) on
     127.0.0.1 against tracking off, alternating: whole-epoch seconds and their ratio per repeat (<= 1.05), and
     the whole fit's fixed cost (run creation, params, uploads, MLflow model); then the server is SIGKILLed (and
     then hung: a socket that never answers) at an epoch's start: that epoch's extra seconds (reported).

Pairing: this machine's speed drifts by 10 % and more within seconds, more than the differences measured,
so the plain loop is not timed in runs of its own. One plain step runs after every Lightning step, outside
the Lightning epoch's timing, and each Lightning epoch is compared with the plain steps interleaved with
it: the training targets are medians of these per-epoch ratios, over every timed epoch of every repeat.
The first epoch of each fit is warm-up and is not counted. ``train`` rates time the epoch body
(``on_train_epoch_start`` -> ``on_train_epoch_end``); ``whole_epoch`` rates run to the next epoch's
start and so include the epoch-end metric flush and checkpoint, which is what the overhead uses. A scale
point instead warms up with a 20-batch fit, then times whole epochs.

Peak memory is VmHWM from /proc/self/status, grown from a baseline taken after a warm-up setup on 2,000
rows (the first use of a code path costs a few MB that do not grow with the data: lazy imports, Arrow's
memory pool); on Linux ``ru_maxrss`` survives fork + exec and so reports the parent's peak in a child
spawned from a large parent; both are stored in the JSON.

Torch runs on ``--threads`` threads (default 1) in every path. On a shared machine two threads are
a trap: when another process holds a core, each parallel op waits for the descheduled thread and
training runs 3-4x slower than on one thread; one thread only loses its share of the CPU.

``--quick`` runs everything at tiny sizes with one repeat, for the test; its numbers mean nothing.
The default run takes about 4 minutes on 2 cores; add ``--scale 10000,1000000,10000000`` for the
10M-row point (several more minutes and ~4 GB of memory).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning
import torch

from bench.context import Context
from bench.ddp import ddp_training
from bench.memory import series_memory, worker_series_memory
from bench.predict import predict_throughput
from bench.remote_tracking import remote_tracking
from bench.results import Results, print_table
from bench.scale import scale, worker_tabular_scale
from bench.scoring import scoring, worker_score_memory
from bench.serving import serving_latency
from bench.startup import startup
from bench.systems import BATCH_SIZE
from bench.training import series_training, tabular_training
from bench.tuning import tune_overhead
from bench.workers import MEMORY_DEFINITION

DEFAULTS = {
    "rows": 100_000,
    "epochs": 3,
    "repeats": 3,
    "series_points": 100_000,
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
    "scale": "4000,8000",  # above the 2,000-row warm-up, so the peak has something to grow by
    "scale_min_rows": 0,
}
SUITES: dict[str, Callable[[Context], Results]] = {
    "tabular training": tabular_training,
    "series training": series_training,
    "series memory": series_memory,
    "predict": predict_throughput,
    "startup": startup,
    "scale": scale,
    "score": scoring,
    "serving": serving_latency,
    "ddp training": ddp_training,
    "remote tracking": remote_tracking,
    "tune": tune_overhead,
}
WORKERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "series-memory": worker_series_memory,
    "tabular-scale": worker_tabular_scale,
    "score-memory": worker_score_memory,
}


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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    quiet()
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](json.loads(args.spec))))
        return
    started, load_before = time.perf_counter(), os.getloadavg()
    results, out, home = Results(), args.out.resolve(), Path.cwd()
    with tempfile.TemporaryDirectory(prefix="ml_tabular_bench_") as tmp:
        ctx = make_context(args, Path(tmp))
        os.chdir(tmp)  # the fits' default tracking store, checkpoints and CSV logs land in the temporary folder
        try:
            for name, suite in SUITES.items():
                print(f"[{time.perf_counter() - started:6.1f}s] {name} ...", file=sys.stderr, flush=True)
                results.extend(suite(ctx))
        finally:
            os.chdir(home)
        payload = report(results, ctx, time.perf_counter() - started, load_before)
    print_table(results)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    print(f"\n{len(results.targets)} targets, {sum(t.met for t in results.targets)} met; wrote {out}")


if __name__ == "__main__":
    main()
