"""``LoggerSaveConfigCallback``: hands the CLI config to the MLflow logger instead of ``trainer.log_dir``.

Lightning's ``SaveConfigCallback`` writes into ``trainer.log_dir``, which is ``None`` for an
MLflow store that is not a file folder (Lightning issues #18396, #20184, #19441).
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.cli import SaveConfigCallback


class LoggerSaveConfigCallback(SaveConfigCallback):
    """Sends the effective config to every logger with a ``log_config`` method (at ``fit``); with no
    such logger, saves ``config.yaml`` into the logger's folder as Lightning does."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.save_to_log_dir = trainer.logger is not None and not self._config_loggers(trainer)
        super().setup(trainer, pl_module, stage)

    @staticmethod
    def _config_loggers(trainer: pl.Trainer) -> list:
        return [logger for logger in trainer.loggers if callable(getattr(logger, "log_config", None))]

    def save_config(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        loggers = self._config_loggers(trainer)
        if stage != "fit" or not loggers:
            return
        config_yaml = self.parser.dump(self.config, skip_none=False)
        for logger in loggers:
            logger.log_config(config_yaml)
