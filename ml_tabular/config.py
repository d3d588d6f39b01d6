"""Application configuration: the ``mlflow:`` section every command honours."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MlflowConfig:
    """How runs are tracked in MLflow.

    Args:
        enabled: Track the run in MLflow (needs the ``[mlops]`` extra).
        tracking_uri: Tracking store; ``null`` uses ``MLFLOW_TRACKING_URI`` if set, else the embedded
            SQLite store ``sqlite:///<cwd>/mlruns/mlflow.db``.
        experiment_name: MLflow experiment the run goes to.
        run_name: Run-name template; ``{dataset}``, ``{seed}``, ``{model}`` and any data/model init arg
            (``{input_size}``, ``{horizon}``, ...) are filled from the run.
        log_artifacts: Upload configs, checkpoints and plots as run artifacts.
    """

    enabled: bool = False
    tracking_uri: str | None = None
    experiment_name: str = "ml_tabular"
    run_name: str | None = None
    log_artifacts: bool = True
