"""The lab: real sshd and telnetd hosts in network namespaces, and its fault switches."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Literal

from . import procs
from .daemons import PRIVSEP_DIR, SSHD, Daemon, busybox, sshd_config
from .hosts import (
    DEFAULT_NODES,
    MAX_SLOTS,
    SSH_PORT,
    TELNET_PORT,
    LabHost,
    NodeSpec,
    Plan,
    netns_name,
    netns_prefix,
    plan_addresses,
)
from .keys import fresh_public_key, write_known_hosts, write_private_key
from .netns import NETNS_DIR, LabError, ip, ip_sync, list_netns, wait_listening
from .privilege import NOPASSWD_USER, SUDO_USER, ensure_sudo_users, release_sudoers
from .users import ERREXIT_USER, LAB_PASSWORD, LAB_USER, SLOW_USER, ensure_users

Mode = Literal["auto", "netns", "loopback"]
CutHow = Literal["link", "drop"]

STATE_DIR = Path("/run/otto-lab")
_CUT_TABLE = "otto_lab_cut"
_CUT_RULESET = f"""table inet {_CUT_TABLE} {{
    chain input {{ type filter hook input priority -300; policy drop; }}
    chain output {{ type filter hook output priority -300; policy drop; }}
}}
"""


def _issue_text() -> str:
    try:
        return Path("/etc/issue.net").read_text()
    except OSError:
        return ""


class Lab:
    """Real SSH and Telnet servers for integration tests.

    In netns mode each node is a network namespace joined by a veth pair to
    its parent (the test process's namespace, or another node), so a node
    with a parent is reachable only through that parent's sshd. Without
    namespaces every daemon listens on its own 127.0.0.1 port instead, with
    the same API; ``hop_enforced`` is then False.

    Use ``async with Lab() as lab`` (or ``await lab.start()`` and
    ``await lab.aclose()``); ``close()`` is the synchronous teardown, also
    registered with atexit.

    Args:
        nodes: the machines to build; the default is ``DEFAULT_NODES``.
        mode: "netns", "loopback", or "auto" (netns if ``ip netns add`` works).
            The environment variable ``OTTO_LAB_MODE`` overrides "auto".
        ready_timeout: how long start-up may wait for every daemon to listen.
    """

    def __init__(
        self,
        nodes: tuple[NodeSpec, ...] = DEFAULT_NODES,
        *,
        mode: Mode = "auto",
        ready_timeout: float = 15.0,
        state_dir: Path = STATE_DIR,
    ) -> None:
        self.nodes = {node.name: node for node in nodes}
        self._node_order = nodes
        self._mode = mode
        self._ready_timeout = ready_timeout
        self._state_dir = state_dir
        self.user = LAB_USER
        self.slow_user = SLOW_USER
        self.password = LAB_PASSWORD
        self.hosts: dict[str, LabHost] = {}
        self.uses_netns = False
        self.startup_seconds = 0.0
        self.slot = -1
        self._dir: Path | None = None
        self._lock: IO[str] | None = None
        self._plan: Plan | None = None
        self._daemons: dict[tuple[str, str], Daemon] = {}
        self._cut: dict[str, CutHow] = {}
        self._closed = False
        self._started = False

    # -- paths and data -------------------------------------------------

    @property
    def dir(self) -> Path:
        """The lab's private directory: configs, keys, logs."""
        if self._dir is None:
            raise LabError("lab not started")
        return self._dir

    @property
    def known_hosts(self) -> Path:
        """known_hosts with every SSH host's key under the address clients use."""
        return self.dir / "known_hosts"

    @property
    def bad_known_hosts(self) -> Path:
        """known_hosts naming every SSH host with a key none of them has."""
        return self.dir / "bad_known_hosts"

    @property
    def client_key(self) -> Path:
        """Private key (ed25519, OpenSSH format) accepted for both lab users."""
        return self.dir / "client_key"

    @property
    def hop_enforced(self) -> bool:
        """True when hosts behind a hop really are unreachable from the test process."""
        return self.uses_netns

    def host(self, name: str, *, user: str | None = None) -> LabHost:
        """``hosts[name]``, optionally logging in as another user."""
        found = self.hosts[name]
        return found if user is None else found.as_user(user)

    def hop_chain(self, name: str) -> list[LabHost]:
        """The hops to go through to reach ``name``, outermost first."""
        chain: list[LabHost] = []
        hop = self.hosts[name].hop
        while hop is not None:
            chain.insert(0, self.hosts[hop])
            hop = self.hosts[hop].hop
        return chain

    def netns(self, name: str) -> str | None:
        """The network namespace host ``name`` runs in (None in loopback mode)."""
        node = self.hosts[name].node
        return netns_name(self.slot, node) if self.uses_netns else None

    def log_path(self, name: str) -> Path:
        """The daemon log of host ``name`` (sshd's -E file, telnetd's output)."""
        host = self.hosts[name]
        return self._daemons[(host.node, host.term)].log_path

    def processes(self) -> list[int]:
        """Live pids of every daemon and what it spawned (connections, shells, commands)."""
        pids = [pid for daemon in self._daemons.values() for pid in daemon.tree()]
        if self.uses_netns:
            for node in self._node_order:
                pids += procs.pids_in_netns(NETNS_DIR / netns_name(self.slot, node.name))
        return sorted(set(pids))

    def inventory(self) -> list[dict[str, object]]:
        """The hosts as records shaped like an otto lab file's entries."""
        return [
            {
                "name": host.name,
                "address": host.address,
                "port": host.port,
                "term": host.term,
                "user": host.user,
                "password": host.password,
                "key": str(host.key_path) if host.key_path else None,
                "hop": host.hop,
            }
            for host in self.hosts.values()
        ]

    # -- start-up -------------------------------------------------------

    async def __aenter__(self) -> Lab:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def start(self) -> Lab:
        """Build the network, start every daemon and wait until each accepts."""
        if self._started:
            raise LabError("lab already started")
        self._started = True
        began = time.monotonic()
        if os.geteuid() != 0:
            raise LabError("the lab needs root (namespaces, useradd, sshd)")
        if not SSHD.exists():
            raise LabError(f"{SSHD} not found: run scripts/install-system-deps")
        busybox()
        atexit.register(self.close)
        try:
            self._claim_slot()
            self._dir = Path(tempfile.mkdtemp(prefix=f"otto-lab{self.slot}-"))
            # sshd reads authorized_keys as the user, so the directory must be traversable.
            self._dir.chmod(0o755)
            self._state_file().write_text(json.dumps({"dir": str(self._dir)}))
            self.uses_netns = self._choose_netns()
            PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
            users = asyncio.create_task(asyncio.to_thread(self._ensure_users))
            try:
                if self.uses_netns:
                    await self._build_network()
                self._build_hosts()
            finally:
                await users
            for daemon in self._daemons.values():
                daemon.start()
            await asyncio.gather(*(self._wait_ready(d) for d in self._daemons.values()))
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _ensure_users(self) -> None:
        ensure_users(self._state_dir)
        ensure_sudo_users(self._state_dir)

    def _state_file(self) -> Path:
        return self._state_dir / f"slot{self.slot}.json"

    def _claim_slot(self) -> None:
        self._state_dir.mkdir(parents=True, exist_ok=True)
        for slot in range(MAX_SLOTS):
            lock = open(self._state_dir / f"slot{slot}.lock", "w")  # noqa: SIM115
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            self._lock = lock
            self.slot = slot
            self._clean_stale_slot()
            return
        raise LabError(f"all {MAX_SLOTS} lab slots are in use")

    def _clean_stale_slot(self) -> None:
        """Remove what a lab in this slot left when its process died unannounced."""
        state = self._state_file()
        if state.exists():
            with contextlib.suppress(ValueError, KeyError, OSError):
                old_dir = json.loads(state.read_text())["dir"]
                roots = procs.pids_with_arg(old_dir)
                doomed = roots + [pid for root in roots for pid in procs.descendants(root)]
                procs.signal_all(doomed, signal.SIGKILL)
                procs.wait_gone_sync(doomed, 2.0)
                shutil.rmtree(old_dir, ignore_errors=True)
            state.unlink(missing_ok=True)
        stale = [name for name in list_netns() if name.startswith(netns_prefix(self.slot))]
        self._delete_root_links()
        if stale:
            self._delete_namespaces(stale)
            ip_sync("route", "del", "unreachable", self._supernet(), check=False)

    def _supernet(self) -> str:
        return f"10.213.{32 * self.slot}.0/19"

    def _choose_netns(self) -> bool:
        mode = self._mode
        if mode == "auto":
            forced = os.environ.get("OTTO_LAB_MODE", "auto")
            if forced not in ("auto", "netns", "loopback"):
                raise LabError(f"OTTO_LAB_MODE={forced!r}: expected netns or loopback")
            mode = forced  # type: ignore[assignment]
        if mode == "loopback":
            return False
        probe = netns_name(self.slot, "probe")
        try:
            ip_sync("netns", "add", probe)
        except (LabError, OSError):
            if mode == "netns":
                raise
            return False
        ip_sync("netns", "del", probe, check=False)
        return True

    async def _build_network(self) -> None:
        plan = plan_addresses(self.slot, self._node_order)
        self._plan = plan
        root = [f"netns add {plan.netns(node.name)}" for node in self._node_order]
        # Lab addresses without a veth must fail at once, never leave the machine.
        root.append(f"route add unreachable {plan.supernet}")
        for link in plan.links.values():
            child_ns = plan.netns(link.child)
            if link.parent is None:
                root += [
                    f"link add {link.parent_dev} type veth peer name {link.child_dev} "
                    f"netns {child_ns}",
                    f"addr add {link.parent_addr}/{link.prefix} dev {link.parent_dev}",
                    f"link set {link.parent_dev} up",
                ]
            else:
                root.append(
                    f"link add name {link.parent_dev} netns {plan.netns(link.parent)} "
                    f"type veth peer name {link.child_dev} netns {child_ns}"
                )
        await ip(batch="\n".join(root) + "\n")

        async def configure(node: str) -> None:
            link = plan.links[node]
            cmds = [
                "link set lo up",
                f"addr add {link.child_addr}/{link.prefix} dev {link.child_dev}",
                f"link set {link.child_dev} up",
            ]
            for below in plan.links.values():
                if below.parent == node:
                    cmds += [
                        f"addr add {below.parent_addr}/{below.prefix} dev {below.parent_dev}",
                        f"link set {below.parent_dev} up",
                    ]
            await ip("-n", plan.netns(node), batch="\n".join(cmds) + "\n")

        await asyncio.gather(*(configure(node.name) for node in self._node_order))

    def _build_hosts(self) -> None:
        lab_dir = self.dir
        client_public = write_private_key(self.client_key)
        authorized_keys = lab_dir / "authorized_keys"
        authorized_keys.write_text(client_public + "\n")
        authorized_keys.chmod(0o644)
        free_ports = iter(self._free_ports()) if not self.uses_netns else None
        known: list[tuple[str, int, str]] = []
        for node in self._node_order:
            hop = None
            if node.parent is not None:
                hop = next(
                    (name for name, term in self.nodes[node.parent].services if term == "ssh"),
                    None,
                )
                if hop is None:
                    raise LabError(f"node {node.name}: parent {node.parent} runs no sshd")
            for name, term in node.services:
                if free_ports is not None:
                    address, port = "127.0.0.1", next(free_ports)
                else:
                    assert self._plan is not None
                    address = self._plan.links[node.name].child_addr
                    port = SSH_PORT if term == "ssh" else TELNET_PORT
                if (node.name, term) in self._daemons:
                    raise LabError(f"node {node.name} has two {term} services")
                host_dir = lab_dir / "hosts" / name
                host_dir.mkdir(parents=True)
                log = host_dir / f"{term}d.log"
                if term == "ssh":
                    host_key = host_dir / "ssh_host_ed25519_key"
                    known.append((address, port, write_private_key(host_key)))
                    config = host_dir / "sshd_config"
                    config.write_text(
                        sshd_config(
                            address=address,
                            port=port,
                            host_key=host_key,
                            pid_file=host_dir / "sshd.pid",
                            authorized_keys=authorized_keys,
                            users=(LAB_USER, SLOW_USER, SUDO_USER, NOPASSWD_USER, ERREXIT_USER),
                        )
                    )
                    argv = [str(SSHD), "-D", "-f", str(config), "-E", str(log)]
                else:
                    # The issue file's path also marks the process as this lab's.
                    issue = host_dir / "issue"
                    issue.write_text(_issue_text())
                    argv = [
                        busybox(),
                        "telnetd",
                        "-F",
                        "-K",
                        "-b",
                        f"{address}:{port}",
                        "-f",
                        str(issue),
                        "-l",
                        "/bin/login",
                    ]
                self._daemons[(node.name, term)] = Daemon(
                    host=name,
                    term=term,
                    node=node.name,
                    netns=netns_name(self.slot, node.name) if self.uses_netns else None,
                    address=address,
                    port=port,
                    argv=argv,
                    log_path=log,
                )
                self.hosts[name] = LabHost(
                    name=name,
                    address=address,
                    port=port,
                    term=term,
                    user=LAB_USER,
                    password=LAB_PASSWORD,
                    key_path=self.client_key if term == "ssh" else None,
                    hop=hop,
                    node=node.name,
                )
        write_known_hosts(self.known_hosts, known)
        wrong = fresh_public_key()
        write_known_hosts(self.bad_known_hosts, [(addr, port, wrong) for addr, port, _ in known])

    def _free_ports(self) -> list[int]:
        count = sum(len(node.services) for node in self._node_order)
        socks = []
        try:
            for _ in range(count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", 0))
            return [sock.getsockname()[1] for sock in socks]
        finally:
            for sock in socks:
                sock.close()

    async def _wait_ready(self, daemon: Daemon) -> None:
        await wait_listening(
            daemon.address,
            daemon.port,
            netns=daemon.netns,
            timeout=self._ready_timeout,
            check_alive=daemon.death_notice,
        )

    # -- faults ---------------------------------------------------------

    def _daemon(self, name: str, term: str) -> Daemon:
        host = self.hosts[name]
        if host.term != term:
            raise LabError(f"{name} is a {host.term} host, not {term}")
        return self._daemons[(host.node, host.term)]

    async def kill_sshd(self, name: str) -> None:
        """SIGKILL host ``name``'s sshd with every connection and session it serves."""
        daemon = self._daemon(name, "ssh")
        left = await procs.wait_gone(daemon.kill(), 5.0)
        if left:
            raise LabError(f"{name}: processes {left} survived SIGKILL")

    async def start_sshd(self, name: str) -> None:
        """Start host ``name``'s sshd again, same address and keys; wait until it listens."""
        daemon = self._daemon(name, "ssh")
        daemon.start()
        await self._wait_ready(daemon)

    def sshd_running(self, name: str) -> bool:
        return self._daemon(name, "ssh").running()

    async def cut_network(self, name: str, how: CutHow | None = None) -> None:
        """Make the node of host ``name`` silent: packets to and from it vanish.

        Established connections are not reset; they just stop moving, as when a
        cable is pulled. Every service on that node, and every node behind it,
        is cut with it. ``how="drop"`` loads an nftables drop-everything table
        in its namespace; ``"link"`` takes the node's veth down (restoring a
        link waits out the kernel's carrier delay, about 0.7 s). The default is
        "drop" when ``nft`` is installed. In loopback mode both stop (SIGSTOP)
        the node's daemons instead.
        """
        node = self.hosts[name].node
        if node in self._cut:
            raise LabError(f"{name}: node {node} is already cut")
        if how is None:
            how = "drop" if shutil.which("nft") else "link"
        if not self.uses_netns:
            for daemon in self._node_daemons(node):
                daemon.freeze()
        elif how == "link":
            await ip("-n", netns_name(self.slot, node), "link", "set", "up0", "down")
        else:
            await self._nft(node, _CUT_RULESET)
        self._cut[node] = how

    async def restore_network(self, name: str) -> None:
        """Undo :meth:`cut_network` and wait until the node accepts connections again."""
        node = self.hosts[name].node
        how = self._cut.pop(node, None)
        if how is None:
            raise LabError(f"{name}: node {node} is not cut")
        if not self.uses_netns:
            for daemon in self._node_daemons(node):
                daemon.thaw()
            return
        if how == "link":
            await ip("-n", netns_name(self.slot, node), "link", "set", "up0", "up")
        else:
            await self._nft(node, f"delete table inet {_CUT_TABLE}\n")
        parent = self.nodes[node].parent
        parent_ns = netns_name(self.slot, parent) if parent else None
        for daemon in self._node_daemons(node):
            if daemon.running():
                await wait_listening(
                    daemon.address, daemon.port, netns=parent_ns, timeout=self._ready_timeout
                )

    def is_cut(self, name: str) -> bool:
        return self.hosts[name].node in self._cut

    async def heal(self) -> None:
        """Restore every cut node and restart every sshd that is down."""
        for node in list(self._cut):
            host = next(name for name, _ in self.nodes[node].services)
            await self.restore_network(host)
        for daemon in self._daemons.values():
            if daemon.term == "ssh" and not daemon.running():
                await self.start_sshd(daemon.host)

    def _node_daemons(self, node: str) -> list[Daemon]:
        return [d for (n, _), d in self._daemons.items() if n == node]

    async def _nft(self, node: str, ruleset: str) -> None:
        if shutil.which("nft") is None:
            raise LabError("nft not found: run scripts/install-system-deps")
        proc = await asyncio.create_subprocess_exec(
            "ip",
            "netns",
            "exec",
            netns_name(self.slot, node),
            "nft",
            "-f",
            "-",
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        _, err = await proc.communicate(ruleset.encode())
        if proc.returncode != 0:
            raise LabError(f"nft in {node} failed: {err.decode().strip()}")

    # -- teardown -------------------------------------------------------

    async def aclose(self) -> None:
        """Tear everything down (see :meth:`close`) without blocking the loop."""
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Kill every process the lab started, delete its namespaces, veths,
        route and directory, and free its slot. Idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        killed: list[int] = []
        for daemon in self._daemons.values():
            killed += daemon.kill()
        if self.slot >= 0:
            namespaces = [n for n in list_netns() if n.startswith(netns_prefix(self.slot))]
            self._delete_namespaces(namespaces)
            self._delete_root_links()
            if self.uses_netns:
                ip_sync("route", "del", "unreachable", self._supernet(), check=False)
        procs.wait_gone_sync(killed, 2.0)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        if self._lock is not None:
            if self.slot >= 0:
                release_sudoers(self._state_dir, self._state_file())
                self._state_file().unlink(missing_ok=True)
            self._lock.close()
            self._lock = None

    def _delete_namespaces(self, names: list[str]) -> None:
        if not names:
            return
        # Processes keep a namespace (and its veths) alive after `ip netns del`.
        for _ in range(3):
            pids = [pid for name in names for pid in procs.pids_in_netns(NETNS_DIR / name)]
            if not pids:
                break
            procs.signal_all(pids, signal.SIGKILL)
            procs.wait_gone_sync(pids, 2.0)
        ip_sync("-force", batch="".join(f"netns del {name}\n" for name in names), check=False)

    def _delete_root_links(self) -> None:
        """Delete this slot's veths in the root namespace.

        A namespace is dismantled asynchronously once its last process is gone,
        and the veth ends it held can outlive ``ip netns del`` for a moment;
        deleting our ends explicitly frees their names for the next lab at once.
        """
        prefix = f"ol{self.slot}n"
        links = [name for name in os.listdir("/sys/class/net") if name.startswith(prefix)]
        if links:
            ip_sync("-force", batch="".join(f"link del {name}\n" for name in links), check=False)
