"""Batch scoring with an MLflow model: any model URI, a table read in chunks, predictions written as they come."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ml_tabular.data.chunks import ChunkWriter, input_header, read_chunks
from ml_tabular.errors import ConfigError, DataError, ModelError, TrackingError
from ml_tabular.mlops.secrets import redact_value
from ml_tabular.mlops.tracking import no_download_bars

log = logging.getLogger(__name__)

FORECAST_OUTPUTS = frozenset({"timestamp", "step"})  # a forecaster's output: one row per series and future step
FLOAT_TYPES = {"double": pa.float64(), "float": pa.float32()}  # MLflow's float columns as Arrow types
PROGRESS_DELAY_SECONDS = 2.0  # the bar shows only on inputs that take longer than this
_SCHEMA_ERROR = re.compile(r"Failed to enforce schema of data .* Error: (.*)", re.S)  # MLflow quotes the data


@dataclass(frozen=True)
class ModelSpec:
    """The model's columns, from its signature: ``inputs`` and ``outputs`` map names to MLflow type names."""

    uri: str
    inputs: dict[str, str]
    outputs: dict[str, str]

    @property
    def is_forecaster(self) -> bool:
        """Whether it writes rows per series and future step (it must see whole series, not row chunks)."""
        return set(self.outputs) >= FORECAST_OUTPUTS

    def csv_types(self) -> dict[str, pa.DataType]:
        """Arrow types to parse a CSV's model columns with: floats as the model's floats, text as text."""
        types = {**FLOAT_TYPES, "string": pa.string()}
        return {name: types[kind] for name, kind in self.inputs.items() if kind in types}


STORE_SCHEMES = ("models:/", "runs:/")  # model URIs looked up in the tracking store


@contextmanager
def model_at(uri: str, tracking_uri: str, store_flag: str = "--tracking-uri") -> Iterator[None]:
    """Look the model at ``uri`` up in the store at ``tracking_uri`` inside the block (MLflow's current tracking URI,
    no download bars); MLflow's failure to find it becomes one :class:`ModelError` naming it and the command's
    ``store_flag``. A registry or run URI is not looked up in a SQLite store that does not exist (MLflow would create
    an empty one in the user's folder and then report the model missing)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    store = Path(tracking_uri.removeprefix("sqlite:///"))
    if uri.startswith(STORE_SCHEMES) and tracking_uri.startswith("sqlite:///") and not store.is_file():
        raise TrackingError(
            f"no MLflow tracking store at {store} to look {uri} up in. Run this command in the folder you trained "
            f"in (it holds mlruns/mlflow.db), or pass the store that holds the model ({store_flag} or "
            "MLFLOW_TRACKING_URI)."
        )
    mlflow.set_tracking_uri(tracking_uri)
    try:
        with no_download_bars():
            yield
    except MlflowException as err:
        raise ModelError(
            f"--model: no MLflow model at '{uri}' in the tracking store {redact_value(tracking_uri)}: "
            f"{one_line(err.message)}. Use models:/NAME@ALIAS, models:/NAME/VERSION, models:/m-<id> or "
            "runs:/<run_id>/model (`fit` prints it; a run trained with mlflow.log_model false has none), and the "
            f"store it is in ({store_flag} or MLFLOW_TRACKING_URI)."
        ) from None


def load_model(uri: str, tracking_uri: str) -> tuple[Any, ModelSpec]:
    """The pyfunc model at ``uri`` (``models:/NAME@ALIAS``, ``models:/m-...``, ``runs:/ID/model``, ...) and its
    columns; sets MLflow's tracking URI."""
    import mlflow

    with model_at(uri, tracking_uri):
        model = mlflow.pyfunc.load_model(uri)
    meta = model.metadata
    return model, model_spec(meta.get_input_schema(), meta.get_output_schema(), uri)


def read_spec(uri: str, tracking_uri: str) -> ModelSpec:
    """The columns of the model at ``uri``, read from its ``MLmodel`` file alone (the model is not loaded)."""
    import mlflow

    with model_at(uri, tracking_uri):
        signature = mlflow.models.get_model_info(uri).signature
    return model_spec(getattr(signature, "inputs", None), getattr(signature, "outputs", None), uri)


def model_spec(inputs: Any, outputs: Any, uri: str) -> ModelSpec:
    """The columns of a signature's ``inputs`` and ``outputs`` schemas; a model without named columns is refused."""
    if inputs is None or outputs is None or not inputs.has_input_names() or not outputs.has_input_names():
        raise ModelError(
            f"--model: the model at '{uri}' has no signature naming its input and output columns, which "
            "ml_tabular score needs; every model ml_tabular fit logs has one."
        )
    return ModelSpec(uri, _types(inputs), _types(outputs))


def _types(schema: Any) -> dict[str, str]:
    return {spec.name: getattr(spec.type, "name", str(spec.type)).lower() for spec in schema.inputs}  # Any: no name


