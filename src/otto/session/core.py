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
from collections.abc import Callable, Generator, Sequence
from typing import Any, Literal, TypeAlias, overload

from otto import framing
from otto.errors import (
    ConnectError,
    ConnectionLost,
    ExpectTimeout,
    OttoError,
    SessionClosed,
    tail,
)
from otto.expect import ExpectBuffer, ExpectMatch
from otto.loop import cancel_and_wait
from otto.result import CommandStatus, RunResult, Status
from otto.session.lock import SessionLock
from otto.transports.base import ShellTransport
from otto.transports.steps import SHELL_START

__all__ = ["DEFAULT_MAX_OUTPUT", "Observer", "OpeningSession", "Session", "Tap"]

log = logging.getLogger("otto.session")

Pattern: TypeAlias = "str | re.Pattern[str]"
Tap: TypeAlias = "Callable[[str, Literal['sent', 'received'], bytes], None]"
Observer: TypeAlias = "Callable[[CommandStatus], None]"
"""Sees every byte a session writes to its shell and reads from it: called
with where (``host/session``), the direction and the bytes."""
Patterns: TypeAlias = "list[str | re.Pattern[str]] | tuple[str | re.Pattern[str], ...]"

DEFAULT_MAX_OUTPUT = 256 * 1024 * 1024
"""Bytes of output one command keeps by default; past that its head and tail
are kept, joined by a line saying how much was dropped."""

_RESYNC_WAITS = (0.3, 0.7, 1.5, 3.0)
#: Seconds closing a session on a console waits for its interrupt to be seen through.
_SETTLE_ON_CLOSE = 3.0
"""Seconds to wait for the shell after each interrupt attempt, before escalating."""


class _Lost:
    """What a waiter receives when the shell goes away."""

    __slots__ = ("reason", "status")

    def __init__(self, status: int | None, reason: str) -> None:
        self.status = status
        self.reason = reason


_EXPIRED = _Lost(None, "timed out")
"""What a bounded waiter receives from the session's watchdog when its time is up."""

_Outcome: TypeAlias = "int | framing.MarkerScanner | _Lost"
"""What a command's waiter receives (see ``Session._begin``)."""

_monotonic = time.monotonic
_time = time.time


