"""The verdict: one rule for the exit status and the report's headline."""

from __future__ import annotations

import pytest

from otto.testing.records import Kind, Outcome, TestRecord
from otto.testing.verdict import judge, pass_rates, user_interrupt


def record(nodeid: str, outcome: Outcome, kind: Kind = "test", iteration: int = 1) -> TestRecord:
    return TestRecord(nodeid, nodeid, outcome, 1.0 + iteration, 2.0, iteration, kind=kind)


@pytest.mark.parametrize("kind", ["collection", "crashed", "not-run"])
def test_no_threshold_turns_a_run_level_error_into_a_pass(kind: Kind) -> None:
    records = [record("t.py::ok", "passed"), record("t.py::x", "error", kind)]
    verdict = judge(records, threshold=0.0, pytest_status=0)
    assert (verdict.headline, verdict.exit_status) == ("failed", 1)
    assert "t.py::x" in verdict.reasons[0]


def test_a_threshold_passes_a_flaky_test_at_or_above_it() -> None:
    runs = [record("t.py::a", "passed", iteration=n) for n in (1, 2, 3)]
    runs.append(record("t.py::a", "failed", iteration=4))
    assert judge(runs, threshold=75.0, pytest_status=1).exit_status == 0
    below = judge(runs, threshold=80.0, pytest_status=1)
    assert (below.headline, below.exit_status, below.below) == ("failed", 1, ["t.py::a"])


def test_every_run_skipped_under_a_threshold_fails() -> None:
    verdict = judge([record("t.py::a", "skipped")], threshold=50.0, pytest_status=0)
    assert (verdict.headline, verdict.exit_status) == ("failed", 1)
    assert judge([record("t.py::a", "skipped")], pytest_status=0).exit_status == 0


def test_pytest_stopping_after_collection_errors_is_not_an_interruption() -> None:
    verdict = judge([record("t.py", "error", "collection")], pytest_status=2)
    assert (verdict.headline, verdict.exit_status) == ("failed", 1)
    interrupted = judge([record("t.py::a", "passed")], interrupted=True, pytest_status=2)
    assert (interrupted.headline, interrupted.exit_status) == ("interrupted", 2)


def test_a_run_pytest_stopped_early_is_no_pass_even_under_a_threshold() -> None:
    verdict = judge([record("t.py::a", "passed")], threshold=0.0, pytest_status=2)
    assert (verdict.headline, verdict.exit_status) == ("failed", 1)
    assert verdict.reasons == ["pytest stopped the run before its end"]


def test_usage_and_internal_errors_are_kept() -> None:
    assert judge([], pytest_status=4).exit_status == 4
    assert judge([record("t.py::a", "passed")], threshold=0.0, pytest_status=3).exit_status == 3


def test_no_tests_and_a_failure_pytest_saw_alone() -> None:
    assert judge([], pytest_status=5).headline == "no tests"
    assert judge([record("t.py::a", "passed")], pytest_status=1).exit_status == 1


def test_pass_rates_count_test_records_only() -> None:
    runs = [record("t.py::a", "passed"), record("t.py::a", "skipped", iteration=2)]
    runs.append(record("t.py", "error", "collection"))
    assert pass_rates(runs) == {"t.py::a": (100.0, 1, 1)}


def test_user_interrupt_is_told_from_pytests_own_stop() -> None:
    assert user_interrupt(KeyboardInterrupt())
    assert not user_interrupt(pytest.Session.Interrupted("1 error during collection"))
    assert not user_interrupt(RuntimeError())
