"""The statistics every figure goes through: percentiles of one run, the median of the
repetitions, the ratio to its baseline and whether a target is met.

Kept free of Django, aiohttp and matplotlib so ``tests/test_benchmarks.py`` checks it on
synthetic numbers inside ``make test``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Better = Literal["higher", "lower"]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation between closest ranks;
    NaN for no values (a run that completed nothing has no latency)."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be between 0 and 100, got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median_of(repetitions: Sequence[float]) -> float:
    """The median of the repetitions' values, ignoring the ones that produced no value."""
    finite = [value for value in repetitions if not math.isnan(value)]
    return statistics.median(finite) if finite else math.nan


def medians_lines(results: dict[str, list[float]], *, unit: str, digits: int = 2) -> list[str]:
    """One line per mode of an interleaved micro-benchmark: the median of its repetitions,
    then each repetition, in the order they ran."""
    lines = []
    for name, values in results.items():
        shown = ", ".join(f"{value:.{digits}f}" for value in values)
        lines.append(f"  {name}: {median_of(values):.{digits}f} {unit} ({shown})")
    return lines


def print_medians(title: str, results: dict[str, list[float]], *, unit: str, digits: int) -> None:
    """The end of an interleaved micro-benchmark's output: the load average after it,
    ``title``, then each mode's line (`medians_lines`)."""
    print(f"load average after: {Path('/proc/loadavg').read_text().strip()}")
    print(title)
    print("\n".join(medians_lines(results, unit=unit, digits=digits)))


def ratio(value: float, baseline: float) -> float:
    """value / baseline; NaN when either is missing or the baseline is zero."""
    if math.isnan(value) or math.isnan(baseline) or baseline == 0:
        return math.nan
    return value / baseline


@dataclass(frozen=True)
class Target:
    """``value <op> threshold``, e.g. ``Target("<=", 50)`` for "p99 ≤ 50 ms"."""

    op: Literal["<=", ">="]
    threshold: float
    on: Literal["value", "ratio"] = "value"

    def met(self, value: float, ratio_value: float) -> bool | None:
        subject = ratio_value if self.on == "ratio" else value
        if math.isnan(subject):
            return None
        return subject <= self.threshold if self.op == "<=" else subject >= self.threshold

    def describe(self, unit: str) -> str:
        sign = "≤" if self.op == "<=" else "≥"
        if self.on == "ratio":
            return f"ratio {sign} {self.threshold:g}"
        return f"{sign} {self.threshold:g}{(' ' + unit) if unit else ''}"


@dataclass
class Figure:
    """One measured quantity: its value in each repetition, and its baseline's."""

    key: str  # e.g. "P2.flows_per_s"
    label: str
    unit: str
    better: Better
    values: list[float] = field(default_factory=list)
    baseline_values: list[float] = field(default_factory=list)
    baseline_label: str = ""
    target: Target | None = None
    note: str = ""

    @property
    def value(self) -> float:
        return median_of(self.values)

    @property
    def baseline(self) -> float:
        return median_of(self.baseline_values)

    @property
    def ratio(self) -> float:
        return ratio(self.value, self.baseline)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self.value, self.ratio)

    def as_dict(self) -> dict[str, object]:
        return {
            "key": self.key,
            "label": self.label,
            "unit": self.unit,
            "values": self.values,
            "baseline_values": self.baseline_values,
            "baseline_label": self.baseline_label,
            "value": _json_number(self.value),
            "baseline": _json_number(self.baseline),
            "ratio": _json_number(self.ratio),
            "target": self.target.describe(self.unit) if self.target else None,
            "met": self.met,
            "note": self.note,
        }


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


@dataclass
class Samples:
    """What one repetition of a load scenario collected: latencies (seconds), counts."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    elapsed: float = 0.0
    started: float = 0.0  # time.perf_counter() when the repetition started
    began: dict[str, list[float]] = field(default_factory=dict)  # each latency's start, same clock

    def add(self, name: str, seconds: float) -> None:
        """A latency that ended just now."""
        self.latencies.setdefault(name, []).append(seconds)
        self.began.setdefault(name, []).append(time.perf_counter() - seconds)

    def count(self, name: str, by: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + by

    def ms(self, name: str, q: float) -> float:
        """The ``q``-th percentile of ``name`` in milliseconds (NaN if none)."""
        return percentile(self.latencies.get(name, []), q) * 1000

    def ms_settled(self, name: str, q: float, *, after: float) -> float:
        """Like ``ms``, over the latencies that began ``after`` seconds or more into the
        repetition (its start-up left out)."""
        pairs = zip(self.latencies.get(name, []), self.began.get(name, []), strict=True)
        settled = [seconds for seconds, began in pairs if began - self.started >= after]
        return percentile(settled, q) * 1000

    def rate(self, name: str) -> float:
        """``counts[name]`` per second of ``elapsed``."""
        if self.elapsed <= 0:
            return math.nan
        return self.counts.get(name, 0) / self.elapsed
