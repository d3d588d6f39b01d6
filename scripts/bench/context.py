"""The sizes and the temporary folder every suite shares."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.data import in_subprocess, write_table_file


@dataclass
class Context:
    """Sizes and places shared by every suite."""

    tmp: Path
    rows: int
    epochs: int
    repeats: int
    series_points: int
    memory_points: int
    scale: list[int]
    scale_min_rows: int
    threads: int
    quick: bool

    def table(self) -> Path:
        """The N-row training table (written on first use)."""
        path = self.tmp / "table.parquet"
        if not path.exists():
            in_subprocess(write_table_file, path, self.rows)
        return path
