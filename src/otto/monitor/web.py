"""The monitor dashboard: a Starlette app over a metric source, and a uvicorn server for it.

Routes of ``create_app``:

- ``/``: the page (``static/index.html``), ``/static/...``: its files (uPlot is vendored).
- ``/api/snapshot``: the source's snapshot as JSON; ``?run=N|LABEL``: a stored run's.
  Every snapshot has ``outages`` (``Outage.as_dict``, by start) and ``now``, the time an
  open outage is measured to; a live collector's also ``costs``, each host's round cost.
- ``/api/runs``: ``{"runs": [Run.as_dict(), ...], "current": id}``, the runs of the
  source's database (or file) and the one it shows by default; ``runs`` is empty for a
  source without history.
- ``/api/events``: ``GET`` lists the events, ``POST {"label", "color"?, "end"?}`` adds one.
- ``/api/stream``: Server-Sent Events. The first message is ``{"type": "snapshot",
  "snapshot": {...}}`` (its series in columns, see ``_column_chunks``), then every
  round and event of the source as it happens, each a ``data:`` JSON line; a comment
  line every 15 s keeps proxies from closing the stream; ``{"type": "end"}`` when the
  source stops. ``?run=N|LABEL`` streams a stored run instead: its snapshot, then ``end``.
- ``/metrics``: Prometheus text from ``otto.monitor.prometheus.render_metrics``, with
  ``otto_host_down_seconds_total``.

A source with outages of its own (``outage_tracker()``: a ``Replay``, a ``MemorySource``)
shows those; for one without (a ``Collector``) the dashboard derives them from the
rounds it publishes while the ``DashboardServer`` runs (``otto.monitor.outages``).

With an access token (``create_app(token=...)``; ``DashboardServer`` makes one on
any address but loopback) every route answers the same 401 to a request without
it (``otto.monitor.access``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import json
import logging
import math
import re
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from otto.errors import StoreError
from otto.monitor.access import AccessGuard, check_token, link, load_tls, new_token
from otto.monitor.addresses import reachable_addresses
from otto.monitor.connections import (
    ACCEPT_BURST,
    HEADER_TIMEOUT,
    IDLE_TIMEOUT,
    LISTEN_BACKLOG,
    ConnectionLimits,
    bounded_protocol,
    connection_limit,
)
from otto.monitor.outages import LiveOutages, OutageTracker
from otto.monitor.prometheus import render_metrics
from otto.monitor.source import DashboardSource, build_snapshot, split_finite
from otto.monitor.subscription import DEFAULT_BACKLOG, Subscribers

__all__ = [
    "MAX_CLIENTS",
    "SEND_TIMEOUT",
    "DashboardServer",
    "DashboardSource",
    "MemorySource",
    "create_app",
    "serve",
]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
HEARTBEAT_INTERVAL = 15.0
"""Seconds between SSE comment lines sent to keep an idle stream open."""
MAX_CLIENTS = 32
"""Event streams a dashboard serves at once."""
SEND_TIMEOUT = 30.0
"""Seconds a write to an event stream may wait for a client that does not read."""

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
_MAX_LABEL = 200
_COLOR_RE = re.compile(r"#[0-9a-fA-F]{3,8}|[a-zA-Z]{1,30}")
# How many points to encode between yields to the event loop while writing a snapshot,
# so that a large history does not stall the collector's rounds.
_POINTS_PER_SLICE = 20_000
_PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
}


# ---------------------------------------------------------------------------------------
# An in-memory source


class MemorySource:
    """A ``DashboardSource`` kept in memory, fed by ``push_round`` and ``add_event``.

    It shows metrics otto does not collect itself, and it is the dashboard's test double.

    Args:
        interval: the expected seconds between rounds, shown on the page.
        live: false to present the data as a replay of a saved run.
        clock: returns Unix seconds; used to stamp events.
        max_backlog: updates a subscriber may have pending before it is cut off.
    """

    def __init__(
        self,
        *,
        interval: float = 1.0,
        live: bool = True,
        clock: Callable[[], float] = time.time,
        max_backlog: int = DEFAULT_BACKLOG,
    ) -> None:
        self.interval = interval
        self.live = live
        self._clock = clock
        self._hosts: dict[str, tuple[bool, str]] = {}
        # Points are stored as the [t, v] pairs a snapshot hands out: never mutated, so a
        # snapshot shares them instead of building a million small lists.
        self._series: dict[tuple[str, str], list[list[float]]] = {}
        self._events: list[dict[str, object]] = []
        self._outages = OutageTracker()
        self._subscribers = Subscribers(max_backlog)
        self.dropped_values = 0
        """Values left out of ``push_round`` because they were NaN, infinite or not numbers."""

    @property
    def subscriber_count(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    def push_round(
        self,
        t: float,
        hosts: Mapping[str, Mapping[str, float] | None],
        *,
        errors: Mapping[str, str] | None = None,
        duration: float = 0.0,
    ) -> None:
        """Record one round: each host's metrics, or ``None`` for a host that is down."""
        errors = errors or {}
        message_hosts: dict[str, object] = {}
        for name, metrics in hosts.items():
            up = metrics is not None
            error = errors.get(name, "" if up else "down")
            self._hosts[name] = (up, error)
            self._outages.record(t, name, up, error)
            values, dropped = split_finite(metrics or {})
            if dropped:
                self.dropped_values += len(dropped)
                log.warning("%s: dropped non-finite values of %s", name, ", ".join(dropped))
            for metric, value in values.items():
                self._series.setdefault((name, metric), []).append([t, value])
            entry: dict[str, object] = {"up": up, "metrics": values}
            if error:
                entry["last_error"] = error
            message_hosts[name] = entry
        self._subscribers.publish(
            {"type": "round", "t": t, "duration": duration, "hosts": message_hosts}
        )

    def snapshot(self) -> dict[str, object]:
        """Return the stored rounds, events and outages (see ``DashboardSource.snapshot``)."""
        snapshot = build_snapshot(
            interval=self.interval,
            live=self.live,
            hosts=self._hosts,
            series=((host, metric, points) for (host, metric), points in self._series.items()),
            events=self._events,
        )
        snapshot["outages"] = [o.as_dict() for o in self._outages.outages()]
        snapshot["now"] = self._now()
        return snapshot

    def outage_tracker(self) -> OutageTracker:
        """The outages of the rounds pushed so far."""
        return self._outages

    def down_seconds(self) -> dict[str, float]:
        """``{host: seconds down}``, an open outage counted up to now (the clock, or the
        latest round if that is later)."""
        totals = dict.fromkeys(self._hosts, 0.0)
        totals.update(self._outages.down_seconds(self._now()))
        return totals

    def _now(self) -> float:
        latest = self._outages.latest
        return self._clock() if latest is None else max(self._clock(), latest)

    def subscribe(self) -> AsyncIterator[dict[str, object]]:
        """Return the updates from now on; it ends when ``stop`` is called."""
        return self._subscribers.subscribe()

    def add_event(
        self, label: str, color: str | None = None, end: float | None = None
    ) -> dict[str, object]:
        """Add an annotation stamped now and tell the subscribers."""
        event: dict[str, object] = {
            "id": len(self._events) + 1,
            "t": self._clock(),
            "end": end,
            "label": label,
            "color": color,
        }
        self._events.append(event)
        self._subscribers.publish({"type": "event", "event": dict(event)})
        return dict(event)

    def stop(self) -> None:
        """End every subscription, as a collector does when it stops."""
        self._subscribers.stop()


