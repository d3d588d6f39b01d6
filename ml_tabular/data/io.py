"""Reading and writing tables (CSV or Parquet), with user-facing errors for bad files.

Tables are read with pyarrow. :class:`TableFile` hands a file out a column at a time (a Parquet
column is read from disk only when asked for), so preprocessing never holds the raw table and its
output at once; ``read_table`` converts column by column (``split_blocks``, ``self_destruct``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ml_tabular.errors import DataError

SUFFIXES = (".csv", ".parquet", ".pq")
INPUT_ROWS = "the input rows"  # how errors name rows given in memory (an MLflow model's input), not in a file
TableSource = str | Path | pd.DataFrame  # a file, or rows already in memory
TABLE_HEAD_ROWS = 100  # first rows kept as read, describing a table (schema, example)
_NULLABLE_INTEGERS = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
    pa.uint8(): pd.UInt8Dtype(),
    pa.uint16(): pd.UInt16Dtype(),
    pa.uint32(): pd.UInt32Dtype(),
    pa.uint64(): pd.UInt64Dtype(),
}


def _check_suffix(path: Path, key: str) -> None:
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(
            f"{key}: '{path}' has suffix '{path.suffix}'; ml_tabular reads and writes .csv and .parquet files. "
            "Convert the file or point the key at a .csv/.parquet file."
        )


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


@contextmanager
def _reading(path: str | Path, key: str) -> Iterator[None]:
    """Turn a failed read of ``path`` into a :class:`DataError`."""
    try:
        yield
    except (ValueError, TypeError, OSError, pa.ArrowException) as err:
        raise DataError(f"{key}: could not read '{path}': {err}. Check that it is a valid table.") from err


def _check_rows(num_rows: int, path: str | Path, key: str) -> None:
    if num_rows == 0:
        fix = "Send at least one row." if path == INPUT_ROWS else "Point the key at a table with data."
        raise DataError(f"{key}: '{path}' has no rows. {fix}")


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks: equal files, equal digests."""
    sha = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def source_name(source: TableSource) -> str:
    """How errors name ``source``: its path, or :data:`INPUT_ROWS`."""
    return INPUT_ROWS if isinstance(source, pd.DataFrame) else str(source)


def table_columns(path: TableSource, key: str = "data.init_args.path") -> list[str]:
    """Column names of a table file, read from its header or schema only (or of rows in memory)."""
    if isinstance(path, pd.DataFrame):
        return [str(c) for c in path.columns]
    path = _existing(path, key)
    with _reading(path, key):
        if _is_csv(path):
            return list(pd.read_csv(path, nrows=0).columns)
        return list(pq.read_schema(path).names)


def _existing(path: str | Path, key: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{key}: file '{path}' does not exist (working directory: {Path.cwd()}). "
            f"Fix the path in your config or pass --{key} PATH."
        )
    _check_suffix(path, key)
    return path


def read_arrow(path: str | Path, key: str = "data.init_args.path", columns: list[str] | None = None) -> pa.Table:
    """Read a CSV or Parquet file as an Arrow table (only ``columns`` if given), with clear errors."""
    path = _existing(path, key)
    if columns is not None:
        require_columns(table_columns(path, key), columns, key, path)
    with _reading(path, key):
        if _is_csv(path):
            convert = pacsv.ConvertOptions(include_columns=columns, strings_can_be_null=True)
            table = pacsv.read_csv(path, convert_options=convert)
        else:
            table = pq.read_table(path, columns=columns, pre_buffer=False)  # pre-buffering doubles peak memory
    _check_rows(table.num_rows, path, key)
    return table


