"""Training throughput: ``ml_tabular fit``, tracked and untracked, against a plain PyTorch loop (``bench.paired``)."""

from __future__ import annotations

import statistics
from collections.abc import Callable

from bench.context import Context
from bench.data import in_subprocess, write_series_file
from bench.paired import PairedSteps, fit_args, run_fit
from bench.results import Measurement, Results, Target
from bench.systems import BATCH_SIZE, SERIES_HIDDEN, TABULAR_HIDDEN

KINDS = ("tracked", "untracked")
TINY_HIDDEN = [8]
LARGE_BATCH = 2048  # four times the work per step for the same Lightning loop cost


def timed(fits: list[PairedSteps], field: str) -> list[float]:
    """The ``field`` seconds of every fit's epochs after its first (warm-up) epoch."""
    return [seconds for fit in fits for seconds in getattr(fit, field)[1:]]


def pair_ratios(fits: list[PairedSteps], field: str) -> list[float]:
    """plain / ``field`` seconds of each timed epoch: its speed relative to the plain steps run within it."""
    return [p / s for fit in fits for p, s in zip(fit.plain[1:], getattr(fit, field)[1:], strict=True)]


def compare_training(
    ctx: Context, label: str, unit: str, hidden: list[int], args: Callable[[bool], list[str]]
) -> Results:
    """Tracked and untracked fits, in alternating order repeat by repeat, each paired step by step with plain ones."""
    fits: dict[str, list[PairedSteps]] = {kind: [] for kind in KINDS}
    for repeat in range(ctx.repeats):
        for kind in KINDS if repeat % 2 == 0 else KINDS[::-1]:  # a machine getting busier favours no side
            fits[kind].append(run_fit(args(kind == "tracked")))
    count = fits["tracked"][0].examples
    tracked, untracked = fits["tracked"], fits["untracked"]
    note = f"{count} training examples, batch {BATCH_SIZE}, hidden {hidden}, {ctx.epochs - 1} timed epoch(s) per fit"
    whole = "to the next epoch's start: epoch-end logging and checkpointing included"
    on_vs_off = [  # per repeat: tracked vs untracked whole epochs, each against its own plain epochs
        100 * (1 - statistics.median(pair_ratios([t], "whole")) / statistics.median(pair_ratios([u], "whole")))
        for t, u in zip(tracked, untracked, strict=True)
    ]
    return Results(
        measurements=[
            Measurement(f"{label}_train_tracked", unit, [count / s for s in timed(tracked, "body")], note),
            Measurement(f"{label}_train_plain_torch", unit, [count / s for s in timed(tracked + untracked, "plain")]),
            Measurement(f"{label}_train_untracked", unit, [count / s for s in timed(untracked, "body")], note),
            Measurement(f"{label}_whole_epoch_tracked", unit, [count / s for s in timed(tracked, "whole")], whole),
            Measurement(f"{label}_whole_epoch_untracked", unit, [count / s for s in timed(untracked, "whole")], whole),
        ],
        targets=[
            Target(
                f"{label}_lightning_vs_plain",
                pair_ratios(tracked, "body"),
                ">=",
                0.9,
                "tracked `ml_tabular fit` epoch rate / the rate of the plain steps interleaved with it, per epoch",
            ),
            Target(
                f"{label}_tracking_overhead",
                [100 * t / w for t, w in zip(timed(tracked, "tracking"), timed(tracked, "whole"), strict=True)],
                "<=",
                3.0,
                "100 * time inside the MLflow logger's calls / whole-epoch time, per timed epoch of the tracked fits",
                unit="%",
            ),
            Target(
                f"{label}_tracking_on_vs_off",
                on_vs_off,
                "<=",
                3.0,
                "100 * (1 - tracked / untracked whole-epoch rate), each rate relative to the plain steps within it; "
                "one value per repeat",
                unit="%",
            ),
        ],
    )


def loop_overhead(ctx: Context, args: list[str]) -> Results:
    """Lightning's own cost per training step: untracked fits of a network so small that the math is almost free."""
    fits = [run_fit(args) for _ in range(ctx.repeats)]
    steps = -(-fits[0].examples // BATCH_SIZE)
    note = f"hidden {TINY_HIDDEN}, untracked; the difference is what the Lightning loop adds to every step"
    return Results(
        measurements=[
            Measurement("tiny_step_plain_torch", "us/step", [1e6 * s / steps for s in timed(fits, "plain")], note),
            Measurement("tiny_step_lightning", "us/step", [1e6 * s / steps for s in timed(fits, "body")], note),
        ]
    )


def tabular_training(ctx: Context) -> Results:
    path = ctx.table()

    def args(tracked: bool, hidden: list[int] = TABULAR_HIDDEN) -> list[str]:
        return fit_args("tabular", path, ctx.epochs, tracked, hidden)

    results = compare_training(ctx, "tabular", "rows/s", TABULAR_HIDDEN, args)
    results.extend(loop_overhead(ctx, args(False, TINY_HIDDEN)))
    large = run_fit([*args(True), f"--data.init_args.batch_size={LARGE_BATCH}"])
    note = f"tracked, one fit: the Lightning/plain ratio when each step does {LARGE_BATCH // BATCH_SIZE}x the math"
    results.measurements.append(
        Measurement(f"tabular_lightning_vs_plain_batch_{LARGE_BATCH}", "x", pair_ratios([large], "body"), note)
    )
    return results


def series_training(ctx: Context) -> Results:
    path = ctx.tmp / "series.parquet"
    in_subprocess(write_series_file, path, ctx.series_points)

    def args(tracked: bool) -> list[str]:
        return fit_args("series", path, ctx.epochs, tracked, SERIES_HIDDEN)

    return compare_training(ctx, "series", "windows/s", SERIES_HIDDEN, args)
