"""Measurements taken in a fresh interpreter (peak memory), started through the benchmark script's ``--worker``."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.context import Context

SCRIPT = Path(__file__).resolve().parents[1] / "benchmark.py"
MEMORY_DEFINITION = (
    "(VmHWM after setup('fit') - VmHWM after imports) / data bytes; VmHWM is the process's own peak RSS "
    "(/proc/self/status); ru_maxrss values are stored beside it but not used"
)


def memory_mark() -> dict[str, int]:
    """This process's peak resident set so far: VmHWM in bytes, and ru_maxrss in KiB for reference."""
    with open("/proc/self/status") as status:
        vmhwm = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
    return {"vmhwm_bytes": vmhwm, "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


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
