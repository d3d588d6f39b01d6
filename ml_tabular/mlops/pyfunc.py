"""``CheckpointModel``: the MLflow (pyfunc) model of a run: a checkpoint, and ml_tabular's code to use it."""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from ml_tabular.errors import AppError
from ml_tabular.predictor import Predictor

CHECKPOINT_ARTIFACT = "checkpoint"  # the model's artifact: the best checkpoint of its run


class CheckpointModel(mlflow.pyfunc.PythonModel):
    """Raw rows (a DataFrame with the training columns) in, the table ``ml_tabular predict`` writes out.

    Everything it needs is in the checkpoint stored with it (weights, fitted preprocessing, class labels,
    target scale, series settings); bad rows raise an ``MlflowException`` with ml_tabular's one-line message
    (HTTP 400 from the scoring server).
    """

    def load_context(self, context: Any) -> None:
        self.predictor = Predictor.from_checkpoint(context.artifacts[CHECKPOINT_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        try:
            return self.predictor.predict(model_input)
        except AppError as err:
            raise MlflowException(str(err), error_code=INVALID_PARAMETER_VALUE) from None
