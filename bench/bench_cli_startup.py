"""How long the ``otto`` command takes to start and finish, beside its floors measured
in the same run.

    python bench/bench_cli_startup.py [--runs 20] [--ssh]   (--ssh: as root, starts an sshd lab)

Each command runs ``--runs`` times, interleaved so that machine load hits all
alike; the best and the median wall times are printed, with the CPU time
(user + system) the process took and the ratio to the floor, once unpinned and
once pinned to one CPU (``taskset``; the pinned column is left out without it).

Rows and targets:

- ``otto --help``, ``otto test --help``: under 300 ms.
- ``otto host local run true`` (the plain line, read by ``otto.cli.fast``):
  under 120 ms, beside ``python3 -c pass`` (the interpreter's own start, with
  this machine's ``site``) and ``/bin/true``; the same line through the Typer
  app and through the installed ``otto`` script are shown beside it. Its floor
  is shown too: ``import asyncio`` alone, and a plain asyncio program that runs
  ``true`` in ``bash --noprofile --norc`` on pipes (what otto does, without otto).
- ``--ssh``: ``otto host h1 run true`` over SSH, the whole process, beside
  ``ssh -o ControlMaster=no h1 true`` to the same sshd with the same key and
  known_hosts: at most 1.2x. Beside them, the floors of any Python SSH client
  built on asyncssh: the interpreter's start plus ``import asyncssh`` (as otto
  imports it), and a plain asyncssh program that connects, runs ``true`` on an
  exec channel and closes (what otto does, without otto). ``ssh`` with
  curve25519 key exchange (what asyncssh agrees on with this sshd; OpenSSH's
  default sntrup761x25519 costs its client ~70 ms of CPU here) is shown too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HELP_TARGET_MS = 300.0
LOCAL_TARGET_MS = 120.0
SSH_TARGET = 1.2

PY = sys.executable
TYPER_MAIN = "import sys; sys.argv[0] = 'otto'; from otto.cli.app import main; main()"
# The floor of any asyncio program that runs `true` in a local shell as otto does:
# the interpreter, asyncio, and bash on pipes started, asked, answered and ended.
ASYNCIO_BASH = """\
import asyncio

async def main():
    argv = ("bash", "--noprofile", "--norc")
    shell = await asyncio.create_subprocess_exec(*argv, stdin=-1, stdout=-1, stderr=-2)
    shell.stdin.write(b"true; echo done $?\\n")
    await shell.stdout.readline()
    shell.stdin.close()
    await shell.wait()

asyncio.run(main())
"""
TASKSET = shutil.which("taskset")
# The floor of any asyncssh client: connect (same key, known_hosts, ciphers as otto),
# run `true` on an exec channel, close. argv: address port user key known_hosts.
RAW_ASYNCSSH = """\
import asyncio, sys
from otto.transports.sshlib import asyncssh

async def main(address, port, user, key, known_hosts):
    ciphers = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com"]
    async with asyncssh.connect(
        address, int(port), username=user, client_keys=[key], known_hosts=known_hosts,
        encryption_algs=ciphers,
    ) as conn:
        await conn.run("true", check=True)

