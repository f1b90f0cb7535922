"""A shell session: a transport + command framing + the expect buffer + a lock.

One class for every kind of host: the transport moves bytes, this module
decides what they mean. All calls on a session are serialized by its lock, so
two ``run`` calls never interleave their bytes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import TypeAlias

from otto import framing
from otto.errors import ConnectError, ConnectionLost, ExpectTimeout, SessionClosed, tail
from otto.expect import ExpectBuffer
from otto.result import CommandStatus, RunResult, Status
from otto.transports.base import ShellTransport

__all__ = ["Session"]

log = logging.getLogger("otto.session")

Pattern: TypeAlias = "str | re.Pattern[str]"

_RESYNC_WAITS = (0.3, 0.7, 1.5, 3.0)
"""Seconds to wait for the shell after each interrupt attempt, before escalating."""


class _Lost:
    """What a waiter receives when the shell goes away."""

    __slots__ = ("reason", "status")

    def __init__(self, status: int | None, reason: str) -> None:
        self.status = status
        self.reason = reason


class Session:
    """A persistent shell on a host: state (cwd, env, functions) lasts between calls.

    Get one from ``host.open_session(name)``; the host's own ``run`` uses one too.
    """

    def __init__(
        self,
        name: str,
        *,
        host: str,
        transport_factory: Callable[[], ShellTransport],
        ready_timeout: float = 10.0,
        pty: bool = False,
        on_close: Callable[[Session], None] | None = None,
    ) -> None:
        self.name = name
        self.host_name = host
        self.pty = pty
        self._factory = transport_factory
        self._ready_timeout = ready_timeout
        self._on_close = on_close
        self._lock = asyncio.Lock()
        self._transport: ShellTransport | None = None
        self._token = ""
        self._seq = 0
        self._shell_pid: int | None = None
        self._scanner: framing.MarkerScanner | None = None
        self._waiter: asyncio.Future[framing.MarkerScanner | _Lost] | None = None
        self._buffer = ExpectBuffer()
        self._expect_pattern: re.Pattern[str] | None = None
        self._expect_waiter: asyncio.Future[str | _Lost] | None = None
        self._lost: _Lost | None = None
        self._dirty = False
        self._sent = False
        self._bash = False
        self._closed = False
        self._listeners: list[Callable[[bytes], None]] = []

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open" if self._transport else "idle"
        return f"<Session {self.name!r} on {self.host_name!r} {state}>"

    @property
    def where(self) -> str:
        """``host/session``, for messages."""
        return f"{self.host_name}/{self.name}"

    @property
    def closed(self) -> bool:
        return self._closed

    # --- receiving ---------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        for listener in self._listeners:
            listener(data)
        scanner = self._scanner
        if scanner is not None:
            if not scanner.feed(data):
                return
            self._scanner = None
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(scanner)
            data = scanner.rest
            if not data:
                return
        self._buffer.feed(data)
        waiter2 = self._expect_waiter
        if waiter2 is not None and not waiter2.done():
            assert self._expect_pattern is not None
            found = self._buffer.search(self._expect_pattern)
            if found is not None:
                waiter2.set_result(found)

    def connection_lost(self, exit_status: int | None, reason: str) -> None:
        lost = _Lost(exit_status, reason)
        self._lost = lost
        for listener in self._listeners:
            listener(b"")  # the end of the stream, for a live view
        for waiter in (self._waiter, self._expect_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(lost)

    def add_listener(self, listener: Callable[[bytes], None]) -> Callable[[], None]:
        """Also hand every received byte to ``listener`` (for a live terminal view).

        ``listener(b"")`` means the shell has ended. Returns a function that
        removes the listener.
        """
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    # --- starting ------------------------------------------------------------

    async def start(self) -> None:
        """Start the shell now rather than on first use; raises ``ConnectError``."""
        async with self._lock:
            await self._ensure_shell()

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosed(f"session {self.where} is closed")

    async def _ensure_shell(self) -> ShellTransport:
        self._check_open()
        transport = self._transport
        if transport is not None and self._lost is None:
            if self._dirty:
                await self._resync()
                return self._ensure_live()
            return transport
        if transport is not None:
            lost = self._lost
            assert lost is not None
            log.warning(
                "%s: the shell ended (%s); starting a fresh shell, its state is gone",
                self.where,
                lost.reason,
            )
            await transport.close()
            self._transport = None
        return await self._start_shell()

    def _ensure_live(self) -> ShellTransport:
        if self._transport is None or self._lost is not None:
            raise ConnectionLost(self.where, self._lost.reason if self._lost else "no shell")
        return self._transport

    async def _start_shell(self) -> ShellTransport:
        transport = self._factory()
        self._lost = None
        self._dirty = False
        self._buffer.clear()
        self._token = framing.new_token()
        self._seq = 0
        self._transport = transport
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._ready_timeout):
                await transport.open(self)
                scanner = self._expect_marker(0)
                transport.write(framing.setup_bytes(self._token, pty=self.pty))
                outcome = await self._waiter_result()
        except TimeoutError:
            received = self._scanner.output if self._scanner else b""
            await self._drop_transport()
            raise ConnectError(
                self.where,
                f"the shell did not become ready within {self._ready_timeout:g}s; "
                f"received: {tail(framing.clean_output(received))!r}",
            ) from None
        except BaseException:
            await self._drop_transport()
            raise
        if isinstance(outcome, _Lost):
            text = framing.clean_output(scanner.output)
            await self._drop_transport()
            raise ConnectError(
                self.where, f"the shell ended while starting ({outcome.reason}): {tail(text)!r}"
            )
        self._shell_pid = outcome.status
        self._bash = framing.BASH_FLAG in scanner.output
        self._buffer.clear()
        if outcome.rest:
            self._buffer.feed(outcome.rest)
        log.debug("%s: shell ready in %.1f ms", self.where, (time.monotonic() - started) * 1e3)
        return transport

    async def _drop_transport(self) -> None:
        transport, self._transport = self._transport, None
        self._scanner = None
        if transport is not None:
            await transport.close()

    def _expect_marker(self, seq: int) -> framing.MarkerScanner:
        scanner = framing.MarkerScanner(self._token, seq)
        self._scanner = scanner
        self._waiter = asyncio.get_running_loop().create_future()
        return scanner

    async def _waiter_result(self) -> framing.MarkerScanner | _Lost:
        waiter = self._waiter
        assert waiter is not None
        if self._lost is not None and not waiter.done():
            waiter.set_result(self._lost)
        try:
            return await waiter
        finally:
            self._waiter = None

    # --- running -------------------------------------------------------------

    async def run(self, cmds: str | Sequence[str], *, timeout: float | None = None) -> RunResult:
        """Run one command or a list in order, stopping at the first that does not succeed.

        Args:
            cmds: a command, or a list of commands sharing ``timeout``.
            timeout: seconds for the whole call; on expiry the command is
                interrupted and the result is ``Status.Error`` with ``timed_out``.

        Raises:
            SessionClosed: the session was closed before the call.
            ConnectError: the shell could not be started or reached.
        """
        if isinstance(cmds, str):
            # The common case, kept lean: it is on every round trip.
            async with self._lock:
                one = await self._run_one(cmds, timeout)
            return RunResult(one.status, [one])
        statuses: list[CommandStatus] = []
        async with self._lock:
            # Connecting is bounded by connect_timeout; `timeout` is for the commands.
            await self._ensure_shell()
            deadline = None if timeout is None else time.monotonic() + timeout
            for command in cmds:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                status = await self._run_one(command, left, timeout)
                statuses.append(status)
                if status.status is not Status.Success:
                    break
        return RunResult.of(statuses)

    async def _run_one(
        self, command: str, timeout: float | None, budget: float | None = None
    ) -> CommandStatus:
        budget = budget or timeout
        transport = self._transport
        if transport is None or self._lost is not None or self._dirty or self._closed:
            transport = await self._ensure_shell()
        started = (time.monotonic(), time.time())
        if self._sent and not await self._settle(timeout):
            return self._status(
                command,
                "",
                Status.Error,
                -1,
                started,
                timed_out=True,
                error=f"{self.where}: the shell did not read commands within {timeout:g}s "
                "(is an interactive program still running?)",
            )
        if self._lost is not None:
            transport = await self._ensure_shell()  # what was sent ended the shell
        if timeout is not None:
            timeout = max(0.0, timeout - (time.monotonic() - started[0]))
        self._seq += 1
        self._buffer.clear()
        scanner = self._expect_marker(self._seq)
        transport.write(
            framing.command_bytes(command, self._token, self._seq, pty=self.pty, bash=self._bash)
        )
        waiter = self._waiter
        assert waiter is not None
        try:
            if timeout is None:
                outcome = await waiter
            else:
                async with asyncio.timeout(timeout):
                    outcome = await waiter
        except TimeoutError:
            output = framing.clean_output(scanner.output)
            self._scanner = None
            await self._resync()
            return self._status(
                command,
                output,
                Status.Error,
                -1,
                started,
                timed_out=True,
                error=f"{self.where}: timed out after {budget:g}s",
            )
        except asyncio.CancelledError:
            # The command still runs; the next call interrupts it before anything else.
            self._scanner = None
            self._dirty = True
            raise
        finally:
            self._waiter = None
        if isinstance(outcome, _Lost):
            output = framing.clean_output(scanner.output)
            if outcome.status is not None and outcome.status >= 0:
                # The command ended the shell (exit, exec): that is its result.
                state = Status.Success if outcome.status == 0 else Status.Failed
                return self._status(command, output, state, outcome.status, started)
            return self._status(
                command,
                output,
                Status.Error,
                -1,
                started,
                error=f"{self.where}: connection lost: {outcome.reason}",
            )
        retcode = outcome.status if outcome.status is not None else -1
        if outcome.rest:
            self._buffer.feed(outcome.rest)
        return self._status(
            command,
            framing.strip_own_trace(framing.clean_output(scanner.output)),
            Status.Success if retcode == 0 else Status.Failed,
            retcode,
            started,
        )

    def _status(
        self,
        command: str,
        output: str,
        status: Status,
        retcode: int,
        started: tuple[float, float],
        *,
        timed_out: bool = False,
        error: str = "",
    ) -> CommandStatus:
        started_mono, started_wall = started
        return CommandStatus(
            command=command,
            output=output,
            status=status,
            retcode=retcode,
            timed_out=timed_out,
            duration=time.monotonic() - started_mono,
            error=error,
            host=self.host_name,
            session=self.name,
            started=started_wall,
        )

    async def _settle(self, timeout: float | None) -> bool:
        """After ``send``: wait until the shell reads commands again, interrupting nothing.

        An interactive program that just exited may have read ahead and taken
        text meant for the shell with it; so a line that only prints a marker
        is sent, and sent again, until the shell answers. Returns False if it
        has not answered within ``timeout``.
        """
        self._sent = False
        transport = self._transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        wait = 0.2
        while self._lost is None:
            left = wait if deadline is None else min(wait, deadline - loop.time())
            if left <= 0:
                self._sent = True
                return False
            self._seq += 1
            self._expect_marker(self._seq)
            waiter = self._waiter
            assert waiter is not None
            transport.write(framing.sync_bytes(self._token, self._seq))
            done, _ = await asyncio.wait({waiter}, timeout=left)
            self._waiter = None
            if done:
                outcome = waiter.result()
                if not isinstance(outcome, _Lost) and outcome.rest:
                    self._buffer.feed(outcome.rest)
                return True
            self._scanner = None
            wait = min(wait * 2, 1.0)
        return True

    async def _resync(self) -> None:
        """Interrupt whatever runs and wait until the shell reads commands again.

        Escalates: SIGINT (the command's marker or a sync marker should follow),
        then SIGINT again, then SIGKILL to everything the shell started, and as
        a last resort a fresh shell (logged: its state is lost).
        """
        self._dirty = False
        transport = self._transport
        if transport is None or self._lost is not None:
            return
        for attempt, wait in enumerate(_RESYNC_WAITS):
            if attempt >= 2:
                await transport.kill_children(self._shell_pid)
                if self._lost is not None:
                    return
            await transport.interrupt(self._shell_pid)
            if self._lost is not None:
                return
            self._seq += 1
            self._expect_marker(self._seq)
            # A newline first: a builtin such as `read` ends on it, the shell skips it.
            transport.write(b"\n" + framing.sync_bytes(self._token, self._seq))
            # asyncio.wait, not a timeout scope: this often runs while a
            # TimeoutError is being handled, and must not cancel the task.
            waiter = self._waiter
            assert waiter is not None
            done, _ = await asyncio.wait({waiter}, timeout=wait)
            self._waiter = None
            if not done:
                self._scanner = None
                continue
            outcome = waiter.result()
            if isinstance(outcome, _Lost):
                return
            self._buffer.clear()
            if outcome.rest:
                self._buffer.feed(outcome.rest)
            return
        log.warning("%s: the shell did not come back after an interrupt; restarting it", self.where)
        await self._drop_transport()

    # --- interactive -----------------------------------------------------------

    async def send(self, text: str) -> None:
        """Write ``text`` to the shell as it is (no newline added)."""
        async with self._lock:
            transport = await self._ensure_shell()
            transport.write(text.encode("utf-8", "surrogateescape"))
            self._sent = True
            await transport.drain()

    async def expect(self, pattern: Pattern, timeout: float = 30.0) -> str:
        """Wait until ``pattern`` matches output received since the last match.

        Returns that output up to and including the match.

        Raises:
            ExpectTimeout: no match within ``timeout``; carries what was received.
            ConnectionLost: the shell ended before a match.
        """
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        async with self._lock:
            await self._ensure_shell()
            found = self._buffer.search(regex)
            if found is not None:
                return found
            if self._lost is not None:
                raise ConnectionLost(self.where, self._lost.reason, self._buffer.text())
            waiter: asyncio.Future[str | _Lost] = asyncio.get_running_loop().create_future()
            self._expect_pattern = regex
            self._expect_waiter = waiter
            try:
                async with asyncio.timeout(timeout):
                    outcome = await waiter
            except TimeoutError:
                raise ExpectTimeout(
                    self.where, regex.pattern, timeout, self._buffer.text()
                ) from None
            finally:
                self._expect_waiter = None
                self._expect_pattern = None
            if isinstance(outcome, _Lost):
                raise ConnectionLost(self.where, outcome.reason, self._buffer.text())
            return outcome

    def resize(self, rows: int, cols: int) -> None:
        """Tell a pty session's terminal its new size."""
        resize = getattr(self._transport, "resize", None)
        if resize is not None:
            resize(rows, cols)

    # --- closing ---------------------------------------------------------------

    async def close(self) -> None:
        """End the shell and everything it started. Later calls raise ``SessionClosed``."""
        if self._closed:
            return
        self._closed = True
        transport, self._transport = self._transport, None
        lost = _Lost(None, "session closed")
        self._lost = lost
        for waiter in (self._waiter, self._expect_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(lost)
        try:
            if transport is not None:
                await transport.close()
        finally:
            if self._on_close is not None:
                self._on_close(self)

    def abandon(self) -> None:
        """Kill the shell without an event loop (used at interpreter exit)."""
        if self._transport is not None:
            self._transport.abandon()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