class Session:
    """A persistent shell on a host: state (cwd, env, functions) lasts between calls.

    Get one from ``host.open_session(name)``; the host's own ``run`` uses one too.

    Args:
        max_output: bytes of output one command keeps; a command that prints
            more keeps its first and last halves, joined by a line saying how
            many bytes were dropped, and a warning is logged.
        resync_waits: seconds to wait for the shell after each step of an
            interrupt (SIGINT, SIGINT, SIGKILL to its children, SIGKILL again)
            before starting a fresh shell.
        lock: the lock that serializes calls; sessions that share one stream
            (a console) share one lock, so their calls never interleave.
        shell: False for a stream with no shell on it (a bootloader, a router
            CLI on a console): nothing of otto's is written when it opens, and
            only ``send``/``expect`` work (``run`` raises ``OttoError``).
        taps: called with every byte written to and read from the shell (a
            transcript); a host passes its own list, so a tap added to the host
            reaches every session it has or will have.
        observers: called with every command's ``CommandStatus`` as it ends
            (a host passes its own list, as with ``taps``).
        guard: called before every command or write; it raises to refuse (a
            host whose reservation was lost refuses through it).
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
        max_output: int = DEFAULT_MAX_OUTPUT,
        resync_waits: Sequence[float] = _RESYNC_WAITS,
        lock: SessionLock | None = None,
        shell: bool = True,
        taps: list[Tap] | None = None,
        observers: list[Observer] | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self.host_name = host
        self.pty = pty
        self.max_output = max_output
        self._resync_waits = tuple(resync_waits)
        self._factory = transport_factory
        self._ready_timeout = ready_timeout
        self._on_close = on_close
        self._lock = lock or SessionLock()
        self.shell = shell
        self._transport: ShellTransport | None = None
        self._token = ""
        self._seq = 0
        self._shell_pid: int | None = None
        self._scanner: framing.MarkerScanner | None = None
        # A waiting run: the start of its marker while none of its bytes came
        # (see data_received), and its output when the marker came with them.
        self._ours: bytes | None = None
        self._out = b""
        self._prefix = b""
        self._plain_line: bytes | None = None
        self._waiter: asyncio.Future[Any] | None = None
        self._buffer = ExpectBuffer()
        self._expect_patterns: tuple[re.Pattern[str], ...] = ()
        self._expect_waiter: asyncio.Future[ExpectMatch | _Lost] | None = None
        self._lost: _Lost | None = None
        self._exited: tuple[int, int] | None = None
        self._dirty = False
        self._sent = False
        self._bash = False
        self._echo_seen = False
        self._closed = False
        self._recovery: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[bytes], None]] = []
        self._consumers = 0
        self._taps: list[Tap] = [] if taps is None else taps
        self._observers: list[Observer] = [] if observers is None else observers
        self._guard = guard
        # One lazy timer bounds the waiter of the call under way (see _bound).
        self._bounded: asyncio.Future[Any] | None = None
        self._deadline = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shell_loop: asyncio.AbstractEventLoop | None = None
        # exchange's last patterns, compiled: an App passes the same tuple each time.
        self._compiled_for: object = None
        self._compiled: tuple[re.Pattern[str], ...] = ()

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
        if self._listeners:
            for listener in self._listeners:
                listener(data)
        if self._taps:
            for tap in self._taps:
                tap(self.where, "received", data)
        ours = self._ours
        if ours is not None:
            # A run's first bytes. Usually they are its whole end marker (after
            # any output), printed by otto's shell: the first look of
            # MarkerScanner.feed, written out, and no scanner made at all.
            self._ours = None
            at = data.find(self._prefix)
            if at >= 0 and data.startswith(ours, at):
                start = at + len(ours)
                end = data.find(framing.US_BYTE, start)
                if end > start + 1 and data[end - 1] == framing.OURS:
                    status = framing.STATUSES.get(data[start : end - 1])
                    if status is not None:
                        self._out = data[:at]
                        waiter = self._waiter
                        if waiter is not None and not waiter.done():
                            waiter.set_result(status)
                        data = data[end + 1 :]
                        if not data:
                            return
                        ours = None
            if ours is not None:
                self._scanner = framing.MarkerScanner(self._token, self._seq, limit=self.max_output)
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
        if framing.RS in data and self._token:
            # Between commands only the EXIT trap prints a marker: the shell ended.
            exited = framing.exit_marker(data, self._token)
            if exited is not None:
                self._exited = exited
                return
        if self._consumers:
            return
        self._buffer.feed(data)
        waiter2 = self._expect_waiter
        if waiter2 is not None and not waiter2.done():
            found = self._buffer.search_any(self._expect_patterns)
            if found is not None:
                waiter2.set_result(found)

    def connection_lost(self, exit_status: int | None, reason: str) -> None:
        if self._lost is not None:
            return
        lost = _Lost(exit_status, reason)
        self._lost = lost
        for listener in self._listeners:
            listener(b"")  # the end of the stream, for a live view
        for waiter in (self._waiter, self._expect_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(lost)

    def _write(self, transport: ShellTransport, data: bytes) -> None:
        transport.write(data)
        if self._taps:
            for tap in self._taps:
                tap(self.where, "sent", data)

    def reset(self, reason: str) -> None:
        """Forget the shell, as when the machine rebooted.

        The next call starts a fresh shell, with a warning naming ``reason``;
        a call waiting now ends with it.
        """
        self.connection_lost(None, reason)

    def add_listener(
        self, listener: Callable[[bytes], None], *, consume: bool = False
    ) -> Callable[[], None]:
        """Also hand every received byte to ``listener`` (for a live terminal view).

        ``listener(b"")`` means the shell has ended. Returns a function that
        removes the listener. With ``consume``, what arrives outside a ``run``
        is the listener's alone while it listens: it is not kept for
        ``expect`` (a stream read to its end, such as a followed log, would
        otherwise be decoded twice and kept up to the buffer's size).
        """
        self._listeners.append(listener)
        if consume:
            self._consumers += 1

        def remove() -> None:
            self._listeners.remove(listener)
            if consume:
                self._consumers -= 1

        return remove

    # --- starting ------------------------------------------------------------

    async def start(self) -> None:
        """Start the shell now rather than on first use; raises ``ConnectError``."""
        async with self._lock:
            await self._ensure_shell()

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosed(f"session {self.where} is closed")

    async def _ensure_shell(self) -> ShellTransport:
        """A shell that reads commands: the current one, cleaned up, or a fresh one."""
        self._check_open()
        if self._dirty and self._transport is not None and self._lost is None:
            await self._resync()
        transport = self._transport
        if transport is not None and self._lost is None:
            return transport
        if transport is not None:
            lost = self._lost
            assert lost is not None
            log.warning(
                "%s: the shell ended (%s); starting a fresh shell, its state is gone",
                self.where,
                lost.reason,
            )
            await self._drop_transport()
        return await self._start_shell()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The running loop, known without asking (the shell was started on it).

        ``asyncio.get_running_loop`` makes a system call (getpid) on Python
        3.11, about 0.4 us, and this is on every round trip. A shell is of use
        only on the loop it was started on; a call on another loop gets
        asyncio's error about a future of another loop.
        """
        loop = self._shell_loop
        if loop is None:
            loop = self._shell_loop = asyncio.get_running_loop()
        return loop

    async def _start_shell(self) -> ShellTransport:
        self._shell_loop = asyncio.get_running_loop()
        transport = self._factory()
        self._lost = None
        self._exited = None
        self._dirty = False
        self._sent = False
        self._buffer.clear()
        self._token = framing.new_token()
        self._prefix = framing.token_prefix(self._token)
        self._plain_line = None
        self._seq = 0
        self._transport = transport
        started = time.monotonic()
        if not self.shell:
            try:
                async with asyncio.timeout(self._ready_timeout):
                    await transport.open(self)
            except TimeoutError:
                await self._drop_transport()
                raise ConnectError(
                    self.where, f"the stream did not open within {self._ready_timeout:g}s"
                ) from None
            except BaseException:
                await self._drop_transport()
                raise
            return transport
        try:
            async with asyncio.timeout(self._ready_timeout):
                await transport.open(self)
                scanner = self._expect_marker(0, keep=True)
                self._write(transport, framing.setup_bytes(self._token, pty=self.pty))
                outcome = await self._waiter_result()
        except TimeoutError:
            received = self._scanner.output if self._scanner else b""
            await self._drop_transport()
            raise ConnectError(
                self.where,
                f"the shell did not become ready within {self._ready_timeout:g}s; "
                f"received: {tail(framing.clean_output(received))!r}",
                step=SHELL_START,
            ) from None
        except BaseException:
            await self._drop_transport()
            raise
        if isinstance(outcome, _Lost):
            text = framing.clean_output(scanner.output)
            await self._drop_transport()
            raise ConnectError(
                self.where,
                f"the shell ended while starting ({outcome.reason}): {tail(text)!r}",
                step=SHELL_START,
            )
        self._shell_pid = outcome.status
        self._bash = framing.BASH_FLAG in scanner.output
        if self._bash and not self.pty:
            self._plain_line = framing.PLAIN_LINE
        self._buffer.clear()
        if outcome.rest:
            self._buffer.feed(outcome.rest)
        log.debug("%s: shell ready in %.1f ms", self.where, (time.monotonic() - started) * 1e3)
        return transport

    async def _drop_transport(self) -> None:
        transport, self._transport = self._transport, None
        self._scanner = None
        self._ours = None
        self._dirty = False
        self._sent = False
        if transport is not None:
            await transport.close()

    def _expect_marker(self, seq: int, *, keep: bool) -> framing.MarkerScanner:
        scanner = framing.MarkerScanner(self._token, seq, limit=self.max_output if keep else 0)
        self._scanner = scanner
        self._ours = None
        self._waiter = asyncio.get_running_loop().create_future()
        return scanner

    async def _waiter_result(self) -> framing.MarkerScanner | _Lost:
        waiter = self._waiter
        assert waiter is not None
        if self._lost is not None and not waiter.done():
            waiter.set_result(self._lost)
        try:
            outcome: framing.MarkerScanner | _Lost = await waiter
        finally:
            self._waiter = None
        return outcome

    # --- bounding a wait ----------------------------------------------------------

    def _bound(self, waiter: asyncio.Future[Any], seconds: float) -> None:
        """Give ``waiter`` the result ``_EXPIRED`` if it is still waiting in ``seconds``.

        A call bounds one waiter at a time (the session's lock serializes calls),
        and its caller clears ``_bounded`` once the wait is over. The timer is
        lazy: one handle stays scheduled across calls and, when it fires early
        (a later call's deadline is further away), is set again for the deadline
        now in force; so a warm round trip with a timeout schedules no timer of
        its own, which a timeout scope or a timer per call would.
        """
        loop = self._shell_loop or self._running_loop()
        if loop is not self._loop:
            self._loop = loop
            self._watchdog = None  # a handle of a loop that is gone never fires
        deadline = loop.time() + seconds
        self._bounded = waiter
        self._deadline = deadline
        watchdog = self._watchdog
        if watchdog is not None:
            if watchdog.when() <= deadline:
                return
            watchdog.cancel()
        self._watchdog = loop.call_at(deadline, self._watch, deadline)

    def _watch(self, when: float) -> None:
        self._watchdog = None
        waiter = self._bounded
        if waiter is None or waiter.done():
            return
        if self._deadline <= when:
            waiter.set_result(_EXPIRED)
            return
        loop = self._loop
        assert loop is not None
        self._watchdog = loop.call_at(self._deadline, self._watch, self._deadline)

    def _unwatch(self) -> None:
        self._bounded = None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None

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
        if self._guard is not None:
            self._guard()
        if not isinstance(cmds, str):
            return await self._run_list(cmds, timeout)
        # One command: the common case, kept lean, since it is on every round
        # trip (SessionLock.try_acquire written out).
        lock = self._lock
        if lock._locked or lock._waiters:
            await lock.acquire()
        else:
            lock._locked = True
        try:
            transport = self._transport
            if (
                transport is None
                or self._lost is not None
                or self._dirty
                or self._closed
                or self._sent
                or not self.shell
            ):
                one = await self._run_one(cmds, timeout)
            else:
                # A shell that reads commands: one pass of _run_one, written out.
                started = (_monotonic(), _time())
                waiter, sent = self._begin(transport, cmds, timeout)
                try:
                    outcome: _Outcome = await waiter
                except asyncio.CancelledError:
                    self._cancelled()
                    raise
                finally:
                    self._stop_waiting()
                ended = self._ended(cmds, sent, outcome, started)
                if ended is None:
                    ended = await self._end(
                        cmds, sent, outcome, started, left=timeout, budget=timeout, fresh=False
                    )
                    if ended is None:  # the shell had ended before it read the command
                        ended = await self._run_one(cmds, timeout, started=started, retried=True)
                one = ended
        finally:
            lock.release()
        if self._observers:
            for observe in self._observers:
                observe(one)
        return RunResult.of_one(one)

    async def _run_list(self, cmds: Sequence[str], timeout: float | None) -> RunResult:
        statuses: list[CommandStatus] = []
        async with self._lock:
            # Connecting is bounded by connect_timeout; `timeout` is for the commands.
            await self._ensure_shell()
            deadline = None if timeout is None else time.monotonic() + timeout
            for command in cmds:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                status = await self._run_one(command, left, timeout)
                statuses.append(status)
                for observe in self._observers:
                    observe(status)
                if status.status is not Status.Success:
                    break
        return RunResult.of(statuses)

    async def _run_one(
        self,
        command: str,
        timeout: float | None,
        budget: float | None = None,
        *,
        started: tuple[float, float] | None = None,
        retried: bool = False,
    ) -> CommandStatus:
        """Run ``command`` whatever state the shell is in (see ``run``).

        ``retried``: the shell ended before it read the command once already,
        so this pass, in a fresh shell, is the last.
        """
        if not self.shell:
            raise OttoError(
                f"{self.where}: this session has no shell (a raw stream): "
                "drive it with send/expect or open_app"
            )
        budget = budget or timeout
        if started is None:
            started = (time.monotonic(), time.time())
        for fresh in (True,) if retried else (False, True):
            transport = self._transport
            if transport is None or self._lost is not None or self._dirty or self._closed:
                transport = await self._ensure_shell()
            if self._sent:
                left = None if timeout is None else timeout - (time.monotonic() - started[0])
                if not await self._settle(left):
                    return self._status(
                        command,
                        "",
                        None,
                        started,
                        timed_out=True,
                        error=f"{self.where}: the shell did not read commands within "
                        f"{budget:g}s (is an interactive program still running?)",
                    )
                if self._lost is not None:
                    transport = await self._ensure_shell()  # what was sent ended the shell
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started[0]))
            waiter, sent = self._begin(transport, command, left)
            try:
                outcome: _Outcome = await waiter
            except asyncio.CancelledError:
                self._cancelled()
                raise
            finally:
                self._stop_waiting()
            ended = self._ended(command, sent, outcome, started)
            if ended is None:
                ended = await self._end(
                    command, sent, outcome, started, left=left, budget=budget, fresh=fresh
                )
            if ended is not None:
                return ended
        raise AssertionError("unreachable: the last pass always returns")

    def _stop_waiting(self) -> None:
        """The command's wait is over (answered, timed out or cancelled)."""
        self._waiter = None
        self._bounded = None
        self._ours = None

    def _begin(
        self, transport: ShellTransport, command: str, timeout: float | None
    ) -> tuple[asyncio.Future[_Outcome], bytes]:
        """Send ``command`` with the next marker; returns the waiter and the bytes sent.

        The waiter gets the exit status (the marker came whole in the first
        bytes, which ``_out`` then holds up to it), the scanner that found the
        marker, ``_EXPIRED`` after ``timeout``, or a ``_Lost``.
        """
        seq = self._seq = self._seq + 1
        if self._buffer._size:
            self._buffer.clear()
        self._scanner = None  # made when the first bytes are not simply the marker
        self._out = b""
        self._ours = b"%s%d:" % (self._prefix, seq)
        loop = self._shell_loop or self._running_loop()
        waiter: asyncio.Future[_Outcome] = loop.create_future()
        self._waiter = waiter
        plain = self._plain_line
        if plain is not None and framing.is_plain(command):
            sent = plain % (seq, command.encode())
        else:
            sent = framing.command_bytes(command, self._token, seq, pty=self.pty, bash=self._bash)
        if self._taps:
            self._write(transport, sent)
        else:
            transport.write(sent)
        if timeout is not None:
            self._bound(waiter, timeout)
        return waiter, sent

    def _cancelled(self) -> None:
        """The caller was cancelled mid-command: interrupt it now (not at the next
        call), in a task the session owns, so the cancellation goes on at once."""
        self._scanner = None
        self._ours = None
        self._dirty = True
        self._start_recovery()

    def _ended(
        self, command: str, sent: bytes, outcome: _Outcome, started: tuple[float, float]
    ) -> CommandStatus | None:
        """The record of a command that ended the usual way; None if ``_end`` must see to it.

        The usual way: the marker came, printed by otto's shell, nothing was
        dropped, and the output does not start like the echo of what was sent.
        """
        status: int | None
        if type(outcome) is int:
            raw = self._out
            status = outcome
        elif type(outcome) is framing.MarkerScanner and not (outcome.replaced or outcome.dropped):
            raw = outcome.output
            status = outcome.status
        else:
            return None
        if raw:
            if raw[:3] == b"__o":
                return None  # maybe the echo of what was sent (stty echo, set -v)
            output = framing.strip_own_trace(framing.clean_output(raw))
        else:
            output = ""
        self._echo_seen = False
        return CommandStatus.finished(
            command, output, status, started=started, host=self.host_name, session=self.name
        )

    async def _end(
        self,
        command: str,
        sent: bytes,
        outcome: _Outcome,
        started: tuple[float, float],
        *,
        left: float | None,
        budget: float | None,
        fresh: bool,
    ) -> CommandStatus | None:
        """A command's end that ``_ended`` left: an echo, a replaced shell, output
        dropped, a timeout or a lost shell. None: the shell had ended before it
        read the command, which should run once more in a fresh shell."""
        seq = self._seq
        if isinstance(outcome, int | framing.MarkerScanner):
            status: int | None
            if isinstance(outcome, int):
                raw, status, replaced, dropped = self._out, outcome, False, 0
            else:
                raw, status = outcome.output, outcome.status
                replaced, dropped = outcome.replaced, outcome.dropped
            echoed = False
            if raw[:3] == b"__o":
                raw, echoed = framing.strip_own_echo(raw, sent)  # stty echo, set -v
                if echoed and self.pty and not self._echo_seen:
                    await self._restore_terminal(left)
            self._echo_seen = echoed
            output = framing.clean_output(raw)
            if replaced:
                token = self._token
                output = "\n".join(line for line in output.split("\n") if token not in line)
                await self._set_up_again(left, started)
            output = framing.strip_own_trace(output)
            return self._status(command, output, status, started, dropped=dropped)
        # What came of the command's output before it ended another way.
        scanner, self._scanner = self._scanner, None
        received = scanner.output if scanner is not None else self._out
        dropped = scanner.dropped if scanner is not None else 0
        if outcome is _EXPIRED:
            output = framing.clean_output(received)
            await self._interrupt_in_background()
            return self._status(
                command,
                output,
                None,
                started,
                timed_out=True,
                error=f"{self.where}: timed out after {budget:g}s",
                dropped=dropped,
            )
        exited = (scanner.exit if scanner is not None else None) or self._exited
        if exited is not None and exited[0] < seq and not fresh:
            # The shell had ended by itself before it read this command.
            log.warning(
                "%s: the shell ended (status %d) before `%s` ran; running it in a "
                "fresh shell, the old shell's state is gone",
                self.where,
                exited[1],
                command[:80],
            )
            return None
        output = framing.clean_output(received)
        if exited is not None and exited[0] < seq:
            return self._status(
                command,
                output,
                None,
                started,
                error=f"{self.where}: the shell ended before the command ran: {outcome.reason}",
            )
        code = exited[1] if exited is not None else outcome.status
        if code is not None and code >= 0:
            # The command ended the shell (exit, exec): that is its result.
            return self._status(command, output, code, started, dropped=dropped)
        return self._status(
            command,
            output,
            None,
            started,
            error=f"{self.where}: connection lost: {outcome.reason}",
        )

    def _status(
        self,
        command: str,
        output: str,
        retcode: int | None,
        started: tuple[float, float],
        *,
        timed_out: bool = False,
        error: str = "",
        dropped: int = 0,
    ) -> CommandStatus:
        if dropped:
            log.warning(
                "%s: `%s` printed more than max_output (%d bytes); %d bytes in the middle "
                "were dropped",
                self.where,
                command[:80],
                self.max_output,
                dropped,
            )
        return CommandStatus.finished(
            command,
            output,
            retcode,
            started=started,
            host=self.host_name,
            session=self.name,
            timed_out=timed_out,
            error=error,
        )

    async def _set_up_again(self, timeout: float | None, started: tuple[float, float]) -> None:
        """The command replaced the shell (``exec bash``): set the new one up as otto needs."""
        log.warning("%s: the command replaced the shell; setting the new one up", self.where)
        transport = self._transport
        assert transport is not None
        self._seq += 1
        self._expect_marker(self._seq, keep=False)
        self._write(transport, framing.setup_bytes(self._token, pty=self.pty, seq=self._seq))
        waiter = self._waiter
        assert waiter is not None
        left = self._ready_timeout if timeout is None else max(0.1, timeout)
        done, _ = await asyncio.wait({waiter}, timeout=left)
        self._waiter = None
        if not done:
            self._scanner = None
            self._dirty = True
            return
        outcome = waiter.result()
        if not isinstance(outcome, _Lost):
            self._shell_pid = outcome.status
            self._buffer.clear()
            if outcome.rest:
                self._buffer.feed(outcome.rest)

    async def _restore_terminal(self, timeout: float | None) -> None:
        """A command turned the terminal's echo on: turn it off again for the next ones.

        Only once in a row: if the next command shows its echo too, it is the
        shell's own (``set -v``), which this cannot change.
        """
        transport = self._transport
        assert transport is not None
        self._seq += 1
        waiter = self._expect_marker_waiter(self._seq)
        self._write(transport, framing.restore_bytes(self._token, self._seq))
        left = self._ready_timeout if timeout is None else max(0.1, timeout)
        try:
            done, _ = await asyncio.wait({waiter}, timeout=left)
        finally:
            self._waiter = None
        if not done:
            self._scanner = None
            self._dirty = True  # the next call sees the shell through first

    async def _settle(self, timeout: float | None) -> bool:
        """After ``send``: wait until the shell reads commands again, interrupting nothing.

        An interactive program that just exited may have read ahead and taken
        text meant for the shell with it; so a line that only prints a marker
        is sent, and sent again, until the shell answers. Returns False if it
        has not answered within ``timeout``.
        """
        transport = self._transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        wait = 0.2
        while self._lost is None:
            left = wait if deadline is None else min(wait, deadline - loop.time())
            if left <= 0:
                return False
            self._seq += 1
            waiter = self._expect_marker_waiter(self._seq)
            self._write(transport, framing.sync_bytes(self._token, self._seq))
            try:
                done, _ = await asyncio.wait({waiter}, timeout=left)
            finally:
                self._waiter = None
            if done:
                self._sent = False  # what came after the marker is in the buffer already
                return True
            self._scanner = None
            wait = min(wait * 2, 1.0)
        self._sent = False
        return True

    def _expect_marker_waiter(self, seq: int) -> asyncio.Future[framing.MarkerScanner | _Lost]:
        """Wait for marker ``seq``, keeping none of the output before it."""
        self._expect_marker(seq, keep=False)
        waiter = self._waiter
        assert waiter is not None
        return waiter

    async def _interrupt_in_background(self) -> None:
        """After a timeout: interrupt now, and let a task the session owns see it through.

        The call that timed out returns at once; the next call waits until the
        shell reads commands again (or a fresh one has started).
        """
        self._dirty = True
        transport = self._transport
        if transport is not None and self._lost is None:
            await transport.interrupt(self._shell_pid)
        self._start_recovery(interrupted=True)

    def _start_recovery(self, *, interrupted: bool = False) -> None:
        if self._recovery is not None and not self._recovery.done():
            return
        self._recovery = asyncio.ensure_future(self._recover(interrupted))

    async def _recover(self, interrupted: bool) -> None:
        try:
            async with self._lock:
                if self._dirty and not self._closed:
                    await self._resync(interrupted=interrupted)
        except Exception as exc:  # the next call starts over; say why here
            log.warning("%s: could not recover the shell: %s", self.where, exc)

    async def _resync(self, *, interrupted: bool = False) -> None:
        """Interrupt whatever runs and wait until the shell reads commands again.

        Escalates: SIGINT (the command's marker or a sync marker should follow),
        then SIGINT again, then SIGKILL to everything the shell started, and as
        a last resort a fresh shell (logged: its state is lost). The session
        counts as clean only once this has finished: a call cancelled meanwhile
        leaves it to the next call.
        """
        transport = self._transport
        if transport is None or self._lost is not None:
            self._dirty = False
            return
        for attempt, wait in enumerate(self._resync_waits):
            if attempt >= 2:
                await transport.kill_children(self._shell_pid)
                if self._lost is not None:
                    self._dirty = False
                    return
            if attempt > 0 or not interrupted:
                await transport.interrupt(self._shell_pid)
            if self._lost is not None:
                self._dirty = False
                return
            self._seq += 1
            waiter = self._expect_marker_waiter(self._seq)
            # A newline first: a builtin such as `read` ends on it, the shell skips it.
            # The set-up again: a command may have replaced the shell (`exec bash`).
            self._write(
                transport, b"\n" + framing.setup_bytes(self._token, pty=self.pty, seq=self._seq)
            )
            # asyncio.wait, not a timeout scope: this often runs while a
            # TimeoutError is being handled, and must not cancel the task.
            try:
                done, _ = await asyncio.wait({waiter}, timeout=wait)
            finally:
                self._waiter = None
            if not done:
                self._scanner = None
                continue
            outcome = waiter.result()
            self._dirty = False
            if isinstance(outcome, _Lost):
                return
            self._shell_pid = outcome.status
            self._buffer.clear()
            if outcome.rest:
                self._buffer.feed(outcome.rest)
            return
        log.warning("%s: the shell did not come back after an interrupt; restarting it", self.where)
        await self._drop_transport()

    # --- interactive -----------------------------------------------------------

    async def send(self, text: str) -> None:
        """Write ``text`` to the shell as it is (no newline added)."""
        if self._guard is not None:
            self._guard()
        async with self._lock:
            transport = await self._ensure_shell()
            self._write(transport, text.encode("utf-8", "surrogateescape"))
            self._sent = True
            await transport.drain()

    @overload
    async def expect(self, pattern: Pattern, timeout: float = 30.0) -> str: ...

    @overload
    async def expect(self, pattern: Patterns, timeout: float = 30.0) -> ExpectMatch: ...

    async def expect(self, pattern: Pattern | Patterns, timeout: float = 30.0) -> str | ExpectMatch:
        """Wait until ``pattern`` matches output received since the last match.

        Returns that output up to and including the match. Given a list of
        patterns, waits for any of them and returns an ``ExpectMatch`` that
        says which matched (``index``), the text (``text``) and the match
        (``match``); the match that starts earliest in the output wins.

        Raises:
            ExpectTimeout: no match within ``timeout``; carries what was received.
            ConnectionLost: the shell ended before a match.
        """
        single = isinstance(pattern, (str, re.Pattern))
        found = await self._expect_any(_compile(pattern), timeout)
        return found.text if single else found

    async def exchange(
        self, text: str, patterns: Pattern | Patterns, timeout: float = 30.0
    ) -> ExpectMatch:
        """Send ``text``, then wait for any of ``patterns``, as one call.

        ``send`` followed by ``expect`` with a list, except that nothing else
        on the session can come between them, and the lock is taken once:
        for programs driven a line at a time (``App.cmd``).

        Raises:
            ExpectTimeout: no match within ``timeout``; carries what was received.
            ConnectionLost: the shell ended before a match.
        """
        if self._guard is not None:
            self._guard()
        if patterns is self._compiled_for:
            regexes = self._compiled
        else:
            regexes = _compile(patterns)
            if type(patterns) is tuple:  # immutable: safe to know again by identity
                self._compiled, self._compiled_for = regexes, patterns
        lock = self._lock
        if not lock.try_acquire():
            await lock.acquire()
        try:
            transport = self._transport
            if transport is None or self._lost is not None or self._dirty or self._closed:
                transport = await self._ensure_shell()
            self._write(transport, text.encode("utf-8", "surrogateescape"))
            self._sent = True
            await transport.drain()
            return await self._wait_match(regexes, timeout)
        finally:
            lock.release()

    async def _expect_any(
        self, regexes: tuple[re.Pattern[str], ...], timeout: float
    ) -> ExpectMatch:
        async with self._lock:
            await self._ensure_shell()
            return await self._wait_match(regexes, timeout)

    async def _wait_match(
        self, regexes: tuple[re.Pattern[str], ...], timeout: float
    ) -> ExpectMatch:
        if self._buffer._size:  # something pending: it may hold the match already
            found = self._buffer.search_any(regexes)
            if found is not None:
                return found
        if self._lost is not None:
            raise ConnectionLost(self.where, self._lost.reason, self._buffer.text())
        loop = self._shell_loop or self._running_loop()
        waiter: asyncio.Future[ExpectMatch | _Lost] = loop.create_future()
        self._expect_patterns = regexes
        self._expect_waiter = waiter
        # The session's lazy timer rather than a timeout scope: it cancels nothing.
        self._bound(waiter, timeout)
        try:
            outcome = await waiter
        finally:
            self._bounded = None
            self._expect_waiter = None
            self._expect_patterns = ()
        if outcome is _EXPIRED:
            shown = " | ".join(r.pattern for r in regexes)
            raise ExpectTimeout(self.where, shown, timeout, self._buffer.text())
        if isinstance(outcome, _Lost):
            raise ConnectionLost(self.where, outcome.reason, self._buffer.text())
        return outcome

    def resize(self, rows: int, cols: int) -> None:
        """Tell a pty session's terminal its new size."""
        if self._transport is not None:
            self._transport.resize(rows, cols)

    # --- closing ---------------------------------------------------------------

    async def close(self) -> None:
        """End the shell and everything it started. Later calls raise ``SessionClosed``."""
        if self._closed:
            return
        recovery = self._recovery
        transport = self._transport
        if (
            recovery is not None
            and not recovery.done()
            and transport is not None
            and transport.persists
        ):
            # A console's shell stays when we go: let the interrupt sent after a
            # timeout or a cancellation be seen through (bounded), so the next
            # user of the console finds a shell that reads commands.
            await asyncio.wait({recovery}, timeout=_SETTLE_ON_CLOSE)
            if self._closed:
                return  # another close() finished meanwhile
        self._closed = True
        self._unwatch()
        transport, self._transport = self._transport, None
        lost = _Lost(None, "session closed")
        self._lost = lost
        for waiter in (self._waiter, self._expect_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(lost)
        try:
            if self._recovery is not None:
                await cancel_and_wait(self._recovery)
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


def _compile(pattern: Pattern | Patterns) -> tuple[re.Pattern[str], ...]:
    items = [pattern] if isinstance(pattern, (str, re.Pattern)) else list(pattern)
    if not items:
        raise ValueError("expect needs at least one pattern")
    return tuple(re.compile(p) if isinstance(p, str) else p for p in items)


class OpeningSession:
    """What ``open_session`` returns: await it, or use it directly with ``async with``.

    ``s = await host.open_session("x")`` and ``async with host.open_session("x") as s:``
    (and ``async with await host.open_session("x") as s:``) all give the session.
    """

    __slots__ = ("_opening", "_session")

    def __init__(self, opening: Callable[[], Any]) -> None:
        self._opening = opening
        self._session: Session | None = None

    def __await__(self) -> Generator[Any, None, Session]:
        return self._open().__await__()

    async def _open(self) -> Session:
        if self._session is None:
            self._session = await self._opening()
        return self._session

    async def __aenter__(self) -> Session:
        return await self._open()

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
