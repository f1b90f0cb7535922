"""Real net-snmp agents (``snmpd``) for the SNMP tests, in the lab's network namespaces.

::

    async with SnmpLab(lab) as snmp:
        agent = await snmp.agent("ssh1")                       # on ssh1's address, its netns
        fake = await snmp.agent("ssh1", counters=Counters())   # IF-MIB served from a file

Each agent is an ``snmpd -f`` with a config file of its own in a temporary
folder (nothing read from /etc/snmp, nothing written to /var/lib/snmp),
listening on UDP in the namespace of a lab node, on that node's address (or on
127.0.0.1 when the lab runs without namespaces). It is ready when it has said
so on its output (``NET-SNMP version``). Leaving the block kills every agent
and removes the folder.

``counters=Counters(...)``: the agent answers IF-MIB's ``ifTable`` and
``ifXTable`` from a JSON file the test writes (``Counters.write``), through
snmpd's ``pass_persist`` (``snmp_pass.py``) registered above the agent's own
interface tables: what a test needs for counters that wrap or reset, with the
rest of the agent (``sysUpTime``, hrStorage, UCD) real.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from . import procs
from .lab import Lab
from .netns import LabError

SNMPD = Path("/usr/sbin/snmpd")
PASS_SCRIPT = Path(__file__).with_name("snmp_pass.py")
READY_TIMEOUT = 10.0
FIRST_PORT = 16100

IF_TABLE = "1.3.6.1.2.1.2.2"
IF_X_TABLE = "1.3.6.1.2.1.31.1.1"


def snmpd_missing() -> str | None:
    """Why agents cannot run here (for a skip), or None."""
    if os.geteuid() != 0:
        return "the SNMP agents run in the lab's network namespaces: root needed"
    if not SNMPD.exists():
        return f"{SNMPD} not found: run scripts/install-system-deps"
    return None


@dataclass
class Counters:
    """IF-MIB rows an agent serves from a file: one interface per entry.

    ``interfaces`` maps an ifIndex to ``(name, in octets, out octets)``;
    ``wide`` serves the 64-bit ``ifHC*`` counters (ifXTable), otherwise only
    the 32-bit ``ifTable`` ones exist.
    """

    interfaces: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    wide: bool = False
    path: Path | None = None

    def rows(self) -> dict[str, list[object]]:
        """``{oid: [type, value]}`` as ``snmp_pass.py`` reads them."""
        rows: dict[str, list[object]] = {}
        for index, (name, rx, tx) in self.interfaces.items():
            rows[f"{IF_TABLE}.1.1.{index}"] = ["integer", index]
            rows[f"{IF_TABLE}.1.2.{index}"] = ["string", name]
            rows[f"{IF_TABLE}.1.3.{index}"] = ["integer", 6]  # ethernetCsmacd
            if self.wide:
                rows[f"{IF_TABLE}.1.10.{index}"] = ["counter", rx % (1 << 32)]
                rows[f"{IF_TABLE}.1.16.{index}"] = ["counter", tx % (1 << 32)]
                rows[f"{IF_X_TABLE}.1.1.{index}"] = ["string", name]
                rows[f"{IF_X_TABLE}.1.6.{index}"] = ["counter64", rx]
                rows[f"{IF_X_TABLE}.1.10.{index}"] = ["counter64", tx]
            else:
                rows[f"{IF_TABLE}.1.10.{index}"] = ["counter", rx]
                rows[f"{IF_TABLE}.1.16.{index}"] = ["counter", tx]
        return rows

    def write(self) -> None:
        """Put the current values where the agent reads them (atomically)."""
        assert self.path is not None, "the counters belong to no agent yet"
        temp = self.path.with_suffix(".tmp")
        temp.write_text(json.dumps(self.rows()))
        temp.replace(self.path)


@dataclass
class SnmpAgent:
    """One running snmpd."""

    name: str
    netns: str | None
    address: str
    port: int
    community: str
    folder: Path
    counters: Counters | None = None
    v3: tuple[str, str, str] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _ready: threading.Event = field(default_factory=threading.Event, repr=False)
    _pump: threading.Thread | None = field(default=None, repr=False)

    @property
    def log_path(self) -> Path:
        return self.folder / "snmpd.log"

    def config(self) -> str:
        lines = [
            f"agentAddress udp:{self.address}:{self.port}",
            f"rocommunity {self.community} default",
            "sysLocation otto test lab",
            "sysContact nobody",
            # Nothing of the machine's own setup: no AgentX socket, no traps.
            "master no",
        ]
        if self.v3 is not None:
            user, auth, priv = self.v3
            lines += [f"createUser {user} SHA {auth} AES {priv}", f"rouser {user} priv"]
        if self.counters is not None:
            command = f"{sys.executable} {PASS_SCRIPT} {self.folder / 'counters.json'}"
            lines += [
                f"pass_persist -p 1 .{IF_TABLE} {command} {IF_TABLE}",
                f"pass_persist -p 1 .{IF_X_TABLE} {command} {IF_X_TABLE}",
            ]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Start the agent (again): the same port, config and counters."""
        if self.running():
            raise LabError(f"{self.name}: snmpd already running")
        self.folder.mkdir(parents=True, exist_ok=True)
        conf = self.folder / "snmpd.conf"
        conf.write_text(self.config())
        if self.counters is not None:
            self.counters.path = self.folder / "counters.json"
            self.counters.write()
        argv = [str(SNMPD), "-f", "-Lo", "-C", "-c", str(conf), "-p", str(self.folder / "pid")]
        argv += ["-I", "-smux"]  # agents sharing a namespace would fight over port 199
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/bin"),
            "SNMP_PERSISTENT_DIR": str(self.folder / "persist"),
            "MIBS": "",  # numeric OIDs only: loading MIB files is slow and noisy
        }
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
        self._pump = threading.Thread(target=self._copy_output, name=f"snmpd-{self.name}")
        self._pump.start()

    def _copy_output(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with open(self.log_path, "ab") as log:
            for line in self.proc.stdout:
                log.write(line)
                log.flush()
                if line.startswith(b"NET-SNMP version"):
                    self._ready.set()
        self._ready.set()  # it ended: stop waiting (wait_ready says why)

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Return once the agent said it serves requests; ``LabError`` if it died or hung."""
        ready = await asyncio.to_thread(self._ready.wait, timeout)
        if not self.running():
            raise LabError(f"{self.name}: snmpd exited: {self.log_tail()}")
        if not ready:
            raise LabError(f"{self.name}: snmpd not ready after {timeout:g}s: {self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def freeze(self) -> None:
        """SIGSTOP the agent: requests reach it and are never answered."""
        if self.proc is not None:
            procs.signal_all([self.proc.pid, *procs.descendants(self.proc.pid)], signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None:
            procs.signal_all([self.proc.pid, *procs.descendants(self.proc.pid)], signal.SIGCONT)

    def stop(self) -> None:
        """Kill the agent and its pass_persist helper; wait until they are gone."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        pids = [proc.pid, *procs.descendants(proc.pid)] if proc.poll() is None else []
        procs.signal_all(pids, signal.SIGKILL)
        procs.signal_all(pids, signal.SIGCONT)
        proc.wait()
        if self._pump is not None:
            self._pump.join()
            self._pump = None
        if proc.stdout is not None:
            proc.stdout.close()
        procs.wait_gone_sync(pids, 2.0)

    async def restart(self) -> None:
        """Stop and start the agent: its ``sysUpTime`` starts again from zero."""
        await asyncio.to_thread(self.stop)
        self.start()
        await self.wait_ready()


class SnmpLab:
    """snmpd agents in a running lab's namespaces, all stopped on leaving.

    Args:
        lab: the running lab whose nodes the agents live in.
    """

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.agents: list[SnmpAgent] = []
        self._dir: Path | None = None
        self._next_port = FIRST_PORT

    async def __aenter__(self) -> SnmpLab:
        missing = snmpd_missing()
        if missing:
            raise LabError(missing)
        self._dir = Path(tempfile.mkdtemp(prefix="otto-snmp-"))
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        self.agents.clear()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _port(self, address: str) -> int:
        if self.lab.uses_netns:
            port = self._next_port
            self._next_port += 1
            return port
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((address, 0))
            free: int = sock.getsockname()[1]
            return free

    async def agent(
        self,
        node_host: str,
        *,
        community: str = "public",
        counters: Counters | None = None,
        v3: tuple[str, str, str] | None = None,
        start: bool = True,
    ) -> SnmpAgent:
        """A new agent on the node of lab host ``node_host``, started and ready.

        Args:
            community: the agent's read-only community.
            counters: serve IF-MIB from a file (see ``Counters``).
            v3: ``(user, auth pass phrase, priv pass phrase)`` of an SNMPv3
                user (SHA, AES) the agent also accepts.
            start: False to leave it unstarted (``start()`` then ``wait_ready()``).
        """
        assert self._dir is not None, "use `async with SnmpLab(lab)`"
        netns = self.lab.netns(node_host)
        address = self.lab.hosts[node_host].address if netns is not None else "127.0.0.1"
        port = self._port(address)
        agent = SnmpAgent(
            name=f"snmpd-{node_host}-{port}",
            netns=netns,
            address=address,
            port=port,
            community=community,
            folder=self._dir / f"agent-{port}",
            counters=counters,
            v3=v3,
        )
        self.agents.append(agent)
        if start:
            agent.start()
            await agent.wait_ready()
        return agent
