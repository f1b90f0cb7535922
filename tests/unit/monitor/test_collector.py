"""Collector rounds on fake hosts and a fake clock: schedule, down/up, slow hosts, events."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import subprocess
from array import array
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from otto.monitor import Collector, MonitorTarget, Replay, gauge_parser
from otto.monitor.parsers import DEFAULT_PARSERS
from otto.monitor.shell_probe import join_commands, split_output
from otto.monitor.store import MetricStore, StoreError
from otto.periodic import FakeClock
from otto.result import CommandStatus, Status
from tests.fakes import FakeHost, FakeSession

WAIT = 5.0
DATA = Path(__file__).parent / "data"
_SEPARATOR = re.compile(r"\$\{__otto_n\}(\w+) \$1 \$2")
# A section of the round's shell function: a file read by builtins ("<name>_r
# /proc/stat") or a command in a subshell; df only when the call's argument is 1.
_SECTION = re.compile(
    r"(if \[ \"\$1\" = 1 \]; then )?(?:\S+_f; )?(?:\S+_r '?(/[^ ']+)'? 2>|\( (.*?)\n\) </dev/null)",
    re.DOTALL,
)
_CALL = re.compile(r"(\S+) ([01])\Z")

# Two captured readings per command, alternated round by round so rates exist.
CAPTURED = {
    "cat /proc/stat": ["proc_stat_1.txt", "proc_stat_2.txt"],
    "cat /proc/meminfo": ["meminfo.txt"],
    "cat /proc/loadavg": ["loadavg.txt"],
    "cat /proc/net/dev": ["net_dev_1.txt", "net_dev_2.txt"],
    "cat /proc/diskstats": ["diskstats_1.txt", "diskstats_2.txt"],
    "df -P": ["df_P.txt"],
}


class Captured:
    """Plays a shell running the collector's round function from captured output.

    The first call on a session defines the function (see
    ``otto.monitor.shell_probe.monitor_script``); later ones only call it.
    """

    def __init__(self, outputs: dict[str, list[str]] | None = None) -> None:
        self.outputs = dict(CAPTURED) if outputs is None else outputs
        self.rounds = 0
        self.script = ""

    def __call__(self, cmds: str) -> CommandStatus:
        if "() {" in cmds:
            self.script = cmds
        call = _CALL.search(cmds)
        separator = _SEPARATOR.search(self.script)
        assert call is not None and separator is not None
        out = []
        for i, (sometimes, path, shell) in enumerate(_SECTION.findall(self.script)):
            if sometimes and call.group(2) == "0":
                continue
            command = f"cat {path}" if path else shell
            files = self.outputs.get(command)
            if files is None:
                code = 127
            else:
                out.append((DATA / files[self.rounds % len(files)]).read_text())
                code = 0
            out.append(f"\n{separator.group(1)} {i} {code}\n")
        self.rounds += 1
        # As a session would: one trailing newline stripped.
        output = "".join(out).removesuffix("\n")
        return CommandStatus(cmds, output, Status.Success, 0)


def monitored(name: str, clock: FakeClock, outputs: dict[str, list[str]] | None = None) -> FakeHost:
    """A fake host that answers the collector's command with captured readings."""
    return FakeHost(clock, Captured(outputs), name=name)


class Rounds:
    """The collector's update stream, awaited one update at a time."""

    def __init__(self, stream: AsyncIterator[dict[str, object]]) -> None:
        self.stream = stream

    async def next(self, kind: str = "round") -> dict[str, object]:
        while True:
            update = await asyncio.wait_for(anext(self.stream), WAIT)
            if update["type"] == kind:
                return update


def hosts_of(update: dict[str, object]) -> dict[str, dict[str, object]]:
    hosts = update["hosts"]
    assert isinstance(hosts, dict)
    return hosts


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=50.0, wall=1_800_000_000.0)


# --- one round trip per host ------------------------------------------------------------


