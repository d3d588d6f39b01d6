"""Online serving: latency of one-row requests to ``ml_tabular serve``, and the server's start-up time (reported)."""

from __future__ import annotations

import contextlib
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

import pandas as pd

from bench.context import Context
from bench.data import in_subprocess, write_table_file
from bench.paired import fit_args
from bench.results import Measurement, Results
from bench.systems import TABULAR_HIDDEN
from ml_tabular.cli import MLTabularCLI
from ml_tabular.mlops.tracking import default_tracking_uri

TRAIN_ROWS = 2_000  # the served model's training rows: a request's cost does not depend on them
REQUESTS = {False: 200, True: 20}  # timed one-row requests per repeat, by ctx.quick
WARM_UP_REQUESTS = 10  # the first requests load lazily imported code paths
READY_TIMEOUT = 300.0  # seconds; the server starts in ~13 s on an idle 2-core machine


def served_model(ctx: Context) -> tuple[str, bytes]:
    """Train the benchmark's tabular model for one epoch (its MLflow model logged, as ``fit`` does by default);
    its ``runs:/`` URI and one of its rows as a ``dataframe_split`` request body."""
    path = ctx.tmp / "serving_table.parquet"
    in_subprocess(write_table_file, path, TRAIN_ROWS)
    args = fit_args("tabular", path, epochs=1, tracked=True, hidden=TABULAR_HIDDEN)
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        cli = MLTabularCLI(args=[*args, "--mlflow.experiment_name=benchmark_serving", "--mlflow.log_model=true"])
    row = pd.read_parquet(path).drop(columns="y").head(1)
    body = {"dataframe_split": json.loads(row.to_json(orient="split", index=False))}
    return f"runs:/{cli.trainer.logger.run_id}/model", json.dumps(body).encode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_uri: str, port: int, threads: int) -> subprocess.Popen:
    """``ml_tabular serve`` as a user starts it, on this run's store; torch on ``threads`` threads there too."""
    env = {**os.environ, "MLFLOW_TRACKING_URI": default_tracking_uri(), "OMP_NUM_THREADS": str(threads)}
    return subprocess.Popen(
        [sys.executable, "-m", "ml_tabular", "serve", "--model", model_uri, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_ready(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"ml_tabular serve exited with code {server.returncode} before answering {url}")
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(url, timeout=2),
        ):
            return
        time.sleep(0.2)
    raise RuntimeError(f"ml_tabular serve did not answer {url} within {READY_TIMEOUT:.0f} s")


def request_seconds(url: str, body: bytes) -> float:
    """Wall time of one POST on a new connection, as a client without a session sends it; checks the answer."""
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = response.read()
    seconds = time.perf_counter() - start
    if len(json.loads(answer)["predictions"]) != 1:
        raise RuntimeError(f"unexpected answer from {url}: {answer[:200]!r}")
    return seconds


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM ``ml_tabular serve``, which stops its server's process group; SIGKILL it if it hangs."""
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def serving_latency(ctx: Context) -> Results:
    model_uri, body = served_model(ctx)
    port = free_port()
    started = time.perf_counter()
    server = start_server(model_uri, port, ctx.threads)
    try:
        wait_ready(f"http://127.0.0.1:{port}/ping", server)
        startup = time.perf_counter() - started
        url = f"http://127.0.0.1:{port}/invocations"
        for _ in range(WARM_UP_REQUESTS):
            request_seconds(url, body)
        count = REQUESTS[ctx.quick]
        p50 = [1000 * statistics.median(request_seconds(url, body) for _ in range(count)) for _ in range(ctx.repeats)]
    finally:
        stop_server(server)
    note = f"p50 of {count} sequential one-row JSON requests per repeat, {TABULAR_HIDDEN} MLP, 32 float features"
    return Results(
        measurements=[
            Measurement("serving_one_row_p50", "ms", p50, note + "; a new connection each, on 127.0.0.1"),
            Measurement("serving_startup", "s", [startup], "`ml_tabular serve` started -> first 200 from /ping"),
        ]
    )
