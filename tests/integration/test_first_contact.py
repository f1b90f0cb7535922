"""A new user's first commands, each in a fresh process: otto's own lines only.

No third-party warning (asyncssh's DSA deprecation under a newer
cryptography, say) may reach the terminal, whatever the installed versions.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.integration

# Warnings must stay off by default, not because a filter hides them here:
# run as a user would, with Python's default warning settings.
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "OTTO_LAB", "OTTO_LOG")}


def _otto(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otto", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=120,
        check=False,
    )


def test_help_prints_nothing_on_stderr() -> None:
    done = _otto("--help")
    assert done.returncode == 0
    assert done.stderr == ""
    assert "Usage" in done.stdout


def test_a_local_run_prints_nothing_on_stderr() -> None:
    done = _otto("host", "local", "run", "true")
    assert done.returncode == 0, done.stdout
    assert done.stderr == ""


def test_import_otto_and_an_ssh_host_warn_of_nothing() -> None:
    code = (
        "import otto\n"
        "host = otto.RemoteHost('127.0.0.1', user='nobody', known_hosts=None)\n"
        "import otto.hosts.ssh, otto.transports.ssh, otto.lab.ssh_config\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_monitor_first_seconds_print_only_ottos_lines() -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "otto", "monitor", "--interval", "0.2", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert proc.stdout is not None
        seen = []
        deadline = time.monotonic() + 60
        # The dashboard line comes once the server listens; then one page
        # load proves it answers, with rounds running meanwhile.
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if line.startswith("dashboard:"):
                break
        assert any(line.startswith("dashboard:") for line in seen), seen
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            assert sock.recv(12).startswith(b"HTTP/1.1 200")
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert err == ""
    assert proc.returncode == 0
