"""The collector against raw asyncio pipes and raw asyncssh, the parsers and the store, in one run.

    python3 bench/bench_monitor.py [--quick] [--no-ssh]    (SSH part: as root, its own sshd lab)

1. A round over N local hosts, each its own LocalHost session, against the same
   joined metric command written by raw asyncio pipes to N persistent bash
   processes and read until a marker (no parsing). N = 10, 50, 200. Rounds of
   the two alternate, and each figure is the median of several rounds.
   Target (issue 4): otto <= 1.5x raw at 50 hosts.
2. A round over N lab SSH hosts (N = 10, 50; own sshd each, in network
   namespaces) against raw asyncssh doing the same reads over connections
   already open: one exec per host per round (``conn.run`` of ``cat`` of the
   five /proc files and ``df -P``), output read whole, not parsed. Also beside a
   stricter floor: a raw asyncssh shell channel per host, kept open, running
   the same shell function otto sends (builtin reads) and read until a marker.
   Once with df on every round (``df_every=1``: the same reads as the exec),
   once on rounds without df (raw: the exec without ``df -P``). Rounds of otto
   and of the raw side alternate; the best and the median of each are shown.
   Target (issue 12): otto <= 1.2x the raw exec round at 50 hosts.
3. Parsing one host's full round of real /proc output (captured from this
   machine now): split the joined output and run every default parser.
   Target: <= 50 us per host.
4. The store: samples/s written by ``MetricStore.write_round`` (one transaction
   per round) beside a bare sqlite3 ``executemany`` of the same rows into a flat
   table, one commit per round. Target: >= 100k samples/s.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import RawShell

from otto import LocalHost, RemoteHost
from otto.monitor import Collector
from otto.monitor.parsers import DEFAULT_PARSERS
from otto.monitor.shell_probe import DF_COMMAND, ShellProbe, monitor_script
from otto.monitor.store import HostState, MetricStore
from otto.transports.sshlib import asyncssh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.lab import Lab
from tests.lab.hosts import ssh_nodes

QUICK = "--quick" in sys.argv
SIZES = (10, 50) if QUICK else (10, 50, 200)
ROUNDS = 3 if QUICK else 7
SEPARATOR = "__otto_bench_sep__"
FUNCTION = "__otto_bench_m"
SSH = os.geteuid() == 0 and "--no-ssh" not in sys.argv
SSH_SIZES = (10, 50)
SSH_ROUNDS = 5 if QUICK else 15
SCRIPT = monitor_script([(c, c == DF_COMMAND) for c in DEFAULT_PARSERS], SEPARATOR, FUNCTION)
"""The shell function otto defines on a host (its reads by builtins), for the raw sides."""
CAT = "cat /proc/stat /proc/meminfo /proc/loadavg /proc/net/dev /proc/diskstats"


async def round_cost(n: int) -> tuple[float, float]:
    """Median seconds of an otto round and of a raw round over ``n`` hosts.

    The raw shells run the same shell function as otto (defined once), df included.
    """
    command = f"{FUNCTION} 1"
    hosts = [LocalHost(name=f"bench{i}") for i in range(n)]
    collector = Collector(hosts, interval=30.0, df_every=1)
    raws = [RawShell() for _ in range(n)]
    await asyncio.gather(*(r.start() for r in raws))
    try:
        # Warm up both: start the shells, fill caches, set the parsers' baselines.
        await collector.poll_round()
        await asyncio.gather(*(r.run(SCRIPT) for r in raws))
        await asyncio.gather(*(r.run(command) for r in raws))
        mine, theirs = [], []
        for _ in range(ROUNDS):
            began = time.perf_counter()
            results = await collector.poll_round()
            mine.append(time.perf_counter() - began)
            assert all(r.up for r in results.values()), results
            began = time.perf_counter()
            await asyncio.gather(*(r.run(command) for r in raws))
            theirs.append(time.perf_counter() - began)
    finally:
        await collector.stop()
        await asyncio.gather(*(h.close() for h in hosts))
        await asyncio.gather(*(r.close() for r in raws))
    return statistics.median(mine), statistics.median(theirs)


def captured_round() -> tuple[str, str]:
    """Two outputs of a round (the shell function, df included), taken here a moment apart."""
    command = f"{SCRIPT}\n{FUNCTION} 1"
    outputs = []
    for _ in range(2):
        ran = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True)
        outputs.append(ran.stdout.removesuffix("\n"))
        time.sleep(0.2)
    return outputs[0], outputs[1]


def parse_cost() -> tuple[float, int]:
    """Best mean microseconds to parse one host's round; and how many metrics it gave."""
    first, second = captured_round()
    collector = Collector([_NamedHost()], interval=5.0)
    probe = collector._tracks["parse"].probes[0]
    assert isinstance(probe, ShellProbe)
    probe.separator = SEPARATOR  # parse what bash printed with the bench's separator
    probe.parse(first, 0.0)
    previous = dict(probe.previous)
    n = 2000 if QUICK else 20000
    best = float("inf")
    metrics = 0
    for _ in range(5):
        began = time.perf_counter()
        for _ in range(n):
            probe.previous = dict(previous)
            result = probe.parse(second, 1.0)
        best = min(best, (time.perf_counter() - began) / n)
        metrics = len(result.metrics)
    return best * 1e6, metrics


