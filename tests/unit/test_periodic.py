"""RepeatRunner on a fake host and a fake clock: the schedule, overruns, errors, stop."""

from __future__ import annotations

import asyncio
import logging
import math
from datetime import datetime, timedelta

import pytest

import otto
from otto.periodic import (
    FakeClock,
    RepeatRunner,
    SystemClock,
    check_repeat,
    next_tick,
    to_seconds,
)
from otto.result import CommandStatus, Status
from tests.fakes import FakeHost

WAIT = 5.0  # seconds a test waits for an event before failing


class Ticks:
    """An on_result callback the test can wait on."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, datetime, list[CommandStatus]]] = asyncio.Queue()

    def __call__(self, name: str, stamp: datetime, statuses: list[CommandStatus]) -> None:
        self.queue.put_nowait((name, stamp, statuses))

    async def next(self) -> tuple[str, datetime, list[CommandStatus]]:
        return await asyncio.wait_for(self.queue.get(), WAIT)


async def drive(clock: FakeClock, runner: RepeatRunner, name: str) -> None:
    """Jump the clock from deadline to deadline until the repeat ``name`` ends."""
    ended = asyncio.ensure_future(runner.wait(name))
    try:
        while not ended.done():
            parked = asyncio.ensure_future(clock.wait_for_sleepers())
            done, _ = await asyncio.wait(
                {parked, ended}, timeout=WAIT, return_when=asyncio.FIRST_COMPLETED
            )
            parked.cancel()
            assert done, "the repeat neither slept nor ended"
            if parked in done:
                deadline = clock.next_deadline
                assert deadline is not None
                clock.advance_to(deadline)
    finally:
        ended.cancel()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start=100.0)


def test_next_tick_skips_passed_deadlines() -> None:
    assert next_tick(0.0, 1.0, 0, 0.3) == 1
    assert next_tick(0.0, 1.0, 0, 1.0) == 1  # due exactly now: still runs
    assert next_tick(0.0, 1.0, 0, 1.0001) == 2
    assert next_tick(0.0, 1.0, 4, 7.5) == 8
    assert next_tick(10.0, 0.1, 0, 10.3) == 3  # float rounding does not skip tick 3


def test_to_seconds_accepts_float_and_timedelta() -> None:
    assert to_seconds(2, "interval") == 2.0
    assert to_seconds(timedelta(milliseconds=250), "interval") == 0.25
    for bad in (0, -1.0, timedelta(0), float("nan"), float("inf")):
        with pytest.raises(ValueError, match="interval"):
            to_seconds(bad, "interval")


async def test_ticks_fall_on_start_plus_k_interval(clock: FakeClock) -> None:
    host = FakeHost(clock)
    # Each command takes a bit of the interval; deadlines must not shift by it.
    host.durations = [0.3, 0.7, 0.1, 0.99, 0.5]
    runner = RepeatRunner(host, clock=clock)
    ticks = Ticks()
    runner.start("poll", "uptime", 1.0, times=5, on_result=ticks)
    await drive(clock, runner, "poll")
    assert host.calls == [100.0, 101.0, 102.0, 103.0, 104.0]
    stats = runner.stats("poll")
    assert (stats.ticks_run, stats.ticks_skipped, stats.errors, stats.running) == (5, 0, 0, False)
    assert len(runner.results("poll")) == 5
    assert host.sessions[0].name == "repeat:poll"
    assert host.sessions[0].closed


async def test_overrunning_tick_skips_the_next_instead_of_stacking(clock: FakeClock) -> None:
    host = FakeHost(clock)
    host.durations = [2.5, 0.0, 0.0]  # the first tick runs through the deadlines at 1 and 2
    runner = RepeatRunner(host, clock=clock)
    runner.start("slow", "make", timedelta(seconds=1), times=3)
    await drive(clock, runner, "slow")
    assert host.calls == [100.0, 103.0, 104.0]
    stats = runner.stats("slow")
    assert (stats.ticks_run, stats.ticks_skipped) == (3, 2)


async def test_tick_ending_exactly_on_the_deadline_is_not_skipped(clock: FakeClock) -> None:
    host = FakeHost(clock)
    host.durations = [1.0, 0.0]
    runner = RepeatRunner(host, clock=clock)
    runner.start("edge", "true", 1.0, times=2)
    await drive(clock, runner, "edge")
    assert host.calls == [100.0, 101.0]
    assert runner.stats("edge").ticks_skipped == 0


async def test_duration_bounds_the_ticks(clock: FakeClock) -> None:
    host = FakeHost(clock)
    runner = RepeatRunner(host, clock=clock)
    runner.start("d", "true", 0.5, duration=2.0)
    await drive(clock, runner, "d")
    assert host.calls == [100.0, 100.5, 101.0, 101.5]


async def test_until_bounds_the_ticks(clock: FakeClock) -> None:
    host = FakeHost(clock)
    runner = RepeatRunner(host, clock=clock)
    wall_start = clock.time()
    until = datetime.fromtimestamp(wall_start + 3.0).astimezone()
    runner.start("u", "true", 1.0, until=until)
    await drive(clock, runner, "u")
    assert host.calls == [100.0, 101.0, 102.0]
    stamps = [stamp for stamp, _ in runner.results("u")]
    assert [s.timestamp() - wall_start for s in stamps] == [0.0, 1.0, 2.0]


async def test_command_errors_are_kept_and_the_task_goes_on(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    outcomes = iter([Status.Success, Status.Error, Status.Failed, Status.Success])

    def behaviour(cmd: str) -> CommandStatus:
        status = next(outcomes)
        return CommandStatus(cmd, "timed out" if status is Status.Error else "", status, -1)

    host = FakeHost(clock, behaviour)
    runner = RepeatRunner(host, clock=clock)
    ticks = Ticks()
    with caplog.at_level(logging.WARNING, logger="otto.periodic"):
        runner.start("e", "probe", 1.0, times=4, on_result=ticks)
        seen: list[Status] = []
        for _ in range(4):
            if seen:
                await asyncio.wait_for(clock.step(), WAIT)
            seen.append((await ticks.next())[2][0].status)
    await asyncio.wait_for(runner.wait("e"), WAIT)
    assert seen == [Status.Success, Status.Error, Status.Failed, Status.Success]
    stats = runner.stats("e")
    assert (stats.ticks_run, stats.errors) == (4, 1)
    assert stats.last_error == "probe: timed out"
    assert "timed out" in caplog.text


async def test_exceptions_become_error_results_and_a_new_session(clock: FakeClock) -> None:
    host = FakeHost(clock)
    # Unreachable when the repeat starts and at its first tick; back at the second.
    host.open_errors = [ConnectionError("host unreachable")] * 2
    runner = RepeatRunner(host, clock=clock)
    ticks = Ticks()
    runner.start("x", ["a", "b"], 1.0, times=2, on_result=ticks)
    _, _, first = await ticks.next()
    await asyncio.wait_for(clock.step(), WAIT)
    _, _, second = await ticks.next()
    await asyncio.wait_for(runner.wait("x"), WAIT)
    assert first[0].status is Status.Error
    assert first[0].command == "a; b"
    assert first[0].output == "ConnectionError: host unreachable"
    assert second[0].status is Status.Success
    assert runner.stats("x").errors == 1


async def test_callback_errors_are_logged_and_the_task_goes_on(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    host = FakeHost(clock)
    calls: list[int] = []

    async def on_result(name: str, stamp: datetime, statuses: list[CommandStatus]) -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("callback broke")

    runner = RepeatRunner(host, clock=clock)
    with caplog.at_level(logging.ERROR, logger="otto.periodic"):
        runner.start("cb", "true", 1.0, times=3, on_result=on_result)
        await drive(clock, runner, "cb")
    assert calls == [0, 1, 2]
    stats = runner.stats("cb")
    assert stats.errors == 1
    assert stats.last_error == "on_result: RuntimeError: callback broke"
    assert "callback broke" in caplog.text


async def test_bad_arguments_fail_at_start(clock: FakeClock) -> None:
    runner = RepeatRunner(FakeHost(clock), clock=clock)
    for kwargs in ({"interval": 0}, {"interval": -1.0}, {"interval": timedelta(0)}):
        with pytest.raises(ValueError, match="interval"):
            runner.start("bad", "true", **kwargs)
    with pytest.raises(ValueError, match="times"):
        runner.start("bad", "true", 1.0, times=0)
    with pytest.raises(ValueError, match="cmds"):
        runner.start("bad", [], 1.0)
    assert runner.names == []


def test_start_from_synchronous_code_runs_on_otto_run_loop() -> None:
    # No loop runs here: the repeat is scheduled on otto.run's loop.
    host = FakeHost(FakeClock())
    runner = RepeatRunner(host, clock=SystemClock())
    runner.start("sync", "true", 0.001, times=2)
    otto.run(asyncio.wait_for(runner.wait("sync"), WAIT))
    assert [s[0].output for _, s in runner.results("sync")] == ["fine", "fine"]
    with pytest.raises(ValueError, match="interval"):
        runner.start("sync", "true", 0)


BAD_INTERVALS = [0, -1.0, timedelta(0), -timedelta(1), math.nan, math.inf, "1", None, True, [1]]


@pytest.mark.parametrize("interval", BAD_INTERVALS)
def test_a_bad_interval_is_value_error_outside_a_loop(interval: object) -> None:
    runner = RepeatRunner(FakeHost(FakeClock()))
    with pytest.raises(ValueError, match="interval"):
        runner.start("bad", "true", interval)  # type: ignore[arg-type]
    assert runner.names == []


@pytest.mark.parametrize("interval", BAD_INTERVALS)
async def test_a_bad_interval_is_value_error_inside_a_loop(interval: object) -> None:
    runner = RepeatRunner(FakeHost(FakeClock()))
    with pytest.raises(ValueError, match="interval"):
        runner.start("bad", "true", interval)  # type: ignore[arg-type]
    assert runner.names == []


@pytest.mark.parametrize("kwargs", [{"times": 1.5}, {"times": True}, {"max_history": -1}])
def test_other_bad_arguments_are_value_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        check_repeat("true", 1.0, **kwargs)  # type: ignore[arg-type]


async def test_duplicate_running_name_is_refused_then_allowed_after_stop(
    clock: FakeClock,
) -> None:
    host = FakeHost(clock)
    runner = RepeatRunner(host, clock=clock)
    runner.start("dup", "true", 1.0)
    with pytest.raises(ValueError, match="already running"):
        runner.start("dup", "true", 1.0)
    await asyncio.wait_for(clock.wait_for_sleepers(), WAIT)
    await asyncio.wait_for(runner.stop("dup"), WAIT)
    assert not runner.stats("dup").running
    runner.start("dup", "true", 1.0)
    await asyncio.wait_for(runner.stop_all(), WAIT)


async def test_stop_cancels_a_running_command_and_closes_the_session(clock: FakeClock) -> None:
    host = FakeHost(clock)
    host.durations = [50.0]
    runner = RepeatRunner(host, clock=clock)
    runner.start("long", "sleep 50", 1.0)
    runner.start("other", "true", 1.0)
    await asyncio.wait_for(clock.wait_for_sleepers(2), WAIT)
    await asyncio.wait_for(runner.stop_all(), WAIT)
    assert all(session.closed for session in host.sessions)
    assert clock.sleepers == 0
    assert not runner.stats("long").running
    with pytest.raises(KeyError, match="nope"):
        runner.results("nope")


async def test_max_history_bounds_results(clock: FakeClock) -> None:
    host = FakeHost(clock)
    runner = RepeatRunner(host, clock=clock)
    runner.start("h", "true", 1.0, times=5, max_history=2)
    await drive(clock, runner, "h")
    assert len(runner.results("h")) == 2
    assert runner.stats("h").ticks_run == 5
