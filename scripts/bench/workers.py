"""Measurements taken in a fresh interpreter (peak memory), started through the benchmark script's ``--worker``."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.context import Context

SCRIPT = Path(__file__).resolve().parents[1] / "benchmark.py"
MEMORY_DEFINITION = (
    "(VmHWM after setup('fit') - VmHWM after imports and a warm-up setup on 2,000 rows) / data bytes; VmHWM is "
    "the process's own peak RSS (/proc/self/status); the warm-up's own growth (first-use costs that do not grow "
    "with the data: lazy imports, Arrow's memory pool) is stored as the 'imports' mark; ru_maxrss beside it, unused"
)
WARM_UP_ROWS = 2_000  # enough for a series split with input 168 + horizon 24 per stretch


def memory_mark() -> dict[str, int]:
    """This process's peak resident set so far: VmHWM in bytes, and ru_maxrss in KiB for reference."""
    with open("/proc/self/status") as status:
        vmhwm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    return {"vmhwm_bytes": vmhwm, "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def warmed_up(
    path: Path, write: Callable[[Path, int], None], datamodule: Callable[[Path], Any]
) -> dict[str, dict[str, int]]:
    """Marks before (``imports``) and after (``baseline``) a warm-up: ``datamodule(tiny).setup("fit")`` on a
    ``WARM_UP_ROWS`` file that ``write`` makes beside ``path``, the same shape as the data measured."""
    tiny = path.with_name(f"warm_up_{path.name}")
    write(tiny, WARM_UP_ROWS)
    imports = memory_mark()
    datamodule(tiny).setup("fit")
    return {"imports": imports, "baseline": memory_mark()}


def growth(marks: dict[str, dict[str, int]]) -> int:
    """Bytes the peak grew by between the ``baseline`` and ``peak`` marks of a worker."""
    return marks["peak"]["vmhwm_bytes"] - marks["baseline"]["vmhwm_bytes"]


def run_worker(name: str, spec: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Run a measurement in a fresh interpreter; it prints its result as the last line of stdout."""
    command = [sys.executable, str(SCRIPT), "--worker", name, "--spec", json.dumps(spec), "--threads", str(ctx.threads)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ctx.tmp)
    if done.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
