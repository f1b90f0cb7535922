"""The dashboard page in real headless Chromium, served by a real uvicorn on loopback.

Screenshots go to ``artifacts/dashboard/``.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
from playwright.async_api import Browser, ConsoleMessage, Page, Playwright, async_playwright, expect

from otto import LocalHost
from otto.monitor import Collector, Replay
from otto.monitor.web import DashboardServer, MemorySource

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"
T0 = 1_700_000_000.0
HOSTS = ["web-1", "web-2", "db"]
METRICS = [
    "cpu.percent",
    "disk.read_bytes_per_s",
    "disk.used_percent",
    "disk.write_bytes_per_s",
    "load.1m",
    "mem.percent",
    "mem.total_bytes",
    "mem.used_bytes",
    "net.rx_bytes_per_s",
    "net.tx_bytes_per_s",
]
TIMEOUT_MS = 15_000

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} is missing: scripts/install-system-deps installs Debian's chromium",
    ),
]


def metrics_for(host_index: int, k: int) -> dict[str, float]:
    phase = k / 6 + host_index
    return {
        "cpu.percent": 30 + 20 * math.sin(phase),
        "disk.read_bytes_per_s": 4e6 * (1 + math.sin(phase / 2)),
        "disk.used_percent": 40.0 + host_index,
        "disk.write_bytes_per_s": 2e6 * (1 + math.cos(phase)),
        "load.1m": 0.5 + host_index * 0.4,
        "mem.percent": 35 + 5 * host_index + math.sin(phase),
        "mem.total_bytes": 8 * 2**30,
        "mem.used_bytes": (2 + host_index) * 2**30,
        "net.rx_bytes_per_s": 1.5e6 * (1 + math.sin(phase)),
        "net.tx_bytes_per_s": 3e5 * (1 + host_index),
    }


def push(source: MemorySource, k: int, *, down: tuple[str, ...] = ()) -> None:
    source.push_round(
        T0 + k,
        {h: None if h in down else metrics_for(i, k) for i, h in enumerate(HOSTS)},
        errors={h: "connection refused" for h in down},
    )


def filled(rounds: int, *, live: bool = True) -> MemorySource:
    source = MemorySource(interval=1.0, live=live, clock=lambda: T0 + rounds / 2)
    for k in range(rounds):
        push(source, k)
    return source


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser(playwright: Playwright) -> AsyncIterator[Browser]:
    # A launched (not persistent) browser runs on a fresh temporary profile.
    browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        await browser.close()


class PageWatch:
    """Collects what the page complains about and where it tries to connect."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        self.foreign: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on("request", self._request)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type in {"error", "warning"}:
            self.errors.append(f"console {message.type}: {message.text}")

    def _request(self, request: object) -> None:
        url = getattr(request, "url", "")
        host = urlsplit(url).hostname
        if url.startswith(("data:", "blob:")) or host == "127.0.0.1":
            return
        self.foreign.append(url)

    def check(self) -> None:
        assert self.foreign == [], f"the page reached outside: {self.foreign}"
        assert self.errors == [], self.errors


async def open_page(
    browser: Browser, server: DashboardServer, *, bypass_csp: bool = True
) -> tuple[Page, PageWatch]:
    # bypass_csp lets wait_for_function evaluate its predicate; one test keeps the CSP.
    context = await browser.new_context(
        viewport={"width": 1400, "height": 1000}, bypass_csp=bypass_csp
    )
    page = await context.new_page()
    watch = PageWatch(page)
    await page.goto(server.url)
    return page, watch


async def wait_ready(page: Page) -> None:
    await page.wait_for_function("() => window.otto && window.otto.ready", timeout=TIMEOUT_MS)


async def point_count(page: Page, metric: str = "cpu.percent") -> int:
    count = await page.evaluate("m => otto.pointCount(m)", metric)
    assert isinstance(count, int)
    return count


async def wait_points(page: Page, count: int, metric: str = "cpu.percent") -> None:
    await page.wait_for_function(
        "([m, n]) => otto.pointCount(m) >= n", arg=[metric, count], timeout=TIMEOUT_MS
    )


