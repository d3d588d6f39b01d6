"""Tabular run plots: learning curve, confusion matrix + ROC or predicted-vs-actual, permutation importance."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torchmetrics.functional.classification import binary_roc

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ml_tabular.data import TabularDataModule
    from ml_tabular.models import TabularMLP

PERMUTATION_SEED = 0


@torch.no_grad()
def _loss(model: TabularMLP, batch: dict[str, torch.Tensor]) -> float:
    return float(model.compute(batch)[0])


@torch.no_grad()
def permutation_importance(model: TabularMLP, data: TabularDataModule) -> dict[str, float]:
    """Rise of the validation loss when one raw column is shuffled (its indicator with it), per column."""
    val = data.splits["val"]
    base = _loss(model, val)
    generator = torch.Generator().manual_seed(PERMUTATION_SEED)
    rises = {}
    for column, (num_idx, cat_idx) in data.fitted.feature_groups().items():
        order = torch.randperm(len(val["y"]), generator=generator)
        shuffled = dict(val)
        if num_idx:
            shuffled["x_num"] = val["x_num"].clone()
            shuffled["x_num"][:, num_idx] = val["x_num"][order][:, num_idx]
        if cat_idx:
            shuffled["x_cat"] = val["x_cat"].clone()
            shuffled["x_cat"][:, cat_idx] = val["x_cat"][order][:, cat_idx]
        rises[column] = _loss(model, shuffled) - base
    return dict(sorted(rises.items(), key=lambda item: item[1]))


def _learning_curve(history: dict[str, list[tuple[int, float]]]) -> Figure:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 3.5))
    ax = figure.add_subplot()
    for key, points in history.items():
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", markersize=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.legend()
    ax.set_title("learning curve")
    figure.tight_layout()
    return figure


def _classification(probs: torch.Tensor, y: torch.Tensor, classes: list[str]) -> dict[str, Figure]:
    from matplotlib.figure import Figure

    n = len(classes)
    matrix = torch.bincount(y * n + probs.argmax(1), minlength=n * n).reshape(n, n)
    confusion = Figure(figsize=(4.5, 4))
    ax = confusion.add_subplot()
    ax.imshow(matrix, cmap="Blues")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center")
    ax.set_xticks(range(n), classes)
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    ax.set_title("validation confusion matrix")
    confusion.tight_layout()

    roc = Figure(figsize=(4.5, 4))
    ax = roc.add_subplot()
    for k in range(1, n) if n == 2 else range(n):  # binary: the positive class only
        fpr, tpr, _ = binary_roc(probs[:, k], (y == k).long())
        ax.plot(fpr, tpr, label=f"class {classes[k]}")
    ax.plot([0, 1], [0, 1], color="0.7", linestyle="--")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(fontsize=8)
    ax.set_title("validation ROC")
    roc.tight_layout()
    return {"confusion_matrix": confusion, "roc_curve": roc}


def _regression(pred: torch.Tensor, actual: torch.Tensor) -> dict[str, Figure]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 4))
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    left.scatter(actual, pred, s=8, alpha=0.6)
    low, high = float(min(actual.min(), pred.min())), float(max(actual.max(), pred.max()))
    left.plot([low, high], [low, high], color="0.5", linestyle="--")
    left.set_xlabel("actual")
    left.set_ylabel("predicted")
    left.set_title("predicted vs actual (validation)")
    right.scatter(pred, actual - pred, s=8, alpha=0.6)
    right.axhline(0, color="0.5", linestyle="--")
    right.set_xlabel("predicted")
    right.set_ylabel("residual")
    right.set_title("residuals")
    figure.tight_layout()
    return {"predicted_vs_actual": figure}


def _importance(rises: dict[str, float]) -> Figure:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 0.35 * len(rises) + 1.5))
    ax = figure.add_subplot()
    ax.barh(list(rises), list(rises.values()), color="tab:blue")
    ax.set_xlabel("validation loss increase when shuffled")
    ax.set_title("permutation feature importance")
    figure.tight_layout()
    return figure


@torch.no_grad()
def tabular_figures(model: TabularMLP, data: TabularDataModule, history: dict[str, Any]) -> dict[str, Figure]:
    """All tabular plots on the validation split; ``history`` maps metric name -> [(epoch, value)]."""
    was_training = model.training
    model.eval()
    val = data.splits["val"]
    out = model.predict_step(val, 0)
    figures = {"learning_curve": _learning_curve(history)}
    if model.hparams.task == "classification":
        figures |= _classification(out, val["y"], data.fitted.classes)
    else:
        figures |= _regression(out, model.unscale(val["y"]))
    figures["permutation_importance"] = _importance(permutation_importance(model, data))
    model.train(was_training)
    return figures
