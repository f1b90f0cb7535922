"""Transcripts buffered in memory: few system calls per test, and no evidence lost.

The rule (:mod:`otto.testing.transcript`): the file and its folder are made at
the first write; buffered bytes are written when a command ends, at
``FLUSH_SIZE`` bytes, at a note, at close, and at the latest ``FLUSH_AFTER``
seconds after they arrived while the loop runs. Redaction and the limit hold
as before.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from otto.result import CommandStatus, Status
from otto.testing import transcript
from otto.testing.sessionlog import SessionLog
from otto.testing.transcript import FLUSH_AFTER, FLUSH_SIZE, REDACTED, Transcript

pytest_plugins = ["pytester"]


def status(host: str = "a", session: str = "default", command: str = "true") -> CommandStatus:
    return CommandStatus(
        command=command, output="", status=Status.Success, retcode=0, host=host, session=session
    )


def test_nothing_is_made_until_written_and_close_makes_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "test_x"
    raw = Transcript(folder / "transcript.raw.log", title="test_x")
    log = SessionLog(folder / "transcript.log", title="test_x")
    assert not folder.exists()
    log.close()
    raw.close()
    # Opened means linked: the files are there, with their headers, for the report's link.
    assert (folder / "transcript.raw.log").read_text().startswith("# otto transcript: test_x\n")
    assert (folder / "transcript.log").read_text().startswith("# otto transcript: test_x\n")


def test_in_a_loop_bytes_wait_in_memory_until_their_command_ends(tmp_path: Path) -> None:
    path = tmp_path / "t" / "transcript.raw.log"

    async def main() -> str:
        t = Transcript(path, title="test_x")
        t.tap("a/default", "sent", b"__os=1;true;printf 'm:1:$?k'\n")
        t.tap("b/default", "received", b"other host, half a li")
        t.tap("a/default", "received", b"m:1:0k")
        assert not path.exists()  # buffered: not one system call yet
        t.command_ended(status())
        text = path.read_text()  # on disk before the test (and the transcript) ends
        t.tap("b/default", "received", b"ne\n")
        t.close()
        return text

    at_end = asyncio.run(main())
    lines = [line.split(" ", 1)[1] for line in at_end.splitlines() if not line.startswith("#")]
    # The ended command's marker (no newline) is its line's end; b's half line waits.
    assert lines == ["a/default > __os=1;true;printf 'm:1:$?k'", "a/default < m:1:0k"]
    assert "b/default < other host, half a line" in path.read_text()


def test_a_hung_commands_output_reaches_the_file_while_the_loop_runs(tmp_path: Path) -> None:
    raw_path = tmp_path / "t" / "transcript.raw.log"
    log_path = tmp_path / "t" / "transcript.log"

    async def main() -> tuple[str, str]:
        flushes: list[None] = []
        both_flushed = asyncio.Event()

        def flushed() -> None:
            flushes.append(None)
            if len(flushes) == 2:  # the transcript's timer and the session log's
                both_flushed.set()

        transcript.after_timed_flush.append(flushed)
        try:
            t = Transcript(raw_path, title="test_x")
            log = SessionLog(log_path, title="test_x")
            for data in (b"booting\n", b"still waiting\n"):
                t.tap("board/console", "received", data)
                log.tap("board/console", "received", data)
            assert not raw_path.exists() and not log_path.exists()  # buffered
            # No command ends, nothing closes: the loop's own timers write both files
            # (at most FLUSH_AFTER seconds later); a kill -9 then must find them.
            await asyncio.wait_for(both_flushed.wait(), timeout=FLUSH_AFTER + 30)
            raw, session = raw_path.read_text(), log_path.read_text()
            t.close()
            log.close()
        finally:
            transcript.after_timed_flush.remove(flushed)
        return raw, session

    raw, session = asyncio.run(main())
    assert "board/console < booting" in raw
    assert session.startswith("# otto transcript: test_x\n")


def test_a_secret_split_across_writes_and_a_buffer_flush_is_masked(tmp_path: Path) -> None:
    secret = "hunter22-very-secret"
    path = tmp_path / "t.log"

    async def main() -> None:
        t = Transcript(path, secrets=[secret])
        # Whole lines past FLUSH_SIZE are written mid-stream; the secret straddles that
        # write and the two taps.
        t.tap("a/default", "received", b"y" * 99 + b"\n")
        t.tap("a/default", "received", b"x" * (FLUSH_SIZE + 10) + b"\n" + secret[:7].encode())
        t.tap("a/default", "received", secret[7:].encode() + b" tail\n")
        t.tap("a/default", "sent", b"echo " + secret[:3].encode())
        t.command_ended(status())
        t.tap("a/default", "sent", secret[3:].encode() + b"\n")
        t.close()

    asyncio.run(main())
    text = path.read_text()
    assert secret not in text and secret[7:] not in text
    assert REDACTED.decode() + " tail" in text


def test_the_limit_holds_with_buffered_writes(tmp_path: Path) -> None:
    raw_path, log_path = tmp_path / "raw.log", tmp_path / "log.log"

    async def main() -> tuple[int, int]:
        t = Transcript(raw_path, limit=10_000)
        log = SessionLog(log_path, limit=5_000)
        for i in range(500):
            t.tap("a/default", "received", b"x" * 99 + b"\n")
            done = CommandStatus(
                command=f"echo {i}",
                output="y" * 99,
                status=Status.Success,
                retcode=0,
                host="a",
                session="default",
            )
            log.command(done)
            if i % 7 == 0:
                t.command_ended(done)
        t.close()
        log.close()
        return t.dropped, log.dropped

    dropped, log_dropped = asyncio.run(main())
    raw, log = raw_path.read_text(), log_path.read_text()
    assert len(raw) < 10_300 and dropped > 30_000
    assert raw.count("transcript limit of 10000 bytes reached here") == 1
    assert raw.rstrip().endswith(f"{dropped} more bytes were not kept")
    assert len(log) < 5_300 and log_dropped > 0
    assert log.count("transcript limit of 5000 bytes reached here") == 1


def test_a_test_killed_mid_way_leaves_the_transcript_of_its_ended_commands(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import os, signal

        async def test_killed(host):
            await host.run("echo before-the-kill")
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    pytester.runpytest_subprocess("--otto", "--output", "run", "-p", "no:cacheprovider")
    (folder,) = [p for p in (pytester.path / "run").iterdir() if p.is_dir()]
    log = (folder / "transcript.log").read_text()
    assert "local/default $ echo before-the-kill\nbefore-the-kill\n# exit 0" in log
    assert "before-the-kill" in (folder / "transcript.raw.log").read_text()


def test_only_tests_that_used_a_host_have_a_transcript_and_its_link_is_valid(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        def test_no_host():
            pass

        async def test_with_host(host):
            await host.run("true")
        """
    )
    result = pytester.runpytest_inprocess("--otto", "--output", "run", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    run = pytester.path / "run"
    records = [
        json.loads(line)
        for path in run.glob("records*.jsonl")
        for line in path.read_text().splitlines()
        if line.strip()
    ]
    links = {r["nodeid"].rpartition("::")[2]: r.get("transcript") for r in records if "nodeid" in r}
    assert not links["test_no_host"]
    assert (run / links["test_with_host"]).is_file()
    assert "no_host" not in {p.name.rpartition("__")[2] for p in run.iterdir() if p.is_dir()}
