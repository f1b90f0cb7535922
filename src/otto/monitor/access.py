"""Who may read the dashboard: an access token, and TLS, for a dashboard beyond loopback.

A dashboard bound to an address other than loopback is guarded by an access
token (``AccessGuard``): a request must carry it as ``?token=...``, as
``Authorization: Bearer ...``, or in the cookie set on the first visit with a
valid ``?token=`` (so that the page's own requests, its event stream included,
need nothing more). Any other request, to any path and with any method, gets
the same 401 answer, so a caller without the token learns nothing about which
paths exist. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, quote, unquote

from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "GRANTED",
    "MIN_TOKEN_LENGTH",
    "TOKEN_ENV",
    "UNAUTHORIZED_BODY",
    "AccessGuard",
    "Serving",
    "check_token",
    "link",
    "load_tls",
    "new_token",
]

TOKEN_ENV = "OTTO_MONITOR_TOKEN"
"""The environment variable ``otto monitor`` reads a token from when ``--token`` is not given."""

MIN_TOKEN_LENGTH = 16
"""Characters a token given by the user must have at least."""

GRANTED = "otto.access_granted"
"""Key ``AccessGuard`` sets (True) in a request's ``scope["state"]`` when it carries the
token: the server's connection handling keeps such connections over others."""

UNAUTHORIZED_BODY = (
    b"401 Unauthorized: this otto monitor needs its access token: open the URL it printed "
    b"(?token=...), or send 'Authorization: Bearer <token>'.\n"
)


@dataclass(frozen=True, slots=True)
class Serving:
    """Where and how ``otto monitor`` serves its dashboard.

    Attributes:
        bind: the address to listen on; loopback keeps the dashboard on this machine.
        token: the access token; None: none on loopback, a new one on any other address.
        tls_cert: a PEM certificate (chain) file to serve HTTPS with, with ``tls_key``.
        tls_key: the PEM private key of ``tls_cert``.
    """

    bind: str = "127.0.0.1"
    token: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    def check(self) -> Serving:
        """These options, checked before anything starts.

        Raises:
            ValueError: a token too short, only one of the TLS files, or TLS files
                that are not a matching PEM certificate and key.
        """
        if self.token is not None:
            check_token(self.token)
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("--tls-cert and --tls-key go together: give both")
        if self.tls_cert is not None and self.tls_key is not None:
            load_tls(self.tls_cert, self.tls_key)
        return self


def new_token() -> str:
    """A fresh random token (32 URL-safe characters, 192 bits)."""
    return secrets.token_urlsafe(24)


def check_token(token: str) -> str:
    """``token`` if it can guard a dashboard.

    Raises:
        ValueError: it is shorter than ``MIN_TOKEN_LENGTH`` or holds whitespace or
            control characters (the message never contains the token).
    """
    if len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(
            f"the access token must have at least {MIN_TOKEN_LENGTH} characters "
            f"(it has {len(token)}); leave it out to get a random one"
        )
    if any(c.isspace() or not c.isprintable() for c in token):
        raise ValueError("the access token must not contain spaces or control characters")
    return token


def link(url: str, token: str | None) -> str:
    """``url`` with ``?token=`` added when there is a token: the address to open."""
    if token is None:
        return url
    return f"{url}{'&' if '?' in url else '?'}token={quote(token, safe='')}"


def load_tls(cert: Path, key: Path) -> ssl.SSLContext:
    """A server TLS context from a PEM certificate and key, checked before serving.

    Raises:
        ValueError: a file is missing or unreadable, or they are not a matching
            PEM certificate and key; one line naming both files and the reason.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), str(key))
    except FileNotFoundError as exc:
        raise ValueError(f"cannot serve HTTPS: {exc.filename or cert} does not exist") from None
    except PermissionError as exc:
        raise ValueError(f"cannot serve HTTPS: {exc.filename or cert} is not readable") from None
    except (ssl.SSLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise ValueError(
            f"cannot serve HTTPS with certificate {cert} and key {key}: {reason} "
            "(both must be PEM files, and the key must match the certificate)"
        ) from None
    return context


def _digest(token: str) -> bytes:
    # Comparing fixed-size digests leaks neither the token's content nor its length.
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class AccessGuard:
    """ASGI middleware: every request must carry the access token, or gets 401.

    Args:
        app: the app to guard.
        token: the access token.
        secure: the server speaks HTTPS: the cookie is then marked ``Secure``.
    """

    def __init__(self, app: ASGIApp, *, token: str, secure: bool = False) -> None:
        self.app = app
        self._digest = _digest(token)
        self._secure = secure

    def _valid(self, candidate: str | None) -> bool:
        return candidate is not None and hmac.compare_digest(_digest(candidate), self._digest)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope["headers"])
        cookie_name = _cookie_name(scope)
        in_query = _query_token(scope.get("query_string", b""))
        authorization = headers.get("authorization", "")
        scheme, _, credentials = authorization.partition(" ")
        bearer = credentials.strip() if scheme.lower() == "bearer" else None
        cookie = cookie_parser(headers.get("cookie", "")).get(cookie_name)
        if cookie is not None:
            cookie = unquote(cookie)
        # Every way is checked, whichever comes first, so the time taken does not
        # tell which of them was close.
        by_query = self._valid(in_query)
        by_header = self._valid(bearer)
        by_cookie = self._valid(cookie)
        if not (by_query or by_header or by_cookie):
            await _refuse(scope, send)
            return
        state = scope.get("state")
        if isinstance(state, dict):
            state[GRANTED] = True
        if not by_query or by_cookie:
            await self.app(scope, receive, send)
            return
        assert in_query is not None
        set_cookie = _cookie(cookie_name, in_query, secure=self._secure)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", []), (b"set-cookie", set_cookie)]
            await send(message)

        await self.app(scope, receive, send_with_cookie)


def _headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    found: dict[str, str] = {}
    for name, value in raw:
        key = name.decode("latin-1").lower()
        if key in ("authorization", "cookie") and key not in found:
            found[key] = value.decode("latin-1")
    return found


def _query_token(query: bytes) -> str | None:
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if name == "token":
            return value
    return None


def _cookie_name(scope: Scope) -> str:
    # Browsers share cookies between the ports of one host: two monitors on one
    # machine must not overwrite each other's.
    server = scope.get("server")
    port = server[1] if server and len(server) > 1 and server[1] is not None else 0
    return f"otto_monitor_token_{port}"


def _cookie(name: str, token: str, *, secure: bool) -> bytes:
    value = quote(token, safe="")
    flags = "; Path=/; HttpOnly; SameSite=Strict" + ("; Secure" if secure else "")
    return f"{name}={value}{flags}".encode("latin-1")


async def _refuse(scope: Scope, send: Send) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(UNAUTHORIZED_BODY)).encode()),
                (b"www-authenticate", b'Bearer realm="otto monitor"'),
                (b"cache-control", b"no-store"),
                # Nothing more is served on a connection without the token: it is
                # closed rather than kept alive for more tries.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": UNAUTHORIZED_BODY})
