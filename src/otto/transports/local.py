"""Local processes: a shell on pipes or on a pseudo-terminal, and one-shot commands."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import signal
import struct
import subprocess
import termios
from collections.abc import Sequence

from otto.errors import ConnectError
from otto.transports.base import Receiver, ShellTransport

__all__ = ["LocalShell", "default_shell", "exec_local", "kill_descendants"]

_EXIT_GRACE = 0.5
"""Seconds a closing or interrupted process gets before SIGKILL."""
_EOF_AFTER_EXIT = 0.2
"""Seconds to wait for the last output once the shell has exited (a background
job may still hold the pipe open)."""
PTY_SIZE = (50, 200)
"""Rows and columns of a local pseudo-terminal until told otherwise."""
READ_SIZE = 64 * 1024
"""Bytes asked for by each read of a shell's output: all a pipe holds (a pty
holds less). asyncio asks for 256 KiB, which glibc's malloc serves with an
mmap of its own, a page fault and an mremap on every read (until the process
frees a block that large, which raises its mmap threshold): about 10 us, a
third of a warm round trip here."""


def default_shell() -> str:
    """bash where it exists (its features are what users type), else /bin/sh."""
    return shutil.which("bash") or "/bin/sh"


def _killpg(pgid: int, sig: int) -> None:
    if pgid <= 0:
        return  # not started yet: 0 would signal our own process group
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may itself hold spaces or ')'.
        fields = stat[stat.rfind(b")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def kill_descendants(pid: int, sig: int = signal.SIGKILL) -> int:
    """Send ``sig`` to every descendant of ``pid`` (not ``pid`` itself); returns how many."""
    try:
        tree = _children_map()
    except OSError:
        return 0
    found: list[int] = []
    todo = list(tree.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(tree.get(child, []))
    for child in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, sig)
    return len(found)


class _ShellProtocol(asyncio.SubprocessProtocol):
    """Only the process's exit: its output comes through a read pipe of our own
    (``_Reader``), so each read reaches the session in the same loop turn (asyncio's
    subprocess pipes hand data on one turn later)."""

    def __init__(self, owner: LocalShell) -> None:
        self._owner = owner

    def process_exited(self) -> None:
        self._owner._on_exit()


class _Writer(asyncio.Protocol):
    """The shell's input: a pipe, or the pty master."""

    def __init__(self, owner: LocalShell) -> None:
        self._owner = owner

    def pause_writing(self) -> None:
        self._owner._can_write.clear()

    def resume_writing(self) -> None:
        self._owner._can_write.set()


class _Reader(asyncio.Protocol):
    """The shell's output (stdout and stderr): a pipe, or the pty master."""

    def __init__(self, owner: LocalShell) -> None:
        self._owner = owner

    def data_received(self, data: bytes) -> None:
        # LocalShell._receiver_data written out: this is on every round trip.
        owner = self._owner
        if owner._receiver is not None and not owner._reported:
            owner._receiver.data_received(data)

    def eof_received(self) -> bool | None:
        self._owner._on_eof()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        # A pty master reads EIO once the last slave descriptor closes: that is EOF.
        self._owner._on_eof()


