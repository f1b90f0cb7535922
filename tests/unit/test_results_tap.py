"""TAP as cases: results, directives, nesting (kselftest, KTAP), YAML blocks, incomplete streams."""

from __future__ import annotations

from pathlib import Path

from otto.results import SUITE, Case, parse

DATA = Path(__file__).resolve().parents[1] / "data" / "results"


def tap(text: str) -> list[Case]:
    return parse(text, format="tap")


def summary(cases: list[Case]) -> list[tuple[str, str]]:
    return [(c.name, c.status) for c in cases]


def test_plain_results_with_their_own_output() -> None:
    cases = tap("TAP version 13\n1..3\n# booting\nok 1 - boots\nnot ok 2 - leds\nok 3\n")
    assert summary(cases) == [("boots", "passed"), ("leds", "failed"), ("test 3", "passed")]
    assert cases[0].output == "# booting\nok 1 - boots"  # the header is the stream's
    assert cases[1].output == "not ok 2 - leds"
    assert cases[1].message == "not ok"


def test_directives_skip_todo_and_timeout() -> None:
    cases = tap(
        "1..5\n"
        "ok 1 a # SKIP no usb\n"
        "not ok 2 b # TODO not written\n"
        "ok 3 c # TODO done early\n"
        "not ok 4 d # TIMEOUT 45 seconds\n"
        "not ok 5 e # exit=2\n"
    )
    assert summary(cases) == [
        ("a", "skipped"),
        ("b", "skipped"),
        ("c", "passed"),
        ("d", "error"),
        ("e", "failed"),
    ]
    assert cases[0].message == "SKIP no usb"
    assert cases[3].message == "TIMEOUT 45 seconds"
    assert cases[4].message == "exit=2"


def test_kselftest_nested_subtests_are_parent_slash_child() -> None:
    text = (DATA / "kselftest.sh").read_text()
    printed = "\n".join(
        line.removeprefix('echo "').removesuffix('"')
        for line in text.splitlines()
        if line.startswith("echo ")
    )
    cases = tap(printed)
    assert summary(cases) == [
        ("selftests: net: reuseport_bpf/reuseport_bpf.udp4", "passed"),
        ("selftests: net: reuseport_bpf/reuseport_bpf.udp6", "failed"),
        ("selftests: net: reuseport_bpf/reuseport_bpf.tcp4", "skipped"),
        ("selftests: net: reuseport_bpf", "failed"),
        ("selftests: net: fib_tests", "passed"),
        ("selftests: net: netdevsim", "skipped"),
    ]
    udp6 = cases[1]
    assert udp6.output == "# ---- IPv6 UDP ----\n# not ok 2 reuseport_bpf.udp6"
    parent = cases[3]
    assert parent.output.startswith("# timeout set to 45\n# selftests: net: reuseport_bpf")
    assert parent.output.endswith("not ok 1 selftests: net: reuseport_bpf # exit=1")
    assert cases[4].output == (
        "# timeout set to 45\n# selftests: net: fib_tests\n# PASS: route add\n"
        "ok 2 selftests: net: fib_tests"
    )


def test_ktap_indented_subtests() -> None:
    cases = tap(
        "KTAP version 1\n1..1\n"
        "    KTAP version 1\n    # Subtest: example\n    1..2\n"
        "    ok 1 example_simple_test\n    ok 2 example_skip_test # SKIP no hw\n"
        "ok 1 example\n"
    )
    assert summary(cases) == [
        ("example/example_simple_test", "passed"),
        ("example/example_skip_test", "skipped"),
        ("example", "passed"),
    ]


def test_a_subtest_missing_from_its_plan_is_an_error_under_its_parent() -> None:
    cases = tap("1..1\n# 1..3\n# ok 1 a\n# ok 2 b\nok 1 parent\n")
    assert ("parent/test 3", "error") in summary(cases)
    assert "planned 1..3, got 2" in cases[2].message


