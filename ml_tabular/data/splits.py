"""Seeded row splits: stratified by class for classification, plain random for regression."""

from __future__ import annotations

import numpy as np


def split_indices(
    n_rows: int, val_fraction: float, test_fraction: float, seed: int, strata: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Row indices for ``train``/``val``/``test``; each stratum (class) is split in the same proportions."""
    rng = np.random.default_rng(seed)
    groups = [np.arange(n_rows)] if strata is None else [np.flatnonzero(strata == s) for s in np.unique(strata)]
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for group in groups:
        group = rng.permutation(group)
        n_test = round(len(group) * test_fraction)
        n_val = round(len(group) * val_fraction)
        parts["test"].append(group[:n_test])
        parts["val"].append(group[n_test : n_test + n_val])
        parts["train"].append(group[n_test + n_val :])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}
