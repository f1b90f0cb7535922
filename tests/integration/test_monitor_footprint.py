"""The monitor's footprint on real hosts: builtin reads, df every N rounds, measured cost.

Processes started per round are measured on the host from the last PID of its
PID namespace before and after the round (see
``otto.monitor.shell_probe.round_processes``): an upper bound that counts
whatever else the namespace starts meanwhile. A local shell in a PID
namespace of its own has nobody else in it, so there the count is exact; on the
lab's SSH hosts (one PID namespace with the rest of this machine) the tests
look at the least over several rounds, which is exact unless the machine
forked during every one of them.
"""

from __future__ import annotations

import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otto import LocalHost
from otto.monitor import Collector, MonitorTarget, gauge_parser
from otto.monitor.parsers import CORE_METRICS, MetricParser, Parsed, Sample
from tests.integration.hosts import remote_host
from tests.lab import Lab

DEADLINE = 30.0
DF_EVERY = 3
ROUNDS = 7  # df on rounds 0, 3 and 6
RATES = {
    "cpu.percent",
    "net.rx_bytes_per_s",
    "net.tx_bytes_per_s",
    "disk.read_bytes_per_s",
    "disk.write_bytes_per_s",
}
TRICKY = "  leading blanks\n\ttab \\ backslash \\n\n\n-n\n%s %d\nlast line, no newline"


def mem_total_here() -> float:
    with open("/proc/meminfo", encoding="ascii") as meminfo:
        for line in meminfo:
            if line.startswith("MemTotal:"):
                return float(line.split()[1]) * 1024
    raise AssertionError("no MemTotal in /proc/meminfo")


async def rounds_of(
    collector: Collector, name: str, count: int
) -> list[tuple[dict[str, float], int | None]]:
    """``count`` rounds now: each one's metrics and processes started."""
    seen = []
    for _ in range(count):
        outcome = (await collector.poll_round())[name]
        assert outcome.up, outcome.error
        last = collector.round_costs()[name].last
        assert last is not None
        # /proc/stat was read whole: its counters are there even when no CPU
        # time passed between two quick rounds (then no cpu.percent yet).
        assert outcome.counters["parse_proc_stat"]["cpu.total"] > 0
        seen.append((outcome.metrics, last.processes))
    return seen


def check_metrics(seen: list[tuple[dict[str, float], int | None]]) -> None:
    # Every round has every metric but the rates (from the second one on; CPU
    # time may not move between two quick rounds), df's disk.used_percent
    # included: it is repeated between the df rounds.
    for index, (metrics, _) in enumerate(seen):
        for metric in set(CORE_METRICS) - {"cpu.percent"} if index else set(CORE_METRICS) - RATES:
            assert metric in metrics, (index, metric)
        assert 0.0 <= metrics["disk.used_percent"] <= 100.0
        # The lab's hosts and the local shells run on this kernel: the same memory.
        assert metrics["mem.total_bytes"] == mem_total_here()
        assert 0.0 < metrics["mem.percent"] < 100.0


# --- local shells, alone in a PID namespace ----------------------------------------------


