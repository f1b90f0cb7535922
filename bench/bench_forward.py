"""host.forward against OpenSSH ``ssh -L`` over the same two hops, measured in the same run.

    python3 bench/bench_forward.py [--quick] [--profile]     (as root: starts its own lab)

A server on the innermost host (two hops behind the first, each a network
namespace) writes SIZE bytes of zeros to each connection; a client process
here reads them through the forward, and times it from connect to EOF. The
same client reads through ``otto``'s ``host.forward`` and through ``ssh -L``
with ``-J`` over the same hops, the runs alternating; the best of each is kept.
The ratio printed is otto's throughput over OpenSSH's (target >= 0.8).

``--profile`` runs one more otto transfer under cProfile and prints the
functions that took the most time.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otto import RemoteHost
from tests.lab import Lab
from tests.lab.hosts import NodeSpec

QUICK = "--quick" in sys.argv
PROFILE = "--profile" in sys.argv
SIZE = (50 if QUICK else 200) * 1000 * 1000
REPS = 3 if QUICK else 5
TARGET = 0.8

NODES = (
    NodeSpec("jump1", None, (("jump1", "ssh"),)),
    NodeSpec("jump2", "jump1", (("jump2", "ssh"),)),
    NodeSpec("inside", "jump2", (("inside", "ssh"),)),
)

SERVER = r"""
import socket, sys
size = int(sys.argv[1])
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(16)
print(srv.getsockname()[1], flush=True)
chunk = memoryview(bytes(1 << 20))
while True:
    conn, _ = srv.accept()
    try:
        left = size
        while left > 0:
            n = min(left, len(chunk))
            conn.sendall(chunk[:n])
            left -= n
    except OSError:
        pass
    finally:
        conn.close()
"""

CLIENT = r"""
import socket, sys, time
buf = bytearray(1 << 20)
start = time.perf_counter()
sock = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
got = 0
while True:
    n = sock.recv_into(buf)
    if not n:
        break
    got += n
print(got, time.perf_counter() - start)
"""


def tree_cpu(pid: int) -> float:
    """CPU seconds used so far by process ``pid`` and its descendants (from /proc)."""
    total = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        todo.extend(int(child) for child in children)
    return total


def in_netns(lab: Lab, name: str, argv: list[str]) -> list[str]:
    netns = lab.netns(name)
    return argv if netns is None else ["ip", "netns", "exec", netns, *argv]


async def fetch(port: int) -> float:
    """Seconds the client process takes to read SIZE bytes through 127.0.0.1:``port``."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CLIENT, str(port), stdout=subprocess.PIPE
    )
    out, _ = await proc.communicate()
    got, seconds = out.split()
    if int(got) != SIZE:
        raise RuntimeError(f"read {int(got)} bytes through port {port}, not {SIZE}")
    return float(seconds)


def host_of(lab: Lab, name: str) -> RemoteHost:
    hop: RemoteHost | None = None
    for spec in [*lab.hop_chain(name), lab.host(name)]:
        hop = RemoteHost(
            spec.address,
            user=spec.user,
            key=spec.key_path,
            port=spec.port,
            hop=hop,
            known_hosts=lab.known_hosts,
            name=spec.name,
        )
    assert hop is not None
    return hop


