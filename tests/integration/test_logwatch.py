"""Log watches on real hosts (this machine and the SSH lab): matches become events with
host and line; deletion, truncation, rotation, a 10 MB line, a storm, a dropped
connection and hostile file names; the remote tail ends with the watch."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from otto import Host, LocalHost
from otto.monitor import Collector, LogWatch
from tests.integration.hosts import eventually, make_host, remote_host
from tests.integration.test_cli import (  # the fixture is used by name
    StartMonitor,
    get_json,
    next_round,
    otto,
    start_monitor,  # noqa: F401 (a fixture, used by name)
)
from tests.lab import Lab

WAIT = 30.0

Event = dict[str, object]


class Timeline:
    """A collector with no metric hosts, whose events a test waits for."""

    def __init__(self) -> None:
        self.collector = Collector([], interval=60.0)
        self.events: list[Event] = []
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Timeline:
        updates = self.collector.subscribe()
        await self.collector.start()

        async def read() -> None:
            async for update in updates:
                if update.get("type") == "event":
                    event = update["event"]
                    assert isinstance(event, dict)
                    self.events.append(event)
                    self._changed.set()

        self._reader = asyncio.ensure_future(read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        await self.collector.stop()
        if self._reader is not None:
            # The subscription ends with the collector: every event has been read.
            await asyncio.wait_for(self._reader, WAIT)
            self._reader = None

    async def watch(self, host: Host, path: Path | str, pattern: str, **kw: object) -> LogWatch:
        watch = self.collector.watch_log(host, str(path), pattern, **kw)  # type: ignore[arg-type]
        await asyncio.wait_for(watch.wait_following(), WAIT)
        return watch

    def lines(self, label: str | None = None) -> list[object]:
        return [e.get("line") for e in self.events if label is None or e["label"] == label]

    async def wait(self, check: Callable[[list[Event]], bool]) -> None:
        async with asyncio.timeout(WAIT):
            while not check(self.events):
                self._changed.clear()
                await self._changed.wait()

    async def wait_lines(self, *lines: str) -> None:
        await self.wait(lambda events: all(line in self.lines() for line in lines))


@pytest.fixture
def logdir() -> Iterator[Path]:
    """A folder the lab's users can read (the lab shares this machine's files)."""
    path = Path(tempfile.mkdtemp(prefix=f"otto-logwatch-{secrets.token_hex(4)}-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=["local", "ssh"])
def made_host(request: pytest.FixtureRequest) -> Host:
    return make_host(request, str(request.param))


@pytest.fixture
async def host(made_host: Host) -> AsyncIterator[Host]:
    try:
        yield made_host
    finally:
        await made_host.close()


def append(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write("".join(f"{line}\n" for line in lines))
    path.chmod(0o644)


def tail_pids(path: Path) -> list[int]:
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"tail") and os.fsencode(path) in argv:
            pids.append(int(pid))
    return pids


async def gone(path: Path) -> None:
    """Wait until no tail of ``path`` is left (a killed process takes a moment to die)."""
    assert await eventually(lambda: tail_pids(path) == [], timeout=WAIT), tail_pids(path)


# --- the basics, hostile names, the tail's end ----------------------------------------------


HOSTILE = ["-n 5 leading dash.log", "sp ace 'q' \"dq\" $(touch PWNED) `touch PWNED`; x.log"]


async def test_a_telnet_host_on_a_terminal(lab: Lab, logdir: Path) -> None:
    """Telnet sessions sit on a terminal: the same lines, and a resume at the right byte."""
    host = remote_host(lab, "telnet1")
    log = logdir / HOSTILE[1]
    append(log, "start")
    try:
        async with Timeline() as timeline:
            watch = await timeline.watch(host, log, "ERROR")
            append(log, "ERROR one\r", "ERROR two")
            await timeline.wait_lines("ERROR one", "ERROR two")
            (pid,) = tail_pids(log)
            os.kill(pid, signal.SIGKILL)
            append(log, "ERROR while down")
            await asyncio.wait_for(watch.wait_following(2), WAIT)
            await timeline.wait_lines("ERROR while down")
        assert timeline.lines() == ["ERROR one", "ERROR two", "ERROR while down"]
    finally:
        await host.close()
    await gone(log)


@pytest.mark.parametrize("name", ["plain.log", *HOSTILE], ids=["plain", "dash", "quotes"])
async def test_new_matching_lines_become_events(host: Host, logdir: Path, name: str) -> None:
    log = logdir / name
    append(log, "ERROR before the watch")
    async with Timeline() as timeline:
        watch = await timeline.watch(host, log, r"ERROR \d+", label="errors")
        append(log, "ERROR 1", "all fine", "ERROR 2: disk")
        await timeline.wait_lines("ERROR 1", "ERROR 2: disk")
        assert timeline.lines() == ["ERROR 1", "ERROR 2: disk"]
        event = timeline.events[0]
        assert (event["label"], event["host"]) == ("errors", host.name)
        assert (watch.lines, watch.matched) == (3, 2)
        # The tail runs while the watch does, and ends with it.
        assert tail_pids(log)
    await gone(log)
    assert not watch.running
    assert sorted(p.name for p in logdir.iterdir()) == [name]


async def test_the_watch_does_not_hold_the_hosts_shell(host: Host, logdir: Path) -> None:
    log = logdir / "busy.log"
    append(log, "x")
    async with Timeline() as timeline:
        await timeline.watch(host, log, "x")
        assert (await host.run("echo still mine")).only.output == "still mine"


# --- the file changes under the watch ---------------------------------------------------------


async def test_a_deleted_log_that_comes_back(host: Host, logdir: Path) -> None:
    log = logdir / "app.log"
    append(log, "start")
    async with Timeline() as timeline:
        watch = await timeline.watch(host, log, "ERROR")
        append(log, "ERROR one")
        await timeline.wait_lines("ERROR one")
        log.unlink()
        # tail notices the file is gone before it comes back.
        assert await eventually(lambda: "inaccessible" in watch.last_note, timeout=WAIT)
        append(log, "ERROR back")
        await timeline.wait_lines("ERROR back")
    assert timeline.lines() == ["ERROR one", "ERROR back"]


async def test_a_truncated_log_is_read_from_its_start(host: Host, logdir: Path) -> None:
    log = logdir / "app.log"
    append(log, "a long first line to be cut away by the truncation")
    async with Timeline() as timeline:
        await timeline.watch(host, log, "ERROR")
        append(log, "ERROR one")
        await timeline.wait_lines("ERROR one")
        log.write_text("ERROR after\n")
        await timeline.wait_lines("ERROR after")
        append(log, "ERROR later")
        await timeline.wait_lines("ERROR later")
    assert timeline.lines() == ["ERROR one", "ERROR after", "ERROR later"]


async def test_a_rotated_log_is_followed_to_the_new_file(host: Host, logdir: Path) -> None:
    log = logdir / "app.log"
    append(log, "start")
    async with Timeline() as timeline:
        await timeline.watch(host, log, "ERROR")
        append(log, "ERROR one")
        await timeline.wait_lines("ERROR one")
        log.rename(logdir / "app.log.1")
        append(log, "ERROR in the new file")
        await timeline.wait_lines("ERROR in the new file")
        append(log, "ERROR two")
        await timeline.wait_lines("ERROR two")
    lines = timeline.lines()
    assert lines == ["ERROR one", "ERROR in the new file", "ERROR two"]


async def test_busybox_tail_follows_rotation(logdir: Path) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    bindir = logdir / "bin"
    bindir.mkdir()
    (bindir / "tail").symlink_to(busybox)
    host = LocalHost(env={**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}"})
    log = logdir / "app.log"
    append(log, "start")
    try:
        async with Timeline() as timeline:
            await timeline.watch(host, log, "ERROR")
            append(log, "ERROR one")
            await timeline.wait_lines("ERROR one")
            (pid,) = tail_pids(log)
            assert Path(f"/proc/{pid}/exe").resolve() == Path(busybox).resolve()
            log.rename(logdir / "app.log.1")
            append(log, "ERROR new file")
            await timeline.wait_lines("ERROR new file")
        assert timeline.lines() == ["ERROR one", "ERROR new file"]
    finally:
        await host.close()


async def test_a_10_mb_line_is_cut_and_read_past(host: Host, logdir: Path) -> None:
    log = logdir / "app.log"
    append(log, "start")
    async with Timeline() as timeline:
        watch = await timeline.watch(host, log, "ERROR")
        append(log, "ERROR huge " + "x" * 10_000_000, "ERROR small")
        await timeline.wait_lines("ERROR small")
        huge = timeline.lines()[0]
        assert isinstance(huge, str)
        assert huge.startswith("ERROR huge xxx")
        assert huge.endswith(f"[cut: {10_000_011 - 4096} more bytes]")
        assert len(huge) < 4200
        assert watch.lines == 2


# --- a storm ------------------------------------------------------------------------------------


def suppressed_count(label: str, events: list[Event]) -> int:
    total = 0
    for event in events:
        found = re.fullmatch(
            rf"(\d+) more match(?:es)? of {re.escape(label)} suppressed", str(event["label"])
        )
        if found:
            total += int(found[1])
    return total


async def test_a_storm_of_matches_is_rate_limited(host: Host, logdir: Path) -> None:
    log = logdir / "storm.log"
    append(log, "start")
    loop = asyncio.get_running_loop()
    total = 50_000
    async with Timeline() as timeline:
        storm = await timeline.watch(
            host, log, "ERROR", label="storm", burst=10, rate=5.0, summary_interval=1.0
        )
        began = loop.time()
        await timeline.watch(host, log, "^the end$", label="end")
        append(log, *(f"ERROR {i}" for i in range(total)), "the end")
        await timeline.wait_lines("the end")
        # The two watches read the file through tails of their own: the storm's
        # may still be behind the one that saw the end. Stopping it now would
        # (rightly) leave the rest unread.
        assert await eventually(lambda: storm.matched == total, timeout=WAIT), storm.matched
        await timeline.stop()
        elapsed = loop.time() - began
    kept = timeline.lines("storm")
    # Every match is an event or counted in a summary, and the events are few.
    assert storm.matched == total
    assert len(kept) + suppressed_count("storm", timeline.events) == total
    assert storm.suppressed == total - len(kept)
    summaries = [e for e in timeline.events if str(e["label"]).endswith("of storm suppressed")]
    assert len(kept) <= 10 + 5.0 * elapsed + 1
    assert 1 <= len(summaries) <= elapsed / 1.0 + 1
    assert kept[:10] == [f"ERROR {i}" for i in range(10)]


# --- the connection drops -------------------------------------------------------------------------


async def test_killed_tail_is_restarted_and_loses_no_line(logdir: Path) -> None:
    host = LocalHost()
    log = logdir / "app.log"
    append(log, "start")
    try:
        async with Timeline() as timeline:
            watch = await timeline.watch(host, log, "ERROR")
            append(log, "ERROR before")
            await timeline.wait_lines("ERROR before")
            (pid,) = tail_pids(log)
            os.kill(pid, signal.SIGKILL)
            append(log, "ERROR while it was down")
            await asyncio.wait_for(watch.wait_following(2), WAIT)
            append(log, "ERROR after")
            await timeline.wait_lines("ERROR while it was down", "ERROR after")
        assert timeline.lines() == ["ERROR before", "ERROR while it was down", "ERROR after"]
        assert watch.restarts == 1
    finally:
        await host.close()


async def test_a_dropped_ssh_connection_resumes_and_recovers_the_lines(
    fault_lab: Lab, logdir: Path
) -> None:
    host = remote_host(fault_lab, "ssh2")
    log = logdir / "app.log"
    append(log, "start")
    try:
        async with Timeline() as timeline:
            watch = await timeline.watch(host, log, "ERROR")
            append(log, "ERROR before")
            await timeline.wait_lines("ERROR before")
            await fault_lab.kill_sshd("ssh2")
            await gone(log)
            append(log, "ERROR while the host was unreachable")
            await fault_lab.start_sshd("ssh2")
            await asyncio.wait_for(watch.wait_following(2), WAIT)
            append(log, "ERROR after")
            await timeline.wait_lines("ERROR while the host was unreachable", "ERROR after")
        assert timeline.lines() == [
            "ERROR before",
            "ERROR while the host was unreachable",
            "ERROR after",
        ]
        assert watch.restarts >= 1
    finally:
        await host.close()
    await gone(log)


async def test_a_cut_network_resumes_and_recovers_the_lines(fault_lab: Lab, logdir: Path) -> None:
    host = remote_host(fault_lab, "ssh3", keepalive_interval=0.5, connect_timeout=2)
    log = logdir / "app.log"
    append(log, "start")
    try:
        async with Timeline() as timeline:
            watch = await timeline.watch(host, log, "ERROR")
            append(log, "ERROR before")
            await timeline.wait_lines("ERROR before")
            await fault_lab.cut_network("ssh3")
            # The keepalives go unanswered: the watch notices and tries again.
            assert await eventually(lambda: watch.restarts >= 1, timeout=WAIT)
            append(log, "ERROR while the network was cut")
            await fault_lab.restore_network("ssh3")
            await asyncio.wait_for(watch.wait_following(2), WAIT)
            append(log, "ERROR after")
            await timeline.wait_lines("ERROR while the network was cut", "ERROR after")
        assert timeline.lines() == [
            "ERROR before",
            "ERROR while the network was cut",
            "ERROR after",
        ]
    finally:
        await host.close()
    # The tail of the cut connection too: sshd ends it once the link is back.
    await gone(log)


async def test_rotated_while_disconnected_reads_the_new_file(fault_lab: Lab, logdir: Path) -> None:
    host = remote_host(fault_lab, "ssh2")
    log = logdir / "app.log"
    append(log, "start")
    try:
        async with Timeline() as timeline:
            watch = await timeline.watch(host, log, "ERROR")
            append(log, "ERROR before")
            await timeline.wait_lines("ERROR before")
            await fault_lab.kill_sshd("ssh2")
            log.rename(logdir / "app.log.1")
            append(log, "ERROR in the new file")
            await fault_lab.start_sshd("ssh2")
            await asyncio.wait_for(watch.wait_following(2), WAIT)
            await timeline.wait_lines("ERROR in the new file")
        assert timeline.lines() == ["ERROR before", "ERROR in the new file"]
    finally:
        await host.close()


# --- otto monitor --watch --------------------------------------------------------------------


def stream_events(port: int, count: int, ready: threading.Event) -> list[dict[str, object]]:
    """The next ``count`` events on the dashboard's stream; ``ready`` is set once it is open."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    found: list[dict[str, object]] = []
    try:
        conn.request("GET", "/api/stream")
        response = conn.getresponse()
        assert response.status == 200
        while len(found) < count:
            line = response.readline()
            assert line, "the stream ended"
            if line.startswith(b"data:"):
                message = json.loads(line[5:])
                if message.get("type") == "snapshot":
                    ready.set()
                if message.get("type") == "event":
                    found.append(message["event"])
        return found
    finally:
        conn.close()


