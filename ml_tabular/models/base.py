"""The shared LightningModule contract: one step for every stage, epoch-level metrics, resumable RNG."""

from __future__ import annotations

import math
from importlib.metadata import version
from typing import Any, ClassVar, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection

from ml_tabular.checkpoint import MARKER_KEY, class_path
from ml_tabular.errors import ModelError

Batch = dict[str, Tensor]
STAGES = ("train", "val", "test")
LRSchedule = Literal["constant", "warmup_cosine"]
WARMUP_SHARE = 0.1  # of the training steps, for warmup_cosine


def warmup_cosine(total_steps: int, warmup_share: float = WARMUP_SHARE) -> Any:
    """The learning-rate factor at a step: linear warm-up, then cosine decay to 0 at ``total_steps`` (held there
    after, so a resumed run that trains longer does not fail)."""
    warmup = max(1, round(total_steps * warmup_share))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def check_hparams(
    hidden_dims: list[int], dropout: float, lr: float, weight_decay: float, embedding_dims: list[int] | None = None
) -> None:
    """Raise a one-line :class:`ModelError` naming the first out-of-range hyperparameter.

    Checked here, before any layer is built, so a bad value on the command line reads as the key to fix
    instead of a torch traceback. The comparisons are written so that NaN fails them too.
    """
    rules = {
        "dropout": (0 <= dropout < 1, "must be in [0, 1)", dropout),
        "hidden_dims": (all(d >= 1 for d in hidden_dims), "entries must be >= 1", hidden_dims),
        "embedding_dims": (all(d >= 1 for d in embedding_dims or []), "entries must be >= 1", embedding_dims),
        "lr": (lr > 0, "must be > 0", lr),
        "weight_decay": (weight_decay >= 0, "must be >= 0", weight_decay),
    }
    for key, (ok, rule, value) in rules.items():
        if not ok:
            raise ModelError(f"model.init_args.{key} {rule}, got {value}.")


def batch_size(batch: Batch) -> int:
    """Examples in a batch (rows or windows): the length of its first tensor."""
    return len(next(iter(batch.values())))


class MLPSystem(pl.LightningModule):
    """Base of the ml_tabular models: owns loss bookkeeping, metrics, optimizer and RNG state.

    Subclasses build the network, then call :meth:`_init_metrics`, and implement
    :meth:`loss_and_output` and :meth:`metric_inputs`. Metrics are accumulated over the epoch
    (torchmetrics) and logged once per epoch as ``<stage>_loss`` and ``<stage>_<metric>``; nothing is
    logged per step. A training step only computes its loss: the step's loss tensor is kept and the
    epoch's mean is taken once at its end, so training pays no per-step metric bookkeeping.
    """

    model_type: ClassVar[str]

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets ``_current_fx_name`` around every hook it calls, 44 times a training step; it is a
        # plain string, so it skips ``nn.Module.__setattr__``'s parameter/module/buffer checks (~4 us each).
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _init_metrics(self, metrics: MetricCollection) -> None:
        # keys are "<stage>_..." because a ModuleDict key may not shadow nn.Module.train
        self.losses = nn.ModuleDict({f"{stage}_loss": MeanMetric() for stage in STAGES})
        self.metrics = nn.ModuleDict({f"{s}_metrics": metrics.clone(prefix=f"{s}_") for s in ("val", "test")})

        self._train_losses: list[tuple[Tensor, int]] = []  # (detached step loss, batch size) this epoch

    def loss_and_output(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """Return ``(loss, network_output)`` for one batch."""
        raise NotImplementedError

    def metric_inputs(self, output: Tensor, batch: Batch) -> tuple[Tensor, Tensor]:
        """Return ``(predictions, targets)`` for the metrics, from a detached network output."""
        raise NotImplementedError

    def compute(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """Return ``(loss, metric_predictions, metric_targets)`` for one batch."""
        loss, output = self.loss_and_output(batch)
        return (loss, *self.metric_inputs(output.detach(), batch))

    def _evaluation_step(self, batch: Batch, stage: str) -> None:
        loss, preds, target = self.compute(batch)
        self.losses[f"{stage}_loss"].update(loss, weight=batch_size(batch))
        self.metrics[f"{stage}_metrics"].update(preds, target)

    def _log_epoch(self, stage: str) -> None:
        loss = self.losses[f"{stage}_loss"]
        if stage == "train" and self._train_losses:
            losses, sizes = zip(*self._train_losses, strict=True)
            loss.update(torch.stack(losses), weight=torch.tensor(sizes, dtype=torch.float32))
            self._train_losses = []
        values = {f"{stage}_loss": loss.compute()}
        loss.reset()
        if stage != "train":
            metrics = self.metrics[f"{stage}_metrics"]
            values.update(metrics.compute())
            metrics.reset()
        # the torchmetrics values above are already reduced over the processes of a DDP run; sync_dist averages
        # those equal values once more (a few scalars an epoch), which keeps Lightning from warning on every key
        self.log_dict(values, prog_bar=stage != "test", sync_dist=True)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss = self.loss_and_output(batch)[0]
        self._train_losses.append((loss.detach(), batch_size(batch)))
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def configure_optimizers(self) -> Any:
        """AdamW, and with ``lr_schedule: warmup_cosine`` its schedule, stepped every training step."""
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.get("lr_schedule", "constant") == "constant":
            return optimizer
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ModelError("model.init_args.lr_schedule warmup_cosine needs trainer.max_epochs (or max_steps) set.")
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(int(total)))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the torch RNG (dropout), so a resumed run continues bit-identically, and what made the checkpoint."""
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        data = self.trainer.datamodule
        checkpoint[MARKER_KEY] = {
            "model_class": class_path(type(self)),
            "data_class": None if data is None else class_path(type(data)),
            "version": version("ml_tabular"),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])
