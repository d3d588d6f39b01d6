"""LightningModules: they own loss, metrics, optimizer and logging; networks live in ``ml_tabular.nn``."""

from ml_tabular.models.base import MLPSystem
from ml_tabular.models.tabular import TabularMLP
from ml_tabular.models.timeseries import TimeSeriesMLP

__all__ = ["MLPSystem", "TabularMLP", "TimeSeriesMLP"]
