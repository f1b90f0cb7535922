"""otto's pytest plugin: lab hosts as fixtures, and the evidence of every test run.

Registered through the ``pytest11`` entry point, so it is loaded by every
pytest run where otto is installed. It stays out of the way unless it is
asked for: it writes nothing, makes no folder and changes no test unless

- the run is *enabled*: ``--lab``, ``$OTTO_LAB``, ``--otto`` (what ``otto
  test`` passes), or another of its options (``--output``, ``--iterations``,
  ``--duration``, ``--threshold``, ``--monitor``, ``--junit``) is given; or
- a collected test uses one of its fixtures (``lab``, ``hosts``, ``host``,
  ``artifacts``, ``monitor``) and not a fixture of the same name of the
  project's own (a conftest's ``lab`` wins over otto's, as pytest does).

Then the run has a folder (``--output``, default ``otto-runs/<UTC time>/``)
holding ``records.jsonl`` (one ``TestRecord`` per test run; ``records-gwN.jsonl``
per pytest-xdist worker), one folder per test with its ``transcript.log`` and
``artifacts``, ``otto.log`` (otto's logging at DEBUG), ``junit.xml``,
``report.html`` and, with ``--monitor``, ``monitor.db``.

``async def`` tests run on otto's loop (``otto.run``) when they use an otto
fixture, or when the run is enabled and no other plugin claimed the test
(pytest-asyncio's ``asyncio`` mark, which its auto mode puts on every async
test). Tests that use otto's fixtures are otto's even under pytest-asyncio.

Options other than ``--lab`` and ``--otto`` are also accepted as
``--otto-NAME`` (``--otto-output``...); the short name is only added when no
other plugin or conftest has taken it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pytest

from otto import loop as otto_loop
from otto import redact
from otto.errors import LabError, OttoError
from otto.lab import DEFAULT_HOST_NAME, Lab, lab_paths_from_env, load_lab
from otto.result import CommandStatus, Status
from otto.results import Case, CaseSink, set_sink
from otto.testing.baseline import BaselineError, load_baseline, parse_tolerance
from otto.testing.checks import Check, describe_checks
from otto.testing.evidence import RUNS_FOLDER, LineFile, LogHandler, new_run_dir, register_lab
from otto.testing.hostlock import RunHold, hold_hosts
from otto.testing.marks import hosts_mark, mark_pool, mark_scope, mark_state, which_host
from otto.testing.metrics import MetricRecorder, write_prometheus
from otto.testing.needs import NEEDS_MARK_HELP, LabFit, needed, unfit
from otto.testing.netem import netem  # noqa: F401 (the netem fixture, found here by pytest)
from otto.testing.options import (
    pytest_addoption,
    pytest_load_initial_conftests,
)
from otto.testing.panics import SIGNATURES, PanicWatch, signature_pattern
from otto.testing.records import (
    Attempt,
    CommandFailure,
    Crash,
    DeviceCase,
    Kind,
    Metric,
    Outcome,
    TestRecord,
    describe_cases,
    read_records,
)
from otto.testing.runs import (
    TestRun,
    by_iteration,
    describe,
    folder_name,
    is_rerun,
    outcome_of,
    tail,
)
from otto.testing.sessionlog import RAW_NAME, SessionLog
from otto.testing.shard import check_shard_options, take_shard, write_durations
from otto.testing.transcript import Transcript
from otto.testing.verdict import Verdict, judge, pass_rates, user_interrupt

if TYPE_CHECKING:
    from otto.hosts.base import Host
    from otto.monitor.collector import Collector

__all__ = [
    "OTTO_FIXTURES",
    "OttoPlugin",
    "artifacts",
    "check",
    "host",
    "hosts",
    "lab",
    "monitor",
    "otto_check",
    "pytest_addoption",
    "pytest_configure",
    "pytest_load_initial_conftests",
    "record_metric",
]

_mark_pool = mark_pool  # otto -n test (cli/dryrun) picks hosts as the plugin does

log = logging.getLogger("otto.testing")

OTTO_FIXTURES = frozenset({"lab", "hosts", "host", "artifacts", "monitor"})
_EVIDENCE_FIXTURES = frozenset({"record_metric"})
"""Fixtures that make a test otto's (its record holds what they recorded) but use no host."""
_PICK_MARKS = frozenset({"hosts", "needs", "state"})
"""The marks that change which hosts a test gets, or how they are readied."""
_PLUGIN_NAME = "otto-run"
_RUNS_FOLDER = RUNS_FOLDER
_RUN_MARK = ".otto-run"
_UP_TIMEOUT = 30.0
_TESTMONITOR_INTERVAL = 1.0
_CANCEL_TIMEOUT = 30.0
"""Seconds a test ended from outside (a timeout) is given to cancel its commands."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "hosts(pattern=None, *, tags=(), count=None): the lab hosts a test runs on "
        "(otto): once per host whose name fully matches the regex `pattern` and "
        "that has every tag; with `count`, once, on that many free hosts of them",
    )
    config.addinivalue_line(
        "markers",
        "state(name): bring each of the test's lab hosts to 'off', 'bootloader' or "
        "'shell' before it (otto: host.goto); the test errors in setup when one cannot be",
    )
    config.addinivalue_line("markers", NEEDS_MARK_HELP)
    check_shard_options(config)
    plugin = OttoPlugin(config)
    config.pluginmanager.register(plugin, _PLUGIN_NAME)
    # Registered before pytest's own plugins register theirs (their configure hooks run
    # after this one), so it runs after their last garbage collection at the end.
    config.add_cleanup(plugin.thaw)
    config.pluginmanager.register(LabFit(config, lambda: _plugin(config).lab(), mark_scope))


def _plain(node: pytest.Item | pytest.Collector) -> bool:
    """Whether the test carries none of the marks that pick or ready its hosts (most
    tests): one walk over its marks says so, instead of one per mark asked about."""
    return not any(mark.name in _PICK_MARKS for mark in node.iter_markers())


def _plugin(config: pytest.Config) -> OttoPlugin:
    plugin = config.pluginmanager.get_plugin(_PLUGIN_NAME)
    assert isinstance(plugin, OttoPlugin)
    return plugin


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def lab(request: pytest.FixtureRequest) -> Lab:
    """The lab: ``--lab`` files, else ``$OTTO_LAB``, else one host, ``local``."""
    return _plugin(request.config).session_lab(request)


@pytest.fixture
def hosts(request: pytest.FixtureRequest) -> dict[str, Host]:
    """The test's hosts by name: those its ``hosts`` mark picked, else all the lab's."""
    return _plugin(request.config).hosts_for(request, one=False)


@pytest.fixture
def host(request: pytest.FixtureRequest) -> Host:
    """The test's host: one per run with a ``hosts`` mark, else the lab's only host or ``local``."""
    picked = _plugin(request.config).hosts_for(request, one=True)
    return next(iter(picked.values()))


@pytest.fixture
def artifacts(request: pytest.FixtureRequest) -> Path:
    """A folder of the test's own in the run folder (its transcript is there too)."""
    return _plugin(request.config).artifacts_for(request)