def test_yaml_block_belongs_to_the_result_before_it() -> None:
    cases = tap(
        "TAP version 13\n1..2\nnot ok 1 - first\n  ---\n  message: boom\n\n  at: x.c:3\n  ...\n"
        "ok 2 - second\n"
    )
    assert cases[0].output.endswith("  message: boom\n\n  at: x.c:3\n  ...")
    assert cases[1].output == "ok 2 - second"


def test_missing_numbers_are_error_cases() -> None:
    cases = tap("1..10\n" + "".join(f"ok {n}\n" for n in range(1, 8)))
    errors = [c for c in cases if c.status == "error"]
    assert [c.name for c in errors] == ["test 8", "test 9", "test 10"]
    assert errors[0].message == "planned 1..10, got 7: test 8 never reported"


def test_out_of_order_and_repeated_numbers_still_find_the_gap() -> None:
    cases = tap("1..4\nok 3\nok 1\nok 1\nok 4\n")
    assert [c.name for c in cases if c.status == "error"] == ["test 2"]


def test_more_results_than_planned_is_an_error() -> None:
    cases = tap("1..1\nok 1\nok 2\n")
    assert (SUITE, "error") in summary(cases)
    assert cases[-1].message == "planned 1..1 but got 2 results"


def test_no_plan_is_an_error_never_a_pass() -> None:
    cases = tap("ok 1 a\nok 2 b\n")
    assert summary(cases)[-1] == (SUITE, "error")
    assert "no plan" in cases[-1].message


def test_bail_out_is_an_error_and_the_rest_are_not_run() -> None:
    cases = tap("1..4\nok 1\nBail out! lost the board\n")
    assert summary(cases) == [
        ("test 1", "passed"),
        (SUITE, "error"),
        ("test 2", "error"),
        ("test 3", "error"),
        ("test 4", "error"),
    ]
    assert cases[1].message == "Bail out! lost the board"
    assert "bailed out (lost the board)" in cases[2].message


def test_stream_cut_inside_a_nested_run_names_the_unfinished_parent() -> None:
    cases = tap("1..3\nok 1 first\n# 1..2\n# ok 1 inner\n")
    assert summary(cases) == [
        ("first", "passed"),
        ("test 2/inner", "passed"),
        ("test 2/test 2", "error"),
        ("test 2", "error"),
        ("test 3", "error"),
    ]


def test_a_plan_of_zero_with_skip_is_one_skipped_case() -> None:
    assert summary(tap("1..0 # SKIP no network\n")) == [(SUITE, "skipped")]


def test_output_that_is_not_tap_is_an_error() -> None:
    for text in ("", "hello\nworld\n", "okay\n1005 bytes copied\n"):
        cases = tap(text)
        assert [c.status for c in cases] == ["error"], text


def test_okay_is_output_not_a_result() -> None:
    assert summary(tap("1..1\nokay so far\nok 1 real\n")) == [("real", "passed")]


def test_tap_version_12_line_is_read_past() -> None:
    assert summary(tap("TAP version 12\n1..1\nok 1 a\n")) == [("a", "passed")]


def test_two_streams_in_one_output_are_each_checked() -> None:
    cases = tap("TAP version 13\n1..2\nok 1 a\nTAP version 13\n1..1\nok 1 b\n")
    assert summary(cases) == [("a", "passed"), ("test 2", "error"), ("b", "passed")]


def test_crlf_line_ends_are_read() -> None:
    cases = tap("1..1\r\n# a\r\nok 1 a\r\n")
    assert cases[0].output == "# a\nok 1 a"


def test_yaml_must_follow_its_result_at_once() -> None:
    cases = tap("1..2\nnot ok 1 a\n# note\n  ---\n  x: 1\n  ...\nok 2 b\n")
    assert cases[0].output == "not ok 1 a"
    assert cases[1].output == "# note\n  ---\n  x: 1\n  ...\nok 2 b"


def test_yaml_under_a_nested_result() -> None:
    cases = tap("1..1\n# 1..1\n# not ok 1 inner\n#   ---\n#   at: x.c:3\n#   ...\nnot ok 1 outer\n")
    assert cases[0].name == "outer/inner"
    assert cases[0].output == "# not ok 1 inner\n#   ---\n#   at: x.c:3\n#   ..."
