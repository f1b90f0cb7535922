"""RemoteHost over SSH against raw asyncssh, measured in the same run; prints ratios.

    python3 bench/bench_ssh.py [--quick]     (as root: starts its own sshd lab)

Every figure is the best of several repetitions (the machine is shared); the
baseline is asyncssh used directly on the same servers in the same run.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from otto.transports.sshlib import asyncssh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import pair

from otto import RemoteHost
from tests.lab import Lab
from tests.lab.hosts import ssh_nodes

QUICK = "--quick" in sys.argv
BIG = "head -c 10000000 /dev/zero | base64"
results: list[bool] = []


def row(name: str, mine: float, base: float, target: float, what: str = "raw asyncssh") -> None:
    ratio = mine / base
    ok = ratio <= target
    results.append(ok)
    print(
        f"{name:<36} otto {mine * 1e3:9.3f} ms   {what} {base * 1e3:9.3f} ms   "
        f"ratio {ratio:5.2f} (target <= {target})  {'ok' if ok else 'MISSED'}",
        flush=True,
    )


class RawShell:
    """Baseline: an asyncssh shell channel, read until a fixed marker."""

    def __init__(self, conn: asyncssh.SSHClientConnection) -> None:
        self.conn = conn
        self.proc: asyncssh.SSHClientProcess[bytes] | None = None

    async def start(self) -> None:
        self.proc = await self.conn.create_process(encoding=None, stderr=asyncssh.STDOUT)

    async def run(self, cmd: str) -> bytes:
        assert self.proc is not None
        self.proc.stdin.write(f"{cmd}; echo __RAW_MARK__\n".encode())
        # readuntil gives up once the channel's buffer fills (13.5 MB): read in
        # chunks and look for the marker in what is new, as a careful user would.
        chunks: list[bytes] = []
        tail = b""
        while True:
            data = await self.proc.stdout.read(1 << 20)
            if not data:
                raise EOFError("shell closed")
            chunks.append(data)
            if b"__RAW_MARK__\n" in tail + data[:20] or b"__RAW_MARK__\n" in data:
                return b"".join(chunks)
            tail = data[-20:]

    def close(self) -> None:
        assert self.proc is not None
        self.proc.close()


def options(lab: Lab, name: str) -> dict[str, object]:
    spec = lab.host(name)
    return {
        "port": spec.port,
        "username": spec.user,
        "client_keys": [str(spec.key_path)],
        "known_hosts": str(lab.known_hosts),
    }


def otto_host(lab: Lab, name: str) -> RemoteHost:
    spec = lab.host(name)
    return RemoteHost(
        spec.address,
        user=spec.user,
        key=spec.key_path,
        port=spec.port,
        known_hosts=lab.known_hosts,
        name=name,
    )


async def single_host(lab: Lab) -> None:
    name = "h1"
    conn = await asyncssh.connect(lab.host(name).address, **options(lab, name))  # type: ignore[arg-type]
    raw = RawShell(conn)
    await raw.start()
    host = otto_host(lab, name)
    await host.run("true")
    n = 200 if QUICK else 1000

    await raw.run("true")
    base, mine = await pair(lambda: raw.run("true"), lambda: host.run("true"), n)
    row('run("true"), warm session', mine, base, 1.3)

    async def raw_channel() -> None:
        shell = RawShell(conn)
        await shell.start()
        await shell.run("true")
        shell.close()

    async def otto_channel() -> None:
        s = await host.open_session("bench")
        await s.run("true")
        await s.close()

    m = 30 if QUICK else 100
    base, mine = await pair(raw_channel, otto_channel, m)
    row("open_session + first run (+close)", mine, base, 1.3)

    base, mine = await pair(lambda: conn.run("true"), lambda: host.oneshot("true"), m)
    row('oneshot("true") vs conn.run', mine, base, 1.2)

    reps = 2 if QUICK else 4
    expected = (await host.oneshot(BIG)).output

    async def otto_big() -> None:
        assert (await host.run(BIG)).only.output == expected

    base, mine = await pair(lambda: raw.run(BIG), otto_big, 1, reps)
    row("run(13.5 MB output)", mine, base, 1.5)

    # 100 MB file both ways over SFTP.
    size = (20 if QUICK else 100) * 1024 * 1024
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "big.bin"
        src.write_bytes(os.urandom(size))
        remote = (await host.run("mktemp -d")).only.output

        async def raw_put() -> None:
            async with conn.start_sftp_client() as sftp:
                await sftp.put(str(src), remote + "/raw.bin")

        async def otto_put() -> None:
            r = await host.put(src, remote)
            assert r.is_ok, r.error

        base, mine = await pair(raw_put, otto_put, 1, 3)
        print(
            f"  put {size >> 20} MB: otto {size / mine / 1e6:7.1f} MB/s, "
            f"raw {size / base / 1e6:7.1f} MB/s"
        )
        row(f"put {size >> 20} MB (time)", mine, base, 1.25)
        back = Path(tmp) / "back"
        back.mkdir()

        async def raw_get() -> None:
            async with conn.start_sftp_client() as sftp:
                await sftp.get(remote + "/big.bin", str(back / "raw.bin"))

        async def otto_get() -> None:
            r = await host.get(remote + "/big.bin", back)
            assert r.is_ok, r.error

        base, mine = await pair(raw_get, otto_get, 1, 3)
        print(
            f"  get {size >> 20} MB: otto {size / mine / 1e6:7.1f} MB/s, "
            f"raw {size / base / 1e6:7.1f} MB/s"
        )
        row(f"get {size >> 20} MB (time)", mine, base, 1.25)
        await host.run(f"rm -rf {remote}")
    raw.close()
    conn.close()
    await host.close()


async def fleet(lab: Lab, count: int) -> None:
    names = [f"h{i}" for i in range(1, count + 1)]

    # Cold: connect and run one command on every host.
    async def raw_cold() -> list[asyncssh.SSHClientConnection]:
        async def one(name: str) -> asyncssh.SSHClientConnection:
            conn = await asyncssh.connect(lab.host(name).address, **options(lab, name))  # type: ignore[arg-type]
            shell = RawShell(conn)
            await shell.start()
            await shell.run("true")
            return conn

        return await asyncio.gather(*(one(n) for n in names))

    async def otto_cold() -> list[RemoteHost]:
        hosts = [otto_host(lab, n) for n in names]
        await asyncio.gather(*(h.run("true") for h in hosts))
        return hosts

    base_cold, mine_cold = [], []
    for _ in range(2 if QUICK else 3):
        t0 = time.perf_counter()
        conns = await raw_cold()
        base_cold.append(time.perf_counter() - t0)
        for c in conns:
            c.close()
        t0 = time.perf_counter()
        hosts = await otto_cold()
        mine_cold.append(time.perf_counter() - t0)
        await asyncio.gather(*(h.close() for h in hosts))
    row(f"{count} hosts cold (connect + run)", min(mine_cold), min(base_cold), 1.1)

    # Warm: the connections and shells are open.
    conns = await asyncio.gather(
        *(asyncssh.connect(lab.host(n).address, **options(lab, n)) for n in names)  # type: ignore[arg-type]
    )
    shells = [RawShell(c) for c in conns]
    await asyncio.gather(*(s.start() for s in shells))
    hosts = [otto_host(lab, n) for n in names]
    await asyncio.gather(*(h.run("true") for h in hosts))

    async def raw_warm() -> None:
        await asyncio.gather(*(s.run("true") for s in shells))

    async def otto_warm() -> None:
        await asyncio.gather(*(h.run("true") for h in hosts))

    base, mine = await pair(raw_warm, otto_warm, 20 if QUICK else 50)
    row(f"{count} hosts warm (one run each)", mine, base, 1.2)
    for s in shells:
        s.close()
    for c in conns:
        c.close()
    await asyncio.gather(*(h.close() for h in hosts))


async def main() -> int:
    count = 20 if QUICK else 50
    async with Lab(ssh_nodes(count)) as lab:
        print(f"lab: {count} sshd hosts ({'namespaces' if lab.uses_netns else 'loopback'})")
        await single_host(lab)
        await fleet(lab, count)
    print(f"load {os.getloadavg()[0]:.2f}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
