"""Runs in one history with real processes: two ``otto monitor`` on one database at
once, an old database upgraded by the command, ``--list-runs`` and ``--run``, and the
dashboard's run picker and log events in headless Chromium."""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Playwright, async_playwright, expect

from otto import LocalHost
from otto.monitor import Collector
from otto.monitor.replay import list_runs
from otto.monitor.store import SCHEMA_VERSION, Event, HostState, MetricStore
from otto.monitor.web import DashboardServer
from tests.integration.test_dashboard import (
    CHROMIUM,
    CHROMIUM_ARGS,
    TIMEOUT_MS,
    open_page,
    screenshot,
    wait_ready,
)
from tests.unit.monitor.test_store_runs import v1_database

DEADLINE = 60.0
T0 = 1_700_000_000.0


def env() -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "NO_COLOR"}}
    clean["COLUMNS"] = "200"
    return clean


class Monitor:
    """A running ``otto monitor`` subprocess and the dashboard port it printed."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otto", "monitor", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env(),
        )
        self.output = b""
        self.port = int(self.read_until(rb"dashboard: http://127\.0\.0\.1:(\d+)/").group(1))

    def read_until(self, pattern: bytes) -> re.Match[bytes]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + DEADLINE
        while (found := re.search(pattern, self.output)) is None:
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} not printed; got {self.output!r}"
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                assert chunk, f"otto monitor ended: {self.output!r}"
                self.output += chunk
        return found

    def rounds(self, count: int) -> list[dict[str, object]]:
        """Wait on the dashboard's event stream for ``count`` more collected rounds."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        seen: list[dict[str, object]] = []
        try:
            conn.request("GET", "/api/stream")
            response = conn.getresponse()
            assert response.status == 200
            while len(seen) < count:
                line = response.readline()
                assert line, "the stream ended"
                if line.startswith(b"data:"):
                    message = json.loads(line[5:])
                    if message.get("type") == "round":
                        seen.append(message)
        finally:
            conn.close()
        return seen

    def get(self, path: str) -> tuple[int, object]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=DEADLINE)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            return response.status, json.loads(response.read())
        finally:
            conn.close()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        code = self.proc.wait(DEADLINE)
        assert self.proc.stdout is not None
        self.output += self.proc.stdout.read()
        self.proc.stdout.close()
        return code


@pytest.fixture
def monitors() -> Iterator[list[Monitor]]:
    started: list[Monitor] = []
    yield started
    for monitor in started:
        if monitor.proc.poll() is None:
            monitor.proc.kill()
            monitor.proc.wait(DEADLINE)
        if monitor.proc.stdout is not None:
            monitor.proc.stdout.close()


def otto(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otto", *args],
        capture_output=True,
        text=True,
        env=env(),
        stdin=subprocess.DEVNULL,
        timeout=DEADLINE,
        check=False,
    )


# --- real processes ----------------------------------------------------------------------------


