"""The pytest plugin's cost, measured beside plain pytest in the same run; prints ratios.

    python3 bench/bench_plugin.py [--quick] [--plugin-only]

1. 200 trivial tests, each ``run("true")`` on a warm session: otto's ``host``
   fixture in an otto run (records, a transcript per test, otto.log) against
   plain pytest (otto's plugin off) with a hand-written session fixture doing
   the same. Wall time swings 1.3x-2.4x on a shared machine, so the figures
   are CPU seconds (user + sys), best of several runs, alternating, each
   unpinned and pinned to one CPU (``taskset -c 1``):

   - session CPU: the pytest process from its session's start to its exit
     (report and JUnit written; start-up and imports left out of both), plus
     its children (the host's shell) — the row held to the target;
   - process CPU: the whole pytest process and its children, start-up included;
   - wall: pytest's own session time ("in N.NNs"), for reference;
   - the session's CPU split between the main thread (hooks, fixtures, records,
     JUnit, report) and otto's loop thread (the commands, and the taps that
     write each test's folder and two transcripts);
   - the kernel's part of each test's evidence, measured beside the runs: its
     folder made and its two files opened, written and closed.

   Every run keeps its folder until the end: a folder deleted just before the
   next run makes that run's files slow to create on ext4 without a journal.
2. ``run`` of 13.5 MB of output on a LocalHost with a transcript recording
   every byte against the same host without one.
"""

from __future__ import annotations

import ast
import asyncio
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import pair

from otto import LocalHost
from otto.testing.transcript import Transcript

QUICK = "--quick" in sys.argv
TESTS = 200
BIG = "head -c 10000000 /dev/zero | base64"

PLAIN_CONFTEST = """
import pytest
from otto import LocalHost, run

@pytest.fixture(scope="session")
def my_host():
    h = LocalHost()
    run(h.run("true"))
    yield h
    run(h.close())
"""

PLAIN_TESTS = "".join(
    f"\ndef test_{i}(my_host):\n    assert run(my_host.run('true')).is_ok\n" for i in range(TESTS)
)
OTTO_TESTS = "".join(
    f"\ndef test_{i}(host):\n    assert run(host.run('true')).is_ok\n" for i in range(TESTS)
)


def row(name: str, mine: float, base: float, target: float, base_name: str) -> bool:
    ratio = mine / base
    ok = ratio <= target
    print(
        f"{name:<48} otto {mine * 1e3:9.1f} ms   {base_name} {base * 1e3:9.1f} ms   "
        f"ratio {ratio:5.2f} (target <= {target})  {'ok' if ok else 'MISSED'}"
    )
    return ok


SESSION_CPU = """
import atexit, os, resource, threading, time

import pytest

def _cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

def _loop_cpu() -> float:
    import otto.loop

    loop = otto.loop._loop
    if loop is None or not loop.is_running():
        return 0.0
    seen: list[float] = []
    done = threading.Event()
    loop.call_soon_threadsafe(lambda: (seen.append(time.thread_time()), done.set()))
    done.wait(10)
    return seen[0] if seen else 0.0

_split: list[float] = []

def pytest_sessionstart(session):
    start = _cpu()
    _split[:] = [time.thread_time(), _loop_cpu()]

    def done() -> None:
        with open(os.environ["BENCH_CPU_OUT"], "w") as f:
            f.write(repr((_cpu() - start, *_split[2:])))

    atexit.register(done)

@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session):
    # Before the hosts are closed: the main thread's and otto's loop thread's CPU.
    _split[2:] = [time.thread_time() - _split[0], _loop_cpu() - _split[1]]
"""
"""A plugin (``-p benchcpu``): the CPU seconds of the pytest process from its session's
start until it exits, its children's (reaped) included; and, to show where they go,
those of its main thread and of otto's loop thread until the session finishes."""


