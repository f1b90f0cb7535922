"""otto.results on real output: kselftest-style TAP from a script on an SSH lab host (whole
and killed mid-run), a GoogleTest binary built here and read from the XML it writes, and the
ptest and Unity samples printed by a real shell."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path

import pytest
import pytest_asyncio

from otto import LocalHost, RemoteHost, results
from otto.results import SUITE, Case, ResultsFailed
from tests.integration.hosts import remote_host
from tests.lab import Lab

pytestmark = pytest.mark.integration

DATA = Path(__file__).resolve().parents[1] / "data" / "results"

GTEST_SOURCE = r"""
#include <gtest/gtest.h>
#include <cstdio>
TEST(Board, Boots) { std::printf("booted\n"); EXPECT_EQ(2, 1 + 1); }
TEST(Board, Leds) { EXPECT_EQ(3, 4) << "led 3 stuck"; }
TEST(Board, Wifi) { GTEST_SKIP() << "no radio"; }
"""


@pytest.fixture(autouse=True)
def published() -> Iterator[list[tuple[str, list[Case]]]]:
    """What collect() hands to the running test, in order.

    It stands in for otto's pytest plugin, whose sink would fail these tests for
    the failed device-side cases they collect on purpose.
    """
    got: list[tuple[str, list[Case]]] = []

    def sink(source: str, cases: Sequence[Case]) -> None:
        got.append((source, list(cases)))

    previous = results.set_sink(sink)
    try:
        yield got
    finally:
        results.set_sink(previous)


@pytest_asyncio.fixture(loop_scope="session")
async def ssh1(lab: Lab) -> AsyncIterator[tuple[RemoteHost, str]]:
    """The lab's ssh1 with the sample scripts and logs copied into a fresh folder."""
    host = remote_host(lab, "ssh1")
    folder = (await host.run("mktemp -d")).only.output.strip()
    sent = await host.put(sorted(DATA.iterdir()), folder)
    assert sent.is_ok, sent.error
    try:
        yield host, folder
    finally:
        await host.run(f"rm -rf -- {shlex.quote(folder)}")
        await host.close()


@pytest_asyncio.fixture(loop_scope="session")
async def local() -> AsyncIterator[LocalHost]:
    host = LocalHost()
    try:
        yield host
    finally:
        await host.close()


async def test_kselftest_run_on_an_ssh_host(
    ssh1: tuple[RemoteHost, str], published: list[tuple[str, list[Case]]]
) -> None:
    host, folder = ssh1
    command = f"sh {folder}/kselftest.sh"
    cases = await results.collect(host, command, format="tap", check=False)
    assert [(c.name, c.status) for c in cases] == [
        ("selftests: net: reuseport_bpf/reuseport_bpf.udp4", "passed"),
        ("selftests: net: reuseport_bpf/reuseport_bpf.udp6", "failed"),
        ("selftests: net: reuseport_bpf/reuseport_bpf.tcp4", "skipped"),
        ("selftests: net: reuseport_bpf", "failed"),
        ("selftests: net: fib_tests", "passed"),
        ("selftests: net: netdevsim", "skipped"),
    ]
    assert cases[1].output == "# ---- IPv6 UDP ----\n# not ok 2 reuseport_bpf.udp6"
    assert cases[5].message == "SKIP netdevsim module not loaded"
    assert published == [(f"ssh1: {command}", cases)]

    with pytest.raises(ResultsFailed) as raised:
        await results.collect(host, command, format="tap")
    message = str(raised.value)
    assert message.splitlines()[0] == f"ssh1: {command}: 2 of 6 cases failed"
    assert "selftests: net: reuseport_bpf/reuseport_bpf.udp6 (failed: not ok)" in message
    assert "selftests: net: reuseport_bpf (failed: exit=1)" in message
    assert len(published) == 2  # published before raising
    assert published[1][1] == cases


async def test_a_kselftest_run_killed_midway_is_an_error(ssh1: tuple[RemoteHost, str]) -> None:
    host, folder = ssh1
    command = f"sh {folder}/kselftest-killed.sh"
    with pytest.raises(ResultsFailed) as raised:
        await results.collect(host, command, format="tap")
    cases = raised.value.cases
    assert [(c.name, c.status) for c in cases] == [
        ("selftests: mm: compaction_test", "passed"),
        ("selftests: mm: gup_test", "passed"),
        ("test 3/hugetlb.map", "passed"),
        ("test 3/test 2", "error"),
        ("test 3/test 3", "error"),
        ("test 3/test 4", "error"),
        ("test 3", "error"),
        ("test 4", "error"),
        ("test 5", "error"),
    ]
    assert cases[6].message == "planned 1..5, got 2: test 3 never reported"
    assert "ssh1: " in str(raised.value)
    assert "test 3 (error: planned 1..5, got 2: test 3 never reported)" in str(raised.value)


async def test_ptest_sample_printed_on_an_ssh_host(ssh1: tuple[RemoteHost, str]) -> None:
    host, folder = ssh1
    cases = await results.collect(
        host, f"cat {folder}/ptest-runner.log", format="ptest", check=False
    )
    failed = [(c.name, c.status) for c in results.failed(cases)]
    assert failed == [
        ("zlib/minigzip", "failed"),
        ("busybox/(suite)", "error"),
        ("openssl/(suite)", "error"),
        ("glib-2.0/(suite)", "error"),
    ]


async def test_unity_samples_on_the_local_host(local: LocalHost) -> None:
    whole = await results.collect(
        local, f"cat {shlex.quote(str(DATA / 'unity.log'))}", format="unity", check=False
    )
    assert [c.status for c in whole].count("failed") == 2
    with pytest.raises(ResultsFailed, match="no summary line"):
        await results.collect(
            local, f"cat {shlex.quote(str(DATA / 'unity-crashed.log'))}", format="unity"
        )


