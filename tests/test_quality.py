"""The quality benchmark runs end to end at ``--quick`` sizes and reports a finite score in every cell it promises.

No score is asserted: at ``--quick`` sizes (a few hundred rows, one epoch) they mean nothing.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "quality.py"
TABLES = ("diamonds", "ames", "hotel_rates", "credit_data", "hpc_jobs", "chile_vote")
SERIES = ("elecdemand", "taylor", "nyc_weather")
HEADER = [
    "dataset",
    "task",
    "rows",
    "metric",
    "linear baseline",
    "gradient boosting / seasonal naive",
    "ridge AR",
    "ml_tabular",
    "training time s",
    "epochs",
]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, str]], dict]:
    tmp_path = tmp_path_factory.mktemp("quality")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--output", "out/q.md", "--json", "q.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    table = (tmp_path / "out" / "q.md").read_text()
    assert "| dataset |" in done.stdout  # the table was printed too
    lines = [line for line in table.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == HEADER
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")), strict=True)) for line in lines[2:]]
    return tmp_path, rows, json.loads((tmp_path / "q.json").read_text())


def number(cell: str) -> float:
    return float(cell.replace("**", "").replace(",", ""))


@pytest.mark.slow
def test_every_dataset_has_a_row(quick_run: tuple[Path, list[dict[str, str]], dict]) -> None:
    tmp_path, rows, _ = quick_run
    assert [row["dataset"] for row in rows] == [*TABLES, *SERIES]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "q.json"]  # fits and data stay in a temp folder


@pytest.mark.slow
def test_every_cell_is_a_finite_number(quick_run: tuple[Path, list[dict[str, str]], dict]) -> None:
    _, rows, _ = quick_run
    for row in rows:
        series = row["dataset"] in SERIES
        assert row["metric"] == ("MASE ↓" if series else "R² ↑" if row["task"] == "regression" else "accuracy ↑")
        assert row["linear baseline" if series else "ridge AR"] == "—"
        scores = ["gradient boosting / seasonal naive", "ml_tabular", "ridge AR" if series else "linear baseline"]
        for key in [*scores, "rows", "training time s", "epochs"]:
            assert math.isfinite(number(row[key])), (row["dataset"], key)
        assert number(row["epochs"]) == 1  # --quick trains one epoch
        assert sum("**" in row[key] for key in scores) == 1  # the best score is marked


@pytest.mark.slow
def test_json_holds_the_same_scores(quick_run: tuple[Path, list[dict[str, str]], dict]) -> None:
    _, rows, payload = quick_run
    assert payload["quick"] is True
    for row, record in zip(rows, payload["rows"], strict=True):
        assert record["dataset"] == row["dataset"]
        assert number(row["ml_tabular"]) == pytest.approx(record["scores"]["ml_tabular"], abs=5e-4)
