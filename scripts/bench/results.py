"""What a benchmark suite returns: repeated measurements, targets judged as ratios, and their table."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class Measurement:
    """Repeated values of one quantity."""

    name: str
    unit: str
    values: list[float]
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "min": min(self.values),
            "median": statistics.median(self.values),
            "max": max(self.values),
            "values": self.values,
            "note": self.note,
            **self.extra,
        }


@dataclass
class Target:
    """A ratio of two measurements and the bound it should meet; ``values`` are the per-repeat ratios."""

    name: str
    values: list[float]
    op: Literal["<=", ">="]
    threshold: float
    definition: str
    unit: str = "x"

    @property
    def ratio(self) -> float:
        return statistics.median(self.values)

    @property
    def met(self) -> bool:
        return self.ratio <= self.threshold if self.op == "<=" else self.ratio >= self.threshold

    def summary(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio,
            "target": f"{self.op} {self.threshold:g}",
            "met": self.met,
            "unit": self.unit,
            "min": min(self.values),
            "max": max(self.values),
            "values": self.values,
            "definition": self.definition,
        }


@dataclass
class Results:
    """What a suite measured and the targets it judged."""

    measurements: list[Measurement] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)

    def extend(self, other: Results) -> None:
        self.measurements += other.measurements
        self.targets += other.targets


def ratios(numerators: list[float], denominators: list[float]) -> list[float]:
    """Per-repeat ratios of two interleaved measurements."""
    return [a / b for a, b in zip(numerators, denominators, strict=True)]


def overheads(tracked: list[float], untracked: list[float]) -> list[float]:
    """Per-repeat slowdown in % of two rates: (untracked - tracked) / untracked."""
    return [100 * (off - on) / off for on, off in zip(tracked, untracked, strict=True)]


def rate(count: int, seconds: list[float]) -> float:
    """Examples per second over the timed epochs (``seconds``, the first epoch already dropped)."""
    return count * len(seconds) / sum(seconds)


def number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def table_rows(results: Results) -> Iterator[list[str]]:
    for m in results.measurements:
        s = m.summary()
        yield [m.name, number(s["min"]), number(s["median"]), number(s["max"]), m.unit, "", ""]
    for t in results.targets:
        spread = [number(min(t.values)), number(t.ratio), number(max(t.values))]
        yield [t.name, *spread, t.unit, f"{number(t.ratio)} {t.op} {t.threshold:g}", "yes" if t.met else "NO"]


def print_table(results: Results) -> None:
    header = ["name", "min", "median", "max", "unit", "ratio/target", "met?"]
    rows = [header, *table_rows(results)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    left = (0, 4, 5)  # name, unit and target read left to right; numbers line up on the right
    for i, row in enumerate(rows):
        cells = zip(row, widths, strict=True)
        print("  ".join(cell.ljust(w) if j in left else cell.rjust(w) for j, (cell, w) in enumerate(cells)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
