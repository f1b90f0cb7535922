"""The shell transport: a host at a shell gets the image with ``put``, checked with ``sha256sum``.

``put`` moves it the host's own way (SFTP or SCP over SSH, base64 chunks
through the shell on Telnet and consoles: ``otto.shellxfer``), writing beside
the target and renaming into place; the host's ``sha256sum`` of the file is
then compared with the local one.
"""

from __future__ import annotations

import shlex
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from otto.hosts.deploy.bootloader import DeployError
from otto.hosts.deploy.image import Image

if TYPE_CHECKING:
    from otto.hosts.base import Host

__all__ = ["DEFAULT_FOLDER", "load", "remote_sha256", "target_path"]

DEFAULT_FOLDER = "/tmp"


def target_path(image: Image, folder: str | None) -> str:
    """Where the image lands: ``folder/<file name>`` (default folder ``/tmp``)."""
    return str(PurePosixPath(folder or DEFAULT_FOLDER) / image.name)


async def remote_sha256(host: Host, path: str) -> str | None:
    """The host's SHA-256 of ``path``, or None when it has no such file."""
    result = await host.run(f"sha256sum -- {shlex.quote(path)} 2>/dev/null || true")
    words = result.output.split()
    return words[0] if words and len(words[0]) == 64 else None


async def load(host: Host, image: Image, folder: str | None) -> int:
    """Copy ``image`` into ``folder`` on ``host``; the bytes moved.

    Raises:
        DeployError: the copy failed, or the file on the host is not the image.
    """
    path = target_path(image, folder)
    result = await host.put(image.path, str(PurePosixPath(path).parent))
    if not result.is_ok:
        raise DeployError(f"{host.name}: copying {image.name} to {path} failed: {result.error}")
    found = await remote_sha256(host, path)
    if found != image.sha256:
        raise DeployError(
            f"{host.name}: {path} does not hold {image.name} after the copy: "
            f"its sha256 is {found or 'unreadable'}, the file's {image.sha256}"
        )
    return result.bytes
