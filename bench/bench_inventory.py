"""Loading a 1,000-host Ansible inventory: ``otto --lab INV --list-hosts`` beside
``ansible-inventory -i INV --list`` on the same file, measured in the same run.

The inventory (INI, written to a temporary directory) has 20 groups of 50
hosts given as ranges (``web03-[001:050]``), group vars on every group, two
parent groups with children and vars, and host vars on some hosts. Both
commands run ``--runs`` times, interleaved so that machine load hits both
alike; the best and median wall times are printed with their ratio. The target
is otto <= 1.2x ansible-inventory (best of runs).

    python bench/bench_inventory.py [--runs 7] [--hosts-per-group 50]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1.2
GROUPS = 20


def write_inventory(path: Path, per_group: int) -> int:
    """An INI inventory of ``GROUPS * per_group`` hosts; returns the host count."""
    lines: list[str] = []
    for g in range(1, GROUPS + 1):
        kind = ("web", "db", "cache", "edge")[g % 4]
        lines.append(f"[{kind}{g:02d}]")
        lines.append(f"{kind}{g:02d}-[001:{per_group:03d}].lab.example")
        lines.append(f"{kind}{g:02d}-extra ansible_host=10.{g}.0.250 ansible_port=2{g:03d}")
        lines.append("")
        lines.append(f"[{kind}{g:02d}:vars]")
        lines.append(f"ansible_user=user{g:02d}")
        lines.append(f"ansible_port={2200 + g}")
        lines.append("")
    for region, members in (("east", range(1, 11)), ("west", range(11, GROUPS + 1))):
        lines.append(f"[{region}:children]")
        lines.extend(f"{('web', 'db', 'cache', 'edge')[g % 4]}{g:02d}" for g in members)
        lines.append("")
        lines.append(f"[{region}:vars]")
        lines.append("ansible_become_password=not-a-real-one")
        lines.append("")
    path.write_text("\n".join(lines))
    return GROUPS * (per_group + 1)


def _once(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--hosts-per-group", type=int, default=49)
    args = parser.parse_args()
    ansible_inventory = shutil.which("ansible-inventory")
    if ansible_inventory is None:
        sys.exit("ansible-inventory is not installed (pip install 'otto-shell[ansible]')")
    env = {**os.environ, "COLUMNS": "200", "ANSIBLE_NOCOLOR": "1"}
    env.pop("OTTO_LAB", None)
    with tempfile.TemporaryDirectory(prefix="otto-bench-inv-") as tmp:
        inventory = Path(tmp) / "hosts.ini"
        count = write_inventory(inventory, args.hosts_per_group)
        commands = {
            "ansible-inventory --list": [ansible_inventory, "-i", str(inventory), "--list"],
            "otto --list-hosts": [
                sys.executable,
                "-m",
                "otto",
                "--lab",
                str(inventory),
                "--list-hosts",
            ],
        }
        listed = subprocess.run(
            commands["otto --list-hosts"], check=True, capture_output=True, text=True, env=env
        )
        assert len(listed.stdout.splitlines()) == count + 1, "otto does not list every host"
        times: dict[str, list[float]] = {name: [] for name in commands}
        for argv in commands.values():  # warm the file cache and .pyc files
            _once(argv, env)
        for _ in range(args.runs):
            for name, argv in commands.items():
                times[name].append(_once(argv, env))
    floor = times["ansible-inventory --list"]
    ours = times["otto --list-hosts"]
    print(f"{count} hosts, {GROUPS} groups + 2 parents, {args.runs} runs each (interleaved)")
    print(f"{'command':<26} {'best ms':>9} {'median ms':>10}")
    for name, samples in times.items():
        print(f"{name:<26} {min(samples):9.0f} {statistics.median(samples):10.0f}")
    ratio = min(ours) / min(floor)
    verdict = "OK" if ratio <= TARGET else "OVER"
    print(
        f"\notto / ansible-inventory: {ratio:.2f}x best, "
        f"{statistics.median(ours) / statistics.median(floor):.2f}x median; "
        f"target <= {TARGET}x: {verdict}"
    )


if __name__ == "__main__":
    main()
