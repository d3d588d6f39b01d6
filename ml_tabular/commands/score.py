"""``ml_tabular score``: batch predictions of any MLflow model on a CSV or Parquet file, in chunks or with Spark."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from jsonargparse import ArgumentParser

from ml_tabular.config import get_config
from ml_tabular.errors import ConfigError
from ml_tabular.mlops.tracking import require_mlflow, resolve_tracking_uri

log = logging.getLogger(__name__)

# Rows per chunk: per-chunk costs vanish from ~10k rows on; 100k rows ran slower (the preprocessed chunk and the
# network's activations leave the cache) and, after glibc's malloc had raised its mmap threshold, used ~100 MB more.
DEFAULT_CHUNK_ROWS = 25_000
DESCRIPTION = """\
Score a CSV or Parquet file with an MLflow model and write the predictions (CSV or Parquet): the table
`ml_tabular predict` writes (`prediction`, plus `prob_<class>` for a classifier; for a forecaster, the
`horizon` steps after the end of each series). The file is read and written a chunk of rows at a time,
so memory stays flat in its size (a forecaster's file is scored whole: chunks would cut its series).
The model is looked up in the tracking store `fit` uses (--tracking-uri, MLFLOW_TRACKING_URI,
ML_TABULAR_MLFLOW__TRACKING_URI, configs/app.yaml)."""


def score(
    model: str,
    source: str,
    output: str,
    id_column: str | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    engine: Literal["local", "spark"] = "local",
    spark_master: str = "local[2]",
    tracking_uri: str | None = None,
    env: str | None = None,
) -> None:
    """Score ``source`` with the model at ``model`` into ``output`` (see ``DESCRIPTION`` and the flags' help)."""
    if chunk_rows < 1:
        raise ConfigError(f"--chunk-rows must be at least 1, got {chunk_rows}.")
    if Path(output).resolve() == Path(source).resolve():
        raise ConfigError(f"--output '{output}' is the input file: write the predictions to another file.")
    require_mlflow()
    store = resolve_tracking_uri(tracking_uri or get_config(env).mlflow.tracking_uri)
    if engine == "spark":
        from ml_tabular.mlops.spark_scoring import score_with_spark

        scored = score_with_spark(model, store, source, output, id_column, chunk_rows, spark_master)
    else:
        from ml_tabular.data.chunks import check_suffix
        from ml_tabular.mlops.scoring import load_model, score_file

        check_suffix(output, "--output")  # before the model is loaded: a typo should not cost seconds
        loaded, spec = load_model(model, store)
        scored = score_file(loaded, spec, source, output, id_column, chunk_rows)
    log.info(scored.report(output))


def parser() -> ArgumentParser:
    """The command line of ``ml_tabular score``."""
    parser = ArgumentParser(prog="ml_tabular score", description=DESCRIPTION)
    parser.add_argument(
        "--model", required=True, help="Model URI: models:/NAME@ALIAS, models:/NAME/VERSION, models:/m-<id>, "
        "runs:/<run_id>/model, or a local model folder."
    )  # fmt: skip
    parser.add_argument("--input", required=True, help="Rows to score: a .csv or .parquet file (Spark: also a folder).")
    parser.add_argument("--output", required=True, help="Predictions file (.csv or .parquet; Spark: a folder).")
    parser.add_argument(
        "--id-column", type=str | None, default=None, help="Input column written first beside the predictions "
        "(not for a forecaster, whose output has a row per series and future step)."
    )  # fmt: skip
    parser.add_argument(
        "--chunk-rows", type=int, default=DEFAULT_CHUNK_ROWS, help="Rows read, scored and written at a time "
        "(Spark: rows per Arrow batch sent to the model)."
    )  # fmt: skip
    parser.add_argument(
        "--engine", type=Literal["local", "spark"], default="local", help="local: this process; spark: "
        "mlflow.pyfunc.spark_udf on a Spark cluster (pip install 'ml_tabular[spark]')."
    )  # fmt: skip
    parser.add_argument("--spark-master", default="local[2]", help="Spark master URL for --engine spark.")
    parser.add_argument(
        "--tracking-uri", type=str | None, default=None, help="Tracking store holding the model, instead of the "
        "configured one (a URI with a password belongs in MLFLOW_TRACKING_URI: command lines are public)."
    )  # fmt: skip
    parser.add_argument("--env", type=str | None, default=None, help="Profile of configs/app.yaml (default: dev).")
    return parser


def main(argv: list[str]) -> None:
    args = parser().parse_args(argv)
    score(
        args.model,
        args.input,
        args.output,
        id_column=args.id_column,
        chunk_rows=args.chunk_rows,
        engine=args.engine,
        spark_master=args.spark_master,
        tracking_uri=args.tracking_uri,
        env=args.env,
    )
