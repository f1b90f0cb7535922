"""Console hosts (ser2net, telnet protocol, a real login) against a raw socket, in one run.

    python3 bench/bench_console.py [--quick]     (as root: starts its own consoles)

Two consoles of the same make (socat pty, /bin/login, bash, served by ser2net
with the Telnet protocol): otto drives one, the floor the other, since a
console takes one client at a time. The floor is a plain socket: log in, start
a non-interactive inner bash with echo off (as otto does), then write each
command with a marker and read until the marker. Capture is measured on one
host, ``console_log`` switched on and off between batches. Every figure is the
best of several batches, alternating (the machine is shared); the set runs
unpinned, then pinned to one CPU (with ser2net, socat and the shells).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import pair

from otto import RemoteHost
from otto.hosts.console import ConsoleConnection
from otto.transports.console import ConsoleLog
from tests.lab.console import Console, ConsoleLab
from tests.lab.users import LAB_PASSWORD, LAB_USER

QUICK = "--quick" in sys.argv
results: list[bool] = []


def row(name: str, mine: float, base: float, floor: str, target: float) -> None:
    ratio = mine / base
    ok = ratio <= target
    results.append(ok)
    print(
        f"  {name:<34} otto {mine * 1e3:9.3f} ms   {floor} {base * 1e3:9.3f} ms   "
        f"ratio {ratio:5.3f} (target <= {target})  {'ok' if ok else 'MISSED'}",
        flush=True,
    )


class RawConsole:
    """The floor: a socket to ser2net, a login, a non-interactive bash, a marker per command."""

    MARK = b"__RAW_MARK__"

    def __init__(self, console: Console) -> None:
        self.console = console
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def _until(self, needle: bytes) -> bytes:
        assert self.reader is not None
        return await self.reader.readuntil(needle)

    async def start(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            "127.0.0.1", self.console.port, limit=1 << 26
        )
        await self._until(b"login: ")  # printed before we came, delivered on connect
        self.writer.write(LAB_USER.encode() + b"\r")
        await self._until(b"assword: ")
        self.writer.write(LAB_PASSWORD.encode() + b"\r")
        await self._until(b"$ ")
        self.writer.write(b"stty -echo; exec bash --noprofile --norc /dev/stdin\r")
        # Typed-ahead lines may go to the login shell's line editor: ask until
        # the inner bash answers (quotes keep the echo from matching).
        while True:
            self.writer.write(b"echo __RAW_''MARK__\r")
            try:
                async with asyncio.timeout(0.5):
                    await self._until(self.MARK + b"\r\n")
                    break
            except TimeoutError:
                continue
        self.writer.write(b"echo __RAW_''MARK__ END\r")
        await self._until(self.MARK + b" END")

    async def run(self, cmd: str) -> bytes:
        assert self.writer is not None
        self.writer.write(f"{cmd}; echo __RAW_MARK__\r".encode())
        return await self._until(self.MARK)

    def close(self) -> None:
        assert self.writer is not None
        self.writer.close()


async def section(title: str, host: RemoteHost, raw: RawConsole, log: ConsoleLog) -> None:
    print(title, flush=True)
    n = 200 if QUICK else 1000
    base, mine = await pair(lambda: raw.run("true"), lambda: host.run("true"), n, 7)
    row('run("true"), warm session', mine, base, "raw socket", 1.3)

    big = "head -c 7500000 /dev/zero | base64 -w 0"  # 10 MB, one line
    link = host.connection.link  # type: ignore[attr-defined]

    async def stream() -> None:
        out = (await host.run(big)).only
        assert len(out.output) == 10_000_000

    async def plain() -> None:
        link._log = None  # the bench switches capture off and on; nothing else does
        await stream()

    async def captured() -> None:
        link._log = log
        await stream()

    base, mine = await pair(plain, captured, 1, 3 if QUICK else 7)
    row("run(10 MB), console_log on", mine, base, "log off   ", 1.05)
    link._log = log


def pin_everything(lab: ConsoleLab) -> None:
    cpu = {min(os.sched_getaffinity(0))}
    os.sched_setaffinity(0, cpu)
    for console in lab.consoles.values():
        assert console.proc is not None
        for pid in [console.proc.pid, *console.shell_pids()]:
            os.sched_setaffinity(pid, cpu)
    for server in lab._servers:
        os.sched_setaffinity(server.pid, cpu)


async def main() -> int:
    capture = Path(tempfile.mkdtemp(prefix="otto-bench-console-")) / "console.log"
    async with ConsoleLab() as lab:
        twin = await lab.add("bench-raw")
        raw = RawConsole(twin)
        await raw.start()
        host = RemoteHost(
            lab["login"].address,
            term="console",
            user=LAB_USER,
            password=LAB_PASSWORD,
            name="console1",
            console_log=capture,
        )
        await host.run("true")
        connection = host.connection
        assert isinstance(connection, ConsoleConnection)
        log = connection.link._log
        assert log is not None
        await section("unpinned", host, raw, log)
        if hasattr(os, "sched_setaffinity"):
            pin_everything(lab)
            await section("pinned to one CPU", host, raw, log)
        raw.close()
        await host.close()
        print(f"  console_log: {capture.stat().st_size / 1e6:.1f} MB written")
    capture.unlink()
    capture.parent.rmdir()
    print(f"load {os.getloadavg()[0]:.2f}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
