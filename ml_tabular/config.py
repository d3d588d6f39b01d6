"""Application configuration: profiles (``configs/app.yaml``), environment overrides, run configs.

Precedence, lowest first: built-in defaults < the ``configs/app.yaml`` profile < the run YAML <
``ML_TABULAR_<SECTION>__<KEY>`` environment variables < command-line flags. This module imports
nothing of ml_tabular's but its errors.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ml_tabular.errors import ConfigError

ENV_VAR = "ML_TABULAR_ENV"
APP_CONFIG_VAR = "ML_TABULAR_APP_CONFIG"
ENV_PREFIX = "ML_TABULAR_"
DEFAULT_APP_CONFIG = Path("configs") / "app.yaml"
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


@dataclass
class MlflowConfig:
    """How runs are tracked in MLflow.

    Args:
        enabled: Track the run in MLflow (needs the ``[mlops]`` extra).
        tracking_uri: Tracking store; ``null`` uses ``MLFLOW_TRACKING_URI`` if set, else the embedded
            SQLite store ``sqlite:///<cwd>/mlruns/mlflow.db``.
        experiment_name: MLflow experiment; ``null`` uses the model family's default
            (``ml_tabular_tabular_baselines``, ``ml_tabular_time_series_baselines``).
        run_name: Run-name template; ``{dataset}``, ``{seed}``, ``{model}`` and any data/model init arg
            (``{input_size}``, ``{horizon}``, ...) are filled from the run; ``null`` uses the family's default.
        log_artifacts: Upload configs, checkpoints, plots and logs as run artifacts.
        log_checkpoints: Upload the best and last checkpoints (``checkpoints/best.ckpt``, ``last.ckpt``) when
            ``log_artifacts`` is on; ``false`` keeps them local only.
        log_model: At the end of ``fit``, log an MLflow model made from the best checkpoint (raw rows in, the
            ``predict`` table out), linked to the run, ready to register, score and serve.
    """

    enabled: bool = False
    tracking_uri: str | None = None
    experiment_name: str | None = None
    run_name: str | None = None
    log_artifacts: bool = True
    log_checkpoints: bool = True
    log_model: bool = False


@dataclass
class AppConfig:
    """The application config: which profile is active and how runs are tracked.

    Args:
        env: Profile name (``dev``, ``prod``, ...); recorded as the run tag ``env``.
        mlflow: The tracking section.
    """

    env: str = "dev"
    mlflow: MlflowConfig = field(default_factory=MlflowConfig)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SECTIONS: dict[str, type] = {"mlflow": MlflowConfig}


def _parse_value(raw: str, default: Any, name: str) -> Any:
    """Type an environment string like the field's default: bools, ints, floats, ``null``, strings."""
    text = raw.strip()
    if isinstance(default, bool):
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ConfigError(f"{name}={raw!r} is not a boolean: use true/false (or 1/0).")
    if text.lower() in ("", "null", "none"):
        return None
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not an integer.") from None
    return text


def env_overrides(environ: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """Typed values of ``ML_TABULAR_<SECTION>__<KEY>`` variables, by section; unknown keys are errors."""
    environ = dict(os.environ if environ is None else environ)
    overrides: dict[str, dict[str, Any]] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        if section not in SECTIONS:
            raise ConfigError(f"{name}: unknown section '{section}'; known: {sorted(SECTIONS)}.")
        defaults = {f.name: f.default for f in fields(SECTIONS[section])}
        if key not in defaults:
            known = ", ".join(f"{ENV_PREFIX}{section.upper()}__{k.upper()}" for k in defaults)
            raise ConfigError(f"{name}: '{key}' is not a {section} setting; known: {known}.")
        overrides.setdefault(section, {})[key] = _parse_value(raw, defaults[key], name)
    return overrides


def app_config_path() -> Path | None:
    """``ML_TABULAR_APP_CONFIG`` if set, else ``configs/app.yaml`` under the working directory if present."""
    if os.environ.get(APP_CONFIG_VAR):
        path = Path(os.environ[APP_CONFIG_VAR])
        if not path.is_file():
            raise ConfigError(f"{APP_CONFIG_VAR}={path}: no such file.")
        return path
    return DEFAULT_APP_CONFIG if DEFAULT_APP_CONFIG.is_file() else None


def load_run_config(path: str | Path) -> dict[str, Any]:
    """A YAML config file as a dict (a run config or ``app.yaml``), with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist.")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file '{path}' is not valid YAML: {err}") from err
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file '{path}' must hold a mapping at the top level.")
    return loaded


def profile_config(env: str | None = None) -> AppConfig:
    """Built-in defaults overlaid with the ``env`` profile of the app config file (no env-var overrides)."""
    env = env or os.environ.get(ENV_VAR) or "dev"
    path = app_config_path()
    profile: dict[str, Any] = {}
    if path is not None:
        profiles = load_run_config(path)
        if env not in profiles:
            raise ConfigError(f"{ENV_VAR}={env}: no profile '{env}' in '{path}' (profiles: {sorted(profiles)}).")
        profile = profiles[env] or {}
    return _build(env, profile, path)


def _build(env: str, values: dict[str, Any], origin: Path | str | None) -> AppConfig:
    unknown = set(values) - set(SECTIONS)
    if unknown:
        raise ConfigError(f"{origin}: unknown section(s) {sorted(unknown)} in profile '{env}'.")
    try:
        sections = {name: SECTIONS[name](**(values.get(name) or {})) for name in SECTIONS}
    except TypeError as err:
        raise ConfigError(f"{origin}: profile '{env}': {err}.") from err
    return AppConfig(env=env, **sections)


def get_config(env: str | None = None, run_config: dict[str, Any] | None = None) -> AppConfig:
    """The effective application config: defaults < profile < ``run_config`` < ``ML_TABULAR_<SECTION>__<KEY>``.

    Args:
        env: Profile to use; ``None`` reads ``ML_TABULAR_ENV`` (default ``dev``).
        run_config: A run config (see :func:`load_run_config`) whose sections (``mlflow:``) sit above the profile.
    """
    base = profile_config(env)
    values = {name: asdict(getattr(base, name)) for name in SECTIONS}
    for name in SECTIONS:
        values[name].update((run_config or {}).get(name) or {})
    for section, overrides in env_overrides().items():
        values[section].update(overrides)
    return _build(base.env, values, "run config or environment")