# ---------------------------------------------------------------------------------------
# JSON


def _finite(value: object) -> object:
    """Replace NaN and infinities (not JSON) by null, recursively."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _dumps(value: object) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(value), separators=(",", ":"), allow_nan=False)


async def _encode_snapshot(snapshot: Mapping[str, object]) -> str:
    """Encode a snapshot as JSON, yielding to the event loop now and then."""
    series = snapshot.get("series")
    if not isinstance(series, Mapping):
        return _dumps(snapshot)
    rest = _dumps({key: value for key, value in snapshot.items() if key != "series"})
    parts = [rest[:-1], "," if rest != "{}" else "", '"series":{']
    encoded = 0
    for i, (metric, by_host) in enumerate(series.items()):
        parts.append(("," if i else "") + _dumps(str(metric)) + ":{")
        if isinstance(by_host, Mapping):
            for j, (host, points) in enumerate(by_host.items()):
                parts.append(("," if j else "") + _dumps(str(host)) + ":" + _dumps(points))
                encoded += len(points) if isinstance(points, Sequence) else 1
                if encoded >= _POINTS_PER_SLICE:
                    encoded = 0
                    await asyncio.sleep(0)
        parts.append("}")
    parts.append("}}")
    return "".join(parts)


async def _column_chunks(
    snapshot: Mapping[str, object], chunk_chars: int = 1 << 16
) -> AsyncIterator[str]:
    """Encode a snapshot for the page in pieces of about ``chunk_chars``: each distinct
    timeline once, then values only.

    ``series`` becomes ``{metric: {host: [i, [v, ...]]}}`` where ``i`` indexes a new
    ``timelines: [[t, ...], ...]`` (written last, once every series is out). The hosts
    of a collector share their round times, so this is half the size of ``[t, v]``
    pairs and half the time to encode. A stream sends each piece before the next is
    encoded, so a client that reads slowly (or not at all) never pins the whole
    encoded snapshot.
    """
    series = snapshot.get("series")
    rest = {key: value for key, value in snapshot.items() if key != "series"}
    timelines: list[list[object]] = []
    known: dict[tuple[int, object, object], list[int]] = {}
    parts: list[str] = ['{"series":{']
    size = 0
    encoded = 0
    for i, (metric, by_host) in enumerate(series.items() if isinstance(series, Mapping) else ()):
        parts.append(("," if i else "") + _dumps(str(metric)) + ":{")
        for j, (host, points) in enumerate(by_host.items() if isinstance(by_host, Mapping) else ()):
            times = [point[0] for point in points]
            values = [point[1] for point in points]
            key = (len(times), times[0] if times else None, times[-1] if times else None)
            same = known.setdefault(key, [])
            index = next((k for k in same if timelines[k] == times), None)
            if index is None:
                index = len(timelines)
                timelines.append(times)
                same.append(index)
            piece = f"{',' if j else ''}{_dumps(str(host))}:[{index},{_dumps(values)}]"
            parts.append(piece)
            size += len(piece)
            encoded += len(times)
            if size >= chunk_chars:
                yield "".join(parts)
                parts, size = [], 0
            if encoded >= _POINTS_PER_SLICE:
                encoded = 0
                await asyncio.sleep(0)
        parts.append("}")
    rest["timelines"] = timelines
    tail = _dumps(rest)
    parts.append("}" + ("," + tail[1:] if tail != "{}" else "}"))
    yield "".join(parts)


def _sse(message: object) -> bytes:
    return f"data: {_dumps(message)}\n\n".encode()


# ---------------------------------------------------------------------------------------
# Server-Sent Events


class _ClientDropped(Exception):
    """A client that stopped reading was cut off."""


class _StreamHub:
    """Counts open event streams (at most ``max_clients``) and ends them on shutdown."""

    def __init__(self, max_clients: int) -> None:
        self._open: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._reserved = 0
        self.max_clients = max_clients
        self.closed = False

    def reserve(self) -> bool:
        """Take a slot for a new stream; false when all are taken."""
        if self._reserved >= self.max_clients:
            return False
        self._reserved += 1
        return True

    def release(self) -> None:
        self._reserved -= 1

    @contextlib.contextmanager
    def register(self) -> Iterator[asyncio.Event]:
        entry = (asyncio.get_running_loop(), asyncio.Event())
        if self.closed:
            entry[1].set()
        self._open.add(entry)
        try:
            yield entry[1]
        finally:
            self._open.discard(entry)

    def close(self) -> None:
        self.closed = True
        for loop, event in list(self._open):
            # Test clients run the app on a loop of their own, in another thread.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)


class _EventStreamResponse(Response):
    """Streams the snapshot, then the source's updates, until one side goes away.

    Every write has ``send_timeout`` seconds to get through; a client that reads
    nothing for that long, or falls ``max_backlog`` updates behind, is cut off.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        source: DashboardSource,
        hub: _StreamHub,
        heartbeat: float,
        send_timeout: float,
        snapshot: Callable[[], dict[str, object]],
    ) -> None:
        # Not Response.__init__: it would declare a Content-Length for an empty body.
        self.status_code = 200
        self.background = None
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self._source = source
        self._snapshot = snapshot
        self._hub = hub
        self._heartbeat = heartbeat
        self._send_timeout = send_timeout
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        updates = self._source.subscribe()
        tasks: list[asyncio.Task[None]] = []
        try:
            with self._hub.register() as closing:
                await self._stream(updates, receive, send, closing, tasks)
        except OSError:
            pass  # the client went away while we were sending
        except _ClientDropped as dropped:
            log.warning("dashboard: dropped a client at %s: %s", _peer(scope), dropped)
        finally:
            self._hub.release()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            aclose = getattr(updates, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception as exc:  # the client is gone either way; say why
                    log.debug("closing a dashboard stream's updates failed: %s", exc)

    async def _stream(
        self,
        updates: AsyncIterator[dict[str, object]],
        receive: Receive,
        send: Send,
        closing: asyncio.Event,
        tasks: list[asyncio.Task[None]],
    ) -> None:
        async with self._lock:
            # Consume updates before taking the snapshot so that no round falls between
            # the two; the page drops the rounds that the snapshot already holds.
            tasks.append(asyncio.create_task(self._pump(updates, send)))
            await asyncio.sleep(0)
            await self._send(
                send, {"type": "http.response.start", "status": 200, "headers": self.raw_headers}
            )
            await self._send_body(send, b'data: {"type":"snapshot","snapshot":')
            async for piece in _column_chunks(self._snapshot()):
                await self._send_body(send, piece.encode())
            await self._send_body(send, b"}\n\n")
        tasks.append(asyncio.create_task(self._beat(send)))
        client_gone = asyncio.create_task(_disconnected(receive))
        shutdown = asyncio.create_task(_wait(closing))
        tasks += [client_gone, shutdown]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and (error := task.exception()) is not None:
                if isinstance(error, OSError | _ClientDropped):
                    raise error
                log.error("dashboard event stream failed", exc_info=error)
        if client_gone not in done:
            async with self._lock:
                await self._send(send, {"type": "http.response.body", "body": b""})

    async def _send(self, send: Send, message: Message) -> None:
        try:
            async with asyncio.timeout(self._send_timeout):
                await send(message)
        except TimeoutError:
            raise _ClientDropped(f"it read nothing for {self._send_timeout:g}s") from None

    async def _send_body(self, send: Send, chunk: bytes) -> None:
        await self._send(send, {"type": "http.response.body", "body": chunk, "more_body": True})

    async def _send_chunk(self, send: Send, chunk: bytes) -> None:
        async with self._lock:
            await self._send_body(send, chunk)

    async def _pump(self, updates: AsyncIterator[dict[str, object]], send: Send) -> None:
        async for message in updates:
            await self._send_chunk(send, _sse(message))
        if getattr(updates, "overflowed", False):
            raise _ClientDropped("it fell too far behind the updates")
        await self._send_chunk(send, _sse({"type": "end"}))

    async def _beat(self, send: Send) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            await self._send_chunk(send, b": keepalive\n\n")


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _wait(event: asyncio.Event) -> None:
    await event.wait()


# ---------------------------------------------------------------------------------------
# The app


class _OutageView:
    """The outages the dashboard shows of its source: the source's own, or (a source
    without a tracker, like a ``Collector``) derived from its rounds while serving."""

    def __init__(self, source: DashboardSource) -> None:
        self._source = source
        own = getattr(source, "outage_tracker", None)
        self.live = None if callable(own) else LiveOutages(source)
        # /metrics' counter never goes down: an outage's end is its first round up, which
        # can be a little earlier than the scrape that last counted it as open.
        self._reported: dict[str, float] = {}

    def tracker_of(self, shown: DashboardSource) -> OutageTracker | None:
        own = getattr(shown, "outage_tracker", None)
        if callable(own):
            tracker = own()
            return tracker if isinstance(tracker, OutageTracker) else None
        if shown is self._source and self.live is not None:
            return self.live.outage_tracker()
        return None

    def snapshot(self, shown: DashboardSource) -> dict[str, object]:
        """``shown``'s snapshot with its outages, ``now`` and (if it has them) round costs."""
        snapshot = shown.snapshot()
        if "outages" not in snapshot:
            tracker = self.tracker_of(shown)
            snapshot["outages"] = (
                [] if tracker is None else [o.as_dict() for o in tracker.outages()]
            )
            snapshot["now"] = time.time()
        costs = _costs_of(shown)
        if costs is not None:
            snapshot["costs"] = costs
        return snapshot

    def down_seconds(self) -> dict[str, float] | None:
        """``{host: seconds down so far}`` of the source, never less than reported before."""
        own = getattr(self._source, "down_seconds", None)
        if callable(own):
            totals: dict[str, float] = dict(own())
        elif self.live is not None:
            states = getattr(self._source, "host_states", None)
            totals = dict.fromkeys(states() if callable(states) else (), 0.0)
            totals.update(self.live.outage_tracker().down_seconds(time.time()))
        else:
            return None
        for host, seconds in totals.items():
            totals[host] = self._reported[host] = max(seconds, self._reported.get(host, 0.0))
        return totals


def _costs_of(source: DashboardSource) -> dict[str, dict[str, object]] | None:
    """Each host's round costs (``Collector.round_costs``): sums, and the latest round's."""
    read = getattr(source, "round_costs", None)
    if not callable(read):
        return None
    out: dict[str, dict[str, object]] = {}
    for host, tally in read().items():
        last = getattr(tally, "last", None)
        out[host] = {
            "rounds": tally.rounds,
            "seconds": tally.seconds,
            "received": tally.received,
            "processes": tally.processes,
            "counted": tally.counted,
            "last": None
            if last is None
            else {"seconds": last.seconds, "received": last.received, "processes": last.processes},
        }
    return out


def _events_of(source: DashboardSource) -> object:
    # A source may list its events without building a whole snapshot.
    events = getattr(source, "events", None)
    if callable(events):
        return events()
    return source.snapshot().get("events", [])


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=400)


