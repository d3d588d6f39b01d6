"""LightningDataModules: they own columns, splits and fitted preprocessing."""

from ml_tabular.data.tabular import TabularDataModule

__all__ = ["TabularDataModule"]
