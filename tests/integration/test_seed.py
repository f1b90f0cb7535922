"""Every example of the user's own description runs as written."""

from __future__ import annotations

import ast
import asyncio
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import otto
from otto import LocalHost, Session, Status
from tests.integration.hosts import eventually

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "sessions-and-periodic-tasks.txt"

# The user's own description (the seed of docs/sessions-and-periodic-tasks.txt)
# shows these blocks as they would be typed at an asyncio REPL (`python3 -m
# asyncio`): top-level await, and `host = LocalHost()` from its first example.
# They are kept here verbatim and run as written.
SEED_CONTEXT_MANAGER = """\
async with (await host.open_session("monitor")) as mon:
    result = await mon.run("stat /tmp/file.bin")
# session is closed automatically
"""
SEED_SEND_EXPECT = """\
# Drive an interactive Python REPL
await host.send("python3 -i -c ''\\n")
await host.expect(r">>> ", timeout=5.0)
await host.send("print('otto_test')\\n")
output = await host.expect(r">>> ", timeout=5.0)
assert "otto_test" in output
await host.send("exit()\\n")
"""
SEED_POLL_STATUS = '''\
import asyncio

async def poll_status(host):
    """Run 'uptime' every 10 seconds, gather with sleep."""
    results = await asyncio.gather(
        host.run(["uptime"]),
        asyncio.sleep(10.0),
        return_exceptions=True,
    )
    run_result = results[0]
    return run_result.statuses[0].output.strip()
'''
SEED_COLLECT_FROM_ALL = '''\
import asyncio

async def collect_from_all(hosts, interval_secs):
    """Collect metrics from all hosts, then sleep for the remainder."""
    results = await asyncio.gather(
        asyncio.sleep(interval_secs),
        *(host.run(["cat /proc/stat", "free -b"]) for host in hosts),
        return_exceptions=True,
    )
    # results[0] is the sleep (None)
    # results[1:] are the RunResult objects (one per host)
    return results[1:]
'''


def test_the_doc_is_a_doctest_on_its_own() -> None:
    """`python3 -m doctest` in a fresh process: the file imports what it uses."""
    done = subprocess.run(
        [sys.executable, "-m", "doctest", "-v", str(DOC)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd="/",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert done.stderr == ""
    assert "0 failed" in done.stdout
    tried = int(done.stdout.rsplit(" tests in ", 1)[0].rsplit("\n", 1)[-1])
    assert tried >= 10


async def _run_as_written(source: str, namespace: dict[str, object]) -> None:
    """Run ``source`` as an asyncio REPL would: top-level await allowed."""
    code = compile(source, "<seed>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    pending = eval(code, namespace)
    if inspect.iscoroutine(pending):
        await pending


async def test_the_seed_blocks_run_as_written() -> None:
    host = LocalHost()
    namespace: dict[str, object] = {"LocalHost": LocalHost, "run": otto.run, "host": host}
    try:
        for block in (
            SEED_CONTEXT_MANAGER,
            SEED_SEND_EXPECT,
            SEED_POLL_STATUS,
            SEED_COLLECT_FROM_ALL,
        ):
            await _run_as_written(block, namespace)
        mon = namespace["mon"]
        assert isinstance(mon, Session) and mon.closed
        assert "otto_test" in str(namespace["output"])
        poll_status = namespace["poll_status"]
        collect_from_all = namespace["collect_from_all"]
        assert callable(poll_status) and callable(collect_from_all)
        others = [LocalHost(name=f"h{i}") for i in range(3)]
        uptime, collected = await asyncio.gather(poll_status(host), collect_from_all(others, 1.0))
        assert "load average" in uptime
        assert len(collected) == 3
        for r in collected:
            assert isinstance(r, otto.RunResult) and r.status is Status.Success
            assert r.statuses[0].output.startswith("cpu ")
        for other in others:
            await other.close()
    finally:
        await host.close()


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
