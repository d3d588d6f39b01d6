"""``ml_tabular score --engine spark``: the same MLflow model run by Spark (``mlflow.pyfunc.spark_udf``), for
tables beyond one machine. Spark reads the input and writes the output as a folder of part files."""

from __future__ import annotations

import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ml_tabular.data.chunks import check_suffix
from ml_tabular.errors import ConfigError, DataError
from ml_tabular.mlops.scoring import FLOAT_TYPES, ModelSpec, Scored, check_columns, read_spec
from ml_tabular.mlops.tracking import no_download_bars

LOOPBACK = "127.0.0.1"
RESULT = "_ml_tabular_scores"  # the UDF's struct column, unpacked into the output columns
SPARK_TYPES = {"double": "double", "float": "float", "long": "bigint", "integer": "int", "string": "string"}
SPARK_TYPES |= {"boolean": "boolean"}
_MODEL_ERROR = re.compile(r"MlflowException: (.*)")  # a model's refusal, as Spark reports it from a Python worker


def score_with_spark(
    uri: str, tracking_uri: str, source: str, output: str, id_column: str | None, chunk_rows: int, master: str
) -> Scored:
    """Score ``source`` (CSV, or Parquet file or folder) with the model at ``uri`` on the Spark ``master`` into the
    folder ``output`` (Parquet, or CSV with a header in every part), ``id_column`` first. A local ``output`` is
    written under a temporary name and renamed at the end; it must not exist yet."""
    spec = read_spec(uri, tracking_uri)  # before Spark starts: an unknown model costs no start-up
    if spec.is_forecaster:
        raise ConfigError(
            "--engine spark: the model is a forecaster, which needs whole series, not rows spread over Spark "
            "partitions; score it with the local engine (drop --engine spark), which reads its file whole."
        )
    out = check_suffix(output, "--output")
    local = "://" not in output
    if local and out.exists():
        raise ConfigError(f"--output '{output}' exists: Spark writes a folder there. Remove it or choose another.")
    if "://" not in source and not Path(source).exists():
        raise DataError(f"--input: '{source}' does not exist (working directory: {Path.cwd()}).")
    start = time.perf_counter()
    with spark_session(master, chunk_rows) as spark:
        frame = _read(spark, source)
        check_columns(spec, frame.columns, source, id_column)
        scored = _scored(spark, frame, spec, source, id_column)
        target = str(out.with_name(f".{out.name}.partial-{os.getpid()}")) if local else output
        try:
            with _model_errors(source):
                _write(scored, target, out.suffix.lower())
            if local:
                os.replace(target, out)
        except BaseException:
            if local:
                shutil.rmtree(target, ignore_errors=True)
            raise
        rows = _read(spark, output).count()
    return Scored(rows, rows, time.perf_counter() - start)


@contextmanager
def spark_session(master: str, chunk_rows: int) -> Iterator[Any]:
    """A Spark session on ``master`` whose driver listens on the loopback address only, with no web UI; stopped
    at the end of the block."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ConfigError("--engine spark needs PySpark (and Java 17+): pip install 'ml_tabular[spark]'.") from None
    # Executors run the model in this Python, with this environment's packages (spark_udf env_manager="local").
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)  # else Spark warns that the host name resolves to loopback
    # PySpark 4 has not yet declared support for pandas 3; the tests hold its answers to ml_tabular predict's.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    spark = (
        SparkSession.builder.master(master)
        .appName("ml_tabular score")
        .config("spark.driver.host", LOOPBACK)
        .config("spark.driver.bindAddress", LOOPBACK)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.log.level", "ERROR")
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(chunk_rows))  # rows per model call
        .getOrCreate()
    )
    try:
        yield spark
    finally:
        spark.stop()


def _read(spark: Any, path: str) -> Any:
    if path.lower().endswith(".csv"):
        return spark.read.csv(path, header=True, inferSchema=True)
    return spark.read.parquet(path)


def _scored(spark: Any, frame: Any, spec: ModelSpec, source: str, id_column: str | None) -> Any:
    """``frame``'s ``id_column`` and the model's output columns (the UDF returns them as one struct)."""
    import mlflow
    from pyspark.sql import functions as F

    kinds = dict(frame.dtypes)
    inputs = []
    for name, kind in spec.inputs.items():
        if kind in FLOAT_TYPES and kinds[name] == "string":
            raise DataError(
                f"--input: column '{name}' of '{source}' must hold numbers but Spark read it as text. "
                "Clean the column: the model reads it as numbers."
            )
        # MLflow refuses integers for a float column, and doubles for a float32 one
        inputs.append(F.col(name).cast(SPARK_TYPES[kind]).alias(name) if kind in FLOAT_TYPES else F.col(name))
    result_type = ", ".join(f"`{name}` {SPARK_TYPES.get(kind, 'string')}" for name, kind in spec.outputs.items())
    with no_download_bars():
        udf = mlflow.pyfunc.spark_udf(spark, spec.uri, result_type=result_type, env_manager="local")
    ids = [id_column] if id_column else []
    return frame.select(*ids, udf(F.struct(*inputs)).alias(RESULT)).select(*ids, f"{RESULT}.*")


def _write(scored: Any, target: str, suffix: str) -> None:
    if suffix == ".csv":
        scored.write.csv(target, header=True, mode="errorifexists")
    else:
        scored.write.parquet(target, mode="errorifexists")


@contextmanager
def _model_errors(source: str) -> Iterator[None]:
    """Rows the model refuses in a Spark task, as one :class:`DataError` (Spark reports the worker's traceback)."""
    try:
        yield
    except Exception as err:
        match = _MODEL_ERROR.search(str(err))
        if match is None:
            raise
        raise DataError(f"--input: '{source}': {match[1].strip()}") from None
