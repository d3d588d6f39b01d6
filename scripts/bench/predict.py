"""``predict`` throughput: raw file in, predictions file out, against a bare forward pass on ready tensors."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

from bench.context import Context
from bench.results import Measurement, Results, Target, ratios
from bench.systems import BATCH_SIZE, tabular_datamodule, tabular_system, trainer
from ml_tabular.data import TabularDataModule
from ml_tabular.data.io import read_table, write_table
from ml_tabular.models import TabularMLP


def cli_predict_seconds(model: TabularMLP, dm: TabularDataModule, output: Path, root: Path) -> float:
    """The CLI's predict path: read + transform the raw file, ``Trainer.predict``, frame, Parquet write."""
    predictor = trainer(1, False, root, [])
    start = time.perf_counter()
    outputs = predictor.predict(model, datamodule=dm, return_predictions=True)
    write_table(dm.predictions_frame(outputs), output)
    return time.perf_counter() - start


def bare_forward_seconds(model: TabularMLP, x_num: Tensor, x_cat: Tensor) -> float:
    """A forward pass over ready tensors, in batches of the same size, without autograd."""
    model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        for begin in range(0, len(x_num), BATCH_SIZE):
            model(x_num[begin : begin + BATCH_SIZE], x_cat[begin : begin + BATCH_SIZE])
    return time.perf_counter() - start


def predict_throughput(ctx: Context) -> Results:
    path = ctx.table()
    dm = tabular_datamodule(path, predict_path=path)
    dm.prepare()
    model = tabular_system(dm)
    ready = dm.fitted.transform(read_table(path), str(path), with_target=False)
    count = len(ready["x_num"])
    cli, bare = [], []
    for _ in range(ctx.repeats):
        cli.append(count / cli_predict_seconds(model, dm, ctx.tmp / "predictions.parquet", ctx.tmp))
        bare.append(count / bare_forward_seconds(model, ready["x_num"], ready["x_cat"]))
    note = f"{count} rows, batch {BATCH_SIZE}"
    return Results(
        measurements=[
            Measurement("predict_cli_path", "rows/s", cli, note + "; Parquet in, Parquet out"),
            Measurement("predict_bare_forward", "rows/s", bare, note),
        ],
        targets=[
            Target("predict_cli_vs_bare", ratios(cli, bare), ">=", 0.5, "predict_cli_path / predict_bare_forward")
        ],
    )
