"""Metrics against an earlier run: tolerances, directions, the verdict, and reading the
baseline folder; records with checks, metrics and cases survive records.jsonl."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from otto.testing.baseline import (
    BaselineError,
    Tolerance,
    compare,
    load_baseline,
    parse_percent,
    parse_tolerance,
)
from otto.testing.records import DeviceCase, FailedCheck, Metric, TestRecord, read_records
from otto.testing.verdict import judge


def record(nodeid: str, *metrics: Metric, iteration: int = 1) -> TestRecord:
    return TestRecord(
        nodeid, nodeid, "passed", float(iteration), float(iteration) + 1, iteration,
        metrics=list(metrics),
    )  # fmt: skip


@pytest.mark.parametrize(("text", "value"), [("10%", 10.0), ("2.5", 2.5), (" 0 % ", 0.0)])
def test_percentages(text: str, value: float) -> None:
    assert parse_percent(text) == value


@pytest.mark.parametrize("text", ["ten", "-5%", "nan", "inf%", ""])
def test_bad_percentages_say_what_they_got(text: str) -> None:
    with pytest.raises(ValueError, match="percentage") as caught:
        parse_percent(text)
    assert repr(text) in str(caught.value)


def test_tolerances_default_and_per_metric() -> None:
    assert parse_tolerance([]) == Tolerance(10.0, {})
    tol = parse_tolerance(["5%", "boot=20%", "a=b=1", "boot=25"])
    assert tol == Tolerance(5.0, {"boot": 25.0, "a=b": 1.0})
    assert (tol.of("boot"), tol.of("other")) == (25.0, 5.0)
    with pytest.raises(ValueError, match="name is missing"):
        parse_tolerance(["=5"])


def test_lower_is_better_by_default_and_higher_when_asked() -> None:
    base = [
        record("t::a", Metric("lat", 100), Metric("tp", 100, better="higher")),
        record("t::b", Metric("lat", 100), Metric("tp", 100, better="higher")),
    ]
    now = [
        record("t::a", Metric("lat", 111), Metric("tp", 89, better="higher")),  # both worse
        record("t::b", Metric("lat", 89), Metric("tp", 111, better="higher")),  # both better
    ]
    found = {(c.nodeid, c.name): c for c in compare(now, base, Tolerance(10.0))}
    assert found["t::a", "lat"].verdict == "regressed"
    assert found["t::a", "lat"].change == pytest.approx(11.0)
    assert found["t::a", "tp"].verdict == "regressed"
    assert found["t::a", "tp"].change == pytest.approx(-11.0)
    assert found["t::b", "lat"].verdict == "improved"
    assert found["t::b", "tp"].verdict == "improved"
    within = compare(now, base, Tolerance(10.0, {"lat": 12.0, "tp": 11.0}))
    assert [c.verdict for c in within if c.nodeid == "t::a"] == ["ok", "ok"]


def test_means_over_iterations_hosts_kept_apart_new_and_gone() -> None:
    base = [
        record("t::a", Metric("lat", 10, host="h1"), Metric("lat", 50, host="h2"), iteration=1),
        record("t::a", Metric("lat", 20, host="h1"), iteration=2),
        record("t::old", Metric("x", 1)),
    ]
    now = [
        record("t::a", Metric("lat", 15, host="h1"), Metric("lat", 60, host="h2")),
        record("t::new", Metric("y", 1)),
    ]
    found = {(c.nodeid, c.name, c.host): c for c in compare(now, base, Tolerance(10.0))}
    assert found["t::a", "lat", "h1"].baseline == 15.0  # mean of 10 and 20
    assert found["t::a", "lat", "h1"].verdict == "ok"
    assert found["t::a", "lat", "h2"].verdict == "regressed"
    assert (found["t::new", "y", None].verdict, found["t::new", "y", None].baseline) == (
        "new",
        None,
    )
    assert (found["t::old", "x", None].verdict, found["t::old", "x", None].now) == ("gone", None)


def test_from_a_zero_baseline_any_worse_move_regresses() -> None:
    base = [record("t::a", Metric("errors", 0), Metric("same", 0))]
    now = [record("t::a", Metric("errors", 1), Metric("same", 0))]
    errors, same = compare(now, base, Tolerance(50.0))
    assert (errors.verdict, errors.change) == ("regressed", None)
    assert same.verdict == "ok"


def test_the_verdict_fails_on_a_regression_and_says_which() -> None:
    base = [record("t::a", Metric("lat", 100, "ms"))]
    now = [record("t::a", Metric("lat", 150, "ms"))]
    verdict = judge(now, pytest_status=0, baseline=base)
    assert (verdict.headline, verdict.exit_status) == ("failed", 1)
    assert (
        "t::a: lat: 100 ms -> 150 ms (+50.0%, lower is better, tolerance 10%)"
        in (verdict.reasons[0])
    )
    assert [c.verdict for c in verdict.metrics] == ["regressed"]
    tolerant = judge(now, pytest_status=0, baseline=base, tolerance=parse_tolerance(["lat=60"]))
    assert (tolerant.headline, tolerant.exit_status) == ("passed", 0)
    assert judge(now, pytest_status=0).metrics == []  # no baseline, nothing compared


def test_a_regression_fails_even_a_run_a_threshold_passes() -> None:
    base = [record("t::a", Metric("lat", 1))]
    now = [record("t::a", Metric("lat", 2))]
    assert judge(now, threshold=50.0, pytest_status=0, baseline=base).exit_status == 1


def test_a_baseline_folder_that_is_missing_or_unreadable_is_named(tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match=f"--baseline {tmp_path / 'nope'}: no such run folder"):
        load_baseline(tmp_path / "nope")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BaselineError, match="no records"):
        load_baseline(empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "records.jsonl").write_text('{"nodeid": "t::a", "outc\n')
    with pytest.raises(BaselineError, match=f"{broken}: its records are not otto records"):
        load_baseline(broken)
    alien = tmp_path / "alien"
    alien.mkdir()
    (alien / "records.jsonl").write_text('{"something": "else"}\n')
    with pytest.raises(BaselineError, match="not otto records"):
        load_baseline(alien)


def test_records_with_checks_metrics_and_cases_round_trip(tmp_path: Path) -> None:
    full = TestRecord(
        "t.py::a", "a", "failed", 1.0, 2.0,
        checks=[FailedCheck("1 != 2", "t.py:3")],
        metrics=[Metric("lat", 1.5, "ms", "h1", "higher"), Metric("n", 3)],
        cases=[DeviceCase("c1", "error", "out", "crashed", 0.25, "h1: run-ptest")],
    )  # fmt: skip
    old = {"nodeid": "t.py::b", "name": "b", "outcome": "passed", "start": 1.0, "stop": 2.0}
    path = tmp_path / "records.jsonl"
    path.write_text(full.to_json() + "\n" + json.dumps(old) + "\n")
    back, older = read_records([path])
    assert back == full
    assert json.loads(full.to_json()) == asdict(full)  # what the faster to_json must match
    assert (older.checks, older.metrics, older.cases) == ([], [], [])
    assert back.cases[0].bad and not DeviceCase("c", "skipped").bad