def test_two_monitors_on_one_database_write_their_own_runs(
    monitors: list[Monitor], tmp_path: Path
) -> None:
    db = tmp_path / "shared.db"
    first = Monitor("--interval", "0.1", "--db", str(db), "--label", "alpha", "--note", "A")
    monitors.append(first)
    second = Monitor("--interval", "0.1", "--db", str(db), "--label", "beta")
    monitors.append(second)
    assert b"storing run #1 alpha in" in first.output
    assert b"storing run #2 beta in" in second.output
    # Both write at once: each sees rounds while the other's run is open too.
    first.rounds(5)
    second.rounds(5)
    first.rounds(2)
    open_runs = [(r.label, r.ended) for r in list_runs(db)]
    assert open_runs == [("alpha", None), ("beta", None)]
    # The dashboards list both runs and each shows its own by default.
    status, runs = first.get("/api/runs")
    assert status == 200 and isinstance(runs, dict)
    assert runs["current"] == 1 and [r["label"] for r in runs["runs"]] == ["alpha", "beta"]
    status, other = first.get("/api/snapshot?run=beta")
    assert status == 200 and isinstance(other, dict) and other["run"]["id"] == 2
    assert first.stop() == 0
    assert second.stop() == 0
    for monitor in (first, second):
        assert b"Traceback" not in monitor.output and b"ERROR" not in monitor.output

    with MetricStore(db) as store:
        alpha, beta = store.runs()
        assert (alpha.label, alpha.note, beta.label) == ("alpha", "A", "beta")
        assert alpha.ended is not None and beta.ended is not None
        assert alpha.rounds >= 7 and beta.rounds >= 5
        assert store.sample_count(run=1) > 0 and store.sample_count(run=2) > 0
        assert store.host_names(run=1) == store.host_names(run=2) == ["local"]

    listed = otto("monitor", "--file", str(db), "--list-runs")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["RUN", "LABEL", "STARTED"]
    assert [line.split()[:2] for line in lines[1:]] == [["1", "alpha"], ["2", "beta"]]

    # --run picks a run to replay; without it, the latest.
    replay = Monitor("--file", str(db), "--run", "alpha")
    monitors.append(replay)
    assert b"replaying run #1 alpha of" in replay.output
    status, snapshot = replay.get("/api/snapshot")
    assert status == 200 and isinstance(snapshot, dict)
    assert snapshot["live"] is False and snapshot["run"]["label"] == "alpha"
    assert replay.stop() == 0
    latest = Monitor("--file", str(db))
    monitors.append(latest)
    assert b"replaying run #2 beta of" in latest.output
    assert latest.stop() == 0

    missing = otto("monitor", "--file", str(db), "--run", "gamma", "--port", "0")
    assert missing.returncode == 1
    assert missing.stderr == (
        f"otto: error: cannot replay {db}: {db} has no run 'gamma'; its runs: #1 alpha, #2 beta\n"
    )


def test_export_and_import_from_the_command_line_keep_runs_apart(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    past_runs(db)
    one = tmp_path / "baseline.json"
    proc = otto("monitor", "--file", str(db), "--run", "baseline", "--export", str(one))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{one}: 1 run of {db}\n"
    every = tmp_path / "all.json"
    assert otto("monitor", "--db", str(db), "--export", str(every)).returncode == 0
    assert [r["label"] for r in json.loads(every.read_text())["runs"]] == ["baseline", None]
    other = tmp_path / "other.db"
    for expected in ("added run #1", "added run #2", "added runs #3, #4"):
        source = every if expected.endswith("#4") else one
        proc = otto("monitor", "--db", str(other), "--import", str(source))
        assert proc.returncode == 0, proc.stderr
        assert f"{other}: {expected} from {source}" in proc.stdout
    assert [(r.id, r.label) for r in list_runs(other)] == [
        (1, "baseline"),
        (2, "baseline"),
        (3, "baseline"),
        (4, None),
    ]
    with MetricStore(other) as store:
        assert store.events(run=2)[0].line == HOSTILE_LINE
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "otto.monitor", "version": 2, "runs": [{"rounds": [[1]]}]}')
    proc = otto("monitor", "--db", str(other), "--import", str(broken))
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"otto: error: cannot import {broken} into {other}: run 1 ")
    assert "nothing was imported" in proc.stderr
    assert len(list_runs(other)) == 4


def test_monitor_upgrades_an_old_database_and_appends_its_run(
    monitors: list[Monitor], tmp_path: Path
) -> None:
    db = tmp_path / "old.db"
    v1_database(db)
    monitor = Monitor("--interval", "0.2", "--db", str(db), "--label", "after upgrade")
    monitors.append(monitor)
    assert b"storing run #2 after upgrade in" in monitor.output
    monitor.rounds(2)
    assert monitor.stop() == 0
    runs = list_runs(db)
    assert [(r.id, r.label) for r in runs] == [(1, None), (2, "after upgrade")]
    assert runs[0].note == "migrated from a version-1 database" and runs[0].rounds == 3
    with sqlite3.connect(db) as check:
        assert check.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)


