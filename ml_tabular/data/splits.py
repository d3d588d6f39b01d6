"""Seeded row splits: stratified by class for classification, plain random for regression."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ml_tabular.errors import DataError

SPLITS = ("train", "val", "test")
SHOWN_DIGITS = 16  # digits of a SHA-256 shown in messages (as in the run's dataset digest)


@dataclass(frozen=True)
class SplitDefinition:
    """Which file was split, and how: its SHA-256 and row count, the seed and the fractions.

    Saved in the checkpoint, so ``validate``/``test``/resumed ``fit`` split the training file exactly as
    training did, whatever the config says now, and refuse a file that is not the one trained on.
    """

    sha256: str
    n_rows: int
    seed: int
    val_fraction: float
    test_fraction: float

    def check_file(self, path: str, sha256: str, key: str = "data.init_args.path") -> None:
        """Raise a :class:`DataError` naming both digests when ``path`` is not the file the splits were drawn from."""
        if sha256 != self.sha256:
            raise DataError(
                f"{key}: '{path}' is not the file this checkpoint was trained on (SHA-256 "
                f"{sha256[:SHOWN_DIGITS]}... now, {self.sha256[:SHOWN_DIGITS]}... when trained), so its "
                "validation/test rows would not be the ones held out from training. Point the key at the "
                "training file; to score new rows use `ml_tabular predict --data.init_args.predict_path FILE`."
            )


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
