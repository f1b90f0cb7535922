"""What one monitor round costs the watched host, beside node_exporter serving one scrape.

    python3 bench/bench_footprint.py [--quick]     (as root: starts its own sshd lab)

Both sides are measured on the target, from /proc, in the same run:

- otto: a Collector polling one lab SSH host (its own sshd, in a network
  namespace of this machine). The target's side of a round is the shell of the
  monitor's session and the sshd processes serving that connection (``sshd:
  user [priv]`` and ``sshd: user@notty``), plus the shell's finished children
  (``df``), before and after many rounds. Processes started per round are the
  collector's own measure
  (``Collector.round_costs``: the last PID handed out in the host's PID
  namespace before and after the round; an upper bound that also counts
  whatever else this machine starts meanwhile, so the least over the df and
  the other rounds is shown beside the mean).
- node_exporter: ``prometheus-node-exporter`` started here on a free loopback
  port (same machine and kernel, so the same /proc), scraped over one
  keep-alive HTTP connection; its CPU time (all threads) before and after
  many scrapes. Once with its default collectors (the floor named in issue 12),
  and once with only those that read what otto reads (cpu, meminfo, loadavg,
  netdev, diskstats, filesystem).

Batches of otto rounds and of scrapes alternate; each figure is the best batch
(the machine is shared). CPU time is each thread's time on a CPU from
/proc/PID/task/*/schedstat (nanoseconds), and for df, which has ended by then,
its parent's cutime + cstime (clock ticks, usually 10 ms: hence batches of
hundreds of rounds). Nothing is pinned to a CPU.

Targets (issue 12): processes per round <= 2, and 0 on rounds without df; CPU
on the target per round <= node_exporter's per scrape (default collectors).
"""

from __future__ import annotations

import asyncio
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from otto import RemoteHost
from otto.monitor import Collector, MonitorTarget
from otto.monitor.parsers import DEFAULT_PARSERS
from otto.monitor.shell_probe import ShellProbe
from tests.lab import Lab
from tests.lab.hosts import ssh_nodes

QUICK = "--quick" in sys.argv
BATCHES = 3 if QUICK else 5
ROUNDS = 200 if QUICK else 600
DF_EVERY = 12
TICK = os.sysconf("SC_CLK_TCK")
NODE_EXPORTER = shutil.which("prometheus-node-exporter") or shutil.which("node_exporter")
SAME_READS = ["cpu", "meminfo", "loadavg", "netdev", "diskstats", "filesystem"]


def cpu_seconds(pid: int, children: bool = False) -> float:
    """CPU seconds of ``pid``: its threads' time on a CPU, in nanoseconds from schedstat.

    With ``children``, also what its finished (reaped) children used: cutime +
    cstime, in clock ticks (those children are gone, their schedstat with them).
    """
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as stat:
                total += int(stat.read().split()[0])
        except FileNotFoundError:
            continue  # a thread that just ended
    seconds = total / 1e9
    if children:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        seconds += (int(fields[13]) + int(fields[14])) / TICK
    return seconds


def parent_and_name(pid: int) -> tuple[int, str]:
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        text = stat.read()
    name = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    return int(text.rsplit(")", 1)[1].split()[1]), name


