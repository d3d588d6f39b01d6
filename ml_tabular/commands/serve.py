"""``ml_tabular serve``: MLflow's scoring server for one model, on the loopback address by default."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import socket
import sys
from pathlib import Path
from typing import Any

from jsonargparse import CLI

from ml_tabular.commands.process_group import run_server
from ml_tabular.config import get_config
from ml_tabular.errors import ConfigError
from ml_tabular.mlops.scoring import model_at
from ml_tabular.mlops.tracking import no_download_bars, require_mlflow, resolve_tracking_uri

log = logging.getLogger(__name__)

ALIAS_URI = re.compile(r"models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)")


def serve(
    *, model: str, port: int = 5001, host: str = "127.0.0.1", tracking_uri: str | None = None, env: str | None = None
) -> int:
    """Serve an MLflow model over HTTP with MLflow's scoring server (``POST /invocations``, ``GET /ping``).

    The model URI is looked up once, here, so an unknown model, version or alias stops at once with one line;
    the server resolves it again when it starts (an alias is not followed afterwards: restart after moving it).
    The server runs in this environment (``--env-manager local``) and gets the tracking store through
    ``MLFLOW_TRACKING_URI``, not its command line, which every user of the machine can read (``ps``). It runs
    in its own process group, stopped as a whole when ``ml_tabular serve`` is stopped (Ctrl-C, SIGTERM, SIGHUP).

    Args:
        model: Model URI: ``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``models:/m-...``,
            ``runs:/RUN_ID/model``, or a model folder.
        port: Port to listen on.
        host: Address to listen on; the loopback address keeps the model private to this machine.
        tracking_uri: Store that holds the model instead of the configured one (a URI with a password belongs
            in ``MLFLOW_TRACKING_URI``: command lines are public).
        env: Profile of ``configs/app.yaml`` (default: ``ML_TABULAR_ENV``, else ``dev``).

    Returns:
        The server's exit code; 0 after Ctrl-C (SIGINT), else ``128 + signal number`` when stopped by a
        signal (143 for SIGTERM, 129 for SIGHUP).
    """
    uri = resolve_tracking_uri(tracking_uri or get_config(env).mlflow.tracking_uri)
    require_mlflow()
    check_port(host, port)
    with no_download_bars():
        info = model_info(model, uri)
        example = curl_example(info, f"http://{host}:{port}/invocations")
    log.info("serving %s%s on http://%s:%d/invocations (Ctrl-C stops it)", model, alias_version(model), host, port)
    if example:
        print(example, flush=True)
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", model, "--env-manager", "local"]
    command += ["--host", host, "--port", str(port)]
    return run_server(command, server_environment(uri))


def check_port(host: str, port: int) -> None:
    """Stop now if ``host:port`` is taken, rather than when the server fails to bind it seconds later."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.create_server((host, port), family=family):  # SO_REUSEADDR, as the server binds
            pass
    except OSError as err:
        raise ConfigError(
            f"cannot listen on {host}:{port}: {os.strerror(err.errno)}. Stop what uses it, or pass another --port."
        ) from None


def model_info(model: str, tracking_uri: str) -> Any:
    """MLflow's ``ModelInfo`` of ``model`` in the store at ``tracking_uri``; one line if there is none."""
    import mlflow

    with model_at(model, tracking_uri, store_flag="--tracking_uri"):
        return mlflow.models.get_model_info(model)


def alias_version(model: str) -> str:
    """`` (version N)`` for ``models:/NAME@ALIAS``: the version the server loads now and keeps."""
    match = ALIAS_URI.fullmatch(model)
    if match is None:
        return ""
    from mlflow import MlflowClient

    return f" (version {MlflowClient().get_model_version_by_alias(match['name'], match['alias']).version})"


def curl_example(info: Any, url: str) -> str | None:
    """A ``curl`` command that posts the model's input example (stored with it by ``fit``) to ``url``."""
    import mlflow

    example = (info.saved_input_example_info or {}).get("serving_input_path")
    if example is None:
        return None
    path = mlflow.artifacts.download_artifacts(artifact_uri=f"{info.artifact_path}/{example}")
    # MLflow writes a missing value as NaN, which only Python reads: null is standard JSON
    body = json.loads(Path(path).read_text(), parse_constant=lambda name: None if name == "NaN" else float(name))
    payload = json.dumps(body, separators=(",", ":"), allow_nan=False)
    return f"curl {url} -H 'Content-Type: application/json' -d {shlex.quote(payload)}"


def server_environment(tracking_uri: str) -> dict[str, str]:
    """This environment, with the store in ``MLFLOW_TRACKING_URI`` and this Python's scripts first on ``PATH``:
    MLflow starts the server as ``uvicorn``, found on ``PATH``."""
    scripts = str(Path(sys.executable).parent)  # not resolved: a venv's python is a link to the base interpreter
    path = os.pathsep.join([scripts, os.environ.get("PATH", "")])
    return {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "PATH": path}


def main(argv: list[str]) -> None:
    sys.exit(CLI(serve, args=argv, prog="ml_tabular serve"))
