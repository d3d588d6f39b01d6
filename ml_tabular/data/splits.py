"""Seeded row splits: stratified by class for classification, plain random for regression."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def _groups(n_rows: int, strata: np.ndarray | None) -> list[np.ndarray]:
    """Rows of each stratum, ascending (one argsort, not one pass per class); all rows if ``strata`` is None."""
    if strata is None:
        return [np.arange(n_rows)]
    order = np.argsort(strata, kind="stable")
    return np.split(order, np.cumsum(np.bincount(strata))[:-1])


def split_indices(
    n_rows: int, val_fraction: float, test_fraction: float, seed: int, strata: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Sorted row indices for ``train``/``val``/``test``; each stratum is split in the same proportions.

    ``strata`` holds each row's class index (0, 1, ...); ``None`` splits all rows as one group.
    """
    rng = np.random.default_rng(seed)
    split = np.zeros(n_rows, dtype=np.int8)  # position in SPLITS: train unless drawn for test or val
    for group in _groups(n_rows, strata):
        group = rng.permutation(group)
        n_test = round(len(group) * test_fraction)
        n_val = round(len(group) * val_fraction)
        split[group[:n_test]] = SPLITS.index("test")
        split[group[n_test : n_test + n_val]] = SPLITS.index("val")
    return {name: np.flatnonzero(split == i) for i, name in enumerate(SPLITS)}
