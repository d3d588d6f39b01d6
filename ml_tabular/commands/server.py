"""``ml_tabular server``: a team's MLflow tracking server — database store, proxied artifacts, optional basic-auth."""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import socket
import sys
import tempfile
from pathlib import Path

from ml_tabular.commands.usage import UsageParser
from ml_tabular.errors import ConfigError
from ml_tabular.mlops.secrets import redact_value

log = logging.getLogger(__name__)

STORE_URI_VAR = "MLFLOW_BACKEND_STORE_URI"  # `mlflow server --backend-store-uri` reads it (click envvar)
ADMIN_PASSWORD_VAR = "MLFLOW_AUTH_ADMIN_PASSWORD"
SECRET_KEY_VAR = "MLFLOW_FLASK_SERVER_SECRET_KEY"
AUTH_CONFIG_VAR = "MLFLOW_AUTH_CONFIG_PATH"
JOBS_VAR = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"  # a job runner for GenAI evaluation jobs: training needs none
MIN_PASSWORD_LENGTH = 12  # MLflow's basic-auth password policy
SERVER_EXTRA = "pip install 'ml_tabular[server]'"
# module each database URI scheme needs (SQLAlchemy's own mapping; plain postgresql:// means psycopg 3)
DRIVERS = {"postgresql": "psycopg", "postgresql+psycopg": "psycopg", "postgresql+psycopg2": "psycopg2"}
AUTH_INI = """[mlflow]
default_permission = READ
database_uri = {database_uri}
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""
EXAMPLES = """examples:
  export MLFLOW_BACKEND_STORE_URI=postgresql+psycopg2://mlflow:DB_PASSWORD@127.0.0.1:5432/mlflow
  ml_tabular server --artifacts-destination /srv/mlflow/artifacts --auth
  ml_tabular server --backend-store-uri sqlite:////srv/mlflow/mlflow.db --artifacts-destination /srv/mlflow/artifacts

--auth reads MLFLOW_AUTH_ADMIN_PASSWORD (the user 'admin', >= 12 characters) and MLFLOW_FLASK_SERVER_SECRET_KEY
(the same on every replica) from the environment. Users and permissions: README, "Team tracking server"."""


def build_parser() -> argparse.ArgumentParser:
    parser = UsageParser(
        prog="ml_tabular server",
        description="Start an MLflow tracking server for a team: runs in a database (PostgreSQL or SQLite), "
        "artifacts uploaded and downloaded through the server, optional basic-auth. It runs in its own process "
        "group, stopped as a whole with this command (Ctrl-C, SIGTERM, SIGHUP).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--backend-store-uri",
        help=f"database of runs, e.g. postgresql+psycopg2://USER:PASSWORD@HOST:5432/DB or sqlite:////abs/mlflow.db "
        f"(default: ${STORE_URI_VAR}; a URI with a password belongs there: command lines are public)",
    )
    parser.add_argument(
        "--artifacts-destination", required=True, help="where the server keeps artifacts (a folder, s3://...)"
    )
    parser.add_argument(
        "--auth",
        action="store_true",
        help=f"require a user name and password (MLflow basic-auth; needs ${ADMIN_PASSWORD_VAR}, ${SECRET_KEY_VAR})",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0: every interface)"
    )
    parser.add_argument("--port", type=int, default=5000, help="port to listen on (default 5000)")
    parser.add_argument("--workers", type=int, default=2, help="server processes (default 2; each takes ~250 MB)")
    parser.add_argument(
        "--allowed-hosts", help="Host headers accepted besides localhost and private IPs (mlflow.example.com)"
    )
    return parser


def store_uri(flag: str | None) -> str:
    """The backend store URI (flag, else ``MLFLOW_BACKEND_STORE_URI``), checked: a database its driver can open."""
    uri = flag or os.environ.get(STORE_URI_VAR)
    if not uri:
        raise ConfigError(f"ml_tabular server needs a database: set {STORE_URI_VAR} or pass --backend-store-uri.")
    if flag and redact_value(flag) != flag:
        log.warning("every user of this machine sees --backend-store-uri (ps): put the URI in %s", STORE_URI_VAR)
    scheme = uri.split("://", 1)[0] if "://" in uri else ""
    if not scheme or scheme.startswith("file"):
        raise ConfigError(
            f"backend store '{redact_value(uri)}' is not a database URI: use postgresql+psycopg2://... or "
            "sqlite:////absolute/path/mlflow.db."
        )
    driver = DRIVERS.get(scheme)
    if driver and importlib.util.find_spec(driver) is None:
        hint = "write postgresql+psycopg2:// and " if driver == "psycopg" else ""
        raise ConfigError(f"backend store '{redact_value(uri)}' needs the {driver} module: {hint}{SERVER_EXTRA}.")
    return uri


def check_auth_settings() -> None:
    """Refuse ``--auth`` without the admin password (>= 12 characters) and secret key, or without Flask-WTF."""
    missing = [name for name in (ADMIN_PASSWORD_VAR, SECRET_KEY_VAR) if not os.environ.get(name)]
    if missing:
        raise ConfigError(
            f"--auth needs {' and '.join(missing)} in the environment: {ADMIN_PASSWORD_VAR} is the password of the "
            f"user 'admin' (>= {MIN_PASSWORD_LENGTH} characters), {SECRET_KEY_VAR} a long random string, the same "
            "on every replica (python -c 'import secrets; print(secrets.token_hex(32))')."
        )
    length = len(os.environ[ADMIN_PASSWORD_VAR])
    if length < MIN_PASSWORD_LENGTH:
        raise ConfigError(
            f"{ADMIN_PASSWORD_VAR} has {length} characters: MLflow's basic-auth needs at least {MIN_PASSWORD_LENGTH}."
        )
    if importlib.util.find_spec("flask_wtf") is None:
        raise ConfigError(f"--auth needs MLflow's auth extra: {SERVER_EXTRA}.")


def write_auth_config(uri: str, folder: Path) -> Path:
    """An auth config whose users and permissions live beside the runs: in the same database (their own tables
    and migration table), or for SQLite in ``basic_auth.db`` next to the store file.

    The file may hold the database password: it is written readable by its owner only.
    """
    if uri.startswith("sqlite:///"):
        uri = f"sqlite:///{Path(uri.removeprefix('sqlite:///')).parent / 'basic_auth.db'}"
    path = folder / "basic_auth.ini"
    path.touch(mode=0o600)
    path.write_text(AUTH_INI.format(database_uri=uri.replace("%", "%%")))  # configparser interpolates %
    return path


def client_url(host: str, port: int) -> str:
    """How clients reach the server: by this machine's name when it listens on every interface."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.getfqdn()
    return f"http://{f'[{host}]' if ':' in host else host}:{port}"


