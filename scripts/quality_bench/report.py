"""One result row per data set, and the markdown table they make."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

# (column title, score key): the columns a row may fill; a cell a row does not fill reads "—"
SCORE_COLUMNS = [
    ("linear baseline", "linear"),
    ("gradient boosting / seasonal naive", "boosting_or_naive"),
    ("ridge AR", "ridge_ar"),
    ("ml_tabular", "ml_tabular"),
]
HEADER = ["dataset", "task", "rows", "metric", *(title for title, _ in SCORE_COLUMNS), "training time s", "epochs"]
EMPTY = "—"


@dataclass
class Row:
    """The scores of one data set on its test split, ml_tabular's and the baselines'.

    Args:
        dataset: Short name.
        task: ``classification``, ``regression`` or ``forecast``.
        rows: Rows of the table (series: steps of all series) that the splits were drawn from.
        metric: ``accuracy``, ``R²`` or ``MASE``.
        higher_is_better: Whether a higher score is better (accuracy, R²) or a lower one (MASE).
        scores: Score per column key of :data:`SCORE_COLUMNS`.
        seconds: Wall time of ``ml_tabular fit`` (reading and preparing the data included).
        epochs: Epochs the fit ran (early stopping ends it before ``max_epochs``).
        baseline_seconds: Wall time of fitting every baseline.
        source: Where the data comes from.
    """

    dataset: str
    task: str
    rows: int
    metric: str
    higher_is_better: bool
    scores: dict[str, float]
    seconds: float
    epochs: int
    baseline_seconds: float
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def best(self) -> str:
        """The key of the best score."""
        pick = max if self.higher_is_better else min
        return pick(self.scores, key=self.scores.__getitem__)

    def cells(self) -> list[str]:
        best = self.best()
        scores = [
            EMPTY if key not in self.scores else _bold(f"{self.scores[key]:.3f}", key == best)
            for _, key in SCORE_COLUMNS
        ]
        arrow = "↑" if self.higher_is_better else "↓"
        head = [self.dataset, self.task, f"{self.rows:,}", f"{self.metric} {arrow}"]
        return [*head, *scores, f"{self.seconds:.1f}", str(self.epochs)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bold(text: str, bold: bool) -> str:
    return f"**{text}**" if bold else text


def markdown_table(rows: list[Row]) -> str:
    """The rows as a markdown table, the best score of each row in bold."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def all_finite(rows: list[Row]) -> bool:
    return all(math.isfinite(v) for row in rows for v in row.scores.values())
