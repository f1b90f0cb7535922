"""Log watches without a real host: the --watch syntax, the stream splitter, the rate
limit, where tail starts, and a LogWatch on an in-memory shell and a fake clock."""

from __future__ import annotations

import asyncio
import logging
import re
import shlex
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from otto.monitor import Collector
from otto.monitor.logwatch import (
    MAX_WAITING,
    LineSplitter,
    LogWatch,
    Position,
    RateLimiter,
    WatchSpec,
    follow_command,
    parse_watch,
    plan_start,
    required_literal,
    shown,
    stat_command,
)
from otto.monitor.matcher import Matched
from otto.periodic import FakeClock
from otto.session import Session
from otto.transports.memory import MemoryShell
from tests.fakes import FakeHost

WAIT = 5.0
MARK = b"\x1flw-0123456789abcdef:"

# --- parse_watch ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web1:/var/log/syslog:ERROR", WatchSpec("web1", "/var/log/syslog", "ERROR")),
        # REGEX is everything after PATH: colons and all.
        (
            "h:/x.log:ERROR: (?:disk|net) at \\d+:\\d+",
            WatchSpec("h", "/x.log", "ERROR: (?:disk|net) at \\d+:\\d+"),
        ),
        ("h:/x.log::", WatchSpec("h", "/x.log", ":")),
        # An empty REGEX matches every line.
        ("h:/x.log:", WatchSpec("h", "/x.log", "")),
        # "\:" in PATH is a colon of the file's name; other backslashes stay.
        ("h:/logs/a\\:b.log:x", WatchSpec("h", "/logs/a:b.log", "x")),
        ("h:/logs/a\\b.log:x", WatchSpec("h", "/logs/a\\b.log", "x")),
        ("h:-dash.log:x", WatchSpec("h", "-dash.log", "x")),
        ("h:/sp ace/$(x) 'q'.log:a b", WatchSpec("h", "/sp ace/$(x) 'q'.log", "a b")),
    ],
)
def test_parse_watch(text: str, expected: WatchSpec) -> None:
    assert parse_watch(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("web1", "no ':' in it"),
        (":/x:y", "no HOST"),
        ("h:/x.log", "no ':' between PATH and REGEX"),
        ("h:/x\\:y", "no ':' between PATH and REGEX"),
        ("h::x", "PATH is empty"),
        ("h:/x:(unclosed", "is not valid: missing )"),
    ],
)
def test_parse_watch_says_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)) as caught:
        parse_watch(text)
    assert repr(text) in str(caught.value)


# --- LineSplitter --------------------------------------------------------------------------


Line = tuple[str, int]
"""A line's kept text and the bytes cut from it."""


def feed(splitter: LineSplitter, data: bytes) -> tuple[list[Line], list[str]]:
    fed = splitter.feed(data)
    return [(text, fed.cut.get(i, 0)) for i, text in enumerate(fed.lines)], fed.notes


def feed_all(splitter: LineSplitter, chunks: list[bytes]) -> tuple[list[Line], list[str]]:
    lines: list[Line] = []
    notes: list[str] = []
    for chunk in chunks:
        got, said = feed(splitter, chunk)
        lines += got
        notes += said
    return lines, notes


def test_splitter_lines_and_notes_even_mid_line() -> None:
    stream = b"one\ntw" + MARK + b"tail: x: file truncated\n" + b"o\r\nthree\n" + MARK + b"end\n"
    whole = feed_all(LineSplitter(MARK), [stream])
    assert whole == ([("one", 0), ("two", 0), ("three", 0)], ["tail: x: file truncated", "end"])
    # The same, one byte at a time: markers cut by reads are still found.
    splitter = LineSplitter(MARK)
    assert feed_all(splitter, [stream[i : i + 1] for i in range(len(stream))]) == whole
    assert splitter.content_bytes == len(b"one\ntwo\r\nthree\n")
    assert splitter.partial == 0


def test_splitter_blocks_of_lines() -> None:
    lines, notes = feed_all(LineSplitter(MARK), [b"a\r\n\nb\r\nc", b"\r", b"\n\r\n"])
    assert lines == [("a", 0), ("", 0), ("b", 0), ("c", 0), ("", 0)]
    assert notes == []