async def wait_markers(page: Page, count: int) -> None:
    await page.wait_for_function(
        "n => Object.values(otto.charts).filter(c => c.visible).every(c => c.markers === n)",
        arg=count,
        timeout=TIMEOUT_MS,
    )
    last = page.locator(".card").last
    await last.scroll_into_view_if_needed()
    metric = await last.get_attribute("data-metric")
    await page.wait_for_function(
        "([m, n]) => otto.charts[m].markers === n", arg=[metric, count], timeout=TIMEOUT_MS
    )
    await page.evaluate("window.scrollTo(0, 0)")


async def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # Charts off screen are redrawn when scrolled to; a full-page shot needs them now.
    await page.evaluate("otto.redrawAll()")
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest_asyncio.fixture(loop_scope="session")
async def live() -> AsyncIterator[tuple[DashboardServer, MemorySource]]:
    source = filled(30)
    async with DashboardServer(source, port=0) as server:
        yield server, source
    source.stop()


async def test_live_rounds_are_drawn(
    browser: Browser, live: tuple[DashboardServer, MemorySource]
) -> None:
    server, source = live
    page, watch = await open_page(browser, server)
    await wait_ready(page)
    await expect(page.locator("#mode")).to_have_attribute("data-mode", "live")
    await expect(page.locator(".card")).to_have_count(len(METRICS))
    await expect(page.locator(".card canvas")).to_have_count(len(METRICS))
    assert await page.evaluate("Object.keys(otto.charts).sort()") == METRICS
    assert await point_count(page) == 30
    # One line per host, named after it, in every chart.
    labels = await page.evaluate(
        "Object.values(otto.charts).map(c => c.u.series.slice(1).map(s => s.label))"
    )
    assert labels == [sorted(HOSTS)] * len(METRICS)

    for k in range(30, 35):
        push(source, k)
    await wait_points(page, 35)
    for metric in METRICS:
        await wait_points(page, 35, metric)
    # The last drawn x is the last round, and the values are the pushed ones.
    assert await page.evaluate("otto.charts['cpu.percent'].u.data[0].at(-1)") == T0 + 34
    db_index = sorted(HOSTS).index("db") + 1
    last = await page.evaluate(f"otto.charts['cpu.percent'].u.data[{db_index}].at(-1)")
    assert last == pytest.approx(metrics_for(HOSTS.index("db"), 34)["cpu.percent"])
    # uPlot has taken the data: its x scale reaches the newest round.
    await page.wait_for_function(
        "t => otto.charts['cpu.percent'].u.scales.x.max >= t", arg=T0 + 34, timeout=TIMEOUT_MS
    )
    stats = await page.evaluate("({rounds: otto.stats.rounds, draws: otto.stats.drawMs.length})")
    assert stats["rounds"] == 5 and stats["draws"] >= 1
    await expect(page.locator("#summary")).to_contain_text("3 hosts")
    await screenshot(page, "live")

    source.stop()
    await expect(page.locator("#mode")).to_have_attribute("data-mode", "stopped")
    watch.check()
    await page.context.close()


async def test_events_from_the_page_and_from_the_source(
    browser: Browser, live: tuple[DashboardServer, MemorySource]
) -> None:
    server, source = live
    page, watch = await open_page(browser, server)
    await wait_ready(page)

    await page.fill("#event-label", "deploy v2.3")
    await page.click("#event-add")
    added = page.locator("#events li", has_text="deploy v2.3")
    await expect(added).to_have_count(1)
    await expect(page.locator("#event-label")).to_have_value("")
    events = source.snapshot()["events"]
    assert isinstance(events, list)
    assert [e["label"] for e in events] == ["deploy v2.3"]
    assert re.fullmatch(r"#[0-9a-f]{6}", events[0]["color"])
    # Drawn as a marker on every chart: at once on those on screen, on the others
    # when they scroll into view.
    await wait_markers(page, 1)

    # Events from elsewhere (the collector, the API) arrive over the stream.
    source.add_event("failover drill", "#7048e8", end=T0 + 25)
    await expect(page.locator("#events li", has_text="failover drill")).to_have_count(1)
    await wait_markers(page, 2)
    # The page's own event came back over the stream too; it is listed once.
    await expect(page.locator("#events li")).to_have_count(2)

    # A second page loading now sees both in the snapshot.
    other, other_watch = await open_page(browser, server)
    await wait_ready(other)
    await expect(other.locator("#events li")).to_have_count(2)
    await screenshot(page, "events")
    watch.check()
    other_watch.check()
    await other.context.close()
    await page.context.close()


