"""SSH: closing a session or host, cancelling a oneshot and stopping a repeat end
the remote command at once; nothing is left running on the host."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from otto import RemoteHost, Status
from tests.integration.hosts import remote_host, start_and_wait_for
from tests.lab import Lab

pytestmark = pytest.mark.integration


def unique_sleep() -> tuple[str, str]:
    """A command that runs "forever" and a pgrep pattern matching only it (and its sh)."""
    seconds = f"1000.{secrets.randbelow(10**8):08d}"
    command = f"sh -c 'echo started; sleep {seconds}; echo never'"
    return command, f"[s]leep {seconds}"


async def running(checker: RemoteHost, pattern: str) -> list[str]:
    """The processes on the host whose command line matches ``pattern``."""
    result = await checker.oneshot(f"pgrep -af '{pattern}'")
    return result.output.splitlines() if result.retcode == 0 else []


async def wait_running(checker: RemoteHost, pattern: str, timeout: float = 10.0) -> None:
    """Return once a matching process runs (each look is a round trip, not a sleep)."""
    async with asyncio.timeout(timeout):
        while not await running(checker, pattern):
            pass


@pytest.mark.parametrize("pty", [False, True], ids=["pipe", "pty"])
async def test_closing_a_session_ends_its_running_command(lab: Lab, pty: bool) -> None:
    host, checker = remote_host(lab, "ssh1"), remote_host(lab, "ssh1")
    command, pattern = unique_sleep()
    session = await host.open_session("victim", pty=pty)
    task = await start_and_wait_for(session, command, b"started")
    await session.close()
    assert await running(checker, pattern) == []
    result = await task
    assert result.status is Status.Error
    assert (await host.run("echo host still works")).only.output == "host still works"
    await host.close()
    await checker.close()


async def test_closing_a_host_ends_every_sessions_command(lab: Lab) -> None:
    host, checker = remote_host(lab, "ssh1"), remote_host(lab, "ssh1")
    commands = [unique_sleep() for _ in range(6)]
    tasks = []
    for index, (command, _) in enumerate(commands):
        session = await host.open_session(f"s{index}", pty=index % 2 == 1)
        tasks.append(await start_and_wait_for(session, command, b"started"))
    await host.close()
    for _, pattern in commands:
        assert await running(checker, pattern) == []
    assert all(r.status is Status.Error for r in await asyncio.gather(*tasks))
    await checker.close()


async def test_a_cancelled_oneshot_ends_its_remote_command(lab: Lab) -> None:
    host, checker = remote_host(lab, "ssh1"), remote_host(lab, "ssh1")
    command, pattern = unique_sleep()
    task = asyncio.ensure_future(host.oneshot(command))
    await wait_running(checker, pattern)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The link finishes the kill it started for the cancelled call before it closes.
    await host.close()
    assert await running(checker, pattern) == []
    await checker.close()


async def test_a_cancelled_oneshot_does_not_stop_the_others(lab: Lab) -> None:
    host = remote_host(lab, "ssh1")
    command, _ = unique_sleep()
    victim = asyncio.ensure_future(host.oneshot(command))
    others = [asyncio.ensure_future(host.oneshot(f"echo {i}")) for i in range(5)]
    assert [o.output for o in await asyncio.gather(*others)] == [str(i) for i in range(5)]
    victim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await victim
    assert (await host.oneshot("echo after")).output == "after"
    await host.close()


async def test_stop_repeat_ends_the_running_command(lab: Lab) -> None:
    host, checker = remote_host(lab, "ssh1"), remote_host(lab, "ssh1")
    command, pattern = unique_sleep()
    host.start_repeat("sleeper", command, interval=60)
    await wait_running(checker, pattern)
    await host.stop_repeat("sleeper")
    assert await running(checker, pattern) == []
    await host.close()
    await checker.close()


async def test_closing_a_host_with_a_cut_network_returns(fault_lab: Lab) -> None:
    host = remote_host(fault_lab, "ssh2")
    command, _ = unique_sleep()
    session = await host.open_session("victim")
    task = await start_and_wait_for(session, command, b"started")
    await fault_lab.cut_network("ssh2")
    await host.close()
    assert (await task).status is Status.Error
