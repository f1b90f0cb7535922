"""What a host last had deployed where: the record ``deploy`` skips an identical image by.

The record is kept in the lab's reservation store (``otto.reservations``), so
every machine of a shared lab sees it; this module only says what a record is
and what a store must offer to keep one (``DeployRecords``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

__all__ = ["DeployRecords", "Deployment"]


@dataclass(frozen=True, slots=True)
class Deployment:
    """One image loaded on one host, at one place.

    ``target`` is where it went: a load address (``0x40200000``) for the
    bootloader's transports, a path for ``via="shell"``.
    """

    host: str
    target: str
    sha256: str
    image: str
    """The file's name, as given to ``deploy``."""
    size: int
    via: str
    by: str = ""
    """Who deployed it (``$OTTO_USER``, else ``login@machine``)."""
    at: datetime | None = None
    """When, on the store's clock (set by the store)."""


class DeployRecords(Protocol):
    """Where deployments are recorded (a reservation store offers these)."""

    async def deployment(self, host: str, target: str) -> Deployment | None:
        """The last image recorded on ``host`` at ``target``, if any."""
        ...

    async def record_deployment(self, deployment: Deployment) -> None:
        """Record ``deployment``, replacing what was recorded at its host and target."""
        ...

    async def forget_deployment(self, host: str, target: str) -> None:
        """Drop the record at ``host`` and ``target`` (a load started there)."""
        ...
