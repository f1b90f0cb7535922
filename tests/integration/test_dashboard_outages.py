"""Outages on the dashboard, in real headless Chromium: bands on every chart with their
times on hover, the banner of hosts down now, the health table; from a live source, a
replayed database, and a real collector whose lab host has its link cut for 6 s.

Screenshots go to ``artifacts/dashboard/``.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, expect
from prometheus_client.parser import text_string_to_metric_families

from otto import LocalHost
from otto.monitor import Collector, MetricStore, Replay
from otto.monitor.outages import Outage
from otto.monitor.store import HostState
from otto.monitor.web import DashboardServer, MemorySource
from tests.integration import test_dashboard as dashboard
from tests.integration.hosts import remote_host
from tests.integration.test_dashboard import (
    HOSTS,
    T0,
    TIMEOUT_MS,
    metrics_for,
    open_page,
    screenshot,
    wait_ready,
)
from tests.lab import Lab

# The page's browser fixtures, shared with the dashboard's own tests.
playwright = dashboard.playwright
browser = dashboard.browser

pytestmark = [
    pytest.mark.skipif(
        not Path("/usr/bin/chromium").exists(),
        reason="/usr/bin/chromium is missing: scripts/install-system-deps installs it",
    ),
]

INTERVAL = 1.0
CUT_SECONDS = 6.0
WAIT = 30.0


def push(source: MemorySource, k: int, *, down: tuple[str, ...] = ()) -> None:
    source.push_round(
        T0 + k,
        {h: None if h in down else metrics_for(i, k) for i, h in enumerate(HOSTS)},
        errors={h: "no answer within 1s" for h in down},
    )


async def wait_bands(page: Page, count: int) -> None:
    """Every chart on screen has drawn ``count`` bands."""
    await page.wait_for_function(
        "n => { const shown = Object.values(otto.charts).filter(c => c.visible);"
        " return shown.length > 0 && shown.every(c => c.bands === n); }",
        arg=count,
        timeout=TIMEOUT_MS,
    )


async def hover_at(page: Page, metric: str, t: float) -> None:
    """Move the mouse over ``metric``'s chart at time ``t``."""
    over = page.locator(f'.card[data-metric="{metric}"] .u-over')
    await over.scroll_into_view_if_needed()
    box = await over.bounding_box()
    assert box is not None
    x = await page.evaluate("([m, t]) => otto.charts[m].u.valToPos(t, 'x')", [metric, t])
    await page.mouse.move(box["x"] + x, box["y"] + box["height"] / 2)


def down_seconds(text: str) -> dict[str, float]:
    families = {f.name: f for f in text_string_to_metric_families(text)}
    family = families["otto_host_down_seconds"]
    assert family.type == "counter"
    return {s.labels["host"]: s.value for s in family.samples if s.name.endswith("_total")}


async def test_bands_banner_and_health_of_a_live_source(browser: Browser) -> None:
    source = MemorySource(interval=1.0, clock=lambda: T0 + 60)
    for k in range(40):
        push(source, k, down=("db",) if 10 <= k < 16 else ())
    async with DashboardServer(source, port=0) as server:
        page, watch = await open_page(browser, server)
        await wait_ready(page)
        # The stored outage: one band on every chart, no banner.
        await wait_bands(page, 1)
        await expect(page.locator("#down-banner")).to_be_hidden()
        assert await page.evaluate("otto.outages()") == [
            {"host": "db", "start": T0 + 10, "end": T0 + 16, "error": "no answer within 1s"}
        ]
        await hover_at(page, "cpu.percent", T0 + 13)
        tip = page.locator('.card[data-metric="cpu.percent"] .outage-tip')
        await expect(tip).to_be_visible()
        await expect(tip).to_contain_text("db down")
        await expect(tip).to_contain_text("6 s")
        await expect(tip).to_contain_text("no answer within 1s")
        # Availability over the shown range (live: the rounds, then on to now): 6 s down.
        row = page.locator('#health-rows tr[data-host="db"]')
        await expect(row.locator(".health-outages")).to_have_text("1")
        await expect(row.locator(".health-down")).to_have_text("6 s")
        availability, start, end = await page.evaluate(
            "() => { const w = document.getElementById('health-window').dataset;"
            " const a = document.querySelector('tr[data-host=db] .health-availability');"
            " return [Number(a.dataset.value), Number(w.start), Number(w.end)]; }"
        )
        assert start == T0 and end >= T0 + 39
        assert availability == pytest.approx(100 * (1 - 6 / (end - start)))
        await expect(row.locator(".health-error")).to_have_text("no answer within 1s")
        await expect(
            page.locator('#health-rows tr[data-host="web-1"] .health-availability')
        ).to_have_text("100%")

        # Down now: the banner names it, and a second band opens.
        push(source, 40, down=("web-2",))
        await expect(page.locator('#down-list [data-host="web-2"]')).to_have_count(1)
        await expect(page.locator("#down-title")).to_have_text("Down now")
        await expect(page.locator('#down-list [data-host="web-2"] .down-why')).to_have_text(
            "no answer within 1s"
        )
        # Its duration runs on between rounds.
        await expect(page.locator('#down-list [data-host="web-2"] .down-for')).to_have_text(
            re.compile(r"for [1-9]\d* s"), timeout=TIMEOUT_MS
        )
        push(source, 41, down=("web-2",))
        await wait_bands(page, 2)
        await expect(
            page.locator('#health-rows tr[data-host="web-2"] .health-status')
        ).to_have_text("down")
        await screenshot(page, "outages-live-down")

        # Back: the banner goes, the band stays, ended at its first round up.
        push(source, 42)
        await expect(page.locator("#down-banner")).to_be_hidden()
        outages = await page.evaluate("otto.outages()")
        assert outages[-1] == {
            "host": "web-2",
            "start": T0 + 40,
            "end": T0 + 42,
            "error": "no answer within 1s",
        }
        # Hiding a host hides its bands.
        await page.click('#hosts [data-host="db"]')
        await wait_bands(page, 1)
        await screenshot(page, "outages-live-back")
        watch.check()
        await page.context.close()
    source.stop()


