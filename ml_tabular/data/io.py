"""Reading and writing tables (CSV or Parquet), with user-facing errors for bad files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ml_tabular.errors import DataError

SUFFIXES = (".csv", ".parquet", ".pq")


def _check_suffix(path: Path, key: str) -> None:
    if path.suffix.lower() not in SUFFIXES:
        raise DataError(
            f"{key}: '{path}' has suffix '{path.suffix}'; ml_tabular reads and writes .csv and .parquet files. "
            "Convert the file or point the key at a .csv/.parquet file."
        )


def read_table(path: str | Path, key: str = "data.init_args.path") -> pd.DataFrame:
    """Read a CSV or Parquet file into a DataFrame (pyarrow engine); ``key`` names the config key in errors."""
    path = Path(path)
    if not path.is_file():
        raise DataError(
            f"{key}: file '{path}' does not exist (working directory: {Path.cwd()}). "
            "Fix the path in your config or pass --" + key + " PATH."
        )
    _check_suffix(path, key)
    try:
        frame = pd.read_csv(path, engine="pyarrow") if path.suffix.lower() == ".csv" else pd.read_parquet(path)
    except (ValueError, OSError) as err:  # pyarrow raises ArrowInvalid (a ValueError) on malformed files
        raise DataError(f"{key}: could not read '{path}': {err}. Check that it is a valid table.") from err
    if frame.empty:
        raise DataError(f"{key}: '{path}' has no rows. Point the key at a table with data.")
    return frame


def write_table(frame: pd.DataFrame, path: str | Path, key: str = "--output") -> Path:
    """Write ``frame`` as CSV or Parquet, chosen by the suffix of ``path``; parent folders are created."""
    path = Path(path)
    _check_suffix(path, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def require_columns(frame: pd.DataFrame, columns: list[str], key: str, path: str | Path) -> None:
    """Raise a :class:`DataError` naming every column of ``columns`` that ``frame`` lacks."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{key}: column(s) {missing} not found in '{path}'. Available columns: {list(frame.columns)}. "
            f"Fix {key} in your config."
        )