def session_processes(shell_pid: int) -> list[tuple[int, str]]:
    """The shell and the sshd processes above it that serve this one connection."""
    chain = [(shell_pid, parent_and_name(shell_pid)[1])]
    parent = parent_and_name(shell_pid)[0]
    while parent > 1:
        ppid, name = parent_and_name(parent)
        if not name.startswith("sshd: ") or "[listener]" in name or " -D" in name:
            break  # the listening sshd: shared by every connection, idle between them
        chain.append((parent, name))
        parent = ppid
    return chain


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NodeExporter:
    """A node_exporter process on a free loopback port, scraped over one connection."""

    def __init__(self, collectors: list[str] | None) -> None:
        assert NODE_EXPORTER is not None
        self.port = free_port()
        argv = [NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{self.port}"]
        if collectors is not None:
            argv += ["--collector.disable-defaults"] + [f"--collector.{c}" for c in collectors]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("node_exporter did not start") from None
                time.sleep(0.05)
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self.size = 0

    def scrape(self) -> None:
        self.conn.request("GET", "/metrics")
        response = self.conn.getresponse()
        body = response.read()
        assert response.status == 200
        self.size = len(body)

    def batch(self, n: int) -> float:
        """CPU seconds per scrape over ``n`` scrapes."""
        before = cpu_seconds(self.proc.pid)
        for _ in range(n):
            self.scrape()
        return (cpu_seconds(self.proc.pid) - before) / n

    def close(self) -> None:
        self.conn.close()
        self.proc.terminate()
        self.proc.wait(10)


class Watched:
    """One Collector on one lab host, and the processes that serve it there."""

    def __init__(self, lab: Lab, target: RemoteHost | MonitorTarget, df_every: int) -> None:
        self.host = target.host if isinstance(target, MonitorTarget) else target
        self.collector = Collector([target], interval=60.0, df_every=df_every)
        self.df_every = df_every
        self.chain: list[tuple[int, str]] = []
        self.shell_pid = 0
        self.counts: list[tuple[int, int | None]] = []
        self.batches: list[dict[str, float]] = []

    async def start(self) -> None:
        for _ in range(2):
            await self.collector.poll_round()
        probe = self.collector._tracks[self.host.name].probes[0]
        assert isinstance(probe, ShellProbe) and probe.session is not None
        self.shell_pid = int((await probe.session.run("echo $$")).output)
        self.chain = session_processes(self.shell_pid)

    def cpu(self) -> dict[str, float]:
        return {
            name.split()[0] if pid == self.shell_pid else name: cpu_seconds(
                pid, children=(pid == self.shell_pid)
            )
            for pid, name in self.chain
        }

    async def batch(self, n: int) -> float:
        """Target CPU seconds per round over ``n`` rounds (kept by process in ``batches``)."""
        before = self.cpu()
        for _ in range(n):
            index = self.collector.rounds_run
            results = await self.collector.poll_round()
            outcome = results[self.host.name]
            assert outcome.up, outcome.error
            last = self.collector.round_costs()[self.host.name].last
            self.counts.append((index, None if last is None else last.processes))
        after = self.cpu()
        per = {name: (after[name] - before[name]) / n for name in after}
        self.batches.append(per)
        return sum(per.values())

    def best(self) -> dict[str, float]:
        return min(self.batches, key=lambda per: sum(per.values()))

    def processes(self, df: bool) -> list[int]:
        return [c for i, c in self.counts if c is not None and (i % self.df_every == 0) == df]

    async def close(self) -> None:
        await self.collector.stop()
        await self.host.close()


def lab_host(lab: Lab) -> RemoteHost:
    spec = lab.host("h1")
    return RemoteHost(
        spec.address,
        user=spec.user,
        key=spec.key_path,
        port=spec.port,
        known_hosts=lab.known_hosts,
        name="h1",
    )


async def main() -> int:
    if NODE_EXPORTER is None:
        print("prometheus-node-exporter is not installed: run scripts/install-system-deps")
        return 1
    async with Lab(ssh_nodes(1)) as lab:
        now = Watched(lab, lab_host(lab), DF_EVERY)
        # As the monitor read a host before: every command in a subshell of its own
        # with a real cat (a trailing blank keeps a command from being read by
        # builtins), df on every round.
        before_table = {f"{c} ": p for c, p in DEFAULT_PARSERS.items()}
        before = Watched(
            lab, MonitorTarget(lab_host(lab), parsers=before_table, replace_defaults=True), 1
        )
        exporters = {"default": NodeExporter(None), "same reads": NodeExporter(SAME_READS)}
        try:
            await now.start()
            await before.start()
            print(f"lab: 1 sshd host ({'namespace' if lab.uses_netns else 'loopback'})")
            print("target processes measured: " + "; ".join(f"{p} {n}" for p, n in now.chain))
            for exporter in exporters.values():
                exporter.batch(5)  # warm: first scrapes set up caches and goroutines
            theirs: dict[str, list[float]] = {name: [] for name in exporters}
            for _ in range(BATCHES):
                await now.batch(ROUNDS)
                for name, exporter in exporters.items():
                    theirs[name].append(exporter.batch(ROUNDS))
                await before.batch(ROUNDS // 4)
        finally:
            await now.close()
            await before.close()
            for exporter in exporters.values():
                exporter.close()

    costs = now.collector.round_costs()["h1"]
    df_counts, other_counts = now.processes(True), now.processes(False)
    best = now.best()
    mine = sum(best.values())
    old = sum(before.best().values())
    floor = min(theirs["default"])
    same = min(theirs["same reads"])
    ok_cpu = mine <= floor
    ok_df = bool(df_counts) and min(df_counts) <= 2
    ok_other = bool(other_counts) and min(other_counts) == 0
    print(
        f"rounds: {len(now.counts)} (df every {DF_EVERY}th), batches of {ROUNDS}, "
        f"best of {BATCHES}; unpinned"
    )
    print(
        f"processes per round with df:    least {min(df_counts)}, mean "
        f"{statistics.mean(df_counts):.2f} over {len(df_counts)} rounds "
        f"(target <= 2: {'ok' if ok_df else 'MISSED'})"
    )
    print(
        f"processes per round without df: least {min(other_counts)}, mean "
        f"{statistics.mean(other_counts):.2f} over {len(other_counts)} rounds "
        f"(target 0: {'ok' if ok_other else 'MISSED'})"
    )
    print(
        f"per round: {costs.seconds / costs.rounds * 1e3:.2f} ms, "
        f"{costs.received / costs.rounds:,.0f} bytes received"
    )
    print(
        f"target CPU per round   otto {mine * 1e3:6.3f} ms   node_exporter scrape "
        f"{floor * 1e3:6.3f} ms ({exporters['default'].size:,} bytes)   ratio "
        f"{mine / floor:5.2f} (target <= 1: {'ok' if ok_cpu else 'MISSED'})"
    )
    print(
        f"                       otto {mine * 1e3:6.3f} ms   node_exporter, same reads only "
        f"{same * 1e3:6.3f} ms ({exporters['same reads'].size:,} bytes)   ratio {mine / same:5.2f}"
    )
    print(
        "   by process (best batch): "
        + "; ".join(f"{name} {cpu * 1e3:.3f} ms" for name, cpu in best.items())
    )
    print(
        f"before (a subshell and a program per command, df every round): "
        f"{old * 1e3:.3f} ms per round, processes least {min(before.processes(True))} "
        f"mean {statistics.mean(before.processes(True)):.2f}"
    )
    print(
        "otto batches (ms): "
        + " ".join(f"{sum(b.values()) * 1e3:.3f}" for b in now.batches)
        + "   node_exporter: "
        + " ".join(f"{c * 1e3:.3f}" for c in theirs["default"])
    )
    print(f"load {os.getloadavg()[0]:.2f}")
    return 0 if ok_cpu and ok_df and ok_other else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
