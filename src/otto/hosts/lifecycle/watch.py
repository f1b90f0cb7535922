"""``ConsoleWatch``: a console host's stream, watched as it is, with nothing typed on its own.

The steps between a board's states read the console through one raw session
(``private_session(raw=True)``): every byte the console prints reaches it, and
only what a step sends is written. The watch also keeps the tail of what the
console printed, for the error of a step that failed, and whether it has
watched without a break since it was opened (then the tail says where the board
is, and nothing needs to be typed to find out).
"""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from otto import redact
from otto.errors import ExpectTimeout, tail

if TYPE_CHECKING:
    from otto.expect import ExpectMatch
    from otto.hosts.base import Host
    from otto.session import Session

__all__ = ["ConsoleWatch", "visible"]

log = logging.getLogger("otto.lifecycle")

_TAIL_CHARS = 4096
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_ERASED = re.compile("[^\x08\n]\x08")
_EVERYTHING = re.compile(r"(?s).+\Z")
_ONE = re.compile(r"(?s).")


def visible(text: str) -> str:
    """``text`` as a person reads it: no terminal escapes, backspaces applied (a
    countdown's digits), ``\\r\\n`` as ``\\n``."""
    text = _ESCAPES.sub("", text).replace("\r\n", "\n")
    while "\x08" in text:
        shorter = _ERASED.sub("", text).lstrip("\x08")
        if shorter == text:
            break
        text = shorter
    return text


class ConsoleWatch:
    """One raw session on a console host's stream, and what the console printed last."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.printed = ""
        """The last characters the console printed (decoded, as they came)."""
        self.heard = 0
        """Bytes the console printed since the watch opened."""
        self._session: Session | None = None
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._broken = False

    @property
    def unbroken(self) -> bool:
        """True while the watch is open and has seen the stream without a break."""
        return self._session is not None and not self._broken

    def _heard(self, data: bytes) -> None:
        if not data:
            self._broken = True
            return
        self.heard += len(data)
        self.printed = (self.printed + self._decoder.decode(data))[-_TAIL_CHARS:]

    async def open(self) -> bool:
        """Open the watch if it is not open; True when it was open, unbroken, already."""
        if self.unbroken:
            return True
        await self.close()
        session = self.host.private_session("boot", raw=True)
        session.add_listener(self._heard)
        self._broken = False
        self.printed = ""
        self.heard = 0
        try:
            await session.start()
        except BaseException:
            await session.close()
            raise
        self._session = session
        log.debug("%s: watching the console", self.host.name)
        return False

    @property
    def session(self) -> Session:
        if self._session is None:
            raise RuntimeError("the console watch is not open")
        return self._session

    async def send(self, text: str) -> None:
        """Type ``text`` into the console as it is."""
        log.debug("%s: typing %r into the console", self.host.name, redact.redact(text))
        await self.session.send(text)

    async def wait(self, patterns: Sequence[re.Pattern[str]], timeout: float) -> ExpectMatch | None:
        """The first of ``patterns`` in what the console prints from now on (and what it
        printed since the last match), or None after ``timeout`` seconds.

        Raises:
            ConnectionLost: the console's stream closed.
        """
        try:
            return await self.session.expect(list(patterns), max(0.0, timeout))
        except ExpectTimeout:
            return None

    async def quiet(self, seconds: float) -> bool:
        """True when the console prints nothing for ``seconds``; else False, with only
        the first character that came taken (what follows it is still to be matched)."""
        return await self.wait([_ONE], seconds) is None

    async def forget(self) -> None:
        """Drop what arrived since the last match: what comes next is looked at alone."""
        await self.wait([_EVERYTHING], 0)

    def last(self, limit: int = 300) -> str:
        """What the console printed last, readable and with secrets masked, for errors."""
        return redact.redact(tail(visible(self.printed), limit))

    def shows(self, pattern: re.Pattern[str]) -> bool:
        """Whether ``pattern`` (anchored at the end) matches the end of what was printed."""
        return pattern.search(self.printed) is not None

    async def close(self) -> None:
        """Close the raw session (the console stays as it is)."""
        session, self._session = self._session, None
        self._broken = True
        self._decoder.reset()
        if session is not None:
            await session.close()