@pytest.mark.parametrize("shell", ["sh", "busybox sh"])
def test_joined_commands_split_back_even_when_one_is_missing(shell: str) -> None:
    if subprocess.run(
        ["sh", "-c", f"command -v {shell.split(maxsplit=1)[0]}"], check=False
    ).returncode:
        pytest.skip(f"{shell} is not installed")
    separator = "__sep_test__"
    commands = [
        "echo one",
        "no_such_command_otto",
        "printf 'two'",
        "echo 3 >&2; cd /; exit 3",
        "pwd",
    ]
    line = join_commands(commands, separator)
    ran = subprocess.run([*shell.split(), "-c", line], capture_output=True, text=True, check=True)
    sections = split_output(ran.stdout.removesuffix("\n"), separator, len(commands))
    assert sections == [(0, "one\n"), (127, ""), (0, "two"), (3, ""), (0, f"{Path.cwd()}\n")]


def test_split_output_of_a_cut_off_run() -> None:
    text = "a\n\nS 0 0\nb\n"
    assert split_output(text, "S", 3) == [(0, "a\n"), (None, ""), (None, "")]


# --- the schedule -----------------------------------------------------------------------------


async def test_all_hosts_polled_at_the_same_instant_on_a_drift_free_schedule(
    clock: FakeClock,
) -> None:
    hosts = [monitored(f"h{i}", clock) for i in range(3)]
    collector = Collector(hosts, interval=2.0, clock=clock)
    rounds = Rounds(collector.subscribe())
    async with collector:
        for k in range(4):
            update = await rounds.next()
            assert all(h["up"] for h in hosts_of(update).values())
            clock.advance_to(50.0 + (k + 1) * 2.0)
    for host in hosts:
        assert host.calls[:4] == [50.0, 52.0, 54.0, 56.0]
        # The interval, and one more as a straggler's patience before its
        # command is interrupted.
        assert host.timeouts[0] == 4.0
    assert collector.rounds_run >= 4
    assert all(s.closed for h in hosts for s in h.sessions)


async def test_rates_appear_from_the_second_round(clock: FakeClock) -> None:
    host = monitored("h", clock)
    collector = Collector([host], interval=1.0, clock=clock)
    rounds = Rounds(collector.subscribe())
    async with collector:
        first = hosts_of(await rounds.next())["h"]["metrics"]
        clock.advance(1.0)
        second = hosts_of(await rounds.next())["h"]["metrics"]
    assert isinstance(first, dict) and isinstance(second, dict)
    assert "cpu.percent" not in first and "mem.percent" in first
    for name in ("cpu.percent", "net.rx_bytes_per_s", "disk.write_bytes_per_s", "load.1m"):
        assert name in second
    assert collector.latest("h") == second
    points = collector.series("h", "mem.percent")
    assert [t for t, _ in points] == [1_800_000_000.0, 1_800_000_001.0]


async def test_a_failing_host_is_down_for_the_round_and_rejoins(clock: FakeClock) -> None:
    good, bad = monitored("good", clock), monitored("bad", clock)
    bad.plan = ["ok", "raise", "timeout", "ok"]
    collector = Collector([good, bad], interval=1.0, clock=clock)
    rounds = Rounds(collector.subscribe())
    seen = []
    async with collector:
        for k in range(4):
            hosts = hosts_of(await rounds.next())
            seen.append((hosts["good"]["up"], hosts["bad"]["up"], hosts["bad"]["last_error"]))
            if k == 2:
                assert collector.snapshot()["hosts"] == {
                    "good": {"up": True, "last_error": ""},
                    # The interval, and as much patience past it.
                    "bad": {"up": False, "last_error": "no answer within 2s"},
                }
            clock.advance(1.0)
    assert seen == [
        (True, True, ""),
        (True, False, "ConnectionError: bad: connection refused"),
        (True, False, "no answer within 2s"),
        (True, True, ""),
    ]
    assert len(bad.sessions) == 2  # the exception dropped the session; a new one was opened
    assert len(good.sessions) == 1
    assert len(collector.series("good", "mem.percent")) == 4
    assert len(collector.series("bad", "mem.percent")) == 2