class LocalShell(ShellTransport):
    """A shell process on this machine, on pipes (stdout and stderr merged) or a pty."""

    def __init__(
        self,
        shell: str | None = None,
        *,
        pty: bool = False,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self.shell = shell or default_shell()
        self.pty = pty
        self.description = "local"
        self._env = env
        self._cwd = cwd
        self._receiver: Receiver | None = None
        self._proc: asyncio.SubprocessTransport | None = None
        self._writer: asyncio.WriteTransport | None = None
        self._reader: asyncio.ReadTransport | None = None
        self._pgid = 0
        self._eof = False
        self._exited = asyncio.Event()
        self._reported = False
        self._closing = False
        self._finish_handle: asyncio.TimerHandle | None = None
        self._can_write = asyncio.Event()
        self._can_write.set()

    @property
    def pid(self) -> int:
        return self._pgid

    def _argv(self) -> list[str]:
        argv = [self.shell]
        if os.path.basename(self.shell) == "bash":
            argv += ["--noprofile", "--norc"]
        # On a terminal a shell turns interactive (job messages, prompts, "exit"),
        # unless it reads its commands as a script: /dev/stdin is the terminal.
        return [*argv, "/dev/stdin"] if self.pty else argv

    def _environ(self) -> dict[str, str]:
        env = dict(os.environ if self._env is None else self._env)
        env["PS1"] = ""
        if self.pty:
            env.setdefault("TERM", "xterm-256color")
        return env

    async def open(self, receiver: Receiver) -> None:
        self._receiver = receiver
        loop = asyncio.get_running_loop()
        try:
            if self.pty:
                await self._open_pty(loop)
            else:
                await self._open_pipes(loop)
        except BaseException as exc:
            if self._proc is not None:  # started, but its pipes could not be joined
                _killpg(self._proc.get_pid(), signal.SIGKILL)
                self._proc.close()
                self._proc = None
            if isinstance(exc, OSError):
                raise ConnectError("local", f"cannot start {self.shell}: {exc}") from exc
            raise
        assert self._proc is not None
        self._pgid = self._proc.get_pid()

    async def _open_pipes(self, loop: asyncio.AbstractEventLoop) -> None:
        # Pipes of our own (non-inheritable in this process; the child gets them
        # as 0, 1 and 2), read and written through the loop like a pty master.
        stdin_r, stdin_w = os.pipe()
        try:
            out_r, out_w = os.pipe()
        except BaseException:
            os.close(stdin_r)
            os.close(stdin_w)
            raise
        try:
            proc, _ = await loop.subprocess_exec(
                lambda: _ShellProtocol(self),
                *self._argv(),
                stdin=stdin_r,
                stdout=out_w,
                stderr=out_w,
                start_new_session=True,
                env=self._environ(),
                cwd=self._cwd,
            )
        except BaseException:
            os.close(stdin_w)
            os.close(out_r)
            raise
        finally:
            os.close(stdin_r)
            os.close(out_w)
        self._proc = proc
        await self._connect(loop, out_r, stdin_w)

    async def _connect(self, loop: asyncio.AbstractEventLoop, read_fd: int, write_fd: int) -> None:
        """Read the shell's output from ``read_fd`` and write its input to ``write_fd``."""
        reader_file = os.fdopen(read_fd, "rb", buffering=0)
        writer_file = os.fdopen(write_fd, "wb", buffering=0)
        try:
            reader, _ = await loop.connect_read_pipe(lambda: _Reader(self), reader_file)
        except BaseException:
            reader_file.close()
            writer_file.close()
            raise
        # asyncio's pipe transport reads `max_size` bytes at a time (where
        # another version has no such attribute, reads just stay large).
        reader.max_size = READ_SIZE  # type: ignore[attr-defined]
        self._reader = reader
        try:
            writer, _ = await loop.connect_write_pipe(lambda: _Writer(self), writer_file)
        except BaseException:
            writer_file.close()
            raise
        self._writer = writer

    async def _open_pty(self, loop: asyncio.AbstractEventLoop) -> None:
        master, slave = os.openpty()
        try:
            set_window_size(master, *PTY_SIZE)
            # setsid -c makes the shell a session leader with the pty as its
            # controlling terminal, as a login on a real terminal would be.
            proc, _ = await loop.subprocess_exec(
                lambda: _ShellProtocol(self),
                "setsid",
                "-c",
                *self._argv(),
                stdin=slave,
                stdout=slave,
                stderr=slave,
                env=self._environ(),
                cwd=self._cwd,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self._proc = proc
        self._master = master
        await self._connect(loop, master, os.dup(master))

    def resize(self, rows: int, cols: int) -> None:
        """Set the pty's window size (sends SIGWINCH to the foreground program)."""
        if self.pty and self._reader is not None:
            set_window_size(self._master, rows, cols)

    # --- events from below -------------------------------------------------

    def _receiver_data(self, data: bytes) -> None:
        if self._receiver is not None and not self._reported:
            self._receiver.data_received(data)

    def _on_eof(self) -> None:
        if self._eof:
            return
        self._eof = True
        if self._exited.is_set():
            self._finish()
        elif not self._closing:
            # The shell closed its output but lives on: it is of no use any more.
            asyncio.get_running_loop().call_later(_EXIT_GRACE, self._kill_if_alive)

    def _kill_if_alive(self) -> None:
        if not self._exited.is_set():
            _killpg(self._pgid, signal.SIGKILL)

    def _on_exit(self) -> None:
        self._exited.set()
        if self._eof:
            self._finish()
        elif not self._closing:
            self._finish_handle = asyncio.get_running_loop().call_later(
                _EOF_AFTER_EXIT, self._finish
            )
        # Whatever the shell left running in its group goes with it.
        _killpg(self._pgid, signal.SIGKILL)

    def _finish(self) -> None:
        status = self._proc.get_returncode() if self._proc is not None else None
        self.report_lost(status, f"shell exited with status {status}")

    # --- verbs ---------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._writer is not None and not self._writer.is_closing():
            self._writer.write(data)

    async def drain(self) -> None:
        # The loop pauses us when the pipe's buffer passes its high-water mark.
        await self._can_write.wait()

    async def interrupt(self, shell_pid: int | None) -> None:
        _killpg(self._pgid, signal.SIGINT)

    async def kill_children(self, shell_pid: int | None) -> None:
        if self._pgid > 0:
            kill_descendants(self._pgid)

    async def close(self) -> None:
        if self._proc is None or self._closing:
            return
        self._closing = True
        if self._finish_handle is not None:
            self._finish_handle.cancel()
        if self._writer is not None:
            self._writer.close()
        if self._reader is not None:
            self._reader.close()
        if not self._exited.is_set():
            if self.pty:
                _killpg(self._pgid, signal.SIGHUP)
            try:
                await asyncio.wait_for(self._exited.wait(), _EXIT_GRACE)
            except TimeoutError:
                _killpg(self._pgid, signal.SIGKILL)
                await self._exited.wait()
        _killpg(self._pgid, signal.SIGKILL)
        self._proc.close()

    def abandon(self) -> None:
        if self._proc is not None and not self._exited.is_set():
            _killpg(self._pgid, signal.SIGKILL)


def set_window_size(fd: int, rows: int, cols: int) -> None:
    """Tell a terminal its size (TIOCSWINSZ)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class _CollectProtocol(asyncio.SubprocessProtocol):
    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.exited = asyncio.Event()
        self.eof = asyncio.Event()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.chunks.append(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        self.eof.set()

    def process_exited(self) -> None:
        self.exited.set()


async def exec_local(
    command: str,
    *,
    shell: Sequence[str] = ("/bin/sh", "-c"),
    timeout: float | None = None,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> tuple[bytes, int | None, bool]:
    """Run ``command`` in a fresh shell process; return (output, exit status, timed out).

    stdout and stderr are merged; stdin is /dev/null. On timeout the process
    group gets SIGINT, then SIGKILL after a grace period. Anything the command
    left running in its group is killed when it exits.
    """
    loop = asyncio.get_running_loop()
    proc, proto = await loop.subprocess_exec(
        _CollectProtocol,
        *shell,
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=env,
        cwd=cwd,
    )
    pgid = proc.get_pid()
    timed_out = False
    try:
        try:
            if timeout is None:
                await proto.exited.wait()
            else:
                async with asyncio.timeout(timeout):
                    await proto.exited.wait()
        except TimeoutError:
            timed_out = True
            _killpg(pgid, signal.SIGINT)
            try:
                await asyncio.wait_for(proto.exited.wait(), _EXIT_GRACE)
            except TimeoutError:
                _killpg(pgid, signal.SIGKILL)
                await proto.exited.wait()
        if not proto.eof.is_set():
            _killpg(pgid, signal.SIGKILL)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proto.eof.wait(), _EOF_AFTER_EXIT)
    finally:
        if not proto.exited.is_set():
            _killpg(pgid, signal.SIGKILL)
        proc.close()
    return b"".join(proto.chunks), proc.get_returncode(), timed_out