@asynccontextmanager
async def openssh_forward(
    lab: Lab, name: str, target: str, workdir: Path
) -> AsyncIterator[tuple[int, int]]:
    """``ssh -N -L`` with ``-J`` through the same hops; yields its local port and its pid."""
    config = workdir / "ssh_config"
    spec = lab.host(name)
    config.write_text(
        "Host *\n"
        f"  User {spec.user}\n"
        f"  IdentityFile {spec.key_path}\n"
        "  IdentitiesOnly yes\n"
        f"  UserKnownHostsFile {lab.known_hosts}\n"
        "  StrictHostKeyChecking yes\n"
        "  BatchMode yes\n"
        "  ExitOnForwardFailure yes\n"
    )
    jumps = ",".join(f"{h.user}@{h.address}:{h.port}" for h in lab.hop_chain(name))
    with tempfile.TemporaryDirectory() as tmp:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        argv = [
            "ssh",
            "-v",
            "-F",
            str(config),
            "-N",
            "-L",
            f"127.0.0.1:{port}:{target}",
            "-J",
            jumps,
            "-p",
            str(spec.port),
            f"{spec.user}@{spec.address}",
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=tmp
        )
        assert proc.stderr is not None
        seen = b""
        try:
            while b"Local forwarding listening on" not in seen:
                line = await asyncio.wait_for(proc.stderr.readline(), 30)
                if not line:
                    raise RuntimeError(f"{shlex.join(argv)} failed:\n{seen.decode()}")
                seen += line
            drain = asyncio.ensure_future(proc.stderr.read())  # keep its pipe from filling
            yield port, proc.pid
        finally:
            proc.terminate()
            await proc.wait()
        drain.cancel()


async def main() -> int:
    async with Lab(NODES) as lab:
        chain = " -> ".join(h.name for h in [*lab.hop_chain("inside"), lab.host("inside")])
        mode = "namespaces" if lab.uses_netns else "loopback"
        print(f"lab: {chain} ({mode}); {SIZE / 1e6:.0f} MB per transfer, best of {REPS}")
        server = await asyncio.create_subprocess_exec(
            *in_netns(lab, "inside", [sys.executable, "-c", SERVER, str(SIZE)]),
            stdout=subprocess.PIPE,
        )
        assert server.stdout is not None
        target = f"127.0.0.1:{int(await server.stdout.readline())}"
        host = host_of(lab, "inside")
        try:
            with tempfile.TemporaryDirectory() as tmp:
                async with (
                    host.forward(0, target) as forward,
                    openssh_forward(lab, "inside", target, Path(tmp)) as (ssh_port, ssh_pid),
                ):
                    await fetch(forward.port)  # warm both: channel windows, caches
                    await fetch(ssh_port)
                    mine: list[float] = []
                    base: list[float] = []
                    mine_cpu: list[float] = []
                    base_cpu: list[float] = []
                    for _ in range(REPS):
                        used = tree_cpu(ssh_pid)
                        base.append(await fetch(ssh_port))
                        base_cpu.append(tree_cpu(ssh_pid) - used)
                        used = time.process_time()
                        mine.append(await fetch(forward.port))
                        mine_cpu.append(time.process_time() - used)
                    if PROFILE:
                        await profile(forward.port)
        finally:
            await host.close()
            server.kill()
            await server.wait()
    otto_rate = SIZE / min(mine) / 1e6
    ssh_rate = SIZE / min(base) / 1e6
    ratio = otto_rate / ssh_rate
    ok = ratio >= TARGET
    print(
        f"{'forward, 2 hops, ' + f'{SIZE / 1e6:.0f} MB':<32} otto {otto_rate:8.1f} MB/s   "
        f"ssh -L -J {ssh_rate:8.1f} MB/s   ratio {ratio:5.2f} (target >= {TARGET})  "
        f"{'ok' if ok else 'MISSED'}"
    )
    print(
        "  each run, MB/s: otto "
        + " ".join(f"{SIZE / s / 1e6:.0f}" for s in mine)
        + "; ssh "
        + " ".join(f"{SIZE / s / 1e6:.0f}" for s in base)
    )
    per = 100e6 / SIZE
    print(
        f"  CPU per 100 MB here (best run): otto {min(mine_cpu) * per:.2f} s (one process), "
        f"ssh -L -J {min(base_cpu) * per:.2f} s (its processes, one per hop)"
    )
    print(f"load {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


async def profile(port: int) -> None:
    """One more otto transfer under cProfile: the functions that took the most time."""
    import cProfile
    import io
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    await fetch(port)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    print("profile of one otto transfer (cProfile, by own time):")
    print("\n".join(lines[:35]))


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
