"""The transport interface: a way of moving bytes to and from one shell.

A transport knows nothing of commands, markers or prompts. It starts a shell
(a local process, an SSH channel, a Telnet login), hands every byte the shell
prints to its ``Receiver`` as it arrives, writes what it is given, and can
interrupt the shell's foreground command out of band. The session layer does
everything else, so a new way of reaching a machine is one new file here.
"""

from __future__ import annotations

import abc
import asyncio
from typing import Protocol

__all__ = ["Receiver", "ShellTransport", "WriteFlow"]


class Receiver(Protocol):
    """Where a transport delivers what the shell prints."""

    def data_received(self, data: bytes) -> None:
        """Bytes arrived, in order, stdout and stderr merged."""

    def connection_lost(self, exit_status: int | None, reason: str) -> None:
        """The shell is gone: it exited (``exit_status`` set) or the link dropped."""


class ShellTransport(abc.ABC):
    """One running shell, reached some way.

    Lifecycle: ``await open(receiver)`` once; then ``write``/``interrupt`` any
    number of times; ``await close()`` ends the shell and everything it started
    (the remote process group too) and releases what the shell used. The
    receiver hears ``connection_lost`` at most once, and never after ``close``:
    a transport says it through ``report_lost``, which keeps that promise.
    """

    _receiver: Receiver | None = None
    _reported: bool = False
    _closing: bool = False

    #: True when the shell sits on a pseudo-terminal (echo, ``\\r\\n``, job control).
    pty: bool = False

    #: A short label for messages: "local", "ssh alice@10.0.0.2:22", ...
    description: str = ""

    #: True when the shell outlives the transport (a console's): closing cannot
    #: kill what runs there, so a session lets an interrupt it sent finish first.
    persists: bool = False

    @abc.abstractmethod
    async def open(self, receiver: Receiver) -> None:
        """Start the shell; raise ``ConnectError`` if it cannot be started."""

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Queue bytes for the shell's stdin. Never blocks."""

    @abc.abstractmethod
    async def drain(self) -> None:
        """Wait until queued bytes have been handed to the OS or the network."""

    @abc.abstractmethod
    async def interrupt(self, shell_pid: int | None) -> None:
        """Interrupt the foreground command, as Ctrl-C would (SIGINT to its group)."""

    @abc.abstractmethod
    async def kill_children(self, shell_pid: int | None) -> None:
        """Kill (SIGKILL) every process the shell started, but not the shell."""

    @abc.abstractmethod
    async def close(self) -> None:
        """End the shell and everything it started; idempotent."""

    def resize(self, rows: int, cols: int) -> None:
        """Tell the shell's terminal its new size (nothing without a terminal)."""

    def abandon(self) -> None:
        """Release what can be released without an event loop (at interpreter exit)."""

    def report_lost(self, exit_status: int | None, reason: str) -> None:
        """Tell the receiver the shell is gone: once, and not after ``close`` began."""
        if self._reported or self._closing:
            return
        self._reported = True
        if self._receiver is not None:
            self._receiver.connection_lost(exit_status, reason)


class WriteFlow(asyncio.Protocol):
    """A protocol's side of write flow control: ``drain`` waits while the
    transport has paused writing (its buffer is full), as a stream writer's does."""

    _paused = False
    _drained: asyncio.Future[None] | None = None

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        waiter, self._drained = self._drained, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        if not self._paused:
            return
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        await self._drained
