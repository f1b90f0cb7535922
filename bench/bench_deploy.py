"""A TFTP load with ``host.deploy`` beside the ``tftp`` client (tftp-hpa) on the same file.

    python3 bench/bench_deploy.py [--quick] [--mib N]

Needs root (network namespaces), qemu-system-arm, u-boot-qemu and tftp-hpa;
tftpd-hpa for the second part. The figures, each the best of alternating rounds:

1. the load: ``host.deploy(image, via="tftp", force=True)`` into a real U-Boot
   (QEMU qemu_arm, user networking in a namespace), whole (console, checks,
   ``crc32`` on the board) and its ``tftpboot`` alone, beside the ``tftp``
   client fetching the same file from the same server over the same veth;
2. otto's server (on the event loop) beside tftpd-hpa (``in.tftpd``), both
   fetched by the ``tftp`` client on loopback: what the server costs.

The target: the load runs at >= 80 % of the client's rate (ratio >= 0.80).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otto import RemoteHost
from otto.hosts.deploy import DeployResult
from otto.hosts.deploy.image import read_image
from otto.hosts.deploy.tftp import TftpServer, served_name
from otto.reservations.sqlite import SQLiteStore
from tests.lab.uboot import uboot_missing
from tests.lab.uboot_net import BOARD_IP, UBootNet

QUICK = "--quick" in sys.argv
MIB = int(sys.argv[sys.argv.index("--mib") + 1]) if "--mib" in sys.argv else (2 if QUICK else 8)
ROUNDS = 2 if QUICK else 5
ADDRESS = 0x40200000
PROMPT = r"(?m)^=> "  # at a line's start: crc32 prints "==> " before its sum


async def tftp_client(server: str, port: int, name: str, out: Path, netns: str = "") -> float:
    """Seconds the tftp-hpa client takes to fetch ``name`` (checked complete)."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    argv = [*prefix, "tftp", "-m", "binary", server, str(port), "-c", "get", name, str(out)]
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    said, _ = await proc.communicate()
    took = time.perf_counter() - started
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"tftp client failed: {said.decode(errors='replace')}")
    return took


def rate(size: int, seconds: float) -> str:
    return f"{size / seconds / (1 << 20):7.2f} MiB/s ({seconds * 1000:7.1f} ms)"


def spread(times: list[float]) -> str:
    """Every round, in ms: the machine's load shows here (QEMU's board wants a CPU of its own)."""
    return "rounds: " + " ".join(f"{t * 1000:.0f}" for t in times)


async def load(work: Path, path: Path) -> None:
    image = await read_image(path)
    out = work / "fetched.bin"
    store = SQLiteStore(work / "records.db")
    board = UBootNet()
    async with board:
        host = RemoteHost(board.address, term="console", console_protocol="raw", name="board")
        async with host:
            async with host.open_app(None, PROMPT, timeout=20) as app:
                await app.cmd("setenv netmask 255.255.255.0; setenv gatewayip 10.0.2.2")
                await app.cmd(f"setenv ipaddr {BOARD_IP}; setenv serverip {board.server_ip}")

            async def deploy() -> float:
                started = time.perf_counter()
                result: DeployResult = await host.deploy(
                    path,
                    via="tftp",
                    address=ADDRESS,
                    force=True,
                    records=store,
                    server=board.server_ip,
                )
                took = time.perf_counter() - started
                if not result.is_ok:
                    raise RuntimeError(result.error)
                return took

            async def tftpboot() -> float:
                name = served_name(image)
                async with (
                    TftpServer(image, name, board.server_ip),
                    host.open_app(None, PROMPT, timeout=20) as app,
                ):
                    started = time.perf_counter()
                    answer = await app.cmd(f"tftpboot {ADDRESS:#x} {name}", timeout=120)
                    took = time.perf_counter() - started
                if f"Bytes transferred = {image.size}" not in answer:
                    raise RuntimeError(answer[-300:])
                return took

            async def client() -> float:
                name = served_name(image)
                async with TftpServer(image, name, board.server_ip):
                    return await tftp_client(board.server_ip, 69, name, out, board.netns)

            whole, boot, fetch = [], [], []
            for _ in range(ROUNDS):
                fetch.append(await client())
                whole.append(await deploy())
                boot.append(await tftpboot())
    await store.close()
    size = image.size
    floor = min(fetch)
    print(f"tftp-hpa client, otto's server, same veth : {rate(size, floor)}  {spread(fetch)}")
    print(f"otto deploy via tftp (whole, checked)     : {rate(size, min(whole))}  {spread(whole)}")
    print(f"  of which U-Boot's tftpboot             : {rate(size, min(boot))}  {spread(boot)}")
    print(f"ratio deploy / client                     : {floor / min(whole):.2f}  (target >= 0.80)")
    print(f"ratio tftpboot / client                   : {floor / min(boot):.2f}")


async def servers(work: Path, path: Path) -> None:
    image = await read_image(path)
    root = work / "tftpd"
    root.mkdir()
    root.chmod(0o755)
    shutil.copy(path, root / path.name)
    (root / path.name).chmod(0o644)
    out = work / "fetched.bin"
    port = 6900 + os.getpid() % 1000
    tftpd = subprocess.Popen(  # noqa: ASYNC220 (a daemon left running, not awaited)
        ["in.tftpd", "-L", "-s", str(root), "-a", f"127.0.0.1:{port}", "-u", "nobody"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        theirs, mine = [], []
        for _ in range(ROUNDS):
            for _attempt in range(50):  # in.tftpd binds right after starting
                try:
                    theirs.append(await tftp_client("127.0.0.1", port, path.name, out))
                    break
                except RuntimeError:
                    await asyncio.sleep(0.05)
            name = served_name(image)
            async with TftpServer(image, name, "127.0.0.1", port + 1):
                mine.append(await tftp_client("127.0.0.1", port + 1, name, out))
    finally:
        tftpd.terminate()
        tftpd.wait()
    size = image.size
    print(f"tftp-hpa client from tftpd-hpa (loopback) : {rate(size, min(theirs))}")
    print(f"tftp-hpa client from otto's server        : {rate(size, min(mine))}")
    print(f"ratio otto's server / tftpd-hpa           : {min(theirs) / min(mine):.2f}")


async def main() -> None:
    if shutil.which("tftp") is None:
        sys.exit("tftp is missing (Debian package tftp-hpa)")
    missing = uboot_missing()
    if missing:
        sys.exit(missing)
    with tempfile.TemporaryDirectory(prefix="otto-bench-deploy-") as tmp:
        work = Path(tmp)
        path = work / "image.bin"
        path.write_bytes(os.urandom(MIB << 20))
        print(f"image: {MIB} MiB, best of {ROUNDS} rounds")
        await load(work, path)
        if shutil.which("in.tftpd") is None:
            # Not installed by scripts/install-system-deps: its package starts a daemon on :69.
            print("(in.tftpd missing: Debian package tftpd-hpa; otto's server not compared)")
        else:
            await servers(work, path)


if __name__ == "__main__":
    asyncio.run(main())
