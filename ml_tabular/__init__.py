"""ml_tabular: tabular and time-series MLPs from YAML, tracked as MLflow runs."""

__version__ = "0.1.0"
