"""The pytest plugin against the real SSH/Telnet lab, under pytest-xdist, and under faults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otto.testing.records import read_records
from tests.lab import Lab as LabUnderTest

pytest_plugins = ["pytester"]


def the_run(pytester: pytest.Pytester) -> Path:
    runs = list((pytester.path / "otto-runs").iterdir())
    assert len(runs) == 1, runs
    return runs[0]


@pytest.fixture
def lab_json(lab: LabUnderTest, pytester: pytest.Pytester) -> Path:
    """An otto lab file of the test lab's SSH and Telnet hosts, tagged by their kind."""
    hosts = []
    for record in lab.inventory():
        entry = {k: v for k, v in record.items() if v is not None}
        if entry["term"] == "ssh":
            entry["known_hosts"] = str(lab.known_hosts)
        entry["tags"] = [str(entry["term"])]
        hosts.append(entry)
    path = pytester.path / "lab.json"
    path.write_text(json.dumps({"hosts": hosts}))
    return path


def test_suite_on_ssh_and_telnet_hosts(pytester: pytest.Pytester, lab_json: Path) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.hosts(tags=["ssh"])
        async def test_ssh(host, lab):
            secret = lab.spec(host.name).password
            result = await host.run(f"echo $((6 * 7)); echo {secret or 'none'} >/dev/null")
            assert result.statuses[0].output.startswith("42")

        @pytest.mark.hosts(tags=["telnet"])
        async def test_telnet(host, lab):
            secret = lab.spec(host.name).password
            assert (await host.run(f"echo said-{secret}")).is_ok

        @pytest.mark.hosts(tags=["ssh"], count=1)
        def test_failing(host):
            from otto import run
            assert run(host.run("echo on $(hostname) >&2; exit 5")).is_ok
        """
    )
    result = pytester.runpytest_subprocess("--lab", str(lab_json), "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("failed") == 1, result.stdout.str()
    assert outcomes.get("passed", 0) >= 2
    out = result.stdout.str()
    assert "otto: failing commands" in out
    assert "'echo on $(hostname) >&2; exit 5' -> Failed (exit status 5)" in out
    run_dir = the_run(pytester)
    records = list(read_records(run_dir.glob("records*.jsonl")))
    secrets = {
        h["password"] for h in json.loads(lab_json.read_text())["hosts"] if h.get("password")
    }
    for record in records:
        assert record.transcript, record
        text = (run_dir / record.transcript).read_text()
        assert f"{record.hosts[0]}/default $ echo " in text
        raw = (run_dir / record.folder / "transcript.raw.log").read_text()
        assert f"{record.hosts[0]}/default > " in raw
        for secret in secrets:
            assert secret not in text and secret not in raw
    telnet = [r for r in records if r.name.startswith("test_telnet")]
    assert telnet and all(r.outcome == "passed" for r in telnet)
    for r in telnet:
        assert "said-***\n" in (run_dir / r.transcript).read_text()
    failing = next(r for r in records if r.name == "test_failing")
    assert failing.failures[0].retcode == 5
    assert failing.failures[0].output_tail.startswith("on ")


def test_xdist_workers_never_share_a_tagged_host(pytester: pytest.Pytester) -> None:
    (pytester.path / "lab.json").write_text(
        json.dumps(
            {
                "hosts": [
                    {"name": "board1", "term": "local", "tags": ["board"]},
                    {"name": "board2", "term": "local", "tags": ["board"]},
                ]
            }
        )
    )
    busy = pytester.path / "busy"
    busy.mkdir()
    tests = "\n".join(
        f"""
@pytest.mark.hosts(tags=["board"], count=1)
def test_board_{i}(host):
    marker = Path({str(busy)!r}) / host.name
    fd = os.open(marker, os.O_CREAT | os.O_EXCL)  # fails if another test holds the host
    try:
        assert run(host.run("sleep 0.2")).is_ok
    finally:
        os.close(fd)
        marker.unlink()
"""
        for i in range(6)
    )
    pytester.makepyfile(
        "import os\nfrom pathlib import Path\nimport pytest\nfrom otto import run\n" + tests
    )
    result = pytester.runpytest_subprocess("-n", "2", "--lab", "lab.json", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    run_dir = the_run(pytester)
    assert sorted(p.name for p in run_dir.glob("records*.jsonl")) == [
        "records-gw0.jsonl",
        "records-gw1.jsonl",
    ]
    records = list(read_records(run_dir.glob("records*.jsonl")))
    assert {r.worker for r in records} == {"gw0", "gw1"}
    assert (run_dir / "junit.xml").exists()
    assert (run_dir / "report.html").exists()


def test_a_hung_test_is_ended_by_pytest_timeout_and_its_transcript_kept(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        from otto import run

        def test_hangs(host):
            run(host.run("echo started-hanging; sleep 600"))
        """
    )
    result = pytester.runpytest_subprocess("--otto", "--timeout", "3", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    run_dir = the_run(pytester)
    (record,) = read_records([run_dir / "records.jsonl"])
    assert record.outcome == "failed"
    assert "Timeout" in record.longrepr
    assert "started-hanging" in (run_dir / record.transcript).read_text()


def test_an_async_test_ended_by_pytest_timeout_leaves_no_command_running(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        async def test_hangs(host):
            await host.run("sleep 600.4321; echo late-marker")

        async def test_next(host):
            result = await host.run("pgrep -fx 'sleep 600.4321' || echo no-sleep-left")
            assert result.output.strip() == "no-sleep-left"
        """
    )
    result = pytester.runpytest_subprocess("--otto", "--timeout", "3", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, passed=1)
    run_dir = the_run(pytester)
    found = {r.name: r for r in read_records([run_dir / "records.jsonl"])}
    assert "Timeout" in found["test_hangs"].longrepr
    assert found["test_next"].outcome == "passed"
    assert "late-marker" not in (run_dir / found["test_next"].transcript).read_text()


def test_a_100_mb_output_is_capped_in_the_transcript(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from otto import run

        def test_floods(host):
            result = run(host.run("head -c 100000000 /dev/zero | tr '\\\\0' x | fold -w 99"))
            assert result.is_ok
        """
    )
    result = pytester.runpytest_subprocess(
        "--otto", "--transcript-limit", "1000000", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1)
    run_dir = the_run(pytester)
    (record,) = read_records([run_dir / "records.jsonl"])
    transcript = run_dir / record.transcript
    assert transcript.stat().st_size < 1_001_000
    text = transcript.read_text()
    assert "transcript limit of 1000000 bytes reached here" in text
    assert text.rstrip().endswith("more bytes were not kept")
