"""A throwaway PostgreSQL server for the reservation tests, with fault switches.

initdb makes a cluster in a temporary folder (owned by the ``postgres``
account, which the server runs as); in netns mode the server runs inside a
network namespace of its own, joined to the test process by a veth pair, so
that ``cut_network`` can make it silent (an nftables drop-everything table)
without touching anything else. ``stop`` and ``start`` stop and restart the
server on the same data and port. ``close`` kills it and removes everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

from .netns import LabError, ip_sync

PG_BIN = Path("/usr/lib/postgresql/15/bin")
USER = "otto"
PASSWORD = "pg-s3cret:pw"  # a ':' to check that messages mask it whole
#: What the server logs once it lets clients in (after recovery).
_READY = b"database system is ready to accept connections"
_CUT = """table inet otto_pg_cut {
    chain input { type filter hook input priority -300; policy drop; }
    chain output { type filter hook output priority -300; policy drop; }
}
"""


def missing() -> str | None:
    """Why the server cannot run here, or None."""
    if os.geteuid() != 0:
        return "the PostgreSQL fixture needs root (runuser, network namespaces)"
    if not (PG_BIN / "postgres").exists():
        return f"PostgreSQL 15 is not installed ({PG_BIN}): run scripts/install-system-deps"
    return None


_SERIAL = itertools.count()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster; ``url`` reaches it (password inside)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="otto-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        # Unique per process and per server: a benchmark may start several.
        serial = next(_SERIAL)
        tag = f"{os.getpid() % 100000}{serial}"
        self.netns = f"otto-pg-{tag}"
        self._veth = f"opg{tag}"
        octet = 1 + (os.getpid() + serial) % 250
        self._host_addr = f"10.214.{octet}.1"
        self.address = f"10.214.{octet}.2"
        self.uses_netns = shutil.which("nft") is not None
        if not self.uses_netns:
            self.address = "127.0.0.1"
        self._proc: subprocess.Popen[bytes] | None = None
        self._cut = False
        self._log = self.root / "server.log"

    @property
    def url(self) -> str:
        return f"postgresql://{USER}:{PASSWORD}@{self.address}:{self.port}/postgres"

    # --- set-up ---------------------------------------------------------------------

    def _as_postgres(self, *argv: str) -> None:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", *argv], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise LabError(f"{' '.join(argv)} failed: {done.stderr.strip()}")

    def _init(self) -> None:
        shutil.chown(self.root, "postgres", "postgres")
        pwfile = self.root / "pw"
        pwfile.write_text(PASSWORD + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        self._as_postgres(
            str(PG_BIN / "initdb"),
            "-D",
            str(self.data),
            "-U",
            USER,
            f"--pwfile={pwfile}",
            "--auth=scram-sha-256",
            "--no-sync",
            "-E",
            "UTF8",
        )
        pwfile.unlink()
        with (self.data / "pg_hba.conf").open("a") as f:
            f.write("host all all 0.0.0.0/0 scram-sha-256\n")
        if self.uses_netns:
            ip_sync("netns", "add", self.netns)
            ip_sync("link", "add", self._veth, "type", "veth", "peer", "name", "up0")
            ip_sync("link", "set", "up0", "netns", self.netns)
            ip_sync("addr", "add", f"{self._host_addr}/30", "dev", self._veth)
            ip_sync("link", "set", self._veth, "up")
            ns = ["-n", self.netns]
            ip_sync(*ns, "addr", "add", f"{self.address}/30", "dev", "up0")
            ip_sync(*ns, "link", "set", "up0", "up")
            ip_sync(*ns, "link", "set", "lo", "up")

    async def start(self) -> None:
        """Start the server (initdb first, the first time) and wait until it accepts clients."""
        if not self.data.exists():
            await asyncio.to_thread(self._init)
        argv = [
            "runuser",
            "-u",
            "postgres",
            "--",
            str(PG_BIN / "postgres"),
            "-D",
            str(self.data),
            "-p",
            str(self.port),
            "-k",
            str(self.root),
            "-c",
            f"listen_addresses={self.address}",
            "-c",
            "fsync=off",
            "-c",
            "max_connections=60",
        ]
        if self.uses_netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[str | None] = loop.create_future()
        # A Popen handle: stop() and close() wait for it from a thread.
        self._proc = subprocess.Popen(  # noqa: ASYNC220
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
        threading.Thread(
            target=self._follow_log, args=(self._proc, loop, ready), daemon=True
        ).start()
        try:
            problem = await asyncio.wait_for(ready, 30.0)
        except TimeoutError:
            raise LabError(f"postgres not ready in 30s: {self._log.read_text()[-2000:]}") from None
        if problem is not None:
            raise LabError(problem)

    def _follow_log(
        self,
        proc: subprocess.Popen[bytes],
        loop: asyncio.AbstractEventLoop,
        ready: asyncio.Future[str | None],
    ) -> None:
        """Copy the server's output to its log (for the whole life of the server) and
        settle ``ready``: None once it accepts connections, the reason if it exits first.

        The server says it accepts only after recovery, so this is the moment a
        client can get in, with nothing polled."""

        def settle(value: str | None) -> None:
            if not ready.done():
                ready.set_result(value)

        assert proc.stdout is not None
        with self._log.open("ab") as log:
            for line in proc.stdout:
                log.write(line)
                log.flush()
                if _READY in line:
                    with contextlib.suppress(RuntimeError):  # the loop has closed
                        loop.call_soon_threadsafe(settle, None)
        code = proc.wait()
        reason = f"postgres exited {code}: {self._log.read_text()[-2000:]}"
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, reason)

    # --- faults -------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop the server (fast shutdown: its connections are closed) and wait for it."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        await asyncio.to_thread(proc.wait)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _nft(self, ruleset: str) -> None:
        done = subprocess.run(
            ["ip", "netns", "exec", self.netns, "nft", "-f", "-"],
            input=ruleset,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise LabError(f"nft in {self.netns} failed: {done.stderr.strip()}")

    async def cut_network(self) -> None:
        """Drop every packet to and from the server (connections hang, as on a pulled cable)."""
        if not self.uses_netns:
            raise LabError("cutting the network needs nft and network namespaces")
        await asyncio.to_thread(self._nft, _CUT)
        self._cut = True

    async def restore_network(self) -> None:
        if self._cut:
            await asyncio.to_thread(self._nft, "delete table inet otto_pg_cut\n")
            self._cut = False

    async def heal(self) -> None:
        """Undo every fault: network back, server running."""
        await self.restore_network()
        if not self.running:
            await self.start()

    # --- teardown ---------------------------------------------------------------------------

    def close(self) -> None:
        """Kill the server, delete its namespace, veth and folder. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if self.uses_netns:
            ip_sync("netns", "delete", self.netns, check=False)
            ip_sync("link", "delete", self._veth, check=False)
        shutil.rmtree(self.root, ignore_errors=True)