def test_splitter_keeps_a_half_marker_that_is_only_content() -> None:
    splitter = LineSplitter(MARK)
    lines, _ = feed(splitter, b"a\x1flw-01")
    assert lines == []
    lines, notes = feed(splitter, b"x\n")
    assert lines == [("a\x1flw-01x", 0)] and notes == []


@pytest.mark.parametrize("pieces", [1, 3, 1000], ids=["whole", "thirds", "small-reads"])
def test_splitter_cuts_long_lines_and_reads_past_them(pieces: int) -> None:
    splitter = LineSplitter(MARK, cap=10)
    stream = b"ok\nERROR " + b"x" * 100 + b"y" * 10_000 + b"\nshort\n" + b"z" * 11 + b"\n"
    step = -(-len(stream) // pieces)
    lines, _ = feed_all(splitter, [stream[i : i + step] for i in range(0, len(stream), step)])
    assert lines == [("ok", 0), ("ERROR xxxx", 10_096), ("short", 0), ("z" * 10, 1)]
    assert shown(*lines[1]) == "ERROR xxxx [cut: 10096 more bytes]"
    assert shown(*lines[0]) == "ok"
    assert splitter.content_bytes == len(stream)


def test_splitter_cut_never_splits_a_character() -> None:
    lines, _ = feed(LineSplitter(MARK, cap=4), "abcé and more\n".encode())
    assert lines == [("abc", len("é and more".encode()))]


def test_splitter_counts_the_unfinished_line() -> None:
    splitter = LineSplitter(MARK, cap=4)
    splitter.feed(b"done\nhalf a li")
    assert splitter.partial == len(b"half a li")
    assert splitter.content_bytes == len(b"done\nhalf a li")


def test_splitter_replaces_bad_utf8() -> None:
    lines, _ = feed(LineSplitter(MARK), b"bad \xff byte\n")
    assert lines == [("bad \ufffd byte", 0)]


@pytest.mark.parametrize("pieces", [1, 7, 1000], ids=["whole", "sevenths", "small-reads"])
def test_splitter_sizes_what_it_gives(pieces: int) -> None:
    # The watch bounds what waits by Fed.size, no longer by summing each line's length.
    splitter = LineSplitter(MARK, cap=10)
    stream = (
        b"ok\r\n\nbad \xff\nERROR "
        + b"x" * 100
        + b"\nshort\n"
        + "é".encode() * 9
        + b"\n"
        + b"a\n" * 50
        + MARK
        + b"note\n"
        + b"tail\n"
    )
    step = -(-len(stream) // pieces)
    for i in range(0, len(stream), step):
        fed = splitter.feed(stream[i : i + step])
        assert fed.size == sum(map(len, fed.lines)) + len(fed.lines)


# --- RateLimiter ---------------------------------------------------------------------------


def test_rate_limiter_burst_then_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.admit() for _ in range(5)] == [True, True, True, False, False]
    clock.advance(0.5)
    assert [limiter.admit() for _ in range(2)] == [True, False]
    clock.advance(100)
    assert limiter.take(10) == 3
    clock.advance(1.9)
    assert limiter.take(10) == 3


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_rate_limiter_refuses_bad_limits(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match=r"rate|burst"):
        RateLimiter(rate=rate, burst=burst, clock=FakeClock())


# --- where tail starts ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "previous", "start", "position"),
    [
        # First start: at the end, or the whole file once a missing one appears.
        ("64:12 100\n", None, "-c +101", Position("64:12", 100)),
        ("missing\n", None, "-c +1", None),
        ("unknown\n", None, "-n 0", None),
        ("", None, "-n 0", None),
        # Again after a drop, from a sure position.
        ("64:12 150\n", Position("64:12", 100), "-c +101", Position("64:12", 100)),
        ("64:12 100\n", Position("64:12", 100), "-c +101", Position("64:12", 100)),
        ("64:12 40\n", Position("64:12", 100), "-c +1", Position("64:12", 0)),
        ("64:13 40\n", Position("64:12", 100), "-c +1", Position("64:13", 0)),
        ("missing\n", Position("64:12", 100), "-c +1", None),
        ("unknown\n", Position("64:12", 100), "-n 0", None),
    ],
)
def test_plan_start(
    answer: str, previous: Position | None, start: str, position: Position | None
) -> None:
    got_start, got_position, why = plan_start(answer, previous)
    assert (got_start, got_position) == (start, position)
    assert why


