"""Metrics tests record (``record_metric``): checked on the way in, written out as
Prometheus text exposition (``--metrics-out``).

A metric is a finite number with a name, an optional unit and host, and the
direction that is better (``lower`` unless the test says ``better="higher"``).
Its name, unit and host go through :mod:`otto.redact` when recorded.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from otto import redact
from otto.testing.evidence import write_text
from otto.testing.records import Metric, TestRecord

__all__ = [
    "MetricRecorder",
    "make_metric",
    "prometheus_name",
    "prometheus_text",
    "write_prometheus",
]

_NOT_NAME = re.compile(r"[^a-zA-Z0-9_]")


def make_metric(
    name: object,
    value: object,
    unit: object = None,
    host: object = None,
    better: object = "lower",
) -> Metric:
    """A :class:`Metric`, or an error naming the metric when it cannot be one.

    Raises:
        TypeError: the name is not a non-empty string, the value not a real number
            (a bool is not one), or the unit or host not a string.
        ValueError: the value is not finite (NaN, infinity), or ``better`` is neither
            ``"lower"`` nor ``"higher"``.
    """
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"record_metric: the name must be a non-empty string, got {name!r}")
    name = redact.redact(name)  # the errors below name it, on the terminal too
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"record_metric({name!r}): the value must be a number, "
            f"got {type(value).__name__} {redact.redact(repr(value))}"
        )
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"record_metric({name!r}): the value must be finite, got {value!r}")
    for what, text in (("unit", unit), ("host", host)):
        if text is not None and not isinstance(text, str):
            raise TypeError(
                f"record_metric({name!r}): {what} must be a string, got {type(text).__name__}"
            )
    if better not in ("lower", "higher"):
        raise ValueError(
            f"record_metric({name!r}): better must be 'lower' or 'higher', got {better!r}"
        )
    direction: Literal["lower", "higher"] = "higher" if better == "higher" else "lower"
    stored: float | int = int(value) if isinstance(value, numbers.Integral) else number
    return Metric(
        name=name,
        value=stored,
        unit=redact.redact(unit) if isinstance(unit, str) and unit else None,
        host=redact.redact(host) if isinstance(host, str) and host else None,
        better=direction,
    )


def prometheus_name(name: str) -> str:
    """``name`` as a Prometheus metric name: every character but letters, digits and ``_``
    becomes ``_``, and a leading digit gets a ``_`` before it."""
    clean = _NOT_NAME.sub("_", name)
    return clean if clean and not clean[0].isdigit() else f"_{clean}"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def prometheus_text(records: Iterable[TestRecord]) -> str:
    """The records' metrics in the Prometheus text exposition format (version 0.0.4).

    One gauge family per (sanitized) metric name, labelled ``test`` (the node id),
    ``host`` and ``unit`` when set. A test run several times (``--iterations``) gives
    its last run's value: a series has one sample.
    """
    families: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    names: dict[str, list[str]] = {}
    ordered = sorted(records, key=lambda r: (r.start, r.iteration))
    for record in ordered:
        for metric in record.metrics:
            family = prometheus_name(metric.name)
            labels = [("test", record.nodeid)]
            if metric.host:
                labels.append(("host", metric.host))
            if metric.unit:
                labels.append(("unit", metric.unit))
            families.setdefault(family, {})[tuple(labels)] = metric.value
            known = names.setdefault(family, [])
            if metric.name not in known:
                known.append(metric.name)
    lines: list[str] = []
    for family in sorted(families):
        lines.append(f"# HELP {family} otto test metric {_help(', '.join(names[family]))}")
        lines.append(f"# TYPE {family} gauge")
        for pairs, value in families[family].items():
            text = ",".join(f'{key}="{_label(val)}"' for key, val in pairs)
            lines.append(f"{family}{{{text}}} {_number(value)}")
    return "\n".join(lines) + "\n" if lines else ""


def write_prometheus(path: Path, records: Iterable[TestRecord]) -> Path:
    """Write :func:`prometheus_text` of ``records`` to ``path`` (redacted, replaced at once)."""
    return write_text(path, prometheus_text(records))


class MetricRecorder:
    """The ``record_metric`` fixture: each call adds a checked :class:`Metric` to a list."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def __call__(
        self,
        name: str,
        value: float,
        unit: str | None = None,
        host: str | None = None,
        *,
        better: Literal["lower", "higher"] = "lower",
    ) -> None:
        """Record ``value`` under ``name`` (see :func:`make_metric` for what is refused)."""
        self._metrics.append(make_metric(name, value, unit, host, better))
