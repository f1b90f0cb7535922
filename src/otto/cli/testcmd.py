"""``otto test [PYTEST ARGS...]``: pytest, in this process, with otto's plugin and options.

pytest runs in-process (``pytest.main``): one interpreter, a debugger (``--pdb``)
keeps the terminal, and Ctrl-C takes pytest's own path: the running test is
interrupted (its remote command too, by the plugin's loop), and the session
ends normally enough for the plugin to write the partial report and JUnit
file. SIGTERM is turned into the same interruption. If pytest ends without
writing them (it crashed, or the plugin was not loaded), they are written here
from the run folder's ``records*.jsonl``.

Exit status: the run's verdict (:func:`otto.testing.verdict.judge`: 0 passed,
1 a test failed, a module could not be collected, a worker crashed or the
pass-rate threshold was not met, 4 usage error, 5 no tests), and 130 after
Ctrl-C (143 after SIGTERM), as every otto command reports an interruption.
pytest's own 2 after collection errors is a failure, never read as Ctrl-C.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from otto.cli.exits import EXIT_INTERRUPTED, fail

__all__ = ["TEST_EPILOG", "default_output", "pytest_argv", "run_tests", "test_command"]

_INTERRUPTED = 2  # pytest.ExitCode.INTERRUPTED, without importing pytest for --help


_QUIET = [
    # otto is imported before pytest loads its plugin (this command is otto): pytest
    # cannot rewrite otto's asserts, which are not the user's tests anyway.
    "-W",
    "ignore:Module already imported so cannot be rewritten; otto:pytest.PytestAssertRewriteWarning",
    # otto runs the async tests that use its fixtures on its own loop; pytest-asyncio's
    # default loop scope for async fixtures is the user's to set, not a warning per run.
    "-W",
    'ignore:The configuration option "asyncio_default_fixture_loop_scope" is unset'
    ":pytest.PytestDeprecationWarning",
]
"""Warnings about how otto runs pytest, not about the user's tests."""


def default_output(now: float | None = None) -> Path:
    """``otto-runs/<UTC timestamp>/`` in the current folder: the name pytest's own runs get
    (``-2``, ``-3``... for runs started in the same second)."""
    from otto.testing.evidence import new_run_dir

    return new_run_dir(Path(), now)


def pytest_argv(
    pytest_args: Sequence[str],
    *,
    output: Path,
    labs: Sequence[str] = (),
    iterations: int | None = None,
    duration: float | None = None,
    threshold: float | None = None,
    monitor: bool = False,
    junit: Path | None = None,
    monitor_interval: float | None = None,
) -> list[str]:
    """pytest's command line for an otto run: otto's options first, then the user's.

    ``--otto`` marks the run as recorded; the plugin's long names (``--otto-output``...)
    are used, which no other plugin can have taken.
    """
    argv = ["--otto", "--otto-output", str(output), *_QUIET]
    for lab in labs:
        argv += ["--lab", lab]
    if iterations is not None:
        argv += ["--otto-iterations", str(iterations)]
    if duration is not None:
        argv += ["--otto-duration", f"{duration:g}"]
    if threshold is not None:
        argv += ["--otto-threshold", f"{threshold:g}"]
    if monitor:
        argv.append("--otto-monitor")
    if monitor_interval is not None:
        argv += ["--otto-monitor-interval", f"{monitor_interval:g}"]
    if junit is not None:
        argv += ["--otto-junit", str(junit)]
    return [*argv, *pytest_args]


