"""The monitor at 200, 500 and 1,000 SSH hosts on this machine, and a fan-out ``run`` over 1,000.

    python3 bench/bench_monitor_scale.py [--quick] [--sizes 200,500,1000] [--seconds 30]
                                         [--no-fanout] [--no-floor]
    python3 bench/bench_monitor_scale.py --soak 10      (as root: the netns lab, real link cuts)

With OTTO_BENCH_PARSE_TIME=1, the CPU time of parsing (``ShellProbe.parse``) is
printed per host-round too. With OTTO_BENCH_PROFILE=FILE, pyinstrument's report of
the measured rounds goes to FILE.txt (of the last size run); with a FILE ending in
``.pstats``, cProfile's stats go to FILE and their top lines to FILE.txt. With
OTTO_BENCH_TRACEMALLOC=DEPTH, the allocations holding the most memory, per host.

The targets are lightweight SSH servers in one separate process
(``bench/fake_targets.py``): asyncssh on a few loopback ports, whose shells answer
the monitor's round function with a fixed snapshot of this machine's ``/proc``
printed once by the real function. The controller does all its real work: key
exchange, channels, framing, the same bytes to parse each round.

1. ``otto monitor``'s collector at 1 s over N hosts, each size in a fresh process:
   - CPU: the controller process's user+system seconds over the measured rounds,
     per host-round (target <= 0.2 ms);
   - RSS: the controller's resident memory, less what it had before the hosts
     were made, per host, with every host's history full (720 points per metric,
     pre-filled after the first answer) (target <= 0.3 MB);
   - lateness: how long after it was due each round started, p50 and p99
     (target p99 <= 50 ms at 1,000 hosts); and rounds with a host down.
2. ``run_on_all_hosts("true")`` (what ``otto host 'n.*' run true`` does) over 1,000
   hosts, cold (connect, shell, run) and warm (the sessions open), beside raw
   asyncssh with the same concurrency (all at once): ``connect`` + ``conn.run``,
   then ``conn.run`` on the open connections (targets: cold <= 1.1x, warm <= 1.15x).
3. ``--soak MINUTES``: 20 lab SSH hosts at 1 s with h1-h3 cut for 8 s every 30 s:
   rounds lost by the reachable hosts (target 0) and round lateness p50/p99.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PORTS = 4
HISTORY = 720


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds() -> tuple[float, float]:
    """User and system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the children ----------------------------------------------------------------------


