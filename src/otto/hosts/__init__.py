"""Hosts: the verbs every host offers, and one file per kind of host or connection."""

from __future__ import annotations

from otto.hosts.base import DEFAULT_SESSION, Host
from otto.hosts.device import DeviceHost
from otto.hosts.dryrun import DryRunHost
from otto.hosts.local import LocalHost
from otto.hosts.remote import RemoteHost

__all__ = ["DEFAULT_SESSION", "DeviceHost", "DryRunHost", "Host", "LocalHost", "RemoteHost"]
