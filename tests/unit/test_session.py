"""Session against a shell in memory: escalation, cancellation and loss at every step."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from otto import ConnectError, ExpectTimeout, SessionClosed, Status, framing
from otto.session import Session, SessionLock
from otto.transports.memory import Handler, MemoryShell


class Shells:
    """A session and every memory shell it started."""

    def __init__(self, handler: Handler | None = None, **options: bool) -> None:
        self.made: list[MemoryShell] = []
        self.session = Session(
            "s",
            host="h",
            transport_factory=lambda: MemoryShell.made(self.made, handler, **options),
            ready_timeout=2.0,
            resync_waits=(0.02, 0.05, 0.1, 0.2),
        )

    @property
    def shell(self) -> MemoryShell:
        return self.made[-1]


class Gate:
    """A handler whose commands named ``hang`` run until interrupted or released."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, command: str) -> tuple[bytes, int]:
        if command.startswith("hang"):
            self.started.set()
            await self.release.wait()
            return b"late", 0
        if command.startswith("fail"):
            return b"it failed", 3
        return command.encode(), 0


async def wait_for(event: asyncio.Event) -> None:
    await asyncio.wait_for(event.wait(), 5)


async def until(check: Callable[[], bool], turns: int = 100_000) -> None:
    """Let the loop run until ``check()`` holds (the memory shell needs no real time)."""
    for _ in range(turns):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def test_commands_and_their_status() -> None:
    s = Shells(Gate())
    assert (await s.session.run("echo one")).only.output == "echo one"
    failed = (await s.session.run("fail now")).only
    assert (failed.status, failed.retcode, failed.output) == (Status.Failed, 3, "it failed")
    compound = (await s.session.run("echo $HOME 'x'\nsecond line")).only
    assert compound.output == "echo $HOME 'x'\nsecond line"
    assert s.shell.commands == ["echo one", "fail now", "echo $HOME 'x'\nsecond line"]
    await s.session.close()
    assert s.shell.closed


async def test_long_and_control_commands_reach_the_shell_exactly() -> None:
    s = Shells()
    text = "echo '" + "y" * 5000 + '\' \\ "$x" `z` \x01\x7f'
    assert (await s.session.run(text)).only.output == text
    await s.session.close()


async def test_timeout_interrupts_and_returns_at_once() -> None:
    gate = Gate()
    s = Shells(gate)
    result = (await s.session.run("hang", timeout=0.05)).only
    assert result.status is Status.Error and result.timed_out
    assert s.shell.interrupts == 1
    assert (await s.session.run("after")).only.output == "after"
    assert len(s.made) == 1  # the same shell: state kept
    await s.session.close()


async def test_interrupts_escalate_to_kill_then_to_a_fresh_shell(
    caplog: pytest.LogCaptureFixture,
) -> None:
    gate = Gate()
    s = Shells(gate, answer_interrupts=False)
    result = (await s.session.run("hang", timeout=0.05)).only
    assert result.timed_out
    assert (await s.session.run("after")).only.output == "after"
    assert s.made[0].interrupts >= 2 and s.made[0].kills >= 1
    assert len(s.made) == 1
    wedged = Shells(Gate(), answer_interrupts=False, answer_kills=False)
    with caplog.at_level(logging.WARNING, "otto.session"):
        assert (await wedged.session.run("hang", timeout=0.05)).only.timed_out
        assert (await wedged.session.run("after")).only.output == "after"
    assert len(wedged.made) == 2 and wedged.made[0].closed
    assert "restarting it" in caplog.text
    await s.session.close()
    await wedged.session.close()


async def test_a_cancelled_command_is_interrupted_by_the_session_itself() -> None:
    gate = Gate()
    s = Shells(gate)
    task = asyncio.ensure_future(s.session.run("hang"))
    await wait_for(gate.started)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # No further call is needed for the interrupt to go out.
    for _ in range(20):
        if s.shell.interrupts:
            break
        await asyncio.sleep(0)
    assert s.shell.interrupts == 1
    assert (await s.session.run("next")).only.output == "next"
    await s.session.close()