def test_otto_monitor_watch(request: pytest.FixtureRequest, logdir: Path) -> None:
    launch: StartMonitor = request.getfixturevalue("start_monitor")
    log = logdir / "a:b.log"
    append(log, "ERROR: 0 before the watch")
    db = logdir / "run.db"
    monitor = launch(
        "--interval", "60", "--db", str(db), "--watch", f"local:{logdir}/a\\:b.log:ERROR: (?:\\d+)"
    )
    # Printed once tail follows the file: the lines written from then on are new.
    monitor.read_until(rb"following local:\S+a:b\.log for 'ERROR: \(\?:\\\\d\+\)'")
    with ThreadPoolExecutor(1) as reader:
        ready = threading.Event()
        events = reader.submit(stream_events, monitor.port, 1, ready)
        assert ready.wait(WAIT)
        append(log, "ERROR: nothing", "ERROR: 42 disk full")
        (event,) = events.result(WAIT)
    assert (event["host"], event["line"]) == ("local", "ERROR: 42 disk full")
    assert monitor.stop() == 0
    from otto.monitor.store import MetricStore

    with MetricStore(db) as store:
        stored = store.events()
    assert [(e.host, e.line) for e in stored] == [("local", "ERROR: 42 disk full")]


HOSTILE = "a" * 33 + "b"  # minutes of backtracking for ^(a+)+$ in Python's re


