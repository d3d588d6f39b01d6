"""``ml_tabular score``: rows/s against a bare forward pass on the same tensors, and peak memory flat in input size.

The model is the benchmark's tabular MLP, fitted by ``ml_tabular fit`` for two batches with its MLflow model
logged (its weights do not change its speed), and scored as a user scores it: ``mlflow.pyfunc.load_model`` on
its ``models:/m-...`` URI, the file read, scored and written in chunks of the default ``--chunk-rows``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bench.context import Context
from bench.data import in_subprocess, write_table_file
from bench.paired import fit_args, run_fit
from bench.predict import bare_forward_seconds
from bench.results import Measurement, Results, Target, ratios
from bench.systems import BATCH_SIZE, TABULAR_HIDDEN
from bench.workers import WARM_UP_ROWS, growth, memory_mark, run_worker
from ml_tabular.commands.score import DEFAULT_CHUNK_ROWS
from ml_tabular.data.io import read_table
from ml_tabular.mlops.scoring import load_model, score_file
from ml_tabular.mlops.tracking import default_tracking_uri

EXPERIMENT = "benchmark_score"
FIT_BATCHES = 2
MEMORY_ROWS = {False: (100_000, 2_000_000), True: (4_000, 8_000)}  # by --quick; 2M rows score in ~35 s here
# Both files in row groups of this many rows: Arrow decodes a Parquet file a row group at a time, so a reader's
# memory follows the row group's size (~170 MB for 1M rows of 33 columns), which is not what is measured here
ROW_GROUP_ROWS = 100_000


def logged_model(ctx: Context) -> str:
    """Fit the benchmark's tabular model on the N-row table for a couple of batches; its MLflow model's URI."""
    from mlflow import MlflowClient

    args = fit_args("tabular", ctx.table(), 1, True, TABULAR_HIDDEN)
    run_fit([*args, f"--trainer.limit_train_batches={FIT_BATCHES}", "--mlflow.log_model=true",
             f"--mlflow.experiment_name={EXPERIMENT}"])  # fmt: skip
    client = MlflowClient(default_tracking_uri())
    experiment = client.get_experiment_by_name(EXPERIMENT).experiment_id
    [run] = client.search_runs([experiment], order_by=["attributes.start_time DESC"], max_results=1)
    return f"models:/{run.outputs.model_outputs[-1].model_id}"


def score_seconds(model: Any, spec: Any, path: Path, output: Path) -> float:
    start = time.perf_counter()
    score_file(model, spec, path, output, None, DEFAULT_CHUNK_ROWS)
    return time.perf_counter() - start


def score_throughput(ctx: Context, uri: str) -> Results:
    """``score_file`` (Parquet in, Parquet out) vs the model's network on the same rows, ready as tensors."""
    model, spec = load_model(uri, default_tracking_uri())
    predictor = model.unwrap_python_model().predictor
    path = ctx.table()
    ready = predictor.data.fitted.transform(read_table(path), str(path), with_target=False)
    count = len(ready["x_num"])
    scored, bare = [], []
    for _ in range(ctx.repeats):
        scored.append(count / score_seconds(model, spec, path, ctx.tmp / "scores.parquet"))
        bare.append(count / bare_forward_seconds(predictor.model, ready["x_num"], ready["x_cat"]))
    note = f"{count} rows, chunks of {DEFAULT_CHUNK_ROWS}, batch {BATCH_SIZE}"
    return Results(
        measurements=[
            Measurement("score_file_path", "rows/s", scored, note + "; Parquet in, Parquet out, pyfunc model"),
            Measurement("score_bare_forward", "rows/s", bare, note),
        ],
        targets=[Target("score_vs_bare", ratios(scored, bare), ">=", 0.5, "score_file_path / score_bare_forward")],
    )


def score_memory(ctx: Context, uri: str) -> Results:
    """Peak memory of scoring a small and a large file, each in a fresh interpreter: flat in the input size.

    The target is on the process's whole peak (what ``top`` shows for ``ml_tabular score``); its growth above a
    warm-up score is kept beside it. With chunks of 100k rows, glibc's malloc (which raises its mmap threshold
    after large frees) let heap fragmentation add ~100 MB to the 2M-row growth in about half of the runs here.
    """
    marks = {}
    for rows in MEMORY_ROWS[ctx.quick]:
        path = ctx.tmp / f"score_{rows}.parquet"
        in_subprocess(write_table_file, path, rows, 0, ROW_GROUP_ROWS)
        spec = {"uri": uri, "tracking_uri": default_tracking_uri(), "path": str(path), "tmp": str(ctx.tmp)}
        try:
            marks[rows] = run_worker("score-memory", spec, ctx)
        finally:
            path.unlink()
    small, large = sorted(marks)
    peak = {rows: mark["peak"]["vmhwm_bytes"] for rows, mark in marks.items()}
    return Results(
        measurements=[
            Measurement(
                f"score_{rows}_peak_memory",
                "MB",
                [peak[rows] / 1e6],
                "one sample; VmHWM of the whole process",
                {"growth_mb": growth(mark) / 1e6, "marks": mark},
            )
            for rows, mark in marks.items()
        ],
        targets=[
            Target(
                f"score_memory_{large}_vs_{small}",
                [peak[large] / peak[small]],
                "<=",
                1.2,
                f"peak RSS (VmHWM) of a fresh process that loads the model and scores {large} rows / that scores "
                f"{small} rows (chunks of {DEFAULT_CHUNK_ROWS}, Parquet row groups of {ROW_GROUP_ROWS} rows); the "
                "growth above a warm-up score of 2,000 rows is in the measurements",
            )
        ],
    )


def scoring(ctx: Context) -> Results:
    uri = logged_model(ctx)
    results = score_throughput(ctx, uri)
    results.extend(score_memory(ctx, uri))
    return results


def worker_score_memory(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak memory of scoring ``spec["path"]``, grown from a mark taken after a warm-up score of 2,000 rows."""
    path, tmp = Path(spec["path"]), Path(spec["tmp"])
    model, model_spec = load_model(spec["uri"], spec["tracking_uri"])
    tiny = path.with_name(f"warm_up_{path.name}")
    write_table_file(tiny, WARM_UP_ROWS)
    imports = memory_mark()
    score_file(model, model_spec, tiny, tmp / "warm_up_scores.parquet", None, DEFAULT_CHUNK_ROWS)
    marks = {"imports": imports, "baseline": memory_mark()}
    score_file(model, model_spec, path, tmp / f"scores_{path.stem}.parquet", None, DEFAULT_CHUNK_ROWS)
    return {**marks, "peak": memory_mark()}