async def _runs_of(source: DashboardSource) -> dict[str, object]:
    """``{"runs": [...], "current": id}``: the runs the source can show (read in a
    thread: it is the database file) and the one it shows by itself."""
    own = getattr(source, "run", None)
    current = getattr(own, "id", None)
    runs = getattr(source, "runs", None)
    listed: object = []
    if callable(runs):
        try:
            listed = await asyncio.to_thread(runs)
        except (OSError, ValueError, StoreError) as exc:
            log.warning("dashboard: cannot list the runs: %s", exc)
    return {"runs": listed, "current": current}


async def _run_of(source: DashboardSource, request: Request) -> DashboardSource | Response:
    """The source of the run ``?run=N|LABEL`` asks for: ``source`` itself by default,
    else the stored run (read in a thread); a JSON 404 when there is no such run."""
    which = request.query_params.get("run", "")
    if not which:
        return source
    pick = getattr(source, "run_source", None)
    if not callable(pick):
        return JSONResponse({"error": "this dashboard shows one run only"}, status_code=404)
    try:
        picked: DashboardSource = await asyncio.to_thread(pick, which)
    except (OSError, ValueError, StoreError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    return picked


def create_app(
    source: DashboardSource,
    *,
    allowed_hosts: Sequence[str] | None = None,
    token: str | None = None,
    secure: bool = False,
    heartbeat: float = HEARTBEAT_INTERVAL,
    max_clients: int = MAX_CLIENTS,
    send_timeout: float = SEND_TIMEOUT,
) -> Starlette:
    """Build the dashboard's ASGI app over ``source``.

    Args:
        source: what to display (a ``Collector``, a ``Replay``, a ``MemorySource``).
        allowed_hosts: accepted ``Host`` header names; ``None`` accepts any. A server on
            loopback passes its loopback names, so that a web page elsewhere cannot reach
            it through DNS rebinding.
        token: an access token every request must carry (``otto.monitor.access``);
            None: no token asked.
        secure: served over HTTPS (the token's cookie is then ``Secure``).
        heartbeat: seconds between keep-alive comments on ``/api/stream``.
        max_clients: event streams open at once; one more is answered 503.
        send_timeout: seconds a stream's write may wait for the client to read
            before the client is cut off.
    """
    hub = _StreamHub(max_clients)
    outages = _OutageView(source)

    async def index(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", headers=_PAGE_HEADERS)

    async def snapshot(request: Request) -> Response:
        shown = await _run_of(source, request)
        if isinstance(shown, Response):
            return shown
        body = await _encode_snapshot(outages.snapshot(shown))
        return Response(body, media_type="application/json")

    async def list_runs(request: Request) -> Response:
        return Response(_dumps(await _runs_of(source)), media_type="application/json")

    async def list_events(request: Request) -> Response:
        return Response(_dumps(_events_of(source)), media_type="application/json")

    async def add_event(request: Request) -> Response:
        # Requiring JSON makes a cross-site form post impossible: browsers preflight it.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send JSON"}, status_code=415)
        try:
            payload = await request.json()
        except ValueError:
            return _bad_request("the body is not valid JSON")
        if not isinstance(payload, dict):
            return _bad_request("expected a JSON object")
        label = payload.get("label")
        if not isinstance(label, str) or not label.strip():
            return _bad_request("label: a non-empty string is required")
        if len(label) > _MAX_LABEL:
            return _bad_request(f"label: at most {_MAX_LABEL} characters")
        color = payload.get("color")
        if color is not None and (not isinstance(color, str) or not _COLOR_RE.fullmatch(color)):
            return _bad_request("color: a #rgb/#rrggbb value or a colour name")
        end = payload.get("end")
        if end is not None and (
            isinstance(end, bool) or not isinstance(end, int | float) or not math.isfinite(end)
        ):
            return _bad_request("end: a Unix time in seconds, or null")
        event = source.add_event(label.strip(), color, None if end is None else float(end))
        return Response(_dumps(event), status_code=201, media_type="application/json")

    async def stream(request: Request) -> Response:
        if not hub.reserve():
            return Response(
                f"too many dashboard clients (at most {hub.max_clients}); try again later\n",
                status_code=503,
                media_type="text/plain",
                headers={"Retry-After": "5"},
            )
        shown = await _run_of(source, request)
        if isinstance(shown, Response):
            hub.release()
            return shown
        return _EventStreamResponse(
            shown, hub, heartbeat, send_timeout, functools.partial(outages.snapshot, shown)
        )

    async def metrics(request: Request) -> Response:
        body = render_metrics(source, down_seconds=outages.down_seconds())
        return Response(body, media_type=_PROMETHEUS_TYPE)

    middleware = []
    if token is not None:
        # Outermost: a request without the token learns nothing, not even a 400.
        middleware.append(Middleware(AccessGuard, token=token, secure=secure))
    if allowed_hosts is not None:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts)))
    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/snapshot", snapshot),
            Route("/api/runs", list_runs),
            Route("/api/events", list_events, methods=["GET"]),
            Route("/api/events", add_event, methods=["POST"]),
            Route("/api/stream", stream),
            Route("/metrics", metrics),
            Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        ],
        middleware=middleware,
    )
    app.state.otto_streams = hub
    app.state.otto_outages = outages.live
    return app