def server(args: argparse.Namespace) -> int:
    """Start ``mlflow server`` as the flags say; returns its exit code (see ``run_server``)."""
    from ml_tabular.commands.process_group import run_server
    from ml_tabular.commands.serve import check_port
    from ml_tabular.mlops.tracking import require_mlflow

    require_mlflow()
    uri = store_uri(args.backend_store_uri)
    if args.auth:
        check_auth_settings()
    check_port(args.host, args.port)
    destination = args.artifacts_destination
    if "://" not in destination:
        destination = str(Path(destination).resolve())
    command = [sys.executable, "-m", "mlflow", "server", "--host", args.host, "--port", str(args.port)]
    command += ["--workers", str(args.workers), "--serve-artifacts", "--artifacts-destination", destination]
    command += ["--app-name", "basic-auth"] if args.auth else []
    command += ["--allowed-hosts", args.allowed_hosts] if args.allowed_hosts else []
    env = {**os.environ, STORE_URI_VAR: uri}
    env.setdefault(JOBS_VAR, "false")
    with tempfile.TemporaryDirectory(prefix="ml_tabular_server_") as folder:  # made readable by its owner only
        if args.auth and not os.environ.get(AUTH_CONFIG_VAR):
            env[AUTH_CONFIG_VAR] = str(write_auth_config(uri, Path(folder)))
        _say_how_to_connect(uri, destination, args)
        return run_server(command, env)


def _say_how_to_connect(uri: str, destination: str, args: argparse.Namespace) -> None:
    url = client_url(args.host, args.port)
    auth = "basic-auth (user 'admin' and the users it adds)" if args.auth else "no authentication"
    log.info(
        "MLflow tracking server on %s: runs in %s, artifacts in %s (through the server), %s, %d workers "
        "(Ctrl-C stops it)",
        url, redact_value(uri), destination, auth, args.workers,
    )  # fmt: skip
    credentials = " MLFLOW_TRACKING_USERNAME=<user> MLFLOW_TRACKING_PASSWORD=<password>" if args.auth else ""
    log.info(
        "clients: MLFLOW_TRACKING_URI=%s%s ML_TABULAR_ENV=prod ml_tabular fit --config configs/tabular.yaml",
        url, credentials,
    )  # fmt: skip


def main(argv: list[str]) -> None:
    sys.exit(server(build_parser().parse_args(argv)))
