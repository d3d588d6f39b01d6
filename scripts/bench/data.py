"""Generated benchmark data, written as Parquet in a child process so it never counts in this one's memory."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

N_FEATURES = 32
WRITE_CHUNK = 1_000_000  # rows generated and written at a time, so writing 10M rows stays small


def write_table_file(path: Path, rows: int, seed: int = 0, row_group_rows: int = WRITE_CHUNK) -> None:
    """``rows`` rows of 32 float32 features ``f00..f31`` and a binary int target ``y``, as Parquet, in row groups of
    ``row_group_rows`` rows."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=N_FEATURES).astype(np.float32)
    schema = pa.schema([*(pa.field(f"f{i:02d}", pa.float32()) for i in range(N_FEATURES)), pa.field("y", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for begin in range(0, rows, WRITE_CHUNK):
            n = min(WRITE_CHUNK, rows - begin)
            x = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
            y = (x @ weights + rng.normal(size=n).astype(np.float32) > 0).astype(np.int64)
            writer.write_table(pa.Table.from_arrays([*x.T, y], schema=schema), row_group_size=row_group_rows)


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
