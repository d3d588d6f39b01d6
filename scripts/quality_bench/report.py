"""One result row per data set, and the markdown table they make."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field, replace
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
        scores: Score per column key of :data:`SCORE_COLUMNS` (the mean over seeds, see :func:`over_seeds`).
        seconds: CPU time of ``ml_tabular fit`` in this process (reading and preparing the data included): with
            torch on one thread, the wall time of an idle machine, and unlike it, little changed by a busy one.
        epochs: Epochs the fit ran (early stopping ends it before ``max_epochs``).
        baseline_seconds: Wall time of fitting every baseline.
        source: Where the data comes from.
        wall_seconds: Wall time of ``ml_tabular fit``.
        spread: Standard deviation of each score over seeds (empty for one seed).
        extra: What else is worth keeping in the JSON.
    """

    dataset: str
    task: str
    rows: int
    metric: str
    higher_is_better: bool
    scores: dict[str, float]
    seconds: float
    epochs: float
    baseline_seconds: float
    source: str = ""
    wall_seconds: float = 0.0
    spread: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def best(self) -> str:
        """The key of the best score."""
        pick = max if self.higher_is_better else min
        return pick(self.scores, key=self.scores.__getitem__)

    def cells(self) -> list[str]:
        best = self.best()
        scores = [EMPTY if key not in self.scores else self._score(key, key == best) for _, key in SCORE_COLUMNS]
        arrow = "↑" if self.higher_is_better else "↓"
        head = [self.dataset, self.task, f"{self.rows:,}", f"{self.metric} {arrow}"]
        return [*head, *scores, f"{self.seconds:.1f}", f"{self.epochs:.0f}"]

    def _score(self, key: str, best: bool) -> str:
        text = f"{self.scores[key]:.3f}"
        text = f"**{text}**" if best else text
        return f"{text} ± {self.spread[key]:.3f}" if key in self.spread else text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def over_seeds(runs: list[Row]) -> Row:
    """One row from the runs of a data set with different seeds: mean scores, times and epochs, and the spread."""
    if len(runs) == 1:
        return runs[0]
    keys = runs[0].scores
    return replace(
        runs[0],
        scores={key: statistics.mean(run.scores[key] for run in runs) for key in keys},
        spread={key: statistics.stdev(run.scores[key] for run in runs) for key in keys},
        seconds=statistics.mean(run.seconds for run in runs),
        wall_seconds=statistics.mean(run.wall_seconds for run in runs),
        epochs=statistics.mean(run.epochs for run in runs),
        baseline_seconds=statistics.mean(run.baseline_seconds for run in runs),
        extra={**runs[0].extra, "per_seed": [{"scores": run.scores, "epochs": run.epochs} for run in runs]},
    )


def markdown_table(rows: list[Row]) -> str:
    """The rows as a markdown table, the best score of each row in bold."""
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "|".join("---" for _ in HEADER) + "|"]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)