async def monitor_child(n: int, ports: list[int], folder: Path, seconds: int) -> dict[str, float]:
    from otto import RemoteHost
    from otto.monitor import Collector
    from otto.transports import ssh  # noqa: F401 (asyncssh: its import is not per host)

    if os.environ.get("OTTO_BENCH_TRACEMALLOC"):
        import tracemalloc

        tracemalloc.start(int(os.environ["OTTO_BENCH_TRACEMALLOC"]))
    parse_seconds = _time_parse()
    gc.collect()
    before = rss_mb()
    known = folder / "known_hosts"  # one object, as a lab's hosts share the default one
    hosts = [
        RemoteHost(
            "127.0.0.1",
            port=ports[i % len(ports)],
            user="bench",
            known_hosts=known,
            name=f"n{i}",
            connect_timeout=120.0,
        )
        for i in range(n)
    ]
    collector = Collector(hosts, interval=1.0, history=HISTORY)
    stream = collector.subscribe()
    began = time.monotonic()
    await collector.start()
    try:
        while True:  # every host answers in one round
            update = await asyncio.wait_for(anext(stream), 180)
            if update["type"] == "round":
                states = update["hosts"]
                assert isinstance(states, dict)
                if len(states) == n and all(s["up"] for s in states.values()):
                    break
        connected = time.monotonic() - began
        tracks = collector._tracks.values()
        now = time.time()
        times = array("d", (now - HISTORY + j for j in range(HISTORY)))
        for track in tracks:  # the history full: 720 points of every metric
            history = track.series
            # Into the rings the first answers allocated (at their full length):
            # new arrays would leave the old ones' memory behind in the RSS.
            history.times[:] = times
            if getattr(history, "slots", HISTORY) < HISTORY:
                history._grow()  # what the second round does
            width = len(history.names)
            for metric, value in track.latest.items():
                history.rows[history.index[metric] :: width] = (
                    array(history.rows.typecode, (value,)) * HISTORY
                )
            history.head, history.size = 0, HISTORY
            for j in range(HISTORY):
                track.states.append(times[j], True, "")
        gc.collect()
        gc.freeze()  # as otto monitor does once its hosts have connected
        for _ in range(3):  # settle after the pre-fill
            await _next_round(stream)
        pauses: list[float] = []
        gc.callbacks.append(_gc_timer(pauses))
        profiler = _profiler()
        skipped = collector.rounds_skipped
        parse_seconds[0] *= 0.0  # NaN stays NaN: not timed
        first_round, cpu0, wall0 = collector.rounds_run, cpu_seconds(), time.monotonic()
        down = 0
        for _ in range(seconds):
            states = await _next_round(stream)
            down += sum(1 for s in states.values() if not s["up"])
        cpu1, wall1 = cpu_seconds(), time.monotonic()
        parsing = parse_seconds[0]
        if profiler is not None:
            profiler.stop()
            Path(os.environ["OTTO_BENCH_PROFILE"] + ".txt").write_text(
                profiler.output_text(unicode=False, color=False, show_all=False)
            )
        measured = collector.rounds_run - first_round
        lateness = collector.round_lateness()[-measured:]
        after = rss_mb()
        if os.environ.get("OTTO_BENCH_TRACEMALLOC"):
            _print_allocations(n)
    finally:
        await collector.stop()
        await asyncio.gather(*(h.close() for h in hosts))
    return {
        "hosts": n,
        "connected_s": connected,
        "rounds": measured,
        "wall_s": wall1 - wall0,
        "cpu_ms_per_host_round": (sum(cpu1) - sum(cpu0)) / (measured * n) * 1e3,
        "user_ms_per_host_round": (cpu1[0] - cpu0[0]) / (measured * n) * 1e3,
        "sys_ms_per_host_round": (cpu1[1] - cpu0[1]) / (measured * n) * 1e3,
        "rss_mb_per_host": (after - before) / n,
        "rss_mb": after,
        "late_p50_ms": percentile(lateness, 0.5) * 1e3,
        "late_p99_ms": percentile(lateness, 0.99) * 1e3,
        "late_max_ms": max(lateness, default=float("nan")) * 1e3,
        "skipped": collector.rounds_skipped - skipped,
        "gc_max_ms": max(pauses, default=0.0) * 1e3,
        "gc_ms_per_host_round": sum(pauses) / (measured * n) * 1e3,
        "parse_ms_per_host_round": parsing / (measured * n) * 1e3,
        "host_rounds_down": down,
    }


def _time_parse() -> list[float]:
    """With $OTTO_BENCH_PARSE_TIME set, time ``ShellProbe.parse`` (thread CPU seconds,
    summed into the list's one item; the clock's own calls add to the CPU figure),
    else NaN."""
    from otto.monitor.shell_probe import ShellProbe

    spent = [0.0]
    if not os.environ.get("OTTO_BENCH_PARSE_TIME"):
        spent[0] = float("nan")
        return spent
    parse = ShellProbe.parse
    clock = time.thread_time

    def timed(self: ShellProbe, *args: Any, **kwargs: Any) -> Any:
        began = clock()
        try:
            return parse(self, *args, **kwargs)
        finally:
            spent[0] += clock() - began

    ShellProbe.parse = timed  # type: ignore[method-assign]
    return spent


def _print_allocations(n: int) -> None:
    """The 30 lines (of the traceback depth asked for) holding the most memory, per host."""
    import tracemalloc

    snapshot = tracemalloc.take_snapshot()
    total = sum(s.size for s in snapshot.statistics("filename"))
    sys.stderr.write(f"tracemalloc: {total / n / 1024:.1f} KiB per host traced\n")
    for stat in snapshot.statistics("traceback")[:30]:
        where = " <- ".join(f"{f.filename.split('/')[-1]}:{f.lineno}" for f in stat.traceback)
        sys.stderr.write(
            f"{stat.size / n / 1024:8.1f} KiB/host {stat.count / n:7.1f}/host  {where}\n"
        )


def _gc_timer(pauses: list[float]) -> Any:
    """A ``gc.callbacks`` entry that adds each collection's seconds to ``pauses``."""
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - started[0])

    return callback


def _profiler() -> Any:
    """A running pyinstrument profiler of the measured rounds, with $OTTO_BENCH_PROFILE set
    (a file for its text report), else None."""
    if not os.environ.get("OTTO_BENCH_PROFILE"):
        return None
    if os.environ["OTTO_BENCH_PROFILE"].endswith(".pstats"):
        import cProfile

        return _CProfile(cProfile.Profile())
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005, async_mode="disabled")
    profiler.start()
    return profiler


