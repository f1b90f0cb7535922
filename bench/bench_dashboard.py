"""How smooth the dashboard stays with 50 hosts x 10 metrics, an hour of 1 s history.

Loads 3600 rounds into a MemorySource, serves it on loopback, opens the page in headless
Chromium, then pushes live rounds once a second and measures in the browser:

- initial load: page open -> charts built from the snapshot, and the parts of it;
- update cost per round: taking one round into the arrays, plus the batched redraw of
  the charts on screen (the others are redrawn when scrolled to);
- frame time: requestAnimationFrame deltas while idle (the baseline) and while live;
- the baseline, in the same run: every chart redrawn in the frame the round arrives,
  with 1.5 px lines (what a straightforward page does), against the page as shipped.

Times are printed as median / p95 / max.

Run: python bench/bench_dashboard.py [--hosts 50] [--history 3600] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time
from pathlib import Path

import httpx
from playwright.async_api import Page, async_playwright

from otto.monitor.parsers import CORE_METRICS
from otto.monitor.web import DashboardServer, MemorySource

CHROMIUM = "/usr/bin/chromium"
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
METRICS = list(CORE_METRICS)
FRAME_RECORDER = """() => {
  window.__frames = [];
  let last = performance.now();
  const tick = (now) => {
    window.__frames.push(now - last);
    last = now;
    window.__frameHandle = requestAnimationFrame(tick);
  };
  window.__frameHandle = requestAnimationFrame(tick);
}"""


def round_values(hosts: list[str], k: int) -> dict[str, dict[str, float]]:
    out = {}
    for i, host in enumerate(hosts):
        phase = k / 30 + i
        out[host] = {
            "cpu.percent": 40 + 30 * math.sin(phase) + (k * 7 + i) % 5,
            "mem.used_bytes": (4 + i % 8) * 2**30 + 1e7 * math.sin(phase),
            "mem.total_bytes": 32 * 2**30,
            "mem.percent": 20 + i % 60 + math.sin(phase),
            "load.1m": 1 + (i % 4) + 0.5 * math.sin(phase),
            "net.rx_bytes_per_s": 5e6 * (1 + math.sin(phase)),
            "net.tx_bytes_per_s": 1e6 * (1 + math.cos(phase)),
            "disk.read_bytes_per_s": 2e7 * ((k * 13 + i) % 10) / 10,
            "disk.write_bytes_per_s": 1e7 * ((k * 7 + i) % 10) / 10,
            "disk.used_percent": 30 + i % 50,
        }
    return out


def summary(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return f"{statistics.median(ordered):6.1f} / {p95:6.1f} / {ordered[-1]:6.1f} ms"


async def live_phase(
    page: Page, source: MemorySource, hosts: list[str], args: argparse.Namespace, first: int
) -> dict[str, list[float]]:
    """Push rounds at the interval; return the page's timings of them."""
    await page.evaluate(
        "for (const k of ['applyMs', 'drawMs', 'updateMs']) otto.stats[k].length = 0"
    )
    await frames(page)
    base = await page.evaluate("otto.pointCount('cpu.percent')")
    last_t = await page.evaluate("otto.state.lastT")
    arrival: list[float] = []
    for k in range(args.rounds):
        tick = time.perf_counter()
        t = last_t + (k + 1) * args.interval
        source.push_round(t, round_values(hosts, args.history + first + k))
        await page.wait_for_function(
            "n => otto.pointCount('cpu.percent') >= n", arg=base + k + 1, timeout=30_000
        )
        await page.wait_for_function(
            "() => Object.values(otto.charts).every(c => !c.visible || !c.dirty)"
        )
        arrival.append((time.perf_counter() - tick) * 1000)
        await asyncio.sleep(max(0.0, args.interval - (time.perf_counter() - tick)))
    stats = await page.evaluate(
        "({a: otto.stats.applyMs, d: otto.stats.drawMs, u: otto.stats.updateMs})"
    )
    return {
        "apply": [float(v) for v in stats["a"]],
        "draw": [float(v) for v in stats["d"]],
        "update": [float(v) for v in stats["u"]],
        "arrival": arrival,
        "frames": await frames(page),
    }


