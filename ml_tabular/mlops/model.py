"""The run's MLflow model: logged at the end of ``fit`` from the best checkpoint, linked to the run."""

from __future__ import annotations

import logging
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pandas as pd
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from ml_tabular.checkpoint import LastEpochCheckpoint, read_checkpoint
from ml_tabular.mlops.logger import MLTabularLogger
from ml_tabular.mlops.recorder import DIGEST_CHARS
from ml_tabular.mlops.secrets import redact

log = logging.getLogger(__name__)

MODEL_NAME = "model"  # the LoggedModel's name: runs:/<run_id>/model
MODEL_CODE = Path(__file__).with_name("model_code.py")
REQUIREMENTS = ("ml_tabular", "torch", "lightning", "torchmetrics", "pandas", "pyarrow")


def requirements() -> list[str]:
    """The model's pip requirements: ml_tabular and what it runs on, at the versions it was logged with."""
    return [f"{name}=={metadata.version(name)}" for name in REQUIREMENTS]


def log_checkpoint_model(
    tracking_uri: str,
    run_id: str,
    checkpoint: str | Path,
    example: pd.DataFrame,
    tags: dict[str, Any] | None = None,
    time_columns: tuple[str, ...] = (),
) -> Any:
    """Log ``checkpoint`` as the MLflow model ``model`` of run ``run_id`` and return its ``ModelInfo``.

    The model lives in the run's experiment, carries the run's params and ``tags``, and has the run's metrics of
    the checkpoint's epoch linked to it; its signature names every input and output column, inferred from
    ``example`` (raw training rows) and the predictions on it, except that ``time_columns`` take any type (dates
    and times, or text read as the training file's was). Sets MLflow's current tracking URI (``Model.log`` writes
    there).
    """
    import mlflow
    from mlflow.models import Model, infer_signature
    from mlflow.types.schema import AnyType, ColSpec, Schema

    from ml_tabular.mlops.pyfunc import CHECKPOINT_ARTIFACT
    from ml_tabular.predictor import Predictor

    saved = read_checkpoint(checkpoint, key="checkpoint")
    predictions = Predictor.from_info(saved).predict(example)
    with warnings.catch_warnings():  # its integer-column hint: example_rows() already made them floats
        warnings.simplefilter("ignore", UserWarning)
        signature = infer_signature(example, predictions)
    signature.inputs = Schema(  # every column required: the model reads each one (missing values are fine)
        [ColSpec(AnyType() if c.name in time_columns else c.type, c.name) for c in signature.inputs.inputs]
    )
    client = mlflow.MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    model = client.create_logged_model(  # in the run's experiment (Model.log alone would use the active one)
        run.info.experiment_id,
        name=MODEL_NAME,
        source_run_id=run_id,
        tags={k: str(v) for k, v in redact(tags or {}).items()},
        params=run.data.params,
    )
    mlflow.set_tracking_uri(tracking_uri)
    return Model.log(
        artifact_path=None,  # MLflow 3 names a model by ``name``; the argument is still positional
        name=MODEL_NAME,
        flavor=mlflow.pyfunc,
        run_id=run_id,
        model_id=model.model_id,
        python_model=str(MODEL_CODE),
        artifacts={CHECKPOINT_ARTIFACT: str(checkpoint)},
        signature=signature,
        input_example=example,
        pip_requirements=requirements(),
        step=saved.epoch,  # links that epoch's metrics to the model
    )


def best_checkpoint(trainer: pl.Trainer) -> str:
    """The monitored checkpoint callback's best file ('' if none was saved)."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and not isinstance(callback, LastEpochCheckpoint):
            return callback.best_model_path
    return ""


class LogModelCallback(Callback):
    """Logs the run's MLflow model from the best checkpoint when ``fit`` ends well (not when it is stopped)."""

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loggers = [logger for logger in trainer.loggers if isinstance(logger, MLTabularLogger)]
        if not trainer.is_global_zero or not loggers:
            return
        checkpoint = best_checkpoint(trainer)
        if not checkpoint:
            log.warning("no MLflow model: no checkpoint was saved (checkpointing is off or no epoch completed)")
            return
        data = trainer.datamodule
        state = getattr(data, "state", None)
        split = getattr(state, "split", None)
        tags = {
            "model_type": getattr(pl_module, "model_type", type(pl_module).__name__),
            "dataset_name": getattr(data, "dataset_name", ""),
            "dataset_digest": split.sha256[:DIGEST_CHARS] if split is not None else "",
            "source_checkpoint": Path(checkpoint).name,
        }
        for logger in loggers:
            time_columns = (data.timestamp_column,) if hasattr(data, "timestamp_column") else ()
            example = data.example_rows()
            info = logger.experiment.log_model(checkpoint, example, tags, time_columns)
            if info is None:
                log.warning("MLflow model kept in %s until the tracking server is back", logger.experiment.spool.folder)
                continue
            log.info(
                "MLflow model %s (%s); register it: ml_tabular register --run-id %s --name NAME --alias champion",
                info.model_uri, Path(checkpoint).name, logger.run_id,
            )  # fmt: skip
