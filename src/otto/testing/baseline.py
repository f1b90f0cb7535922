"""Metrics against a baseline: an earlier run folder's records (``--baseline RUN_DIR``).

A metric is one ``(test node id, metric name, host)``; its value in a run is the mean
of what the test recorded under that name over the run (every iteration). It
regresses when it moved the worse way (up, unless it was recorded with
``better="higher"``) by more than its tolerance, in percent of the baseline value
(``--tolerance 10%``, or ``--tolerance NAME=PCT`` for one metric name). From a
baseline of 0, any move the worse way is a regression.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from otto.testing.records import TestRecord, read_records

__all__ = [
    "DEFAULT_TOLERANCE",
    "BaselineError",
    "Comparison",
    "Tolerance",
    "compare",
    "load_baseline",
    "parse_percent",
    "parse_tolerance",
]

DEFAULT_TOLERANCE = 10.0
"""Percent a metric may move the worse way before it is a regression."""

Judgement = Literal["regressed", "improved", "ok", "new", "gone"]


class BaselineError(ValueError):
    """The baseline run folder cannot be read (the message names its path)."""


@dataclass(frozen=True)
class Tolerance:
    """How far each metric may move the worse way, in percent."""

    default: float = DEFAULT_TOLERANCE
    per_metric: dict[str, float] = field(default_factory=dict)

    def of(self, name: str) -> float:
        return self.per_metric.get(name, self.default)


def parse_percent(text: str) -> float:
    """``"10%"`` or ``"10"`` as 10.0; a ValueError saying why otherwise."""
    value_text = text.strip().removesuffix("%").strip()
    try:
        value = float(value_text)
    except ValueError:
        raise ValueError(f"not a percentage: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"a tolerance must be a percentage of 0 or more, got {text!r}")
    return value


def parse_tolerance(texts: Sequence[str]) -> Tolerance:
    """``--tolerance`` values: ``PCT`` (every metric) or ``NAME=PCT`` (one metric name),
    the last of each winning."""
    default = DEFAULT_TOLERANCE
    per_metric: dict[str, float] = {}
    for text in texts:
        name, sep, pct = text.rpartition("=")
        if sep:
            if not name:
                raise ValueError(f"--tolerance {text!r}: the metric's name is missing")
            per_metric[name] = parse_percent(pct)
        else:
            default = parse_percent(pct)
    return Tolerance(default, per_metric)


def load_baseline(run_dir: Path) -> list[TestRecord]:
    """The records of an earlier run folder.

    Raises:
        BaselineError: the folder is missing, holds no ``records*.jsonl``, or one cannot
            be read or parsed (the message names the path).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BaselineError(f"--baseline {run_dir}: no such run folder")
    files = sorted(run_dir.glob("records*.jsonl"))
    if not files:
        raise BaselineError(f"--baseline {run_dir}: no records*.jsonl in it (not a run folder)")
    try:
        return list(read_records(files))
    except (OSError, UnicodeDecodeError) as exc:
        raise BaselineError(f"--baseline {run_dir}: cannot read its records: {exc}") from None
    except (json.JSONDecodeError, TypeError, KeyError, AttributeError) as exc:
        raise BaselineError(
            f"--baseline {run_dir}: its records are not otto records: {exc}"
        ) from None


@dataclass(frozen=True)
class Comparison:
    """One metric of one test, now and in the baseline."""

    nodeid: str
    name: str
    host: str | None
    unit: str | None
    better: Literal["lower", "higher"]
    baseline: float | None
    now: float | None
    tolerance: float
    change: float | None
    """Percent of the baseline value (None when either is missing or the baseline is 0)."""
    verdict: Judgement

    @property
    def label(self) -> str:
        """``test: name`` (``name@host`` with a host), for lines of text."""
        host = f"@{self.host}" if self.host else ""
        return f"{self.nodeid}: {self.name}{host}"


def _means(
    records: Iterable[TestRecord],
) -> dict[tuple[str, str, str | None], tuple[float, str | None, Literal["lower", "higher"]]]:
    sums: dict[tuple[str, str, str | None], list[float]] = {}
    last: dict[tuple[str, str, str | None], tuple[str | None, Literal["lower", "higher"]]] = {}
    for record in sorted(records, key=lambda r: (r.start, r.iteration)):
        for metric in record.metrics:
            key = (record.nodeid, metric.name, metric.host)
            sums.setdefault(key, []).append(float(metric.value))
            last[key] = (metric.unit, metric.better)
    return {key: (math.fsum(v) / len(v), *last[key]) for key, v in sums.items()}


def _judge(
    base: float, now: float, better: Literal["lower", "higher"], tolerance: float
) -> tuple[float | None, Judgement]:
    change = (now - base) / abs(base) * 100.0 if base else None
    worse = now > base if better == "lower" else now < base
    if now == base:
        return 0.0 if base else None, "ok"
    if change is None:  # from 0: any move counts
        return None, "regressed" if worse else "improved"
    if abs(change) <= tolerance:
        return change, "ok"
    return change, "regressed" if worse else "improved"


def compare(
    records: Iterable[TestRecord], baseline: Iterable[TestRecord], tolerance: Tolerance
) -> list[Comparison]:
    """Every metric of the run and of the baseline, compared; in the run's order, then the
    metrics only the baseline has."""
    now = _means(records)
    then = _means(baseline)
    found: list[Comparison] = []
    for key in [*now, *(k for k in then if k not in now)]:
        nodeid, name, host = key
        tol = tolerance.of(name)
        if key not in then:
            value, unit, better = now[key]
            found.append(
                Comparison(nodeid, name, host, unit, better, None, value, tol, None, "new")
            )
            continue
        if key not in now:
            value, unit, better = then[key]
            found.append(
                Comparison(nodeid, name, host, unit, better, value, None, tol, None, "gone")
            )
            continue
        value, unit, better = now[key]
        base = then[key][0]
        change, verdict = _judge(base, value, better, tol)
        found.append(
            Comparison(nodeid, name, host, unit, better, base, value, tol, change, verdict)
        )
    return found
