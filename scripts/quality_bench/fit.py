"""``ml_tabular fit`` then ``test`` on the best checkpoint, as a user runs them, in this process.

The fit is :class:`ml_tabular.cli.MLTabularCLI` on a shipped config with data overrides only (path, target,
columns, the season of a series); the model and trainer settings are the config's. Tracking is off (Lightning's
CSV logger writes under the fit's own folder). The test runs on the same Trainer with ``ckpt_path="best"``: the
checkpoint with the lowest ``val_loss``, as ``ml_tabular test --ckpt_path .../best.ckpt`` would.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import yaml

from ml_tabular.cli import MLTabularCLI

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {"tabular": REPO / "configs" / "tabular.yaml", "series": REPO / "configs" / "timeseries.yaml"}
OVERRIDES: dict[str, list[str]] = {"tabular": [], "series": []}  # --set flags of quality.py, per config kind


@dataclass
class Fit:
    """A finished fit: its DataModule (fitted, with its splits), the model (the best checkpoint's weights),
    the test metrics of the best checkpoint, the wall and CPU (this process's) seconds of ``fit`` (reading and
    preparing the data included) and the epochs it ran."""

    datamodule: Any
    model: Any
    metrics: dict[str, float]
    seconds: float
    cpu_seconds: float
    epochs: int


def fit_and_test(kind: str, data_args: dict[str, Any], folder: Path, quick: bool, seed: int | None = None) -> Fit:
    """Fit the shipped ``kind`` config (``tabular``/``series``) with ``data_args`` as ``--data.init_args`` flags.

    ``seed`` (``None``: the config's) seeds everything: the split, the shuffle order and the initial weights.

    Everything it writes stays in ``folder``; its console output goes to ``folder/fit.log`` (its tail is
    shown if it fails).
    """
    folder.mkdir(parents=True)
    args = [
        "fit",
        f"--config={CONFIGS[kind]}",
        *(f"--data.init_args.{key}={_flag(value)}" for key, value in data_args.items()),
        "--mlflow.enabled=false",
        f"--trainer.default_root_dir={folder}",
        "--trainer.enable_progress_bar=false",
        *OVERRIDES[kind],
        *(["--trainer.max_epochs=1"] if quick else []),
        *([f"--seed_everything={seed}", f"--data.init_args.seed={seed}"] if seed is not None else []),
    ]
    log = folder / "fit.log"
    with log.open("w") as sink, contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        try:
            start, cpu_start = time.perf_counter(), time.process_time()
            cli = MLTabularCLI(args=args)
            seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
            trainer: pl.Trainer = cli.trainer
            metrics = trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)[0]
        except (Exception, SystemExit) as exc:  # a config error exits
            sink.flush()
            raise RuntimeError(f"ml_tabular {' '.join(args)} failed; its log ends:\n{_tail(log)}") from exc
    metrics = {k: float(v) for k, v in metrics.items()}
    return Fit(cli.datamodule, cli.model, metrics, seconds, cpu_seconds, trainer.current_epoch)


def config_seed(kind: str) -> int:
    """The seed of the split and shuffle order in the shipped ``kind`` config (``data.init_args.seed``)."""
    return int(yaml.safe_load(CONFIGS[kind].read_text())["data"]["init_args"]["seed"])


def _flag(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text().splitlines()[-lines:])
