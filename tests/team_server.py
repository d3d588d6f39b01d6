"""``ml_tabular server`` started as a user starts it, on a free loopback port, stopped by its process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from servers import Proc, descendants, free_port, kill_all, processes, running, wait_until_ready

ADMIN = "admin"
ADMIN_PASSWORD = "admin-Password-91c2"
SECRET_KEY = "test-secret-key-5d8e0b"


@dataclass
class TeamServer:
    """A running ``ml_tabular server``: its URL, its process, and its folder (cwd, ``artifacts/``, ``server.log``)."""

    url: str
    proc: subprocess.Popen
    folder: Path
    auth: bool

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def artifacts(self) -> Path:
        return self.folder / "artifacts"

    def client_env(self, user: str | None = None, password: str | None = None) -> dict[str, str]:
        """What a user exports to train against it (``ADMIN`` by default on a server with auth)."""
        env = {"MLFLOW_TRACKING_URI": self.url}
        if self.auth:
            env |= {"MLFLOW_TRACKING_USERNAME": user or ADMIN, "MLFLOW_TRACKING_PASSWORD": password or ADMIN_PASSWORD}
        return env


@contextlib.contextmanager
def team_server(folder: Path, store_uri: str, auth: bool, port: int | None = None) -> Iterator[TeamServer]:
    """Start ``ml_tabular server`` (one worker) on ``store_uri``, given in ``MLFLOW_BACKEND_STORE_URI``, on ``port``
    (default: a free one); on exit SIGTERM it alone and check that it took every process below it down."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "ML_TABULAR_"))}
    env |= {"MLFLOW_BACKEND_STORE_URI": store_uri, "PYTHONWARNINGS": "ignore"}
    if auth:
        env |= {"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD, "MLFLOW_FLASK_SERVER_SECRET_KEY": SECRET_KEY}
    command = [sys.executable, "-m", "ml_tabular", "server", "--artifacts-destination", str(folder / "artifacts")]
    command += ["--port", str(port), "--workers", "1", *(["--auth"] if auth else [])]
    with open(folder / "server.log", "w") as log:
        proc = subprocess.Popen(
            command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    below: list[Proc] = []
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_ready(f"{url}/health", proc, timeout=300, body="OK")
        below = descendants(proc.pid)
        yield TeamServer(url, proc, folder, auth)
    finally:
        left = stop(proc, below)
    assert left == [], f"processes outlived ml_tabular server: {left}"


def stop(proc: subprocess.Popen, below: list[Proc]) -> list[Proc]:
    """SIGTERM ``ml_tabular server`` (as a service manager would); those of ``below`` still running after it exits,
    SIGKILLed."""
    groups = {proc.pid, *(p.pgid for p in below)}
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    late = [p for p in processes().values() if p.pgid in groups - {proc.pid}]  # started after the snapshot
    left = running(below + late)
    kill_all(below + late, groups)
    return left
