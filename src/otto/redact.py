"""One redaction for everything otto writes: files, messages, exceptions and reprs.

Secrets are registered once, where they enter otto (a lab's passwords, a
host's ``password=`` or ``become_password=``, a store URL's password), and
every writer passes its text through :func:`redact` or, for text that comes
in pieces, a :class:`StreamRedactor`, which holds back a tail that could be
the start of a secret until the next piece shows whether it is. A secret split
across two reads is masked all the same.

URLs with a password (``scheme://user:pw@host``, ``?password=pw``) are masked
whether or not their password was registered; in a stream too, split anywhere
(a stream holds back an unfinished one, at most :data:`URL_HOLD` characters).

Secrets shorter than :data:`MIN_LENGTH` characters are not registered: masking
every ``ab`` in a transcript would destroy the evidence and protect nothing.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable

__all__ = [
    "MASK",
    "MIN_LENGTH",
    "StreamRedactor",
    "forget",
    "redact",
    "redact_all",
    "redact_bytes",
    "register",
    "secrets",
]

MASK = "***"
MIN_LENGTH = 3

_lock = threading.Lock()
_secrets: dict[str, int] = {}
"""Each registered secret, with how many owners registered it."""
_pattern: re.Pattern[str] | None = None
_longest = 0

# userinfo of a URL: everything up to the last '@' before the host, so a
# password holding '@' is masked whole.
_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/?#\s@]*:)([^/?#\s]*)(@)")
_QUERY_PASSWORD = re.compile(r"([?&;](?:password|passwd|pass|pwd|secret|token)=)([^&;#\s]*)", re.I)
_QUERY_KEYS = ("password=", "passwd=", "pass=", "pwd=", "secret=", "token=")
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_RUN = re.compile(r"\S*")

CONTEXT = 256
"""How much of what a stream wrote is kept to match a URL that the next pieces end."""

URL_HOLD = 4096
"""At most this many closing characters are held back as a URL or query password
that the next piece may finish (a longer one is written as it is)."""


def register(*values: str | None) -> None:
    """Add secrets that must never appear in what otto writes."""
    changed = False
    with _lock:
        for value in values:
            if not value or len(value) < MIN_LENGTH:
                continue
            count = _secrets.get(value, 0)
            _secrets[value] = count + 1
            changed = changed or count == 0
        if changed:
            _rebuild()


def forget(*values: str | None) -> None:
    """Drop one registration of each of ``values`` (the secret stays while others hold it)."""
    with _lock:
        changed = False
        for value in values:
            count = _secrets.get(value or "", 0)
            if count == 1:
                del _secrets[value or ""]
                changed = True
            elif count > 1:
                _secrets[value or ""] = count - 1
        if changed:
            _rebuild()


def secrets() -> list[str]:
    """The registered secrets, longest first."""
    with _lock:
        return sorted(_secrets, key=len, reverse=True)


def _rebuild() -> None:
    global _pattern, _longest
    words = sorted(_secrets, key=len, reverse=True)
    _pattern = re.compile("|".join(re.escape(word) for word in words)) if words else None
    _longest = len(words[0]) if words else 0


def redact(text: str) -> str:
    """``text`` with every registered secret and URL password replaced by ``***``."""
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\1{MASK}\3", text)
    if "=" in text:
        text = _QUERY_PASSWORD.sub(rf"\1{MASK}", text)
    return text


def redact_bytes(data: bytes) -> bytes:
    """:func:`redact` for bytes (decoded as UTF-8 with surrogate escapes, so nothing is lost)."""
    if _pattern is None and b"://" not in data and b"=" not in data:
        return data
    return redact(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape")


def redact_all(texts: Iterable[str]) -> list[str]:
    """:func:`redact` of each of ``texts``."""
    return [redact(text) for text in texts]


def unfinished_url(text: str, before: str = "") -> int:
    """How many closing characters of ``text`` could be part of a URL's password, or
    of a ``?password=`` value, that the next piece finishes (0 if none).

    ``before`` is what was written just before ``text`` (a URL's scheme or user may
    be there already). Both end at white space (or ``/?#``, ``&;#``), so only the
    closing run of text without white space can be one, and only while that end
    has not come.
    """
    joined = before + text
    window = joined[-URL_HOLD:]
    run = _RUN.match(window[::-1])
    length = run.end() if run else 0
    if not length or length == URL_HOLD:
        return 0
    tail = window[-length:]
    start = -1  # where, in tail, the unfinished URL or query password begins
    # scheme://user:password@host: unfinished until /, ? or # (or white space) ends the
    # part before the host; or the tail may end in the middle of "://".
    at = tail.rfind("://")
    if at >= 0 and not any(c in tail[at + 3 :] for c in "/?#"):
        start = _scheme_start(tail, at)
    elif tail.endswith((":", ":/")):
        colon = tail.rfind(":")
        if colon > 0 and tail[colon - 1] in _SCHEME_CHARS:
            start = _scheme_start(tail, colon)
    if start < 0:
        # ?password=value: unfinished until &, ; or # (or white space) ends the value;
        # or the tail may end inside the key.
        mark = max(tail.rfind("?"), tail.rfind("&"), tail.rfind(";"))
        if mark >= 0:
            rest = tail[mark + 1 :].lower()
            key, equals, value = rest.partition("=")
            if (equals and key + "=" in _QUERY_KEYS and "#" not in value) or (
                not equals and any(k.startswith(rest) for k in _QUERY_KEYS)
            ):
                start = mark
    if start < 0:
        return 0
    return min(len(text), length - start)


def _closing_run(text: str) -> str:
    """The closing characters of ``text`` without white space, at most :data:`CONTEXT`."""
    window = text[-CONTEXT:]
    run = _RUN.match(window[::-1])
    return window[len(window) - run.end() :] if run and run.end() else ""


def _scheme_start(tail: str, end: int) -> int:
    """Where the URL scheme that ends at ``end`` in ``tail`` begins."""
    start = end
    while start > 0 and tail[start - 1] in _SCHEME_CHARS:
        start -= 1
    return start


class StreamRedactor:
    """Redacts text that arrives in pieces: a secret split between two pieces is still masked.

    :meth:`feed` returns what can be written now; the tail that could be the
    start of a secret, or a URL or query password not yet ended, is held until
    the next piece, or :meth:`flush`.
    """

    def __init__(self) -> None:
        self._held = ""
        self._before = ""
        """The closing run without white space of what was written (at most
        :data:`CONTEXT` characters): a URL's scheme and user may be there."""

    def feed(self, text: str) -> str:
        """What of ``held + text`` is safe to write now, redacted."""
        text = self._held + text
        self._held = ""
        if not text:
            return text
        before = self._before
        cut = len(text) - unfinished_url(text, before)
        longest = _longest
        if longest > 1:
            cut = min(cut, len(text) - self._partial_tail(text, longest))
        pattern = _pattern
        if pattern is not None and cut < len(text):
            # Never cut through a whole secret: it is masked now, in one piece.
            for match in pattern.finditer(text, max(0, cut - longest)):
                if match.start() < cut < match.end():
                    cut = match.end()
        text, self._held = text[:cut], text[cut:]
        return self._write(text)

    def _write(self, text: str) -> str:
        """``text`` redacted as what follows what was written."""
        if not text:
            return text
        before = self._before
        self._before = _closing_run(before + text)
        if before and (text[0] == ":" or any(c in before for c in ":?&;")):
            # A URL begun in what was written may end here: match it whole. What was
            # written is left as it was (else this piece is redacted alone). Without
            # a ':' or a query mark there, no match can reach back into it.
            joined = redact(before + text)
            if joined.startswith(before):
                return joined[len(before) :]
        return redact(text)

    @property
    def holding(self) -> bool:
        """Whether some text is held back for the next piece."""
        return bool(self._held)

    def flush(self) -> str:
        """Whatever is held back, redacted: at the end of the stream."""
        held, self._held = self._held, ""
        return self._write(held)

    @staticmethod
    def _partial_tail(text: str, longest: int) -> int:
        """How many closing characters of ``text`` could begin a secret (0 if none)."""
        window = text[-(longest - 1) :]
        words = secrets()
        for start in range(len(window)):
            piece = window[start:]
            if any(word.startswith(piece) and word != piece for word in words):
                return len(piece)
        return 0
