"""Repeats on a real LocalHost: own session, real schedule, overrun, stop."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

import pytest
import pytest_asyncio

from otto import LocalHost
from otto.periodic import RepeatRunner
from otto.result import CommandStatus, Status

WAIT = 20.0


@pytest_asyncio.fixture(loop_scope="session")
async def host() -> AsyncIterator[LocalHost]:
    async with LocalHost(name="periodic") as local:
        yield local


async def test_start_repeat_runs_on_its_own_session(host: LocalHost) -> None:
    before = (await host.run("pwd")).only.output
    ticks: asyncio.Queue[list[CommandStatus]] = asyncio.Queue()
    host.start_repeat(
        "where",
        ["cd /", "pwd"],
        timedelta(milliseconds=50),
        times=3,
        on_result=lambda name, stamp, statuses: ticks.put_nowait(statuses),
    )
    outputs = [(await asyncio.wait_for(ticks.get(), WAIT))[-1].output for _ in range(3)]
    assert outputs == ["/", "/", "/"]
    # The repeat's cd happened in its own shell, not in the one host.run uses.
    assert (await host.run("pwd")).only.output == before
    results = host.repeat_results("where")
    assert len(results) == 3
    assert all(isinstance(stamp, datetime) for stamp, _ in results)
    await host.stop_repeat("where")
    assert "repeat:where" not in host.sessions


async def test_ticks_keep_to_the_schedule_and_overruns_are_skipped(host: LocalHost) -> None:
    runner = RepeatRunner(host)
    runner.start("slow", "sleep 0.25; echo done", 0.1, times=3)
    await asyncio.wait_for(runner.wait("slow"), WAIT)
    stats = runner.stats("slow")
    assert stats.ticks_run == 3
    # Each 0.25 s tick spans two more 0.1 s deadlines, which are skipped, not stacked.
    assert stats.ticks_skipped >= 4
    # Never two at once: each starts after the previous one's 0.25 s. (Exact tick
    # times are checked with a fake clock in tests/unit/test_periodic.py.)
    starts = [s[0].started for _, s in runner.results("slow")]
    assert all(b - a >= 0.24 for a, b in itertools.pairwise(starts))
    assert all(s[0].output == "done" for _, s in runner.results("slow"))


async def test_stop_interrupts_a_running_command(host: LocalHost) -> None:
    runner = RepeatRunner(host)
    started = asyncio.Event()

    class Watch:
        async def open_session(self, name: str) -> object:
            session = await host.open_session(name)
            started.set()
            return session

        name = host.name

    runner = RepeatRunner(Watch())  # type: ignore[arg-type]
    runner.start("long", "sleep 30", 1.0)
    await asyncio.wait_for(started.wait(), WAIT)
    await asyncio.wait_for(runner.stop("long"), WAIT)
    assert not runner.stats("long").running
    assert "repeat:long" not in host.sessions
    # The host's own shell is untouched.
    assert (await host.run("echo still here")).only.output == "still here"


async def test_failed_commands_are_kept_and_the_task_goes_on(host: LocalHost) -> None:
    runner = RepeatRunner(host)
    runner.start("flaky", "test -e /nonexistent/otto", 0.05, times=2)
    await asyncio.wait_for(runner.wait("flaky"), WAIT)
    results = runner.results("flaky")
    assert [s[0].status for _, s in results] == [Status.Failed, Status.Failed]
    assert runner.stats("flaky").errors == 0  # Failed is an answer, not an error


def test_start_repeat_from_synchronous_code_and_plain_repeat_results() -> None:
    import otto

    host = LocalHost(name="periodic-sync")
    for bad in (0, -1, float("nan"), "1", None):
        with pytest.raises(ValueError, match="interval"):
            host.start_repeat("bad", "true", bad)  # type: ignore[arg-type]
    assert host.loop is None  # nothing started for a bad interval
    with pytest.raises(KeyError, match="sync"):
        host.repeat_results("sync")
    ticked: list[str] = []
    both = threading.Event()

    def on_result(name: str, stamp: datetime, statuses: list[CommandStatus]) -> None:
        ticked.append(name)
        if len(ticked) == 2:
            both.set()

    host.start_repeat("sync", "echo tick", timedelta(milliseconds=20), times=2, on_result=on_result)
    assert host.loop is not None  # bound to otto.run's loop
    assert both.wait(WAIT)
    results = host.repeat_results("sync")
    assert [statuses[0].output for _, statuses in results] == ["tick", "tick"]
    otto.run(host.close())
