"""Scale: peak loading memory and time per row of the tabular path at growing row counts."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.data import N_FEATURES, in_subprocess, write_table_file
from bench.results import Measurement, Results, Target
from bench.systems import fit_timed, make_logger, tabular_datamodule, tabular_system, trainer
from bench.workers import MEMORY_DEFINITION, growth, memory_mark, run_worker, warmed_up

SCALE_MAX_TIMED_ROWS = 1_000_000  # above this, one timed epoch is enough
WARMUP_BATCHES = 20  # a scale point warms up with a short fit instead of a whole (maybe 10M-row) epoch


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


def worker_tabular_scale(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of loading + ``setup("fit")`` of one table (after a warm-up), then the tracked training rate."""
    memory = warmed_up(Path(spec["path"]), write_table_file, tabular_datamodule)
    dm = tabular_datamodule(Path(spec["path"]))
    dm.setup("fit")
    memory["peak"] = memory_mark()
    count = len(dm.splits["train"]["y"])
    tmp = Path(spec["tmp"])
    trainer(1, False, tmp, [], batches=WARMUP_BATCHES).fit(tabular_system(dm), datamodule=dm)
    epochs = scale_epochs(count, spec["repeats"], spec["min_rows"])
    timer = fit_timed(tabular_system(dm), dm, epochs, make_logger(tmp, f"scale-{count}"), tmp)
    return {"memory": memory, "train_rows": count, "rows_per_s": [count / s for s in timer.body]}
