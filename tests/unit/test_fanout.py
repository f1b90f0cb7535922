"""Fan-out helpers: every selected host gets its call; one failing never stops the others."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import otto.lab as lab_module
from otto.fanout import do_for_all_hosts, run_on_all_hosts
from otto.hosts import Host
from otto.lab import load_lab
from otto.result import RunResult, Status

NAMES = ("web1", "web2", "db1", "old-web")


@pytest.fixture(autouse=True)
def local_lab(tmp_path: Path) -> Iterator[None]:
    """A lab of four local hosts, made current for the test."""
    saved = lab_module._state.lab
    f = tmp_path / "lab.json"
    f.write_text(json.dumps({"hosts": [{"name": n, "term": "local"} for n in NAMES]}))
    load_lab(f)
    yield
    lab_module._state.lab = saved


@pytest.fixture
async def closing() -> AsyncIterator[None]:
    yield
    await lab_module.current_lab().close()


async def test_do_for_all_hosts_returns_each_result_in_lab_order() -> None:
    async def name_twice(host: Host, sep: str, *, times: int) -> str:
        return sep.join([host.name] * times)

    got = await do_for_all_hosts(name_twice, "+", times=2)
    assert list(got) == list(NAMES)
    assert got["db1"] == "db1+db1"


async def test_pattern_is_a_regex_searched_in_names() -> None:
    async def name(host: Host) -> str:
        return host.name

    assert list(await do_for_all_hosts(name, pattern="web")) == ["web1", "web2", "old-web"]
    assert list(await do_for_all_hosts(name, pattern=r"^web\d$")) == ["web1", "web2"]
    assert await do_for_all_hosts(name, pattern="^nothing$") == {}


@pytest.mark.parametrize("concurrent", [True, False])
async def test_one_failing_host_does_not_cancel_the_others(concurrent: bool) -> None:
    failed = asyncio.Event()
    finished: list[str] = []

    async def work(host: Host) -> str:
        if host.name == "web2":
            failed.set()
            raise RuntimeError("web2 is broken")
        if concurrent:
            # Still running after web2 has failed: a TaskGroup would cancel us here.
            await asyncio.wait_for(failed.wait(), timeout=10)
            await asyncio.sleep(0)
        finished.append(host.name)
        return "ok"

    outcome = await do_for_all_hosts(work, concurrent=concurrent)
    assert isinstance(outcome["web2"], RuntimeError)
    assert sorted(finished) == sorted(n for n in NAMES if n != "web2")
    assert all(outcome[n] == "ok" for n in NAMES if n != "web2")


async def test_concurrent_runs_overlap() -> None:
    started: set[str] = set()
    everyone = asyncio.Event()

    async def meet(host: Host) -> None:
        started.add(host.name)
        if len(started) == len(NAMES):
            everyone.set()
        # Only returns if all hosts are in flight at once.
        await asyncio.wait_for(everyone.wait(), timeout=10)

    got = await do_for_all_hosts(meet)
    assert got == dict.fromkeys(NAMES)


async def test_sequential_runs_one_at_a_time() -> None:
    running = 0
    peak = 0

    async def one(host: Host) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0)
        running -= 1

    await do_for_all_hosts(one, concurrent=False)
    assert peak == 1


async def test_cancelling_the_call_cancels_every_host() -> None:
    entered = asyncio.Event()
    cancelled: list[str] = []

    async def forever(host: Host) -> None:
        entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(host.name)
            raise

    task = asyncio.ensure_future(do_for_all_hosts(forever))
    await asyncio.wait_for(entered.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(cancelled) == sorted(NAMES)


async def test_run_on_all_hosts_runs_on_each_shell(closing: None) -> None:
    got = await run_on_all_hosts(["cd /tmp", "pwd"], pattern="^web")
    assert list(got) == ["web1", "web2"]
    for result in got.values():
        assert isinstance(result, RunResult)
        assert result.status is Status.Success
        assert result.statuses[-1].output == "/tmp"


async def test_run_on_all_hosts_keeps_failures_per_host(closing: None) -> None:
    got = await run_on_all_hosts("false", pattern="db1")
    result = got["db1"]
    assert isinstance(result, RunResult)
    assert result.status is Status.Failed


async def test_run_on_all_hosts_timeout(closing: None) -> None:
    got = await run_on_all_hosts("sleep 30", pattern="^web1$", timeout=0.3)
    result = got["web1"]
    assert isinstance(result, RunResult)
    assert result.only.timed_out