@pytest.fixture(scope="module")
def gtest_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gtest")
    (folder / "t.cc").write_text(GTEST_SOURCE)
    binary = folder / "board_test"
    subprocess.run(
        ["g++", "t.cc", "-o", str(binary), "-lgtest", "-lgtest_main", "-pthread"],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    return binary


async def test_googletest_xml_fetched_from_the_host(
    local: LocalHost,
    gtest_binary: Path,
    tmp_path: Path,
    published: list[tuple[str, list[Case]]],
) -> None:
    xml = tmp_path / "gtest results.xml"  # a space: the path is quoted
    command = f"{shlex.quote(str(gtest_binary))} --gtest_output=xml:{shlex.quote(str(xml))}"
    with pytest.raises(ResultsFailed) as raised:
        await results.collect(local, command, format="junit", path=str(xml))
    cases = raised.value.cases
    assert [(c.name, c.status) for c in cases] == [
        ("Board.Boots", "passed"),
        ("Board.Leds", "failed"),
        ("Board.Wifi", "skipped"),
    ]
    assert "led 3 stuck" in cases[1].output
    assert cases[2].message.endswith("no radio")
    assert all(c.duration is not None for c in cases)
    assert "Board.Leds (failed: t.cc:" in str(raised.value)
    assert published[-1][1] == cases


async def test_a_stale_results_file_is_never_read(local: LocalHost, tmp_path: Path) -> None:
    xml = tmp_path / "old.xml"
    xml.write_text('<testsuite><testcase name="from_last_week"/></testsuite>')
    cases = await results.collect(
        local, "echo crashed before writing", format="junit", path=str(xml), check=False
    )
    assert [(c.name, c.status) for c in cases] == [(SUITE, "error")]
    assert cases[0].message.startswith(f"{xml} could not be read from ")
    assert cases[0].output == "crashed before writing"


async def test_a_results_file_past_the_bound_is_an_error_not_read(
    local: LocalHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    # otto.results.collect is also the function's name: the module, by its full name.
    monkeypatch.setattr(sys.modules["otto.results.collect"], "MAX_RESULTS_FILE", 64)
    xml = tmp_path / "huge.xml"
    body = "<testcase name='x'/>" * 10
    command = f"echo {shlex.quote('<testsuite>' + body + '</testsuite>')} > {shlex.quote(str(xml))}"
    cases = await results.collect(local, command, format="junit", path=str(xml), check=False)
    assert [(c.name, c.status) for c in cases] == [(SUITE, "error")]
    assert "more than a results file may (64)" in cases[0].message


async def test_a_relative_path_or_an_unknown_format_runs_nothing(
    local: LocalHost, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    command = f"touch {shlex.quote(str(marker))}"
    with pytest.raises(ValueError, match="path must be absolute"):
        await results.collect(local, command, format="junit", path="out.xml")
    with pytest.raises(ValueError, match="unknown result format 'xml'"):
        await results.collect(local, command, format="xml")  # type: ignore[arg-type]
    assert not marker.exists()


async def test_a_non_zero_exit_with_every_case_passed_is_an_error(local: LocalHost) -> None:
    with pytest.raises(ResultsFailed, match="exited 3, but no case failed"):
        await results.collect(local, "printf '1..1\\nok 1 a\\n'; exit 3")


async def test_a_run_that_times_out_keeps_what_it_printed(local: LocalHost) -> None:
    cases = await results.collect(
        local, "printf '1..2\\nok 1 a\\n'; sleep 30; echo 'ok 2 b'", timeout=1, check=False
    )
    assert [(c.name, c.status) for c in cases] == [
        ("a", "passed"),
        ("test 2", "error"),
        (SUITE, "error"),
    ]
    assert cases[-1].message.startswith("the command timed out")


async def test_a_passing_suite_returns_its_cases(local: LocalHost) -> None:
    cases = await results.collect(local, "printf 'TAP version 13\\n1..2\\nok 1 a\\nok 2 b\\n'")
    assert [(c.name, c.status) for c in cases] == [("a", "passed"), ("b", "passed")]


SUITE_MODULE = """
import shlex

from otto import Host, results

SCRIPT = {script!r}


async def test_selftests(host: Host) -> None:
    await results.collect(host, "sh " + shlex.quote(SCRIPT), format="tap")
"""


def test_through_otto_test_each_case_is_a_junit_case(tmp_path: Path) -> None:
    module = tmp_path / "test_device.py"
    module.write_text(SUITE_MODULE.format(script=str(DATA / "kselftest.sh")))
    env = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "PYTEST_ADDOPTS"}}
    proc = subprocess.run(
        [sys.executable, "-m", "otto", "test", "-p", "no:cacheprovider", "--output", "run",
         str(module)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "2 of 6 cases failed" in out
    cases = {
        case.attrib["name"]: case
        for case in ET.parse(tmp_path / "run" / "junit.xml").getroot().iter("testcase")
    }
    udp6 = cases["test_selftests::selftests: net: reuseport_bpf/reuseport_bpf.udp6"]
    assert udp6[0].tag == "failure"
    assert "# not ok 2 reuseport_bpf.udp6" in (udp6.findtext("system-out") or "")
    skipped = cases["test_selftests::selftests: net: netdevsim"]
    assert skipped[0].tag == "skipped"
    assert [e.tag for e in cases["test_selftests::selftests: net: fib_tests"]] == ["system-out"]
    assert cases["test_selftests"][0].tag == "failure"
