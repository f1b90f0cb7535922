"""``otto host NAME login``: an interactive shell on a host, in this terminal.

The local terminal goes to raw mode, so every key (Ctrl-C, arrows, Tab)
reaches the remote shell; the host's output is written back untouched; the
window size follows this terminal's. ``Ctrl-]`` leaves, as in telnet. The
terminal's settings are restored however the session ends.

On a console or serial host the terminal is joined to the console itself, as
it is: no login is made and no shell started for you (a bootloader works too),
and leaving leaves the console as it is.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import signal
import sys
import termios
import tty
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from otto.hosts import Host
    from otto.session import Session
    from otto.transports.console import ConsoleLink

__all__ = ["ESCAPE", "login"]

#: The key that leaves the session: Ctrl-] (GS, 0x1d).
ESCAPE = b"\x1d"

# The session shell was set up for framed commands (no echo, empty prompts, an
# INT trap); replace it by the user's own login shell, with a sane terminal and
# the prompts left for that shell's start-up files to set.
_BECOME_LOGIN_SHELL = (
    "stty sane 2>/dev/null; trap - INT; unset PS0 PS1 PS2 PS3 PS4 PROMPT_COMMAND; "
    'exec "${SHELL:-/bin/sh}" -l\n'
)


def _window_size(fd: int) -> tuple[int, int]:
    size = os.get_terminal_size(fd)
    return size.lines, size.columns


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            continue
        view = view[written:]


async def _pump(session: Session, fd_in: int, fd_out: int) -> str:
    """Shuttle bytes until Ctrl-] or the shell ends; returns why it stopped."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()
    to_send: asyncio.Queue[str] = asyncio.Queue()
    decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")

    def finish(reason: str) -> None:
        if not done.done():
            done.set_result(reason)

    def on_output(data: bytes) -> None:
        if not data:  # end of stream: the shell exited
            finish("the shell exited")
            return
        _write_all(fd_out, data)

    def on_input() -> None:
        try:
            data = os.read(fd_in, 4096)
        except OSError:
            data = b""
        if not data:
            finish("end of input")
            return
        head, escape, _ = data.partition(ESCAPE)
        if head:
            to_send.put_nowait(decoder.decode(head))
        if escape:
            finish("left with Ctrl-]")

    def on_resize() -> None:
        with contextlib.suppress(OSError):
            rows, cols = _window_size(fd_in)
            session.resize(rows, cols)

    async def sender() -> None:
        while True:
            text = await to_send.get()
            try:
                await session.send(text)
            except Exception as exc:
                finish(f"the session ended: {exc}")
                return

    remove_listener = session.add_listener(on_output)
    loop.add_reader(fd_in, on_input)
    loop.add_signal_handler(signal.SIGWINCH, on_resize)
    try:
        on_resize()
        await session.send(_BECOME_LOGIN_SHELL)
        async with asyncio.TaskGroup() as tasks:
            send_task = tasks.create_task(sender())
            reason = await done
            send_task.cancel()
        return reason
    finally:
        loop.remove_signal_handler(signal.SIGWINCH)
        loop.remove_reader(fd_in)
        remove_listener()


async def login(host: Host) -> str:
    """Run an interactive shell on ``host`` in this terminal until Ctrl-] or exit.

    Returns:
        Why the session ended, for a closing message.

    Raises:
        OSError: standard input is not a terminal.
        ConnectError: the host's shell could not be started.
    """
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    if not os.isatty(fd_in):
        raise OSError("otto host login needs a terminal on standard input")
    from otto.hosts.console import ConsoleConnection

    connection = getattr(host, "connection", None)
    if isinstance(connection, ConsoleConnection):
        return await _console(host.name, connection.link, fd_in, fd_out)
    saved = termios.tcgetattr(fd_in)
    session = await host.open_session("login", pty=True)
    try:
        tty.setraw(fd_in, termios.TCSANOW)
        return await _pump(session, fd_in, fd_out)
    finally:
        termios.tcsetattr(fd_in, termios.TCSADRAIN, saved)
        await session.close()


async def _console(name: str, link: ConsoleLink, fd_in: int, fd_out: int) -> str:
    """Join this terminal to a console's stream until Ctrl-] or the stream ends."""
    await link.open_raw()
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()

    def finish(reason: str) -> None:
        if not done.done():
            done.set_result(reason)

    def on_output(data: bytes) -> None:
        if data:
            _write_all(fd_out, data)
        else:
            finish("the console connection closed")

    def on_input() -> None:
        try:
            data = os.read(fd_in, 4096)
        except OSError:
            data = b""
        if not data:
            finish("end of input")
            return
        head, escape, _ = data.partition(ESCAPE)
        if head:
            link.write_raw(head)
        if escape:
            finish("left with Ctrl-]")

    # Nothing is typed on the user's behalf: an empty line would repeat a
    # bootloader's last command (U-Boot runs `md`, `mmc write` again).
    _write_all(
        fd_out,
        f"otto: console of {name} ({link.where}); Ctrl-] leaves, Enter for a prompt\r\n".encode(),
    )
    saved = termios.tcgetattr(fd_in)
    remove_tap = link.add_tap(on_output)
    try:
        tty.setraw(fd_in, termios.TCSANOW)
        loop.add_reader(fd_in, on_input)
        return await done
    finally:
        loop.remove_reader(fd_in)
        remove_tap()
        termios.tcsetattr(fd_in, termios.TCSADRAIN, saved)
