"""``ml_tabular ui``: the MLflow UI on the configured tracking store, on the loopback address by default."""

from __future__ import annotations

import logging
import subprocess
import sys

from jsonargparse import CLI

from ml_tabular.config import get_config
from ml_tabular.mlops.tracking import require_mlflow, resolve_tracking_uri

log = logging.getLogger(__name__)


def ui(host: str = "127.0.0.1", port: int = 5000, tracking_uri: str | None = None, env: str | None = None) -> int:
    """Start the MLflow UI on the tracking store that ``fit`` uses (profile, environment, MLFLOW_TRACKING_URI).

    Args:
        host: Address to listen on; the loopback address keeps the UI private to this machine.
        port: Port to listen on.
        tracking_uri: Store to show instead of the configured one.
        env: Profile of ``configs/app.yaml`` (default: ``ML_TABULAR_ENV``, else ``dev``).
    """
    uri = resolve_tracking_uri(tracking_uri or get_config(env).mlflow.tracking_uri)
    if uri.startswith(("http://", "https://")):
        log.info("the tracking store is a server: open %s in a browser", uri)
        return 0
    require_mlflow()
    log.info("MLflow UI for %s on http://%s:%d (Ctrl-C stops it)", uri, host, port)
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port)]
    command += ["--workers", "1"]  # one user: a single worker starts in seconds, four take ~20 s on 2 cores
    try:
        return subprocess.call(command)
    except KeyboardInterrupt:
        return 0


def main(argv: list[str]) -> None:
    sys.exit(CLI(ui, args=argv, prog="ml_tabular ui"))
