"""The Trainer the CLI builds: its progress bar redraws every few steps unless the config says otherwise, and the
``checkpoint:`` section gives way to ``trainer.enable_checkpointing: false``."""

from __future__ import annotations

from conftest import REPO, TABULAR_CONFIG
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar

from ml_tabular.cli import PROGRESS_BAR_REFRESH_STEPS, MLTabularCLI

DEMO = REPO / "data" / "titanic.csv"


def cli(*flags: str) -> MLTabularCLI:
    args = ["--config", str(TABULAR_CONFIG), "--data.init_args.path", str(DEMO), "--mlflow.enabled", "false", *flags]
    return MLTabularCLI(args=args, run=False)


def test_default_bar_redraws_every_few_steps(isolated):
    bar = cli().trainer.progress_bar_callback
    assert isinstance(bar, TQDMProgressBar)
    assert bar.refresh_rate == PROGRESS_BAR_REFRESH_STEPS > 1


def test_bar_can_be_turned_off(isolated):
    assert cli("--trainer.enable_progress_bar", "false").trainer.progress_bar_callback is None


def test_a_bar_from_the_config_is_kept(isolated):
    trainer = cli("--trainer.callbacks+=TQDMProgressBar", "--trainer.callbacks.refresh_rate=5").trainer
    assert trainer.progress_bar_callback.refresh_rate == 5


def test_checkpointing_is_on_by_default_and_can_be_turned_off(isolated):
    assert isinstance(cli().trainer.checkpoint_callback, ModelCheckpoint)
    trainer = cli("--trainer.enable_checkpointing", "false").trainer
    assert trainer.checkpoint_callback is None
    assert not any(isinstance(c, ModelCheckpoint) for c in trainer.callbacks)