async def test_a_hanging_host_keeps_its_poll_and_the_others_rounds_start_on_time(
    clock: FakeClock,
) -> None:
    fast, stuck = monitored("fast", clock), monitored("stuck", clock)
    stuck.plan = ["hang"]
    stuck.connect_timeout = 1.0  # type: ignore[attr-defined]
    collector = Collector([fast, stuck], interval=1.0, clock=clock)
    rounds = Rounds(collector.subscribe())
    seen: list[tuple[object, bool, bool, object]] = []
    async with collector:
        for k in range(1, 7):
            # Parked: the schedule (or the round's deadline), and the hang until cancelled.
            await asyncio.wait_for(clock.wait_for_sleepers(2 if k <= 4 else 1), WAIT)
            clock.advance_to(50.0 + k)
            update = await rounds.next()
            hosts = hosts_of(update)
            seen.append(
                (
                    update["t"],
                    hosts["fast"]["up"],
                    hosts["stuck"]["up"],
                    hosts["stuck"]["last_error"],
                )
            )
    wall = 1_800_000_000.0
    late = "no answer within 1s"
    # Rounds 0-4: the straggler keeps its poll (cancelled once older than its
    # connect_timeout plus two intervals, at 54); round 5 polls it afresh.
    assert seen == [
        (wall + 0, True, False, late),
        (wall + 1, True, False, late),
        (wall + 2, True, False, late),
        (wall + 3, True, False, late),
        (wall + 4, True, False, late),
        (wall + 5, True, True, ""),
    ]
    assert stuck.calls == [50.0, 55.0, 56.0]
    assert fast.calls == [50.0 + k for k in range(7)]
    assert collector.round_lateness() == [0.0] * 7
    assert collector.rounds_skipped == 0 and collector.rounds_late == 0
    assert collector.missed_rounds() == {"stuck": 4}


class SlowOpen(FakeHost):
    """A host whose first session takes ``opening`` fake seconds to open, in
    ``open_session`` itself or (``lazy``) in the session's ``start``, as a
    ``RemoteHost``'s session connects on first use."""

    def __init__(
        self, clock: FakeClock, opening: float, connect_timeout: float, *, lazy: bool = False
    ) -> None:
        super().__init__(clock, Captured(), name="slow")
        self.opening = opening
        self.lazy = lazy
        self.connect_timeout = connect_timeout

    async def open_session(self, name: str) -> FakeSession:
        if self.lazy:
            session = LazySession(self, name)
            self.sessions.append(session)
            return session
        await self.wait_open()
        return await super().open_session(name)

    async def wait_open(self) -> None:
        if self.opening:
            opening, self.opening = self.opening, 0.0
            await self.clock.sleep_until(self.clock.monotonic() + opening)


class LazySession(FakeSession):
    host: SlowOpen

    async def start(self) -> None:
        await self.host.wait_open()


@pytest.mark.parametrize("lazy", [False, True], ids=["open_session", "session.start"])
async def test_a_host_still_making_its_first_connection_is_not_counted_down(
    clock: FakeClock, tmp_path: Path, lazy: bool
) -> None:
    fast = monitored("fast", clock)
    slow = SlowOpen(clock, opening=2.5, connect_timeout=10.0, lazy=lazy)
    collector = Collector([fast, slow], interval=1.0, clock=clock, db=tmp_path / "m.db")
    rounds = Rounds(collector.subscribe())
    reported: list[dict[str, dict[str, object]]] = []
    connecting: list[list[str]] = []
    async with collector:
        for k in range(1, 6):
            await asyncio.wait_for(clock.wait_for_sleepers(2 if k <= 3 else 1), WAIT)
            clock.advance_to(50.0 + k)
            reported.append(hosts_of(await rounds.next()))
            connecting.append(collector.connecting)
    # Rounds 0-2: slow is connecting, so it is in none of them; from round 3 it answers.
    assert [sorted(r) for r in reported] == [["fast"]] * 3 + [["fast", "slow"]] * 2
    assert all(r["slow"]["up"] for r in reported[3:])
    assert connecting[:2] == [["slow"], ["slow"]] and connecting[3:] == [[], []]
    status = collector.export()["runs"][0]["status"]  # type: ignore[index]
    assert [up for _, up, _ in status["slow"]] == [True, True]
    with MetricStore(tmp_path / "m.db") as store:
        assert [s.up for _, s in store.states("slow")] == [True, True]


