"""Tests that fit the lab (``features``, ``@pytest.mark.needs``, ``--strict-lab``, the dry run)
and ``--shard I/N``, through ``python -m otto test`` in processes of their own.

The lab's hosts are local shells (several of them, each with its features) from a JSON,
a YAML and an Ansible lab file, and the SSH/Telnet lab's hosts; the shards run with
pytest-xdist too, and with durations from an earlier run folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from junitparser.xunit2 import JUnitXml

from otto.testing.records import TestRecord, read_records, write_record
from otto.testing.shard import shares

if TYPE_CHECKING:
    from tests.lab import Lab as TestLab

DEADLINE = 120.0

FIT_SUITE = """\
import pytest

@pytest.mark.needs("usb")
def test_usb(host):
    assert host.name in ("a", "b")

@pytest.mark.needs("wifi")
@pytest.mark.hosts(tags=["board"])
def test_wifi_on_each(host):
    assert host.name == "a"

@pytest.mark.needs("usb")
def test_every_usb_host(hosts):
    assert sorted(hosts) == ["a", "b"]

@pytest.mark.needs("usb")
async def test_runs_on_it(host):
    assert (await host.run("echo $((6 * 7))")).only.output.strip() == "42"

@pytest.mark.needs("gpu")
def test_gpu(host):
    raise AssertionError("a test that needs a gpu ran without one")

@pytest.mark.needs("usb", "gpu")
def test_usb_and_gpu(hosts):
    raise AssertionError("ran without a host that has both")

@pytest.mark.needs("wifi")
@pytest.mark.hosts(tags=["pc"])
def test_wifi_on_a_pc(host):
    raise AssertionError("ran on a pc without wifi")

def test_plain():
    pass
