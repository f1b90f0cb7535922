"""Serial consoles for the tests: socat pseudo-terminals with a real ``login`` or
a busybox ``sh`` on the device side, served on TCP ports by ser2net.

::

    otto --TCP--> ser2net --/dev/pts/A--> socat --/dev/pts/B--> getty loop: /bin/login, bash
                                                              or busybox sh (no login)

``async with ConsoleLab() as consoles:`` starts every console and ser2net and
returns once each device exists and ser2net listens; leaving stops them all
(no socat, ser2net, login or shell is left behind). ``consoles.add(...)``
starts one more console (a test that spoils its console's state).

A serial host opens a device (``Console.device``) directly. A test plays the
device's kernel by writing to the shell's terminal (``Console.tty()``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .procs import descendants, signal_all, wait_gone
from .users import ensure_users

__all__ = ["Console", "ConsoleLab", "consoles_missing"]

_GETTY = """#!/bin/sh
# What getty does on a real console: a login, then another when it ends.
# Ctrl-C ends a login, never this loop (a handler, unlike an ignored signal,
# is not inherited: login and the shells get the default).
trap : INT QUIT
while :; do /bin/login; done
"""

_READY_TIMEOUT = 10.0


def consoles_missing() -> str | None:
    """Why the consoles cannot run here (for a skip), or None."""
    if os.geteuid() != 0:
        return "the console lab needs root (/bin/login)"
    for tool in ("ser2net", "socat", "busybox"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/install-system-deps)"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` (read from /proc: no connection made,
    so no console output is consumed)."""
    want = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return False
    return any(line.split()[1] == want and line.split()[3] == "0A" for line in lines)


async def _until(check: object, what: str) -> None:
    assert callable(check)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _READY_TIMEOUT
    while not check():
        if loop.time() > deadline:
            raise TimeoutError(f"console lab: {what} not ready within {_READY_TIMEOUT:g}s")
        await asyncio.sleep(0.01)


@dataclass
class Console:
    """One console: a device (pty) and, when served, a ser2net TCP port."""

    name: str
    device: str
    login: bool
    protocol: str = ""  # "telnet", "raw", or "" (not served: a serial line)
    port: int = 0
    proc: asyncio.subprocess.Process | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def shell_pids(self) -> list[int]:
        """The processes on the device side (getty loop, login, shells, their commands)."""
        return descendants(self.proc.pid) if self.proc is not None else []

    def tty(self) -> str:
        """The terminal the device side runs on (what its kernel would print to)."""
        for pid in self.shell_pids():
            try:
                path = os.readlink(f"/proc/{pid}/fd/0")
            except OSError:
                continue
            if path.startswith("/dev/pts/"):
                return path
        raise LookupError(f"console {self.name}: no process on a terminal")


class ConsoleLab:
    """The consoles the tests use, and ser2net serving them."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="otto-consoles-"))
        self.consoles: dict[str, Console] = {}
        self._servers: list[asyncio.subprocess.Process] = []
        self._extra: list[Console] = []

    def __getitem__(self, name: str) -> Console:
        return self.consoles[name]

    async def __aenter__(self) -> ConsoleLab:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        await asyncio.to_thread(ensure_users, self.dir / "state")
        getty = self.dir / "getty.sh"
        getty.write_text(_GETTY)
        getty.chmod(0o755)
        # login on a telnet port (the usual ser2net set-up), a shell with no login
        # on a raw port, and two serial lines opened directly (one spare).
        for console in (
            Console("login", str(self.dir / "login"), True, "telnet", _free_port()),
            Console("shell", str(self.dir / "shell"), False, "raw", _free_port()),
            Console("serial", str(self.dir / "serial"), True),
            Console("serial-shell", str(self.dir / "serial-shell"), False),
        ):
            await self._start_device(console)
            self.consoles[console.name] = console
        for console in self.consoles.values():
            await _until(lambda c=console: os.path.exists(c.device), f"{console.name} device")
        await self._serve(list(self.consoles.values()))

    async def add(self, name: str, *, login: bool = True, protocol: str = "telnet") -> Console:
        """One more console on a ser2net of its own (stopped with the lab)."""
        console = Console(name, str(self.dir / name), login, protocol, _free_port())
        await self._start_device(console)
        self._extra.append(console)
        await _until(lambda: os.path.exists(console.device), f"{name} device")
        await self._serve([console], config=self.dir / f"ser2net-{name}.yaml")
        return console

    async def unplug(self, console: Console) -> None:
        """End ``console``'s socat and shell: its device disappears (a USB adapter unplugged)."""
        assert console.proc is not None
        pids = [console.proc.pid, *descendants(console.proc.pid)]
        signal_all(pids, signal.SIGKILL)
        await console.proc.wait()
        left = await wait_gone(pids, 5.0)
        if left:
            raise RuntimeError(f"console lab: processes {left} survived SIGKILL")

    async def _start_device(self, console: Console) -> None:
        program = str(self.dir / "getty.sh") if console.login else "busybox sh"
        console.proc = await asyncio.create_subprocess_exec(
            "socat",
            f"pty,raw,echo=0,link={console.device}",
            f"EXEC:{program},pty,setsid,ctty,stderr",
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PS1": "console$ ", "ENV": ""},
        )

    async def _serve(self, consoles: list[Console], config: Path | None = None) -> None:
        served = [c for c in consoles if c.protocol]
        if not served:
            return
        lines = []
        for i, console in enumerate(served):
            accepter = "telnet(rfc2217),tcp" if console.protocol == "telnet" else "tcp"
            lines += [
                f"connection: &con{i}",
                f"  accepter: {accepter},127.0.0.1,{console.port}",
                f"  connector: serialdev,{console.device},115200n81,local",
                "  options:",
                "    kickolduser: true",
            ]
        path = config or self.dir / "ser2net.yaml"
        path.write_text("\n".join(lines) + "\n")
        proc = await asyncio.create_subprocess_exec(
            *("ser2net", "-n", "-d", "-c", str(path), "-P", str(path.with_suffix(".pid"))),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._servers.append(proc)
        for console in served:
            await _until(lambda c=console: _listening(c.port), f"ser2net on {console.port}")

    async def stop(self) -> None:
        procs = list(self._servers)
        for console in [*self.consoles.values(), *self._extra]:
            if console.proc is not None:
                procs.append(console.proc)
        pids: list[int] = []
        for proc in procs:
            pids += [proc.pid, *descendants(proc.pid)]
        signal_all(pids, signal.SIGKILL)
        for proc in procs:
            await proc.wait()
        left = await wait_gone(pids, 5.0)
        shutil.rmtree(self.dir, ignore_errors=True)
        if left:
            raise RuntimeError(f"console lab: processes {left} survived SIGKILL")