async def test_a_first_connection_past_connect_timeout_is_down(clock: FakeClock) -> None:
    fast, slow = monitored("fast", clock), SlowOpen(clock, opening=30.0, connect_timeout=2.0)
    collector = Collector([fast, slow], interval=1.0, clock=clock)
    rounds = Rounds(collector.subscribe())
    reported: list[dict[str, dict[str, object]]] = []
    async with collector:
        for k in range(1, 5):
            await asyncio.wait_for(clock.wait_for_sleepers(2), WAIT)
            clock.advance_to(50.0 + k)
            reported.append(hosts_of(await rounds.next()))
    assert [sorted(r) for r in reported] == [["fast"]] * 2 + [["fast", "slow"]] * 2
    assert [r["slow"]["last_error"] for r in reported[2:]] == ["no answer within 1s"] * 2


def test_the_history_in_memory_is_compact_and_keeps_its_order(clock: FakeClock) -> None:
    collector = Collector([monitored("h", clock)], interval=1.0, clock=clock, history=3)
    history = collector._tracks["h"].series
    for k, metrics in enumerate([{"a": 1.0}, {"a": 2.0, "b": 20.0}, {"b": 30.0}, {"a": 4.0}]):
        history.append(float(k), metrics)
    assert history.points("a") == [(1.0, 2.0), (3.0, 4.0)]
    assert history.points("b") == [(1.0, 20.0), (2.0, 30.0)]
    assert history.points("c") == []
    assert history.times.itemsize == 8 and len(history.times) == 3
    assert history.rows.itemsize == 4 and len(history.rows) == 3 * 2  # 3 rounds, 2 metrics


