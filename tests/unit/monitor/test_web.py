"""The dashboard's HTTP surface: snapshot, events, the SSE stream, /metrics, the server."""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from otto.monitor.web import (
    STATIC_DIR,
    DashboardServer,
    MemorySource,
    create_app,
    serve,
)

T0 = 1_700_000_000.0


def source_with_rounds(rounds: int = 3, *, live: bool = True) -> MemorySource:
    source = MemorySource(interval=1.0, live=live, clock=lambda: T0 + 100)
    for k in range(rounds):
        source.push_round(
            T0 + k,
            {
                "web": {"cpu.percent": 10.0 + k, "mem.used_bytes": 1e9},
                "db": {"cpu.percent": 50.0 - k, "mem.used_bytes": 2e9} if k != 1 else None,
            },
            errors={"db": "timed out"} if k == 1 else None,
        )
    return source


def http_client(app: Starlette, base_url: str = "http://testserver") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with http_client(create_app(source_with_rounds())) as test_client:
        yield test_client


# ------------------------------------------------------------------------- plain routes


async def test_snapshot_is_the_source_snapshot(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/snapshot")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    snapshot = response.json()
    assert snapshot == json.loads(json.dumps(source_with_rounds().snapshot()))
    assert snapshot["metrics"] == ["cpu.percent", "mem.used_bytes"]
    assert snapshot["series"]["cpu.percent"]["web"] == [[T0, 10.0], [T0 + 1, 11.0], [T0 + 2, 12.0]]
    assert snapshot["series"]["cpu.percent"]["db"] == [[T0, 50.0], [T0 + 2, 48.0]]
    assert snapshot["hosts"]["db"] == {"up": True, "last_error": ""}


async def test_non_finite_values_are_dropped_and_counted() -> None:
    source = MemorySource()
    source.push_round(T0, {"web": {"cpu.percent": math.nan, "load.1m": math.inf}})
    source.push_round(T0 + 1, {"web": {"cpu.percent": 5.0, "load.1m": -math.inf}})
    async with http_client(create_app(source)) as test_client:
        snapshot = (await test_client.get("/api/snapshot")).json()
        metrics = (await test_client.get("/metrics")).text
    assert snapshot["series"] == {"cpu.percent": {"web": [[T0 + 1, 5.0]]}}
    assert source.dropped_values == 3
    assert 'otto_cpu_busy_ratio{host="web"} 0.05' in metrics
    assert "nan" not in metrics.lower() and "inf" not in metrics.lower()


async def test_empty_snapshot() -> None:
    source = MemorySource(interval=5.0, clock=lambda: T0)
    async with http_client(create_app(source)) as test_client:
        snapshot = (await test_client.get("/api/snapshot")).json()
    assert snapshot == {
        "interval": 5.0,
        "live": True,
        "hosts": {},
        "metrics": [],
        "series": {},
        "events": [],
        "outages": [],
        "now": T0,
    }


async def test_page_and_static_files(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "static/app.js" in page.text and "static/uPlot.iife.min.js" in page.text
    # The page may load nothing from elsewhere.
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert "http://" not in page.text and "https://" not in page.text
    for name in ("app.js", "app.css", "uPlot.iife.min.js", "uPlot.min.css"):
        response = await client.get(f"/static/{name}")
        assert response.status_code == 200, name
        assert len(response.content) > 100, name
    assert (await client.get("/static/nope.js")).status_code == 404
    assert (STATIC_DIR / "uPlot.LICENSE").read_text().startswith("The MIT License")


def test_static_files_reference_nothing_external() -> None:
    for name in ("index.html", "app.js", "app.css"):
        text = (STATIC_DIR / name).read_text()
        assert "http://" not in text and "https://" not in text, name


async def test_add_event_and_list_events(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/events", json={"label": "deploy v2", "color": "#ff8800"})
    assert response.status_code == 201
    event = response.json()
    assert event == {"id": 1, "t": T0 + 100, "end": None, "label": "deploy v2", "color": "#ff8800"}
    response = await client.post("/api/events", json={"label": "  soak test ", "end": T0 + 200})
    assert response.status_code == 201
    assert response.json()["label"] == "soak test"
    assert response.json()["end"] == T0 + 200
    listed = (await client.get("/api/events")).json()
    assert [e["label"] for e in listed] == ["deploy v2", "soak test"]
    assert (await client.get("/api/snapshot")).json()["events"] == listed


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"label": ""}, "label"),
        ({"label": "   "}, "label"),
        ({"color": "#fff"}, "label"),
        ({"label": "x" * 201}, "label"),
        ({"label": "ok", "color": "red; background: url(x)"}, "color"),
        ({"label": "ok", "color": 3}, "color"),
        ({"label": "ok", "end": "soon"}, "end"),
        ({"label": "ok", "end": True}, "end"),
        (["label"], "object"),
    ],
)
async def test_add_event_rejects_bad_input(
    client: httpx.AsyncClient, body: object, error: str
) -> None:
    response = await client.post("/api/events", json=body)
    assert response.status_code == 400
    assert error in response.json()["error"]
    assert (await client.get("/api/events")).json() == []


