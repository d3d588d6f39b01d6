"""Training throughput: ml_tabular's Lightning path, tracked and untracked, against a plain PyTorch loop."""

from __future__ import annotations

import statistics
from collections.abc import Callable

import lightning.pytorch as pl

from bench.context import Context
from bench.data import in_subprocess, write_series_file
from bench.results import Measurement, Results, Target, overheads, rate, ratios
from bench.systems import (
    BATCH_SIZE,
    fit_timed,
    make_logger,
    plain_series,
    plain_tabular,
    series_datamodule,
    series_system,
    tabular_datamodule,
    tabular_system,
)
from ml_tabular.data import TabularDataModule

RUN_ORDER = ("tracked", "plain", "untracked")
TINY_HIDDEN = [8]


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
    runs: dict[str, list[float]] = {k: [] for k in (*RUN_ORDER, "tracked_whole", "untracked_whole", "in_logger")}
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
            if kind == "tracked":
                runs["in_logger"].append(100 * sum(timer.tracking[1:]) / sum(timer.whole[1:]))
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
                runs["in_logger"],
                "<=",
                3.0,
                "100 * time inside the MLflow logger's calls / whole-epoch time, in the tracked run's timed epochs",
                unit="%",
            ),
            Target(
                f"{label}_tracking_on_vs_off",
                overheads(runs["tracked_whole"], runs["untracked_whole"]),
                "<=",
                3.0,
                f"100 * (untracked - tracked) / untracked, whole-epoch {unit}: the same cost seen from outside, "
                "within the run-to-run noise of separate fits",
                unit="%",
            ),
        ],
    )


def tabular_training(ctx: Context) -> Results:
    dm = tabular_datamodule(ctx.table())
    dm.setup("fit")
    count = len(dm.splits["train"]["y"])
    results = compare_training(
        ctx, "tabular", "rows/s", count, lambda: tabular_system(dm), dm, lambda: plain_tabular(dm, ctx.epochs)
    )
    results.extend(loop_overhead(ctx, dm))
    return results


def loop_overhead(ctx: Context, dm: TabularDataModule) -> Results:
    """Lightning's own cost per training step: both loops on a network so small that the math is almost free."""
    steps = -(-len(dm.splits["train"]["y"]) // BATCH_SIZE)
    plain, lightning = [], []
    for _ in range(ctx.repeats):
        plain.append(1e6 * statistics.mean(plain_tabular(dm, ctx.epochs, TINY_HIDDEN)[1:]) / steps)
        timer = fit_timed(tabular_system(dm, TINY_HIDDEN), dm, ctx.epochs, False, ctx.tmp)
        lightning.append(1e6 * statistics.mean(timer.body[1:]) / steps)
    note = f"hidden {TINY_HIDDEN}, untracked; the difference is what Lightning adds to every step"
    return Results(
        measurements=[
            Measurement("tiny_step_plain_torch", "us/step", plain, note),
            Measurement("tiny_step_lightning", "us/step", lightning, note),
        ]
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