def read_table(path: str | Path, key: str = "data.init_args.path", columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file into pandas (only ``columns`` if given); ``key`` names the config key in errors."""
    table = read_arrow(path, key, columns)
    return table.to_pandas(split_blocks=True, self_destruct=True)


def read_batches(
    path: TableSource, key: str, columns: list[str], rows_per_batch: int
) -> tuple[int, Iterator[pa.RecordBatch]]:
    """Row count and record batches of ``columns``: a Parquet file is streamed page by page, a CSV is read
    whole and each batch released once the next is asked for, so a reader filling arrays holds one copy.
    Rows in memory (a DataFrame) are converted to Arrow once."""
    if isinstance(path, pd.DataFrame):
        with _reading(INPUT_ROWS, key):
            table = pa.Table.from_pandas(path[columns], preserve_index=False)
        _check_rows(table.num_rows, INPUT_ROWS, key)
        return table.num_rows, iter(table.to_batches(rows_per_batch))
    path = _existing(path, key)
    if _is_csv(path):
        batches = read_arrow(path, key, columns).to_batches(rows_per_batch)[::-1]
        return sum(batch.num_rows for batch in batches), (batches.pop() for _ in range(len(batches)))
    with _reading(path, key):
        n_rows = pq.read_metadata(path).num_rows
    _check_rows(n_rows, path, key)
    return n_rows, _parquet_batches(path, key, columns, rows_per_batch)


def _parquet_batches(path: Path, key: str, columns: list[str], rows_per_batch: int) -> Iterator[pa.RecordBatch]:
    with _reading(path, key), pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 18) as parquet:
        yield from parquet.iter_batches(rows_per_batch, columns=columns, use_threads=False)


def _parquet_head(parquet: pq.ParquetFile, n_rows: int) -> pa.Table:
    """The first ``n_rows`` rows, read a column at a time (all columns at once cost a row group of memory)."""
    schema = parquet.schema_arrow
    heads = [next(parquet.iter_batches(n_rows, columns=[c], use_threads=False)).column(0) for c in schema.names]
    return pa.Table.from_arrays(heads, schema=schema)


class TableFile:
    """A CSV or Parquet file handed out one column at a time, as a pandas ``Series`` (``file[column]``).

    A Parquet column is read from disk each time it is asked for, so only the columns in use are in
    memory; a CSV file is parsed once and kept as Arrow. The index columns pandas writes into a
    Parquet file are not among ``columns`` (``read_table`` turns them into the index).
    """

    def __init__(self, path: str | Path, key: str = "data.init_args.path") -> None:
        self.path, self.key = _existing(path, key), key
        self._csv: pa.Table | None = None
        self._parquet: pq.ParquetFile | None = None
        if _is_csv(self.path):
            self._csv = read_arrow(self.path, key)
            self.schema = self._csv.schema
        else:
            with _reading(self.path, key):
                self._parquet = pq.ParquetFile(self.path, pre_buffer=False)
            self.schema = self._parquet.schema_arrow
            _check_rows(len(self), self.path, key)
        index = (self.schema.pandas_metadata or {}).get("index_columns", [])
        self.columns = [name for name in self.schema.names if name not in index]

    def __len__(self) -> int:
        return self._csv.num_rows if self._csv is not None else self._parquet.metadata.num_rows

    def __getitem__(self, column: str) -> pd.Series:
        values = self.column(column)
        # integers with missing values as pandas' nullable integers: float64 would merge ids above 2**53
        return values.to_pandas(types_mapper=_NULLABLE_INTEGERS.get if values.null_count else None).rename(column)

    def column(self, column: str) -> pa.ChunkedArray:
        """``column`` as Arrow."""
        if self._csv is not None:
            return self._csv.column(column)
        with _reading(self.path, self.key):
            return self._parquet.read([column], use_threads=False).column(0)

    def head(self, n_rows: int) -> pd.DataFrame:
        """The first ``n_rows`` rows as pandas."""
        if self._csv is not None:
            return self._csv.slice(0, n_rows).to_pandas()
        with _reading(self.path, self.key):
            return _parquet_head(self._parquet, n_rows).to_pandas()

    def is_numeric(self, column: str) -> bool:
        """Whether pandas reads ``column`` as numbers (booleans with missing values it reads as objects)."""
        kind = self.schema.field(column).type
        if pa.types.is_boolean(kind):
            return self.column(column).null_count == 0
        return pa.types.is_integer(kind) or pa.types.is_floating(kind)


TableLike = pd.DataFrame | TableFile


def series_numbers(series: pd.Series, column: str, path: str | Path) -> np.ndarray:
    """``series`` (``column`` of ``path``) as float64; text that is not a number raises a :class:`DataError`."""
    if pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    values = pd.to_numeric(series, errors="coerce")
    bad = values.isna() & series.notna()
    if bad.any():
        examples = series[bad].astype(str).unique()[:3].tolist()
        if path == INPUT_ROWS:
            raise DataError(f"column '{column}' of {path} must hold numbers; it holds text such as {examples}.")
        raise DataError(
            f"column '{column}' in '{path}' is numeric in the config but holds text such as {examples}. "
            "List it in data.init_args.categorical_columns, drop it with data.init_args.drop_columns, "
            "or clean the file."
        )
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _arrow_values(values: pa.ChunkedArray, column: str, path: str | Path) -> np.ndarray:
    """Arrow ``values`` of ``column`` as float64 (nulls -> NaN); text raises a :class:`DataError`."""
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_boolean(values.type):
        # unsafe: an integer above 2**53 (an id, a time in ns) is rounded, as float64 does, instead of raising
        return pc.cast(values, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    return series_numbers(values.to_pandas(), column, path)


def arrow_numbers(table: pa.Table, column: str, path: str | Path) -> np.ndarray:
    """A numeric Arrow column as float64 (nulls -> NaN), without a pandas copy; text raises a DataError."""
    return _arrow_values(table.column(column), column, path)


def numeric_values(frame: TableLike, column: str, path: str | Path) -> np.ndarray:
    """``frame[column]`` as float64 (missing -> NaN); text that is not a number raises a :class:`DataError`."""
    if isinstance(frame, TableFile):
        return _arrow_values(frame.column(column), column, path)
    return series_numbers(frame[column], column, path)


def floats_for_integers(frame: pd.DataFrame, keep: tuple[str, ...] = ()) -> pd.DataFrame:
    """``frame`` with its integer columns (but ``keep``) as float64, so a signature inferred from it allows
    missing values there (MLflow requires every value of an integer column)."""
    integers = [c for c in frame.columns if c not in keep and pd.api.types.is_integer_dtype(frame[c].dtype)]
    return frame.astype({c: "float64" for c in integers})


def write_table(frame: pd.DataFrame, path: str | Path, key: str = "--output") -> Path:
    """Write ``frame`` as CSV or Parquet, chosen by the suffix of ``path``; parent folders are created."""
    path = Path(path)
    _check_suffix(path, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    if _is_csv(path):
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def require_columns(available: pd.DataFrame | list[str], columns: list[str], key: str, path: str | Path) -> None:
    """Raise a :class:`DataError` naming every column of ``columns`` missing from ``available``."""
    names = list(available.columns) if isinstance(available, pd.DataFrame) else list(available)
    missing = [c for c in columns if c not in names]
    if missing:
        fix = f"Fix {key} in your config." if path != INPUT_ROWS else "Send every column the model was trained on."
        raise DataError(f"{key}: column(s) {missing} not found in '{path}'. Available columns: {names}. {fix}")
