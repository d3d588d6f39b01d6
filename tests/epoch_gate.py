"""A test-only Lightning callback that pauses training at chosen epochs, so a test can act (kill a server, stop a
database) at a known point of a real run in another process."""

from __future__ import annotations

import time
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback


class EpochGate(Callback):
    """At the start of each epoch in ``epochs`` (the earlier epochs' metrics are logged by then), create
    ``<folder>/at-<epoch>`` and wait until the test creates ``<folder>/go-<epoch>``.

    Args:
        folder: Where the two processes meet.
        epochs: The epochs to stop at.
        timeout: Seconds to wait for ``go-<epoch>`` before failing.
    """

    def __init__(self, folder: str, epochs: list[int], timeout: float = 300) -> None:
        self.folder = Path(folder)
        self.epochs = set(epochs)
        self.timeout = timeout

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if epoch not in self.epochs:
            return
        (self.folder / f"at-{epoch}").touch()
        deadline = time.monotonic() + self.timeout
        while not (self.folder / f"go-{epoch}").exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no go-{epoch} in {self.folder} after {self.timeout} s")
            time.sleep(0.05)


def gate_args(folder: Path, epochs: list[int]) -> list[str]:
    """CLI args adding an :class:`EpochGate` to the trainer's callbacks (``tests/`` must be on PYTHONPATH)."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = f'{{"class_path": "epoch_gate.EpochGate", "init_args": {{"folder": "{folder}", "epochs": {epochs}}}}}'
    return ["--trainer.callbacks+", spec]


def wait_for(path: Path, timeout: float = 300) -> None:
    """Wait until ``path`` exists."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.05)