async def test_the_health_table_follows_the_zoom(browser: Browser) -> None:
    source = MemorySource(interval=1.0, live=False, clock=lambda: T0 + 60)
    for k in range(40):
        push(source, k, down=("db",) if 10 <= k < 16 else ())
    source.stop()
    async with DashboardServer(source, port=0) as server:
        page, watch = await open_page(browser, server)
        await wait_ready(page)
        row = page.locator('#health-rows tr[data-host="db"]')
        await expect(row.locator(".health-outages")).to_have_text("1")
        # Zoom to 20 s .. 35 s, after the outage: db was up all that time.
        over = page.locator('.card[data-metric="cpu.percent"] .u-over')
        box = await over.bounding_box()
        assert box is not None
        left, right = await page.evaluate(
            "ts => ts.map(t => otto.charts['cpu.percent'].u.valToPos(t, 'x'))", [T0 + 20, T0 + 35]
        )
        y = box["y"] + box["height"] / 2
        await page.mouse.move(box["x"] + left, y)
        await page.mouse.down()
        await page.mouse.move(box["x"] + right, y, steps=5)
        await page.mouse.up()
        await expect(page.locator("#zoom-reset")).to_be_visible()
        await expect(row.locator(".health-outages")).to_have_text("0")
        await expect(row.locator(".health-availability")).to_have_text("100%")
        await expect(page.locator("#health-window")).to_contain_text("(15 s)")
        # Back to the whole run: the outage counts again.
        await page.click("#zoom-reset")
        await expect(row.locator(".health-outages")).to_have_text("1")
        await expect(row.locator(".health-down")).to_have_text("6 s")
        watch.check()
        await page.context.close()


async def test_a_replayed_database_shows_its_outages(browser: Browser, tmp_path: Path) -> None:
    path = tmp_path / "run.db"
    with MetricStore(path) as store:
        store.start_run(label="nightly", interval=5.0, hosts=HOSTS)
        for k in range(60):
            t = T0 + 5 * k
            ups = {h: not (h == "db" and (k < 3 or 30 <= k < 34 or k >= 57)) for h in HOSTS}
            store.write_round(
                t,
                {h: metrics_for(i, k) for i, h in enumerate(HOSTS) if ups[h]},
                {h: HostState(ups[h], "" if ups[h] else "connection refused") for h in HOSTS},
                0.05,
            )
        store.end_run(T0 + 5 * 59)
    async with DashboardServer(Replay.from_file(path), port=0) as server:
        page, watch = await open_page(browser, server)
        await wait_ready(page)
        await expect(page.locator("#mode")).to_have_attribute("data-mode", "replay")
        await wait_bands(page, 3)
        assert [(o["start"], o["end"]) for o in await page.evaluate("otto.outages()")] == [
            (T0, T0 + 15),
            (T0 + 150, T0 + 170),
            (T0 + 285, None),
        ]
        # Down when the run ended: said so, not "now".
        await expect(page.locator("#down-title")).to_have_text("Down at the end of the run")
        await expect(page.locator('#down-list [data-host="db"] .down-for')).to_have_text("for 10 s")
        row = page.locator('#health-rows tr[data-host="db"]')
        await expect(row.locator(".health-outages")).to_have_text("3")
        await expect(row.locator(".health-down")).to_have_text("45 s")
        await screenshot(page, "outages-replay")
        watch.check()
        await page.context.close()


