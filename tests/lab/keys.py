"""Generated keys and the files OpenSSH and asyncssh read them from."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from otto.transports.sshlib import asyncssh

from .hosts import SSH_PORT


def write_private_key(path: Path) -> str:
    """Write a fresh ed25519 private key (mode 0600) and its ``.pub``; return the public line."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key.export_private_key("openssh"))
    public = key.export_public_key("openssh").decode().strip()
    path.with_name(path.name + ".pub").write_text(public + "\n")
    return public


def fresh_public_key() -> str:
    """A public key line nobody holds the private half of."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    return key.export_public_key("openssh").decode().strip()


def known_hosts_pattern(address: str, port: int) -> str:
    """How OpenSSH names a host in known_hosts: bare on port 22, else ``[addr]:port``."""
    return address if port == SSH_PORT else f"[{address}]:{port}"


def write_known_hosts(path: Path, entries: Iterable[tuple[str, int, str]]) -> None:
    """Write ``(address, port, public key line)`` entries as a known_hosts file."""
    lines = [f"{known_hosts_pattern(addr, port)} {key}\n" for addr, port, key in entries]
    path.write_text("".join(lines))