async def test_replay_shows_the_stored_rounds(browser: Browser) -> None:
    source = MemorySource(interval=5.0, live=False, clock=lambda: T0 + 300)
    for k in range(120):
        source.push_round(
            T0 + 5 * k,
            {
                h: None if h == "db" and 40 <= k < 50 else metrics_for(i, k)
                for i, h in enumerate(HOSTS)
            },
        )
    source.add_event("saved event", "#2f9e44")
    source.stop()  # a replay has nothing more to send
    async with DashboardServer(source, port=0) as server:
        page, watch = await open_page(browser, server)
        await wait_ready(page)
        await expect(page.locator("#mode")).to_have_attribute("data-mode", "replay")
        await expect(page.locator("#mode")).to_have_text("replay")
        assert await point_count(page) == 120
        xs = await page.evaluate("otto.charts['mem.used_bytes'].u.data[0]")
        assert xs == [T0 + 5 * k for k in range(120)]
        db = await page.evaluate(
            "otto.charts['mem.used_bytes'].u.data[1 + otto.state.hosts.indexOf('db')]"
        )
        assert db[39] == metrics_for(2, 39)["mem.used_bytes"]
        assert db[40:50] == [None] * 10  # down: a gap in the line
        await expect(page.locator("#events li", has_text="saved event")).to_have_count(1)
        await page.wait_for_function("() => otto.charts['cpu.percent'].markers === 1")
        await expect(page.locator("#summary")).to_contain_text("every 5 s")
        await screenshot(page, "replay")
        watch.check()
        await page.context.close()


async def test_host_badges_follow_up_and_down(
    browser: Browser, live: tuple[DashboardServer, MemorySource]
) -> None:
    server, source = live
    page, watch = await open_page(browser, server)
    await wait_ready(page)
    badge = page.locator('#hosts [data-host="db"]')
    await expect(page.locator("#hosts .host")).to_have_count(3)
    await expect(badge).to_have_attribute("data-up", "true")
    await expect(badge.locator(".badge")).to_have_text("up")
    # Mark the other hosts' items: a flip must change its own item, not rebuild the list.
    await page.evaluate(
        "document.querySelectorAll('#hosts .host').forEach(e => { e.ottoKept = true; })"
    )

    push(source, 30, down=("db",))
    await expect(badge).to_have_attribute("data-up", "false")
    await expect(badge.locator(".badge")).to_have_text("down")
    await expect(badge).to_have_attribute("title", re.compile("connection refused"))
    kept = await page.evaluate(
        "[...document.querySelectorAll('#hosts .host')].map(e => e.ottoKept === true)"
    )
    assert kept == [True, True, True]
    await expect(page.locator("#summary")).to_contain_text("1 down")
    await screenshot(page, "host-down")

    push(source, 31)
    await expect(badge).to_have_attribute("data-up", "true")
    # A host seen for the first time gets a badge and a line in every chart.
    source.push_round(T0 + 32, {"cache": metrics_for(3, 32)})
    await expect(page.locator('#hosts [data-host="cache"]')).to_have_count(1)
    await page.wait_for_function(
        "() => Object.values(otto.charts).every(c => c.u.series.length === 5)",
        timeout=TIMEOUT_MS,
    )
    # Clicking a badge hides that host's lines everywhere.
    await page.click('#hosts [data-host="web-1"]')
    hidden = await page.evaluate(
        "Object.values(otto.charts)"
        ".map(c => c.u.series[1 + otto.state.hosts.indexOf('web-1')].show)"
    )
    assert hidden == [False] * len(METRICS)
    watch.check()
    await page.context.close()