async def test_add_event_requires_json(client: httpx.AsyncClient) -> None:
    # A cross-site form can send text/plain without a preflight; JSON cannot.
    response = await client.post(
        "/api/events", content='{"label": "x"}', headers={"content-type": "text/plain"}
    )
    assert response.status_code == 415
    response = await client.post(
        "/api/events", content="{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert (await client.get("/api/events")).json() == []


async def test_metrics_served_in_the_prometheus_format(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'otto_cpu_busy_ratio{host="web"} 0.12' in response.text


async def test_allowed_hosts_reject_other_host_names() -> None:
    app = create_app(source_with_rounds(), allowed_hosts=["127.0.0.1", "localhost"])
    async with http_client(app, "http://127.0.0.1:8000") as test_client:
        assert (await test_client.get("/api/events")).status_code == 200
        rebound = await test_client.get("/api/events", headers={"host": "attacker.example:8000"})
        assert rebound.status_code == 400


# ------------------------------------------------------------------------- the SSE stream


class SseCall:
    """Drives one ASGI request to /api/stream on this loop and parses what it sends."""

    def __init__(self, app: object) -> None:
        self._app = app
        self._messages: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        self._gone = asyncio.Event()
        self._buffer = ""
        self.start: dict[str, object] | None = None
        self._comments: asyncio.Queue[str] = asyncio.Queue()
        self.finished = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> SseCall:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/api/stream",
            "raw_path": b"/api/stream",
            "root_path": "",
            "query_string": b"",
            "headers": [(b"host", b"testserver"), (b"accept", b"text/event-stream")],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.task = asyncio.create_task(self._app(scope, self._receive, self._send))  # type: ignore[operator]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.disconnect()
        assert self.task is not None
        async with asyncio.timeout(5):
            await self.task

    def disconnect(self) -> None:
        self._gone.set()

    async def _receive(self) -> dict[str, object]:
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            self.start = message
            return
        body = message.get("body", b"")
        assert isinstance(body, bytes)
        self._buffer += body.decode()
        while "\n\n" in self._buffer:
            block, self._buffer = self._buffer.split("\n\n", 1)
            for line in block.split("\n"):
                if line.startswith("data: "):
                    self._messages.put_nowait(json.loads(line[len("data: ") :]))
                elif line.startswith(":"):
                    self._comments.put_nowait(line)
        if not message.get("more_body", False):
            self.finished.set()

    async def next(self) -> dict[str, object]:
        async with asyncio.timeout(5):
            return await self._messages.get()

    async def next_comment(self) -> str:
        async with asyncio.timeout(5):
            return await self._comments.get()


def as_pairs(snapshot: dict[str, object]) -> dict[str, object]:
    """The stream's columnar snapshot back in the /api/snapshot shape."""
    timelines = snapshot.pop("timelines")
    assert isinstance(timelines, list)
    series = snapshot["series"]
    assert isinstance(series, dict)
    snapshot["series"] = {
        metric: {
            host: [[t, v] for t, v in zip(timelines[index], values, strict=True)]
            for host, (index, values) in by_host.items()
        }
        for metric, by_host in series.items()
    }
    return snapshot


async def test_stream_starts_with_snapshot_then_pushes_rounds_and_events() -> None:
    source = source_with_rounds()
    async with SseCall(create_app(source)) as call:
        first = await call.next()
        assert call.start is not None and call.start["status"] == 200
        headers = dict(call.start["headers"])  # type: ignore[call-overload]
        assert headers[b"content-type"].startswith(b"text/event-stream")
        assert b"content-length" not in headers
        assert first["type"] == "snapshot"
        snapshot = first["snapshot"]
        assert isinstance(snapshot, dict)
        # Each distinct timeline is sent once: db missed a round, web did not.
        assert snapshot["timelines"] == [[T0, T0 + 1, T0 + 2], [T0, T0 + 2]]
        assert snapshot["series"]["cpu.percent"]["db"] == [1, [50.0, 48.0]]
        assert as_pairs(snapshot) == json.loads(json.dumps(source.snapshot()))

        source.push_round(T0 + 3, {"web": {"cpu.percent": 13.0}, "db": None})
        round_ = await call.next()
        assert round_["type"] == "round"
        assert round_["t"] == T0 + 3
        assert round_["hosts"] == {
            "web": {"up": True, "metrics": {"cpu.percent": 13.0}},
            "db": {"up": False, "metrics": {}, "last_error": "down"},
        }

        event = source.add_event("failover", "#123456")
        assert await call.next() == {"type": "event", "event": event}
        assert source.subscriber_count == 1
    # The client went away: the subscription is closed with it.
    assert source.subscriber_count == 0


async def test_stream_of_an_empty_source() -> None:
    async with SseCall(create_app(MemorySource(interval=2.0, clock=lambda: T0))) as call:
        first = await call.next()
    assert first == {
        "type": "snapshot",
        "snapshot": {
            "interval": 2.0,
            "live": True,
            "hosts": {},
            "metrics": [],
            "events": [],
            "outages": [],
            "now": T0,
            "timelines": [],
            "series": {},
        },
    }


async def test_stream_ends_when_the_source_stops() -> None:
    source = source_with_rounds()
    async with SseCall(create_app(source)) as call:
        assert (await call.next())["type"] == "snapshot"
        source.stop()
        assert await call.next() == {"type": "end"}
        async with asyncio.timeout(5):
            await call.finished.wait()


async def test_stream_sends_heartbeats() -> None:
    async with SseCall(create_app(source_with_rounds(), heartbeat=0.01)) as call:
        assert (await call.next())["type"] == "snapshot"
        assert await call.next_comment() == ": keepalive"
        assert await call.next_comment() == ": keepalive"


async def test_stream_ends_on_server_shutdown() -> None:
    source = source_with_rounds()
    app = create_app(source)
    async with SseCall(app) as call:
        assert (await call.next())["type"] == "snapshot"
        app.state.otto_streams.close()
        async with asyncio.timeout(5):
            await call.finished.wait()
            assert call.task is not None
            await call.task
    assert source.subscriber_count == 0


async def test_stream_never_carries_nan_values() -> None:
    source = MemorySource()
    source.push_round(T0 - 1, {"web": {"cpu.percent": math.inf}})
    async with SseCall(create_app(source)) as call:
        first = await call.next()
        assert first["snapshot"]["series"] == {}  # type: ignore[index]
        source.push_round(T0, {"web": {"cpu.percent": math.nan, "load.1m": 1.0}})
        message = await call.next()
        assert message["hosts"] == {"web": {"up": True, "metrics": {"load.1m": 1.0}}}


# ------------------------------------------------------------------------- MemorySource


async def test_memory_source_subscribes_when_called() -> None:
    source = MemorySource()
    updates = source.subscribe()
    source.push_round(T0, {"web": {"cpu.percent": 1.0}})
    source.stop()
    received = [message async for message in updates]
    assert [m["type"] for m in received] == ["round"]
    assert [m async for m in source.subscribe()] == []


async def test_memory_source_cuts_off_a_subscriber_too_far_behind() -> None:
    source = MemorySource(max_backlog=3)
    updates = source.subscribe()
    for k in range(10):
        source.push_round(T0 + k, {"web": {"cpu.percent": float(k)}})
    received = [message async for message in updates]
    assert [m["t"] for m in received] == [T0, T0 + 1, T0 + 2]
    assert source.subscriber_count == 0


# ------------------------------------------------------------------------- the server


@pytest.fixture
async def server() -> AsyncIterator[tuple[DashboardServer, MemorySource]]:
    source = source_with_rounds()
    async with DashboardServer(source, port=0) as running:
        yield running, source


async def test_server_on_port_zero_serves_loopback(
    server: tuple[DashboardServer, MemorySource],
) -> None:
    running, _ = server
    assert running.host == "127.0.0.1"
    assert running.port > 0
    assert running.url == f"http://127.0.0.1:{running.port}/"
    async with httpx.AsyncClient(base_url=running.url) as http:
        assert (await http.get("/api/snapshot")).json()["metrics"] == [
            "cpu.percent",
            "mem.used_bytes",
        ]
        page = await http.get("/")
        assert page.status_code == 200 and "otto monitor" in page.text
        # DNS rebinding: a page on another name must not reach a loopback dashboard.
        rebound = await http.get("/api/snapshot", headers={"host": "attacker.example"})
        assert rebound.status_code == 400


async def test_server_streams_and_stop_ends_open_streams(
    server: tuple[DashboardServer, MemorySource],
) -> None:
    running, source = server
    async with (
        httpx.AsyncClient(base_url=running.url, timeout=10) as http,
        http.stream("GET", "/api/stream") as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.aiter_lines()
        async with asyncio.timeout(5):
            first = await anext(lines)
            assert json.loads(first[len("data: ") :])["type"] == "snapshot"
            source.push_round(T0 + 10, {"web": {"cpu.percent": 1.0}})
            line = await anext(lines)
            while not line.startswith("data: "):
                line = await anext(lines)
            assert json.loads(line[len("data: ") :])["t"] == T0 + 10
        async with asyncio.timeout(5):
            await running.stop()
            rest = [line async for line in lines]
        assert all(not line.startswith("data: ") for line in rest)
    assert not running.running
    assert source.subscriber_count == 0


async def test_server_port_in_use_raises() -> None:
    async with DashboardServer(MemorySource(), port=0) as first:
        with pytest.raises(OSError):
            await DashboardServer(MemorySource(), port=first.port).start()


async def test_serve_sets_ready_and_stops_when_cancelled() -> None:
    ready = asyncio.Event()
    task = asyncio.create_task(serve(MemorySource(), port=0, ready=ready))
    async with asyncio.timeout(10):
        await ready.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        async with asyncio.timeout(10):
            await task


async def test_metrics_with_the_real_exporter(client: httpx.AsyncClient) -> None:
    pytest.importorskip("otto.monitor.prometheus")
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert 'otto_host_up{host="web"} 1.0' in response.text
    assert 'otto_cpu_busy_ratio{host="web"' in response.text


# ------------------------------------------------------------ stuck and surplus clients


class WatchedSource(MemorySource):
    """A MemorySource that says when the server subscribes a client."""

    def __init__(self, max_backlog: int) -> None:
        super().__init__(interval=1.0, max_backlog=max_backlog)
        self.subscribed = asyncio.Event()

    def subscribe(self) -> AsyncIterator[dict[str, object]]:
        self.subscribed.set()
        return super().subscribe()


def big_source(rounds: int, max_backlog: int = 256) -> WatchedSource:
    """A source whose snapshot (megabytes) cannot fit in a stuck client's socket buffers."""
    source = WatchedSource(max_backlog)
    metrics = {f"m{i}": 1.0 / 3 + i for i in range(20)}
    for k in range(rounds):
        source.push_round(T0 + k, {"web": metrics, "db": metrics})
    return source


async def stuck_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A client that asks for the stream, then never reads (a tiny receive buffer)."""
    import socket

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
    writer.write(b"GET /api/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    await writer.drain()
    return reader, writer


class Dropped(logging.Handler):
    """Sets an event for each client the dashboard reports it dropped."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "dropped a client" in record.getMessage():
            self.count += 1
            self.changed.set()

    async def wait(self, count: int) -> None:
        while self.count < count:
            self.changed.clear()
            await self.changed.wait()


async def test_stuck_clients_are_dropped_after_the_send_timeout() -> None:
    source = big_source(20_000)
    dropped = Dropped()
    logger = logging.getLogger("otto.monitor.web")
    logger.addHandler(dropped)
    try:
        async with DashboardServer(source, port=0, send_timeout=0.5) as running:
            clients = [await stuck_client(running.port) for _ in range(3)]
            async with asyncio.timeout(20):
                await dropped.wait(3)
                # The server ended those streams: reading now meets the end of the
                # connection (without the chunked body's final terminator).
                for reader, writer in clients:
                    data = await reader.read()
                    assert data.startswith(b"HTTP/1.1 200")
                    assert not data.endswith(b"0\r\n\r\n")
                    writer.close()
            assert source.subscriber_count == 0
            # The server still serves everyone else.
            async with httpx.AsyncClient(base_url=running.url, timeout=10) as http:
                assert (await http.get("/api/snapshot")).status_code == 200
    finally:
        logger.removeHandler(dropped)


async def test_a_stuck_client_queues_a_bounded_backlog() -> None:
    source = big_source(20_000, max_backlog=8)
    async with DashboardServer(source, port=0, send_timeout=30) as running:
        _, writer = await stuck_client(running.port)
        await asyncio.wait_for(source.subscribed.wait(), 10)
        assert source.subscriber_count == 1
        for k in range(50):
            source.push_round(T0 + 30_000 + k, {"web": {"m0": 1.0}})
        # Cut off at 8 pending updates instead of keeping all 50 for a client that
        # does not read.
        assert source.subscriber_count == 0
        writer.close()


async def test_clients_beyond_the_cap_get_503() -> None:
    source = source_with_rounds()
    async with (
        DashboardServer(source, port=0, max_clients=2) as running,
        httpx.AsyncClient(base_url=running.url, timeout=10) as http,
    ):
        async with (
            http.stream("GET", "/api/stream") as one,
            http.stream("GET", "/api/stream") as two,
        ):
            assert one.status_code == two.status_code == 200
            third = await http.get("/api/stream")
            assert third.status_code == 503
            assert third.headers["retry-after"] == "5"
            assert "too many dashboard clients (at most 2)" in third.text
        async with asyncio.timeout(10):
            while True:
                async with http.stream("GET", "/api/stream") as again:
                    if again.status_code == 200:
                        break  # else the server is still closing the first two: ask again
