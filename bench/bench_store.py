"""The metric store's write rate while another process reads the dashboard's data.

Each batch writes ROUNDS rounds of HOSTS x METRICS samples, one transaction per
round, into a fresh file while a second process keeps reading the same file:

- otto: ``MetricStore.write_round`` (a run of a v2 database), the reader loading
  the run as the dashboard does (``Replay.from_file(...).snapshot()``);
- otto, same reader as the floor: the reader fetching every sample row;
- floor: bare ``sqlite3`` ``executemany`` of the same rows into a table with the
  same key, the reader fetching every row of it.

Batches alternate (otto, otto, floor, ...) and the best of each is printed, with
how many full reads the reader finished meanwhile. The ratio compares otto and
the floor under the same reader. Target: otto >= 500,000 samples/s with the
dashboard reader.

    python bench/bench_store.py [--quick]
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from otto.monitor.store import HostState, MetricStore

QUICK = "--quick" in sys.argv
HOSTS = 50
METRICS = 40
ROUNDS = 100 if QUICK else 400
BATCHES = 2 if QUICK else 3
TARGET = 500_000

# The reader: waits for the file, then reads it whole again and again until stdin closes;
# prints how many reads it finished.
READER = r"""
import os, select, sqlite3, sys, time
mode, path = sys.argv[1], sys.argv[2]
print("ready", flush=True)
reads = 0
def stopped():
    return select.select([sys.stdin], [], [], 0)[0]
while not stopped():
    if mode == "otto":
        from otto.monitor.replay import Replay
        try:
            Replay.from_file(path).snapshot()
        except Exception as exc:  # no run yet
            if "no run" not in str(exc):
                raise
            continue
    else:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            db.execute("SELECT run_id, t, host_id, metric_id, value FROM samples").fetchall()
        except sqlite3.OperationalError:  # no table yet
            db.close()
            continue
        db.close()
    reads += 1
print(reads, flush=True)
"""

FLOOR_SCHEMA = """
CREATE TABLE samples (
    run_id INTEGER NOT NULL,
    t REAL NOT NULL,
    host_id INTEGER NOT NULL,
    metric_id INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (run_id, t, host_id, metric_id)
) WITHOUT ROWID
"""


def rounds() -> list[dict[str, dict[str, float]]]:
    hosts = [f"host{i:03d}" for i in range(HOSTS)]
    metrics = [f"metric.{j}" for j in range(METRICS)]
    return [
        {h: {m: float(i * j + k) + 0.5 for j, m in enumerate(metrics)} for i, h in enumerate(hosts)}
        for k in range(ROUNDS)
    ]


class Reader:
    """The second process, reading ``path`` in a loop while it is written."""

    def __init__(self, mode: str, path: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", READER, mode, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == "ready\n"

    def stop(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        reads = int(self.proc.stdout.readline())
        self.proc.stdout.close()
        self.proc.wait(60)
        return reads


def otto_batch(
    folder: Path, data: list[dict[str, dict[str, float]]], reader_mode: str = "otto"
) -> tuple[float, int]:
    path = folder / "otto.db"
    states = {h: HostState(True) for h in data[0]}
    with MetricStore(path) as store:
        store.start_run(label="bench", interval=5.0, hosts=list(data[0]))
        store.write_round(1e9 - 5.0, data[0], states, 0.01)  # names known, the reader has a run
        reader = Reader(reader_mode, path)
        try:
            began = time.perf_counter()
            total = 0
            for k, samples in enumerate(data):
                total += store.write_round(1e9 + k * 5.0, samples, states, 0.01)
            rate = total / (time.perf_counter() - began)
        finally:
            reads = reader.stop()
    return rate, reads


def floor_batch(folder: Path, data: list[dict[str, dict[str, float]]]) -> tuple[float, int]:
    path = folder / "floor.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(FLOOR_SCHEMA)
    host_ids = {h: i for i, h in enumerate(data[0], 1)}
    metric_ids = {m: j for j, m in enumerate(next(iter(data[0].values())), 1)}
    reader = Reader("floor", path)
    try:
        began = time.perf_counter()
        total = 0
        for k, samples in enumerate(data):
            t = 1e9 + k * 5.0
            rows = [
                (1, t, host_ids[h], metric_ids[m], v)
                for h, values in samples.items()
                for m, v in values.items()
            ]
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
            total += len(rows)
        rate = total / (time.perf_counter() - began)
    finally:
        reads = reader.stop()
        db.close()
    return rate, reads


def main() -> int:
    data = rounds()
    print(
        f"machine: {os.cpu_count()} CPUs; {ROUNDS} rounds of {HOSTS} hosts x {METRICS} metrics "
        f"({HOSTS * METRICS} samples a round), one transaction per round, "
        "a second process reading the file throughout; best of "
        f"{BATCHES} alternating batches"
    )
    mine: list[tuple[float, int]] = []
    mine_raw: list[tuple[float, int]] = []
    floor: list[tuple[float, int]] = []
    for _ in range(BATCHES):
        with tempfile.TemporaryDirectory() as tmp:
            mine.append(otto_batch(Path(tmp), data))
        with tempfile.TemporaryDirectory() as tmp:
            mine_raw.append(otto_batch(Path(tmp), data, "floor"))
        with tempfile.TemporaryDirectory() as tmp:
            floor.append(floor_batch(Path(tmp), data))
    best_mine, best_raw, best_floor = max(mine), max(mine_raw), max(floor)
    ok = best_mine[0] >= TARGET
    print(
        f"otto store, dashboard reader  {best_mine[0]:>12,.0f} samples/s  "
        f"(reader: {best_mine[1]} dashboard loads of the run)"
    )
    print(
        f"otto store, row reader        {best_raw[0]:>12,.0f} samples/s  "
        f"(reader: {best_raw[1]} full table reads)"
    )
    print(
        f"bare sqlite3, row reader      {best_floor[0]:>12,.0f} samples/s  "
        f"(reader: {best_floor[1]} full table reads)"
    )
    print(
        f"ratio otto/floor (same reader) {best_raw[0] / best_floor[0]:.2f}; "
        f"target >= {TARGET:,}/s with the dashboard reader: {'ok' if ok else 'MISSED'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
