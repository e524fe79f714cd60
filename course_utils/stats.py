"""Repeated measurements summarized: mean and sample standard deviation, one way everywhere.

Every table of the course that averages over seeds or random draws (Table 1's Delta, Table 3's
errors, the few-shot accuracies, the invariance curves) reports a :class:`MeanStd`: the values,
their mean, their sample standard deviation (``None`` for a single value) and one text format,
``"0.123 +- 0.004"``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MeanStd", "group_mean_std"]


@dataclass(frozen=True)
class MeanStd:
    """Mean and sample standard deviation of repeated measurements.

    Attributes:
        values: the measurements, in the order they were made.
    """

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("MeanStd needs at least one value")
        object.__setattr__(self, "values", tuple(float(value) for value in self.values))

    @classmethod
    def of(cls, values: Iterable[float]) -> MeanStd:
        """The summary of ``values`` (at least one)."""
        return cls(tuple(values))

    @property
    def count(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return math.fsum(self.values) / len(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation (``n - 1`` in the denominator); ``None`` for one value."""
        if len(self.values) < 2:
            return None
        mean = self.mean
        return math.sqrt(math.fsum((value - mean) ** 2 for value in self.values) / (len(self.values) - 1))

    def format(self, digits: int = 3, scale: float = 1.0) -> str:
        """``"mean +- std"`` (just the mean for one value), each multiplied by ``scale`` (100 for
        percent) and shown with ``digits`` decimals."""
        text = f"{scale * self.mean:.{digits}f}"
        return text if self.std is None else f"{text} +- {scale * self.std:.{digits}f}"


def group_mean_std(
    records: Sequence[Mapping[str, Any]], by: Sequence[str], value: str
) -> dict[tuple[Any, ...], MeanStd]:
    """``{key: MeanStd of record[value]}`` grouped by ``key = tuple(record[k] for k in by)``; keys
    keep the order of first appearance."""
    groups: dict[tuple[Any, ...], list[float]] = {}
    for record in records:
        missing = [key for key in (*by, value) if key not in record]
        if missing:
            raise ValueError(f"record {dict(record)} has no {missing}; group by fields that every record has")
        groups.setdefault(tuple(record[key] for key in by), []).append(float(record[value]))
    return {key: MeanStd.of(values) for key, values in groups.items()}