@pytest.fixture
def monitor(request: pytest.FixtureRequest) -> Iterator[Collector]:
    """A metric collector over the test's hosts, running for the test (``monitor.db`` in
    its folder)."""
    plugin = _plugin(request.config)
    collector = plugin.test_monitor(request)
    otto_loop.run(collector.start())
    try:
        yield collector
    finally:
        otto_loop.run(collector.stop())


@pytest.fixture
def check(request: pytest.FixtureRequest) -> Check:
    """Non-fatal checks: ``check.equal(a, b)``, ``check.that(cond, msg)``, ``with check:``;
    the test goes on after a failed one and fails at its end, listing every one."""
    return _plugin(request.config).check_for(request)


@pytest.fixture
def otto_check(request: pytest.FixtureRequest) -> Check:
    """otto's ``check``, by a name no other plugin (pytest-check) also gives a fixture."""
    return _plugin(request.config).check_for(request)


@pytest.fixture
def record_metric(request: pytest.FixtureRequest) -> MetricRecorder:
    """``record_metric(name, value, unit=None, host=None, *, better="lower")``: a number
    kept in the test's record, shown in the report and JUnit, compared with
    ``--baseline``."""
    return _plugin(request.config).metric_recorder(request)


def _run_to_the_end(fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    """Run the test coroutine on otto's loop; however the test ends, its commands end with it.

    An exception raised in this thread while the coroutine runs (pytest-timeout's
    failure, Ctrl-C) would leave the coroutine running on otto's loop, its remote
    command into the next test. The coroutine is cancelled instead (its sessions
    interrupt their commands and get their shells back) and waited for.
    """
    ended = threading.Event()
    abandoned = threading.Event()
    tasks: list[asyncio.Task[Any]] = []

    async def test() -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.append(task)
        try:
            if not abandoned.is_set():
                await fn(**kwargs)
        finally:
            ended.set()

    try:
        otto_loop.run(test())
    except BaseException:
        abandoned.set()
        if tasks and not ended.is_set():
            task = tasks[0]
            task.get_loop().call_soon_threadsafe(task.cancel)
            if not ended.wait(_CANCEL_TIMEOUT):
                log.warning("the test's coroutine was still ending after %gs", _CANCEL_TIMEOUT)
        raise


@dataclass
class _TestEvidence:
    """What the running test recorded besides its outcome: failed checks, metrics and
    device-side cases (those already judged by a report are counted)."""

    nodeid: str
    check: Check | None = None
    metrics: list[Metric] = field(default_factory=list)
    cases: list[DeviceCase] = field(default_factory=list)
    judged: int = 0


class OttoPlugin:
    """The hooks of one pytest run (registered once, in ``pytest_configure``)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        opt = config.option
        self.lab_paths: list[str] = list(opt.otto_lab) or lab_paths_from_env()
        self.iterations: int | None = opt.otto_iterations
        self.duration: float | None = opt.otto_duration
        self.threshold: float | None = opt.otto_threshold
        self.monitor_run: bool = opt.otto_monitor
        self.monitor_interval: float = opt.otto_monitor_interval
        self.transcript_limit: int = opt.otto_transcript_limit
        patterns = opt.otto_crash_pattern or list(SIGNATURES)
        try:
            self.crash_pattern = signature_pattern(patterns)
        except re.error as exc:
            raise pytest.UsageError(f"--crash-pattern: {exc}") from None
        workerinput: dict[str, Any] | None = getattr(config, "workerinput", None)
        self.worker: str = workerinput["workerid"] if workerinput else ""
        self.metrics_out: Path | None = (
            Path(config.invocation_params.dir, opt.otto_metrics_out)
            if opt.otto_metrics_out
            else None
        )
        self.tolerance = parse_tolerance(opt.otto_tolerance)
        self.baseline: list[TestRecord] | None = None
        if opt.otto_baseline and not self.worker and not config.option.help:
            try:
                self.baseline = load_baseline(Path(config.invocation_params.dir, opt.otto_baseline))
            except BaselineError as exc:
                raise pytest.UsageError(str(exc)) from None
        self._evidence: _TestEvidence | None = None
        self._previous_sink: CaseSink | None = None
        self._controller: bool | None = None
        self._session_started = False
        self._run_records: list[TestRecord] | None = None
        self.enabled = bool(
            opt.otto_lab
            or self.lab_paths
            or opt.otto_run
            or opt.otto_output
            or opt.otto_junit
            or self.iterations
            or self.duration
            or self.threshold is not None
            or self.monitor_run
            or self.metrics_out
            or opt.otto_baseline
        )
        if workerinput and "otto_run_dir" in workerinput:
            self.run_dir = Path(workerinput["otto_run_dir"])
        elif opt.otto_output:
            self.run_dir = Path(config.invocation_params.dir, opt.otto_output)
        else:
            self.run_dir = self._new_run_dir()
        self.junit_path = (
            Path(config.invocation_params.dir, opt.otto_junit)
            if opt.otto_junit
            else self.run_dir / "junit.xml"
        )
        self.active = False
        self._lab: Lab | None = None
        self._extra: dict[str, Host] = {}
        self._watched: set[str] = set()
        self._watched_lab: Lab | None = None
        self._transcript_args: tuple[Lab, list[str], list[str]] | None = None
        self._up: set[str] = set()
        self._down: dict[str, str] = {}
        self._runs: dict[str, TestRun] = {}
        self._current: TestRun | None = None
        self._muted = False
        self._inner = False
        self._iteration = 1
        self._used_folders: set[str] = set()
        self._log_handler: logging.Handler | None = None
        self._old_level: int | None = None
        self._collector: Collector | None = None
        self._failed: set[str] = set()
        self._records: LineFile | None = None
        self._records_fresh: bool | None = None
        """Whether this process's records file did not exist before its first record."""
        self._written: list[TestRecord] | None = []
        """The records this process wrote, while each line holds its record as it is
        (nothing redacted): what reading the file back gives, without reading it."""
        # The consoles of the test running now, watched for a kernel panic.
        self._panics: dict[str, PanicWatch] = {}
        self._panics_of: TestRun | None = None
        self._panics_lock = threading.Lock()
        # What the controller (or the one process) records of its own: collection
        # errors, tests whose worker crashed, tests never run.
        self._own: list[TestRecord] = []
        self._collected: set[str] = set()
        self._seen: set[str] = set()
        self._crashed = False
        self._interrupted = False
        self.verdict: Verdict | None = None
        """The run's verdict, once the session has finished."""
        self.planned_hosts: list[str] = []
        """The lab hosts the collected tests may use (after collection)."""
        self._run_hold: RunHold | None = None
        """The hosts ``--wait-hosts`` waited for (plain pytest), held until the run ends."""
        self._froze = False
        """This run froze the objects alive after collection (``gc.freeze``)."""
        if self.lab_paths:
            try:
                self._lab = load_lab(self.lab_paths)
            except LabError as exc:
                raise pytest.UsageError(str(exc)) from None
            register_lab(self._lab)
        if self.enabled and not config.option.help:
            # An otto run uses hosts and writes its report: load those modules now, as a
            # conftest's imports would be (otto.hosts loads its kinds of host on first
            # use: the local one, the lab's default, is loaded here).
            import otto.hosts.local
            import otto.testing.junit
            import otto.testing.report  # noqa: F401

            self._freeze()  # what pytest, its plugins and otto loaded: alive until the end

    # --- roles and the run folder ----------------------------------------------------

    @property
    def controller(self) -> bool:
        """True in pytest-xdist's controller (it runs no tests)."""
        if self._controller is None:
            found = self.config.pluginmanager.hasplugin("dsession")
            if self._session_started:  # xdist registers its plugin at configure time
                self._controller = found
            return found
        return self._controller

    @property
    def repeating(self) -> bool:
        return bool(self.iterations and self.iterations > 1) or self.duration is not None

    def _new_run_dir(self) -> Path:
        return new_run_dir(self.config.invocation_params.dir)

    def _activate(self) -> None:
        if self.active:
            return
        self.active = True
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / _RUN_MARK).touch()
        handler = LogHandler(self.run_dir / "otto.log")
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(process)d %(threadName)s %(name)s %(levelname)s %(message)s"
            )
        )
        handler.setLevel(logging.DEBUG)
        otto_logger = logging.getLogger("otto")
        self._old_level = otto_logger.level
        otto_logger.setLevel(logging.DEBUG)
        otto_logger.addHandler(handler)
        self._log_handler = handler
        log.info("run folder %s%s", self.run_dir, f" (worker {self.worker})" if self.worker else "")

    def _records_path(self) -> Path:
        name = f"records-{self.worker}.jsonl" if self.worker else "records.jsonl"
        return self.run_dir / name

    # --- the lab and its hosts --------------------------------------------------------

    def lab(self) -> Lab:
        if self._lab is None:
            self._lab = load_lab(self.lab_paths)
            register_lab(self._lab)
        return self._lab

    def session_lab(self, request: pytest.FixtureRequest) -> Lab:
        self._activate()
        lab = self.lab()
        if self._watched_lab is not lab:  # once per run, not per test (1,000 hosts)
            for name in lab.names:
                self._watch(lab.host(name))
            self._watched_lab = lab
        return lab

    def _host(self, name: str) -> Host:
        lab = self.lab()
        built = lab.host(name) if name in lab else self._local()
        self._watch(built)
        return built

    def _local(self) -> Host:
        from otto.hosts import LocalHost

        built = self._extra.get(DEFAULT_HOST_NAME)
        if built is None:
            built = self._extra[DEFAULT_HOST_NAME] = LocalHost(name=DEFAULT_HOST_NAME)
        return built

    def _watch(self, built: Host) -> None:
        if built.name in self._watched:
            return
        self._watched.add(built.name)
        built.add_tap(self._on_bytes)
        built.add_observer(self._on_result)
        # A console host: every byte its console prints (between commands, and the
        # kernel's messages no command's output holds) is watched for a panic.
        link = getattr(getattr(built, "connection", None), "link", None)
        add_console_tap = getattr(link, "add_tap", None)
        if callable(add_console_tap):
            name = built.name
            add_console_tap(lambda data: self._on_console(name, data))

    def _on_console(self, host: str, data: bytes) -> None:
        run = self._current
        if run is None or not data:
            return
        with self._panics_lock:
            if self._panics_of is not run:
                self._panics_of, self._panics = run, {}
            watch = self._panics.get(host)
            if watch is None:
                watch = self._panics[host] = PanicWatch(host, self.crash_pattern)
        watch.feed(data)

    def _crash_of(self, run: TestRun) -> Crash | None:
        """The first crash seen on a console the run used (a host it picked, or one its
        sessions talked to): the console's own stream first, then what its sessions
        received."""
        watches: list[PanicWatch] = []
        if self._panics_of is run:
            with self._panics_lock:
                watches = list(self._panics.values()) if self._panics_of is run else []
        for watch in watches:
            crash = watch.crash
            used = watch.host in run.hosts or (
                run.transcript is not None and watch.host in run.transcript.hosts
            )
            if crash is not None and used:
                return crash
        if run.transcript is not None and run.transcript.crashes:
            return run.transcript.crashes[0]
        return None

    def _forget_panics(self, run: TestRun) -> None:
        with self._panics_lock:
            if self._panics_of is run:
                self._panics_of, self._panics = None, {}

    def _on_bytes(self, where: str, direction: Literal["sent", "received"], data: bytes) -> None:
        run = self._current
        if run is None or self._muted:
            return
        transcript = run.transcript
        if transcript is None:
            transcript = self._open_transcript(run)
        transcript.tap(where, direction, data)
        if run.session_log is not None:
            run.session_log.tap(where, direction, data)

    def _on_result(self, status: CommandStatus) -> None:
        run = self._current
        if run is None or self._muted:
            return
        if run.transcript is None:
            self._open_transcript(run)
        if run.session_log is not None:
            run.session_log.command(status)
        if run.transcript is not None:
            run.transcript.command_ended(status)  # its bytes are on disk when it ends
        if status.status is not Status.Success:
            run.failures.append(status)

    def _secrets(self) -> list[str]:
        lab = self.lab()
        return [s for spec in lab.specs for s in (spec.password, spec.become_password) if s]

    def _lab_transcript_args(self) -> tuple[list[str], list[str]]:
        """The lab's console hosts and secrets, as each test's transcript takes them
        (worked out once per lab, not once per test)."""
        lab = self.lab()
        known = self._transcript_args
        # A lab's fields are fixed once its hosts are built (Lab.override refuses then).
        if known is None or known[0] is not lab:
            consoles = [s.name for s in lab.specs if s.term in ("console", "serial")]
            known = self._transcript_args = (lab, consoles, self._secrets())
        return known[1], known[2]

    def _open_transcript(self, run: TestRun) -> Transcript:
        with run.lock:
            if run.transcript is None:
                consoles, secrets = self._lab_transcript_args()
                folder = self.run_dir / run.folder
                try:
                    os.mkdir(folder)
                except FileExistsError:
                    pass
                except FileNotFoundError:  # an iteration's folder: test/N
                    folder.mkdir(parents=True, exist_ok=True)
                title = run.nodeid + (f" (iteration {run.iteration})" if self.repeating else "")
                run.session_log = SessionLog(
                    folder / "transcript.log", limit=self.transcript_limit, title=title
                )
                run.transcript = Transcript(
                    folder / RAW_NAME,
                    limit=self.transcript_limit,
                    secrets=list(secrets),
                    crash_pattern=self.crash_pattern,
                    crash_hosts=consoles,
                    title=title,
                )
            return run.transcript

    def _ready(self, built: Host) -> None:
        """Fail the test (as an error naming the host) if the host cannot be reached."""
        name = built.name
        if name in self._up:
            return
        if name not in self._down:
            self._muted = True
            try:
                result = otto_loop.run(built.run("true", timeout=_UP_TIMEOUT))
                if result.is_ok:
                    self._up.add(name)
                else:
                    status = result.only
                    self._down[name] = status.error or f"'true' exited {status.retcode}"
            except (OttoError, OSError, TimeoutError) as exc:
                self._down[name] = str(exc) or type(exc).__name__
            finally:
                self._muted = False
            if name in self._down:
                log.error("host %s is down: %s", name, self._down[name])
        if name in self._down:
            pytest.fail(f"host {name} is down: {self._down[name]}", pytrace=False)

    def _goto(self, built: Host, state: str) -> None:
        """Bring the host to ``state`` (the ``state`` mark); fail the test's setup if it
        cannot be, with the step that failed."""
        try:
            otto_loop.run(built.goto(state))
        except OttoError as exc:
            failed = str(exc)
        else:
            return
        pytest.fail(f"@pytest.mark.state({state!r}): {failed}", pytrace=False)

    def _run_for(self, request: pytest.FixtureRequest) -> TestRun:
        self._activate()
        run = self._current
        if run is None or run.nodeid != request.node.nodeid:
            run = self._start_run(request.node.nodeid, request.node.name)
        return run

    def hosts_for(self, request: pytest.FixtureRequest, *, one: bool) -> dict[str, Host]:
        run = self._run_for(request)
        lab = self.session_lab(request)
        node = request.node
        plain = _plain(node)
        names = run.picked.get(one)
        if names is None:
            names = self._pick(request, lab, one, plain=plain)
            run.picked[one] = names
            for name in names:
                if name not in run.hosts:
                    run.hosts.append(name)
        picked = {name: self._host(name) for name in names}
        state = None if plain else mark_state(node)
        if state is not None:
            for built in picked.values():
                self._goto(built, state)
        elif one or (not plain and node.get_closest_marker("hosts") is not None):
            for built in picked.values():
                self._ready(built)
        return picked

    def _pick(
        self, request: pytest.FixtureRequest, lab: Lab, one: bool, *, plain: bool = False
    ) -> list[str]:
        node = request.node
        mark = None if plain else hosts_mark(node, one=one)
        callspec = getattr(node, "callspec", None)
        param = callspec.params.get("host") if callspec is not None else None
        if mark is None:
            if not one:
                return lab.names
            if len(lab) > 1:
                pytest.fail(which_host(node.nodeid, lab), pytrace=False)
            return lab.names or [DEFAULT_HOST_NAME]
        if isinstance(param, str):
            return [param]
        pool, count = mark_pool(lab, mark, features=needed(node))
        if count is None:
            return pool if not one else pool[:1]
        other = self._current.picked.get(not one) if self._current else None
        if other is not None:
            return other
        stack = contextlib.ExitStack()
        held = stack.enter_context(
            hold_hosts(pool, folder=self.run_dir / "locks", count=count, lab=lab, note=node.nodeid)
        )
        request.addfinalizer(stack.close)
        log.info("%s holds %s", node.nodeid, ", ".join(held))
        return held

    # --- checks, metrics and device-side cases -------------------------------------------

    def _evidence_for(self, nodeid: str) -> _TestEvidence:
        evidence = self._evidence
        if evidence is None or evidence.nodeid != nodeid:
            evidence = self._evidence = _TestEvidence(nodeid)
        return evidence

    def check_for(self, request: pytest.FixtureRequest) -> Check:
        """The test's checks: one collector, whether asked for as ``check`` or ``otto_check``."""
        node = request.node
        evidence = self._evidence_for(node.nodeid)
        if evidence.check is None:
            evidence.check = Check(getattr(node, "path", None), self.config.rootpath)
        return evidence.check

    def metric_recorder(self, request: pytest.FixtureRequest) -> MetricRecorder:
        self._run_for(request)  # the metrics are kept in the test's record
        return MetricRecorder(self._evidence_for(request.node.nodeid).metrics)

    def _on_cases(self, source: str, cases: Sequence[Case]) -> None:
        """otto.results' sink while a test runs: its cases join the test's evidence."""
        evidence = self._evidence
        if evidence is None:
            return
        where = redact.redact(source)
        evidence.cases += [
            DeviceCase(
                name=redact.redact(case.name),
                status=case.status,
                output=redact.redact(case.output),
                message=redact.redact(case.message),
                duration=case.duration,
                source=where,
            )
            for case in cases
        ]

    @pytest.hookimpl(tryfirst=True, specname="pytest_runtest_logstart")
    def pytest_runtest_logstart_evidence(
        self, nodeid: str, location: tuple[str, int | None, str]
    ) -> None:
        if self.controller:
            return
        self._evidence = _TestEvidence(nodeid)
        self._previous_sink = set_sink(self._on_cases)

    @pytest.hookimpl(trylast=True, specname="pytest_runtest_logfinish")
    def pytest_runtest_logfinish_evidence(
        self, nodeid: str, location: tuple[str, int | None, str]
    ) -> None:
        if self.controller:
            return
        set_sink(self._previous_sink)
        self._previous_sink = None
        self._evidence = None

    def _judge_evidence(self, item: pytest.Item, report: pytest.TestReport) -> None:
        """Fail the call report of a test with failed checks, and the call (or teardown)
        report of one whose device-side cases failed, even when the test swallowed it."""
        evidence = self._evidence
        if evidence is None or evidence.nodeid != item.nodeid:
            return
        if report.when == "setup" and not report.failed:
            return  # cases published by fixtures are judged with the test's call
        found: list[tuple[str, str]] = []
        if report.when == "call" and evidence.check is not None and evidence.check.failures:
            found.append(("otto: failed checks", describe_checks(evidence.check.failures)))
        new = evidence.cases[evidence.judged :]
        evidence.judged = len(evidence.cases)
        if any(case.bad for case in new):
            found.append(("otto: failed device-side cases", describe_cases(new)))
        if not found:
            return
        if report.passed:
            report.outcome = "failed"
            report.longrepr = "\n".join(text for _, text in found)
        elif report.failed:
            report.sections += found

    def artifacts_for(self, request: pytest.FixtureRequest) -> Path:
        run = self._run_for(request)
        folder = self.run_dir / run.folder
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def test_monitor(self, request: pytest.FixtureRequest) -> Collector:
        from otto.monitor.collector import Collector

        names = list(self.hosts_for(request, one="host" in request.fixturenames))
        folder = self.artifacts_for(request)
        return Collector(
            [self._host(n) for n in names],
            interval=_TESTMONITOR_INTERVAL,
            db=folder / "monitor.db",
        )

    # --- collection ---------------------------------------------------------------------

    def pytest_ignore_collect(self, collection_path: Path) -> bool | None:
        # Run folders hold one folder per test: never look for tests in them.
        if collection_path.name == _RUNS_FOLDER or (collection_path / _RUN_MARK).is_file():
            return True
        return None

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        if _plain(metafunc.definition):
            return
        # A bad needs mark is an error of this module's collection, naming the test.
        features = needed(metafunc.definition)
        if "host" not in metafunc.fixturenames:
            return
        mark = hosts_mark(metafunc.definition, one=True)
        if mark is None:
            return
        pool, count = mark_pool(self.lab(), mark, features=features)
        if count is None and pool:  # no pool: the test is skipped (otto.testing.needs)
            metafunc.parametrize("host", pool, indirect=True, ids=pool)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        take_shard(self.config, items)  # --shard I/N: after -k/-m, before hosts are planned
        planned: list[str] = []
        for item in items:
            planned += [n for n in self.hosts_of(item) if n not in planned]
        self.planned_hosts = planned
        # `otto test` checks the reservations of these hosts (it may stop the run) before
        # the run folder is made; under plain pytest, --wait-hosts waits for them here.
        checked = False
        for other in self.config.pluginmanager.get_plugins():
            check = getattr(other, "otto_check_hosts", None)
            if callable(check):
                check(planned)
                checked = True
        if not checked and not self.worker:
            self._wait_for(planned)
        if self.enabled or any(self._uses_otto(item) for item in items):
            self._activate()

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # What collection built (modules, items, fixtures, otto's hosts) lives until the
        # run ends: moved out of the collector's sight, every later collection (pytest's
        # own at the end among them) walks only what the tests made.
        if self.active:
            self._freeze()

    def _freeze(self) -> None:
        # Not inside a process someone else froze (theirs to thaw).
        if self._froze or gc.get_freeze_count() == 0:
            gc.freeze()
            self._froze = True

    def thaw(self) -> None:
        """Give the collector back what this run froze, at its configuration and after
        collection (for a pytest run inside a process that goes on, as pytester's are)."""
        if self._froze:
            self._froze = False
            gc.unfreeze()

    def _wait_for(self, names: Sequence[str]) -> None:
        """``--wait-hosts`` under plain pytest (``otto test`` waits in its own plugin): wait
        in the reservation queue for those of ``names`` someone else holds, and hold them
        as the user's own until the run ends (the tests' ``hold_hosts`` take them then)."""
        wait: float | None = self.config.getoption("otto_wait_hosts", None)
        if wait is None or not names or self._run_hold is not None:
            return
        if self.config.option.collectonly:
            return
        from otto.errors import ReservationStoreError, ReservedError
        from otto.reservations.queue import span
        from otto.testing.hostlock import wait_for_hosts

        def say(message: str) -> None:
            sys.stderr.write(f"otto: {message}\n")
            sys.stderr.flush()

        try:
            self._run_hold = wait_for_hosts(self.lab(), names, timeout=wait, say=say)
        except ReservedError as exc:  # StillQueued: the wait's end
            say(f"error: {exc} (--wait-hosts {span(wait)})")
            pytest.exit("otto: a host the tests use is still reserved", returncode=3)
        except ReservationStoreError as exc:
            say(f"error: {exc}")
            pytest.exit("otto: the reservation store cannot be used", returncode=1)
        if self._run_hold.hosts:
            log.info("waited for and holds %s", ", ".join(self._run_hold.hosts))

    def hosts_of(self, item: pytest.Item) -> list[str]:
        """The lab hosts a collected test may use: those its ``hosts`` mark allows (all of
        them for ``count=``), the lab's only host for ``host``, every host for ``hosts`` or
        ``lab`` without a mark; none when it uses no otto fixture."""
        used = self._otto_fixtures(item)
        if not used or unfit(item) is not None:  # a test the lab cannot run uses no host
            return []
        lab = self.lab()
        if "lab" in used:
            return lab.names
        mark = None if _plain(item) else hosts_mark(item, one=True)
        if mark is None:
            if "hosts" in used or ("monitor" in used and "host" not in used):
                return lab.names
            return lab.names if len(lab) == 1 else []
        callspec = getattr(item, "callspec", None)
        param = callspec.params.get("host") if callspec is not None else None
        if isinstance(param, str) and "hosts" not in used:
            return [param]
        try:
            pool, _ = mark_pool(lab, mark, features=needed(item))
        except pytest.UsageError:  # the test's setup says so, as an error of its own
            return []
        return pool

    @classmethod
    def _uses_otto(cls, item: pytest.Item) -> bool:
        return bool(cls._otto_fixtures(item, OTTO_FIXTURES | _EVIDENCE_FIXTURES))

    @staticmethod
    def _otto_fixtures(item: pytest.Item, among: frozenset[str] = OTTO_FIXTURES) -> set[str]:
        """The otto fixtures a test uses (not a project's fixture of the same name)."""
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            return set()
        used: set[str] = set()
        for name in among.intersection(getattr(item, "fixturenames", ())):
            defs = info.name2fixturedefs.get(name)
            if defs and getattr(defs[-1].func, "__module__", "") == __name__:
                used.add(name)
        return used

    # --- running ------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> object:
        if not self.repeating or self._inner:
            return None
        # Each iteration is a whole protocol with the real next item: fixtures
        # wider than the test are set up again only where pytest would anyway.
        self._inner = True
        deadline = None if self.duration is None else time.monotonic() + self.duration
        try:
            n = 0
            while True:
                n += 1
                self._iteration = n
                item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
                if self.iterations is not None and n >= self.iterations:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
        finally:
            self._inner = False
            self._iteration = 1
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_pyfunc_call(self, pyfuncitem: pytest.Function) -> object:
        fn: Callable[..., Any] = pyfuncitem.obj
        if not inspect.iscoroutinefunction(fn):
            # pytest-asyncio swaps in a synchronous wrapper of the test.
            wrapped = getattr(fn, "__wrapped__", None)
            if wrapped is None or pyfuncitem.get_closest_marker("asyncio") is None:
                return None
            if not inspect.iscoroutinefunction(wrapped):
                return None
            fn = wrapped
        if not self._uses_otto(pyfuncitem) and not (
            self.enabled and pyfuncitem.get_closest_marker("asyncio") is None
        ):
            return None
        names = pyfuncitem._fixtureinfo.argnames
        _run_to_the_end(fn, {name: pyfuncitem.funcargs[name] for name in names})
        return True

    def _start_run(self, nodeid: str, name: str) -> TestRun:
        iteration = self._iteration
        key = f"{nodeid}#{iteration}"
        run = self._runs.get(key)
        now = time.time()
        if run is not None:
            run.attempt += 1
            run.attempt_start = now
            if run.transcript is not None:
                run.transcript.note(f"attempt {run.attempt}")
            if run.session_log is not None:
                run.session_log.note(f"attempt {run.attempt}")
        else:
            folder = folder_name(nodeid)
            if self.repeating:
                folder = f"{folder}/{iteration}"
            run = TestRun(nodeid, name, iteration, folder, now, now)
            self._runs[key] = run
        self._current = run
        return run

    def pytest_runtest_logstart(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        self._event(f"{nodeid} started", "#888888")
        if self.active and not self.controller:
            self._start_run(nodeid, location[2])

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        self._judge_evidence(item, report)
        if self.repeating:
            # Named in pytest's own sections (failure headlines, the short summary).
            path, line, domain = report.location
            report.location = (path, line, f"{domain} [iteration {self._iteration}]")
        run = self._current
        if run is None or run.nodeid != item.nodeid or report.when == "setup":
            return report
        crash = self._crash_of(run)
        if crash is not None and not run.crash_reported:
            run.crash_reported = True
            excerpt = f"{crash.host} printed {crash.pattern!r}:\n{crash.excerpt}"
            report.sections.append((f"otto: crash on {crash.host}", excerpt))
            if report.passed:
                report.outcome = "failed"
                report.longrepr = f"otto: {crash.host} crashed during the test\n{excerpt}"
        if report.failed and report.when == "call" and run.failures:
            report.sections.append(
                ("otto: failing commands", "\n".join(describe(s) for s in run.failures))
            )
        return report

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        # Workers' collection errors reach the controller (once each): it records them.
        if not report.failed or self.worker:
            return
        now = time.time()
        self._own.append(
            self._own_record(
                report.nodeid or ".",
                "collection",
                f"collection error in {report.nodeid or 'the session'}:\n{report.longrepr}",
                now,
            )
        )

    def _own_record(self, nodeid: str, kind: Kind, longrepr: str, now: float) -> TestRecord:
        return TestRecord(
            nodeid=nodeid,
            name=nodeid.rsplit("::", 1)[-1],
            outcome="error",
            start=now,
            stop=now,
            longrepr=longrepr,
            kind=kind,
        )

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: Sequence[str]) -> None:
        self._collected.update(ids)

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        if user_interrupt(excinfo.value):
            self._interrupted = True

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed and self._collector is not None:
            self._failed.add(report.nodeid)
        if self.controller:
            self._seen.add(report.nodeid)
            if str(report.when) == "???":  # pytest-xdist: the worker died running it
                self._crashed = True
                worker = getattr(getattr(report, "node", None), "gateway", None)
                longrepr = str(report.longrepr)
                record = self._own_record(report.nodeid, "crashed", longrepr, time.time())
                record.worker = str(getattr(worker, "id", ""))
                self._own.append(record)
        run = self._current
        if self.controller or run is None or run.nodeid != report.nodeid:
            return
        run.reports.append(report)
        if is_rerun(report):
            run.rerun = True

    def pytest_runtest_logfinish(self, nodeid: str, location: tuple[str, int | None, str]) -> None:
        if self._collector is not None:
            failed = nodeid in self._failed
            self._failed.discard(nodeid)
            self._event(
                f"{nodeid} {'failed' if failed else 'ended'}", "#d62728" if failed else "#2ca02c"
            )
        if self.controller:
            return
        run = self._current
        if run is None or run.nodeid != nodeid:
            return
        if run.rerun:
            rerun = next(r for r in run.reports if is_rerun(r))
            kind: Outcome = "failed" if rerun.when == "call" else "error"
            run.earlier.append(Attempt(kind, str(rerun.longrepr), run.attempt_start, time.time()))
            run.reports.clear()
            run.failures.clear()
            run.rerun = False
            run.crash_reported = False
            run.picked.clear()
            self._forget_panics(run)
            self._current = None
            return
        self._finish(run)

    def _finish(self, run: TestRun, interrupted: bool = False) -> None:
        self._current = None
        self._runs.pop(f"{run.nodeid}#{run.iteration}", None)
        if interrupted:
            outcome: Outcome = "error"
            longrepr = "interrupted: the run was stopped during this test"
        else:
            outcome, longrepr = outcome_of(run.reports)
        transcript = ""
        if run.session_log is not None:
            run.session_log.close()
        if run.transcript is not None:
            run.transcript.close()
        crash = self._crash_of(run)
        self._forget_panics(run)
        if run.transcript is not None:
            for name in sorted(run.transcript.hosts):
                if name not in run.hosts:
                    run.hosts.append(name)
            transcript = f"{run.folder}/transcript.log"
        failures = (
            [
                CommandFailure(
                    host=s.host,
                    command=s.command,
                    retcode=s.retcode,
                    status=s.status.name,
                    output_tail=tail(s.output),
                    error=s.error,
                )
                for s in run.failures
            ]
            if outcome != "passed"
            else []
        )
        record = TestRecord(
            nodeid=run.nodeid,
            name=run.name,
            outcome=outcome,
            start=run.start,
            stop=time.time(),
            iteration=run.iteration,
            hosts=run.hosts,
            longrepr=longrepr,
            failures=failures,
            crash=crash,
            transcript=transcript,
            # A transcript made the folder (and its files in it) when it opened.
            folder=run.folder
            if run.transcript is not None or os.path.isdir(f"{self.run_dir}/{run.folder}")
            else "",
            earlier=run.earlier,
            worker=self.worker,
        )
        evidence = self._evidence
        if evidence is not None and evidence.nodeid == run.nodeid:
            if evidence.check is not None:
                record.checks = list(evidence.check.failures)
            record.metrics = list(evidence.metrics)
            record.cases = list(evidence.cases)
        self._write_record(record)

    def _write_record(self, record: TestRecord) -> None:
        if self._records is None:
            path = self._records_path()
            if self._records_fresh is None:
                self._records_fresh = not path.exists()
            self._records = LineFile(path)
        exact = self._records.write_line(record.to_json())
        if self._written is not None:
            if exact:
                self._written.append(record)
            else:
                self._written = None

    def _read_records(self) -> list[TestRecord]:
        """Every record in the run folder: this process's as it wrote them when the folder
        holds no other (one process, a new records file, nothing redacted in it)."""
        files = sorted(self.run_dir.glob("records*.jsonl"))
        if (
            self._written is not None
            and self._records_fresh
            and not self.controller
            and files == [self._records_path()]
        ):
            return list(self._written)
        return list(read_records(files))

    # --- the run-wide monitor -----------------------------------------------------------

    def _event(self, label: str, color: str) -> None:
        collector = self._collector
        if collector is None:
            return

        async def add() -> None:
            collector.add_event(label, color)

        otto_loop.run(add())

    @pytest.hookimpl(trylast=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self._session_started = True
        waits = self.config.getoption("otto_wait_hosts", None) is not None
        if (
            waits
            and self.controller
            and not any(
                callable(getattr(other, "otto_check_hosts", None))
                for other in self.config.pluginmanager.get_plugins()
            )
        ):
            # pytest-xdist's controller collects nothing: it waits for every lab host.
            self._wait_for(self.lab().names)
        # --collect-only (what `otto -n test` runs) contacts no host, whatever the ini asks.
        if not self.monitor_run or self.worker or self.config.option.collectonly:
            return
        from otto.monitor.collector import Collector

        self._activate()
        lab = self.lab()
        self._collector = Collector(
            lab.hosts(), interval=self.monitor_interval, db=self.run_dir / "monitor.db"
        )
        otto_loop.run(self._collector.start())

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["otto_run_dir"] = str(self.run_dir)

    # --- the end ------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self._current is not None:
            self._finish(self._current, interrupted=True)
        if self._collector is not None:
            otto_loop.run(self._collector.stop())
            self._collector = None
        self._close_hosts()
        if self._records is not None:
            self._records.close()
            self._records = None
        if self.worker:
            return
        if self._own and not self.active and (self.enabled or self.run_dir.is_dir()):
            self._activate()
        if not self.run_dir.is_dir():
            return
        self.active = True
        records = self._read_records()
        self._record_the_missing(records)
        records += self._own
        write_durations(self.run_dir, records)  # what a later --shard-durations reads
        self._run_records = records
        verdict = judge(
            records,
            threshold=self.threshold,
            interrupted=self._interrupted,
            pytest_status=int(exitstatus),
            baseline=self.baseline,
            tolerance=self.tolerance,
        )
        self.verdict = verdict
        self._write_outputs(records, verdict)
        session.exitstatus = verdict.exit_status

    def _record_the_missing(self, records: list[TestRecord]) -> None:
        """Write the controller's own records: a crashed test's transcript is linked, and
        after a crash, each test collected but never reported is recorded as never run."""
        ran: dict[str, int] = {}
        for record in records:
            ran[record.nodeid] = ran.get(record.nodeid, 0) + 1
        now = time.time()
        if self._crashed and not self._interrupted:
            for nodeid in sorted(self._collected - self._seen):
                self._own.append(
                    self._own_record(
                        nodeid,
                        "not-run",
                        "never run: a pytest-xdist worker crashed and no other ran this test",
                        now,
                    )
                )
        for record in self._own:
            if record.kind == "crashed":
                record.iteration = ran.get(record.nodeid, 0) + 1
                folder = folder_name(record.nodeid)
                if self.repeating:
                    folder = f"{folder}/{record.iteration}"
                if (self.run_dir / folder).is_dir():
                    record.folder = folder
                    if (self.run_dir / folder / "transcript.log").is_file():
                        record.transcript = f"{folder}/transcript.log"
            self._write_record(record)
        if self._records is not None:
            self._records.close()
            self._records = None

    def _close_hosts(self) -> None:
        built: list[Host] = list(self._extra.values())
        if self._lab is not None and self.active:
            try:
                otto_loop.run(self._lab.close(timeout=10.0))
            except Exception as exc:  # closing must not hide the run's results
                log.warning("closing the lab's hosts: %s", exc)
        for extra in built:
            try:
                otto_loop.run(extra.close())
            except Exception as exc:
                log.warning("closing host %s: %s", extra.name, exc)

    def _write_outputs(self, records: list[TestRecord], verdict: Verdict) -> None:
        if self.metrics_out is not None:
            try:
                write_prometheus(self.metrics_out, records)
            except OSError as exc:
                log.error("writing %s failed: %s", self.metrics_out, exc)
        try:
            from otto.testing.junit import write_junit

            write_junit(self.junit_path, records, run_dir=self.run_dir)
        except Exception:
            log.exception("writing %s failed", self.junit_path)
        try:
            from otto.testing.report import write_report

            db = self.run_dir / "monitor.db"
            write_report(
                self.run_dir,
                records,
                monitor_db=db if db.exists() else None,
                threshold=self.threshold,
                interrupted=verdict.headline == "interrupted",
                junit=self.junit_path,
                verdict=verdict,
            )
        except Exception:
            log.exception("writing the report in %s failed", self.run_dir)

    @pytest.hookimpl(wrapper=True, tryfirst=True, specname="pytest_terminal_summary")
    def pytest_terminal_summary_of_repeats(
        self, terminalreporter: Any
    ) -> Generator[None, None, None]:
        """pytest's sections of a repeating run: each failure names its iteration; with
        ``--duration``, one entry per test (how many of its runs failed, in which
        iterations, the first one's report) instead of one per failed run."""
        stats: dict[str, list[Any]] = terminalreporter.stats
        kept = {key: stats[key] for key in ("failed", "error") if stats.get(key)}
        if self.repeating and not self.worker:
            for key, reports in kept.items():
                stats[key] = by_iteration(reports, key, per_test=self.duration is not None)
        try:
            return (yield)
        finally:
            stats.update(kept)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.worker or not self.run_dir.is_dir():
            return
        tr = terminalreporter
        records = self._run_records
        if records is None:
            records = list(read_records(sorted(self.run_dir.glob("records*.jsonl"))))
        tr.write_sep("-", "otto")
        if self.repeating or self.threshold is not None:
            for nodeid, (rate, passed, counted) in pass_rates(records).items():
                shown = "  n/a " if rate is None else f"{rate:5.1f}%"
                below = self.threshold is not None and rate is not None and rate < self.threshold
                tr.write_line(
                    f"{shown} passed ({passed}/{counted}) {nodeid}"
                    + (f"  BELOW THRESHOLD {self.threshold:g}%" if below else ""),
                    red=below,
                )
        verdict = self.verdict
        if verdict is not None:
            tr.write_line(f"verdict: {verdict.headline}", red=not verdict.passed, bold=True)
            for reason in verdict.reasons:
                tr.write_line(f"  {reason}", red=not verdict.passed)
        tr.write_line(f"run folder: {self.run_dir}")
        for path in (self.run_dir / "report.html", self.junit_path):
            if path.exists():
                tr.write_line(f"  {path}")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        hold, self._run_hold = self._run_hold, None
        if hold is not None:
            hold.close()
        if self._log_handler is not None:
            otto_logger = logging.getLogger("otto")
            otto_logger.removeHandler(self._log_handler)
            if self._old_level is not None:
                otto_logger.setLevel(self._old_level)
            self._log_handler.close()
            self._log_handler = None