asyncio.run(main(*sys.argv[1:]))
"""


def _once(argv: list[str], env: dict[str, str], pinned: bool) -> tuple[float, float]:
    """Wall and CPU milliseconds of one run of ``argv``."""
    if pinned:
        argv = [str(TASKSET), "-c", "0", *argv]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
    wall = (time.perf_counter() - started) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


class Table:
    """Samples of named commands, run interleaved."""

    def __init__(self, commands: dict[str, list[str]], env: dict[str, str]) -> None:
        self.commands = commands
        self.env = env
        self.modes = [False, True] if TASKSET else [False]
        self.wall: dict[tuple[str, bool], list[float]] = {}
        self.cpu: dict[tuple[str, bool], list[float]] = {}

    def measure(self, runs: int) -> None:
        for argv in self.commands.values():  # warm the file cache and .pyc files
            _once(argv, self.env, False)
        for _ in range(runs):
            for pinned in self.modes:
                for name, argv in self.commands.items():
                    wall, cpu = _once(argv, self.env, pinned)
                    self.wall.setdefault((name, pinned), []).append(wall)
                    self.cpu.setdefault((name, pinned), []).append(cpu)

    def best(self, name: str, pinned: bool = False) -> float:
        return min(self.wall[name, pinned])

    def median(self, name: str, pinned: bool = False) -> float:
        return statistics.median(self.wall[name, pinned])

    def print(self, floor: str) -> None:
        heads = ["unpinned", "pinned"][: len(self.modes)]
        print(f"{'':36}" + "".join(f"{h:^44}" for h in heads))
        sub = f"{'best':>8} {'median':>8} {'cpu':>8} {'x floor':>8}    "
        print(f"{'command':<36}" + sub * len(self.modes))
        for name in self.commands:
            cells = ""
            for pinned in self.modes:
                best, median = self.best(name, pinned), self.median(name, pinned)
                cpu = min(self.cpu[name, pinned])
                ratio = best / self.best(floor, pinned)
                cells += f"{best:8.1f} {median:8.1f} {cpu:8.1f} {ratio:7.2f}x    "
            print(f"{name:<36}{cells}")
        print(f"(ms; best and median wall, least CPU; ratio of best walls to {floor!r})\n")


def verdict(what: str, value: float, target: float, unit: str = " ms") -> str:
    mark = "OK" if value <= target else "OVER"
    return f"{what}: {value:.2f}{unit} (target <= {target:g}{unit}): {mark}"


def local_rows(runs: int, env: dict[str, str], tmp: Path) -> None:
    env = {**env, "OTTO_RESERVATIONS": f"sqlite:///{tmp / 'reservations.db'}"}
    line = ["host", "local", "run", "true"]
    commands = {
        "/bin/true": ["/bin/true"],
        "python3 -c pass": [PY, "-c", "pass"],
        "  python3 -c 'import asyncio'": [PY, "-c", "import asyncio"],
        "  floor: asyncio + a bash round trip": [PY, "-c", ASYNCIO_BASH],
        "otto host local run true": [PY, "-m", "otto", *line],
        "  the same through the Typer app": [PY, "-c", TYPER_MAIN, *line],
        "otto --help": [PY, "-m", "otto", "--help"],
        "otto test --help": [PY, "-m", "otto", "test", "--help"],
        "otto host --help": [PY, "-m", "otto", "host", "--help"],
        "otto --list-hosts": [PY, "-m", "otto", "--list-hosts"],
    }
    script = shutil.which("otto")
    if script is not None:
        commands["  the installed otto script"] = [script, *line]
    table = Table(commands, env)
    table.measure(runs)
    table.print("python3 -c pass")
    run_best = table.best("otto host local run true")
    print(verdict("otto host local run true, best wall", run_best, LOCAL_TARGET_MS))
    over_python = run_best - table.best("python3 -c pass")
    print(f"  of which above python3 -c pass: {over_python:.1f} ms")
    for pinned in table.modes:
        floor = table.best("  floor: asyncio + a bash round trip", pinned)
        best = table.best("otto host local run true", pinned)
        print(
            f"  {'pinned' if pinned else 'unpinned'}: the asyncio floor {floor:.1f} ms, "
            f"otto {best - floor:+.1f} ms above it ({best / floor:.2f}x); the target "
            f"leaves {LOCAL_TARGET_MS - floor:.1f} ms above that floor"
        )
    print(verdict("otto --help, best wall", table.best("otto --help"), HELP_TARGET_MS))
    print(verdict("otto test --help, best wall", table.best("otto test --help"), HELP_TARGET_MS))


def ssh_argv(record: dict[str, object], known_hosts: Path) -> list[str]:
    """``ssh`` to the lab host ``record`` as otto reaches it, without connection sharing."""
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-o",
        "ControlMaster=no",
        "-o",
        "ControlPath=none",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-i",
        str(record["key"]),
        "-p",
        str(record["port"]),
        "-l",
        str(record["user"]),
        str(record["address"]),
        "true",
    ]


def ssh_rows(runs: int, env: dict[str, str], tmp: Path) -> bool:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.lab import Lab
    from tests.lab.hosts import ssh_nodes

    async def run() -> bool:
        async with Lab(ssh_nodes(1)) as lab:
            record = next(r for r in lab.inventory() if r["name"] == "h1")
            entry = {k: v for k, v in record.items() if v is not None}
            entry["known_hosts"] = str(lab.known_hosts)
            lab_file = tmp / "lab.json"
            lab_file.write_text(json.dumps({"hosts": [entry]}))
            run_env = {
                **env,
                "OTTO_LAB": str(lab_file),
                "OTTO_RESERVATIONS": f"sqlite:///{tmp / 'reservations.db'}",
            }
            line = ["host", "h1", "run", "true"]
            ssh = ssh_argv(record, lab.known_hosts)
            raw = [str(record[k]) for k in ("address", "port", "user", "key")]
            commands = {
                "ssh -o ControlMaster=no h1 true": ssh,
                "  ssh, curve25519 key exchange": [
                    *ssh[:-2],
                    "-o",
                    "KexAlgorithms=curve25519-sha256",
                    *ssh[-2:],
                ],
                "otto host h1 run true": [PY, "-m", "otto", *line],
                "  the same through the Typer app": [PY, "-c", TYPER_MAIN, *line],
                "  floor: python3 + import asyncssh": [PY, "-c", "import otto.transports.sshlib"],
                "  floor: raw asyncssh connect + exec": [
                    PY,
                    "-c",
                    RAW_ASYNCSSH,
                    *raw,
                    str(lab.known_hosts),
                ],
            }
            table = Table(commands, run_env)
            await asyncio.to_thread(table.measure, runs)
            table.print("ssh -o ControlMaster=no h1 true")
            ok = True
            for pinned in table.modes:
                name = "pinned" if pinned else "unpinned"
                for how, stat in (("best", table.best), ("median", table.median)):
                    ratio = stat("otto host h1 run true", pinned) / stat(
                        "ssh -o ControlMaster=no h1 true", pinned
                    )
                    print(verdict(f"otto/ssh, {name}, {how}", ratio, SSH_TARGET, "x"))
                    ok = ok and (how != "best" or ratio <= SSH_TARGET)
                raw_best = table.best("  floor: raw asyncssh connect + exec", pinned)
                otto_best = table.best("otto host h1 run true", pinned)
                print(
                    f"  {name}: otto is {otto_best / raw_best:.2f}x the raw asyncssh program "
                    f"({otto_best - raw_best:+.1f} ms); that program alone is "
                    f"{raw_best / table.best('ssh -o ControlMaster=no h1 true', pinned):.2f}x ssh"
                )
            return ok

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--ssh", action="store_true", help="also the SSH row (as root)")
    args = parser.parse_args()
    env = {**os.environ, "COLUMNS": "100"}
    for name in ("OTTO_LAB", "OTTO_LOG", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)  # .pyc files are written by the warm-up, as an install has them
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        local_rows(args.runs, env, Path(tmp))
        if args.ssh:
            print()
            ssh_rows(args.runs, env, Path(tmp))


if __name__ == "__main__":
    main()
