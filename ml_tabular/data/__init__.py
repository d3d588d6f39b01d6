"""LightningDataModules: they own columns, splits and fitted preprocessing."""

from ml_tabular.data.tabular import TabularDataModule
from ml_tabular.data.timeseries import TimeSeriesDataModule

__all__ = ["TabularDataModule", "TimeSeriesDataModule"]
