"""The HTTP(S) driver: one request template per action, for a PDU's or relay's web API.

A template is ``{"method": "POST", "url": ..., "body": ..., "headers": {...},
"expect": 200 | [200, 204], "verify": true}``; ``expect`` absent means any
2xx status. The ``status`` template reads the response body: ``on_pattern``
/ ``off_pattern`` (regexes; by default the word ``on`` / ``off``, any case)
say the state, exactly one of them must be found.

The request runs in a thread (``urllib``: no dependency), bounded by the
caller's deadline; TLS certificates are verified unless ``verify`` is false.
URLs, bodies and headers go through ``otto.redact`` in every message.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from otto import redact
from otto.errors import ConnectError, tail
from otto.hosts.power.command import DEFAULT_OFF_PATTERN, DEFAULT_ON_PATTERN, match_state
from otto.hosts.power.driver import PowerAction, PowerDriver, PowerState, SwitchAction, why_late

if TYPE_CHECKING:
    from otto.hosts.base import Host

__all__ = ["HttpPower", "HttpRequest"]

_MAX_BODY = 1 << 20
"""Bytes of a response read at most (a status page is small)."""


@dataclass(frozen=True)
class HttpRequest:
    """One request of an HTTP power driver.

    Raises:
        ValueError: the URL is not http(s), or an ``expect`` is not a status code.
    """

    url: str
    method: str = "POST"
    body: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    expect: tuple[int, ...] = ()
    """The statuses that mean success; empty: any 2xx."""
    verify: bool = True
    on_pattern: str | None = None
    off_pattern: str | None = None

    def __post_init__(self) -> None:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"an HTTP power request needs an http(s):// URL, not {self.url!r}")
        for code in self.expect:
            if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 599:
                raise ValueError(f"'expect' must be HTTP status codes, not {code!r}")

    def describe(self) -> str:
        return redact.redact(f"HTTP {self.method} {self.url}")

    def accepts(self, code: int) -> bool:
        return code in self.expect if self.expect else 200 <= code < 300


def _send(request: HttpRequest, limit: float) -> tuple[int, str]:
    """Send ``request`` (blocking); its status and body. ``OSError`` when it got no answer."""
    data = request.body.encode() if request.body is not None else None
    made = urllib.request.Request(
        request.url, data=data, method=request.method.upper(), headers=dict(request.headers)
    )
    context = ssl.create_default_context()
    if not request.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(made, timeout=max(0.05, limit), context=context) as answer:
            return int(answer.status), answer.read(_MAX_BODY).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:  # an answer all the same: its status says
        body = exc.read(_MAX_BODY).decode("utf-8", "replace") if exc.fp is not None else ""
        return int(exc.code), body


class HttpPower(PowerDriver):
    """Power switched by HTTP requests: one ``HttpRequest`` per action given."""

    kind = "http"

    def __init__(self, requests: Mapping[PowerAction, HttpRequest]) -> None:
        if not requests:
            raise ValueError("an HTTP power driver needs at least one of on, off, cycle, status")
        self.requests = dict(requests)
        for request in self.requests.values():
            redact.register(*(v for k, v in request.headers.items() if _secret_header(k)))

    def __repr__(self) -> str:
        given = ", ".join(f"{k}={v.describe()!r}" for k, v in self.requests.items())
        return f"HttpPower({given})"

    def native(self, action: PowerAction) -> bool:
        return action in self.requests

    def describe(self, action: PowerAction) -> str:
        return self.requests[action].describe()

    async def _ask(self, host: Host, action: PowerAction, limit: float) -> str:
        request = self.requests[action]
        try:
            async with asyncio.timeout(limit):
                code, body = await asyncio.to_thread(_send, request, limit)
        except TimeoutError as exc:
            raise ConnectError(
                host.name, f"power {action}: {request.describe()} {why_late(limit)}"
            ) from exc
        except (OSError, ValueError) as exc:  # refused, unresolved, TLS, a timeout in the thread
            reason = getattr(exc, "reason", None) or exc
            raise ConnectError(
                host.name,
                redact.redact(f"power {action}: {request.describe()}: no answer: {reason}"),
            ) from exc
        if not request.accepts(code):
            wanted = ", ".join(map(str, request.expect)) if request.expect else "2xx"
            raise ConnectError(
                host.name,
                redact.redact(
                    f"power {action}: {request.describe()} answered {code} (expected {wanted}); "
                    f"body: {tail(body)!r}"
                ),
            )
        return body

    async def switch(self, host: Host, action: SwitchAction, limit: float) -> None:
        await self._ask(host, action, limit)

    async def state(self, host: Host, limit: float) -> PowerState:
        body = await self._ask(host, "status", limit)
        request = self.requests["status"]
        found = match_state(body, request.on_pattern, request.off_pattern)
        if found is None:
            raise ConnectError(
                host.name,
                redact.redact(
                    f"power status: {request.describe()} answered {tail(body)!r}, which matches "
                    f"not exactly one of on_pattern {request.on_pattern or DEFAULT_ON_PATTERN!r} "
                    f"and off_pattern {request.off_pattern or DEFAULT_OFF_PATTERN!r}"
                ),
            )
        return found


def _secret_header(name: str) -> bool:
    return name.lower() in ("authorization", "cookie", "x-api-key", "x-auth-token")