class _CProfile:
    """cProfile behind pyinstrument's start/stop/output_text (its stats dumped to the file)."""

    def __init__(self, profile: Any) -> None:
        self.profile = profile
        profile.enable()

    def stop(self) -> None:
        self.profile.disable()
        self.profile.dump_stats(os.environ["OTTO_BENCH_PROFILE"])

    def output_text(self, **_: object) -> str:
        import io
        import pstats

        out = io.StringIO()
        pstats.Stats(self.profile, stream=out).sort_stats("tottime").print_stats(40)
        return out.getvalue()


async def _next_round(stream: object) -> dict[str, dict[str, object]]:
    while True:
        update = await asyncio.wait_for(anext(stream), 30)  # type: ignore[call-overload]
        if update["type"] == "round":
            states = update["hosts"]
            assert isinstance(states, dict)
            return states


async def raw_child(n: int, ports: list[int], folder: Path, seconds: int) -> dict[str, float]:
    """The floor: raw asyncssh, one shell channel per host, the same framed call of the
    same round function each second, read to its end marker; nothing parsed or kept."""
    import asyncssh

    from otto.framing import command_bytes
    from otto.monitor.parsers import DEFAULT_PARSERS
    from otto.monitor.shell_probe import DF_COMMAND, monitor_script
    from otto.transports.ssh import _CIPHERS  # otto's cipher order: the same crypto cost

    separator, function = "__otto_raw_sep__", "__otto_raw_sep__m"
    script = monitor_script([(c, c == DF_COMMAND) for c in DEFAULT_PARSERS], separator, function)
    known = str(folder / "known_hosts")
    conns = await asyncio.gather(
        *(
            asyncssh.connect(
                "127.0.0.1",
                port=ports[i % len(ports)],
                username="bench",
                known_hosts=known,
                client_keys=None,
                agent_path=None,
                encryption_algs=_CIPHERS,
            )
            for i in range(n)
        )
    )
    shells = await asyncio.gather(*(c.create_process(encoding=None) for c in conns))
    seq = 0

    async def one(shell: asyncssh.SSHClientProcess[bytes], text: str) -> int:
        shell.stdin.write(command_bytes(text, "rawtoken", seq))
        return len(await shell.stdout.readuntil(b"k\x1f"))

    await asyncio.gather(*(one(s, f"{script}\n{function} 1") for s in shells))
    loop = asyncio.get_running_loop()
    start = loop.time() + 1
    cpu0 = cpu_seconds()
    for k in range(seconds):
        await asyncio.sleep(max(0.0, start + k - loop.time()))
        seq += 1
        call = f"{function} {1 if k % 12 == 0 else 0}"
        await asyncio.gather(*(one(s, call) for s in shells))
    cpu1 = cpu_seconds()
    for conn in conns:
        conn.close()
    return {"cpu_ms_per_host_round": (sum(cpu1) - sum(cpu0)) / (seconds * n) * 1e3}


async def fanout_child(n: int, ports: list[int], folder: Path) -> dict[str, float]:
    import asyncssh

    from otto.fanout import run_on_all_hosts
    from otto.lab import Lab, use_lab
    from otto.lab.model import HostSpec

    known = folder / "known_hosts"
    use_lab(
        Lab(
            [
                HostSpec(
                    name=f"n{i}",
                    address="127.0.0.1",
                    port=ports[i % len(ports)],
                    user="bench",
                    known_hosts=known,
                    connect_timeout=120.0,
                )
                for i in range(n)
            ]
        )
    )
    from otto.lab import current_lab

    async def otto_round() -> float:
        began = time.perf_counter()
        results = await run_on_all_hosts("true", pattern=r"^n\d+$")
        took = time.perf_counter() - began
        bad = [k for k, r in results.items() if isinstance(r, BaseException) or not r.is_ok]
        assert not bad, (bad[:3], results[bad[0]])
        return took

    conns: list[asyncssh.SSHClientConnection] = []

    async def raw_cold() -> float:
        async def one(i: int) -> None:
            conn = await asyncssh.connect(
                "127.0.0.1",
                port=ports[i % len(ports)],
                username="bench",
                known_hosts=str(known),
                client_keys=None,
                agent_path=None,
            )
            conns.append(conn)
            done = await conn.run("true")
            assert done.exit_status == 0

        began = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return time.perf_counter() - began

    async def raw_warm() -> float:
        began = time.perf_counter()
        done = await asyncio.gather(*(c.run("true") for c in conns))
        took = time.perf_counter() - began
        assert all(d.exit_status == 0 for d in done)
        return took

    mine_cold = await otto_round()
    theirs_cold = await raw_cold()
    mine_warm, theirs_warm = [], []
    for _ in range(5):
        mine_warm.append(await otto_round())
        theirs_warm.append(await raw_warm())
    for conn in conns:
        conn.close()
    await current_lab().close()
    return {
        "hosts": n,
        "otto_cold_s": mine_cold,
        "raw_cold_s": theirs_cold,
        "otto_warm_s": min(mine_warm),
        "raw_warm_s": min(theirs_warm),
        "otto_warm_median_s": statistics.median(mine_warm),
        "raw_warm_median_s": statistics.median(theirs_warm),
    }