def as_float32(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """``points`` with their values rounded to 32 bits, as the history in memory keeps them."""
    return [(t, array("f", [v])[0]) for t, v in points]


def series_as_float32(series: object) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """A snapshot's ``series`` with its values rounded as ``as_float32`` does."""
    assert isinstance(series, dict)
    return {
        metric: {host: as_float32([(t, v) for t, v in points]) for host, points in hosts.items()}
        for metric, hosts in series.items()
    }


def test_the_history_keeps_32_bit_values_and_doubles_past_their_range(clock: FakeClock) -> None:
    collector = Collector([monitored("h", clock)], interval=1.0, clock=clock, history=4)
    history = collector._tracks["h"].series
    history.append(0.0, {"a": 1 / 3, "b": 2.0})
    assert history.points("a") == [(0.0, array("f", [1 / 3])[0])]  # 32 bits: ~7 digits
    assert history.points("a")[0][1] == pytest.approx(1 / 3, rel=1e-7)
    # A value beyond float32's range is kept, not turned into infinity: doubles from then on.
    history.append(1.0, {"a": 1e300, "b": 3.0})
    history.append(2.0, {"a": 1 / 3, "b": 4.0})
    assert history.rows.itemsize == 8
    assert history.points("a") == [(0.0, array("f", [1 / 3])[0]), (1.0, 1e300), (2.0, 1 / 3)]
    assert history.points("b") == [(0.0, 2.0), (1.0, 3.0), (2.0, 4.0)]
    history.append(3.0, {"c": 5.0})  # a new metric keeps the doubles
    assert history.rows.itemsize == 8 and history.points("c") == [(3.0, 5.0)]


def test_a_history_not_yet_full_gives_only_its_points(clock: FakeClock) -> None:
    collector = Collector([monitored("h", clock)], interval=1.0, clock=clock, history=720)
    history = collector._tracks["h"].series
    history.append(5.0, {"a": 1.0})
    history.append(6.0, {"a": 2.0})
    assert history.points("a") == [(5.0, 1.0), (6.0, 2.0)]
    assert len(history.times) == 720  # allocated once, at its full length


def test_the_rows_are_allocated_once_at_the_second_round(clock: FakeClock) -> None:
    # The first round lacks the rates: rows of its width allocated for every
    # point would be thrown away at the second round (a hole in the heap per host).
    collector = Collector([monitored("h", clock)], interval=1.0, clock=clock, history=720)
    history = collector._tracks["h"].series
    history.append(5.0, {"mem": 1.0})
    assert len(history.rows) == 1
    history.append(6.0, {"mem": 2.0, "cpu": 50.0})
    rows = history.rows
    assert len(rows) == 720 * 2
    for k in range(7, 800):
        history.append(float(k), {"mem": 3.0, "cpu": 60.0})
    assert history.rows is rows  # the ring, never allocated again
    assert history.points("cpu")[0] == (80.0, 60.0) and len(history.points("mem")) == 720


async def test_missing_command_loses_only_its_own_metrics(clock: FakeClock) -> None:
    outputs = {c: f for c, f in CAPTURED.items() if c != "df -P"}  # a busybox without df
    host = monitored("tiny", clock, outputs)
    collector = Collector([host], interval=1.0, clock=clock)
    rounds = Rounds(collector.subscribe())
    async with collector:
        result = hosts_of(await rounds.next())["tiny"]
    assert result["up"] is True
    assert result["last_error"] == "df -P: exit status 127"
    metrics = result["metrics"]
    assert isinstance(metrics, dict)
    assert "mem.percent" in metrics and "disk.used_percent" not in metrics


async def test_monitor_target_adds_and_drops_parsers(clock: FakeClock) -> None:
    outputs = dict(CAPTURED, **{"nvidia-smi -q": ["loadavg.txt"]})
    host = monitored("gpu", clock, outputs)
    gpu = gauge_parser(lambda text: {"gpu.percent": float(text.split()[0]) * 10})
    target = MonitorTarget(host, parsers={"nvidia-smi -q": gpu, "df -P": None})
    assert "df -P" not in target.commands() and "cat /proc/stat" in target.commands()
    only = MonitorTarget(host, parsers={"nvidia-smi -q": gpu}, replace_defaults=True)
    assert list(only.commands()) == ["nvidia-smi -q"]
    collector = Collector([target], interval=1.0, clock=clock)
    rounds = Rounds(collector.subscribe())
    async with collector:
        metrics = hosts_of(await rounds.next())["gpu"]["metrics"]
    assert isinstance(metrics, dict)
    load = float((DATA / "loadavg.txt").read_text().split()[0])
    assert metrics["gpu.percent"] == pytest.approx(load * 10)
    assert not any(m.startswith("disk.used_percent") for m in metrics)


async def test_events_reach_subscribers_and_the_snapshot(clock: FakeClock) -> None:
    collector = Collector([monitored("h", clock)], interval=1.0, clock=clock)
    rounds = Rounds(collector.subscribe())
    async with collector:
        await rounds.next()
        first = collector.add_event("deploy", color="#ff0000")
        second = collector.add_event("load test", end=1_800_000_100.0)
        update = await rounds.next("event")
    assert first == {
        "id": 1,
        "t": 1_800_000_000.0,
        "end": None,
        "label": "deploy",
        "color": "#ff0000",
    }
    assert second["id"] == 2 and second["end"] == 1_800_000_100.0
    assert update == {"type": "event", "event": first}
    snapshot = collector.snapshot()
    assert snapshot["events"] == [first, second]
    assert snapshot["live"] is False
    assert snapshot["interval"] == 1.0
    metrics = snapshot["metrics"]
    assert isinstance(metrics, list) and metrics == sorted(metrics) and "mem.percent" in metrics


def test_the_timeline_in_memory_is_bounded(clock: FakeClock) -> None:
    collector = Collector([monitored("h", clock)], interval=1.0, history=2, clock=clock)
    for i in range(25):
        collector.add_event(f"e{i}")
    events = collector.snapshot()["events"]
    assert isinstance(events, list)
    assert [e["label"] for e in events] == [f"e{i}" for i in range(5, 25)]  # the latest 20
    assert collector.add_event("next")["id"] == 26  # ids go on


async def test_subscription_ends_when_the_collector_stops(clock: FakeClock) -> None:
    collector = Collector([monitored("h", clock)], interval=1.0, clock=clock)
    stream = collector.subscribe()
    await collector.start()
    assert (await asyncio.wait_for(anext(stream), WAIT))["type"] == "round"
    await collector.stop()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(stream), WAIT)
    with pytest.raises(StopAsyncIteration):  # subscribing to a stopped collector ends at once
        await asyncio.wait_for(anext(collector.subscribe()), WAIT)


async def test_series_are_bounded_by_history(clock: FakeClock) -> None:
    collector = Collector([monitored("h", clock)], interval=1.0, clock=clock, history=3)
    rounds = Rounds(collector.subscribe())
    async with collector:
        for _ in range(5):
            await rounds.next()
            clock.advance(1.0)
    assert len(collector.series("h", "mem.percent")) == 3
    assert collector.series("h", "no.such.metric") == []
    with pytest.raises(KeyError, match="nobody"):
        collector.latest("nobody")


