"""What ``--shard I/N`` adds to collecting 10,000 tests, measured beside the same collection
without it in the same run; prints both and the difference.

    python3 bench/bench_shard.py [--quick]

1. ``pytest --collect-only`` of a generated suite of 10,000 tests (100 modules of 50
   functions and one test parametrized 50 ways), plain and with ``--shard 3/7``,
   then ``--shard 3/7 --shard-durations RUN_DIR`` (a run folder of 10,000 records and
   its ``durations.json``, as a run leaves it) and the same folder without the
   summary (the records read one by one). The figure is the process's CPU time
   (user + system; its start-up is the same in every variant); runs alternate, best
   of each. A whole process varies by more than the target from run to run (the
   spread is printed): these rows are shown, not judged.
2. The selection alone, in one process on the 10,000 collected items: the split by
   node id, and by durations (reading the run folder included), CPU time of the
   thread (wall time beside it). Best of many. This is what the target is judged on.

Target: the selection adds < 50 ms to collection for 10,000 tests.
"""

from __future__ import annotations

import contextlib
import io
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from otto.testing.records import TestRecord, read_records
from otto.testing.shard import DURATIONS_FILE, take_shard, write_durations

QUICK = "--quick" in sys.argv
MODULES = 100
FUNCTIONS = 50
PARAMS = 50
TESTS = MODULES * (FUNCTIONS + PARAMS)
TARGET_MS = 50.0


def make_suite(folder: Path) -> None:
    (folder / "pytest.ini").write_text("[pytest]\n")
    tests = folder / "tests"
    tests.mkdir()
    for m in range(MODULES):
        body = ["import pytest\n"]
        body += [f"def test_f{i}():\n    pass\n" for i in range(FUNCTIONS)]
        body.append(f"@pytest.mark.parametrize('n', range({PARAMS}))\ndef test_p(n):\n    pass\n")
        (tests / f"test_m{m:03}.py").write_text("\n".join(body))


def make_run_dir(folder: Path, nodeids: list[str]) -> None:
    """A run folder as a run of this suite leaves it: its records and ``durations.json``."""
    folder.mkdir()
    rng = random.Random(7)
    records = [
        TestRecord(nodeid=n, name=n, outcome="passed", start=0.0, stop=rng.expovariate(2.0))
        for n in nodeids
    ]
    with (folder / "records.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(r.to_json() + "\n" for r in records)
    write_durations(folder, read_records([folder / "records.jsonl"]))


def collect_seconds(folder: Path, *args: str) -> tuple[float, int]:
    """CPU seconds (user + system) of ``pytest --collect-only`` in a process of its own
    (start-up included: the same for every variant), and how many tests it kept."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(
        [
            # -qq: a line per module ("path: N"), the same output with a shard or without.
            sys.executable, "-m", "pytest", "--collect-only", "-qq", "-p", "no:cacheprovider",
            # hypothesis's plugin, where installed, costs the same to both: left out.
            "-p", "no:hypothesispytest", f"--otto-output={folder / 'out'}", *args, "tests",
        ],
        cwd=folder, capture_output=True, text=True, check=False,
    )  # fmt: skip
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    kept = sum(int(m.group(1)) for m in re.finditer(r"^tests/\S+\.py: (\d+)$", proc.stdout, re.M))
    if proc.returncode != 0 or not kept:
        raise SystemExit(f"collection failed in {folder}:\n{proc.stdout[-2000:]}\n{proc.stderr}")
    return spent, kept


def row(name: str, mine: float, base: float, *, judged: bool = True) -> bool:
    added = (mine - base) * 1e3
    ok = added < TARGET_MS
    verdict = ("ok" if ok else "MISSED") if judged else "(not judged: see the spread)"
    print(
        f"{name:<44} shard {mine * 1e3:8.1f} ms   no shard {base * 1e3:8.1f} ms   "
        f"added {added:6.1f} ms (target < {TARGET_MS:g})  {verdict}"
    )
    return ok


class Items:
    """A pytest plugin that keeps the collected items and the config."""

    def __init__(self) -> None:
        self.items: list[pytest.Item] = []
        self.config: pytest.Config | None = None

    def pytest_collection_modifyitems(
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        self.config, self.items = config, list(items)


def selection_alone(folder: Path, run_dir: Path) -> list[bool]:
    keep = Items()
    t0 = time.thread_time()
    with contextlib.redirect_stdout(io.StringIO()):
        code = pytest.main(
            ["--collect-only", "-qq", "-p", "no:cacheprovider", "-p", "no:hypothesispytest",
             f"--otto-output={folder / 'out'}", str(folder / "tests")],
            plugins=[keep],
        )  # fmt: skip
    collected = time.thread_time() - t0
    if code != 0 or len(keep.items) != TESTS or keep.config is None:
        raise SystemExit(f"collecting in this process failed: status {code}")
    print(f"collecting {TESTS} tests in this process (no shard): {collected * 1e3:.0f} ms CPU")
    config = keep.config
    opt = config.option
    results = []
    for name, durations in (("no durations", None), ("durations", str(run_dir))):
        opt.otto_shard, opt.otto_shard_durations = (3, 7), durations
        best, wall = float("inf"), float("inf")
        for _ in range(5 if QUICK else 20):
            items = list(keep.items)
            t0, w0 = time.thread_time(), time.perf_counter()
            take_shard(config, items)
            best = min(best, time.thread_time() - t0)
            wall = min(wall, time.perf_counter() - w0)
            assert 0 < len(items) < TESTS
        ok = best * 1e3 < TARGET_MS
        results.append(ok)
        print(
            f"--shard 3/7, {name:<30} adds {best * 1e3:6.1f} ms CPU "
            f"({100 * best / collected:.1f}% of collecting; wall {wall * 1e3:.1f} ms)  "
            f"target < {TARGET_MS:g} ms  {'ok' if ok else 'MISSED'}"
        )
    return results


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        make_suite(folder)
        nodeids = [
            f"tests/test_m{m:03}.py::{name}"
            for m in range(MODULES)
            for name in [
                *(f"test_f{i}" for i in range(FUNCTIONS)),
                *(f"test_p[{n}]" for n in range(PARAMS)),
            ]
        ]
        with_summary, records_only = folder / "prev", folder / "prev-records"
        make_run_dir(with_summary, nodeids)
        make_run_dir(records_only, nodeids)
        (records_only / DURATIONS_FILE).unlink()
        cases = {
            "no shard": [],
            "--shard 3/7": ["--otto-shard", "3/7"],
            "--shard 3/7, durations.json": [
                "--otto-shard", "3/7", "--otto-shard-durations", "prev",
            ],
            "--shard 3/7, records only": [
                "--otto-shard", "3/7", "--otto-shard-durations", "prev-records",
            ],
        }  # fmt: skip
        times: dict[str, list[float]] = {name: [] for name in cases}
        collect_seconds(folder)  # warm the file cache and the bytecode
        for _ in range(3 if QUICK else 7):
            for name, args in cases.items():
                spent, kept = collect_seconds(folder, *args)
                assert kept == TESTS if not args else 0 < kept < TESTS, (name, kept)
                times[name].append(spent)
        base = min(times["no shard"])
        spread = (max(times["no shard"]) - base) * 1e3
        print(
            f"pytest --collect-only of {TESTS} tests, CPU time of the process "
            f"(best of {len(times['no shard'])}; the same run's spread: {spread:.0f} ms):"
        )
        for name in list(cases)[1:]:
            row(name, min(times[name]), base, judged=False)
        print("the selection alone, on the items collected in this process (best of many):")
        results = selection_alone(folder, with_summary)
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
