"""Transcript: line-intact per stream, secrets redacted, capped with a note, crashes found."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from otto.testing.sessionlog import SessionLog
from otto.testing.transcript import DEFAULT_CRASH_PATTERNS, REDACTED, Transcript

pytest_plugins = ["pytester"]

CRASH = re.compile("|".join(re.escape(p) for p in DEFAULT_CRASH_PATTERNS).encode())


def body(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith("#")]


def test_lines_of_several_hosts_stay_whole(tmp_path: Path) -> None:
    t = Transcript(tmp_path / "t.log", title="test_x")
    t.tap("a/default", "received", b"hello wo")
    t.tap("b/default", "received", b"other line\nhalf")
    t.tap("a/default", "received", b"rld\nsecond\n")
    t.tap("a/default", "sent", b"echo hi\n")
    t.close()
    lines = body(tmp_path / "t.log")
    assert [line.split(" ", 1)[1] for line in lines] == [
        "b/default < other line",
        "a/default < hello world",
        "a/default < second",
        "a/default > echo hi",
        "b/default < half",
    ]
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z ", lines[0])
    assert t.hosts == {"a", "b"}
    assert (tmp_path / "t.log").read_text().startswith("# otto transcript: test_x\n")


def test_secrets_are_redacted_even_when_split_across_chunks(tmp_path: Path) -> None:
    t = Transcript(tmp_path / "t.log", secrets=["hunter22", ""])
    t.tap("a/default", "sent", b"echo hun")
    t.tap("a/default", "sent", b"ter22\n")
    t.tap("a/default", "received", b"hunter22\n")
    t.close()
    text = (tmp_path / "t.log").read_text()
    assert "hunter22" not in text
    assert text.count(REDACTED.decode()) == 2


def test_a_secret_cut_by_the_longest_line_flush_is_masked(tmp_path: Path) -> None:
    # No newline for 64 KiB: the stream is written as a line; the secret lies across the cut.
    secret = "s3cr3t-become-pw"
    t = Transcript(tmp_path / "t.log", secrets=[secret])
    head = b"x" * (64 * 1024 - 5)
    t.tap("a/default", "received", head + secret.encode()[:5])
    t.tap("a/default", "received", secret.encode()[5:] + b" and more\n")
    t.close()
    text = (tmp_path / "t.log").read_text()
    assert (
        secret[:5] not in text
        and secret[5:] not in text
        and REDACTED.decode() + " and more" in text
    )
    assert text.count("x") >= len(head)


def test_registered_secrets_are_masked_and_the_transcripts_own_are_forgotten(
    tmp_path: Path,
) -> None:
    from otto import redact

    redact.register("lab-wide-secret")
    try:
        t = Transcript(tmp_path / "t.log", secrets=["only-this-one"])
        t.tap("a/default", "received", b"lab-wide-secret only-this-one\n")
        t.close()
        assert "secret" not in (tmp_path / "t.log").read_text()
        assert "only-this-one" not in redact.secrets()
    finally:
        redact.forget("lab-wide-secret")


def test_limit_keeps_the_start_and_says_how_much_was_dropped(tmp_path: Path) -> None:
    t = Transcript(tmp_path / "t.log", limit=10_000)
    line = b"x" * 99 + b"\n"
    for _ in range(1000):
        t.tap("a/default", "received", line * 10)
    t.close()
    text = (tmp_path / "t.log").read_text()
    assert len(text) < 10_300
    assert "transcript limit of 10000 bytes reached here" in text
    assert text.rstrip().endswith("more bytes were not kept")
    assert t.dropped > 990_000
    kept = body(tmp_path / "t.log")
    assert all(line.endswith("x" * 99) for line in kept)


def test_a_stream_without_newlines_is_written_in_bounded_pieces(tmp_path: Path) -> None:
    t = Transcript(tmp_path / "t.log")
    for _ in range(20):
        t.tap("a/default", "received", b"z" * 10_000)
    t.close()
    assert sum(len(line.split(" ", 3)[3]) for line in body(tmp_path / "t.log")) == 200_000


def test_crash_on_a_console_host_is_found_with_its_context(tmp_path: Path) -> None:
    t = Transcript(tmp_path / "t.log", crash_pattern=CRASH, crash_hosts=["board"])
    t.tap("web/default", "received", b"Kernel panic in a log file we cat\n")
    t.tap("board/default", "received", b"booting\nall fine\n[ 12.0] Kernel pa")
    t.tap("board/default", "received", b"nic - not syncing: Fatal exception\n[ 12.1] Call Trace:\n")
    t.tap("board/default", "received", b"[ 12.2]  dump_stack+0x1c/0x20\n")
    t.close()
    crashes = t.crashes
    assert len(crashes) == 1
    crash = crashes[0]
    assert crash.host == "board"
    assert crash.pattern == "Kernel panic"
    assert "all fine" in crash.excerpt
    assert "not syncing" in crash.excerpt
    assert "dump_stack" in crash.excerpt


def test_notes_and_closing_twice(tmp_path: Path) -> None:
    t = Transcript(tmp_path / "t.log")
    t.tap("a/default", "received", b"partial")
    t.note("attempt 2")
    t.close()
    t.close()
    t.tap("a/default", "received", b"late\n")
    text = (tmp_path / "t.log").read_text()
    assert text.splitlines()[-1] == "# attempt 2"
    assert "a/default < partial" in text
    assert "late" not in text


def test_transcript_log_reads_as_a_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        async def test_session(host):
            await host.run("cd /tmp")
            await host.run("echo 'it''s' \\"$(pwd)\\"")
            await host.run("for i in 1 2; do\\n  echo line $i\\ndone")
            await host.run("echo oops >&2; false")
        """
    )
    result = pytester.runpytest_inprocess("--otto", "--output", "run", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    (folder,) = [p for p in (pytester.path / "run").iterdir() if p.is_dir()]
    text = (folder / "transcript.log").read_text()
    body = [line.split(" ", 1)[1] if line[:4].isdigit() else line for line in text.splitlines()]
    body = [re.sub(r"\(\d+\.\d{3} s\)$", "(T)", line) for line in body]
    assert body[2:] == [
        "local/default $ cd /tmp",
        "# exit 0 (T)",
        "",
        "local/default $ echo 'it''s' \"$(pwd)\"",
        "its /tmp",
        "# exit 0 (T)",
        "",
        "local/default $ for i in 1 2; do",
        ">   echo line $i",
        "> done",
        "line 1",
        "line 2",
        "# exit 0 (T)",
        "",
        "local/default $ echo oops >&2; false",
        "oops",
        "# exit 1 (T)",
        "",
    ]
    assert "__o" not in text and "\x1e" not in text
    raw = (folder / "transcript.raw.log").read_text()
    assert "__o" in raw or "printf" in raw


def test_output_no_command_claimed_is_kept_at_the_end(tmp_path: Path) -> None:
    log = SessionLog(tmp_path / "transcript.log", title="t")
    log.tap("board/console", "received", b"U-Boot 2024.01\r\n__oc='x'\r\n+ __om\r\n=> ")
    log.tap("board/console", "sent", b"version\n")
    log.close()
    text = (tmp_path / "transcript.log").read_text()
    assert "board/console: received, and no command of it ended after" in text
    assert "U-Boot 2024.01\n=> " in text and "__oc" not in text and "__om" not in text
