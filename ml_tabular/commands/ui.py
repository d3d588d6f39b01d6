"""``ml_tabular ui``: the MLflow UI on the configured tracking store, on the loopback address by default."""

from __future__ import annotations

import logging
import os
import sys

from jsonargparse import CLI

from ml_tabular.commands.process_group import run_server
from ml_tabular.config import get_config
from ml_tabular.mlops.secrets import redact_value
from ml_tabular.mlops.tracking import require_mlflow, resolve_tracking_uri

log = logging.getLogger(__name__)

# `mlflow ui` (an alias of `mlflow server`) reads its --backend-store-uri option from this variable
# (click `envvar=` in mlflow/cli/__init__.py).
STORE_URI_ENV_VAR = "MLFLOW_BACKEND_STORE_URI"


def ui(host: str = "127.0.0.1", port: int = 5000, tracking_uri: str | None = None, env: str | None = None) -> int:
    """Start the MLflow UI on the tracking store that ``fit`` uses (profile, environment, MLFLOW_TRACKING_URI).

    The server gets the store URI through ``MLFLOW_BACKEND_STORE_URI``, not its command line, which every
    user of the machine can read (``ps``) and which may hold a database password. It runs in its own
    process group; when ``ml_tabular ui`` is stopped (SIGINT, SIGTERM, SIGHUP) or ends for any other
    reason, the whole group gets SIGTERM and, after a few seconds, SIGKILL, so no worker is left behind.

    Args:
        host: Address to listen on; the loopback address keeps the UI private to this machine.
        port: Port to listen on.
        tracking_uri: Store to show instead of the configured one (a URI with a password belongs in
            ``MLFLOW_TRACKING_URI``: command lines are public).
        env: Profile of ``configs/app.yaml`` (default: ``ML_TABULAR_ENV``, else ``dev``).

    Returns:
        The server's exit code; 0 after Ctrl-C (SIGINT), else ``128 + signal number`` when stopped by a
        signal (143 for SIGTERM, 129 for SIGHUP), as a shell reports a process killed by it.
    """
    uri = resolve_tracking_uri(tracking_uri or get_config(env).mlflow.tracking_uri)
    if uri.startswith(("http://", "https://")):
        log.info("the tracking store is a server: open %s in a browser", uri)
        return 0
    require_mlflow()
    log.info("MLflow UI for %s on http://%s:%d (Ctrl-C stops it)", redact_value(uri), host, port)
    command = [sys.executable, "-m", "mlflow", "ui", "--host", host, "--port", str(port)]
    command += ["--workers", "1"]  # one user: a single worker starts in seconds, four take ~20 s on 2 cores
    return run_server(command, {**os.environ, STORE_URI_ENV_VAR: uri})


def main(argv: list[str]) -> None:
    sys.exit(CLI(ui, args=argv, prog="ml_tabular ui"))
