"""otto: run, drive, schedule and watch commands on local, SSH and Telnet hosts.

Names are imported on first use, so ``import otto`` (and ``otto --help``)
stays fast: SSH, Telnet and the monitor load only when something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from otto import results
    from otto.errors import (
        AuthenticationError,
        ConnectError,
        ConnectionLost,
        ExpectTimeout,
        ForwardError,
        HostKeyError,
        LabError,
        LeaseLost,
        OttoError,
        ReservationStoreError,
        ReservedError,
        SessionClosed,
        StoreError,
        TransferError,
    )
    from otto.fanout import do_for_all_hosts, run_on_all_hosts
    from otto.hosts import Host, LocalHost, RemoteHost
    from otto.hosts.apps import App
    from otto.hosts.power import PowerSpec
    from otto.instructions import InstructionError, instruction
    from otto.lab import Lab, all_hosts, get_host, load_lab
    from otto.loop import run
    from otto.periodic import RepeatRunner, RepeatStats
    from otto.reservations import reserve
    from otto.result import CommandStatus, RunResult, Status, TransferResult
    from otto.session import Session

_WHERE = {
    "App": "otto.hosts.apps",
    "AuthenticationError": "otto.errors",
    "CommandStatus": "otto.result",
    "ConnectError": "otto.errors",
    "ConnectionLost": "otto.errors",
    "ExpectTimeout": "otto.errors",
    "ForwardError": "otto.errors",
    "Host": "otto.hosts",
    "HostKeyError": "otto.errors",
    "InstructionError": "otto.instructions",
    "Lab": "otto.lab",
    "LabError": "otto.errors",
    "LeaseLost": "otto.errors",
    "LocalHost": "otto.hosts",
    "OttoError": "otto.errors",
    "PowerSpec": "otto.hosts.power",
    "RemoteHost": "otto.hosts",
    "RepeatRunner": "otto.periodic",
    "RepeatStats": "otto.periodic",
    "ReservationStoreError": "otto.errors",
    "ReservedError": "otto.errors",
    "RunResult": "otto.result",
    "Session": "otto.session",
    "SessionClosed": "otto.errors",
    "StoreError": "otto.errors",
    "Status": "otto.result",
    "TransferError": "otto.errors",
    "TransferResult": "otto.result",
    "all_hosts": "otto.lab",
    "do_for_all_hosts": "otto.fanout",
    "get_host": "otto.lab",
    "instruction": "otto.instructions",
    "load_lab": "otto.lab",
    "reserve": "otto.reservations",
    "results": "otto.results",
    "run": "otto.loop",
    "run_on_all_hosts": "otto.fanout",
}

__all__ = [
    "App",
    "AuthenticationError",
    "CommandStatus",
    "ConnectError",
    "ConnectionLost",
    "ExpectTimeout",
    "ForwardError",
    "Host",
    "HostKeyError",
    "InstructionError",
    "Lab",
    "LabError",
    "LeaseLost",
    "LocalHost",
    "OttoError",
    "PowerSpec",
    "RemoteHost",
    "RepeatRunner",
    "RepeatStats",
    "ReservationStoreError",
    "ReservedError",
    "RunResult",
    "Session",
    "SessionClosed",
    "Status",
    "StoreError",
    "TransferError",
    "TransferResult",
    "all_hosts",
    "do_for_all_hosts",
    "get_host",
    "instruction",
    "load_lab",
    "reserve",
    "results",
    "run",
    "run_on_all_hosts",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'otto' has no attribute {name!r}")
    imported = importlib.import_module(module)
    # A subpackage (otto.results) is itself the export.
    value = imported if module == f"{__name__}.{name}" else getattr(imported, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
