"""Reading and writing tables (CSV or Parquet), with user-facing errors for bad files.

Tables are read with pyarrow and handed to pandas column by column (``split_blocks``,
``self_destruct``), so loading holds about one copy of the data, not two or three.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ml_tabular.errors import DataError

SUFFIXES = (".csv", ".parquet", ".pq")


def _check_suffix(path: Path, key: str) -> None:
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(
            f"{key}: '{path}' has suffix '{path.suffix}'; ml_tabular reads and writes .csv and .parquet files. "
            "Convert the file or point the key at a .csv/.parquet file."
        )


def _is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def table_columns(path: str | Path, key: str = "data.init_args.path") -> list[str]:
    """Column names of a table file, read from its header or schema only."""
    path = _existing(path, key)
    try:
        if _is_csv(path):
            return list(pd.read_csv(path, nrows=0).columns)
        return list(pq.read_schema(path).names)
    except (ValueError, OSError, pa.ArrowException) as err:
        raise DataError(f"{key}: could not read '{path}': {err}. Check that it is a valid table.") from err


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
    try:
        if _is_csv(path):
            convert = pacsv.ConvertOptions(include_columns=columns, strings_can_be_null=True)
            table = pacsv.read_csv(path, convert_options=convert)
        else:
            table = pq.read_table(path, columns=columns, pre_buffer=False)  # pre-buffering doubles peak memory
    except (ValueError, OSError, pa.ArrowException) as err:
        raise DataError(f"{key}: could not read '{path}': {err}. Check that it is a valid table.") from err
    if table.num_rows == 0:
        raise DataError(f"{key}: '{path}' has no rows. Point the key at a table with data.")
    return table


def read_table(path: str | Path, key: str = "data.init_args.path", columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV or Parquet file into pandas (only ``columns`` if given); ``key`` names the config key in errors."""
    table = read_arrow(path, key, columns)
    return table.to_pandas(split_blocks=True, self_destruct=True)


def arrow_numbers(table: pa.Table, column: str, path: str | Path) -> np.ndarray:
    """A numeric Arrow column as float64 (nulls -> NaN), without a pandas copy; text raises a DataError."""
    values = table.column(column)
    if pa.types.is_integer(values.type) or pa.types.is_floating(values.type) or pa.types.is_boolean(values.type):
        return pc.cast(values, pa.float64()).to_numpy(zero_copy_only=False)
    from ml_tabular.data.preprocessing import numeric_values  # the pandas path words the error for text

    return numeric_values(values.to_pandas().to_frame(column), column, str(path))


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
        raise DataError(
            f"{key}: column(s) {missing} not found in '{path}'. Available columns: {names}. Fix {key} in your config."
        )