def test_a_line_that_makes_the_regex_backtrack_does_not_freeze_otto_monitor(
    request: pytest.FixtureRequest, logdir: Path
) -> None:
    # The regex ran on the event loop: rounds, the dashboard and Ctrl-C all stopped.
    launch: StartMonitor = request.getfixturevalue("start_monitor")
    log = logdir / "hostile.log"
    append(log, "start")
    monitor = launch("--interval", "0.5", "--watch", f"local:{log}:^(a+)+$")
    monitor.read_until(rb"following local:\S+hostile\.log")
    with ThreadPoolExecutor(1) as reader:
        ready = threading.Event()
        events = reader.submit(stream_events, monitor.port, 2, ready)
        assert ready.wait(WAIT)
        append(log, HOSTILE, "aaaa")
        # While the line is matched, the rounds go on and the dashboard answers.
        assert next_round(monitor.port)["type"] == "round"
        assert "local" in get_json(monitor.port, "/api/snapshot")["hosts"]  # type: ignore[operator]
        found = events.result(WAIT)
    by_line = {event["line"]: str(event["label"]) for event in found}
    assert by_line[HOSTILE].startswith("a line of hostile.log ~ ^(a+)+$ skipped: matching it")
    assert by_line["aaaa"] == "hostile.log ~ ^(a+)+$"  # the next line is matched as ever
    assert monitor.stop() == 0, monitor.output


@pytest.mark.parametrize(
    ("watch", "says"),
    [("local:/x.log", "no ':' between PATH and REGEX"), ("nohost:/x:y", "no host named 'nohost'")],
)
def test_otto_monitor_watch_refuses_bad_specs(watch: str, says: str) -> None:
    result = otto("monitor", "--port", "0", "--watch", watch)
    assert result.returncode == 2
    assert says in result.stderr
