"""Talking to U-Boot about a load: its load address, its ``crc32`` of the bytes loaded."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from otto.errors import TransferError

if TYPE_CHECKING:
    from otto.hosts.apps import App

__all__ = ["DeployError", "bootloader_crc32", "default_address", "env_value", "parse_crc32"]

_CRC = re.compile(r"==>\s*([0-9a-fA-F]{8})\s*$", re.MULTILINE)
_ENV = re.compile(r"^(\w+)=(.*)$", re.MULTILINE)


class DeployError(TransferError):
    """An image could not be loaded or did not land as sent; says on which host and why."""


def parse_crc32(answer: str) -> int | None:
    """The checksum in U-Boot's ``crc32 ADDR SIZE`` answer (``... ==> add7b3cc``), or None."""
    found = _CRC.search(answer)
    return int(found.group(1), 16) if found else None


async def bootloader_crc32(app: App, host: str, address: int, size: int) -> int:
    """U-Boot's CRC-32 of ``size`` bytes at ``address``.

    Raises:
        DeployError: the answer holds no checksum (quoted).
    """
    answer = await app.cmd(f"crc32 {address:#x} {size:#x}")
    value = parse_crc32(answer)
    if value is None:
        raise DeployError(
            f"{host}: the bootloader's `crc32 {address:#x} {size:#x}` gave no checksum: "
            f"{answer[-300:]!r}"
        )
    return value


async def env_value(app: App, name: str) -> str | None:
    """The value of U-Boot's environment variable ``name``, or None when it is not set."""
    answer = await app.cmd(f"printenv {name}")
    for found in _ENV.finditer(answer.replace("\r", "")):
        if found.group(1) == name:
            return found.group(2).strip()
    return None


async def default_address(app: App, host: str) -> int:
    """Where to load when no address is given: U-Boot's ``loadaddr``.

    Raises:
        DeployError: ``loadaddr`` is not set (give ``address``).
    """
    value = await env_value(app, "loadaddr")
    if value is None:
        raise DeployError(f"{host}: no address given and the bootloader has no `loadaddr` set")
    try:
        return int(value, 16)
    except ValueError:
        raise DeployError(f"{host}: the bootloader's loadaddr {value!r} is no address") from None
