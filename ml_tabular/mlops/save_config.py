"""``LoggerSaveConfigCallback``: hands the CLI config to the MLflow logger instead of ``trainer.log_dir``.

Lightning's ``SaveConfigCallback`` writes into ``trainer.log_dir``, which is ``None`` for an
MLflow store that is not a file folder (Lightning issues #18396, #20184, #19441).
"""

from __future__ import annotations

import lightning.pytorch as pl
import yaml
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
        config = yaml.safe_load(self.parser.dump(self.config, skip_none=False))
        model = config.get("model")
        if isinstance(model, dict):  # the dump leaves out linked args (sizes from the data): take them from the model
            linked = {k: v for k, v in pl_module.hparams.items() if not k.startswith("_")}
            model["init_args"] = {**(model.get("init_args") or {}), **linked}
        config_yaml = yaml.safe_dump(config, sort_keys=False)
        for logger in loggers:
            logger.log_config(config_yaml)
