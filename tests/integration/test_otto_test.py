"""``otto test`` end to end through ``python -m otto test``, on this machine and on the lab.

The example suite (examples/tests) runs as a new user runs it; the run folder's
report opens in headless Chromium (screenshots in ``artifacts/otto-test/``)
without a single request leaving the file; Ctrl-C mid-run still leaves the
report and the JUnit file, and the interrupted command is gone from the host.
"""

from __future__ import annotations

import json
import math
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

import pytest
import pytest_asyncio
from junitparser import Failure
from junitparser.xunit2 import JUnitXml
from playwright.async_api import Browser, Page, Route, async_playwright

from otto.monitor.store import Event, MetricStore
from otto.testing.report import write_report
from tests.sample_records import T0, sample_records

if TYPE_CHECKING:
    from tests.lab import Lab as TestLab

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "tests"
ARTIFACTS = ROOT / "artifacts" / "otto-test"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]
DEADLINE = 120.0
EXAMPLE_TESTS = 11


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "PYTEST_ADDOPTS"}}
    env["COLUMNS"] = "200"
    return env


def otto_test(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otto", "test", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=cwd,
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def junit_cases(path: Path) -> dict[str, list[object]]:
    suite = next(iter(JUnitXml.fromfile(str(path))))
    return {case.name: list(case.result) for case in suite}


# --- the command line ------------------------------------------------------------------------


def test_help_lists_otto_options(tmp_path: Path) -> None:
    proc = otto_test("--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for option in ("--lab", "--iterations", "--duration", "--threshold", "--monitor"):
        assert option in proc.stdout
    assert "--output" in proc.stdout and "--junit" in proc.stdout
    assert "PYTEST ARGS" in proc.stdout


@pytest.mark.parametrize("value", ["101", "-1", "lots"])
def test_threshold_outside_0_100_is_a_usage_error(tmp_path: Path, value: str) -> None:
    proc = otto_test("--threshold", value, str(EXAMPLES), cwd=tmp_path)
    assert proc.returncode == 2
    assert "--threshold" in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing ran, no run folder


# --- the example suite on this machine -------------------------------------------------------


def test_example_suite_on_local(tmp_path: Path) -> None:
    proc = otto_test(str(EXAMPLES), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{EXAMPLE_TESTS} passed" in proc.stdout
    (run,) = (tmp_path / "otto-runs").iterdir()  # the default run folder
    assert run.name.endswith("Z")
    assert (run / "report.html").is_file() and (run / "otto.log").is_file()
    cases = junit_cases(run / "junit.xml")
    assert len(cases) == EXAMPLE_TESTS
    assert all(results == [] for results in cases.values())
    assert "test_on_each_host[local]" in cases


def test_a_clean_run_prints_no_warning_and_names_its_folder_as_pytest_does(
    tmp_path: Path,
) -> None:
    # A project of its own (outside this repository's pytest settings), as a user has.
    suite = tmp_path / "suite"
    shutil.copytree(EXAMPLES, suite, ignore=shutil.ignore_patterns("__pycache__"))
    proc = otto_test("suite", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "warning" not in (proc.stdout + proc.stderr).lower(), proc.stdout + proc.stderr
    plain = subprocess.run(
        [sys.executable, "-m", "pytest", "--otto", "-p", "no:cacheprovider", "suite"],
        capture_output=True, text=True, env=clean_env(), cwd=tmp_path, timeout=DEADLINE,
        check=False,
    )  # fmt: skip
    assert plain.returncode == 0, plain.stdout + plain.stderr
    names = sorted(p.name for p in (tmp_path / "otto-runs").iterdir())
    assert len(names) == 2
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d{6}Z(-\d+)?", name) for name in names), names


WAIT_FOR_ROUNDS = """
import os, sqlite3, time

def test_waits_for_two_rounds():
    db = os.path.join(os.environ["RUN"], "monitor.db")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as c:
            if c.execute("select count(*) from rounds").fetchone()[0] >= 2:
                return
        time.sleep(0.05)
    raise AssertionError("the monitor sampled fewer than 2 rounds in 60 s")
"""


@pytest.mark.parametrize(("args", "interval"), [([], 1.0), (["--monitor-interval", "0.5"], 0.5)])
def test_the_monitor_samples_short_runs_at_least_once_a_second(
    tmp_path: Path, args: list[str], interval: float
) -> None:
    (tmp_path / "test_short.py").write_text(WAIT_FOR_ROUNDS)
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "otto", "test", "--output", str(run), "--monitor", *args,
         "test_short.py"],
        capture_output=True, text=True, env={**clean_env(), "RUN": str(run)}, cwd=tmp_path,
        timeout=DEADLINE, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (stored,) = MetricStore(run / "monitor.db").runs()
    assert stored.interval == interval
    assert stored.rounds >= 2


def test_pytest_args_pass_through_and_junit_goes_where_asked(tmp_path: Path) -> None:
    junit = tmp_path / "ci" / "results.xml"
    proc = otto_test(
        "--output", "run", "--junit", str(junit), "-k", "parametrized and not beta", "-q",
        str(EXAMPLES), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
    assert set(junit_cases(junit)) == {"test_parametrized[alpha]", "test_parametrized[gamma]"}
    assert not (tmp_path / "run" / "junit.xml").exists()
    assert (tmp_path / "run" / "report.html").is_file()


def test_failures_threshold_and_exit_status(tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_mixed.py").write_text(
        "import pytest\n"
        "async def test_ok(host):\n"
        "    assert (await host.run('true')).is_ok\n"
        "async def test_exit_3(host):\n"
        "    result = await host.run(\"echo '<b>broken</b>'; exit 3\")\n"
        "    assert result.is_ok\n"
    )
    proc = otto_test("--output", "run", str(suite), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = (tmp_path / "run" / "report.html").read_text()
    assert "&lt;b&gt;broken&lt;/b&gt;" in report and "<b>broken</b>" not in report
    (failure,) = junit_cases(tmp_path / "run" / "junit.xml")["test_exit_3"]
    assert isinstance(failure, Failure)
    # Only test_ok counts toward the threshold when test_exit_3 is deselected.
    proc = otto_test("--output", "run2", "--threshold", "100", "-k", "ok", str(suite), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_iterations_are_cases_and_pass_rates(tmp_path: Path) -> None:
    proc = otto_test(
        "--output", "run", "--iterations", "3", "--threshold", "100", "-k", "state",
        str(EXAMPLES), cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cases = junit_cases(tmp_path / "run" / "junit.xml")
    assert sorted(cases) == [f"test_the_shell_keeps_its_state [iteration {n}]" for n in (1, 2, 3)]
    report = (tmp_path / "run" / "report.html").read_text()
    assert "Pass rate per test" in report and "3/3 passed (100.0%)" in report


def test_xdist_workers_share_one_report(tmp_path: Path) -> None:
    proc = otto_test("--output", "run", "-n", "2", str(EXAMPLES), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "run"
    assert sorted(p.name for p in run.glob("records*.jsonl")) == [
        "records-gw0.jsonl",
        "records-gw1.jsonl",
    ]
    assert len(junit_cases(run / "junit.xml")) == EXAMPLE_TESTS


# --- Ctrl-C ---------------------------------------------------------------------------------


def interrupt_mid_command(tmp_path: Path, lab_args: list[str], tag: str) -> Path:
    """Start a suite whose second test waits in a command; Ctrl-C it there.

    The command writes to a FIFO just before it waits, so the interruption comes
    when the command is known to run (no guessed delay). Returns the run folder.
    """
    # Where a lab user may write too: the lab's hosts share this machine's files.
    shared = Path(tempfile.mkdtemp(prefix="otto-test-"))
    shared.chmod(0o777)
    fifo = shared / "ready.fifo"
    os.mkfifo(fifo)
    fifo.chmod(0o666)
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_hang.py").write_text(
        "async def test_first(host):\n"
        "    assert (await host.run('true')).is_ok\n"
        "async def test_waits(host):\n"
        f"    await host.run('echo ready > {fifo}; sleep {tag}')\n"
        "async def test_never_runs(host):\n"
        "    pass\n"
    )
    reader = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # RDWR: opening never blocks
    proc = subprocess.Popen(
        [sys.executable, "-m", "otto", "test", *lab_args, "--output", "run", str(suite)],
        cwd=tmp_path,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        ready, _, _ = select.select([reader], [], [], DEADLINE)
        assert ready, "the command never started"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=DEADLINE)
    finally:
        os.close(reader)
        shutil.rmtree(shared)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, out
    run = tmp_path / "run"
    report = (run / "report.html").read_text()
    assert "interrupted (Ctrl-C)" in report
    cases = junit_cases(run / "junit.xml")
    assert cases["test_first"] == []
    assert cases["test_waits"], "the interrupted test is recorded as not passed"
    assert "test_never_runs" not in cases
    return run


def no_process(tag: str) -> bool:
    found = subprocess.run(["pgrep", "-f", f"sleep {tag}"], capture_output=True, check=False)
    return found.returncode == 1


def test_ctrl_c_leaves_a_partial_report_and_junit(tmp_path: Path) -> None:
    tag = "61.5"
    interrupt_mid_command(tmp_path, [], tag)
    assert no_process(tag)


# --- the SSH / Telnet lab ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ssh_lab_files(lab: TestLab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One otto lab file per lab host (with key, password, known_hosts, hops)."""
    folder = tmp_path_factory.mktemp("otto-test-lab")
    records = {str(r["name"]): r for r in lab.inventory()}
    files = {}
    for name, record in records.items():
        entries = []
        hop = record.get("hop")
        for given in [record, *([records[str(hop)]] if hop else [])]:
            entry = {k: v for k, v in given.items() if v is not None}
            if entry["term"] == "ssh":
                entry["known_hosts"] = str(lab.known_hosts)
            entries.append(entry)
        path = folder / f"{name}.json"
        path.write_text(json.dumps({"hosts": entries}))
        files[name] = path
    return files


@pytest.mark.parametrize("name", ["ssh1", "telnet1"])
def test_example_suite_on_the_lab(
    ssh_lab_files: dict[str, Path], tmp_path: Path, name: str
) -> None:
    proc = otto_test(
        "--lab", str(ssh_lab_files[name]), "--output", "run", str(EXAMPLES), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cases = junit_cases(tmp_path / "run" / "junit.xml")
    assert f"test_on_each_host[{name}]" in cases
    assert len(cases) == EXAMPLE_TESTS
    records = [
        json.loads(line) for line in (tmp_path / "run" / "records.jsonl").read_text().splitlines()
    ]
    assert {h for r in records for h in r["hosts"]} == {name}


def test_ctrl_c_interrupts_the_remote_command(
    ssh_lab_files: dict[str, Path], tmp_path: Path
) -> None:
    tag = "62.5"
    interrupt_mid_command(tmp_path, ["--lab", str(ssh_lab_files["ssh1"])], tag)
    # The lab's hosts share this machine's processes (namespaces of the network only).
    assert no_process(tag)


# --- the report in a browser ---------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: scripts/install-system-deps installs it")
    async with async_playwright() as running:
        launched = await running.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


class Watch:
    """Every request the page makes, aborted unless it is the report itself."""

    def __init__(self, page: Page, report: Path) -> None:
        self.url = report.as_uri()
        self.outgoing: list[str] = []
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "console",
            lambda m: self.errors.append(m.text) if m.type in {"error", "warning"} else None,
        )

    async def route(self, route: Route) -> None:
        if route.request.url.split("#")[0] == self.url:
            await route.continue_()
        else:
            self.outgoing.append(route.request.url)
            await route.abort()


async def open_report(browser: Browser, report: Path) -> tuple[Page, Watch]:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    watch = Watch(page, report)
    await context.route("**/*", watch.route)
    page.on(
        "request",
        lambda r: None if r.url.split("#")[0] == watch.url else watch.outgoing.append(r.url),
    )
    await page.goto(report.as_uri())
    await page.wait_for_function("() => window.ottoReport && window.ottoReport.ready")
    return page, watch


async def shoot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def hostile_run(folder: Path) -> Path:
    """A report of hand-built records (every kind of outcome) with a metric history."""
    db = folder / "monitor.db"
    with MetricStore(db) as store:
        for k in range(90):
            store.write_round(
                T0 - 5 + k * 0.5,
                {
                    host: {
                        "cpu.percent": 35 + 25 * math.sin(k / 7 + i),
                        "mem.used_bytes": (2 + i) * 2**30 + k * 4e6,
                        "net.rx_bytes_per_s": 1e6 * (1 + math.cos(k / 5 + i)),
                        "disk.used_percent[/home]": 40.0 + i,
                    }
                    for i, host in enumerate(["web-1", "web-2", "board-1"])
                },
            )
        store.add_event(Event(1, T0 + 12, "link flap <script>alert(1)</script>"))
    return write_report(folder, sample_records(), monitor_db=db, threshold=80)


async def test_report_in_chromium(browser: Browser, tmp_path: Path) -> None:
    report = hostile_run(tmp_path)
    page, watch = await open_report(browser, report)
    charts = await page.evaluate("Object.keys(ottoReport.charts)")
    assert charts == ["cpu.percent", "mem.used_bytes", "net.rx_bytes_per_s"]
    assert await page.evaluate("ottoReport.spansDrawn") == 10
    assert await page.locator("#verdict").text_content() == "failed"
    # The hostile test name is text on the page, not markup.
    assert await page.evaluate("document.querySelectorAll('main script').length") == 0
    assert await page.get_by_text("test_name[<script>alert('x')</script>").count() >= 1
    await shoot(page, "report-hand-made")
    # Filters: only failed tests; a click on a chart's span opens its test.
    await page.get_by_role("button", name="flaky 1").click()
    assert await page.locator("details.test:not([hidden])").count() == 1
    await page.get_by_role("button", name="all 7").click()
    await page.fill("#search", "test_boot")
    assert await page.locator("details.test:not([hidden])").count() == 1
    await page.fill("#search", "")
    assert watch.outgoing == [] and watch.errors == []


async def test_report_of_a_real_run_in_chromium(browser: Browser, tmp_path: Path) -> None:
    proc = otto_test("--output", "run", "--monitor", str(EXAMPLES), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = tmp_path / "run" / "report.html"
    page, watch = await open_report(browser, report)
    assert await page.locator("details.test").count() == EXAMPLE_TESTS
    assert await page.evaluate("Object.keys(ottoReport.charts).length") > 0
    assert await page.evaluate("ottoReport.spansDrawn") == EXAMPLE_TESTS
    await shoot(page, "report-example-suite")
    # The links to each test's transcript point at files that exist.
    hrefs = await page.eval_on_selector_all(
        "a[href$='transcript.log']", "links => links.map(a => a.getAttribute('href'))"
    )
    lines = (report.parent / "records.jsonl").read_text().splitlines()
    transcripts = {json.loads(line)["transcript"] for line in lines} - {""}
    assert {unquote(h) for h in hrefs} == transcripts
    assert len(transcripts) >= EXAMPLE_TESTS - 1  # one test uses no host
    assert all((report.parent / t).is_file() for t in transcripts)
    assert watch.outgoing == [] and watch.errors == []
