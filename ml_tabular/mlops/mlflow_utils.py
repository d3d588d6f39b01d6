"""MLflow helpers for hand-written training scripts; each is a no-op when tracking is disabled.

They share their implementation with the Lightning logger (:class:`~ml_tabular.mlops.recorder.RunRecorder`,
:mod:`~ml_tabular.mlops.tracking`), so a script's run records what a CLI run records. ``mlflow`` is
imported only when tracking is on.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ml_tabular.config import AppConfig, MlflowConfig
from ml_tabular.mlops.naming import DEFAULT_EXPERIMENTS, DEFAULT_RUN_NAMES
from ml_tabular.mlops.recorder import RunRecorder
from ml_tabular.mlops.tracking import (
    format_run_name,
    is_mlflow_available,
    require_mlflow,
    resolve_tracking_uri,
    run_tags,
)

__all__ = [
    "get_mlflow_client",
    "is_mlflow_available",
    "log_artifacts_from_paths",
    "log_common_tags",
    "log_config",
    "log_metrics",
    "register_best_model",
    "set_experiment_from_config",
    "start_run_with_config",
]


def _section(cfg: AppConfig | MlflowConfig) -> MlflowConfig:
    return cfg.mlflow if isinstance(cfg, AppConfig) else cfg


def _active_recorder() -> RunRecorder | None:
    """The recorder of the active ``mlflow`` run, without importing mlflow if nothing did."""
    if "mlflow" not in sys.modules:
        return None
    import mlflow

    run = mlflow.active_run()
    return RunRecorder(mlflow.MlflowClient(), run.info.run_id) if run else None


def describe_run(run_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``model`` (type), ``dataset`` and ``seed`` of a run config, in the CLI layout or a flat one."""
    model = run_cfg.get("model", {})
    data = run_cfg.get("data", {})
    class_path = model.get("class_path", "") if isinstance(model, Mapping) else ""
    model_type = run_cfg.get("model_type") or {"TabularMLP": "tabular_mlp", "TimeSeriesMLP": "ts_mlp"}.get(
        class_path.rsplit(".", 1)[-1], "custom"
    )
    path = (data.get("init_args", data) if isinstance(data, Mapping) else {}).get("path") or run_cfg.get("path")
    return {
        "model": model_type,
        "dataset": run_cfg.get("dataset_name") or (Path(path).stem if path else "unknown"),
        "seed": run_cfg.get("seed_everything", run_cfg.get("seed", "none")),
    }


def get_mlflow_client(cfg: AppConfig | MlflowConfig) -> Any:
    """An ``MlflowClient`` on the configured store, or ``None`` when tracking is off."""
    section = _section(cfg)
    if not section.enabled:
        return None
    require_mlflow()
    from mlflow import MlflowClient

    return MlflowClient(resolve_tracking_uri(section.tracking_uri))


def set_experiment_from_config(cfg: AppConfig | MlflowConfig, model_type: str | None = None) -> str | None:
    """Point ``mlflow`` at the configured store and experiment; returns the experiment id (``None`` if off)."""
    section = _section(cfg)
    if not section.enabled:
        return None
    require_mlflow()
    import mlflow

    mlflow.set_tracking_uri(resolve_tracking_uri(section.tracking_uri))
    name = section.experiment_name or DEFAULT_EXPERIMENTS.get(model_type or "", "ml_tabular")
    return mlflow.set_experiment(name).experiment_id


@contextmanager
def start_run_with_config(
    cfg: AppConfig | MlflowConfig, run_cfg: Mapping[str, Any], run_name: str | None = None
) -> Iterator[Any]:
    """Start a run that records ``run_cfg`` and the common tags; yields the run (``None`` when off).

    The run ends FINISHED, FAILED on an exception, or KILLED on Ctrl-C.
    """
    section = _section(cfg)
    if not section.enabled:
        yield None
        return
    described = describe_run(run_cfg)
    set_experiment_from_config(section, described["model"])
    import mlflow

    template = section.run_name or DEFAULT_RUN_NAMES.get(described["model"])
    name = run_name or format_run_name(template, {**_leaves(run_cfg), **described})
    run = mlflow.start_run(run_name=name)
    try:
        log_config(cfg, run_cfg)
        log_common_tags(cfg, run_cfg)
        yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


def _leaves(tree: Mapping[str, Any]) -> dict[str, Any]:
    leaves: dict[str, Any] = {}
    for key, value in tree.items():
        leaves.update(_leaves(value) if isinstance(value, Mapping) else {key: value})
    return leaves


def log_config(cfg: AppConfig | MlflowConfig, run_cfg: Mapping[str, Any]) -> None:
    """``run_cfg`` as dotted params and ``configs/run_config.yaml``; the app config as its own artifact."""
    recorder = _active_recorder()
    if recorder is None or not _section(cfg).enabled:
        return
    app = cfg if isinstance(cfg, AppConfig) else AppConfig(mlflow=cfg)
    recorder.log_configs(run_cfg, app.to_dict(), artifacts=app.mlflow.log_artifacts)


def log_common_tags(cfg: AppConfig | MlflowConfig, run_cfg: Mapping[str, Any]) -> None:
    """The INTERFACE tags (model_type, framework, env, dataset_name, seed, git state) and library versions."""
    recorder = _active_recorder()
    if recorder is None or not _section(cfg).enabled:
        return
    described = describe_run(run_cfg)
    env = cfg.env if isinstance(cfg, AppConfig) else "dev"
    framework = run_cfg.get("framework", "pytorch")  # a hand-written loop, unless the config says otherwise
    recorder.set_tags(run_tags(described["model"], described["dataset"], described["seed"], env, framework))
    recorder.record_environment()


def log_metrics(metrics: Mapping[str, float], step: int | None = None) -> None:
    """Log several metrics in one call to the active run (a no-op without one)."""
    recorder = _active_recorder()
    if recorder is not None:
        recorder.log_metrics(metrics, step)


def log_artifacts_from_paths(paths: Iterable[str | Path], artifact_subdir: str | None = None) -> None:
    """Upload files and folders to the active run, under ``artifact_subdir`` (a no-op without a run)."""
    recorder = _active_recorder()
    if recorder is not None:
        recorder.upload(paths, artifact_subdir)


def register_best_model(
    run_id: str,
    model_uri: str | None,
    registered_model_name: str,
    alias: str | None = None,
    *,
    description: str | None = None,
) -> Any:
    """Register a run's MLflow model on the current tracking store as ``ml_tabular register --run-id`` does.

    Args:
        run_id: The run; its best ``val_loss``, dataset digest and git commit are recorded as version tags.
        model_uri: ``None`` or ``runs:/<run_id>/model`` for the run's latest MLflow model, or any URI
            ``mlflow.register_model`` takes (``models:/m-...``).
        registered_model_name: Registered model to add a version to (made on first use).
        alias: Alias to point at the new version (``champion``, ``staging``, ...); ``None``: none.
        description: Version description (default: the run, its experiment and metric).

    Returns:
        The new ``ModelVersion``.
    """
    require_mlflow()
    from ml_tabular.mlops.registry import DEFAULT_METRIC, Registry, metric_mode

    registry = Registry()
    run = registry.run(run_id)
    value = registry.best_value(run_id, DEFAULT_METRIC, metric_mode(DEFAULT_METRIC, None))
    registration = registry.register(
        run, registered_model_name, alias, DEFAULT_METRIC, value, model_uri=model_uri, description=description
    )
    return registry.client.get_model_version(registered_model_name, registration.version)
