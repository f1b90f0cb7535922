"""The pytest plugin on example suites (pytester), with local hosts only."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from otto.testing.records import read_records

if TYPE_CHECKING:
    from otto.testing.records import TestRecord

pytest_plugins = ["pytester"]


def lab_file(pytester: pytest.Pytester, hosts: list[dict[str, object]]) -> Path:
    path = pytester.path / "lab.json"
    path.write_text(json.dumps({"hosts": hosts}))
    return path


def records(run: Path) -> list[TestRecord]:
    return list(read_records(sorted(run.glob("records*.jsonl"))))


def the_run(pytester: pytest.Pytester) -> Path:
    runs = list((pytester.path / "otto-runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def test_inert_without_otto_options_or_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import asyncio, pytest

        @pytest.fixture
        def host():
            return "mine"

        def test_own_host_fixture(host):
            assert host == "mine"

        def test_plain():
            assert True
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert not (pytester.path / "otto-runs").exists()
    assert "run folder" not in result.stdout.str()


def test_async_tests_of_pytest_asyncio_are_left_to_it(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        """
        import threading

        async def test_not_ours():
            assert threading.current_thread().name != "otto-loop"

        async def test_ours(host):
            assert threading.current_thread().name == "otto-loop"
            assert (await host.run("echo hi")).only.output == "hi"
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_async_tests_run_on_ottos_loop_without_a_marker(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import threading

        async def test_plain_async_in_an_otto_run():
            assert threading.current_thread().name == "otto-loop"
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:asyncio", "--otto")
    result.assert_outcomes(passed=1)


def test_run_folder_records_transcripts_and_failing_commands(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from otto import run

        def test_ok(host, artifacts):
            (artifacts / "note.txt").write_text("kept")
            assert run(host.run("echo hello")).is_ok

        def test_status(host):
            result = run(host.run(["echo before", "printf 'a\\\\nb\\\\nlast words\\\\n'; exit 7"]))
            assert result.status.is_ok

        def test_command_status(host):
            assert run(host.oneshot("echo gone >&2; exit 3")).is_ok

        def test_no_host():
            assert True
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert "otto: failing commands" in out
    assert '; exit 7" -> Failed (exit status 7)' in out
    assert "    last words" in out
    assert "local/oneshot: 'echo gone >&2; exit 3' -> Failed (exit status 3)" in out
    run_dir = the_run(pytester)
    recs = {r.name: r for r in records(run_dir)}
    assert set(recs) == {"test_ok", "test_status", "test_command_status", "test_no_host"}
    assert recs["test_ok"].outcome == "passed"
    assert recs["test_ok"].hosts == ["local"]
    assert (run_dir / recs["test_ok"].folder / "note.txt").read_text() == "kept"
    transcript = (run_dir / recs["test_ok"].transcript).read_text()
    assert "local/default $ echo hello\nhello\n# exit 0 (" in transcript
    raw = (run_dir / recs["test_ok"].folder / "transcript.raw.log").read_text()
    assert "local/default > " in raw and "local/default < hello" in raw
    oneshot = (run_dir / recs["test_command_status"].transcript).read_text()
    assert "local/oneshot $ echo gone >&2; exit 3\ngone\n# exit 3 (" in oneshot
    failed = recs["test_status"]
    assert failed.outcome == "failed"
    assert [(f.host, f.retcode, f.status) for f in failed.failures] == [("local", 7, "Failed")]
    assert failed.failures[0].output_tail.endswith("last words")
    assert recs["test_no_host"].transcript == ""
    assert recs["test_no_host"].hosts == []
    assert (run_dir / "otto.log").exists()
    assert (run_dir / "junit.xml").exists()
    assert (run_dir / "report.html").exists()


def test_threshold_outside_0_to_100_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest_subprocess("--threshold", "150")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "must be between 0 and 100, got 150" in result.stderr.str()


FLAKY = """
from pathlib import Path

def test_every_other(host):
    counter = Path("{counter}")
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    assert n % 2 == 0, f"run {{n}}"

def test_steady(host):
    from otto import run
    assert run(host.run("echo steady")).is_ok
"""


@pytest.mark.parametrize(("threshold", "ret"), [("40", 0), ("60", 1)])
def test_iterations_pass_rate_and_threshold(
    pytester: pytest.Pytester, threshold: str, ret: int
) -> None:
    pytester.makepyfile(FLAKY.format(counter=pytester.path / "count"))
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--iterations", "4", "--threshold", threshold
    )
    assert result.ret == ret
    out = result.stdout.str()
    assert " 50.0% passed (2/4) test_iterations_pass_rate_and_threshold.py::test_every_other" in out
    assert "100.0% passed (4/4) test_iterations_pass_rate_and_threshold.py::test_steady" in out
    assert ("BELOW THRESHOLD" in out) == (ret == 1)
    recs = records(the_run(pytester))
    every = sorted((r.iteration, r.outcome) for r in recs if r.name == "test_every_other")
    assert every == [(1, "passed"), (2, "failed"), (3, "passed"), (4, "failed")]
    transcripts = {r.transcript for r in recs if r.name == "test_steady"}
    assert len(transcripts) == 4
    assert all("/" in t for t in transcripts)


def test_duration_repeats_each_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_quick(host):\n    pass\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--duration", "0.3")
    assert result.ret == 0
    assert len(records(the_run(pytester))) >= 2


def test_rerun_keeps_earlier_failures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FLAKY.format(counter=pytester.path / "count").replace("% 2 == 0", ">= 2"))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--otto", "--reruns", "3")
    result.assert_outcomes(passed=2)
    assert "2 rerun" in result.stdout.str()
    rec = next(r for r in records(the_run(pytester)) if r.name == "test_every_other")
    assert rec.outcome == "passed"
    assert [a.outcome for a in rec.earlier] == ["failed", "failed"]
    assert "run 0" in rec.earlier[0].longrepr
    assert "run 1" in rec.earlier[1].longrepr
    transcript = (the_run(pytester) / rec.folder).exists()
    assert transcript


