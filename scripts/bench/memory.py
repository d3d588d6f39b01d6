"""Peak memory of the time-series DataModule on a long series, against the series' own bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.context import Context
from bench.data import in_subprocess, write_series_file
from bench.results import Measurement, Results, Target
from bench.systems import series_datamodule
from bench.workers import MEMORY_DEFINITION, growth, memory_mark, run_worker, warmed_up

SERIES_BYTES_PER_POINT = 16  # what the DataModule reads: an int64 timestamp and a float64 value


def series_memory(ctx: Context) -> Results:
    path = ctx.tmp / "long_series.parquet"
    in_subprocess(write_series_file, path, ctx.memory_points)
    series_bytes = ctx.memory_points * SERIES_BYTES_PER_POINT
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
                {"marks": marks, "vs_values_only": [g / (ctx.memory_points * 8) for g in grown]},
            )
        ],
        targets=[
            Target(
                "series_memory_vs_series_bytes",
                [g / series_bytes for g in grown],
                "<=",
                2.0,
                f"{MEMORY_DEFINITION}; data bytes = n_points * 16 (the series as stored: an int64 timestamp and "
                "a float64 value per point)",
            )
        ],
    )


def worker_series_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of building a ``TimeSeriesDataModule`` and calling ``setup("fit")``, after a warm-up."""
    marks = warmed_up(Path(spec["path"]), write_series_file, series_datamodule)
    series_datamodule(Path(spec["path"])).setup("fit")
    return {**marks, "peak": memory_mark()}
