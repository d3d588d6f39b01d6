"""The one implementation behind MLflow tracking: store URIs, params, tags, git state.

Nothing here imports ``mlflow`` at module level, so importing it costs nothing when tracking is off.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from argparse import Namespace
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ml_tabular.errors import ConfigError, TrackingError

DEFAULT_STORE_DIR = "mlruns"
PROGRESS_BAR_VAR = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"  # read by MLflow at every download
MAX_PARAM_LENGTH = 6000  # MLflow 3's limit on a param value


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """The environment variables ``values`` set inside the block, then each as it was (unset if it was)."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def no_download_bars() -> Any:
    """No MLflow artifact download bars inside the block: they would bury a command's own output."""
    return environment({PROGRESS_BAR_VAR: "false"})


def is_mlflow_available() -> bool:
    """Whether the ``mlflow`` package can be imported (without importing it)."""
    if "mlflow" in sys.modules:
        return sys.modules["mlflow"] is not None
    try:
        return importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):
        return False


def require_mlflow() -> None:
    """Stop with one clear line when tracking is on but MLflow is not installed."""
    if not is_mlflow_available():
        raise ConfigError(
            "MLflow tracking is on (mlflow.enabled: true) but MLflow is not installed. "
            "Install the extra with: pip install 'ml_tabular[mlops]' -- or turn tracking off with "
            "--mlflow.enabled false."
        )


def default_tracking_uri(store_dir: str | Path | None = None) -> str:
    """The embedded store: ``sqlite:///<store_dir>/mlflow.db`` (store_dir: ``./mlruns``)."""
    store = Path(store_dir or DEFAULT_STORE_DIR).resolve()
    return f"sqlite:///{store / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None, store_dir: str | Path | None = None) -> str:
    """The configured URI, else ``MLFLOW_TRACKING_URI``, else the embedded SQLite store in ``store_dir``.

    A ``file:`` store (or a bare folder) is refused with a clear message unless MLflow's own
    ``MLFLOW_ALLOW_FILE_STORE=true`` is set; a SQLite store's folder is created.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(store_dir)
    is_file_store = uri.startswith("file:") or ("://" not in uri and uri not in ("databricks",))
    if is_file_store and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() != "true":
        raise TrackingError(
            f"mlflow.tracking_uri '{uri}' is a file store, which MLflow 3 no longer supports by default. "
            f"Use the embedded SQLite store (leave tracking_uri null -> {default_tracking_uri()}), "
            "a server URL (http://host:5000), or set MLFLOW_ALLOW_FILE_STORE=true to keep the file store."
        )
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    return uri


def run_page(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Where a person sees a run: the server's page for it, or how to open the UI on a local store."""
    path = f"#/experiments/{experiment_id}/runs/{run_id}"
    if tracking_uri.startswith(("http://", "https://")):
        return f"{tracking_uri.rstrip('/')}/{path}"
    return f"see it with `ml_tabular ui`, then http://127.0.0.1:5000/{path}"


def flatten(config: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """Nested mappings -> keys joined by ``sep`` (``model.init_args.dropout``); lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        value = vars(value) if isinstance(value, Namespace) else value
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}{sep}", sep))
        else:
            flat[name] = value
    return flat


def param_value(value: Any) -> str:
    """How a config value is written as an MLflow param (``None`` -> ``null``)."""
    return "null" if value is None else str(value)


def split_long_params(params: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split into params that fit MLflow's value limit and the long ones (kept whole as an artifact)."""
    fits = {k: v for k, v in params.items() if len(v) <= MAX_PARAM_LENGTH}
    return fits, {k: v for k, v in params.items() if k not in fits}


def git_state(cwd: str | Path | None = None) -> dict[str, str]:
    """``git_commit``, ``git_branch`` and ``git_dirty`` of the repository at ``cwd``; empty outside one."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True)
        return done.stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        branch = git("rev-parse", "--abbrev-ref", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"git_commit": commit, "git_branch": branch, "git_dirty": str(dirty).lower()}


def run_tags(
    model_type: str, dataset_name: str, seed: Any, env: str, framework: str = "pytorch-lightning"
) -> dict[str, str]:
    """The tags every run carries (INTERFACE §4), git state included when run inside a repository."""
    tags = {
        "model_type": model_type,
        "framework": framework,
        "env": env,
        "dataset_name": dataset_name,
        "seed": str(seed),
    }
    git = git_state()
    tags.update(git)
    if git:
        tags["mlflow.source.git.commit"] = git["git_commit"]
        tags["mlflow.source.git.branch"] = git["git_branch"]
    return tags


def format_run_name(template: str | None, fields: Mapping[str, Any]) -> str | None:
    """Fill a run-name template such as ``tabular_mlp__dataset={dataset}__seed={seed}``."""
    if template is None:
        return None
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as err:
        raise ConfigError(
            f"mlflow.run_name template '{template}' uses an unknown field {err}. Known fields: {sorted(fields)}."
        ) from err