LAB = [
    {"name": "web1", "term": "local", "tags": ["board"]},
    {"name": "web2", "term": "local", "tags": ["board"]},
    {"name": "db", "term": "local"},
]


def test_hosts_mark_by_name_regex_and_tags(pytester: pytest.Pytester) -> None:
    lab = lab_file(pytester, LAB)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hosts("web.*")
        def test_each_web(host, hosts):
            assert list(hosts) == [host.name]

        @pytest.mark.hosts(tags=["board"], count=2)
        def test_two_boards(hosts, host):
            assert sorted(hosts) == ["web1", "web2"]
            assert host.name in hosts

        def test_all(hosts, lab):
            assert sorted(hosts) == ["db", "web1", "web2"]
            assert lab.names == ["web1", "web2", "db"]
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--lab", str(lab), "-v")
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(
        ["*test_each_web[[]web1[]] PASSED*", "*test_each_web[[]web2[]] PASSED*"]
    )


def test_unknown_host_in_the_mark_is_a_collection_error(pytester: pytest.Pytester) -> None:
    lab = lab_file(pytester, LAB)
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hosts("nosuch")
        def test_x(host):
            pass

        def test_other():
            pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--lab", str(lab))
    # A failed run, not an interrupted one (pytest's own status is 2, as for Ctrl-C).
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*no host in lab * has name 'nosuch' (hosts: web1, web2, db)*"])
    (record,) = records(the_run(pytester))
    assert (record.kind, record.outcome) == ("collection", "error")


def test_a_host_down_at_start_errors_its_tests_and_others_run(pytester: pytest.Pytester) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    lab = lab_file(
        pytester,
        [
            {
                "name": "dead",
                "address": "127.0.0.1",
                "port": port,
                "user": "nobody",
                "password": "pw",
                "known_hosts": None,
                "connect_timeout": 5,
            },
            {"name": "alive", "term": "local"},
        ],
    )
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hosts("dead")
        def test_on_dead(host):
            pass

        @pytest.mark.hosts("dead")
        def test_on_dead_again(host):
            pass

        @pytest.mark.hosts("alive")
        def test_on_alive(host):
            pass
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--lab", str(lab))
    result.assert_outcomes(passed=1, errors=2)
    assert result.stdout.str().count("host dead is down:") >= 2


def test_monitor_for_the_run_and_for_a_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        def test_watched(host, monitor):
            assert monitor.host_names == ["local"]
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--monitor")
    result.assert_outcomes(passed=1)
    run_dir = the_run(pytester)
    import sqlite3

    with sqlite3.connect(run_dir / "monitor.db") as db:
        labels = [row[0] for row in db.execute("select label from events order by id")]
    assert labels == [
        "test_monitor_for_the_run_and_for_a_test.py::test_watched started",
        "test_monitor_for_the_run_and_for_a_test.py::test_watched ended",
    ]
    (rec,) = records(run_dir)
    assert (run_dir / rec.folder / "monitor.db").exists()


def test_host_on_a_lab_of_several_hosts_without_a_mark_is_an_error(
    pytester: pytest.Pytester,
) -> None:
    lab = lab_file(pytester, LAB)
    pytester.makepyfile(
        """
        def test_where(host):
            pass

        def test_everywhere(hosts):
            assert sorted(hosts) == ["db", "web1", "web2"]
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--lab", str(lab))
    result.assert_outcomes(errors=1, passed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_where uses the `host` fixture, but lab * has 3 hosts (web1, web2, db)*",
            "*@pytest.mark.hosts('web1')*",
        ]
    )
    (where,) = [r for r in records(the_run(pytester)) if r.name == "test_where"]
    assert where.outcome == "error" and where.hosts == []


ALTERNATING = """
import itertools
_n = itertools.count()

def test_every_other():
    assert next(_n) % 2 == 0, "odd run"
"""


def test_iteration_failures_are_named_in_pytests_summaries(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_flaky=ALTERNATING)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--otto-iterations", "4")
    result.assert_outcomes(failed=2, passed=2)
    result.stdout.fnmatch_lines(
        [
            "*_ test_every_other [[]iteration 2[]] _*",
            "*_ test_every_other [[]iteration 4[]] _*",
            "FAILED test_flaky.py::test_every_other [[]iteration 2[]] - AssertionError*",
            "FAILED test_flaky.py::test_every_other [[]iteration 4[]] - AssertionError*",
        ]
    )


def test_a_duration_run_sums_up_its_failures_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_flaky=ALTERNATING)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--otto-duration", "0.2")
    failed = result.parseoutcomes()["failed"]
    assert failed >= 1
    lines = [line for line in result.stdout.lines if line.startswith("FAILED ")]
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"FAILED test_flaky.py::test_every_other [{failed} failed run")
    assert "iteration" in lines[0]
    assert result.stdout.str().count("_ test_every_other [iteration") == 1