async def test_zoom_is_synced_and_survives_live_rounds(
    browser: Browser, live: tuple[DashboardServer, MemorySource]
) -> None:
    server, source = live
    page, watch = await open_page(browser, server)
    await wait_ready(page)
    over = page.locator('.card[data-metric="cpu.percent"] .u-over')
    box = await over.bounding_box()
    assert box is not None
    y = box["y"] + box["height"] / 2
    await page.mouse.move(box["x"] + box["width"] * 0.3, y)
    await page.mouse.down()
    await page.mouse.move(box["x"] + box["width"] * 0.6, y, steps=5)
    await page.mouse.up()
    await expect(page.locator("#zoom-reset")).to_be_visible()
    ranges = await page.evaluate(
        "Object.values(otto.charts).map(c => [c.u.scales.x.min, c.u.scales.x.max])"
    )
    first = ranges[0]
    assert T0 < first[0] < first[1] < T0 + 29
    visible = await page.evaluate(
        "Object.values(otto.charts).filter(c => c.visible).map(c => c.metric)"
    )
    assert len(visible) >= 2
    for metric, (low, high) in zip(METRICS, ranges, strict=True):
        if metric in visible:
            assert (low, high) == pytest.approx(first), metric

    # New rounds extend the data but keep the zoomed range.
    count = await point_count(page)
    push(source, count)
    await wait_points(page, count + 1)
    await page.wait_for_function("() => !otto.charts['cpu.percent'].dirty", timeout=TIMEOUT_MS)
    kept = await page.evaluate(
        "[otto.charts['cpu.percent'].u.scales.x.min, otto.charts['cpu.percent'].u.scales.x.max]"
    )
    assert kept == pytest.approx(first)

    await over.dblclick()
    await expect(page.locator("#zoom-reset")).to_be_hidden()
    await page.wait_for_function(
        "() => { const u = otto.charts['cpu.percent'].u;"
        " return u.scales.x.max === u.data[0].at(-1); }",
        timeout=TIMEOUT_MS,
    )
    watch.check()
    await page.context.close()


async def test_page_works_under_its_content_security_policy(
    browser: Browser, live: tuple[DashboardServer, MemorySource]
) -> None:
    server, _ = live
    # Without bypass_csp: only locator assertions, which need no script evaluation.
    page, watch = await open_page(browser, server, bypass_csp=False)
    await expect(page.locator("#mode")).to_have_attribute("data-mode", "live")
    await expect(page.locator(".card canvas")).to_have_count(len(METRICS))
    await page.fill("#event-label", "under CSP")
    await page.click("#event-add")
    await expect(page.locator("#events li", has_text="under CSP")).to_have_count(1)
    await expect(page.locator("#event-error")).to_have_text("")
    watch.check()
    await page.context.close()


async def test_a_real_collector_then_its_replay(browser: Browser, tmp_path: Path) -> None:
    host = LocalHost()
    collector = Collector([host], interval=0.5)
    saved = tmp_path / "run.json"
    try:
        await collector.start()
        async with DashboardServer(collector, port=0) as server:
            page, watch = await open_page(browser, server)
            await wait_ready(page)
            await expect(page.locator("#mode")).to_have_attribute("data-mode", "live")
            await wait_points(page, 1)
            seen = await point_count(page)
            await wait_points(page, seen + 3)  # rounds keep arriving
            charts = await page.evaluate("Object.keys(otto.charts)")
            assert set(METRICS) <= set(charts)
            await expect(page.locator('#hosts [data-host="local"]')).to_have_attribute(
                "data-up", "true"
            )
            await page.fill("#event-label", "from the page")
            await page.click("#event-add")
            await expect(page.locator("#events li", has_text="from the page")).to_have_count(1)
            events = collector.snapshot()["events"]
            assert isinstance(events, list) and [e["label"] for e in events] == ["from the page"]
            await wait_points(page, await point_count(page) + 1)
            await screenshot(page, "collector")
            watch.check()
            await page.context.close()
    finally:
        await collector.stop()
        await host.close()
    collector.export_json(saved)
    stored = len(collector.series("local", "cpu.percent"))

    async with DashboardServer(Replay.from_file(saved), port=0) as server:
        page, watch = await open_page(browser, server)
        await wait_ready(page)
        await expect(page.locator("#mode")).to_have_attribute("data-mode", "replay")
        cpu = await page.evaluate(
            "(() => { const u = otto.charts['cpu.percent'].u;"
            " return u.data[1].filter(v => v != null).length; })()"
        )
        assert cpu == stored
        await expect(page.locator("#events li", has_text="from the page")).to_have_count(1)
        await screenshot(page, "collector-replay")
        watch.check()
        await page.context.close()