"""

SKIPPED = {
    "test_gpu": "no lab host has feature gpu",
    "test_usb_and_gpu": "no lab host has features usb, gpu",
    "test_wifi_on_a_pc": "no lab host has feature wifi (of those with tags ['pc'])",
}

HOSTS = [
    {"name": "a", "term": "local", "features": ["usb", "wifi"], "tags": ["board"]},
    {"name": "b", "term": "local", "features": ["usb"], "tags": ["board"]},
    {"name": "c", "term": "local", "tags": ["pc"]},
]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "PYTEST_ADDOPTS"}}
    env["COLUMNS"] = "200"
    return env


def otto(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otto", *args],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=cwd,
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def records_of(run: Path) -> list[TestRecord]:
    return list(read_records(sorted(run.glob("records*.jsonl"))))


def junit_results(path: Path) -> dict[str, list[tuple[str, str]]]:
    suite = next(iter(JUnitXml.fromfile(str(path))))
    return {case.name: [(type(r).__name__, str(r.message)) for r in case.result] for case in suite}


def write_lab(folder: Path, kind: str) -> Path:
    if kind == "json":
        path = folder / "lab.json"
        path.write_text(json.dumps({"hosts": HOSTS}))
    elif kind == "yaml":
        path = folder / "lab.yaml"
        lines = ["hosts:"]
        for host in HOSTS:
            lines.append(f"  - name: {host['name']}")
            lines += [f"    {k}: {json.dumps(v)}" for k, v in host.items() if k != "name"]
        path.write_text("\n".join(lines) + "\n")
    else:
        path = folder / "hosts"
        path.write_text(
            "[board]\n"
            "a ansible_connection=local otto_features=usb,wifi\n"
            "b ansible_connection=local otto_features='[\"usb\"]'\n"
            "[pc]\n"
            "c ansible_connection=local\n"
        )
    return path


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "test_fit.py").write_text(FIT_SUITE)
    return folder


# --- features and needs ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["json", "yaml", "ansible"])
def test_tests_run_on_the_hosts_with_their_features(tmp_path: Path, suite: Path, kind: str) -> None:
    if kind == "ansible":
        pytest.importorskip("ansible")
    lab = write_lab(tmp_path, kind)
    proc = otto("test", "--lab", str(lab), "--output", "run", "-rs", "suite", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "5 passed, 3 skipped" in proc.stdout
    assert "verdict: passed" in proc.stdout
    for name, reason in SKIPPED.items():
        assert "test_fit.py:" in proc.stdout and f": {reason}\n" in proc.stdout, name
    results = junit_results(tmp_path / "run" / "junit.xml")
    assert {n: r for n, r in results.items() if r} == {
        name: [("Skipped", f"Skipped: {reason}")] for name, reason in SKIPPED.items()
    }
    hosts = {r.name: r.hosts for r in records_of(tmp_path / "run")}
    assert hosts["test_usb"] in (["a"], ["b"])
    assert hosts["test_wifi_on_each[a]"] == ["a"]
    assert sorted(hosts["test_every_usb_host"]) == ["a", "b"]
    assert all(not hosts[name] for name in SKIPPED)  # a skipped test used no host


def test_strict_lab_turns_the_skips_into_errors(tmp_path: Path, suite: Path) -> None:
    lab = write_lab(tmp_path, "json")
    proc = otto("test", "--lab", str(lab), "--output", "run", "--strict-lab", "suite", cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "verdict: failed" in proc.stdout and "3 errors" in proc.stdout
    records = {r.name: r for r in records_of(tmp_path / "run")}
    for name, reason in SKIPPED.items():
        assert records[name].outcome == "error"
        assert f"--strict-lab: {reason}" in records[name].longrepr
    assert records["test_plain"].outcome == "passed"
    results = junit_results(tmp_path / "run" / "junit.xml")
    assert results["test_gpu"][0][0] == "Error"


def test_no_lab_no_features(tmp_path: Path) -> None:
    """Without a lab the one host, local, has no features: the tests that need some skip."""
    (tmp_path / "test_here.py").write_text(
        "import pytest\n"
        "@pytest.mark.needs('usb')\n"
        "async def test_runs_on_it(host):\n"
        "    raise AssertionError('local has no usb')\n"
        "def test_plain():\n"
        "    pass\n"
    )
    proc = otto("test", "--output", "run", "test_here.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = {r.name: r for r in records_of(tmp_path / "run")}
    assert records["test_runs_on_it"].outcome == "skipped"
    assert records["test_runs_on_it"].longrepr.endswith("no lab host has feature usb")
    assert records["test_plain"].outcome == "passed"


def test_the_dry_run_says_which_tests_would_be_skipped(tmp_path: Path, suite: Path) -> None:
    lab = write_lab(tmp_path, "json")
    proc = otto("-n", "test", "--lab", str(lab), "suite", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == ""  # pytest-asyncio's warning about its settings is not the user's
    rows = {
        line.split()[0].rsplit("::", 1)[-1]: line.split(None, 1)[1]
        for line in proc.stdout.splitlines()
        if "::" in line
    }
    for name, reason in SKIPPED.items():
        assert rows[name] == f"skipped: {reason}"
    assert rows["test_usb"] == "any 1 free of: a, b"
    assert rows["test_wifi_on_each[a]"] == "a"
    assert rows["test_every_usb_host"] == "a, b"
    assert "[c] would connect" not in proc.stdout  # only a test that is skipped could use c
    assert proc.stdout.splitlines()[-1] == (
        "otto: dry run: 5 tests would run; 3 would be skipped: the lab has no host with "
        "the features they need"
    )
    assert not (tmp_path / "otto-runs").exists()
    strict = otto("-n", "test", "--lab", str(lab), "--strict-lab", "suite", cwd=tmp_path)
    assert strict.returncode == 0, strict.stdout + strict.stderr
    assert "error (--strict-lab): no lab host has feature gpu" in strict.stdout
    assert "3 would be errors (--strict-lab)" in strict.stdout


def test_needs_on_the_ssh_lab(lab: TestLab, tmp_path: Path) -> None:
    features = {"ssh1": ["usb", "can"], "telnet1": ["wifi"]}
    hosts = []
    for record in lab.inventory():
        if record["name"] not in features:
            continue
        entry = {k: v for k, v in record.items() if v is not None}
        if entry["term"] == "ssh":
            entry["known_hosts"] = str(lab.known_hosts)
        entry["features"] = features[str(entry["name"])]
        hosts.append(entry)
    path = tmp_path / "lab.json"
    path.write_text(json.dumps({"hosts": hosts}))
    (tmp_path / "test_lab.py").write_text(
        "import pytest\n"
        "@pytest.mark.needs('can')\n"
        "async def test_can(host):\n"
        "    result = await host.run('echo on $((6 * 7))')\n"
        "    assert host.name == 'ssh1' and result.only.output.strip() == 'on 42'\n"
        "@pytest.mark.needs('wifi')\n"
        "async def test_wifi(hosts):\n"
        "    assert list(hosts) == ['telnet1']\n"
        "    assert (await hosts['telnet1'].run('true')).is_ok\n"
        "@pytest.mark.needs('gpu')\n"
        "def test_gpu(host):\n"
        "    raise AssertionError('no gpu here')\n"
    )
    proc = otto("test", "--lab", str(path), "--output", "run", "test_lab.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = {r.name: r for r in records_of(tmp_path / "run")}
    assert records["test_can"].outcome == "passed" and records["test_can"].hosts == ["ssh1"]
    assert records["test_wifi"].outcome == "passed" and records["test_wifi"].hosts == ["telnet1"]
    assert records["test_gpu"].outcome == "skipped"


# --- shards ---------------------------------------------------------------------------------

SHARD_SUITE = {
    "test_one.py": (
        "import pytest\n"
        "@pytest.mark.parametrize('n', range(5))\n"
        "def test_param(n):\n    pass\n"
        "class TestGroup:\n"
        "    def test_a(self):\n        pass\n"
        "    def test_b(self):\n        pass\n"
    ),
    "test_two.py": "".join(f"def test_{i}():\n    pass\n" for i in range(6)),
    "test_three.py": "async def test_async(host):\n    assert (await host.run('true')).is_ok\n",
}


@pytest.fixture
def shard_suite(tmp_path: Path) -> Path:
    folder = tmp_path / "suite"
    folder.mkdir()
    for name, text in SHARD_SUITE.items():
        (folder / name).write_text(text)
    return folder


def ran(run: Path) -> list[tuple[str, int]]:
    return sorted((r.nodeid, r.iteration) for r in records_of(run))


def test_the_shares_hold_every_test_exactly_once(tmp_path: Path, shard_suite: Path) -> None:
    full = otto("test", "--output", "full", "--iterations", "2", "suite", cwd=tmp_path)
    assert full.returncode == 0, full.stdout + full.stderr
    everything = ran(tmp_path / "full")
    assert len(everything) == 2 * 14
    count = 3
    seen: list[tuple[str, int]] = []
    for index in range(1, count + 1):
        run = f"shard{index}"
        proc = otto(
            "test", "--output", run, "--iterations", "2", "--shard", f"{index}/{count}", "suite",
            cwd=tmp_path,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        share = ran(tmp_path / run)
        kept = len(share) // 2
        assert f"{len(share)} passed, {14 - kept} deselected" in proc.stdout  # 2 runs each
        seen += share
        # The same share on a second run.
        again = otto("-n", "test", "--shard", f"{index}/{count}", "suite", cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
        listed = sorted(line.split()[0] for line in again.stdout.splitlines() if "::" in line)
        assert listed == sorted({nodeid for nodeid, _ in share})
    assert sorted(seen) == everything


def test_a_share_is_the_same_under_xdist(tmp_path: Path, shard_suite: Path) -> None:
    alone = otto("test", "--output", "alone", "--shard", "2/3", "suite", cwd=tmp_path)
    assert alone.returncode == 0, alone.stdout + alone.stderr
    workers = otto(
        "test", "--output", "workers", "--shard", "2/3", "-n", "2", "suite", cwd=tmp_path
    )
    assert workers.returncode == 0, workers.stdout + workers.stderr
    assert ran(tmp_path / "workers") == ran(tmp_path / "alone")
    assert len(list((tmp_path / "workers").glob("records-gw*.jsonl"))) == 2


def test_shares_balanced_by_an_earlier_runs_durations(tmp_path: Path, shard_suite: Path) -> None:
    first = otto("test", "--output", "first", "suite", cwd=tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    nodeids = sorted({r.nodeid for r in records_of(tmp_path / "first")})
    # Every run leaves its durations for the next to balance by.
    measured = json.loads((tmp_path / "first" / "durations.json").read_text())
    assert sorted(measured) == nodeids
    proc = otto(
        "test", "--output", "by-first", "--shard", "1/2", "--shard-durations", "first", "suite",
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(r.nodeid for r in records_of(tmp_path / "by-first")) == sorted(
        shares(nodeids, 2, measured)[0]
    )
    # An earlier run where one test took 10 s, and a test since added that it does not know.
    slow = next(n for n in nodeids if n.endswith("test_param[3]"))
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    for nodeid in nodeids:
        if nodeid.endswith("test_5"):
            continue
        spent = 10.0 if nodeid == slow else 1.0
        write_record(
            earlier / "records.jsonl",
            TestRecord(nodeid=nodeid, name=nodeid, outcome="passed", start=0.0, stop=spent),
        )
    durations = {n: (10.0 if n == slow else 1.0) for n in nodeids if not n.endswith("test_5")}
    expected = shares(nodeids, 2, durations)
    # The 10 s test and 2 others (12 s) in one share, the 11 others (11 s; the new one counts
    # the median, 1 s) in the other.
    assert slow in expected[0] and len(expected[0]) == 3 and len(expected[1]) == 11
    for index in (1, 2):
        for option in ("--shard-durations", "--baseline"):
            run = f"balanced{index}{option}"
            proc = otto(
                "test", "--output", run, "--shard", f"{index}/2", option, "earlier", "suite",
                cwd=tmp_path,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert sorted(r.nodeid for r in records_of(tmp_path / run)) == sorted(
                expected[index - 1]
            )


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--shard", "0/3"], "argument --shard: I must be between 1 and N (3), got '0/3'"),
        (["--shard", "4/3"], "argument --shard: I must be between 1 and N (3), got '4/3'"),
        (["--shard", "1/0"], "argument --shard: N must be at least 1"),
        (["--shard", "two"], "argument --shard: expected I/N, such as 1/4, not 'two'"),
        (["--shard", "1/2", "--shard-durations", "nowhere"], "nowhere is not a run folder"),
        (["--shard-durations", "."], "--shard-durations is only used with --shard I/N"),
    ],
)
def test_bad_shard_options_are_usage_errors(
    tmp_path: Path, shard_suite: Path, args: list[str], said: str
) -> None:
    if "." in args:
        write_record(
            tmp_path / "records.jsonl",
            TestRecord(nodeid="x::y", name="y", outcome="passed", start=0.0, stop=1.0),
        )
    proc = otto("test", "--output", "run", *args, "suite", cwd=tmp_path)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    assert said in proc.stderr
    assert not (tmp_path / "run").exists()
