"""Settings for the whole suite."""

from __future__ import annotations

import os

import pytest
from _pytest.terminal import TerminalReporter
from hypothesis import settings

from tests import skips

# No per-example deadline: a shared 2-core machine stalls now and then, and a
# stall is not a failure of the code under test. In CI the examples are
# derived from the test (derandomized), so a run there is repeatable.
settings.register_profile("otto", deadline=None, derandomize=bool(os.environ.get("CI")))
settings.load_profile("otto")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--strict-skips",
        action="store_true",
        help="fail the run when a test is skipped for a reason not on tests/skips.py's allowlist",
    )


_skips: list[tuple[str, str]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        _skips.append((report.nodeid, reason.removeprefix("Skipped: ")))


def pytest_collectreport(report: pytest.CollectReport) -> None:
    if report.skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        _skips.append((report.nodeid, reason.removeprefix("Skipped: ")))


def pytest_terminal_summary(terminalreporter: TerminalReporter, config: pytest.Config) -> None:
    if not config.getoption("strict_skips"):
        return
    bad = [(node, reason) for node, reason in _skips if not skips.allowed(reason)]
    terminalreporter.write_sep("-", f"skips: {len(_skips)}, {len(bad)} not allowlisted")
    for node, reason in bad:
        terminalreporter.write_line(f"NOT ALLOWED {node}: {reason}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if not session.config.getoption("strict_skips"):
        return
    if any(not skips.allowed(reason) for _, reason in _skips) and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _inner_runs_set_their_loop_scope(request: pytest.FixtureRequest) -> None:
    """Inner pytest runs (pytester) get pytest-asyncio's loop scope set, as ours is.

    Without it pytest-asyncio warns in every inner run about its own default,
    which says nothing about the code under test. A test that writes its own
    ini (pytest.ini, or pyproject.toml with ini options) takes precedence.
    """
    if "pytester" in request.fixturenames:
        pytester: pytest.Pytester = request.getfixturevalue("pytester")
        (pytester.path / "tox.ini").write_text(
            "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        )
