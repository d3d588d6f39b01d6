"""Checkpoints: read and checked before anything uses them, and a ``last.ckpt`` that is always the last epoch."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from ml_tabular.errors import ConfigError

RUN_ID_KEY = "mlflow_run_id"  # the MLflow run that wrote a checkpoint
MARKER_KEY = "ml_tabular"  # what ml_tabular adds to a checkpoint: model and data classes, package version


@dataclass(frozen=True)
class CheckpointInfo:
    """What a checkpoint says about itself, read once before any run or data file is touched.

    Attributes:
        path: The checkpoint file.
        model_class: Import path of the model class (``ml_tabular.models.TabularMLP``).
        data_class: Import path of the DataModule class, when recorded.
        hparams: The model's init arguments, linked sizes included.
        data_states: DataModule states by class name (Lightning stores them under ``__qualname__``).
        run_id: The MLflow run that wrote it (``None`` when made without tracking).
        epoch: The epoch index it was saved in.
        data_hparams: The DataModule's init arguments (empty in checkpoints made before they were saved).
        weights: The model's ``state_dict``.
    """

    path: Path
    model_class: str
    data_class: str | None
    hparams: dict[str, Any]
    data_states: dict[str, dict[str, Any]]
    run_id: str | None
    epoch: int
    data_hparams: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict, repr=False)

    def check_classes(self, model_class: str, data_class: str) -> dict[str, Any]:
        """The DataModule state to restore, after checking the config trains the same model family on the same
        kind of data; a mismatch is a :class:`ConfigError` naming both."""
        if _resolve(model_class) != _resolve(self.model_class):
            raise ConfigError(
                f"--ckpt_path: '{self.path}' holds a {self.model_class} but the config's model is {model_class}. "
                "Use the config the checkpoint was trained with (or its model.class_path)."
            )
        name = data_class.rsplit(".", 1)[-1]
        recorded = self.data_class is not None and _resolve(self.data_class) != _resolve(data_class)
        if recorded or name not in self.data_states:
            made_with = self.data_class or ", ".join(self.data_states) or "no DataModule"
            raise ConfigError(
                f"--ckpt_path: '{self.path}' was trained with {made_with} but the config's data is {data_class}. "
                "Use the config the checkpoint was trained with (or its data.class_path)."
            )
        return self.data_states[name]


def read_checkpoint(path: str | Path, key: str = "--ckpt_path") -> CheckpointInfo:
    """Load a checkpoint with ``weights_only`` (so it cannot run code) and check it; else one clear ConfigError.

    Refused: a missing or empty file, one that is truncated or not a checkpoint, a Lightning checkpoint that
    ml_tabular did not make.
    """
    path = Path(path)
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(f"{key}: checkpoint '{path}' {what}. Pass the path of a .ckpt file.")
    if path.stat().st_size == 0:
        raise ConfigError(f"{key}: checkpoint '{path}' is empty (0 bytes; an interrupted copy?). Use another one.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many kinds for bytes that are not a checkpoint (IndexError, ...)
        raise ConfigError(
            f"{key}: '{path}' is not a readable checkpoint (truncated, not a .ckpt file, or holding objects "
            f"that would run code when loaded): {_reason(err)}"
        ) from err
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "epoch" not in checkpoint:
        raise ConfigError(f"{key}: '{path}' is not a Lightning checkpoint (no state_dict/epoch in it).")
    marker = checkpoint.get(MARKER_KEY) or {}
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    model_class = marker.get("model_class") or hparams.get("_class_path")
    if not model_class:
        raise ConfigError(f"{key}: '{path}' is a Lightning checkpoint, but not one made by ml_tabular.")
    return CheckpointInfo(
        path=path,
        model_class=model_class,
        data_class=marker.get("data_class"),
        hparams=_public(hparams),
        data_states={k: v for k, v in checkpoint.items() if k.endswith("DataModule") and isinstance(v, dict)},
        run_id=checkpoint.get(RUN_ID_KEY),
        epoch=int(checkpoint["epoch"]),
        data_hparams=_public(checkpoint.get("datamodule_hyper_parameters") or {}),
        weights=checkpoint["state_dict"],
    )


def _public(hparams: dict[str, Any]) -> dict[str, Any]:
    """``hparams`` without LightningCLI's bookkeeping (``_class_path``, ``_instantiator``)."""
    return {k: v for k, v in hparams.items() if not k.startswith("_")}


def _reason(err: Exception) -> str:
    """torch's error, cut to its first line; its advice to load with ``weights_only=False`` is left out."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip()
    if text.startswith("Weights only load failed"):
        return "weights-only loading refused its contents"
    first = text.splitlines()[0] if text else type(err).__name__
    return first.split(". ", 1)[0].rstrip(".") + "."  # torch adds sentences of advice on corrupted files


def class_path(cls: type) -> str:
    """Import path of a class where it is defined (``ml_tabular.models.tabular.TabularMLP``)."""
    return f"{cls.__module__}.{cls.__qualname__}"


def import_class(path: str) -> type:
    """The class at import path ``path``."""
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _resolve(path: str) -> str:
    """The defining import path of the class at ``path`` (configs may name it by a shorter public path)."""
    try:
        return class_path(import_class(path))
    except (ImportError, AttributeError, ValueError):
        return path


class LastEpochCheckpoint(ModelCheckpoint):
    """Writes ``last.ckpt`` at the end of every epoch.

    Lightning's ``ModelCheckpoint(save_last=True)`` rewrites ``last.ckpt`` only when its monitored checkpoint
    is saved, so with a ``val_loss`` monitor it holds the best epoch, and resuming from it repeats epochs.

    Args:
        dirpath: Folder of the checkpoints (``None``: the logger's run folder, as for the ``checkpoint:`` section).
    """

    def __init__(self, dirpath: str | None = None) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=self.CHECKPOINT_NAME_LAST,
            monitor=None,
            save_top_k=1,
            enable_version_counter=False,
        )


def with_last_epoch_checkpoints(callbacks: list[Callback]) -> list[Callback]:
    """``callbacks`` with each ``ModelCheckpoint(save_last=True)`` turned into the monitored checkpoint alone
    plus a :class:`LastEpochCheckpoint` in the same folder."""
    extra: list[Callback] = []
    for callback in callbacks:
        ours = isinstance(callback, LastEpochCheckpoint)
        if isinstance(callback, ModelCheckpoint) and not ours and callback.save_last:
            callback.save_last = False
            extra.append(LastEpochCheckpoint(dirpath=callback.dirpath))
    return [*callbacks, *extra]