# ---------------------------------------------------------------------------------------
# The server


class _Uvicorn(uvicorn.Server):
    """A uvicorn server that reports when it listens and leaves signals to its host program."""

    def __init__(self, config: uvicorn.Config, started: asyncio.Event) -> None:
        super().__init__(config)
        self._started_event = started

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The program embedding the dashboard owns SIGINT/SIGTERM; cancelling stops us.
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._started_event.set()


class _DroppedClientFilter(logging.Filter):
    """Hides uvicorn's error for a stream the dashboard cut off on purpose (logged by us)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing response."


_DROPPED_CLIENT_FILTER = _DroppedClientFilter()


def _quiet_dropped_clients() -> None:
    logging.getLogger("uvicorn.error").addFilter(_DROPPED_CLIENT_FILTER)  # idempotent


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    """``host`` as a URL writes it: an IPv6 address in brackets."""
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host.strip("[]"), port), family=family, backlog=LISTEN_BACKLOG)
    sock.setblocking(False)
    return sock


class DashboardServer:
    """The dashboard served by uvicorn on this event loop.

    ``await server.start()`` returns once it listens (``port=0`` picks a free port, read
    it from ``.port``); ``await server.stop()`` ends open streams and shuts it down. It is
    also an async context manager.

    Args:
        source: what to display.
        host: the address to bind; loopback unless you mean to expose the dashboard.
        port: the TCP port, 0 for any free one.
        max_clients: event streams served at once (see ``create_app``).
        send_timeout: seconds before a client that reads nothing is cut off.
        token: the access token every request must carry; on an address other than
            loopback a random one is made when none is given (read it from ``.token``,
            or open ``.link``).
        tls_cert: a PEM certificate file: serve HTTPS (with ``tls_key``).
        tls_key: the PEM private key of ``tls_cert``.
        max_connections: connections open at once (``otto.monitor.connections``);
            None: ``MAX_CONNECTIONS``, or half the file descriptor limit if lower.
        header_timeout: seconds a connection has to send a request's headers.
        idle_timeout: seconds a connection may stay idle between requests.

    Raises:
        ValueError: a token too short, only one of ``tls_cert``/``tls_key``, or
            files that are not a matching PEM certificate and key.
    """

    def __init__(
        self,
        source: DashboardSource,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        max_clients: int = MAX_CLIENTS,
        send_timeout: float = SEND_TIMEOUT,
        token: str | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        max_connections: int | None = None,
        header_timeout: float = HEADER_TIMEOUT,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.host = host
        self._requested_port = port
        loopback = _is_loopback(host)
        if token is None and not loopback:
            token = new_token()
        self.token = None if token is None else check_token(token)
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("serving HTTPS needs both a certificate and its key")
        self._tls = None
        if tls_cert is not None and tls_key is not None:
            load_tls(Path(tls_cert), Path(tls_key))  # one clear error now, not in uvicorn
            self._tls = (str(tls_cert), str(tls_key))
        self.app = create_app(
            source,
            # The bound address itself too: the printed URL names it (127.0.0.2, say).
            allowed_hosts=(*_LOOPBACK_NAMES, _url_host(host).lower()) if loopback else None,
            token=self.token,
            secure=self._tls is not None,
            max_clients=max_clients,
            send_timeout=send_timeout,
        )
        self.limits = ConnectionLimits(
            max_connections=connection_limit() if max_connections is None else max_connections,
            header_timeout=header_timeout,
            idle_timeout=idle_timeout,
            guarded=self.token is not None,
        )
        self._socket: socket.socket | None = None
        self._addresses: list[str] | None = None
        self._port = port
        self._server: _Uvicorn | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The port it listens on (the real one when started with port 0)."""
        return self._port

    @property
    def url(self) -> str:
        """The page's address, e.g. ``http://127.0.0.1:8000/`` (never with the token).

        On a wildcard address (``0.0.0.0``, ``::``) it is the first of ``urls``.
        """
        return self.urls[0]

    @property
    def urls(self) -> list[str]:
        """Every address the page is reached at: the machine's own addresses for a
        wildcard bind (non-loopback ones first), else the one bound."""
        if self._addresses is None:
            self._addresses = reachable_addresses(self.host)
        scheme = "https" if self._tls else "http"
        return [f"{scheme}://{_url_host(a)}:{self.port}/" for a in self._addresses]

    @property
    def link(self) -> str:
        """The address to open: ``url``, with ``?token=...`` when a token guards it."""
        return link(self.url, self.token)

    @property
    def links(self) -> list[str]:
        """``urls``, each with ``?token=...`` when a token guards them."""
        return [link(url, self.token) for url in self.urls]

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Bind and start serving; return once connections are accepted."""
        if self._task is not None:
            raise RuntimeError("the dashboard server is already started")
        _quiet_dropped_clients()
        self._socket = _bind(self.host, self._requested_port)
        self._port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=5,
            access_log=False,  # request lines may hold the access token
            http=bounded_protocol(self.limits),
            backlog=ACCEPT_BURST,  # asyncio accepts this many per turn (see connections)
            timeout_keep_alive=math.ceil(self.limits.idle_timeout),
            ssl_certfile=self._tls[0] if self._tls else None,
            ssl_keyfile=self._tls[1] if self._tls else None,
        )
        started = asyncio.Event()
        self._server = _Uvicorn(config, started)
        self._task = asyncio.create_task(
            self._server.serve(sockets=[self._socket]), name="otto-dashboard"
        )
        waiter = asyncio.create_task(started.wait())
        try:
            await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            await self.stop()
            raise
        finally:
            waiter.cancel()
        if not started.is_set():
            task, self._task = self._task, None
            self._close_socket()
            task.result()
            raise RuntimeError("the dashboard server stopped while starting")
        # asyncio listened with the accept burst as its backlog: the kernel's queue
        # is made long again (listen on a listening socket only resizes it).
        self._socket.listen(LISTEN_BACKLOG)
        live: LiveOutages | None = self.app.state.otto_outages
        if live is not None:
            live.start()  # from now on: the rounds published while the page is served

    async def wait(self) -> None:
        """Wait until the server stops."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        """End the event streams, stop accepting, wait for open requests, close."""
        task, server = self._task, self._server
        self._task = None
        self.app.state.otto_streams.close()
        live: LiveOutages | None = self.app.state.otto_outages
        if live is not None:
            await live.stop()
        if task is not None and server is not None:
            server.should_exit = True
            try:
                await task
            finally:
                self._close_socket()
        else:
            self._close_socket()

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()


async def serve(
    source: DashboardSource,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    ready: asyncio.Event | None = None,
) -> None:
    """Serve the dashboard until cancelled.

    Args:
        source: what to display.
        host: the address to bind (loopback by default).
        port: the TCP port; 0 picks one (use ``DashboardServer`` to learn which).
        ready: set once the server accepts connections.
    """
    async with DashboardServer(source, host=host, port=port) as server:
        log.info("dashboard on %s", server.url)
        if ready is not None:
            ready.set()
        await server.wait()
