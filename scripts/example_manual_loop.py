"""A hand-written PyTorch training loop tracked with ``ml_tabular.mlops.mlflow_utils`` only.

    python scripts/example_manual_loop.py [--epochs 5]

It reads the same ``configs/tabular.yaml`` and ``configs/app.yaml`` as the CLI, trains the tabular
network without Lightning, and records the run (params, tags, config artifacts, epoch metrics) in the
configured store; with ``ML_TABULAR_MLFLOW__ENABLED=false`` it trains without tracking.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ml_tabular.config import get_config, load_run_config
from ml_tabular.data import TabularDataModule
from ml_tabular.mlops.mlflow_utils import log_metrics, start_run_with_config
from ml_tabular.nn import TabularNet

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "tabular.yaml")
    args = parser.parse_args()

    run_cfg = load_run_config(args.config)
    app = get_config(run_config=run_cfg)  # profile < the run config's mlflow: section < ML_TABULAR_MLFLOW__*
    torch.manual_seed(run_cfg.get("seed_everything", 0))
    data = TabularDataModule(**run_cfg["data"]["init_args"])
    data.setup("fit")
    net = TabularNet(data.n_numeric, data.cardinalities, data.n_outputs, hidden_dims=[64, 32], dropout=0.1)
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    with start_run_with_config(app, run_cfg, run_name=f"manual_loop__dataset={data.dataset_name}"):
        for epoch in range(args.epochs):
            net.train()
            for batch in data.train_dataloader():
                optimizer.zero_grad()
                loss = loss_fn(net(batch["x_num"], batch["x_cat"])[:, 0], batch["y"])  # [B, 1 member, C] -> [B, C]
                loss.backward()
                optimizer.step()
            net.eval()
            with torch.no_grad():
                val = data.splits["val"]
                logits = net(val["x_num"], val["x_cat"])[:, 0]
                metrics = {
                    "train_loss": loss.item(),
                    "val_loss": loss_fn(logits, val["y"]).item(),
                    "val_accuracy": (logits.argmax(1) == val["y"]).float().mean().item(),
                }
            log_metrics(metrics, step=epoch)
            print(f"epoch {epoch}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))


if __name__ == "__main__":
    main()