async def soak(minutes: float) -> int:
    """20 lab SSH hosts at 1 s; h1-h3 cut (packets dropped) for 8 s every 30 s.

    Prints the rounds lost by the 17 reachable hosts (target 0) and the round
    lateness p50/p99 (target p99 <= 50 ms). Needs root (the netns lab).
    """
    sys.path.insert(0, str(HERE.parent))
    from otto import RemoteHost
    from otto.monitor import Collector
    from tests.lab import Lab
    from tests.lab.hosts import ssh_nodes

    cut = ("h1", "h2", "h3")
    async with Lab(ssh_nodes(20)) as lab:
        hosts = []
        for i in range(1, 21):
            spec = lab.host(f"h{i}")
            hosts.append(
                RemoteHost(
                    spec.address,
                    user=spec.user,
                    key=spec.key_path,
                    port=spec.port,
                    known_hosts=lab.known_hosts,
                    name=spec.name,
                    connect_timeout=5.0,
                )
            )
        collector = Collector(hosts, interval=1.0, history=3600)
        stream = collector.subscribe()
        lost = dict.fromkeys((h.name for h in hosts if h.name not in cut), 0)
        rounds = cuts = 0
        async with collector:
            while True:  # every reachable host answering
                states = await _next_round(stream)
                if all(states.get(h, {}).get("up") for h in lost):
                    break
            first = collector.rounds_run
            skipped = collector.rounds_skipped
            began = time.monotonic()
            while time.monotonic() - began < minutes * 60:
                if (time.monotonic() - began) % 30 < 1 and not lab.is_cut(cut[0]):
                    await asyncio.gather(*(lab.cut_network(name) for name in cut))
                    cuts += 1
                    cut_at = time.monotonic()
                elif lab.is_cut(cut[0]) and time.monotonic() - cut_at >= 8:
                    await asyncio.gather(*(lab.restore_network(name) for name in cut))
                states = await _next_round(stream)
                rounds += 1
                for name in lost:
                    lost[name] += not states[name]["up"]
            if lab.is_cut(cut[0]):
                await asyncio.gather(*(lab.restore_network(name) for name in cut))
            measured = collector.rounds_run - first
            lateness = collector.round_lateness()[-measured:]
            skipped = collector.rounds_skipped - skipped
        await asyncio.gather(*(h.close() for h in hosts))
    print(
        f"soak: {minutes:g} min, 20 SSH hosts at 1 s, h1-h3 cut for 8 s {cuts} times:"
        f" {rounds} rounds, {skipped} skipped; rounds lost by the 17 reachable hosts:"
        f" {sum(lost.values())} (target 0); lateness p50 {percentile(lateness, 0.5) * 1e3:.1f} ms,"
        f" p99 {percentile(lateness, 0.99) * 1e3:.1f} ms (target <= 50 ms)"
    )
    return 0 if not sum(lost.values()) and percentile(lateness, 0.99) <= 0.05 else 1


# --- the parent ------------------------------------------------------------------------


