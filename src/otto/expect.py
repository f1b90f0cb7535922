"""The expect buffer: decoded output waiting to be matched. Pure: fed bytes, no I/O.

Match rules (as in pexpect): the earliest match in the stream wins (among
several patterns, the one whose match starts first; on a tie, the first
listed); what a match returns is everything received since the previous
match, up to and including this one. Text is decoded incrementally (a UTF-8 character split
across reads still decodes; invalid bytes become U+FFFD) and ``\\r\\n`` is
folded to ``\\n``, as in command output.

Each new piece of text is searched once per pattern, together with a window
of the text before it so that a match may straddle two reads; a match longer
than ``window`` characters that straddles reads can be missed, which is the
price of never rescanning. While nothing matches the buffer keeps at most
``max_chars`` characters, dropping the oldest (counted in ``dropped``, and in
the next match's ``dropped``).
"""

from __future__ import annotations

import re
from codecs import utf_8_decode as _utf8_decode
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ExpectBuffer", "ExpectMatch"]

DEFAULT_MAX_CHARS = 16 * 1024 * 1024
DEFAULT_WINDOW = 4096


@dataclass(frozen=True, slots=True)
class ExpectMatch:
    """Which of several patterns matched, and where."""

    index: int
    """Position of the matching pattern in the list given."""
    text: str
    """Everything received since the previous match, up to and including this one."""
    match: re.Match[str]
    """The regex match (``group()`` is the matched text, ``group(1)`` its first group)."""
    dropped: int = 0
    """Characters received before ``text`` (since the previous match) that the buffer
    dropped because it keeps at most ``max_chars``: ``text`` lost its start."""

    @property
    def matched(self) -> str:
        """The text the pattern matched."""
        return self.match.group()


_new_object = object.__new__
_SET_INDEX, _SET_TEXT, _SET_MATCH, _SET_DROPPED = (
    getattr(ExpectMatch, name).__set__ for name in ("index", "text", "match", "dropped")
)


class ExpectBuffer:
    """Bounded decoded text since the last match, searched incrementally."""

    def __init__(self, *, max_chars: int = DEFAULT_MAX_CHARS, window: int = DEFAULT_WINDOW) -> None:
        if window < 1 or max_chars < window:
            raise ValueError("need 1 <= window <= max_chars")
        self._max = max_chars
        self._window = window
        self._undecoded = b""  # the start of a UTF-8 character cut by a read
        self._chunks: list[str] = []
        self._size = 0
        self._held_cr = False
        self._patterns: tuple[re.Pattern[str], ...] = ()
        self._scanned = 0
        self.dropped = 0
        self._dropped_since = 0
        self._fed = False

    def __len__(self) -> int:
        return self._size

    def feed(self, data: bytes) -> None:
        """Append bytes as they arrived."""
        self._fed = True
        # What an incremental UTF-8 decoder does, without its layer of Python.
        if self._undecoded:
            data = self._undecoded + data
        text, used = _utf8_decode(data, "replace", False)
        self._undecoded = data[used:] if used < len(data) else b""
        if self._held_cr:
            text = "\r" + text
            self._held_cr = False
        if not text:
            return
        if text.endswith("\r"):
            # It may be the first half of a \r\n split across reads: wait for the next.
            self._held_cr = True
            text = text[:-1]
        if "\r\n" in text:
            text = text.replace("\r\n", "\n")
        if text:
            self._chunks.append(text)
            self._size += len(text)
            if self._size > self._max:
                self._trim()

    def _trim(self) -> None:
        chunks = self._chunks
        excess = self._size - self._max
        cut = 0
        whole = 0
        while whole < len(chunks) and cut + len(chunks[whole]) <= excess:
            cut += len(chunks[whole])
            whole += 1
        del chunks[:whole]
        if cut < excess:
            chunks[0] = chunks[0][excess - cut :]
            cut = excess
        self._size -= cut
        self.dropped += cut
        self._dropped_since += cut
        self._scanned = max(0, self._scanned - cut)

    def text(self) -> str:
        """Everything pending (since the last match), without consuming it."""
        if len(self._chunks) > 1:
            self._chunks = ["".join(self._chunks)]
        held = "\r" if self._held_cr else ""
        return (self._chunks[0] if self._chunks else "") + held

    def take(self) -> str:
        """Consume and return everything pending."""
        text = self.text()
        self.clear()
        return text

    def clear(self) -> None:
        """Forget pending text and any half-decoded character."""
        if not self._fed:
            return
        self._fed = False
        self._dropped_since = 0
        self._chunks = []
        self._size = 0
        self._held_cr = False
        self._scanned = 0
        self._undecoded = b""

    def search(self, pattern: re.Pattern[str]) -> str | None:
        """Look for ``pattern`` in text not yet searched for it.

        Returns the pending text up to and including the earliest match (and
        consumes it), or None.
        """
        found = self.search_any((pattern,))
        return None if found is None else found.text

    def search_any(self, patterns: Sequence[re.Pattern[str]]) -> ExpectMatch | None:
        """Look for any of ``patterns`` in text not yet searched for them.

        The match that starts earliest wins; on a tie, the pattern listed first.
        Returns it (consuming the pending text up to its end), or None.
        """
        size = self._size
        if size == 0:
            return None  # nothing pending (nothing scanned either: _scanned is 0)
        key = patterns if type(patterns) is tuple else tuple(patterns)
        if key is not self._patterns and key != self._patterns:
            self._patterns = key
            self._scanned = 0
        scanned = self._scanned
        if scanned == 0:
            # The usual case (an App's prompt after a command): all is new, one piece.
            base = start = 0
            region = self.text()
        else:
            if scanned >= size:
                return None
            start = scanned - self._window if scanned > self._window else 0
            # One character of context before the start keeps ^, \b and lookbehinds honest.
            base = start - 1 if start > 0 else 0
            region = self._tail(size - base)
        best: re.Match[str] | None = None
        best_index = -1
        for index, pattern in enumerate(key):
            m = pattern.search(region, start - base)
            if m is not None and (best is None or m.start() < best.start()):
                best, best_index = m, index
        if best is None:
            self._scanned = size
            return None
        end = base + best.end()
        text = region if base == 0 else self.text()
        if end < len(text):
            self._chunks = [text[end:]]
            self._size = len(text) - end
        else:
            self._chunks = []
            self._size = 0
        self._scanned = 0
        dropped, self._dropped_since = self._dropped_since, 0
        # On every prompt of an App: the slots filled directly, not through the
        # frozen dataclass's __init__.
        found = _new_object(ExpectMatch)
        _SET_INDEX(found, best_index)
        _SET_TEXT(found, text[:end])
        _SET_MATCH(found, best)
        _SET_DROPPED(found, dropped)
        return found

    def _tail(self, n: int) -> str:
        """The last ``n`` characters of pending text, joining as few chunks as possible."""
        if n >= self._size:
            return self.text()
        parts: list[str] = []
        got = 0
        for chunk in reversed(self._chunks):
            parts.append(chunk)
            got += len(chunk)
            if got >= n:
                break
        joined = "".join(reversed(parts))
        return joined[len(joined) - n :]
