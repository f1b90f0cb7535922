"""Checking a run of a JSON export before it enters a database: ``checked_run``.

An export comes from a file anyone may have written. Well-formed JSON can
still hold what a database or a later ``--export`` and replay cannot take: NaN
and infinities, a number too large for SQLite (``10**30``), a time no clock
reads (``"started": "yesterday"``), a null label or a list where a string
goes. ``checked_run`` names the first such value by its place in the run and
returns the run with every value in the type the database keeps. A run's
``outages`` (each ``{"host", "start", "end", "error"}``, an end never before its
start) are checked when the run has them; without them they are derived from
its ``status`` when it is imported or replayed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["MAX_TIME", "checked_run"]

MAX_TIME = 253_402_300_799.0
"""The last second of the year 9999: times (Unix seconds) beyond it are refused."""
_MAX_ID = 2**63 - 1  # SQLite's INTEGER


class _Bad(ValueError):
    """A value that does not belong where it is."""


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}" if len(repr(value)) <= 24 else "a number too large"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _number(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Bad(f"{where}: a number is needed, not {_kind(value)}")
    try:
        number = float(value)
    except OverflowError:
        raise _Bad(f"{where}: a number too large") from None
    if not math.isfinite(number):
        raise _Bad(f"{where}: a finite number is needed, not {value!r}")
    return number


def _time(value: object, where: str) -> float:
    t = _number(value, where)
    if abs(t) > MAX_TIME:
        raise _Bad(f"{where}: {t:g} is not a time in Unix seconds")
    return t


def _optional_time(value: object, where: str) -> float | None:
    return None if value is None else _time(value, where)


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _Bad(f"{where}: a string is needed, not {_kind(value)}")
    return value


def _optional_text(value: object, where: str) -> str | None:
    return None if value is None else _text(value, where)


def _list(value: object, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Bad(f"{where}: a list is needed, not {_kind(value)}")
    return value


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _Bad(f"{where}: an object is needed, not {_kind(value)}")
    return value


def _row(value: object, where: str, size: int) -> list[Any]:
    row = _list(value, where)
    if len(row) != size:
        raise _Bad(f"{where}: {size} items are needed, not {len(row)}")
    return row


def _id(value: object, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ID:
        raise _Bad(f"{where}: a whole number from 0 to 2**63-1 is needed, not {_kind(value)}")
    return value


def _meta_value(value: object, where: str) -> str:
    if isinstance(value, str):
        return value
    return repr(_number(value, where)) if not isinstance(value, int) else str(_id(value, where))


def _event(value: object, where: str) -> dict[str, object]:
    event = _object(value, where)
    out: dict[str, object] = {
        "id": _id(event.get("id"), f"{where}.id"),
        "t": _time(event.get("t"), f"{where}.t"),
        "end": _optional_time(event.get("end"), f"{where}.end"),
        "label": _text(event.get("label"), f"{where}.label"),
    }
    for key in ("color", "host", "line"):
        out[key] = _optional_text(event.get(key), f"{where}.{key}")
    return out


def _outage(value: object, where: str) -> dict[str, object]:
    outage = _object(value, where)
    start = _time(outage.get("start"), f"{where}.start")
    end = _optional_time(outage.get("end"), f"{where}.end")
    if end is not None and end < start:
        raise _Bad(f"{where}.end: {end!r} is before its start {start!r}")
    return {
        "host": _text(outage.get("host"), f"{where}.host"),
        "start": start,
        "end": end,
        "error": _text(outage.get("error", ""), f"{where}.error"),
    }


def checked_run(entry: Mapping[str, Any]) -> dict[str, Any]:
    """``entry`` (an ``export_runs`` item) with every value checked and converted.

    Times and values become floats, ids ints, meta values strings; a missing
    optional field stays missing (``outages`` among them).

    Raises:
        ValueError: the first value that is not what its place needs, named by
            where it is (``samples['web-1']['cpu.percent'][3][1]``).
    """
    out: dict[str, Any] = {"id": _id(entry.get("id"), "id")}
    for key in ("label", "note"):
        if key in entry:
            out[key] = _optional_text(entry[key], key)
    for key in ("started", "ended"):
        if key in entry:
            out[key] = _optional_time(entry[key], key)
    if "interval" in entry and entry["interval"] is not None:
        interval = _number(entry["interval"], "interval")
        if interval <= 0:
            raise _Bad(f"interval: a positive number of seconds is needed, not {interval:g}")
        out["interval"] = interval
    elif "interval" in entry:
        out["interval"] = None
    meta = _object(entry.get("meta") or {}, "meta")
    out["meta"] = {
        _text(key, "meta (a key)"): _meta_value(value, f"meta[{key!r}]")
        for key, value in meta.items()
    }
    for key in ("hosts", "metrics"):
        out[key] = [
            _text(name, f"{key}[{i}]") for i, name in enumerate(_list(entry.get(key, []), key))
        ]
    rounds = []
    for i, row in enumerate(_list(entry.get("rounds", []), "rounds")):
        t, duration = _row(row, f"rounds[{i}]", 2)
        rounds.append([_time(t, f"rounds[{i}][0]"), _number(duration, f"rounds[{i}][1]")])
    out["rounds"] = rounds
    status: dict[str, list[list[object]]] = {}
    for host, rows in _object(entry.get("status", {}), "status").items():
        where = f"status[{host!r}]"
        checked = status[_text(host, "status (a host)")] = []
        for i, row in enumerate(_list(rows, where)):
            t, up, error = _row(row, f"{where}[{i}]", 3)
            if not isinstance(up, bool) and up not in (0, 1):
                raise _Bad(f"{where}[{i}][1]: true or false is needed, not {_kind(up)}")
            at = f"{where}[{i}]"
            checked.append([_time(t, f"{at}[0]"), bool(up), _text(error, f"{at}[2]")])
    out["status"] = status
    samples: dict[str, dict[str, list[list[float]]]] = {}
    for host, metrics in _object(entry.get("samples", {}), "samples").items():
        by_metric = samples[_text(host, "samples (a host)")] = {}
        for metric, points in _object(metrics, f"samples[{host!r}]").items():
            where = f"samples[{host!r}][{metric!r}]"
            series = by_metric[_text(metric, f"samples[{host!r}] (a metric)")] = []
            for i, point in enumerate(_list(points, where)):
                t, value = _row(point, f"{where}[{i}]", 2)
                series.append([_time(t, f"{where}[{i}][0]"), _number(value, f"{where}[{i}][1]")])
    out["samples"] = samples
    out["events"] = [
        _event(value, f"events[{i}]")
        for i, value in enumerate(_list(entry.get("events", []), "events"))
    ]
    # Optional: an export without it (an older otto's) has its outages derived from status.
    if entry.get("outages") is not None:
        out["outages"] = [
            _outage(value, f"outages[{i}]")
            for i, value in enumerate(_list(entry["outages"], "outages"))
        ]
    return out