HOSTILE = [
    "-n 5",
    "a b",
    "it's",
    '"q"',
    "$(touch pwned)",
    "`touch pwned`",
    "x;touch pwned",
    "é*?[a]",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_remote_commands_quote_the_path(tmp_path: Path, name: str) -> None:
    """The commands run in a real sh here: the path is one word, nothing in it runs."""
    path = tmp_path / name
    path.write_bytes(b"12345\n")
    stat = subprocess.run(
        ["sh", "-c", stat_command(str(path))],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    assert stat.stdout.split()[1] == "6"
    follow = follow_command(str(path), "-c +1", "0123456789abcdef").replace("tail -F", "tail")
    tail = subprocess.run(["sh", "-c", follow], capture_output=True, cwd=tmp_path, check=True)
    assert tail.stdout == b"12345\n" + MARK + b"end\n"
    assert not (tmp_path / "pwned").exists()
    assert shlex.quote(str(path)) in follow


def test_tails_messages_come_marked(tmp_path: Path) -> None:
    follow = follow_command(str(tmp_path / "absent"), "-c +1", "0123456789abcdef")
    tail = subprocess.run(
        ["sh", "-c", follow.replace("tail -F", "tail")], capture_output=True, check=True
    )
    notes = LineSplitter(MARK).feed(tail.stdout).notes
    assert notes[-1] == "end"
    assert "absent" in notes[0]


# --- a LogWatch on an in-memory shell --------------------------------------------------------


class MemoryHost:
    """A host whose private sessions are in-memory shells; ``stat`` answers ``stat_answer``."""

    def __init__(self, name: str = "mem") -> None:
        self.name = name
        self.shells: list[MemoryShell] = []
        self.stat_answer = b"64:7 10\n"
        self.sessions: list[Session] = []
        self.unreachable = False

    async def _handle(self, command: str) -> tuple[bytes, int]:
        assert command.startswith("p=")
        return self.stat_answer, 0

    def private_session(self, purpose: str, *, raw: bool = False) -> Session:
        session = Session(
            f"{purpose}-{len(self.sessions)}",
            host=self.name,
            transport_factory=lambda: MemoryShell.made(
                self.shells, self._handle, fail_open=self.unreachable
            ),
        )
        self.sessions.append(session)
        return session

    def tail_command(self, index: int = -1) -> str:
        written = self.shells[index].written.decode()
        return next(line for line in written.splitlines() if "tail -F" in line)

    def mark(self, index: int = -1) -> bytes:
        found = re.search(r"lw-([0-9a-f]{16}):", self.tail_command(index))
        assert found is not None
        return b"\x1flw-" + found[1].encode() + b":"


@pytest.fixture
async def clock() -> FakeClock:
    return FakeClock()


class Events(list[tuple[str, str]]):
    """What a watch emitted; ``await wait(n)`` until there are ``n``."""

    def __init__(self) -> None:
        super().__init__()
        self._changed = asyncio.Event()

    def add(self, label: str, line: str) -> None:
        self.append((label, line))
        self._changed.set()

    async def wait(self, count: int) -> None:
        while len(self) < count:
            self._changed.clear()
            await self._changed.wait()


@pytest.fixture
async def events() -> Events:
    return Events()


@pytest.fixture
async def watch(clock: FakeClock, events: Events) -> AsyncIterator[tuple[LogWatch, MemoryHost]]:
    host = MemoryHost()
    made = LogWatch(
        host,
        "/var/log/app.log",
        r"ERROR (\d+)",
        emit=events.add,
        clock=clock,
        rate=1.0,
        burst=3,
        summary_interval=10.0,
        retry=(1.0, 4.0),
    )
    made.start()
    try:
        yield made, host
    finally:
        await made.stop()


async def test_matching_lines_become_events(
    watch: tuple[LogWatch, MemoryHost], events: Events
) -> None:
    logwatch, host = watch
    async with asyncio.timeout(WAIT):
        await logwatch.wait_following()
    assert "tail -F -c +11 -- /var/log/app.log" in host.tail_command()
    host.shells[-1].print(b"ERROR 1\nfine\nERROR 2 \xff\n")
    async with asyncio.timeout(WAIT):
        await events.wait(2)
    assert events == [
        ("app.log ~ ERROR (\\d+)", "ERROR 1"),
        ("app.log ~ ERROR (\\d+)", "ERROR 2 \ufffd"),
    ]
    assert (logwatch.lines, logwatch.matched, logwatch.suppressed) == (3, 2, 0)


async def test_a_storm_is_summarized(
    watch: tuple[LogWatch, MemoryHost], events: Events, clock: FakeClock
) -> None:
    logwatch, host = watch
    async with asyncio.timeout(WAIT):
        await logwatch.wait_following()
    host.shells[-1].print(b"".join(b"ERROR %d\n" % i for i in range(1000)))
    async with asyncio.timeout(WAIT):
        await logwatch.wait_matched()
    assert [line for _, line in events] == ["ERROR 0", "ERROR 1", "ERROR 2"]
    assert logwatch.suppressed == 997
    # The summary comes summary_interval after the first suppressed match.
    async with asyncio.timeout(WAIT):
        await clock.step()
        await events.wait(4)
    assert events[3] == ("997 more matches of app.log ~ ERROR (\\d+) suppressed", "ERROR 999")
    assert clock.monotonic() == 10.0
    # By then the bucket has refilled (burst 3 at 1/s): three pass, the rest wait.
    host.shells[-1].print(b"".join(b"ERROR %d\n" % i for i in range(5)))
    async with asyncio.timeout(WAIT):
        await logwatch.wait_matched()
    assert len(events) == 7
    await logwatch.stop()
    assert events[-1] == ("2 more matches of app.log ~ ERROR (\\d+) suppressed", "ERROR 4")
    assert logwatch.matched == 1005 == 3 + 997 + 3 + 2


async def test_a_drop_resumes_at_the_start_of_the_cut_line(
    watch: tuple[LogWatch, MemoryHost], events: Events, clock: FakeClock
) -> None:
    logwatch, host = watch
    async with asyncio.timeout(WAIT):
        await logwatch.wait_following()
    host.shells[-1].print(b"ERROR 1\nERROR 2 half")
    async with asyncio.timeout(WAIT):
        await events.wait(1)
    host.stat_answer = b"64:7 100\n"
    host.shells[-1].lose()
    async with asyncio.timeout(WAIT):
        await clock.step()
        await logwatch.wait_following(2)
    # 10 bytes were there, 8 were read as whole lines: "ERROR 2 half" is read again.
    assert "tail -F -c +19 -- " in host.tail_command()
    assert len(host.shells) == 2 and host.shells[0].closed
    assert logwatch.restarts == 1
    assert [line for _, line in events] == ["ERROR 1"]


async def test_after_a_rotation_a_drop_resumes_at_the_end(
    watch: tuple[LogWatch, MemoryHost], clock: FakeClock
) -> None:
    logwatch, host = watch
    async with asyncio.timeout(WAIT):
        await logwatch.wait_following()
    shell = host.shells[-1]
    shell.print(
        b"a\n"
        + host.mark()
        + b"tail: '/var/log/app.log' has been replaced;  following new file\nb\n"
    )
    assert "replaced" in logwatch.last_note
    host.stat_answer = b"64:8 77\n"
    shell.lose()
    async with asyncio.timeout(WAIT):
        await clock.step()
        await logwatch.wait_following(2)
    assert "tail -F -c +78 -- " in host.tail_command()


async def test_tail_ending_is_a_drop_with_its_reason(
    watch: tuple[LogWatch, MemoryHost], clock: FakeClock
) -> None:
    logwatch, host = watch
    async with asyncio.timeout(WAIT):
        await logwatch.wait_following()
    host.shells[-1].print(host.mark() + b"tail: invalid option -- 'F'\n" + host.mark() + b"end\n")
    async with asyncio.timeout(WAIT):
        await clock.wait_for_sleepers()
    assert "invalid option" in logwatch.last_note and "tail ended" in logwatch.last_note
    assert host.shells[0].closed


async def test_the_back_off_doubles_up_to_its_limit(
    watch: tuple[LogWatch, MemoryHost], clock: FakeClock
) -> None:
    logwatch, host = watch
    waits = []
    for count in range(1, 5):
        async with asyncio.timeout(WAIT):
            await logwatch.wait_following(count)
        host.shells[-1].lose()
        before = clock.monotonic()
        async with asyncio.timeout(WAIT):
            waits.append(await clock.step() - before)
    assert waits == [1.0, 2.0, 4.0, 4.0]


def test_a_watch_refuses_bad_arguments() -> None:
    host = MemoryHost()

    def emit(label: str, line: str) -> None: ...

    with pytest.raises(ValueError, match="bad log watch regex"):
        LogWatch(host, "/x", "(", emit=emit)
    with pytest.raises(ValueError, match="needs a file path"):
        LogWatch(host, "", "x", emit=emit)
    with pytest.raises(ValueError, match="NUL or a newline"):
        LogWatch(host, "/x\n", "x", emit=emit)
    console = MemoryHost()
    console.one_stream = True  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="single stream"):
        LogWatch(console, "/x", "x", emit=emit)


# --- through the Collector ----------------------------------------------------------------


async def test_collector_events_carry_host_and_line(clock: FakeClock, tmp_path: Path) -> None:
    host = MemoryHost("box")
    collector = Collector([], interval=5.0, clock=clock, db=tmp_path / "m.db")
    watch = collector.watch_log(host, "/l", "boom", label="boom in l")
    assert collector.log_watches == [watch]
    updates = collector.subscribe()
    await collector.start()
    try:
        async with asyncio.timeout(WAIT):
            await watch.wait_following()
        host.shells[-1].print(b"a boom here\n")
        async with asyncio.timeout(WAIT):
            update = await anext(updates)
            while update.get("type") != "event":
                update = await anext(updates)
        event = update["event"]
        assert isinstance(event, dict)
        assert (event["label"], event["host"], event["line"]) == ("boom in l", "box", "a boom here")
        shown = collector.snapshot()["events"]
        assert isinstance(shown, list) and [e.get("line") for e in shown] == ["a boom here"]
    finally:
        await collector.stop()
    assert not watch.running and host.shells[-1].closed


async def test_collector_watch_log_by_name_needs_a_host_with_sessions(clock: FakeClock) -> None:
    collector = Collector([FakeHost(clock, name="f")], clock=clock)
    with pytest.raises(KeyError, match="'nope' is not monitored"):
        collector.watch_log("nope", "/x", "y")
    with pytest.raises(ValueError, match="f: cannot open a session of its own"):
        collector.watch_log("f", "/x", "y")


async def test_one_warning_per_outage(
    watch: tuple[LogWatch, MemoryHost], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    logwatch, host = watch
    async with asyncio.timeout(WAIT):
        await logwatch.wait_following()
    host.unreachable = True
    with caplog.at_level(logging.DEBUG, logger="otto.monitor.logwatch"):
        host.shells[-1].lose()
        async with asyncio.timeout(WAIT):
            for _ in range(3):
                await clock.step()
            await clock.wait_for_sleepers()  # the third attempt failed too
            host.unreachable = False
            await clock.step()
            await logwatch.wait_following(2)
    tries = [r for r in caplog.records if "following it again" in r.getMessage()]
    assert [r.levelno for r in tries] == [logging.WARNING] + [logging.DEBUG] * 3
    assert "the memory shell was told to fail" in tries[-1].getMessage()
    assert logwatch.restarts == 4


async def test_a_line_that_backtracks_for_minutes_is_skipped_and_the_loop_runs_on(
    clock: FakeClock, events: Events
) -> None:
    # re.search ran on the event loop holding the GIL: print() below never returned.
    host = MemoryHost()
    logwatch = LogWatch(
        host, "/var/log/app.log", r"^(a+)+$", emit=events.add, clock=clock, match_limit=0.5
    )
    logwatch.start()
    try:
        async with asyncio.timeout(WAIT):
            await logwatch.wait_following()
        host.shells[-1].print(b"a" * 33 + b"b\naaa\n")
        ticks = 0
        while len(events) < 2:  # the loop turns while the worker matches
            ticks += 1
            async with asyncio.timeout(WAIT):
                await asyncio.sleep(0)
        assert ticks > 1
        async with asyncio.timeout(WAIT):
            await logwatch.wait_matched()
        assert events == [
            (
                "a line of app.log ~ ^(a+)+$ skipped: matching it took over 0.5s",
                "a" * 33 + "b",
            ),
            ("app.log ~ ^(a+)+$", "aaa"),
        ]
        assert (logwatch.lines, logwatch.matched, logwatch.skipped) == (2, 1, 1)
    finally:
        await logwatch.stop()


async def test_lines_past_what_a_watch_keeps_waiting_are_counted_in_one_event(
    clock: FakeClock, events: Events
) -> None:
    host = MemoryHost()
    logwatch = LogWatch(
        host, "/var/log/app.log", r"^(a+)+$", emit=events.add, clock=clock, match_limit=0.5
    )
    logwatch.start()
    try:
        async with asyncio.timeout(WAIT):
            await logwatch.wait_following()
        # The hostile line waits to be matched: the next read would pass what may
        # wait, and is counted; a later, smaller one fits again.
        host.shells[-1].print(b"a" * 33 + b"b\n")
        host.shells[-1].print(b"x\n" * (MAX_WAITING // 2))
        host.shells[-1].print(b"aaa\n" * 3)
        async with asyncio.timeout(WAIT):
            await logwatch.wait_matched()
        assert [label for label, _ in events] == [
            "a line of app.log ~ ^(a+)+$ skipped: matching it took over 0.5s",
            *["app.log ~ ^(a+)+$"] * 3,
            f"{MAX_WAITING // 2} lines of app.log ~ ^(a+)+$ not matched: the watch fell behind",
        ]
        assert events[-1][1] == "x"
        assert (logwatch.skipped, logwatch.matched) == (1 + MAX_WAITING // 2, 3)
        assert logwatch.lines == 1 + MAX_WAITING // 2 + 3
    finally:
        await logwatch.stop()


@pytest.mark.parametrize(
    ("pattern", "literal"),
    [
        (r"ERROR \d+", "ERROR "),
        (r"^kernel: (panic|oops)", "kernel: "),
        (r"x*abc", "abc"),
        (r"foo(bar)?baz", "foo"),
        (r"a\.b", "a.b"),
        (r"(?x) E R R", "ERR"),
        (r"(?i)error", ""),  # matched regardless of case: no shortcut
        (r"error|warn", ""),
        (r"[ab]c", "c"),
        (r"(?=ERR)E", "E"),
        (r"(?!x)y", "y"),
        (r"\d+", ""),
    ],
)
def test_required_literal(pattern: str, literal: str) -> None:
    assert required_literal(re.compile(pattern)) == literal
    # What it returns is in every text the pattern finds a match in.
    for text in ("ERROR 12", "kernel: oops", "aaabc", "foobaz", "a.b", "ERR", "xc", "y"):
        found = re.search(pattern, text)
        if found is not None:
            assert literal in text


async def test_only_lines_with_the_patterns_literal_reach_the_worker(
    clock: FakeClock, events: Events
) -> None:
    host = MemoryHost()
    logwatch = LogWatch(
        host, "/var/log/app.log", r"X(a+)+$", emit=events.add, clock=clock, match_limit=0.5
    )
    sent: list[str] = []
    search = logwatch._matcher.search

    async def spy(lines: list[str]) -> Matched:
        sent.extend(lines)
        return await search(lines)

    logwatch._matcher.search = spy  # type: ignore[method-assign]
    logwatch.start()
    try:
        async with asyncio.timeout(WAIT):
            await logwatch.wait_following()
        hostile = "X" + "a" * 33 + "b"
        host.shells[-1].print(f"info 1\n{hostile}\nfine\nXaaa\n".encode())
        async with asyncio.timeout(WAIT):
            await events.wait(2)
            await logwatch.wait_matched()
        assert sent == [hostile, "Xaaa"]
        # The worker's answers, for the lines it was given, map back to the read's lines.
        assert events == [
            ("a line of app.log ~ X(a+)+$ skipped: matching it took over 0.5s", hostile),
            ("app.log ~ X(a+)+$", "Xaaa"),
        ]
        assert (logwatch.lines, logwatch.matched, logwatch.skipped) == (4, 1, 1)
    finally:
        await logwatch.stop()


async def test_the_followed_stream_is_not_kept_in_the_sessions_expect_buffer(
    watch: tuple[LogWatch, MemoryHost], events: Events
) -> None:
    # Every byte of the log was decoded a second time into the session's expect
    # buffer, which kept up to 16 Mi characters of it for as long as the watch ran.
    logwatch, host = watch
    async with asyncio.timeout(WAIT):
        await logwatch.wait_following()
    host.shells[-1].print(b"fine\n" * 1000 + b"ERROR 1\n")
    async with asyncio.timeout(WAIT):
        await events.wait(1)
    assert logwatch.lines == 1001
    assert len(host.sessions[-1]._buffer) == 0
