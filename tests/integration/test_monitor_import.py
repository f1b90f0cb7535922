"""``otto monitor --import`` of hostile but well-formed exports: one error line, the
database unchanged, and nothing that would later break ``--export`` or a replay."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otto.monitor.replay import Replay, list_runs
from otto.monitor.store import MetricStore
from tests.integration.test_monitor_runs import T0, otto, past_runs

pytestmark = pytest.mark.integration


def export_of(run: dict[str, object]) -> str:
    """A version-2 export of one run: good fields, then ``run``'s over them."""
    good: dict[str, object] = {
        "id": 1,
        "label": "hostile",
        "note": None,
        "started": T0,
        "ended": T0 + 2,
        "interval": 1.0,
        "meta": {"interval": "1.0"},
        "hosts": ["h1"],
        "metrics": ["cpu.percent"],
        "rounds": [[T0, 0.01], [T0 + 1, 0.01]],
        "status": {"h1": [[T0, True, ""], [T0 + 1, True, ""]]},
        "samples": {"h1": {"cpu.percent": [[T0, 1.0], [T0 + 1, 2.0]]}},
        "events": [{"id": 1, "t": T0, "end": None, "label": "boot", "color": None}],
    }
    good.update(run)
    return json.dumps({"format": "otto.monitor", "version": 2, "runs": [good]})


def events(**event: object) -> dict[str, object]:
    return {"events": [{"id": 1, "t": T0, "label": "boot", **event}]}


HOSTILE: dict[str, tuple[str, str]] = {
    # name: (the export's text, what the error names)
    "nan value": (
        export_of({}).replace("[T0, 1.0]".replace("T0", repr(T0)), f"[{T0!r}, NaN]"),
        "NaN is not a JSON number",
    ),
    "infinite start": (
        export_of({}).replace(f'"started": {T0!r}', '"started": Infinity'),
        "Infinity",
    ),
    "huge time": (export_of({"ended": 10**30}), "ended: 1e+30 is not a time"),
    "huge id": (export_of(events(id=10**30)), "events[0].id: a whole number"),
    "huge round time": (export_of({"rounds": [[10**30, 0.01]]}), "rounds[0][0]"),
    "started yesterday": (export_of({"started": "yesterday"}), "started: a number is needed"),
    "null event label": (export_of(events(label=None)), "events[0].label: a string is needed"),
    "label a list": (export_of({"label": ["a", "b"]}), "label: a string is needed, not a list"),
    "hosts of numbers": (export_of({"hosts": [1, 2]}), "hosts[0]: a string is needed"),
    "samples a list": (export_of({"samples": {"h1": [1, 2]}}), "samples['h1']: an object"),
    "short point": (
        export_of({"samples": {"h1": {"cpu.percent": [[T0]]}}}),
        "samples['h1']['cpu.percent'][0]: 2 items are needed, not 1",
    ),
    "up as text": (export_of({"status": {"h1": [[T0, "yes", ""]]}}), "true or false"),
    "null error": (export_of({"status": {"h1": [[T0, False, None]]}}), "status['h1'][0][2]"),
    "meta list": (export_of({"meta": {"interval": [1]}}), "meta['interval']"),
    "zero interval": (export_of({"interval": 0}), "interval: a positive number"),
    "id a float": (export_of({"id": 1.5}), "id: a whole number"),
}


def stored(db: Path) -> dict[str, object]:
    with MetricStore(db) as store:
        return store.export()


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_export_is_one_error_line_and_changes_nothing(tmp_path: Path, name: str) -> None:
    text, named = HOSTILE[name]
    db = tmp_path / "m.db"
    past_runs(db)
    before = stored(db)
    hostile = tmp_path / "hostile.json"
    hostile.write_text(text)
    proc = otto("monitor", "--db", str(db), "--import", str(hostile))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.startswith(f"otto: error: cannot import {hostile} into {db}: ")
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert named in proc.stderr
    assert stored(db) == before


def test_a_hostile_export_makes_no_database(tmp_path: Path) -> None:
    hostile = tmp_path / "hostile.json"
    hostile.write_text(export_of({"started": "yesterday"}))
    fresh = tmp_path / "fresh.db"
    proc = otto("monitor", "--db", str(fresh), "--import", str(hostile))
    assert proc.returncode == 1
    assert "started: a number is needed, not a string; nothing was imported" in proc.stderr
    assert not fresh.exists()


def test_a_large_finite_value_is_imported_and_exported_and_replayed(tmp_path: Path) -> None:
    # 10**30 as a value is a number SQLite keeps as a REAL (it was an OverflowError).
    export = tmp_path / "big.json"
    export.write_text(export_of({"samples": {"h1": {"cpu.percent": [[T0, 10**30]]}}}))
    db = tmp_path / "m.db"
    proc = otto("monitor", "--db", str(db), "--import", str(export))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    again = tmp_path / "again.json"
    proc = otto("monitor", "--db", str(db), "--export", str(again))
    assert proc.returncode == 0, proc.stderr
    run = json.loads(again.read_text())["runs"][0]
    assert run["samples"]["h1"]["cpu.percent"] == [[T0, 1e30]]
    assert [r.label for r in list_runs(db)] == ["hostile"]
    snapshot = Replay.from_file(db).snapshot()
    series = snapshot["series"]["cpu.percent"]["h1"]  # type: ignore[index]
    assert [list(point) for point in series] == [[T0, 1e30]]
