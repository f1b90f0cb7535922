"""A shell session: a transport + command framing + the expect buffer + a lock.

One class for every kind of host: the transport moves bytes, this package
decides what they mean (``core``). All calls on a session are serialized by its
lock (``lock``), so two ``run`` calls never interleave their bytes.
"""

from otto.session.core import (
    DEFAULT_MAX_OUTPUT,
    Observer,
    OpeningSession,
    Pattern,
    Patterns,
    Session,
    Tap,
)
from otto.session.lock import SessionLock

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "Observer",
    "OpeningSession",
    "Pattern",
    "Patterns",
    "Session",
    "SessionLock",
    "Tap",
]