@contextmanager
def _sigterm_interrupts() -> Iterator[list[int]]:
    """SIGTERM becomes SIGINT, so that it takes the path Ctrl-C takes (asyncio's included)."""
    received: list[int] = []

    def on_term(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


def _write_missing(
    output: Path, junit: Path | None, threshold: float | None, *, interrupted: bool
) -> None:
    """Write the report and JUnit file from the records when pytest left them unwritten."""
    from otto.testing.records import read_records

    record_files = sorted(output.glob("records*.jsonl"))
    if not record_files:  # no test ran (a usage error, nothing collected)
        return
    report = output / "report.html"
    junit_path = junit if junit is not None else output / "junit.xml"
    newest = max((p.stat().st_mtime for p in record_files), default=0.0)

    def stale(path: Path) -> bool:
        return not path.exists() or path.stat().st_mtime < newest

    if not (stale(report) or stale(junit_path)):
        return
    records = list(read_records(record_files))
    if stale(report):
        from otto.testing.report import write_report

        db = output / "monitor.db"
        write_report(
            output,
            records,
            monitor_db=db if db.exists() else None,
            threshold=threshold,
            interrupted=interrupted,
            junit=junit_path,
        )
    if stale(junit_path):
        from otto.testing.junit import write_junit

        write_junit(junit_path, records, run_dir=output)
    sys.stderr.write(f"otto: wrote the report and JUnit file of {len(records)} runs in {output}\n")


def run_tests(
    pytest_args: Sequence[str],
    *,
    output: Path | None = None,
    labs: Sequence[str] = (),
    iterations: int | None = None,
    duration: float | None = None,
    threshold: float | None = None,
    monitor: bool = False,
    junit: Path | None = None,
    force: bool = False,
    monitor_interval: float | None = None,
) -> int:
    """Run pytest on ``pytest_args`` as an otto run; return the command's exit status.

    Once the tests are collected, the lab hosts they may use are checked against the
    reservations (exit status 3 if someone else holds one, unless ``force``); under
    pytest-xdist, whose controller collects nothing, every host of the lab is. With
    ``--wait-hosts DURATION`` among ``pytest_args``, held hosts are waited for in the
    reservation queue first (exit status 3 only if the wait ends without them).
    """
    try:
        import pytest
    except ModuleNotFoundError:
        fail("`otto test` runs pytest, which is not installed: pip install 'otto-shell[test]'")

    output = (output if output is not None else default_output()).absolute()
    junit = junit.absolute() if junit is not None else None
    argv = pytest_argv(
        pytest_args,
        output=output,
        labs=labs,
        iterations=iterations,
        duration=duration,
        threshold=threshold,
        monitor=monitor,
        junit=junit,
        monitor_interval=monitor_interval,
    )
    watch = _Interruption()
    reservations = _Reservations(force=force)
    with _sigterm_interrupts() as terminated:
        try:
            code = int(pytest.main(argv, plugins=[watch, reservations]))
        except KeyboardInterrupt:  # outside pytest's own handling (start-up, exit)
            code, watch.seen = _INTERRUPTED, True
        finally:
            reservations.close()
        interrupted = watch.seen or bool(terminated)
        if code == _INTERRUPTED and not interrupted:
            code = 1  # pytest stopped itself (collection errors): a failure, not Ctrl-C
        _write_missing(output, junit, threshold, interrupted=interrupted)
    if interrupted:
        return 128 + signal.SIGTERM if terminated else EXIT_INTERRUPTED
    return code


class _Reservations:
    """A pytest plugin that checks the reservations of the hosts the run will use.

    With ``--wait-hosts DURATION`` the run first waits in the reservation queue
    for the hosts someone else holds, and holds them until the run ends.
    """

    def __init__(self, *, force: bool) -> None:
        self.force = force
        self.wait: float | None = None
        self.held: Any = None  # the hosts waited for (otto.testing.hostlock.RunHold)

    def pytest_configure(self, config: Any) -> None:
        self.wait = config.getoption("otto_wait_hosts", None)

    def _wait(self, names: Sequence[str]) -> None:
        import pytest

        from otto.errors import ReservationStoreError, ReservedError
        from otto.lab import current_lab
        from otto.reservations.queue import span
        from otto.testing.hostlock import wait_for_hosts

        assert self.wait is not None

        def say(message: str) -> None:
            sys.stderr.write(f"otto: {message}\n")
            sys.stderr.flush()

        try:
            self.held = wait_for_hosts(current_lab(), names, timeout=self.wait, say=say)
        except ReservedError as exc:  # StillQueued: the wait's end
            say(f"error: {exc} (--wait-hosts {span(self.wait)})")
            pytest.exit("otto: a host the tests use is still reserved", returncode=3)
        except ReservationStoreError as exc:
            say(f"error: {exc}")
            pytest.exit("otto: the reservation store cannot be used", returncode=1)

    def close(self) -> None:
        """Release the hosts waited for (at the run's end)."""
        held, self.held = self.held, None
        if held is not None:
            held.close()

    def pytest_unconfigure(self, config: Any) -> None:
        self.close()

    def _guard(self, names: Sequence[str]) -> None:
        import pytest

        from otto.cli.guard import guard
        from otto.lab import current_lab

        if not names:
            return
        if self.wait is not None and not self.force and self.held is None:
            self._wait(names)
        try:
            guard(current_lab(), names, force=self.force)
        except typer.Exit as exc:  # guard said why on stderr
            pytest.exit("otto: a host the tests use is reserved", returncode=exc.exit_code)

    def pytest_sessionstart(self, session: Any) -> None:
        if session.config.pluginmanager.hasplugin("dsession"):
            from otto.lab import current_lab

            self._guard(current_lab().names)

    def otto_check_hosts(self, names: Sequence[str]) -> None:
        """What otto's plugin calls once the tests are collected, before it makes the run
        folder: the hosts they may use."""
        self._guard(names)


class _Interruption:
    """A pytest plugin that sees whether the user stopped the run (not pytest itself)."""

    def __init__(self) -> None:
        self.seen = False

    def pytest_keyboard_interrupt(self, excinfo: Any) -> None:
        from otto.testing.verdict import user_interrupt

        self.seen = self.seen or user_interrupt(excinfo.value)


TEST_EPILOG = (
    "Any other argument goes to pytest as it is: paths, -k EXPR, -x, -n 4 (pytest-xdist), "
    "--reruns N. The run folder holds report.html, junit.xml, a folder per test with its "
    "transcript.log, otto.log and, with --monitor, monitor.db.\n\n"
    "So do otto's plugin options (pytest --help lists them): --metrics-out FILE "
    "(metrics as Prometheus text), --baseline RUN_DIR and --tolerance [NAME=]PCT "
    "(a metric worse than in an earlier run fails the run).\n\n"
    "Exit status: 0 all passed; 1 a test failed, a module could not be collected, a "
    "worker crashed, a pass rate is below --threshold or a metric regressed against "
    "--baseline; 4 usage error; 5 no tests "
    "collected; 130 after Ctrl-C, with the partial report and JUnit file written."
)


def test_command(  # noqa: PLR0917 (typer passes each option as a parameter)
    ctx: typer.Context,
    lab: Annotated[
        list[Path] | None,
        typer.Option(
            "--lab",
            metavar="LAB",
            help="A lab file; repeat to merge. Default: otto's --lab, else $OTTO_LAB, "
            "else this machine as host 'local'.",
            show_default=False,
        ),
    ] = None,
    iterations: Annotated[
        int | None,
        typer.Option(
            "--iterations",
            min=1,
            help="Run each test N times (stability mode).",
            show_default=False,
        ),
    ] = None,
    duration: Annotated[
        float | None,
        typer.Option(
            "--duration",
            min=0,
            metavar="SECONDS",
            help="Repeat the tests until this many seconds have passed (stability mode).",
            show_default=False,
        ),
    ] = None,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            min=0,
            max=100,
            metavar="PCT",
            help="Minimum pass rate of each test, in percent (0-100); the run fails below it.",
            show_default=False,
        ),
    ] = None,
    monitor: Annotated[
        bool,
        typer.Option(
            "--monitor",
            help="Sample the lab's hosts for the whole run (monitor.db; charts in the report).",
        ),
    ] = False,
    monitor_interval: Annotated[
        float | None,
        typer.Option(
            "--monitor-interval",
            min=0.01,
            metavar="SECONDS",
            help="Seconds between --monitor's samples. Default: 1.",
            show_default=False,
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            metavar="DIR",
            help="The run folder. Default: otto-runs/<UTC timestamp>/.",
            show_default=False,
            file_okay=False,
        ),
    ] = None,
    junit: Annotated[
        Path | None,
        typer.Option(
            "--junit",
            metavar="FILE",
            help="Write the JUnit XML here. Default: junit.xml in the run folder.",
            show_default=False,
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Run pytest with otto's plugin: lab fixtures, transcripts, a report and JUnit XML."""
    from otto.errors import LabError
    from otto.lab import load_lab

    labs = [str(p) for p in lab or ctx.find_root().params.get("lab") or []]
    if labs:
        try:
            load_lab(labs)  # a broken lab is a usage error before pytest starts
        except LabError as exc:
            fail(str(exc))
    if ctx.find_root().params.get("dry_run"):
        from otto.cli.dryrun import plan_tests

        force = bool(ctx.find_root().params.get("force"))
        raise typer.Exit(
            plan_tests(
                [*_QUIET, *ctx.args], labs, force=force, iterations=iterations, duration=duration
            )
        )
    raise typer.Exit(
        run_tests(
            ctx.args,
            output=output,
            labs=labs,
            iterations=iterations,
            duration=duration,
            threshold=threshold,
            monitor=monitor,
            junit=junit,
            force=bool(ctx.find_root().params.get("force")),
            monitor_interval=monitor_interval,
        )
    )