async def frames(page: Page) -> list[float]:
    values = await page.evaluate("window.__frames.splice(0)")
    return [float(v) for v in values]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--history", type=int, default=3600, help="stored rounds per line")
    parser.add_argument("--rounds", type=int, default=15, help="live rounds per phase")
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds of idle baseline")
    parser.add_argument("--screenshot", type=Path, default=Path("artifacts/bench_dashboard.png"))
    args = parser.parse_args()

    hosts = [f"host-{i:02d}" for i in range(args.hosts)]
    now = time.time()
    start = now - args.history * args.interval
    source = MemorySource(interval=args.interval)
    t = time.perf_counter()
    for k in range(args.history):
        source.push_round(start + k * args.interval, round_values(hosts, k))
    fill_s = time.perf_counter() - t
    lines = args.hosts * len(METRICS)
    print(
        f"dashboard: {args.hosts} hosts x {len(METRICS)} metrics = {lines} lines, "
        f"{args.history} points each ({lines * args.history / 1e6:.2f} M points); "
        f"source filled in {fill_s:.1f} s"
    )

    async with DashboardServer(source, port=0) as server, async_playwright() as playwright:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as http:
            t = time.perf_counter()
            response = await http.get("/api/snapshot")
            snapshot_s = time.perf_counter() - t
        print(
            f"server: /api/snapshot {len(response.content) / 2**20:.1f} MiB "
            f"in {snapshot_s * 1000:.0f} ms (snapshot + JSON encoding + loopback transfer)"
        )

        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = await browser.new_context(
            viewport={"width": 1600, "height": 1000}, bypass_csp=True
        )
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))

        t = time.perf_counter()
        await page.goto(server.url)
        await page.wait_for_function("() => window.otto && otto.ready", timeout=120_000)
        # The first frame after the charts are built is when they are on screen.
        await page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
        load_s = time.perf_counter() - t
        build_ms = await page.evaluate("otto.stats.snapshotMs")
        parts = await page.evaluate(
            "(() => { const s = otto.stats; return [s.openedAt - s.connectAt,"
            " s.snapshotArrivedAt - s.connectAt, s.snapshotParseMs, s.snapshotMs,"
            " performance.now() - s.connectAt]; })()"
        )
        visible = await page.evaluate("Object.values(otto.charts).filter(c => c.visible).length")
        print(
            f"initial load: page open -> charts drawn {load_s * 1000:.0f} ms "
            f"(of which building {len(METRICS)} charts from the parsed snapshot "
            f"{build_ms:.0f} ms); {visible} of {len(METRICS)} charts on screen"
        )

        print(
            "  from the stream's start: open {:.0f} ms, snapshot received {:.0f} ms"
            " (server encoding + transfer), JSON.parse {:.0f} ms, charts built {:.0f} ms,"
            " first frame drawn at {:.0f} ms".format(*parts)
        )

        await page.evaluate(FRAME_RECORDER)
        await asyncio.sleep(args.idle)
        idle_frames = await frames(page)

        # Baseline: what a page that redraws every chart in the frame a round arrives,
        # with ordinary 1.5 px lines, costs; then otto's page as it ships.
        await page.evaluate(
            "Object.values(otto.charts).forEach(c => c.u.series.slice(1)"
            ".forEach(s => { s.width = 1.5; }))"
        )
        await page.evaluate("otto.options.framePoints = Infinity")
        base = await live_phase(page, source, hosts, args, 0)
        await page.evaluate(
            "Object.values(otto.charts).forEach(c => c.u.series.slice(1)"
            ".forEach(s => { s.width = 1 / uPlot.pxRatio; }))"
        )
        await page.evaluate("otto.options.framePoints = 200000")
        ours = await live_phase(page, source, hosts, args, args.rounds)
        redraw_all = [float(await page.evaluate("otto.redrawAll()")) for _ in range(5)]

        print(
            f"\nlive: {args.rounds} rounds a phase at {args.interval:g} s, {lines} values a round;"
            " median / p95 / max"
        )
        print(f"{'':34}{'baseline: 1 frame, 1.5 px lines':>40}   {'otto':>40}")
        for key, label in [
            ("apply", "apply one round (arrays)"),
            ("draw", "redraw JS, per frame"),
            ("update", "update cost per round (JS)"),
            ("arrival", "push -> drawn, seen from Python"),
            ("frames", "frame time (rAF deltas)"),
        ]:
            print(f"  {label:32}{summary(base[key]):>40}   {summary(ours[key]):>40}")
        for name, phase in (("baseline", base), ("otto", ours)):
            slow = sum(1 for v in phase["frames"] if v > 50)
            print(f"  {name}: frames over 50 ms: {slow} of {len(phase['frames'])}")
        print(f"  idle frame time (no rounds)     {summary(idle_frames)}")
        print(f"  uPlot JS to redraw all {len(METRICS)} charts     {summary(redraw_all)}")

        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(args.screenshot))
        if errors:
            print("page errors:", errors)
        await browser.close()
        source.stop()


if __name__ == "__main__":
    asyncio.run(main())
