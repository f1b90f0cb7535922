"""Every example of the user's own description runs as written."""

from __future__ import annotations

import asyncio
import doctest
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import otto
from otto import LocalHost, Status
from tests.integration.hosts import eventually

pytestmark = pytest.mark.integration

SEED = Path(__file__).resolve().parents[2] / "docs" / "sessions-and-periodic-tasks.txt"


def test_seed_doctests_pass() -> None:
    """The >>> examples, with ``from otto import LocalHost, run`` above them."""
    globs = {"LocalHost": LocalHost, "run": otto.run, "asyncio": asyncio}
    failures, tried = doctest.testfile(
        str(SEED), module_relative=False, globs=globs, optionflags=doctest.ELLIPSIS
    )
    assert tried >= 3
    assert failures == 0


def test_run_keeps_state_between_calls() -> None:
    host = LocalHost()
    otto.run(host.run("cd /tmp"))
    assert otto.run(host.run("pwd")).only.output == "/tmp"
    otto.run(host.close())


def test_run_works_inside_a_running_loop() -> None:
    """As in a notebook cell: a loop already runs in this thread."""
    host = LocalHost()

    async def cell() -> str:
        return otto.run(host.run("echo from-a-cell")).only.output

    assert asyncio.run(cell()) == "from-a-cell"
    otto.run(host.close())


async def test_context_manager_example(tmp_path: Path) -> None:
    host = LocalHost()
    (tmp_path / "file.bin").write_bytes(b"1234")
    async with await host.open_session("monitor") as mon:
        result = await mon.run(f"stat {tmp_path}/file.bin")
    assert result.status is Status.Success
    assert mon.closed
    await host.close()


async def test_poll_status_example() -> None:
    host = LocalHost()

    async def poll_status(host: LocalHost) -> str:
        results = await asyncio.gather(
            host.run(["uptime"]),
            asyncio.sleep(0.2),
            return_exceptions=True,
        )
        run_result = results[0]
        assert isinstance(run_result, otto.RunResult)
        return run_result.statuses[0].output.strip()

    assert "load average" in await poll_status(host)
    await host.close()


async def test_collect_from_all_example() -> None:
    hosts = [LocalHost(name=f"h{i}") for i in range(3)]

    async def collect_from_all(hosts: list[LocalHost], interval_secs: float) -> list[object]:
        results = await asyncio.gather(
            asyncio.sleep(interval_secs),
            *(host.run(["cat /proc/stat", "free -b"]) for host in hosts),
            return_exceptions=True,
        )
        return results[1:]

    results = await collect_from_all(hosts, 0.1)
    assert len(results) == 3
    for r in results:
        assert isinstance(r, otto.RunResult) and r.status is Status.Success
        assert r.statuses[0].output.startswith("cpu ")
    for h in hosts:
        await h.close()


def test_program_exit_leaves_no_process_behind(tmp_path: Path) -> None:
    """Whatever is open at exit is closed then: shells and their children end."""
    script = tmp_path / "leave_open.py"
    script.write_text(
        textwrap.dedent(
            """
            from otto import LocalHost, run
            host = LocalHost()
            async def main():
                s = await host.open_session("extra")
                await s.run("sleep 300 &")
                pids = [(await host.run("echo $$")).only.output]
                pids.append((await s.run("echo $$")).only.output)
                pids.append((await s.run("jobs -p")).only.output)
                return pids
            print(" ".join(run(main())), flush=True)
            """
        )
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 3
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie_of_other(pid), pid


def _is_zombie_of_other(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


async def test_close_leaves_no_process_descriptor_or_task() -> None:
    fds_before = set(os.listdir("/proc/self/fd"))
    tasks_before = asyncio.all_tasks()
    host = LocalHost()
    s = await host.open_session("leaky", pty=True)
    pids = [
        int((await host.run("echo $$")).only.output),
        int((await s.run("echo $$")).only.output),
    ]
    await s.run("sleep 301.25 &")
    await host.run("sleep 301.25 &")
    await host.oneshot("sleep 301.25 &")
    await host.close()
    for pid in pids:
        assert not os.path.exists(f"/proc/{pid}"), pid
    pgrep = ["pgrep", "-f", "sleep 301.25"]
    left = subprocess.run(pgrep, capture_output=True, text=True, check=False).stdout  # noqa: ASYNC221
    assert left == ""
    # Transports release their descriptors over the next few loop turns.
    assert await eventually(lambda: set(os.listdir("/proc/self/fd")) <= fds_before)
    assert asyncio.all_tasks() <= tasks_before | {asyncio.current_task()}