def test_monitor_refuses_a_database_of_a_newer_version(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    with MetricStore(db) as store:
        store.write_round(T0, {"h": {"m": 1.0}})
    with sqlite3.connect(db) as raise_version:
        raise_version.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    before = db.read_bytes()
    for args in (["--db", str(db)], ["--file", str(db)], ["--file", str(db), "--list-runs"]):
        proc = otto("monitor", "--port", "0", *args)
        assert proc.returncode == 1, proc.stdout
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert f"of a newer version ({SCHEMA_VERSION + 1})" in proc.stderr
    assert db.read_bytes() == before


# --- the page: run picker and log events ----------------------------------------------------

pytestmark_browser = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason=f"{CHROMIUM} is missing: scripts/install-system-deps installs Debian's chromium",
)

HOSTILE_LINE = 'kernel: <img src=x onerror="window.pwned=1"> & </li><b>oops</b>'


def past_runs(db: Path) -> None:
    """Two finished runs: 'baseline' with a log event, and an unlabelled one."""
    with MetricStore(db) as store:
        store.start_run(label="baseline", note="before the fix", interval=1.0, hosts=["web-1"])
        for k in range(20):
            store.write_round(
                T0 + k,
                {"web-1": {"cpu.percent": 10.0 + k, "mem.percent": 50.0}},
                {"web-1": HostState(True)},
                0.01,
            )
        store.add_event(Event(1, T0 + 5, "kernel oops", "#c92a2a", None, "web-1", HOSTILE_LINE))
        store.end_run(T0 + 20)
        store.start_run(interval=1.0, hosts=["web-2"], started=T0 + 100)
        store.write_round(T0 + 100, {"web-2": {"cpu.percent": 1.0}}, {"web-2": HostState(True)})
        store.end_run(T0 + 101)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as running:
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser(playwright: Playwright) -> AsyncIterator[Browser]:
    browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    try:
        yield browser
    finally:
        await browser.close()


