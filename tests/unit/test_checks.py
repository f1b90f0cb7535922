"""The check fixture's collector: what a failed check records, and what it lets through."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from otto import redact
from otto.testing.checks import Check, describe_checks
from otto.testing.records import FailedCheck

HERE = Path(__file__)
ROOT = HERE.parents[2]


def line_of(marker: str) -> int:
    """The line of this file holding ``marker`` (outside this function)."""
    lines = inspect.getsource(inspect.getmodule(line_of)).splitlines()  # type: ignore[arg-type]
    return next(n for n, text in enumerate(lines, 1) if marker in text and "line_of(" not in text)


def test_equal_and_that_record_message_and_the_test_line() -> None:
    check = Check(HERE, ROOT)
    assert check.equal(1, 1) and check.that(True, "fine")
    assert check  # nothing failed yet
    assert not check.equal([1, 2], [1, 3], "lists")  # MARK-equal
    assert not check.that(0, "zero is falsy")  # MARK-that
    assert not check
    assert check.failures == [
        FailedCheck(
            "lists: [1, 2] != [1, 3]", f"tests/unit/test_checks.py:{line_of('MARK-equal')}"
        ),
        FailedCheck("zero is falsy", f"tests/unit/test_checks.py:{line_of('MARK-that')}"),
    ]


def helper(check: Check) -> None:
    check.equal("a", "b")  # MARK-helper


def test_the_location_is_the_test_files_line_even_through_a_helper() -> None:
    check = Check(HERE, ROOT)
    helper(check)
    # The deepest line in the test's file: the helper here (a helper in a conftest or
    # library would be skipped to the test's own line).
    assert check.failures[0].location.endswith(f":{line_of('MARK-helper')}")
    elsewhere = Check(HERE.with_name("not_this_file.py"), ROOT)
    helper(elsewhere)  # no frame in that file: the caller's line
    assert elsewhere.failures[0].location.endswith(f":{line_of('MARK-helper')}")


def test_a_with_block_records_an_assertion_and_goes_on() -> None:
    check = Check(HERE, ROOT)
    after = []
    with check:
        assert 1 + 1 == 3, "arithmetic"  # MARK-with
    after.append("ran")
    with check:
        raise AssertionError  # MARK-bare
    assert after == ["ran"]
    first, second = check.failures
    assert first.location == f"tests/unit/test_checks.py:{line_of('MARK-with')}"
    assert first.message.startswith("arithmetic")
    assert second.location.endswith(f":{line_of('MARK-bare')}")
    assert second.message == "assert failed: raise AssertionError  # MARK-bare"


def test_other_exceptions_propagate_from_a_with_block() -> None:
    check = Check(HERE, ROOT)
    with pytest.raises(ValueError, match="not an assertion"), check:
        raise ValueError("not an assertion")
    assert check.failures == []


def test_messages_are_redacted() -> None:
    secret = "hunter2-check-secret"
    redact.register(secret)
    try:
        check = Check(HERE, ROOT)
        check.equal(secret, "other", f"password {secret}")
        assert secret not in check.failures[0].message
        assert "***" in check.failures[0].message
    finally:
        redact.forget(secret)


def test_long_values_are_cut_in_the_message() -> None:
    check = Check(HERE, ROOT)
    check.equal("x" * 1000, "y")
    assert len(check.failures[0].message) < 300


def test_describe_lists_every_failure_with_its_place() -> None:
    text = describe_checks(
        [FailedCheck("one", "t.py:3"), FailedCheck("two\nmore detail", "t.py:9")]
    )
    assert text.splitlines() == [
        "2 checks failed:",
        "  t.py:3: one",
        "  t.py:9: two",
        "      more detail",
    ]
    assert describe_checks([FailedCheck("x", "t.py:1")]).startswith("1 check failed:")
