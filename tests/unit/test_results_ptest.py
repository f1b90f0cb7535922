"""ptest output as cases: statuses, ptest-runner's blocks, and runs that never finished."""

from __future__ import annotations

from pathlib import Path

from otto.results import SUITE, Case, parse

DATA = Path(__file__).resolve().parents[1] / "data" / "results"


def ptest(text: str) -> list[Case]:
    return parse(text, format="ptest")


def test_the_runner_log_sample() -> None:
    cases = ptest((DATA / "ptest-runner.log").read_text())
    by_name = {c.name: c for c in cases}
    assert by_name["zlib/example"].status == "passed"
    assert by_name["zlib/minigzip"].status == "failed"
    assert by_name["zlib/minigzip"].output == (
        "hello world\nminigzip: write error: No space left on device\nFAIL: minigzip"
    )
    assert by_name["zlib/infcover"].status == "skipped"
    assert by_name["libxml2/testapi-known-broken"].status == "skipped"
    assert by_name["libxml2/testapi-known-broken"].message == "XFAIL (expected failure)"
    # the runner said the script failed, though no case did
    assert by_name["busybox/(suite)"].status == "error"
    assert "Exit status is 1" in by_name["busybox/(suite)"].message
    # killed by ptest-runner's timeout
    assert by_name["openssl/(suite)"].status == "error"
    assert "timeout" in by_name["openssl/(suite)"].message
    # the log ends inside glib's block: the run stopped there
    assert cases[-1].name == "glib-2.0/(suite)"
    assert cases[-1].status == "error"
    assert "never reached END:" in cases[-1].message


def test_a_bare_run_ptest_script() -> None:
    cases = ptest("checking foo\nPASS: foo\nFAIL: bar\nSKIP: baz\n")
    assert [(c.name, c.status) for c in cases] == [
        ("foo", "passed"),
        ("bar", "failed"),
        ("baz", "skipped"),
    ]
    assert cases[0].output == "checking foo\nPASS: foo"


def test_automake_statuses() -> None:
    cases = ptest("XPASS: a\nUNSUPPORTED: b\nUNTESTED: c\nUNRESOLVED: d\nERROR: e\n")
    assert [c.status for c in cases] == ["failed", "skipped", "skipped", "error", "error"]


def test_exit_status_after_a_failed_case_adds_nothing() -> None:
    cases = ptest(
        "BEGIN: /usr/lib/x/ptest\nFAIL: a\nERROR: Exit status is 1\nEND: /usr/lib/x/ptest\n"
    )
    assert [(c.name, c.status) for c in cases] == [("x/a", "failed")]


def test_no_result_lines_is_an_error() -> None:
    for text in ("", "START: ptest-runner\nSTOP: ptest-runner\n", "PASS:\n", "make: PASS: x\n"):
        cases = ptest(text)
        assert [(c.name, c.status) for c in cases] == [(SUITE, "error")], text


def test_a_colon_far_into_a_line_is_output() -> None:
    cases = ptest("some long line of output that says PASS: nothing\nPASS: real\n")
    assert [c.name for c in cases] == ["real"]
