"""How long ``otto --help`` takes to start, beside ``python -c pass`` measured in the same run.

Each command runs ``--runs`` times, interleaved so that machine load hits both
alike; the best and the median wall times are printed with their ratio. The
target is ``otto --help`` under 300 ms.

    python bench/bench_cli_startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

TARGET_MS = 300.0

COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "otto --help": [sys.executable, "-m", "otto", "--help"],
    "otto test --help": [sys.executable, "-m", "otto", "test", "--help"],
    "otto host --help": [sys.executable, "-m", "otto", "host", "--help"],
    "otto --list-hosts": [sys.executable, "-m", "otto", "--list-hosts"],
}


def _once(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    env = {**os.environ, "COLUMNS": "100"}
    env.pop("OTTO_LAB", None)
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():  # warm the file cache and .pyc files
        _once(argv, env)
    for _ in range(args.runs):
        for name, argv in COMMANDS.items():
            times[name].append(_once(argv, env))
    base_best = min(times["python -c pass"])
    base_median = statistics.median(times["python -c pass"])
    print(f"{'command':<20} {'best ms':>9} {'median ms':>10} {'x python (best)':>16}")
    for name, samples in times.items():
        best, median = min(samples), statistics.median(samples)
        print(f"{name:<20} {best:9.1f} {median:10.1f} {best / base_best:16.1f}")
    help_best = min(times["otto --help"])
    verdict = "OK" if help_best < TARGET_MS else "OVER"
    print(
        f"\notto --help: {help_best:.0f} ms best, {statistics.median(times['otto --help']):.0f} ms "
        f"median; python -c pass: {base_best:.0f} ms best, {base_median:.0f} ms median; "
        f"ratio {help_best / base_best:.1f}x; target < {TARGET_MS:.0f} ms: {verdict}"
    )
    test_best = min(times["otto test --help"])
    print(
        f"otto test --help: {test_best:.0f} ms best, "
        f"{statistics.median(times['otto test --help']):.0f} ms median; "
        f"target < {TARGET_MS:.0f} ms: {'OK' if test_best < TARGET_MS else 'OVER'}"
    )


if __name__ == "__main__":
    main()