class _NamedHost:
    name = "parse"

    async def open_session(self, name: str) -> object:
        raise NotImplementedError


def store_rate() -> tuple[float, float, int]:
    """Samples/s of MetricStore and of bare sqlite3, same rows, one commit per round."""
    hosts = [f"host{i:03d}" for i in range(50)]
    metrics = [f"metric.{j}" for j in range(35)]
    rounds = 60 if QUICK else 300
    data = [
        {h: {m: float(i * j + k) for j, m in enumerate(metrics)} for i, h in enumerate(hosts)}
        for k in range(rounds)
    ]
    states = {h: HostState(True) for h in hosts}
    with tempfile.TemporaryDirectory() as tmp:
        with MetricStore(Path(tmp) / "otto.db") as store:
            began = time.perf_counter()
            total = 0
            for k, samples in enumerate(data):
                total += store.write_round(1e9 + k * 5.0, samples, states, 0.01)
            mine = total / (time.perf_counter() - began)
        db = sqlite3.connect(Path(tmp) / "raw.db", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE samples (t REAL, host TEXT, metric TEXT, value REAL)")
        began = time.perf_counter()
        for k, samples in enumerate(data):
            db.execute("BEGIN")
            db.executemany(
                "INSERT INTO samples VALUES (?, ?, ?, ?)",
                [(1e9 + k * 5.0, h, m, v) for h, ms in samples.items() for m, v in ms.items()],
            )
            db.execute("COMMIT")
        theirs = total / (time.perf_counter() - began)
        db.close()
    return mine, theirs, len(hosts) * len(metrics)


class RawExec:
    """The raw asyncssh side: open connections, one exec (or one shell channel) per host."""

    def __init__(self, conns: list[asyncssh.SSHClientConnection]) -> None:
        self.conns = conns
        self.shells: list[asyncssh.SSHClientProcess[bytes]] = []

    async def exec_round(self, command: str) -> int:
        done = await asyncio.gather(*(c.run(command, encoding=None) for c in self.conns))
        return sum(len(d.stdout or b"") for d in done)

    async def open_shells(self) -> None:
        self.shells = list(
            await asyncio.gather(*(c.create_process(encoding=None) for c in self.conns))
        )
        await self.shell_round(SCRIPT)

    async def shell_round(self, command: str) -> int:
        async def one(shell: asyncssh.SSHClientProcess[bytes]) -> int:
            shell.stdin.write(f"{command}; echo __RAW_MARK__\n".encode())
            return len(await shell.stdout.readuntil(b"__RAW_MARK__\n"))

        return sum(await asyncio.gather(*(one(s) for s in self.shells)))

    def close(self) -> None:
        for shell in self.shells:
            shell.close()
        for conn in self.conns:
            conn.close()


async def ssh_round_cost(lab: Lab, n: int, df: bool) -> dict[str, list[float]]:
    """Seconds of each otto round, raw exec round and raw shell round over ``n`` lab hosts."""
    names = [f"h{i}" for i in range(1, n + 1)]
    hosts = []
    for name in names:
        spec = lab.host(name)
        hosts.append(
            RemoteHost(
                spec.address,
                user=spec.user,
                key=spec.key_path,
                port=spec.port,
                known_hosts=lab.known_hosts,
                name=name,
            )
        )
    # df on every round, or (after the first) on none: 10**6 rounds is "never again".
    collector = Collector(hosts, interval=60.0, df_every=1 if df else 10**6)
    conns = await asyncio.gather(
        *(
            asyncssh.connect(
                lab.host(name).address,
                port=lab.host(name).port,
                username=lab.host(name).user,
                client_keys=[str(lab.host(name).key_path)],
                known_hosts=str(lab.known_hosts),
            )
            for name in names
        )
    )
    raw = RawExec(list(conns))
    exec_command = f"{CAT}; {DF_COMMAND}" if df else CAT
    call = f"{FUNCTION} {1 if df else 0}"
    times: dict[str, list[float]] = {"otto": [], "exec": [], "shell": []}
    try:
        await raw.open_shells()
        for _ in range(2):  # warm: sessions, functions defined, parsers' baselines
            await collector.poll_round()
            await raw.exec_round(exec_command)
            await raw.shell_round(call)
        for _ in range(SSH_ROUNDS):
            began = time.perf_counter()
            results = await collector.poll_round()
            times["otto"].append(time.perf_counter() - began)
            assert all(r.up for r in results.values()), results
            began = time.perf_counter()
            await raw.exec_round(exec_command)
            times["exec"].append(time.perf_counter() - began)
            began = time.perf_counter()
            await raw.shell_round(call)
            times["shell"].append(time.perf_counter() - began)
    finally:
        await collector.stop()
        await asyncio.gather(*(h.close() for h in hosts))
        raw.close()
    return times


async def ssh_part() -> bool:
    ok = True
    async with Lab(ssh_nodes(max(SSH_SIZES))) as lab:
        print(
            f"2. one round over N lab SSH hosts ({'namespaces' if lab.uses_netns else 'loopback'}"
            f"; best and median of {SSH_ROUNDS} rounds)"
        )
        for n in SSH_SIZES:
            for df in (True, False):
                times = await ssh_round_cost(lab, n, df)
                mine, raw_exec, raw_shell = (min(times[k]) for k in ("otto", "exec", "shell"))
                ratio = mine / raw_exec
                verdict = ""
                if n == 50:
                    ok = ok and ratio <= 1.2
                    verdict = "  (target <= 1.2: " + ("ok)" if ratio <= 1.2 else "MISSED)")
                medians = "/".join(
                    f"{statistics.median(times[k]) * 1e3:.1f}" for k in ("otto", "exec", "shell")
                )
                print(
                    f"   N={n:<3} {'with df   ' if df else 'without df'} otto {mine * 1e3:7.1f} ms"
                    f"   raw exec {raw_exec * 1e3:7.1f} ms   ratio {ratio:5.2f}{verdict}"
                    f"   raw shell {raw_shell * 1e3:7.1f} ms   ratio {mine / raw_shell:5.2f}"
                    f"   (medians otto/exec/shell {medians} ms)"
                )
    return ok


async def main() -> int:
    ok = True
    print(f"machine: {os.cpu_count()} CPUs; medians of {ROUNDS} rounds")
    print("1. one round over N local hosts (the same shell function, df included, per host)")
    for n in SIZES:
        mine, theirs = await round_cost(n)
        ratio = mine / theirs
        verdict = ""
        if n == 50:
            ok = ok and ratio <= 1.5
            verdict = "  (target <= 1.5: " + ("ok)" if ratio <= 1.5 else "MISSED)")
        print(
            f"   N={n:<4} otto {mine * 1e3:8.1f} ms ({mine / n * 1e3:6.2f} ms/host)   "
            f"raw pipes {theirs * 1e3:8.1f} ms   ratio {ratio:5.2f}{verdict}"
        )
    if SSH:
        ok = await ssh_part() and ok
    else:
        print("2. SSH hosts: skipped (needs root for the lab; --no-ssh)")
    cost, count = parse_cost()
    ok = ok and cost <= 50
    print(
        f"3. parse one host's round ({count} metrics from real /proc, cost lines too): "
        f"{cost:6.1f} us "
        f"(target <= 50 us: {'ok' if cost <= 50 else 'MISSED'})"
    )
    mine_rate, raw_rate, per_round = store_rate()
    ok = ok and mine_rate >= 100_000
    print(
        f"4. store, {per_round} samples per round: otto {mine_rate:,.0f} samples/s   "
        f"bare sqlite3 {raw_rate:,.0f} samples/s   ratio {mine_rate / raw_rate:4.2f} "
        f"(target >= 100,000/s: {'ok' if mine_rate >= 100_000 else 'MISSED'})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
