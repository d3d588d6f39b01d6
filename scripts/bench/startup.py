"""Startup: ``ml_tabular --help`` against ``import lightning``."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from bench.context import Context
from bench.results import Measurement, Results, Target, ratios


def wall_seconds(command: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def startup(ctx: Context) -> Results:
    commands = {
        "startup_ml_tabular_help": [sys.executable, "-m", "ml_tabular", "--help"],
        "startup_import_lightning": [sys.executable, "-c", "import lightning"],
    }
    # no warm-up run: this process has imported lightning, so its files are in the page cache
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(ctx.repeats):
        for name, command in commands.items():
            times[name].append(wall_seconds(command, ctx.tmp))
    help_s, import_s = times["startup_ml_tabular_help"], times["startup_import_lightning"]
    return Results(
        measurements=[Measurement(name, "s", values) for name, values in times.items()],
        targets=[
            Target(
                "startup_help_vs_import",
                ratios(help_s, import_s),
                "<=",
                1.3,
                "wall time of `python -m ml_tabular --help` / of `python -c 'import lightning'`",
            )
        ],
    )
