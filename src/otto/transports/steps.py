"""The steps of reaching a shell, as ``ConnectError.step`` names them, and their time.

A transport knows which step it is on when time runs out; the session that
waits for it only knows that no shell came. So a transport gives up a little
before the session does (``connect_budget``) and says which step did not finish.
"""

from __future__ import annotations

import os
import socket

__all__ = [
    "AUTHENTICATION",
    "LOGIN",
    "SHELL_START",
    "SSH_HANDSHAKE",
    "TCP_CONNECT",
    "connect_budget",
    "os_reason",
]

TCP_CONNECT = "TCP connect"
SSH_HANDSHAKE = "SSH handshake"
AUTHENTICATION = "authentication"
LOGIN = "login"
"""A Telnet or console login: prompts, user, password, until a shell answers."""
SHELL_START = "shell start"


def connect_budget(timeout: float) -> float:
    """Seconds a transport may spend connecting when its session waits ``timeout``.

    A little less than ``timeout`` (a tenth, at most a quarter second), so the
    transport's error, which names the step, is the one the user sees.
    """
    return timeout - min(0.25, timeout / 10)


def os_reason(exc: OSError) -> str:
    """What went wrong, in the words of the OS ("Connection refused"), without Python's detail."""
    if isinstance(exc, socket.gaierror) and exc.strerror:
        return exc.strerror  # the resolver's words: "Name or service not known"
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__