def session_run(folder: Path, pinned: bool, *args: str) -> tuple[float, ...]:
    """One pytest run in ``folder``: (session CPU, process CPU, wall, main thread's CPU,
    loop thread's CPU) in seconds."""
    out = folder / "cpu.out"
    # hypothesis's plugin, when installed, spends ~0.4 s importing itself in
    # the terminal summary: left out of both, it would only hide the ratio.
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:hypothesispytest",
        "-p",
        "benchcpu",
        *args,
    ]
    if pinned:
        command = ["taskset", "-c", "1", *command]
    path = os.pathsep.join(filter(None, [str(folder.parent), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "BENCH_CPU_OUT": str(out), "PYTHONPATH": path}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    found = re.search(r"(\d+) passed in ([\d.]+)s", proc.stdout)
    if proc.returncode != 0 or found is None or int(found.group(1)) != TESTS:
        raise SystemExit(f"pytest failed in {folder}:\n{proc.stdout}\n{proc.stderr}")
    process = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    session, main, loop = ast.literal_eval(out.read_text())
    return session, process, float(found.group(2)), main, loop


def plugin_overhead() -> bool:
    ok = True
    pin_modes = [False, True] if shutil.which("taskset") and os.cpu_count() != 1 else [False]
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "benchcpu.py").write_text(SESSION_CPU)
        plain = Path(tmp, "plain")
        mine = Path(tmp, "otto")
        for folder, tests in ((plain, PLAIN_TESTS), (mine, OTTO_TESTS)):
            folder.mkdir()
            (folder / "pytest.ini").write_text("[pytest]\n")
            (folder / "test_many.py").write_text("from otto import run\n" + tests)
        (plain / "conftest.py").write_text(PLAIN_CONFTEST)
        for pinned in pin_modes:
            base_runs, mine_runs = [], []
            for _ in range(3 if QUICK else 7):
                base_runs.append(session_run(plain, pinned, "-p", "no:otto"))
                # Each run keeps its folder: deleting one just before the next run
                # makes that run's files slow to create (ext4 without a journal, as
                # here, scans past inodes deleted seconds ago: up to 0.4 ms a file).
                mine_runs.append(session_run(mine, pinned, "--otto"))
            how = "pinned" if pinned else "unpinned"
            for i, (what, target) in enumerate(
                (("session CPU", 1.15), ("process CPU", None), ("wall", None))
            ):
                mine_best = min(r[i] for r in mine_runs)
                base_best = min(r[i] for r in base_runs)
                name = f"{TESTS} tests run('true'), {what}, {how}"
                if target is None:
                    info(name, mine_best, base_best, "plain pytest")
                else:
                    ok = row(name, mine_best, base_best, target, "plain pytest") and ok
            per_test = (min(r[0] for r in mine_runs) - min(r[0] for r in base_runs)) / TESTS
            print(f"{'':<48} otto's CPU per test, {how}: {per_test * 1e3:.2f} ms")
            for i, thread in ((3, "main thread"), (4, "otto's loop thread")):
                mine_best = min(r[i] for r in mine_runs)
                base_best = min(r[i] for r in base_runs)
                print(
                    f"{'':<48} of which {thread}: otto {mine_best * 1e3:.1f} ms, "
                    f"plain pytest {base_best * 1e3:.1f} ms "
                    f"(+{(mine_best - base_best) / TESTS * 1e3:.2f} ms per test)"
                )
        # The evidence is still there: a transcript per test.
        session_run(mine, False, "--otto")
        transcripts = list(Path(mine, "otto-runs").rglob("transcript.log"))
        assert len(transcripts) >= TESTS, "a transcript per test"
        files = min(test_files(Path(mine, "otto-runs", f"files-{n}")) for n in range(3))
        print(
            f"{'':<48} of which the kernel's part, each test's folder and its two files "
            f"(mkdir, 2 x open/write/close, here): {files * 1e3:.3f} ms per test"
        )
    return ok


def test_files(folder: Path) -> float:
    """CPU seconds per test of the system calls each test's evidence needs at least, made
    beside the run folders: its folder, and its two transcripts opened, written, closed."""
    folder.mkdir()
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    start = time.thread_time()
    for i in range(TESTS):
        test = f"{folder}/test_many.py__test_{i}"
        os.mkdir(test)
        for name in ("transcript.raw.log", "transcript.log"):
            fd = os.open(f"{test}/{name}", flags, 0o666)
            os.write(fd, b"x" * 200)
            os.close(fd)
    return (time.thread_time() - start) / TESTS


def info(name: str, mine: float, base: float, base_name: str) -> None:
    print(
        f"{name:<48} otto {mine * 1e3:9.1f} ms   {base_name} {base * 1e3:9.1f} ms   "
        f"ratio {mine / base:5.2f}"
    )


async def transcript_overhead() -> bool:
    host = LocalHost()
    taped = LocalHost(name="taped")
    with tempfile.TemporaryDirectory() as tmp:
        transcript = Transcript(Path(tmp, "transcript.log"))
        taped.add_tap(transcript.tap)
        await host.run("true")
        await taped.run("true")
        base, mine = await pair(lambda: host.run(BIG), lambda: taped.run(BIG), 1, 2 if QUICK else 5)
        transcript.close()
    await host.close()
    await taped.close()
    return row("run(13.5 MB output) with a transcript", mine, base, 1.1, "no transcript")


def main() -> int:
    results = [plugin_overhead()]
    if "--plugin-only" not in sys.argv:
        results.append(asyncio.run(transcript_overhead()))
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