def test_bad_arguments(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="interval"):
        Collector([monitored("h", clock)], interval=0)
    with pytest.raises(ValueError, match="twice"):
        Collector([monitored("h", clock), monitored("h", clock)])


# --- storing and replaying ----------------------------------------------------------------------


async def test_rounds_go_to_the_store_and_replay_from_db_and_json(
    clock: FakeClock, tmp_path: Path
) -> None:
    db = tmp_path / "m.db"
    hosts = [monitored("a", clock), monitored("b", clock)]
    hosts[1].plan = ["ok", "raise", "ok"]
    collector = Collector(hosts, interval=1.0, clock=clock, db=db)
    rounds = Rounds(collector.subscribe())
    async with collector:
        for _ in range(3):
            await rounds.next()
            clock.advance(1.0)
        collector.add_event("mark", color="blue")
    with MetricStore(db) as store:
        assert store.host_names() == ["a", "b"]
        # The store keeps whole values; the history in memory, 32-bit ones.
        assert as_float32(store.series("a", "mem.percent")) == collector.series("a", "mem.percent")
        assert [s.up for _, s in store.states("b")] == [True, False, True]
        assert [e.label for e in store.events()] == ["mark"]
        assert store.meta()["interval"] == "1.0"
    replayed = Replay.from_file(db).snapshot()
    live = collector.snapshot()
    assert series_as_float32(replayed["series"]) == live["series"]
    assert replayed["events"] == live["events"]
    assert replayed["live"] is False
    export = tmp_path / "m.json"
    collector.export_json(export)
    from_json = Replay.from_file(export)
    assert from_json.snapshot()["series"] == live["series"]
    assert from_json.interval == 1.0
    assert json.loads(export.read_text())["format"] == "otto.monitor"
    replay_stream = from_json.subscribe()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(replay_stream), WAIT)
    assert from_json.add_event("note")["id"] == 2


def test_replay_refuses_other_files(tmp_path: Path) -> None:
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    with pytest.raises(ValueError, match="not an otto monitor export"):
        Replay.from_file(other)


def test_default_commands_are_the_default_parsers(clock: FakeClock) -> None:
    assert list(MonitorTarget(monitored("h", clock)).commands()) == list(DEFAULT_PARSERS)


async def test_a_store_that_cannot_open_fails_start_cleanly(
    clock: FakeClock, tmp_path: Path
) -> None:
    collector = Collector([monitored("h", clock)], clock=clock, db=tmp_path / "no" / "m.db")
    with pytest.raises(StoreError, match=r"m\.db: folder .*no does not exist"):
        await collector.start()
    assert not collector.running
    await collector.stop()


