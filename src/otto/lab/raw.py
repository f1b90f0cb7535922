"""A host's lab entry as read from its sources, before it is validated."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["HOST_FIELDS", "MAX_DEPTH", "NAME_RE", "RawHost", "deeper_than", "where_of"]

#: How deeply a lab file may nest lists and objects (a lab needs five levels).
MAX_DEPTH = 64

HOST_FIELDS = (
    "name",
    "term",
    "address",
    "user",
    "password",
    "key",
    "port",
    "hop",
    "tags",
    "features",
    "known_hosts",
    "connect_timeout",
    "become_password",
    "power",
    "console_protocol",
    "baud",
    "console_log",
    "snmp",
    "boot",
    "usb",
)
NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
"""What a host name may be: letters, digits, ``_ . -``."""


@dataclass
class RawHost:
    """A host's fields as merged so far, each with the file it came from."""

    fields: dict[str, tuple[object, str]] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    variables: dict[str, list[str]] = field(default_factory=dict)
    """The environment variables each field's value came from (never shown in errors)."""


def where_of(file: str, host: str | None, fld: str | None = None) -> str:
    parts = [file]
    if host is not None:
        parts.append(f"host {host!r}")
    if fld is not None:
        parts.append(f"field {fld!r}")
    return ": ".join(parts)


def deeper_than(value: object, limit: int = MAX_DEPTH) -> bool:
    """Whether lists and dicts in ``value`` nest deeper than ``limit`` (walked, not recursed)."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = list(item)
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