def check_columns(spec: ModelSpec, header: list[str], path: str | Path, id_column: str | None) -> None:
    """Refuse, naming them, input columns the model needs but the file lacks, and a bad ``--id-column``."""
    if id_column is not None and spec.is_forecaster:
        raise ConfigError(
            "--id-column: a forecaster writes one row per series and future step, not one per input row, so "
            "there is no row id to keep (a series id column is in its output already). Drop --id-column."
        )
    missing = [name for name in spec.inputs if name not in header]
    if missing:
        raise DataError(
            f"--input: column(s) {missing} not found in '{path}'; the model reads {list(spec.inputs)}. "
            f"Available columns: {header}. Score a file with every column the model was trained on."
        )
    if id_column is None:
        return
    if id_column not in header:
        raise DataError(f"--id-column: column '{id_column}' not found in '{path}'. Available columns: {header}.")
    if id_column in spec.outputs:
        raise ConfigError(f"--id-column: '{id_column}' is also an output column of the model; rename it first.")


def model_frame(chunk: pa.Table, spec: ModelSpec, path: str | Path) -> pd.DataFrame:
    """The model's columns of ``chunk`` as pandas, a float column as the float type the model declares (MLflow
    refuses integers for a double column, doubles for a float one); text in it is a :class:`DataError` naming the
    column and a value."""
    columns = {}
    for name, kind in spec.inputs.items():
        values = chunk.column(name)
        if kind in FLOAT_TYPES:
            values = _floats(values, FLOAT_TYPES[kind], name, path)
        columns[name] = values
    return pa.table(columns).to_pandas()


def _floats(values: pa.ChunkedArray, target: pa.DataType, column: str, path: str | Path) -> pa.ChunkedArray:
    kind = values.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind):
        return pc.cast(values, target, safe=False)  # rounded as a float rounds (an integer above 2**53, say)
    text = values.to_pandas()
    numbers = pd.to_numeric(text, errors="coerce")
    bad = numbers.isna() & text.notna()
    if bad.any():
        examples = text[bad].astype(str).unique()[:3].tolist()
        raise DataError(
            f"--input: column '{column}' of '{path}' must hold numbers but holds text such as {examples}. "
            "Clean the column: the model reads it as numbers."
        )
    return pa.chunked_array([pa.array(numbers.to_numpy(dtype="float64", na_value=float("nan")))]).cast(target)


def one_line(message: str) -> str:
    """An MLflow error message on one line, without the data it quotes or a final period."""
    match = _SCHEMA_ERROR.search(message)
    return " ".join((match[1] if match else message).split()).rstrip(".")


def predict(model: Any, frame: pd.DataFrame, path: str | Path, first_row: int) -> pd.DataFrame:
    """``model.predict(frame)``; rows the model refuses are a :class:`DataError` naming the file and rows."""
    from mlflow.exceptions import MlflowException

    try:
        return model.predict(frame)
    except MlflowException as err:
        rows = f"rows {first_row + 1}-{first_row + len(frame)}"
        raise DataError(f"--input: '{path}' ({rows}): {one_line(err.message)}.") from None


@dataclass
class Scored:
    """What a scoring run did: rows read and written, and how long it took (seconds)."""

    rows_in: int
    rows_out: int
    seconds: float

    def report(self, output: str | Path) -> str:
        rate = self.rows_in / self.seconds if self.seconds > 0 else float("inf")
        return (
            f"score: {self.rows_in} rows scored in {self.seconds:.1f} s ({rate:,.0f} rows/s); "
            f"{self.rows_out} rows written to {output}"
        )


def score_file(
    model: Any, spec: ModelSpec, source: str | Path, output: str | Path, id_column: str | None, chunk_rows: int
) -> Scored:
    """Score ``source`` (CSV or Parquet) into ``output`` (CSV or Parquet) a chunk of ``chunk_rows`` rows at a
    time, ``id_column`` first beside the predictions; a forecaster's file is scored whole (a chunk of rows
    would cut its series). Nothing is left at ``output`` if anything fails."""
    from tqdm import tqdm

    header = input_header(source, "--input")
    check_columns(spec, header, source, id_column)
    columns = list(dict.fromkeys([*spec.inputs, *([id_column] if id_column else [])]))
    start = time.perf_counter()
    size = None if spec.is_forecaster else chunk_rows
    n_rows, chunks = read_chunks(source, columns, spec.csv_types(), size, "--input")
    rows_in = 0
    bar = tqdm(total=n_rows, unit="rows", unit_scale=True, desc="score", delay=PROGRESS_DELAY_SECONDS, disable=None)
    with bar, ChunkWriter(output) as writer:
        for chunk in chunks:
            predictions = predict(model, model_frame(chunk, spec, source), source, rows_in)
            if id_column:
                predictions.insert(0, id_column, chunk.column(id_column).to_pandas())
            writer.write(predictions)
            rows_in += chunk.num_rows
            bar.update(chunk.num_rows)
    return Scored(rows_in, writer.rows, time.perf_counter() - start)
