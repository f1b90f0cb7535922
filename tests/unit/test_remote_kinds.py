"""RemoteHost picks its connection kind by ``term`` and imports it only then."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from otto import RemoteHost
from otto.hosts.connection import Connection
from otto.hosts.remote import CONNECTIONS, connection_kind


def in_fresh_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_otto_hosts_and_lab_do_not_import_asyncssh() -> None:
    proc = in_fresh_python(
        """
        import sys
        import otto
        otto.LocalHost
        import otto.hosts, otto.lab
        assert "asyncssh" not in sys.modules, "imported before any SSH host"
        assert "telnetlib3" not in sys.modules, "imported before any Telnet host"
        host = otto.RemoteHost("192.0.2.1", user="someone")
        assert "asyncssh" in sys.modules
        assert type(host.connection).__name__ == "SshConnection", host.connection
        assert host.port == 22
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "ok\n"
    assert proc.stderr == ""


def test_every_term_names_a_connection_kind_that_serves_it() -> None:
    for term in CONNECTIONS:
        kind = connection_kind(term)
        assert issubclass(kind, Connection)
        assert term in kind.terms


def test_an_unknown_term_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match=r"term must be one of \['console', 'serial', 'ssh'"):
        RemoteHost("192.0.2.1", user="u", term="mosh")  # type: ignore[arg-type]


def test_a_hop_must_be_an_ssh_host() -> None:
    telnet = RemoteHost("192.0.2.1", user="u", term="telnet", name="tel")
    with pytest.raises(ValueError, match="hop 'tel' must be an SSH host"):
        RemoteHost("192.0.2.2", user="u", hop=telnet)
