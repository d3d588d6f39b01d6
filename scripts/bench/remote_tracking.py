"""Tracking to a team server: ``ml_tabular fit`` tracked to ``ml_tabular server`` on 127.0.0.1 against tracking off,
and how long training stalls when that server is lost (killed, or hung) in the middle of a run."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from bench.context import Context
from bench.paired import fit_args
from bench.results import Measurement, Results, Target, ratios
from bench.systems import TABULAR_HIDDEN

SCRIPTS = Path(__file__).resolve().parents[1]  # on PYTHONPATH of the fits, which load EpochStarts
LOST_AT = 3  # the epoch at whose start the server is lost (epochs 1 and 2 are the normal pace)
READY_TIMEOUT = 300.0


class EpochStarts(Callback):
    """Appends the time at each training epoch's start, and at the end of training, to ``path`` (JSON lines); with
    ``lose``, at the start of epoch ``LOST_AT`` it SIGKILLs the process groups in ``groups`` (the tracking server) and,
    for ``lose="hang"``, listens on ``port`` without ever answering.

    Args:
        path: The JSON-lines file.
        lose: ``"none"``, ``"kill"`` or ``"hang"``.
        groups: Process group ids of the server.
        port: The server's port.
    """

    def __init__(self, path: str, lose: str = "none", groups: list[int] | None = None, port: int = 0) -> None:
        self.path, self.lose, self.groups, self.port = Path(path), lose, groups or [], port
        self.hung: socket.socket | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark()
        if self.lose != "none" and trainer.current_epoch == LOST_AT:
            for group in self.groups:
                os.killpg(group, signal.SIGKILL)
            if self.lose == "hang":
                time.sleep(0.5)  # the killed server's socket closes
                self.hung = socket.create_server(("127.0.0.1", self.port), reuse_port=False)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark()

    def _mark(self) -> None:
        with self.path.open("a") as file:
            file.write(json.dumps(time.perf_counter()) + "\n")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(folder: Path, port: int) -> subprocess.Popen:
    """``ml_tabular server`` on a SQLite store in ``folder``, one worker, as a small team would run it."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_BACKEND_STORE_URI"] = f"sqlite:///{folder / 'mlflow.db'}"
    command = [sys.executable, "-m", "ml_tabular", "server", "--port", str(port), "--workers", "1"]
    command += ["--artifacts-destination", str(folder / "artifacts")]
    server = subprocess.Popen(
        command, cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"ml_tabular server exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2):
                return server
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    raise RuntimeError(f"ml_tabular server did not answer within {READY_TIMEOUT:.0f} s")


def server_groups(server: subprocess.Popen) -> list[int]:
    """The process groups of ``ml_tabular server`` and of everything below it (MLflow's server leads its own)."""
    parents, groups = {server.pid}, {server.pid}
    for _ in range(4):  # ml_tabular server -> mlflow server -> uvicorn -> workers
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) in parents:
                parents.add(int(stat.parent.name))
                groups.add(int(fields[2]))
    return sorted(groups)


def stop(server: subprocess.Popen) -> None:
    for group in server_groups(server) if server.poll() is None else [server.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    server.wait(timeout=30)


def fit(
    ctx: Context, path: Path, tracking: str | None, lose: str = "none", server: subprocess.Popen | None = None
) -> tuple[float, list[float]]:
    """One ``ml_tabular fit`` subprocess (tracking to ``tracking``, or off; losing ``server`` as ``lose`` says); its
    wall seconds and epoch start times."""
    clock = ctx.tmp / "remote_clock.jsonl"
    clock.unlink(missing_ok=True)
    groups = server_groups(server) if server is not None else []
    port = int(tracking.rsplit(":", 1)[1]) if tracking else 0
    starts = f"{{class_path: bench.remote_tracking.EpochStarts, init_args: {{path: {clock}, lose: {lose}, "
    starts += f"groups: {groups}, port: {port}}}}}"
    epochs = ctx.epochs if lose == "none" else LOST_AT + 2
    args = [*fit_args("tabular", path, epochs, tracking is not None, TABULAR_HIDDEN), f"--trainer.callbacks=[{starts}]"]
    args += ["--trainer.enable_progress_bar=false", "--mlflow.log_model=true"]
    if tracking is not None:
        args.append(f"--mlflow.tracking_uri={tracking}")
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS), "OMP_NUM_THREADS": str(ctx.threads), "PYTHONWARNINGS": "ignore"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "ml_tabular", *args], cwd=ctx.tmp, env=env, capture_output=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"remote-tracking benchmark fit failed:\n{done.stderr.decode()[-3000:]}")
    return wall, [json.loads(line) for line in clock.read_text().splitlines()]


def epoch_seconds(starts: list[float]) -> list[float]:
    """Whole-epoch seconds (start to next start: training, metric writes, checkpoint), the first dropped (warm-up)."""
    return [b - a for a, b in itertools.pairwise(starts[1:])]


def remote_tracking(ctx: Context) -> Results:
    path = ctx.table()
    port = free_port()
    server = start_server(ctx.tmp / "team_server", port)
    url = f"http://127.0.0.1:{port}"
    epoch = {"server": [], "off": []}
    wall = {"server": [], "off": []}
    try:
        for repeat in range(ctx.repeats):
            for side in ("server", "off") if repeat % 2 == 0 else ("off", "server"):
                seconds, starts = fit(ctx, path, url if side == "server" else None)
                wall[side].append(seconds)
                epoch[side].append(statistics.median(epoch_seconds(starts)))
        stalls = {}
        for lose in ("kill",) if ctx.quick else ("kill", "hang"):  # --quick: the hung case's 20 s wait is known
            if stalls:
                server = start_server(ctx.tmp / "team_server", port)
            _, starts = fit(ctx, path, url, lose=lose, server=server)
            normal = statistics.median(epoch_seconds(starts)[: LOST_AT - 1])  # epochs 1 .. LOST_AT - 1
            stalls[lose] = starts[LOST_AT + 1] - starts[LOST_AT] - normal
            stop(server)
    finally:
        stop(server)
    note = f"`ml_tabular fit` subprocesses, {ctx.rows:,} rows, {ctx.epochs} epochs, MLflow model on"
    measurements = [
        Measurement("remote_tracking_epoch", "s", epoch["server"], f"tracked to `ml_tabular server`; {note}"),
        Measurement("remote_tracking_off_epoch", "s", epoch["off"], f"--mlflow.enabled false; {note}"),
        Measurement(
            "remote_tracking_fixed_cost",
            "s",
            [a - b for a, b in zip(wall["server"], wall["off"], strict=True)],
            "whole fit, tracked minus off: run creation, params, dataset, uploads, MLflow model",
        ),
        Measurement(
            "server_lost_stall",
            "s",
            [stalls["kill"]],
            "server SIGKILLed at an epoch start: that epoch's extra seconds before training goes on (spooled)",
        ),
    ]
    if "hang" in stalls:
        measurements.append(
            Measurement("server_hung_stall", "s", [stalls["hang"]], "the same, then a socket that never answers")
        )
    return Results(
        measurements=measurements,
        targets=[
            Target(
                "remote_tracking_overhead",
                ratios(epoch["server"], epoch["off"]),
                "<=",
                1.05,
                "whole-epoch seconds tracked to a loopback `ml_tabular server` / tracking off",
            ),
        ],
    )