async def test_a_second_cancellation_during_recovery_keeps_the_session_dirty() -> None:
    gate = Gate()
    s = Shells(gate, answer_interrupts=False)
    task = asyncio.ensure_future(s.session.run("hang"))
    await wait_for(gate.started)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Cancel whoever waits while the recovery is still escalating.
    second = asyncio.ensure_future(s.session.run("second"))
    await until(lambda: s.shell.interrupts >= 2)
    assert not second.done()
    second.cancel()
    with pytest.raises(asyncio.CancelledError):
        await second
    result = (await s.session.run("third")).only
    assert result.output == "third"
    assert "late" not in result.output
    assert "second" not in s.shell.commands
    await s.session.close()


async def test_cancellation_at_every_await_leaves_a_usable_session() -> None:
    for steps in range(12):
        gate = Gate()
        s = Shells(gate)
        task = asyncio.ensure_future(s.session.run(["echo a", "hang", "echo b"], timeout=5))
        for _ in range(steps):
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        result = (await s.session.run("echo after", timeout=5)).only
        assert (result.status, result.output) == (Status.Success, "echo after"), steps
        await s.session.close()


async def test_a_shell_that_ended_between_calls_reruns_in_a_fresh_shell(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = Shells()
    await s.session.run("first")
    old = s.shell
    # It exits after the marker, before the next command reaches it; the loss
    # is only noticed once the next command was written.
    old.exit(0, noticed=False)
    with caplog.at_level(logging.WARNING, "otto.session"):
        task = asyncio.ensure_future(s.session.run("second"))
        for _ in range(50):
            if b"second" in old.written:
                break
            await asyncio.sleep(0)
        old.lose(0, "shell exited with 0")
        result = (await task).only
    assert (result.status, result.output) == (Status.Success, "second")
    assert old.commands == ["first"] and s.shell.commands == ["second"]
    assert "before `second` ran" in caplog.text
    await s.session.close()


async def test_exit_is_the_commands_own_result() -> None:
    s = Shells()
    result = (await s.session.run("exit 4")).only
    assert (result.status, result.retcode) == (Status.Failed, 4)
    assert (await s.session.run("again")).only.output == "again"
    assert len(s.made) == 2
    await s.session.close()


async def test_a_lost_link_at_every_step() -> None:
    gate = Gate()
    s = Shells(gate)
    # During a command.
    task = asyncio.ensure_future(s.session.run("hang"))
    await wait_for(gate.started)
    s.shell.lose(None, "the link dropped")
    result = (await task).only
    assert result.status is Status.Error and "the link dropped" in result.error
    # Between commands: the next call starts a fresh shell.
    s.shell.lose(None, "dropped again")
    assert (await s.session.run("x")).only.output == "x"
    # While starting: a shell that cannot open is a ConnectError.
    failing = Shells(fail_open=True)
    with pytest.raises(ConnectError):
        await failing.session.run("x")
    # During recovery after a timeout.
    gate2 = Gate()
    t = Shells(gate2, answer_interrupts=False)
    assert (await t.session.run("hang", timeout=0.01)).only.timed_out
    t.shell.lose(None, "gone while recovering")
    assert (await t.session.run("y")).only.output == "y"
    assert len(t.made) == 2
    for each in (s, failing, t):
        await each.session.close()


async def test_expect_with_several_patterns_says_which_matched() -> None:
    s = Shells()
    await s.session.start()
    s.shell.print(b"booting...\nlogin: ")
    found = await s.session.expect([r"Password:", r"login: "], timeout=1)
    assert (found.index, found.matched, found.text) == (1, "login: ", "booting...\nlogin: ")
    s.shell.print(b"a Password: then login: ")
    found = await s.session.expect([r"login: ", r"Password:"], timeout=1)
    assert found.index == 1  # the earliest match in the stream wins
    assert await s.session.expect(r"login: ", timeout=1) == " then login: "
    await s.session.close()


async def test_closed_sessions_refuse_calls_and_end_their_recovery() -> None:
    gate = Gate()
    s = Shells(gate, answer_interrupts=False, answer_kills=False)
    assert (await s.session.run("hang", timeout=0.01)).only.timed_out
    await s.session.close()  # while the recovery still escalates
    assert s.shell.closed
    with pytest.raises(SessionClosed):
        await s.session.run("x")
    pending = [t for t in asyncio.all_tasks() if "Session._recover" in repr(t.get_coro())]
    assert pending == []


async def test_output_past_max_output_keeps_head_and_tail(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def flood(command: str) -> tuple[bytes, int]:
        return b"H" * 1000 + b"x" * 100_000 + b"T" * 1000, 0

    shells: list[MemoryShell] = []
    session = Session(
        "s", host="h", transport_factory=lambda: MemoryShell.made(shells, flood), max_output=4000
    )
    with caplog.at_level(logging.WARNING, "otto.session"):
        result = (await session.run("flood")).only
    assert result.output.startswith("H" * 1000) and result.output.endswith("T" * 1000)
    assert "98000 bytes of output dropped" in result.output
    assert "max_output" in caplog.text
    await session.close()


async def test_session_lock_is_fair_and_survives_cancellation() -> None:
    lock = SessionLock()
    order: list[int] = []
    await lock.acquire()

    async def take(n: int) -> None:
        async with lock:
            order.append(n)

    tasks = [asyncio.ensure_future(take(n)) for n in range(4)]
    await asyncio.sleep(0)
    tasks[1].cancel()  # a waiter that gives up never holds the lock
    await asyncio.sleep(0)
    lock.release()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert order == [0, 2, 3]
    assert not lock.locked()
    with pytest.raises(RuntimeError):
        lock.release()


async def test_session_lock_handed_to_a_cancelled_waiter_passes_on() -> None:
    lock = SessionLock()
    await lock.acquire()
    got: list[str] = []

    async def take(name: str) -> None:
        async with lock:
            got.append(name)

    first = asyncio.ensure_future(take("first"))
    second = asyncio.ensure_future(take("second"))
    await asyncio.sleep(0)
    lock.release()  # hands the lock to `first`...
    first.cancel()  # ...which is cancelled before it runs
    await asyncio.gather(first, second, return_exceptions=True)
    assert got == ["second"] and not lock.locked()


async def test_session_lock_held_for_a_session_makes_others_give_up_with_its_error() -> None:
    lock = SessionLock()
    await lock.acquire()  # a short call of another session
    got: list[str] = []

    async def take(name: str) -> None:
        async with lock:
            got.append(name)

    early = asyncio.ensure_future(take("early"))  # waits before the hold begins
    await asyncio.sleep(0)
    lock.hold(lambda: ConnectError("h", "held by the root session"), 0.01)
    with pytest.raises(ConnectError, match="held by the root session"):
        await take("late")
    with pytest.raises(ConnectError, match="held by the root session"):
        await early
    lock.release()  # the hold ends with the release: the next waiter waits as usual
    await lock.acquire()
    waiter = asyncio.ensure_future(take("after"))
    await asyncio.sleep(0.05)  # longer than the old hold's patience: it no longer counts
    assert not waiter.done()
    lock.release()
    await waiter
    assert got == ["after"] and not lock.locked()


async def test_taps_see_every_byte_both_ways() -> None:
    seen: list[tuple[str, str, bytes]] = []
    shells: list[MemoryShell] = []
    taps = [lambda where, direction, data: seen.append((where, direction, data))]
    session = Session("s", host="h", transport_factory=lambda: MemoryShell.made(shells), taps=taps)
    await session.run("echo tapped")
    sent = b"".join(d for _, direction, d in seen if direction == "sent")
    received = b"".join(d for _, direction, d in seen if direction == "received")
    assert sent == bytes(shells[0].written)
    assert b"echo tapped" in received
    assert {where for where, _, _ in seen} == {"h/s"}
    await session.close()


class Later:
    """A handler whose command ``later`` ends when ``release`` is set (by a timer)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def __call__(self, command: str) -> tuple[bytes, int]:
        if command == "later":
            await self.release.wait()
            return b"done", 0
        if command.startswith("hang"):
            await asyncio.Event().wait()
        return command.encode(), 0


async def test_a_short_bound_before_a_long_one_does_not_expire_the_long_one() -> None:
    # One timer bounds every call in turn (set again, not per call): the timer
    # left by a call bounded to 1 ms fires during the next call, which has 60 s.
    handler = Later()
    s = Shells(handler)
    assert (await s.session.run("first", timeout=0.001)).only.output == "first"
    asyncio.get_running_loop().call_later(0.05, handler.release.set)
    result = (await s.session.run("later", timeout=60)).only
    assert (result.status, result.output, result.timed_out) == (Status.Success, "done", False)
    await s.session.close()


async def test_a_long_bound_before_a_short_one_still_expires_the_short_one() -> None:
    s = Shells(Later())
    assert (await s.session.run("first", timeout=3600)).only.output == "first"
    result = (await asyncio.wait_for(s.session.run("hang", timeout=0.05), 10)).only
    assert result.timed_out and result.status is Status.Error
    assert (await s.session.run("after", timeout=3600)).only.output == "after"
    with pytest.raises(ExpectTimeout):
        await asyncio.wait_for(s.session.expect(r"never", timeout=0.05), 10)
    await s.session.close()
    assert s.session._watchdog is None  # closing leaves no timer behind


async def test_a_consuming_listener_takes_what_arrives_outside_a_run() -> None:
    s = Shells()
    await s.session.start()
    heard: list[bytes] = []
    remove = s.session.add_listener(heard.append, consume=True)
    s.shell.print(b"streamed\n")
    await until(lambda: b"streamed\n" in b"".join(heard))
    assert (await s.session.run("echo ran")).only.output == "echo ran"  # run is unchanged
    with pytest.raises(ExpectTimeout):
        await s.session.expect(r"streamed", timeout=0.01)  # not kept for expect
    remove()
    s.shell.print(b"kept\n")
    assert await s.session.expect(r"kept\n", timeout=5) == "kept\n"
    await s.session.close()


async def test_bytes_after_the_marker_reach_expect_once() -> None:
    shells: list[MemoryShell] = []

    def made() -> MemoryShell:
        shells.append(MemoryShell(trailer=b"AFTER\n"))
        return shells[-1]

    session = Session("s", host="h", transport_factory=made)
    assert (await session.run("echo x")).only.output == "echo x"
    # What followed the marker in the same read is pending once, not twice.
    assert await session.expect(r"(?s).+", timeout=5) == "AFTER\n"
    await session.close()


def _split_run(output: bytes, status: int, trailer: bytes, cuts: list[int]) -> None:
    async def main() -> None:
        async def handler(command: str) -> tuple[bytes, int]:
            return output, status

        session = Session(
            "s",
            host="h",
            transport_factory=lambda: MemoryShell(handler, cuts=cuts, trailer=trailer),
        )
        await session.start()
        for _ in range(2):  # the next command starts clean after whatever came
            one = (await session.run("cmd", timeout=30)).only
            assert one.output == framing.clean_output(output)
            assert one.retcode == status and not one.timed_out
            if trailer:
                assert await session.expect(r"(?s).+", timeout=5) == trailer.decode()
        await session.close()

    asyncio.run(main())


@settings(deadline=None, max_examples=150)
@given(
    output=st.binary(max_size=80).filter(lambda b: b"\x1e" not in b),
    status=st.integers(0, 255),
    trailer=st.sampled_from([b"", b"tail\n", b"\x1eforged:1:0k\x1f"]),
    cuts=st.lists(st.integers(0, 120), max_size=6),
)
def test_output_and_marker_however_cut_into_reads(
    output: bytes, status: int, trailer: bytes, cuts: list[int]
) -> None:
    """The marker whole in the first read (the quick look), or cut anywhere."""
    _split_run(output, status, trailer, cuts)


def test_a_late_marker_before_the_commands_own_in_one_read_is_dropped() -> None:
    async def main() -> None:
        shell = MemoryShell(cuts=[])
        session = Session("s", host="h", transport_factory=lambda: shell)
        await session.start()

        async def late_first(command: str) -> tuple[bytes, int]:
            # An earlier command's marker (seq 0, the set-up's) arrives late, in
            # the same read as this command's output and marker.
            return b"\x1e%s:0:0k\x1fout" % shell._token.encode(), 0

        shell._handler = late_first
        assert (await session.run("cmd")).only.output == "out"
        await session.close()

    asyncio.run(main())
