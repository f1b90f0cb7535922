"""Regressions from adversarial testing of sessions, on every kind of host.

Each test here failed before its fix: a shell that ends between calls, a
cancellation landing during an interrupt, terminal modes changed by the user,
floods, verbose shells and shells replaced by `exec`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from otto import Host, Status
from tests.integration.hosts import HOST_KINDS, make_host, start_and_wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(params=HOST_KINDS)
def unopened_host(request: pytest.FixtureRequest) -> Host:
    return make_host(request, request.param)


@pytest.fixture
async def host(unopened_host: Host) -> AsyncIterator[Host]:
    try:
        yield unopened_host
    finally:
        await unopened_host.close()


async def test_a_shell_that_ended_between_calls_never_yields_a_result_it_did_not_produce(
    host: Host,
) -> None:
    await host.run("cd /tmp")
    first = (await host.run("exec 0</dev/null")).only
    assert first.status is Status.Success
    # The shell reads end-of-file next and exits; the command after that must
    # really run (in a fresh shell), not come back as an empty success.
    for _ in range(3):
        result = (await host.run("echo ran-$((40+2)); pwd")).only
        assert result.status is Status.Success
        assert result.output.split("\n")[0] == "ran-42"
        await host.run("exec 0</dev/null")


async def test_exit_still_gives_its_status(host: Host) -> None:
    result = (await host.run("exit 3")).only
    assert result.status is Status.Failed and result.retcode == 3
    assert (await host.run("echo back")).only.output == "back"


async def test_a_second_cancellation_during_the_interrupt_leaves_no_old_output(
    host: Host,
) -> None:
    session = await host.open_session("cancel")
    task = await start_and_wait_for(session, "echo begun; sleep 30; echo OLD-OUTPUT", b"begun")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # A second call, cancelled while the first command is being interrupted.
    second = asyncio.ensure_future(session.run("echo second"))
    await asyncio.sleep(0)
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    result = (await session.run("echo final", timeout=30)).only
    assert result.output == "final"
    assert "OLD-OUTPUT" not in result.output


async def test_a_cancelled_command_is_interrupted_without_waiting_for_the_next_call(
    host: Host,
) -> None:
    session = await host.open_session("cancelled")
    marker = "otto-cancel-marker-7"
    # A duration no other program here sleeps for: every lab host shares the machine's
    # process table, so a plain `sleep 60` of someone else's would be counted too.
    task = await start_and_wait_for(session, f"echo begun; sleep 6017; echo {marker}", b"begun")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The session's own task interrupts it; the next call waits for that.
    assert (await session.run("echo next", timeout=30)).only.output == "next"
    check = await host.oneshot("ps -eo args | grep -c '[s]leep 6017'", timeout=30)
    assert check.output.strip() == "0"


@pytest.mark.parametrize("pty", [True])
async def test_stty_raw_does_not_break_later_calls(host: Host, pty: bool) -> None:
    async with host.open_session("raw", pty=pty) as session:
        assert (await session.run("stty raw")).only.status is Status.Success
        for command, expected in [
            ("echo hi", "hi"),
            ("printf 'a\\tb\\n'", "a\tb"),
            ("echo \"$((6*7))\" 'quoted'", "42 quoted"),
            ("x=$(printf '\\001'); echo ${#x}", "1"),
        ]:
            result = (await session.run(command, timeout=30)).only
            assert (result.status, result.output) == (Status.Success, expected), command
        await session.run("stty sane")


async def test_a_flood_ends_at_its_timeout_and_keeps_a_bounded_output(host: Host) -> None:
    host.max_output = 1_000_000
    async with host.open_session("flood") as session:
        result = (await session.run("yes otto-flood", timeout=2)).only
        assert result.status is Status.Error and result.timed_out
        assert len(result.output) <= 1_000_000 + 200
        assert result.output.startswith("otto-flood\notto-flood")
        assert "bytes of output dropped here (max_output)" in result.output
        after = (await session.run("echo still-here", timeout=30)).only
        assert after.output == "still-here"


async def test_verbose_shells_show_no_framing(host: Host) -> None:
    await host.run("set -v")
    plain = (await host.run("echo hi")).only
    assert plain.output == "hi"
    compound = (await host.run("echo $((1+1))")).only
    assert compound.output.endswith("2")
    assert "__o" not in compound.output and "otto:" not in compound.output
    await host.run("set +v")
    assert (await host.run("echo quiet")).only.output == "quiet"


async def test_a_shell_replaced_by_exec_is_set_up_again(host: Host) -> None:
    async with host.open_session("replaced", pty=True) as session:
        await session.run("cd /tmp")
        replaced = (await session.run("exec sh", timeout=30)).only
        assert replaced.status is Status.Success
        for _ in range(2):
            result = (await session.run("echo clean; pwd", timeout=30)).only
            assert result.output == "clean\n/tmp", repr(result.output)


async def test_exec_bash_on_a_terminal_leaves_no_escapes(host: Host) -> None:
    async with host.open_session("bash", pty=True) as session:
        available = (await session.run("command -v bash")).only
        if not available.is_ok:
            pytest.skip("no bash on this host")
        await session.run("exec bash", timeout=30)
        result = (await session.run("echo clean", timeout=30)).only
        assert result.output == "clean", repr(result.output)
        result = (await session.run("echo $((2+3))", timeout=30)).only
        assert result.output == "5", repr(result.output)


async def test_a_megabyte_of_command_text(host: Host) -> None:
    text = "x" * 1_000_000
    result = (await host.run(f"printf %s '{text}' | wc -c", timeout=120)).only
    assert result.status is Status.Success
    assert result.output.strip() == "1000000"
