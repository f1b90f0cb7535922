"""The panic watch of a console: the first crash with its lines, at any cut, redacted."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest

from otto import redact
from otto.testing.evidence import register_secrets
from otto.testing.panics import AFTER_LINES, BEFORE_LINES, SIGNATURES, PanicWatch, signature_pattern
from otto.testing.records import read_records

pytest_plugins = ["pytester"]

PATTERN = signature_pattern()
SECRET = "s3cret-Console-pw"

PANIC = (
    b"~ # \x1b[6n\r\n"
    b"booting fine\r\n"
    b"\x1etok:3:0k\x1f[    6.697182] sysrq: Trigger a crash\r\n"
    b"[    6.698396] Kernel panic - not syncing: sysrq triggered crash\r\n"
    b"[    6.698746] CPU: 0 PID: 94 Comm: sh Not tainted 6.1.0-57-cloud-amd64 #1\r\n"
    b"[    6.700036] Call Trace:\r\n"
    b"[    6.701128]  dump_stack_lvl+0x44/0x5c\r\n"
    b"[    6.707732] Rebooting in 1 seconds..\r\n"
    b"ottovm login: "
)


@pytest.fixture
def secret() -> Iterator[str]:
    registered = register_secrets([SECRET])
    try:
        yield SECRET
    finally:
        redact.forget(*registered)


def watch_of(chunks: list[bytes], pattern: re.Pattern[bytes] = PATTERN) -> PanicWatch:
    watch = PanicWatch("board", pattern)
    for chunk in chunks:
        watch.feed(chunk)
    return watch


@pytest.mark.parametrize(
    "line",
    [
        "[    6.698396] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009",
        "[   12.100000] Oops: 0002 [#1] PREEMPT SMP NOPTI",
        "[   12.100000] BUG: kernel NULL pointer dereference, address: 0000000000000000",
        "[   30.000000] watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [sh:94]",
        "[   12.100000] kernel BUG at mm/slub.c:379!",
        "[   12.100000] general protection fault, probably for non-canonical address 0xdead",
        "[    1.000000] Unable to handle kernel NULL pointer dereference at virtual address 0",
        "[    1.000000] Internal error: Oops: 96000004 [#1] SMP",
        "Call Trace:",
    ],
)
def test_every_signature_is_found_in_what_a_kernel_prints(line: str) -> None:
    watch = watch_of([b"before\r\n", line.encode() + b"\r\n"])
    crash = watch.crash
    assert crash is not None and crash.host == "board"
    assert crash.pattern in SIGNATURES
    assert crash.excerpt == f"before\n{line}"


@pytest.mark.parametrize(
    "text",
    [b"all fine\r\nsysrq: Trigger a crash is what we test\n", b"Oops without a colon\n", b""],
)
def test_no_crash_without_a_signature(text: str) -> None:
    assert watch_of([text]).crash is None


def test_the_first_crash_is_kept_with_its_lines_at_every_cut() -> None:
    expected = (
        "~ # \n"  # the escape and otto's marker are no text
        "booting fine\n"
        "[    6.697182] sysrq: Trigger a crash\n"
        "[    6.698396] Kernel panic - not syncing: sysrq triggered crash\n"
        "[    6.698746] CPU: 0 PID: 94 Comm: sh Not tainted 6.1.0-57-cloud-amd64 #1\n"
        "[    6.700036] Call Trace:\n"
        "[    6.701128]  dump_stack_lvl+0x44/0x5c\n"
        "[    6.707732] Rebooting in 1 seconds.."
    )
    for cut in range(len(PANIC) + 1):
        crash = watch_of([PANIC[:cut], PANIC[cut:]]).crash
        assert crash is not None, cut
        assert crash.pattern == "Kernel panic - not syncing"
        assert crash.excerpt == expected, cut
    # The excerpt ends with the panic: the next boot's lines are not in it.
    assert "login" not in expected


def test_a_secret_the_console_prints_is_masked_even_cut_in_two(secret: str) -> None:
    text = f"token {secret}\r\n".encode() + PANIC
    middle = text.index(secret.encode()) + len(secret) // 2
    crash = watch_of([text[:middle], text[middle:]]).crash
    assert crash is not None
    assert secret not in crash.excerpt
    assert f"token {redact.MASK}" in crash.excerpt


def test_the_excerpt_is_bounded_before_and_after() -> None:
    before = b"".join(b"early %d\r\n" % i for i in range(50))
    after = b"".join(b"[ 1.000000]  frame_%d+0x1/0x2\r\n" % i for i in range(200))
    crash = watch_of([before, b"Oops: 0000 [#1] SMP\r\n", after]).crash
    assert crash is not None
    lines = crash.excerpt.split("\n")
    assert len(lines) == BEFORE_LINES + 1 + AFTER_LINES
    assert lines[0] == f"early {50 - BEFORE_LINES}"
    assert lines[BEFORE_LINES] == "Oops: 0000 [#1] SMP"
    assert lines[-1].endswith(f"frame_{AFTER_LINES - 1}+0x1/0x2")


def test_a_line_still_open_counts_when_the_watch_closes() -> None:
    watch = watch_of([b"fine\r\n", b"Kernel panic - not syncing: no newline yet"])
    assert watch.crash is None
    watch.close()
    crash = watch.crash
    assert crash is not None and crash.excerpt.endswith("no newline yet")


def test_the_run_may_give_its_own_patterns() -> None:
    pattern = signature_pattern(["FATAL ERROR", r"watchdog reset \d+"])
    watch = watch_of([b"Kernel panic - not syncing\r\n", b"x\r\nwatchdog reset 3\r\n"], pattern)
    crash = watch.crash
    assert crash is not None and crash.pattern == "watchdog reset 3"
    with pytest.raises(re.error):
        signature_pattern(["(unclosed"])


def test_otto_test_fails_a_test_whose_console_panics_and_no_other(
    pytester: pytest.Pytester,
) -> None:
    lab = pytester.path / "lab.json"
    consoles = [
        {"name": name, "term": "console", "address": "127.0.0.1:9", "console_protocol": "raw"}
        for name in ("board", "other")
    ]
    lab.write_text(json.dumps({"hosts": consoles}))
    # What each console printed reaches the plugin as it does from a live console: through
    # the console link's taps (the whole stream, kernel messages included).
    pytester.makepyfile(
        r"""
        PANIC = (
            b"fine\r\n[    6.6] sysrq: Trigger a crash\r\n"
            b"[    6.7] Kernel panic - not syncing: sysrq triggered crash\r\n"
            b"[    6.8] Call Trace:\r\n[    6.9] Rebooting in 1 seconds..\r\nlogin: "
        )

        def test_uses_both(hosts):
            hosts["board"].connection.link.stream_data(PANIC)

        def test_uses_no_host(lab):
            lab.host("other").connection.link.stream_data(PANIC)

        def test_quiet(hosts):
            hosts["board"].connection.link.stream_data(b"all fine\r\n")
        """
    )
    result = pytester.runpytest_inprocess("--lab", str(lab), "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    out = result.stdout.str()
    assert "otto: board crashed during the test" in out
    assert "Kernel panic - not syncing: sysrq triggered crash" in out
    (run,) = (pytester.path / "otto-runs").iterdir()
    found = {r.name: r for r in read_records([run / "records.jsonl"])}
    crash = found["test_uses_both"].crash
    assert crash is not None and crash.host == "board"
    assert crash.excerpt.splitlines() == [
        "fine",
        "[    6.6] sysrq: Trigger a crash",
        "[    6.7] Kernel panic - not syncing: sysrq triggered crash",
        "[    6.8] Call Trace:",
        "[    6.9] Rebooting in 1 seconds..",
    ]
    assert found["test_uses_no_host"].crash is None
    assert found["test_quiet"].crash is None and found["test_quiet"].outcome == "passed"