async def test_non_finite_values_are_dropped_counted_and_logged_once(
    clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Garbage in /proc/loadavg makes the built-in parser give NaN and infinity;
    # a user's parser gives them outright.
    outputs = dict(CAPTURED, **{"cat /proc/loadavg": ["loadavg_garbage.txt"], "gpu": ["df_P.txt"]})
    host = monitored("h", clock, outputs)
    weird = gauge_parser(lambda text: {"gpu.percent": math.nan, "gpu.temp": 40.0})
    collector = Collector(
        [MonitorTarget(host, parsers={"gpu": weird})],
        interval=1.0,
        clock=clock,
        db=tmp_path / "m.db",
    )
    rounds = Rounds(collector.subscribe())
    with caplog.at_level(logging.WARNING, logger="otto.monitor"):
        async with collector:
            for k in range(3):
                metrics = hosts_of(await rounds.next())["h"]["metrics"]
                assert isinstance(metrics, dict)
                assert all(math.isfinite(v) for v in metrics.values())
                clock.advance_to(50.0 + k + 1)
            latest = collector.latest("h")
            exported = tmp_path / "m.json"
            collector.export_json(exported)
    assert "load.1m" not in latest and "load.5m" not in latest and "gpu.percent" not in latest
    assert latest["load.15m"] == 0.42 and latest["gpu.temp"] == 40.0
    assert collector.dropped_values == {"h": {"load.1m": 3, "load.5m": 3, "gpu.percent": 3}}
    # Logged once per metric, not once per round.
    assert caplog.text.count("gpu.percent") == 1
    assert caplog.text.count("load.1m") == 1
    text = exported.read_text()
    assert "NaN" not in text and "Infinity" not in text
    json.loads(text)
    with MetricStore(tmp_path / "m.db") as store:
        assert store.series("h", "load.1m") == []
        assert len(store.series("h", "gpu.temp")) == 3


# --- the fleet summary of ``otto monitor`` ----------------------------------------------


async def test_the_fleet_summary_counts_hosts_up_down_and_connecting(clock: FakeClock) -> None:
    from otto.cli.monitorcmd import FLEET_SUMMARY_HOSTS, _fleet_view, _named, fleet_lines

    hosts = [monitored(f"n{i}", clock) for i in range(FLEET_SUMMARY_HOSTS + 10)]
    hosts[3].plan = ["raise"]
    slow = SlowOpen(clock, opening=30.0, connect_timeout=60.0)
    collector = Collector([*hosts, slow], interval=1.0, clock=clock)
    first = _fleet_view(collector)
    polled = asyncio.ensure_future(collector.poll_round())
    await asyncio.wait_for(clock.wait_for_sleepers(2), WAIT)  # slow's connection, the deadline
    clock.advance_to(51.0)
    await asyncio.wait_for(polled, WAIT)
    second = _fleet_view(collector)
    await collector.stop()
    assert _named([h.name for h in hosts]) == f"{len(hosts)} hosts (n0 ... n{len(hosts) - 1})"
    assert _named(["a", "b"]) == "a, b"
    lines = fleet_lines(second, first)
    assert lines[:2] == [
        f"fleet: {len(hosts) + 1} hosts: {len(hosts) - 1} up, 1 down, 1 connecting;"
        " 1 rounds, 0 late, 0 skipped",
        "fleet: down: n3",
    ]
    assert lines[2].startswith("fleet: costliest per round: ")


def test_the_fleet_summary_names_the_five_costliest_hosts_of_the_minute() -> None:
    from otto.cli.monitorcmd import FleetView, fleet_lines
    from otto.monitor.probe import CostTally, RoundCost
    from otto.monitor.store import HostState

    def view(rounds: int, seconds: dict[str, float]) -> FleetView:
        costs = {}
        for name, each in seconds.items():
            tally = CostTally()
            for _ in range(rounds):
                tally.add((RoundCost(each, 2000),))
            costs[name] = tally
        states = {name: HostState(True) for name in seconds}
        return FleetView(states, [], rounds, 1, 0, costs)

    before = view(10, {f"h{i}": 0.001 * i for i in range(8)})
    # In the minute since, h1 became the costliest: its tally since, not since the start.
    after = view(20, {f"h{i}": 0.001 * i for i in range(8)})
    after.costs["h1"].add((RoundCost(1.0, 2000),))
    lines = fleet_lines(after, before)
    assert lines[0] == "fleet: 8 hosts: 8 up, 0 down, 0 connecting; 10 rounds, 0 late, 0 skipped"
    assert lines[1] == (
        "fleet: costliest per round: h1 91.8 ms 2.0 kB, h7 7.0 ms 2.0 kB, h6 6.0 ms 2.0 kB,"
        " h5 5.0 ms 2.0 kB, h4 4.0 ms 2.0 kB"
    )


async def test_otto_monitor_freezes_what_it_holds_once_no_host_is_connecting(
    clock: FakeClock,
) -> None:
    import gc

    from otto.cli.monitorcmd import _freeze_once_connected

    fast = monitored("fast", clock)
    slow = SlowOpen(clock, opening=1.5, connect_timeout=10.0)
    collector = Collector([fast, slow], interval=1.0, clock=clock)
    gc.unfreeze()
    try:
        async with collector:
            freezing = asyncio.ensure_future(_freeze_once_connected(collector))
            rounds = Rounds(collector.subscribe())
            await asyncio.wait_for(clock.wait_for_sleepers(2), WAIT)
            clock.advance_to(51.0)
            await rounds.next()  # slow still connecting: nothing frozen yet
            assert collector.connecting == ["slow"] and gc.get_freeze_count() == 0
            await asyncio.wait_for(clock.wait_for_sleepers(2), WAIT)
            clock.advance_to(52.0)
            await asyncio.wait_for(freezing, WAIT)
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
