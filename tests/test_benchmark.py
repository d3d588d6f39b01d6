"""The benchmark script runs end to end at ``--quick`` sizes and writes every number it promises.

No timing is asserted: the numbers depend on the machine. Only the JSON's shape is checked.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
QUICK_SCALE = (4000, 8000)  # the --quick preset's row counts

TRAINING = ("train_tracked", "train_plain_torch", "train_untracked", "whole_epoch_tracked", "whole_epoch_untracked")
MEASUREMENTS = [
    *(f"{label}_{kind}" for label in ("tabular", "series") for kind in TRAINING),
    "tiny_step_plain_torch",
    "tiny_step_lightning",
    "tabular_lightning_vs_plain_batch_2048",
    "series_setup_peak_memory",
    "predict_cli_path",
    "predict_bare_forward",
    "startup_ml_tabular_help",
    "startup_import_lightning",
    "serving_one_row_p50",
    "serving_startup",
    "ddp_1_process_train",
    "ddp_2_processes_train",
    "ddp_2_vs_1_processes",
    "remote_tracking_epoch",
    "remote_tracking_off_epoch",
    "remote_tracking_fixed_cost",
    "server_lost_stall",
    "score_file_path",
    "score_bare_forward",
    "tune_study",
    "tune_trial_fits_inside",
    "tune_trial_fits_alone",
    *(f"score_{rows}_peak_memory" for rows in QUICK_SCALE),  # the score suite's --quick sizes are the same
    *(f"scale_{rows}_{kind}" for rows in QUICK_SCALE for kind in ("train_tracked", "setup_peak_memory")),
]
TARGETS = [
    "tabular_lightning_vs_plain",
    "tabular_tracking_overhead",
    "tabular_tracking_on_vs_off",
    "series_lightning_vs_plain",
    "series_tracking_overhead",
    "series_tracking_on_vs_off",
    "series_memory_vs_series_bytes",
    "predict_cli_vs_bare",
    "startup_help_vs_import",
    "score_vs_bare",
    "remote_tracking_overhead",
    "tune_overhead_per_trial",
    f"score_memory_{QUICK_SCALE[1]}_vs_{QUICK_SCALE[0]}",
    *(f"scale_{rows}_memory_vs_data" for rows in QUICK_SCALE),
    f"scale_{QUICK_SCALE[1]}_time_per_row_vs_{QUICK_SCALE[0]}",
]


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp_path = tmp_path_factory.mktemp("benchmark")
    out = tmp_path / "b.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "ratio/target" in done.stdout  # the table was printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]  # data stays in its own temporary folder
    return json.loads(out.read_text())


@pytest.mark.slow
def test_every_measurement_has_positive_numbers(quick_results: dict) -> None:
    measurements = quick_results["measurements"]
    assert sorted(measurements) == sorted(MEASUREMENTS)
    for name, summary in measurements.items():
        numbers = [summary["min"], summary["median"], summary["max"], *summary["values"]]
        assert all(math.isfinite(v) and v > 0 for v in numbers), name
        assert summary["min"] <= summary["median"] <= summary["max"], name
        assert summary["unit"], name


@pytest.mark.slow
def test_every_target_has_a_ratio_and_a_verdict(quick_results: dict) -> None:
    targets = quick_results["targets"]
    assert sorted(targets) == sorted(TARGETS)
    for name, target in targets.items():
        assert isinstance(target["ratio"], float) and math.isfinite(target["ratio"]), name
        assert target["target"].split()[0] in ("<=", ">="), name
        assert isinstance(target["met"], bool), name
        assert target["definition"], name


@pytest.mark.slow
def test_memory_definition_is_recorded(quick_results: dict) -> None:
    assert "n_points * 16" in quick_results["targets"]["series_memory_vs_series_bytes"]["definition"]
    assert "VmHWM" in quick_results["meta"]["memory_definition"]
