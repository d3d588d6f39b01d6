"""The code MLflow runs to build a run's model ("models from code": no pickled Python object is stored)."""

from mlflow.models import set_model

from ml_tabular.mlops.pyfunc import CheckpointModel

set_model(CheckpointModel())
