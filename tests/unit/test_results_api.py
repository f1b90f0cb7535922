"""otto.results' surface: parse, Case, the sink, ResultsFailed, and bounded, hostile input."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

import otto
from otto import redact, results
from otto.results import MAX_CASE_OUTPUT, SUITE, Case, ResultsFailed, parse


def test_exports() -> None:
    assert otto.results is results
    assert all(hasattr(results, name) for name in results.__all__)
    assert {"Case", "CaseSink", "ResultsFailed", "collect", "parse", "publish", "set_sink"} <= set(
        results.__all__
    )


def test_case_is_a_frozen_record() -> None:
    case = parse("1..1\nok 1 a\n")[0]
    assert case == Case("a", "passed", "ok 1 a")
    with pytest.raises(dataclasses.FrozenInstanceError):
        case.status = "failed"  # type: ignore[misc]
    assert case.ok
    assert not Case("b", "error", "").ok
    assert Case("c", "skipped", "").ok


def test_an_unknown_format_is_named() -> None:
    with pytest.raises(ValueError, match="unknown result format 'xunit': use one of junit, ptest"):
        parse("", format="xunit")  # type: ignore[arg-type]


def test_bytes_are_decoded() -> None:
    assert parse(b"1..1\nok 1 caf\xc3\xa9 \xff\n")[0].name == "caf\xe9 \ufffd"


def test_sink_receives_and_is_replaced() -> None:
    got: list[tuple[str, list[Case]]] = []

    def sink(source: str, cases: Sequence[Case]) -> None:
        got.append((source, list(cases)))

    previous = results.set_sink(sink)  # otto's pytest plugin may have one installed
    try:
        cases = parse("1..1\nok 1 a\n")
        results.publish("board: run", cases)
        assert got == [("board: run", cases)]
        assert results.set_sink(None) is sink
        results.publish("board: run", cases)  # no sink: nothing happens
        assert len(got) == 1
    finally:
        results.set_sink(previous)


def _failing(count: int) -> list[Case]:
    return [Case(f"case{n}", "failed", "", f"line one {n}\n  line two") for n in range(count)]


def test_results_failed_names_host_command_and_the_first_twenty() -> None:
    cases = [Case("ok", "passed", ""), *_failing(25)]
    error = ResultsFailed("board1", "run-ptest", cases)
    assert isinstance(error, AssertionError)
    text = str(error)
    lines = text.splitlines()
    assert lines[0] == "board1: run-ptest: 25 of 26 cases failed"
    assert lines[1] == "  case0 (failed: line one 0 line two)"
    assert "case19" in text and "case20" not in text
    assert lines[-1] == "  and 5 more"
    assert error.failures == cases[1:]


def test_results_failed_is_redacted() -> None:
    secret = "Hunter2-Secret"
    redact.register(secret)
    try:
        error = ResultsFailed(
            "board1", f"login -p {secret}", [Case("x", "failed", secret, f"bad {secret}")]
        )
        assert secret not in str(error)
        assert secret not in repr(error)
        assert secret not in error.command
    finally:
        redact.forget(secret)


def test_a_case_repr_is_redacted() -> None:
    secret = "Hunter2-Secret"
    redact.register(secret)
    try:
        case = parse(f"1..1\n# login {secret}\nnot ok 1 {secret} # {secret}\n")[0]
        assert secret in case.output  # the record keeps it: the writers redact
        assert secret not in repr(case)
        assert repr(Case("a", "passed", "x")) == (
            "Case(name='a', status='passed', output='x', message='', duration=None)"
        )
    finally:
        redact.forget(secret)


def test_a_huge_plan_with_numbers_out_of_order_is_bounded() -> None:
    cases = parse("1..100000000000\nok 5\nok 2\n")
    assert [c.name for c in cases[:4]] == ["test 5", "test 2", "test 1", "test 3"]
    assert cases[-1].message.endswith("99999998998 more tests after test 1002 never reported")


def test_a_huge_line_is_capped_with_a_note() -> None:
    for fmt, text in (
        ("tap", "1..1\n" + "x" * 1_000_000 + "\nok 1 a\n"),
        ("ptest", "x" * 1_000_000 + "\nPASS: a\n"),
        ("unity", "x" * 1_000_000 + "\na.c:1:a:PASS\n1 Tests 0 Failures 0 Ignored\nOK\n"),
    ):
        case = parse(text, format=fmt)[0]  # type: ignore[arg-type]
        assert case.name == "a"
        assert len(case.output) < MAX_CASE_OUTPUT + 100, fmt
        assert "characters of this case's output cut" in case.output
        assert case.output.endswith("a:PASS" if fmt == "unity" else "a")


def test_a_case_with_a_million_lines_of_output_is_capped() -> None:
    text = "1..1\n" + "line\n" * 1_000_000 + "ok 1 a\n"
    case = parse(text)[0]
    assert len(case.output) < MAX_CASE_OUTPUT + 100
    assert case.output.startswith("line\nline")
    assert case.output.endswith("line\nok 1 a")


def test_a_huge_junit_failure_is_capped() -> None:
    big = "x" * 500_000
    xml = (
        f'<testsuite><testcase name="a"><failure message="m">{big}</failure></testcase></testsuite>'
    )
    case = parse(xml, format="junit")[0]
    assert case.status == "failed"
    assert len(case.output) < MAX_CASE_OUTPUT + 100


def test_deep_tap_nesting_is_bounded() -> None:
    deep = "# " * 100_000 + "ok 1 deep"
    cases = parse(f"1..1\n{deep}\nok 1 top\n")
    assert [(c.name, c.status) for c in cases] == [("top", "passed")]


def test_hostile_lines_do_not_backtrack() -> None:
    # Lines that make naive regular expressions quadratic (10^10 steps and more here):
    # read in linear time, they finish at once; otherwise the suite's timeout ends it.
    lines = [
        "ok " + " " * 200_000 + "x",
        "not ok " + "\t " * 100_000,
        "1.." + "9" * 100_000 + "#" * 100_000,
        "a.c:1:" + ":PASSx" * 50_000,
        "PASS:" + " " * 200_000,
        "# " + "- " * 100_000,
    ]
    for fmt in ("tap", "ptest", "unity"):
        cases = parse("\n".join(lines * 5), format=fmt)  # type: ignore[arg-type]
        assert cases[-1].status == "error", fmt  # none of them is a complete suite


def test_a_hundred_thousand_cases() -> None:
    count = 100_000
    tap = f"1..{count}\n" + "".join(
        f"ok {n} - case {n}\n" if n % 100 else f"not ok {n} - case {n}\n"
        for n in range(1, count + 1)
    )
    cases = parse(tap)
    assert len(cases) == count
    assert sum(c.status == "failed" for c in cases) == count // 100
    assert cases[-1].name == f"case {count}"
    junit = (
        (
            "<testsuites>"
            + "".join(f'<testcase classname="S" name="c{n}" time="0.1"/>' for n in range(count))
            + "</testsuites>"
        )
        .replace("<testsuites>", '<testsuites><testsuite name="S">')
        .replace("</testsuites>", "</testsuite></testsuites>")
    )
    cases = parse(junit, format="junit")
    assert len(cases) == count
    assert cases[-1] == Case(f"S.c{count - 1}", "passed", "", "", 0.1)


def test_missing_numbers_of_a_huge_plan_are_bounded() -> None:
    cases = parse("1..100000000000\nok 1\n")
    assert len(cases) == 1 + 1000 + 1
    assert cases[-1].name == SUITE
    assert "more tests after test 1001" in cases[-1].message
