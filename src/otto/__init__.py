"""otto: run, drive, schedule and watch commands on local, SSH and Telnet hosts."""

from otto.errors import (
    AuthenticationError,
    ConnectError,
    ConnectionLost,
    ExpectTimeout,
    HostKeyError,
    LabError,
    OttoError,
    SessionClosed,
    TransferError,
)
from otto.host import Host, LocalHost
from otto.loop import run
from otto.remote import RemoteHost
from otto.result import CommandStatus, RunResult, Status, TransferResult
from otto.session import Session

__all__ = [
    "AuthenticationError",
    "CommandStatus",
    "ConnectError",
    "ConnectionLost",
    "ExpectTimeout",
    "Host",
    "HostKeyError",
    "LabError",
    "LocalHost",
    "OttoError",
    "RemoteHost",
    "RunResult",
    "Session",
    "SessionClosed",
    "Status",
    "TransferError",
    "TransferResult",
    "run",
]
