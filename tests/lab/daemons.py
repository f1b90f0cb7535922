"""The lab's server processes: OpenSSH sshd and busybox telnetd."""

from __future__ import annotations

import functools
import re
import shutil
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from . import procs
from .hosts import Term
from .netns import LabError

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")


@functools.cache
def openssh_version() -> tuple[int, int]:
    """(major, minor) of the installed sshd, e.g. (9, 2)."""
    done = subprocess.run([str(SSHD), "-V"], capture_output=True, text=True, check=False)
    found = re.search(r"OpenSSH_(\d+)\.(\d+)", done.stderr + done.stdout)
    if not found:
        raise LabError(f"cannot tell the OpenSSH version from: {done.stderr.strip()}")
    return int(found[1]), int(found[2])


def busybox() -> str:
    path = shutil.which("busybox")
    if path is None:
        raise LabError("busybox not found: run scripts/install-system-deps")
    return path


def sshd_config(
    *,
    address: str,
    port: int,
    host_key: Path,
    pid_file: Path,
    authorized_keys: Path,
    users: tuple[str, ...],
) -> str:
    """An sshd_config for one lab host; nothing is read from /etc/ssh."""
    lines = [
        f"ListenAddress {address}:{port}",
        f"HostKey {host_key}",
        f"PidFile {pid_file}",
        f"AuthorizedKeysFile {authorized_keys}",
        f"AllowUsers {' '.join(users)}",
        "UsePAM no",
        "PubkeyAuthentication yes",
        "PasswordAuthentication yes",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin no",
        # The OpenSSH default, spelled out: tests exercise the channel limit.
        "MaxSessions 10",
        # Many parallel connects (cold fan-out tests) must not be dropped at random.
        "MaxStartups 500:30:1000",
        "AllowTcpForwarding yes",
        "StrictModes no",
        "UseDNS no",
        "PrintMotd no",
        "PrintLastLog no",
        "LogLevel VERBOSE",
        "Subsystem sftp internal-sftp",
    ]
    if openssh_version() >= (9, 8):
        # Kills and network cuts in tests must not get the test process penalised.
        lines.append("PerSourcePenalties no")
    return "\n".join(lines) + "\n"


@dataclass
class Daemon:
    """One server process of a lab host, restartable with the same argv."""

    host: str
    term: Term
    node: str
    netns: str | None
    address: str
    port: int
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    stopped: bool = False

    def start(self) -> None:
        if self.running():
            raise LabError(f"{self.host}: {self.term} daemon already running")
        argv = self.argv
        if self.netns is not None:
            argv = ["ip", "netns", "exec", self.netns, *argv]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self.stopped = False

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def death_notice(self) -> str | None:
        """A message with the log's tail if the process has exited, else None."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return (
            f"{self.host}: {self.term} daemon exited with status {self.proc.returncode}; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def tree(self) -> list[int]:
        """The daemon's pid and its live descendants (connections, shells, commands)."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid, *procs.descendants(self.proc.pid)]

    def kill(self) -> list[int]:
        """SIGKILL the whole tree and reap the daemon; returns the pids signalled."""
        if self.proc is None or self.proc.poll() is not None:
            return []
        # Stopped first, so nothing forks while the tree is being killed.
        pids = procs.stop_tree(self.proc.pid)
        procs.signal_all(pids, signal.SIGKILL)
        self.proc.wait()
        self.stopped = False
        return pids

    def freeze(self) -> None:
        """Stop the processes that move this daemon's bytes (not the users' commands)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        names = {"sshd"} if self.term == "ssh" else {"busybox", "telnetd"}
        procs.stop_tree(self.proc.pid, names)
        self.stopped = True

    def thaw(self) -> None:
        procs.signal_all(self.tree(), signal.SIGCONT)
        self.stopped = False
