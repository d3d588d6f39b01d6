"""Tables read and written a chunk of rows at a time, so that memory stays flat in a table's size.

A Parquet file is streamed page by page (:func:`ml_tabular.data.io.read_batches`); a CSV file block by block
with the column types given (a type guessed from the first block could fail on a later one). The output is
written under a temporary name beside its final one and renamed when every chunk is in, so a failed run leaves
no output behind.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ml_tabular.data.io import SUFFIXES, read_batches, table_columns
from ml_tabular.errors import DataError

CSV_BLOCK_BYTES = 1 << 20  # Arrow's default block: a CSV is parsed this much at a time
# Arrow names the column by its position in the file, and the value it could not read
_CSV_CONVERSION = re.compile(r"CSV column #(\d+): (?:Row #\d+: )?CSV conversion error to (\w+): invalid value '(.*)'")


def check_suffix(path: str | Path, flag: str) -> Path:
    """``path``, refused with one line unless it ends in .csv or .parquet."""
    path = Path(path)
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(f"{flag}: '{path}' has suffix '{path.suffix}'; use a .csv or .parquet file.")
    return path


def input_header(path: str | Path, flag: str) -> list[str]:
    """Column names of an existing CSV or Parquet file, from its header or schema alone."""
    path = check_suffix(path, flag)
    if not path.is_file():
        raise DataError(f"{flag}: file '{path}' does not exist (working directory: {Path.cwd()}).")
    return table_columns(path, flag)


def read_chunks(
    path: str | Path, columns: list[str], csv_types: dict[str, pa.DataType], chunk_rows: int | None, flag: str
) -> tuple[int | None, Iterator[pa.Table]]:
    """Row count (``None`` for a CSV: unknown until read) and tables of ``chunk_rows`` rows of ``columns``
    (the last one shorter; ``None``: the whole file in one table). ``csv_types`` types a CSV's columns; a
    Parquet file keeps its own. An empty file raises a :class:`DataError`, as does a CSV value that is not of
    its column's type."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        batches = _csv_batches(path, columns, csv_types, flag)
        n_rows = None
    else:
        n_rows, batches = read_batches(path, flag, columns, chunk_rows or 1 << 16)
    return n_rows, _rechunk(batches, chunk_rows)


def _csv_batches(path: Path, columns: list[str], types: dict[str, pa.DataType], flag: str) -> Iterator[pa.RecordBatch]:
    header = input_header(path, flag)
    options = pacsv.ConvertOptions(include_columns=columns, column_types=types, strings_can_be_null=True)
    try:
        reader = pacsv.open_csv(path, pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES), convert_options=options)
        first = next((batch for batch in reader if batch.num_rows), None)  # read now: an empty file fails early
    except (pa.ArrowException, OSError) as err:
        raise _csv_error(err, path, header, flag) from None
    if first is None:
        raise DataError(f"{flag}: '{path}' has no rows. Score a file with at least one row.")
    return _following(first, reader, path, header, flag)


def _following(
    first: pa.RecordBatch, reader: pacsv.CSVStreamingReader, path: Path, header: list[str], flag: str
) -> Iterator[pa.RecordBatch]:
    yield first
    try:
        yield from reader
    except pa.ArrowException as err:
        raise _csv_error(err, path, header, flag) from None


def _csv_error(err: Exception, path: Path, header: list[str], flag: str) -> DataError:
    match = _CSV_CONVERSION.search(str(err))
    if match and int(match[1]) < len(header):
        column, kind, value = header[int(match[1])], match[2], match[3]
        return DataError(
            f"{flag}: column '{column}' of '{path}' must hold numbers ({kind}) but holds text such as "
            f"{value!r}. Clean the column: the model reads it as numbers."
        )
    return DataError(f"{flag}: could not read '{path}': {err}. Check that it is a valid CSV file.")


def _rechunk(batches: Iterator[pa.RecordBatch], rows: int | None) -> Iterator[pa.Table]:
    """``batches`` regrouped into tables of exactly ``rows`` rows (the last may be shorter; None: one table)."""
    pending: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        pending.append(batch)
        count += batch.num_rows
        while rows is not None and count >= rows:
            table = pa.Table.from_batches(pending)
            yield table.slice(0, rows)
            rest = table.slice(rows)
            pending, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(pending)


class ChunkWriter:
    """Appends DataFrames to a CSV or Parquet file (chosen by the suffix of ``path``), under a temporary name
    beside it that becomes ``path`` when the block ends without an error, and is deleted when it does not.

    Args:
        path: The output file; its folder is created.
        flag: How errors name it (``--output``).
    """

    def __init__(self, path: str | Path, flag: str = "--output") -> None:
        self.path = check_suffix(path, flag)
        self.partial = self.path.with_name(f".{self.path.name}.partial-{os.getpid()}")
        self.rows = 0
        self._csv: IO[str] | None = None
        self._parquet: pq.ParquetWriter | None = None

    def __enter__(self) -> ChunkWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self

    def write(self, frame: pd.DataFrame) -> None:
        """Append ``frame`` (later chunks take the first one's column types)."""
        if self.path.suffix.lower() == ".csv":
            if self._csv is None:
                self._csv = open(self.partial, "w", newline="")  # noqa: SIM115 (closed in __exit__)
            frame.to_csv(self._csv, header=self.rows == 0, index=False)
        else:
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.partial, table.schema)
            self._parquet.write_table(table.cast(self._parquet.schema))  # an all-missing chunk has null types
        self.rows += len(frame)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None):
        for handle in (self._csv, self._parquet):
            if handle is not None:
                handle.close()
        if kind is None and self.rows:
            os.replace(self.partial, self.path)
        else:
            self.partial.unlink(missing_ok=True)