# --------------------------------------------------------------------- the lab


async def until_round(
    stream: AsyncIterator[dict[str, object]],
    accept: Callable[[dict[str, object]], bool],
    timeout: float = WAIT,
) -> dict[str, object]:
    """The next round of ``stream`` that ``accept`` takes."""
    async with asyncio.timeout(timeout):
        async for update in stream:
            if update.get("type") == "round" and accept(update):
                return update
    raise AssertionError("the collector stopped")


def ssh2_up(update: dict[str, object]) -> bool:
    hosts = update["hosts"]
    assert isinstance(hosts, dict)
    return bool(hosts["ssh2"]["up"])


async def scrape(server: DashboardServer) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{server.url}metrics")
    response.raise_for_status()
    return down_seconds(response.text)


async def test_a_cut_link_shows_one_band_of_its_length(
    browser: Browser, fault_lab: Lab, tmp_path: Path
) -> None:
    here = LocalHost(name="here")
    ssh = remote_host(fault_lab, "ssh2")
    db = tmp_path / "run.db"
    collector = Collector([here, ssh], interval=INTERVAL, db=db, label="cut")
    stream = collector.subscribe()
    try:
        await collector.start()
        async with DashboardServer(collector, port=0) as server:
            page, watch = await open_page(browser, server)
            await wait_ready(page)
            await until_round(stream, ssh2_up)
            await expect(page.locator("#down-banner")).to_be_hidden()
            assert (await scrape(server))["ssh2"] == 0.0

            cut_at = time.time()
            await fault_lab.cut_network("ssh2")
            first_down = await until_round(stream, lambda u: not ssh2_up(u))
            banner = page.locator('#down-list [data-host="ssh2"]')
            await expect(banner).to_have_count(1)
            await expect(page.locator("#down-title")).to_have_text("Down now")
            await expect(page.locator('#down-list [data-host="here"]')).to_have_count(0)
            row = page.locator('#health-rows tr[data-host="ssh2"]')
            await expect(row.locator(".health-status")).to_have_text("down")
            await screenshot(page, "outage-cut-down")
            # The counter grows while the host is down.
            before = (await scrape(server))["ssh2"]
            await until_round(stream, lambda u: not ssh2_up(u))
            after = (await scrape(server))["ssh2"]
            assert 0.0 < before < after
            # The link stays cut until a round ends 6 s after the cut: its rounds are the clock.
            await until_round(stream, lambda u: time.time() >= cut_at + CUT_SECONDS)
            restore_at = time.time()
            await fault_lab.restore_network("ssh2")
            restored = time.time()
            first_up = await until_round(stream, ssh2_up)
            await expect(page.locator("#down-banner")).to_be_hidden()
            outages = [o for o in await page.evaluate("otto.outages()") if o["host"] == "ssh2"]
            assert len(outages) == 1, outages
            (band,) = outages
            # The band is the rounds': from the first round down to the first up again.
            assert band["start"] == first_down["t"]
            assert band["end"] == first_up["t"]
            # ... within a round or two of the cut and of its end.
            assert cut_at - INTERVAL <= band["start"] <= cut_at + 2 * INTERVAL
            assert restore_at <= band["end"] <= restored + 2 * INTERVAL
            # So the band is as long as the cut, give or take a round or two.
            cut_for = restore_at - cut_at
            assert abs((band["end"] - band["start"]) - cut_for) <= 2 * INTERVAL, (band, cut_for)
            await wait_bands(page, 1)
            await hover_at(page, "cpu.percent", (band["start"] + band["end"]) / 2)
            tip = page.locator('.card[data-metric="cpu.percent"] .outage-tip')
            await expect(tip).to_contain_text("ssh2 down")
            await expect(row.locator(".health-outages")).to_have_text("1")
            await expect(row.locator(".health-status")).to_have_text("up")
            assert await row.locator(".health-error").inner_text() not in ("", "–")
            await expect(row.locator(".health-cost")).not_to_have_text("–")
            await screenshot(page, "outage-cut-back")
            total = (await scrape(server))["ssh2"]
            assert total >= band["end"] - band["start"]
            watch.check()
            await page.context.close()
    finally:
        await collector.stop()
        await here.close()
        await ssh.close()
    # Stored with the run, and replayed from it, as the page showed it.
    expected = Outage("ssh2", band["start"], band["end"], band["error"])
    with MetricStore(db) as store:
        assert store.outages() == [expected]
    assert Replay.from_file(db, run="cut").outage_tracker().outages() == [expected]