def child(args: list[str], env: dict[str, str]) -> dict[str, float]:
    ran = subprocess.run(
        [sys.executable, "-W", "ignore", __file__, *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if ran.returncode != 0:
        sys.stderr.write(ran.stderr[-3000:])
        raise SystemExit(f"bench child {args[:2]} failed ({ran.returncode})")
    result: dict[str, float] = json.loads(ran.stdout.strip().splitlines()[-1])
    return result


def main() -> int:
    argv = sys.argv[1:]
    if argv and argv[0] == "--child":
        kind, n, folder = argv[1], int(argv[2]), Path(argv[3])
        ports = [int(p) for p in argv[4].split(",")]
        if kind == "monitor":
            result = asyncio.run(monitor_child(n, ports, folder, int(argv[5])))
        elif kind == "raw":
            result = asyncio.run(raw_child(n, ports, folder, int(argv[5])))
        else:
            result = asyncio.run(fanout_child(n, ports, folder))
        print(json.dumps(result))
        return 0
    if "--soak" in argv:
        return asyncio.run(soak(float(argv[argv.index("--soak") + 1])))
    quick = "--quick" in argv
    sizes = [200, 500, 1000] if not quick else [200]
    seconds = 10 if quick else 30
    if "--sizes" in argv:
        sizes = [int(s) for s in argv[argv.index("--sizes") + 1].split(",")]
    if "--seconds" in argv:
        seconds = int(argv[argv.index("--seconds") + 1])
    fanout_hosts = 200 if quick else 1000
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit[1], limit[1]))
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    with tempfile.TemporaryDirectory(prefix="otto-scale-") as tmp:
        folder = Path(tmp)
        server = subprocess.Popen(
            [sys.executable, "-W", "ignore", str(HERE / "fake_targets.py"), "--ports", str(PORTS),
             "--dir", str(folder)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )  # fmt: skip
        try:
            assert server.stdout is not None
            ready = server.stdout.readline().split()
            assert ready and ready[0] == "ready", ready
            ports = ",".join(ready[1:])
            print(
                f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (other"
                f" work shares the cores); targets: one process, {PORTS} loopback ports"
            )
            print(
                f"1. the collector at 1 s, history full ({HISTORY} points),"
                f" {seconds} rounds measured"
            )
            print(
                "   hosts  CPU ms/host-round (user+sys)  RSS MB/host  (RSS MB)  late p50 ms"
                "  late p99 ms  late max ms  skipped  host-rounds down  (connect s)"
                "  gc max ms  (gc ms/host-round)  (parse ms/host-round)"
            )
            ok = True
            floors = {}
            for n in sizes:
                r = child(["--child", "monitor", str(n), tmp, ports, str(seconds)], env)
                if "--no-floor" not in argv:
                    floor = child(["--child", "raw", str(n), tmp, ports, str(seconds)], env)
                    floors[n] = floor["cpu_ms_per_host_round"]
                ok = ok and r["cpu_ms_per_host_round"] <= 0.2 and r["rss_mb_per_host"] <= 0.3
                if n >= 1000:
                    ok = ok and r["late_p99_ms"] <= 50
                print(
                    f"   {n:5d}  {r['cpu_ms_per_host_round']:6.3f}"
                    f" ({r['user_ms_per_host_round']:.3f}+{r['sys_ms_per_host_round']:.3f})"
                    f"       {r['rss_mb_per_host']:11.3f}"
                    f"  {r['rss_mb']:8.0f}  {r['late_p50_ms']:11.1f}  {r['late_p99_ms']:11.1f}"
                    f"  {r['late_max_ms']:11.1f}  {r['skipped']:7.0f}"
                    f"  {r['host_rounds_down']:16.0f}"
                    f"  {r['connected_s']:11.1f}  {r['gc_max_ms']:10.1f}"
                    f"  {r['gc_ms_per_host_round']:17.4f}"
                    f"  {r['parse_ms_per_host_round']:20.4f}"
                )
            print("   targets: CPU <= 0.2 ms/host-round, RSS <= 0.3 MB/host, p99 <= 50 ms at 1,000")
            print(
                "   floor, raw asyncssh (a shell channel per host, the same framed call and"
                " cipher, read to its marker, nothing parsed or kept), CPU ms/host-round: "
                + ", ".join(f"{n}: {ms:.3f}" for n, ms in floors.items())
            )
            if "--no-fanout" in argv:
                print(f"load average at the end: {os.getloadavg()[0]:.1f}")
                return 0 if ok else 1
            f = child(["--child", "fanout", str(fanout_hosts), tmp, ports], env)
            cold = f["otto_cold_s"] / f["raw_cold_s"]
            warm = f["otto_warm_s"] / f["raw_warm_s"]
            ok = ok and cold <= 1.1 and warm <= 1.15
            print(
                f"2. run_on_all_hosts('true') over {fanout_hosts} hosts"
                " vs raw asyncssh, all at once"
            )
            print(
                f"   cold: otto {f['otto_cold_s']:.2f} s  raw connect+run {f['raw_cold_s']:.2f} s"
                f"  ratio {cold:.2f} (target <= 1.1: {'ok' if cold <= 1.1 else 'MISSED'})"
            )
            print(
                f"   warm: otto {f['otto_warm_s'] * 1e3:.0f} ms"
                f"  raw run {f['raw_warm_s'] * 1e3:.0f} ms"
                f"  ratio {warm:.2f} (target <= 1.15: {'ok' if warm <= 1.15 else 'MISSED'})"
                f"  (medians {f['otto_warm_median_s'] * 1e3:.0f}"
                f" / {f['raw_warm_median_s'] * 1e3:.0f} ms)"
            )
            print(f"load average at the end: {os.getloadavg()[0]:.1f}")
        finally:
            server.terminate()
            server.wait()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
