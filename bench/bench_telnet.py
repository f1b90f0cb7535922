"""RemoteHost over Telnet against a raw telnetlib3 client, measured in the same run.

    python3 bench/bench_telnet.py [--quick]     (as root: starts its own telnetd lab)

The floor is telnetlib3 used directly on the same busybox telnetd: log in, start
a non-interactive inner bash on the terminal (as otto does), turn echo off, then
write each command with a marker and read until the marker. Every figure is the
best of several repetitions, batches alternating (the machine is shared).
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import telnetlib3

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import pair

from otto import RemoteHost
from tests.lab import Lab
from tests.lab.hosts import LabHost, NodeSpec

QUICK = "--quick" in sys.argv
NODES = (NodeSpec("telnet1", None, (("telnet1", "telnet"),)),)
results: list[bool] = []


def row(name: str, mine: float, base: float, target: float) -> None:
    ratio = mine / base
    ok = ratio <= target
    results.append(ok)
    print(
        f"{name:<36} otto {mine * 1e3:9.3f} ms   raw telnetlib3 {base * 1e3:9.3f} ms   "
        f"ratio {ratio:5.2f} (target <= {target})  {'ok' if ok else 'MISSED'}",
        flush=True,
    )


class RawTelnet:
    """The floor: a telnetlib3 client driving a non-interactive bash on the terminal."""

    MARK = b"__RAW_MARK__"

    def __init__(self, spec: LabHost) -> None:
        self.spec = spec
        self.reader: telnetlib3.TelnetReader | None = None
        self.writer: telnetlib3.TelnetWriter | None = None

    async def _until(self, needle: bytes) -> bytes:
        assert self.reader is not None
        seen = b""
        while needle not in seen[-(len(needle) + 65536) :]:
            data = await self.reader.read(65536)
            if not data:
                raise EOFError("telnet closed")
            seen += data
        return seen

    async def start(self) -> None:
        self.reader, self.writer = await telnetlib3.open_connection(
            self.spec.address,
            self.spec.port,
            encoding=False,
            force_binary=True,
            connect_minwait=0.0,
            connect_maxwait=0.5,
        )
        await self._until(b"login: ")
        self.writer.write(self.spec.user.encode() + b"\r")
        await self._until(b"assword: ")
        self.writer.write(self.spec.password.encode() + b"\r")
        await self._until(b"$ ")
        self.writer.write(b"stty -echo; exec bash --noprofile --norc /dev/stdin\r")
        # The login shell's line editor may swallow what is typed ahead of the
        # exec: ask until the inner bash answers (quotes keep the echo from matching).
        while True:
            self.writer.write(b"echo __RAW_''MARK__\r")
            try:
                async with asyncio.timeout(0.5):
                    await self._until(self.MARK + b"\r\n")
                    break
            except TimeoutError:
                continue
        # A last, distinct marker comes after the answers to earlier attempts.
        self.writer.write(b"echo __RAW_''MARK__ END\r")
        await self._until(self.MARK + b" END")

    async def run(self, cmd: str) -> bytes:
        assert self.writer is not None
        self.writer.write(f"{cmd}; echo __RAW_MARK__\r".encode())
        return await self._until(self.MARK)

    def close(self) -> None:
        assert self.writer is not None
        self.writer.close()


async def main() -> int:
    async with Lab(NODES) as lab:
        spec = lab.host("telnet1")
        print(f"lab: busybox telnetd ({'namespace' if lab.uses_netns else 'loopback'})")
        raw = RawTelnet(spec)
        await raw.start()
        host = RemoteHost(
            spec.address,
            user=spec.user,
            password=spec.password,
            port=spec.port,
            term="telnet",
            name="telnet1",
        )
        await host.run("true")
        await raw.run("true")
        n = 200 if QUICK else 1000
        base, mine = await pair(lambda: raw.run("true"), lambda: host.run("true"), n, 7)
        row('run("true"), warm session', mine, base, 1.2)

        big = "head -c 3000000 /dev/zero | base64"
        expected = (await host.run(big)).only.output

        async def otto_big() -> None:
            assert (await host.run(big)).only.output == expected

        base, mine = await pair(lambda: raw.run(big), otto_big, 1, 3 if QUICK else 5)
        row("run(4 MB output)", mine, base, 1.5)
        raw.close()
        await host.close()
    print(f"load {os.getloadavg()[0]:.2f}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