def namespaced_shell(tmp_path: Path, shell: str) -> str:
    """A script that starts ``shell`` as the first process of a new PID namespace."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a PID namespace needs root and unshare")
    script = tmp_path / "ns-shell"
    script.write_text(f"#!/bin/sh\nexec unshare --pid --fork --mount-proc {shlex.quote(shell)}\n")
    script.chmod(0o755)
    return str(script)


def busybox_sh(tmp_path: Path) -> str:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for applet in ("sh", "df"):
        (bin_dir / applet).symlink_to(busybox)
    return str(bin_dir / "sh")


@pytest.mark.parametrize("kind", ["bash", "dash", "busybox"])
async def test_a_round_starts_df_alone_and_only_every_nth_round(kind: str, tmp_path: Path) -> None:
    if kind == "busybox":
        shell = busybox_sh(tmp_path)
    else:
        found = shutil.which(kind)
        if found is None:
            pytest.skip(f"{kind} is not installed")
        shell = found
    host = LocalHost(name="alone", shell=namespaced_shell(tmp_path, shell))
    collector = Collector([host], interval=DEADLINE, df_every=DF_EVERY)
    try:
        seen = await rounds_of(collector, "alone", ROUNDS)
    finally:
        await collector.stop()
        await host.close()
    check_metrics(seen)
    # Exact here: nothing else runs in the shell's PID namespace.
    assert [processes for _, processes in seen] == [1, 0, 0, 1, 0, 0, 1]
    costs = collector.round_costs()["alone"]
    assert costs.rounds == ROUNDS and costs.processes == 3 and costs.most_processes == 1
    assert costs.received > 0 and costs.seconds > 0


async def test_a_users_command_costs_its_subshell_and_is_counted(tmp_path: Path) -> None:
    host = LocalHost(name="alone", shell=namespaced_shell(tmp_path, "/bin/sh"))
    gauge = gauge_parser(lambda text: {"seven": float(text)})
    target = MonitorTarget(host, parsers={"echo 7": gauge}, df_every=DF_EVERY)
    collector = Collector([target], interval=DEADLINE)
    try:
        outcomes = [(await collector.poll_round())["alone"] for _ in range(DF_EVERY + 1)]
    finally:
        await collector.stop()
        await host.close()
    assert all(o.metrics["seven"] == 7.0 for o in outcomes)
    # One subshell for `echo 7` every round, and df on rounds 0 and 3.
    assert [o.cost.processes if o.cost else None for o in outcomes] == [2, 1, 1, 2]


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
async def test_a_missing_proc_file_loses_only_its_section_on_busybox(tmp_path: Path) -> None:
    host = LocalHost(name="tiny", shell=busybox_sh(tmp_path), env={"PATH": str(tmp_path / "bin")})
    target = MonitorTarget(
        host, parsers={"cat /proc/otto_no_such_file": gauge_parser(lambda t: {"never": 1.0})}
    )
    collector = Collector([target], interval=DEADLINE, df_every=1)
    try:
        outcomes = [(await collector.poll_round())["tiny"] for _ in range(2)]
    finally:
        await collector.stop()
        await host.close()
    for outcome in outcomes:
        assert outcome.up
        assert outcome.error == "cat /proc/otto_no_such_file: exit status 1"
        assert "never" not in outcome.metrics
    # cpu.percent needs CPU time to pass between the two rounds: its counters suffice.
    assert outcomes[1].counters["parse_proc_stat"]["cpu.total"] > 0
    for metric in set(CORE_METRICS) - {"cpu.percent"}:
        assert metric in outcomes[1].metrics, metric


# --- the lab's SSH and Telnet hosts ----------------------------------------------------------


@pytest.mark.parametrize("name", ["ssh1", "telnet1"])
async def test_lab_host_rounds_read_proc_with_builtins(lab: Lab, name: str) -> None:
    host = remote_host(lab, name)
    collector = Collector([host], interval=DEADLINE, df_every=DF_EVERY)
    try:
        seen = await rounds_of(collector, name, ROUNDS * 2)
    finally:
        await collector.stop()
        await host.close()
    check_metrics(seen)
    counts = [processes for _, processes in seen if processes is not None]
    assert len(counts) == len(seen), seen
    df_rounds = [c for i, c in enumerate(counts) if i % DF_EVERY == 0]
    other_rounds = [c for i, c in enumerate(counts) if i % DF_EVERY != 0]
    # Upper bounds (this machine forks too): the least is the round's own count.
    assert min(other_rounds) == 0, counts
    assert 1 <= min(df_rounds) <= 2, counts
    costs = collector.round_costs()[name]
    assert costs.rounds == ROUNDS * 2 and costs.counted == ROUNDS * 2
    assert costs.received > 0 and costs.seconds > 0


async def test_a_user_cat_command_is_read_exactly_and_a_missing_file_loses_its_section(
    lab: Lab,
) -> None:
    host = remote_host(lab, "ssh2")
    home = (await host.run('printf %s "$HOME"')).output
    path = f"{home}/otto footprint"  # not a plain word: read by a real cat in a subshell
    plain = f"{home}/otto_footprint.txt"
    for where in (path, plain):
        await host.run(f"printf %s {shlex.quote(TRICKY)} > {shlex.quote(where)}")
    texts: dict[str, str] = {}

    def keep(command: str) -> MetricParser:
        def parser(text: str, t: float, previous: Sample | None, /) -> Parsed:
            texts[command] = text
            return Parsed({f"len.{len(texts)}": float(len(text))})

        return parser

    builtin, subshell = f"cat {plain}", f"cat {shlex.quote(path)}"
    target = MonitorTarget(
        host,
        parsers={
            builtin: keep(builtin),
            subshell: keep(subshell),
            "cat /proc/otto_no_such_file": keep("missing"),
        },
    )
    collector = Collector([target], interval=DEADLINE)
    try:
        outcome = (await collector.poll_round())["ssh2"]
    finally:
        await collector.stop()
        await host.run(f"rm -f {shlex.quote(path)} {shlex.quote(plain)}")
        await host.close()
    assert outcome.up
    assert outcome.error == "cat /proc/otto_no_such_file: exit status 1"
    assert texts == {builtin: TRICKY, subshell: TRICKY}
    assert "mem.total_bytes" in outcome.metrics and "load.1m" in outcome.metrics


# --- otto monitor prints what its rounds cost ---------------------------------------------


def test_otto_monitor_prints_the_cost_of_its_rounds(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OTTO_LAB"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "otto",
            "monitor",
            "--port",
            "0",
            "--interval",
            "0.2",
            "--df-every",
            "2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=tmp_path,
        env=env,
    )
    output = b""
    pattern = re.compile(
        rb"cost local: 1 rounds, per round [\d.]+ ms, [\d.]+ kB, \d+ processes started"
        rb" \(most in one round: \d+\)"
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + DEADLINE
        while pattern.search(output) is None:
            left = deadline - time.monotonic()
            assert left > 0, output
            if select.select([proc.stdout], [], [], left)[0]:
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, output
                output += chunk
        proc.send_signal(signal.SIGINT)
        assert proc.wait(DEADLINE) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(DEADLINE)
        if proc.stdout is not None:
            proc.stdout.close()
