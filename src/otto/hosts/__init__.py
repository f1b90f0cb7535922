"""Hosts: the verbs every host offers, and one file per kind of host or connection.

The names are imported on first use, so a local host never loads the modules
of devices, remote hosts or dry runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otto.hosts.base import DEFAULT_SESSION, Host
    from otto.hosts.device import DeviceHost
    from otto.hosts.dryrun import DryRunHost
    from otto.hosts.local import LocalHost
    from otto.hosts.remote import RemoteHost

__all__ = ["DEFAULT_SESSION", "DeviceHost", "DryRunHost", "Host", "LocalHost", "RemoteHost"]

_WHERE = {
    "DEFAULT_SESSION": "otto.hosts.base",
    "DeviceHost": "otto.hosts.device",
    "DryRunHost": "otto.hosts.dryrun",
    "Host": "otto.hosts.base",
    "LocalHost": "otto.hosts.local",
    "RemoteHost": "otto.hosts.remote",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'otto.hosts' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
