"""Unity output as cases: the three statuses, the summary check, crashed runs."""

from __future__ import annotations

from pathlib import Path

from otto.results import SUITE, Case, parse

DATA = Path(__file__).resolve().parents[1] / "data" / "results"


def unity(text: str) -> list[Case]:
    return parse(text, format="unity")


def test_the_sample_run() -> None:
    cases = unity((DATA / "unity.log").read_text())
    assert [(c.name, c.status) for c in cases] == [
        ("test_led_turns_on", "passed"),
        ("test_led_turns_off", "failed"),
        ("test_led_blinks", "skipped"),
        ("test_led_brightness", "passed"),
        ("test_uart_echo", "failed"),
        ("test_uart_baud", "skipped"),
    ]
    assert cases[1].message == "Expected 0 Was 1"
    assert (
        cases[1].output
        == "set GPIO 12 low\ntest/test_led.c:27:test_led_turns_off:FAIL: Expected 0 Was 1"
    )
    assert cases[2].message == "IGNORE: needs a timer fixture"
    assert cases[4].message == "Expected 'A' Was 'B'. Function uart_echo. Called 1 Times."
    assert cases[5].message == "IGNORE"


def test_a_crashed_run_has_no_summary_and_is_an_error() -> None:
    cases = unity((DATA / "unity-crashed.log").read_text())
    assert [(c.name, c.status) for c in cases] == [
        ("test_flash_erase", "passed"),
        ("test_flash_write", "passed"),
        (SUITE, "error"),
    ]
    assert "no summary line" in cases[-1].message
    assert "Guru Meditation" in cases[-1].output


def test_a_summary_counting_more_tests_than_printed_is_an_error() -> None:
    cases = unity("a.c:1:t1:PASS\n\n-----\n3 Tests 0 Failures 0 Ignored\nOK\n")
    assert cases[-1].status == "error"
    assert cases[-1].message == "the summary counts 3 tests, the output shows 1"


def test_several_runs_are_each_checked() -> None:
    run = "a.c:1:t1:PASS\n-----\n1 Tests 0 Failures 0 Ignored\nOK\n"
    cases = unity(run + run.replace("t1", "t2"))
    assert [(c.name, c.status) for c in cases] == [("t1", "passed"), ("t2", "passed")]


def test_a_message_holding_a_status_word_and_a_windows_path() -> None:
    cases = unity(
        "C:\\src\\a.c:9:t_win:PASS\n"
        "a.c:3:t_msg:FAIL: expected :PASS got :FAIL\n"
        "-----\n2 Tests 1 Failures 0 Ignored\nFAIL\n"
    )
    assert [(c.name, c.status, c.message) for c in cases] == [
        ("t_win", "passed", ""),
        ("t_msg", "failed", "expected :PASS got :FAIL"),
    ]


def test_lines_that_only_look_like_results_are_output() -> None:
    cases = unity("http://x:80:PASS\nno:digits:here:PASS\nx.c:1:ok:PASSED\n")
    assert [(c.name, c.status) for c in cases] == [(SUITE, "error")]
