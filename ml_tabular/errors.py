"""User-facing errors: the CLI prints these as one message and exits non-zero (no traceback)."""


class AppError(Exception):
    """A mistake the user can fix; the message names the file, key or column and the fix."""


class ConfigError(AppError):
    """A configuration value is missing, malformed or inconsistent."""


class DataError(AppError):
    """An input table or series cannot be used as configured."""


class ModelError(AppError):
    """A model cannot be built or loaded from what it was given."""


class TrackingError(AppError):
    """The MLflow tracking store cannot be used as configured."""
