"""``Predictor``: a trained model and its data state, loaded from a checkpoint alone: raw rows in, predictions out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pandas as pd
import torch

from ml_tabular.checkpoint import CheckpointInfo, import_class, read_checkpoint
from ml_tabular.data.io import INPUT_ROWS
from ml_tabular.errors import ConfigError, DataError
from ml_tabular.models.base import MLPSystem


class Predictor:
    """What ``ml_tabular predict`` does, for rows in memory: the same preprocessing, network and output table.

    It is what the MLflow model runs, so ``predict``, ``score`` and serving give the same answer.

    Args:
        model: The trained network, in eval mode.
        data: Its DataModule, holding the fitted state (no data file is read).
    """

    def __init__(self, model: MLPSystem, data: pl.LightningDataModule) -> None:
        self.model = model.eval()
        self.data = data

    @classmethod
    def from_checkpoint(cls, path: str | Path) -> Predictor:
        """Load a checkpoint made by ``ml_tabular fit`` (with ``weights_only``, so it cannot run code)."""
        return cls.from_info(read_checkpoint(path, key="checkpoint"))

    @classmethod
    def from_info(cls, info: CheckpointInfo) -> Predictor:
        """The predictor of a checkpoint already read with :func:`~ml_tabular.checkpoint.read_checkpoint`."""
        if info.data_class is None or not info.data_hparams:
            raise ConfigError(
                f"checkpoint '{info.path}' was made by an older ml_tabular that did not store its DataModule's "
                "arguments: train it again to serve or score it."
            )
        model = import_class(info.model_class)(**info.hparams)
        model.load_state_dict(info.weights)
        return cls(model, _datamodule(info))

    @property
    def input_columns(self) -> list[str]:
        """The raw columns the model reads."""
        return self.data.input_columns

    def predict(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The predictions table of ``rows`` (raw rows; for a forecaster, the recent history of each series in
        long form): the table ``ml_tabular predict`` writes."""
        if len(rows) == 0:
            raise DataError(f"{INPUT_ROWS} are empty: send at least one row.")
        with torch.inference_mode():
            loader = self.data.rows_loader(rows)
            outputs = [self.model.predict_step(batch, i) for i, batch in enumerate(loader)]
        return self.data.predictions_frame(outputs)


def _datamodule(info: CheckpointInfo) -> Any:
    data = import_class(info.data_class)(**info.data_hparams)
    data.load_state_dict(info.data_states[info.data_class.rsplit(".", 1)[-1]])
    return data
