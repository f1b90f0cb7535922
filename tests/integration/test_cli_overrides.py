"""``otto host NAMES --user/--port/--hop/--term`` and the default ``--timeout`` of
``otto host run``, through the real entry point, on the real SSH/Telnet lab."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.lab.privilege import SUDO_USER

if TYPE_CHECKING:
    from tests.lab import Lab as TestLab

DEADLINE = 60.0


def otto(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "NO_COLOR", "FORCE_COLOR"}}
    env["COLUMNS"] = "200"
    env["OTTO_RESERVATIONS"] = f"sqlite:///{tmp / 'reservations.db'}"
    return subprocess.run(
        [sys.executable, "-m", "otto", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def lab_file(lab: TestLab, path: Path, *, without_hops: bool = False) -> Path:
    hosts = []
    for record in lab.inventory():
        entry = {k: v for k, v in record.items() if v is not None}
        if entry["term"] == "ssh":
            entry["known_hosts"] = str(lab.known_hosts)
        if without_hops and entry["name"] == "inner":
            entry.pop("hop")
        hosts.append(entry)
    path.write_text(json.dumps({"hosts": hosts}))
    return path


@pytest.fixture(scope="module")
def ssh_lab_file(lab: TestLab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lab_file(lab, tmp_path_factory.mktemp("overrides") / "lab.json")


def test_user_logs_in_as_another_lab_user(lab: TestLab, ssh_lab_file: Path, tmp_path: Path) -> None:
    base = ("--lab", str(ssh_lab_file), "host", "ssh1")
    proc = otto(*base, "--user", SUDO_USER, "run", "id -un", tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == f"ssh1 | {SUDO_USER}"
    # For this invocation only: the next one is the lab's user again.
    proc = otto(*base, "run", "id -un", tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == f"ssh1 | {lab.user}"
    # The option may come before NAME too, and the plan shows it.
    proc = otto(
        "-n", "--lab", str(ssh_lab_file), "host", "-u", SUDO_USER, "ssh1", "run", "id", tmp=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    address = lab.hosts["ssh1"].address
    assert f"[ssh1] would connect: ssh {SUDO_USER}@{address}:22\n" in proc.stdout


def test_port_to_a_closed_port_is_a_clear_error(
    lab: TestLab, ssh_lab_file: Path, tmp_path: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]  # nothing listens on it once closed
    proc = otto(
        "--lab",
        str(ssh_lab_file),
        "host",
        "ssh2",
        "--port",
        str(closed),
        "run",
        "true",
        tmp=tmp_path,
    )
    assert proc.returncode == 255, proc.stdout + proc.stderr
    problem = proc.stdout + proc.stderr
    assert "ssh2" in problem
    assert str(closed) in problem or "refused" in problem.lower(), problem
    assert "Traceback" not in problem


def test_term_telnet_on_a_host_that_also_serves_telnet(
    lab: TestLab, ssh_lab_file: Path, tmp_path: Path
) -> None:
    """inner runs sshd and telnetd; --term telnet reaches it by Telnet, still through ssh1."""
    assert lab.hosts["inner-telnet"].address == lab.hosts["inner"].address
    args = ("--lab", str(ssh_lab_file), "host", "inner", "--term", "telnet")
    plan = otto("-n", *args, "run", "echo $((6*7))", tmp=tmp_path)
    assert plan.returncode == 0, plan.stderr
    address = lab.hosts["inner"].address
    assert f"[inner] would connect: telnet {lab.user}@{address}:23 via ssh1\n" in plan.stdout
    proc = otto(*args, "run", "echo $((6*7)) ${SSH_CONNECTION:-no-ssh}", tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "inner | 42 no-ssh"


def test_hop_reaches_a_host_the_lab_gives_no_hop(lab: TestLab, tmp_path: Path) -> None:
    no_hop = lab_file(lab, tmp_path / "lab.json", without_hops=True)
    args = ("--lab", str(no_hop), "host", "inner")
    if lab.hop_enforced:  # without the hop, inner cannot be reached at all
        direct = otto(*args, "run", "true", tmp=tmp_path)
        assert direct.returncode == 255, direct.stdout + direct.stderr
    proc = otto(*args, "--hop", "ssh1", "run", "echo $((6*7)) ${SSH_CLIENT%% *}", tmp=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The shell on inner sees the connection coming from ssh1's side of their link.
    line = proc.stdout.splitlines()[-1]
    assert re.fullmatch(r"inner \| 42 \S+", line), line


@pytest.mark.parametrize(
    ("option", "reason"),
    [
        (["--hop", "nowhere"], "--hop: host 'ssh1': field 'hop': no host named 'nowhere'"),
        (["--hop", "telnet1"], "hop 'telnet1' must be an SSH host (it is 'telnet')"),
        (["--hop", "ssh1"], "hops form a cycle: ssh1 -> ssh1"),
        (["--port", "0"], "--port: host 'ssh1': field 'port': must be a port number 1-65535"),
        (["--term", "serial"], "--term: must be 'ssh' or 'telnet'"),
        (["--user", ""], "--user: host 'ssh1': field 'user': must be a non-empty string"),
    ],
)
def test_bad_overrides_are_usage_errors(
    ssh_lab_file: Path, tmp_path: Path, option: list[str], reason: str
) -> None:
    proc = otto("--lab", str(ssh_lab_file), "host", "ssh1", *option, "run", "true", tmp=tmp_path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert reason in proc.stderr
    assert proc.stdout == ""


def test_run_times_out_by_default_and_zero_means_none(tmp_path: Path) -> None:
    help_text = otto("host", "local", "run", "--help", tmp=tmp_path).stdout
    assert re.search(r"--timeout\s+-t\s+.*0: no limit.*\[default: 30", help_text, re.DOTALL)
    proc = otto("host", "local", "run", "-t", "1", "sleep 30", tmp=tmp_path)
    assert proc.returncode == 124
    assert "local ! timed out after 1s" in proc.stdout
    proc = otto("host", "local", "run", "-t", "0", "echo unbounded", tmp=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "local | unbounded"
