"""The collector against raw asyncio pipes, the parsers and the store, in one run.

    python3 bench/bench_monitor.py [--quick]

1. A round over N local hosts, each its own LocalHost session, against the same
   joined metric command written by raw asyncio pipes to N persistent bash
   processes and read until a marker (no parsing). N = 10, 50, 200. Rounds of
   the two alternate, and each figure is the median of several rounds.
   Target (issue 4): otto <= 1.5x raw at 50 hosts.
2. Parsing one host's full round of real /proc output (captured from this
   machine now): split the joined output and run every default parser.
   Target: <= 50 us per host.
3. The store: samples/s written by ``MetricStore.write_round`` (one transaction
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

from otto import LocalHost
from otto.monitor import Collector
from otto.monitor.parsers import DEFAULT_PARSERS
from otto.monitor.shell_probe import ShellProbe, join_commands
from otto.monitor.store import HostState, MetricStore

QUICK = "--quick" in sys.argv
SIZES = (10, 50) if QUICK else (10, 50, 200)
ROUNDS = 3 if QUICK else 7
SEPARATOR = "__otto_bench_sep__"


async def round_cost(n: int) -> tuple[float, float]:
    """Median seconds of an otto round and of a raw round over ``n`` hosts."""
    command = join_commands(list(DEFAULT_PARSERS), SEPARATOR)
    hosts = [LocalHost(name=f"bench{i}") for i in range(n)]
    collector = Collector(hosts, interval=30.0)
    raws = [RawShell() for _ in range(n)]
    await asyncio.gather(*(r.start() for r in raws))
    try:
        # Warm up both: start the shells, fill caches, set the parsers' baselines.
        await collector.poll_round()
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
    """Two joined outputs of the default commands, taken here a moment apart."""
    command = join_commands(list(DEFAULT_PARSERS), SEPARATOR)
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


async def main() -> int:
    ok = True
    print(f"machine: {os.cpu_count()} CPUs; medians of {ROUNDS} rounds")
    print("1. one round over N local hosts (joined metric command, one run per host)")
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
    cost, count = parse_cost()
    ok = ok and cost <= 50
    print(
        f"2. parse one host's round ({count} metrics from real /proc): {cost:6.1f} us "
        f"(target <= 50 us: {'ok' if cost <= 50 else 'MISSED'})"
    )
    mine_rate, raw_rate, per_round = store_rate()
    ok = ok and mine_rate >= 100_000
    print(
        f"3. store, {per_round} samples per round: otto {mine_rate:,.0f} samples/s   "
        f"bare sqlite3 {raw_rate:,.0f} samples/s   ratio {mine_rate / raw_rate:4.2f} "
        f"(target >= 100,000/s: {'ok' if mine_rate >= 100_000 else 'MISSED'})"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
