"""App.cmd against the same program driven raw, measured in the same run.

    python3 bench/bench_app.py [--quick]

A round trip on a local Python REPL (``cmd("1")``) beside the floor: the same
exchange with ``python3 -i -q`` on the same kind of line, driven raw (write the
line, read until the prompt): an asyncio pipe for the pipe row, a
pseudo-terminal of its own for the pty row (a pty echoes, and the REPL uses
readline there: a raw pipe was no floor for it). Then a real U-Boot's
``version`` (QEMU, its serial console on TCP, reached through socat as in the
tests), beside the same exchange on a raw TCP connection. Each figure is the
best of alternating batches; the whole set runs unpinned and then pinned to one
CPU (with the programs it starts).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from common import best, pair

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otto import App, LocalHost
from tests.lab.uboot import UBoot, uboot_missing

QUICK = "--quick" in sys.argv
PROMPT = b">>> "


class RawRepl:
    """The floor: ``python3 -i -q`` on asyncio pipes, read until its prompt."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "python3",
            "-i",
            "-q",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert self.proc.stdout
        await self.proc.stdout.readuntil(PROMPT)

    async def cmd(self, line: str) -> bytes:
        assert self.proc and self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(line.encode() + b"\n")
        return await self.proc.stdout.readuntil(PROMPT)

    async def close(self) -> None:
        assert self.proc and self.proc.stdin
        self.proc.stdin.close()
        await self.proc.wait()


class RawPtyRepl(RawRepl):
    """The floor of the pty row: ``python3 -i -q`` on a pseudo-terminal of its own.

    The same program on the same kind of line as otto's pty session (the
    terminal's echo, readline, TERM as otto sets it), read until its prompt.
    """

    def __init__(self) -> None:
        super().__init__()
        self.master = -1
        self.reader: asyncio.StreamReader | None = None

    async def start(self) -> None:
        master, slave = os.openpty()
        self.proc = await asyncio.create_subprocess_exec(
            "python3",
            "-i",
            "-q",
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            env={**os.environ, "TERM": os.environ.get("TERM", "xterm-256color")},
        )
        os.close(slave)
        self.master = master
        self.reader = asyncio.StreamReader(limit=1 << 20)
        reader = self.reader
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(master, "rb", buffering=0)
        )
        await reader.readuntil(PROMPT)

    async def cmd(self, line: str) -> bytes:
        assert self.reader is not None
        os.write(self.master, line.encode() + b"\n")
        return await self.reader.readuntil(PROMPT)

    async def close(self) -> None:
        assert self.proc
        self.proc.kill()
        await self.proc.wait()


def row(name: str, otto_s: float, base_s: float, base_name: str, target: float | None) -> bool:
    ratio = otto_s / base_s
    ok = target is None or ratio <= target
    verdict = f"(target <= {target})  {'ok' if ok else 'MISSED'}" if target else "(no target)"
    print(
        f"  {name:<30} otto {otto_s * 1e3:8.3f} ms   {base_name} {base_s * 1e3:8.3f} ms   "
        f"ratio {ratio:5.2f} {verdict}"
    )
    return ok


async def raw_one(raw: RawRepl) -> None:
    assert await raw.cmd("1") == b"1\n>>> "


async def raw_pty_one(raw: RawPtyRepl) -> None:
    out = await raw.cmd("1")
    assert b"1\r\n" in out and out.endswith(PROMPT), out


async def app_one(app: App) -> None:
    assert await app.cmd("1") == "1"


async def repl_rows(n: int) -> list[bool]:
    raw = RawRepl()
    await raw.start()
    raw_pty = RawPtyRepl()
    await raw_pty.start()
    results = []
    async with LocalHost() as host:
        for pty in (True, False):
            async with host.open_app("python3 -i -q", r">>> ", pty=pty) as app:
                if pty:
                    b, m = await pair(lambda: raw_pty_one(raw_pty), lambda app=app: app_one(app), n)
                    results.append(row('cmd("1"), REPL, pty (default)', m, b, "raw pty ", 1.3))
                else:
                    b, m = await pair(lambda: raw_one(raw), lambda app=app: app_one(app), n)
                    results.append(row('cmd("1"), REPL, pipe', m, b, "raw pipe", 1.3))
    await raw.close()
    await raw_pty.close()
    return results


async def uboot_row(n: int) -> None:
    missing = uboot_missing()
    if missing:
        print(f"  U-Boot skipped: {missing}")
        return
    async with UBoot() as board, LocalHost() as host:
        async with host.open_app(f"socat - TCP:{board.address}", r"=> ", timeout=20) as app:

            async def mine() -> None:
                assert "U-Boot 2023.01" in await app.cmd("version")

            await mine()
            # The raw exchange needs the console, which socat holds: one after the other.
            m = await best(mine, n, 3)
        reader, writer = await asyncio.open_connection("127.0.0.1", board.port)

        async def base() -> None:
            writer.write(b"version\n")
            out = await reader.readuntil(b"\n=> ")
            assert b"U-Boot 2023.01" in out

        await base()
        b = await best(base, n, 3)
        writer.close()
        row('cmd("version"), U-Boot', m, b, "raw TCP ", None)


async def section(title: str) -> list[bool]:
    print(title)
    n = 200 if QUICK else 2000
    results = await repl_rows(n)
    await uboot_row(50 if QUICK else 300)
    return results


async def main() -> int:
    results = await section("unpinned")
    if hasattr(os, "sched_setaffinity"):
        # One CPU for this process and the programs it starts (they inherit it).
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        results += await section("pinned to one CPU")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