@pytestmark_browser
async def test_the_page_picks_a_past_run_and_shows_log_events(
    browser: Browser, tmp_path: Path
) -> None:
    db = tmp_path / "history.db"
    past_runs(db)
    host = LocalHost()
    collector = Collector([host], interval=0.5, db=db, label="live run")
    try:
        await collector.start()
        assert collector.run is not None and collector.run.id == 3
        async with DashboardServer(collector, port=0) as server:
            page, watch = await open_page(browser, server)
            await wait_ready(page)
            await expect(page.locator("#mode")).to_have_attribute("data-mode", "live")
            # The live collector's memory is this run only: no earlier run's host.
            await page.wait_for_function("() => otto.pointCount('cpu.percent') >= 1")
            assert await page.evaluate("otto.state.hosts") == ["local"]
            picker = page.locator("#run")
            await expect(page.locator("#run-pick")).to_be_visible()
            await expect(picker.locator("option")).to_have_count(3)
            texts = await picker.locator("option").all_inner_texts()
            assert texts[0].startswith("#1 baseline") and texts[1].startswith("#2 ·")
            assert texts[2].startswith("#3 live run") and texts[2].endswith("live")
            await expect(picker).to_have_value("")

            await picker.select_option("1")
            await expect(page.locator("#mode")).to_have_attribute("data-mode", "replay")
            await page.wait_for_function(
                "() => otto.ready && otto.state.run && otto.state.run.id === 1",
                timeout=TIMEOUT_MS,
            )
            assert await page.evaluate("otto.state.hosts") == ["web-1"]
            assert await page.evaluate("otto.pointCount('cpu.percent')") == 20
            assert "run=1" in page.url
            await expect(page.locator("#summary")).to_contain_text("run #1 baseline")
            # The log event: its host and line shown as text, nothing of it run as markup.
            event = page.locator("#events li", has_text="kernel oops")
            await expect(event).to_have_count(1)
            await expect(event.locator(".event-host")).to_have_text("web-1")
            await expect(event.locator(".event-line")).to_have_text(HOSTILE_LINE)
            assert await event.locator("img, b").count() == 0
            assert await page.evaluate("window.pwned === undefined")
            await page.wait_for_function(
                "() => otto.charts['cpu.percent'].markers === 1", timeout=TIMEOUT_MS
            )
            # Events go to the live run only: the form is off while a past run is shown.
            await expect(page.locator("#event-label")).to_be_disabled()
            await screenshot(page, "run-picker-past")

            # A reload keeps the pick (it is in the address).
            await page.reload()
            await page.wait_for_function(
                "() => otto.ready && otto.state.run && otto.state.run.id === 1",
                timeout=TIMEOUT_MS,
            )
            await expect(page.locator("#run")).to_have_value("1")

            # Back to the live run: rounds arrive again, the form is on.
            await page.locator("#run").select_option("")
            await expect(page.locator("#mode")).to_have_attribute("data-mode", "live")
            await page.wait_for_function(
                "() => otto.ready && otto.state.hosts.includes('local')", timeout=TIMEOUT_MS
            )
            seen = await page.evaluate("otto.pointCount('cpu.percent')")
            await page.wait_for_function(
                "n => otto.pointCount('cpu.percent') > n", arg=seen, timeout=TIMEOUT_MS
            )
            await expect(page.locator("#event-label")).to_be_enabled()
            assert "run=" not in page.url
            await page.fill("#event-label", "on the live run")
            await page.click("#event-add")
            await expect(page.locator("#events li", has_text="on the live run")).to_have_count(1)
            await screenshot(page, "run-picker-live")
            watch.check()
            await page.context.close()
    finally:
        await collector.stop()
        await host.close()
    with MetricStore(db) as store:
        assert [e.label for e in store.events(run=3)] == ["on the live run"]
        assert [e.label for e in store.events(run=1)] == ["kernel oops"]


@pytestmark_browser
@pytest.mark.parametrize("stored", [False, True], ids=["no-db", "one-run-db"])
async def test_the_run_menu_of_otto_monitor_shows_the_live_run(
    browser: Browser, monitors: list[Monitor], tmp_path: Path, stored: bool
) -> None:
    # The menu was hidden live: without --db it listed nothing, and one run was "only
    # the one run shown". Live, it says which run is being collected.
    db = ["--db", str(tmp_path / "one.db")] if stored else []
    monitor = Monitor("--interval", "0.3", *db)
    monitors.append(monitor)
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = await context.new_page()
        await page.goto(f"http://127.0.0.1:{monitor.port}/")
        await wait_ready(page)
        await expect(page.locator("#mode")).to_have_attribute("data-mode", "live")
        await expect(page.locator("#run-pick")).to_be_visible()
        options = page.locator("#run option")
        await expect(options).to_have_count(1)
        (text,) = await options.all_inner_texts()
        assert text.startswith("#1 ·" if stored else "this run (not stored) ·"), text
        assert text.endswith("· live"), text
        await expect(page.locator("#run")).to_have_value("")
        assert monitor.stop() == 0, monitor.output
        if stored:
            # A replay of the one run: nothing to pick, no menu.
            replay = Monitor("--file", str(tmp_path / "one.db"))
            monitors.append(replay)
            await page.goto(f"http://127.0.0.1:{replay.port}/")
            await wait_ready(page)
            await expect(page.locator("#mode")).to_have_attribute("data-mode", "replay")
            await expect(page.locator("#run option")).to_have_count(1)
            await expect(page.locator("#run-pick")).to_be_hidden()
            assert replay.stop() == 0, replay.output
    finally:
        await context.close()
