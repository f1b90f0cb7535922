"""Metric parsers: one command's output in, metrics out. Pure functions.

A parser is called as ``parser(text, t, previous)``: ``text`` is what the command
printed, ``t`` the monotonic time it was taken, and ``previous`` the ``Sample``
(raw counters and time) the same parser returned for the same host last round,
or None. It returns ``Parsed``: the metrics, plus the raw counters to hand back
next round so that counters can become rates.

Metric names are dotted (``cpu.percent``). A metric about one item of several,
a core, an interface, a disk or a mount, carries the item in brackets:
``cpu.percent[cpu0]``, ``net.rx_bytes_per_s[eth0]``, ``disk.used_percent[/boot]``.

Counters that go down between two readings are either a wrap (a 32- or 64-bit
counter overflowed) or a reset (the host rebooted, a driver reloaded). A wrap
is assumed only when it implies a small increase (at most 1/8 of the counter's
range); anything else is a reset, and no rate is given for that round.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol

__all__ = [
    "CORE_METRICS",
    "DEFAULT_PARSERS",
    "FREE_PARSERS",
    "MetricParser",
    "Parsed",
    "Sample",
    "counter_delta",
    "gauge_parser",
    "is_whole_disk",
    "parse_df",
    "parse_diskstats",
    "parse_free_bytes",
    "parse_free_kib",
    "parse_loadavg",
    "parse_meminfo",
    "parse_net_dev",
    "parse_proc_stat",
]

CORE_METRICS = (
    "cpu.percent",
    "mem.used_bytes",
    "mem.total_bytes",
    "mem.percent",
    "load.1m",
    "net.rx_bytes_per_s",
    "net.tx_bytes_per_s",
    "disk.read_bytes_per_s",
    "disk.write_bytes_per_s",
    "disk.used_percent",
)
"""The metrics every Linux host gives with the default parsers (SPEC §5)."""

SECTOR_BYTES = 512
"""/proc/diskstats counts 512-byte sectors whatever the device's real sector size."""


@dataclass(frozen=True, slots=True)
class Sample:
    """The raw counters of one reading and when it was taken (monotonic seconds)."""

    t: float
    counters: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parser's answer: metrics now, and counters to compute rates next round."""

    metrics: dict[str, float]
    counters: dict[str, int] = field(default_factory=dict)


class MetricParser(Protocol):
    """Turns one command's output into metrics."""

    def __call__(self, text: str, t: float, previous: Sample | None, /) -> Parsed:
        """Parse ``text`` taken at monotonic time ``t``.

        Args:
            text: the command's output.
            t: monotonic seconds when the output was taken.
            previous: what this parser returned for this host last time, as a Sample.
        """
        ...


def gauge_parser(parse: Callable[[str], Mapping[str, float]]) -> MetricParser:
    """Wrap a function of the output alone (no rates) as a ``MetricParser``.

    Example: ``gauge_parser(lambda text: {"gpu.percent": float(text)})``.
    """

    def parser(text: str, t: float, previous: Sample | None, /) -> Parsed:
        return Parsed(dict(parse(text)))

    parser.__name__ = getattr(parse, "__name__", "gauge_parser")
    return parser


def counter_delta(current: int, previous: int) -> int | None:
    """How much a counter grew, allowing for a 32- or 64-bit wrap; None after a reset.

    Returns:
        The increase, or None when the counter went down by more than a wrap explains.
    """
    if current >= previous:
        return current - previous
    for width in (1 << 32, 1 << 64):
        if previous < width:
            wrapped = current + width - previous
            if wrapped <= width >> 3:
                return wrapped
            return None
    return None


def _per_second(now: int, was: int | None, dt: float) -> float | None:
    """The rate of a counter read as ``was`` then ``now``, ``dt`` seconds apart.

    (The net and disk parsers inline its first case.)
    """
    if was is None:
        return None
    if now >= was:  # the usual case, checked first: this runs per counter per round
        return (now - was) / dt
    delta = counter_delta(now, was)
    return None if delta is None else delta / dt


def _before(previous: Sample | None, t: float) -> tuple[Mapping[str, int] | None, float]:
    """The previous counters and the seconds since, or None when no rate can be had."""
    if previous is None or t <= previous.t:
        return None, 0.0
    return previous.counters, t - previous.t


# --- /proc/stat -------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def _cpu_keys(name: str) -> tuple[str, str, str]:
    """A cpu line's counter keys and metric name, made once per core."""
    metric = "cpu.percent" if name == "cpu" else f"cpu.percent[{name}]"
    return name + ".total", name + ".idle", metric


def parse_proc_stat(text: str, t: float, previous: Sample | None, /) -> Parsed:
    """CPU busy % overall (``cpu.percent``) and per core (``cpu.percent[cpu0]``).

    Busy is everything but idle and iowait, between this reading and the previous;
    the first reading gives no percentages.
    """
    # Only the leading cpu lines matter; the intr line after them can be long.
    head = text.partition("\nintr")[0]
    counters: dict[str, int] = {}
    metrics: dict[str, float] = {}
    before = previous.counters if previous is not None else None
    # /proc has no other line breaks: split("\n") is several times cheaper than
    # splitlines(), which looks for every Unicode line break.
    for line in head.split("\n"):
        if not line.startswith("cpu"):
            break
        fields = line.split(None, 9)
        # user nice system idle iowait irq softirq steal; guest time is already
        # counted in user and nice, so the later columns are left out.
        values = list(map(int, fields[1:9]))
        total = sum(values)
        idle = values[3] + (values[4] if len(values) > 4 else 0)
        total_key, idle_key, metric = _cpu_keys(fields[0])
        counters[total_key] = total
        counters[idle_key] = idle
        if before is None:
            continue
        total_was = before.get(total_key)
        idle_was = before.get(idle_key)
        if total_was is None or idle_was is None or total <= total_was:
            continue  # new core, reset (reboot), or no time passed
        elapsed = total - total_was
        # iowait is known to step backwards on some kernels; clamp rather than
        # report a busy share outside 0..100.
        busy = min(max(elapsed - (idle - idle_was), 0), elapsed)
        metrics[metric] = 100.0 * busy / elapsed
    return Parsed(metrics, counters)


# --- memory -------------------------------------------------------------------------

_MEMINFO_KEYS = tuple(
    (key, f"\n{key}:")
    for key in (
        "MemTotal",
        "MemFree",
        "MemAvailable",
        "Buffers",
        "Cached",
        "SReclaimable",
        "SwapTotal",
        "SwapFree",
    )
)


def _meminfo_kib(text: str) -> dict[str, int]:
    # Looking up the few keys needed is several times cheaper than splitting
    # all ~50 lines; the leading newline makes "Cached" miss "SwapCached".
    text = "\n" + text
    found: dict[str, int] = {}
    for key, needle in _MEMINFO_KEYS:
        start = text.find(needle)
        if start < 0:
            continue
        start += len(needle)
        end = text.find("\n", start)
        value = text[start:end] if end >= 0 else text[start:]
        fields = value.split()
        if fields and fields[0].isdigit():
            found[key] = int(fields[0])
    return found


def _memory_metrics(
    total: int, used: int, swap_total: int | None, swap_free: int | None
) -> dict[str, float]:
    metrics: dict[str, float] = {
        "mem.total_bytes": float(total),
        "mem.used_bytes": float(used),
        "mem.percent": 100.0 * used / total if total else 0.0,
    }
    if swap_total is not None and swap_free is not None:
        swap_used = swap_total - swap_free
        metrics["swap.total_bytes"] = float(swap_total)
        metrics["swap.used_bytes"] = float(swap_used)
        metrics["swap.percent"] = 100.0 * swap_used / swap_total if swap_total else 0.0
    return metrics


def parse_meminfo(text: str, t: float, previous: Sample | None, /) -> Parsed:
    """Memory from ``/proc/meminfo``: ``mem.*`` and ``swap.*`` in bytes and percent.

    Used memory is ``MemTotal - MemAvailable``, what the kernel says could not be
    had without swapping; kernels before 3.14 lack ``MemAvailable``, and there it
    is total less free, buffers, page cache and reclaimable slab.
    """
    kib = _meminfo_kib(text)
    total = kib.get("MemTotal")
    if total is None:
        return Parsed({})
    available = kib.get("MemAvailable")
    if available is None:
        available = (
            kib.get("MemFree", 0)
            + kib.get("Buffers", 0)
            + kib.get("Cached", 0)
            + kib.get("SReclaimable", 0)
        )
    swap_total = kib.get("SwapTotal")
    swap_free = kib.get("SwapFree")
    return Parsed(
        _memory_metrics(
            total * 1024,
            (total - available) * 1024,
            None if swap_total is None else swap_total * 1024,
            None if swap_free is None else swap_free * 1024,
        )
    )


def _parse_free(text: str, unit: int) -> Parsed:
    lines = text.splitlines()
    if not lines:
        return Parsed({})
    columns = lines[0].split()
    mem: dict[str, int] | None = None
    swap: dict[str, int] | None = None
    used_without_cache: int | None = None
    for line in lines[1:]:
        label, _, rest = line.partition(":")
        values = [int(v) * unit for v in rest.split()]
        if label == "Mem":
            mem = dict(zip(columns, values, strict=False))
        elif label == "Swap":
            swap = dict(zip(columns, values, strict=False))
        elif label.startswith("-/+ buffers") and values:
            # Old procps and busybox ("-/+ buffers/cache:" or "-/+ buffers:"):
            # this line's first column is used memory less caches.
            used_without_cache = values[0]
    if mem is None or "total" not in mem:
        return Parsed({})
    total = mem["total"]
    if "available" in mem:
        used = total - mem["available"]
    elif used_without_cache is not None:
        used = used_without_cache
    else:
        caches = mem.get("buff/cache", mem.get("buffers", 0) + mem.get("cached", 0))
        used = total - mem.get("free", 0) - caches
    swap_total = swap.get("total") if swap else None
    swap_free = swap.get("free") if swap else None
    return Parsed(_memory_metrics(total, used, swap_total, swap_free))


def parse_free_bytes(text: str, t: float, previous: Sample | None, /) -> Parsed:
    """Memory from ``free -b`` (procps or busybox): the same metrics as ``parse_meminfo``."""
    return _parse_free(text, 1)


def parse_free_kib(text: str, t: float, previous: Sample | None, /) -> Parsed:
    """Memory from a plain ``free``, which counts KiB (for a busybox without ``-b``)."""
    return _parse_free(text, 1024)


# --- load ----------------------------------------------------------------------------


def parse_loadavg(text: str, t: float, previous: Sample | None, /) -> Parsed:
    """``load.1m``, ``load.5m``, ``load.15m`` and process counts from ``/proc/loadavg``."""
    fields = text.split()
    if len(fields) < 3:
        return Parsed({})
    metrics = {
        "load.1m": float(fields[0]),
        "load.5m": float(fields[1]),
        "load.15m": float(fields[2]),
    }
    running, slash, total = fields[3].partition("/") if len(fields) > 3 else ("", "", "")
    if slash:
        metrics["procs.running"] = float(running)
        metrics["procs.total"] = float(total)
    return Parsed(metrics)


# --- /proc/net/dev --------------------------------------------------------------------


_NET_NAMES: dict[str, tuple[str, str, str, str, bool]] = {}
"""An interface's counter keys, metric names and whether it counts in the totals,
by the text before its colon (as it stands, padding included)."""


def _net_keys(raw: str) -> tuple[str, str, str, str, bool]:
    """``_NET_NAMES[raw]``, made once per interface (at most 4096 are kept)."""
    name = raw.strip()
    keys = (
        "rx:" + name,
        "tx:" + name,
        f"net.rx_bytes_per_s[{name}]",
        f"net.tx_bytes_per_s[{name}]",
        name != "lo",
    )
    if len(_NET_NAMES) < 4096:
        _NET_NAMES[raw] = keys
    return keys


def parse_net_dev(text: str, t: float, previous: Sample | None, /) -> Parsed:
    """Receive and transmit bytes/s per interface and in total (``lo`` left out of it).

    Metrics: ``net.rx_bytes_per_s``, ``net.tx_bytes_per_s`` and the same with
    ``[interface]``. An interface that appeared or was reset since the last
    reading adds nothing to the total that round.
    """
    counters: dict[str, int] = {}
    metrics: dict[str, float] = {}
    before, dt = _before(previous, t)
    rx_total = tx_total = 0.0
    names = _NET_NAMES
    for line in text.split("\n")[2:]:
        raw, colon, rest = line.partition(":")
        if not colon:
            continue
        fields = rest.split(None, 9)  # receive bytes is field 0, transmit bytes field 8
        if len(fields) < 9:
            continue
        rx_key, tx_key, rx_metric, tx_metric, counted = names.get(raw) or _net_keys(raw)
        rx = counters[rx_key] = int(fields[0])
        tx = counters[tx_key] = int(fields[8])
        if before is None:
            continue
        # _per_second inlined for the usual case (the counter grew): this runs
        # twice per interface per host per round.
        was = before.get(rx_key)
        if was is not None:
            rate = (rx - was) / dt if rx >= was else _per_second(rx, was, dt)
            if rate is not None:
                metrics[rx_metric] = rate
                if counted:
                    rx_total += rate
        was = before.get(tx_key)
        if was is not None:
            rate = (tx - was) / dt if tx >= was else _per_second(tx, was, dt)
            if rate is not None:
                metrics[tx_metric] = rate
                if counted:
                    tx_total += rate
    if before is not None:
        metrics["net.rx_bytes_per_s"] = rx_total
        metrics["net.tx_bytes_per_s"] = tx_total
    return Parsed(metrics, counters)


# --- /proc/diskstats --------------------------------------------------------------------

# Partitions: a disk name followed by a number (sda1, vdb2), or by "p" and a
# number where the disk name itself ends in a digit (nvme0n1p1, mmcblk0p1).
_PARTITION = re.compile(
    r"(?:sd|vd|xvd|hd)[a-z]+\d+|(?:nvme\d+n\d+|mmcblk\d+|nbd\d+|loop\d+|md\d+)p\d+"
    r"|mmcblk\d+(?:boot\d+|rpmb)"
)
# Devices layered on or beside the real disks: counting them would count the
# same bytes twice (dm, md) or count memory and files (loop, ram, zram).
_VIRTUAL = re.compile(r"(?:loop|ram|zram|dm-|md|sr|fd|nbd)\d")


@functools.lru_cache(maxsize=4096)
def is_whole_disk(name: str) -> bool:
    """True for a physical whole disk (sda, vda, nvme0n1), not a partition or a virtual device."""
    return _PARTITION.fullmatch(name) is None and _VIRTUAL.match(name) is None


_DISK_KEYS: dict[str, tuple[str, str, str, str] | None] = {}
"""A device's counter keys and metric names, or None when it is not a whole disk."""


def _disk_keys(name: str) -> tuple[str, str, str, str] | None:
    """``_DISK_KEYS[name]``, made once per device (at most 4096 are kept)."""
    keys = None
    if is_whole_disk(name):
        keys = (
            "r:" + name,
            "w:" + name,
            f"disk.read_bytes_per_s[{name}]",
            f"disk.write_bytes_per_s[{name}]",
        )
    if len(_DISK_KEYS) < 4096:
        _DISK_KEYS[name] = keys
    return keys


def parse_diskstats(text: str, t: float, previous: Sample | None, /) -> Parsed:
    """Read and write bytes/s of each whole disk and in total, from ``/proc/diskstats``.

    Metrics: ``disk.read_bytes_per_s``, ``disk.write_bytes_per_s`` and the same
    with ``[disk]``. Partitions and virtual devices are left out.
    """
    counters: dict[str, int] = {}
    metrics: dict[str, float] = {}
    before, dt = _before(previous, t)
    read_total = write_total = 0.0
    known = _DISK_KEYS
    for line in text.split("\n"):
        fields = line.split(None, 10)  # name is field 2, sectors read 5, written 9
        if len(fields) < 10:
            continue
        name = fields[2]
        keys = known[name] if name in known else _disk_keys(name)
        if keys is None:
            continue
        read_key, write_key, read_metric, write_metric = keys
        read = counters[read_key] = int(fields[5]) * SECTOR_BYTES
        write = counters[write_key] = int(fields[9]) * SECTOR_BYTES
        if before is None:
            continue
        was = before.get(read_key)
        if was is not None:
            rate = (read - was) / dt if read >= was else _per_second(read, was, dt)
            if rate is not None:
                metrics[read_metric] = rate
                read_total += rate
        was = before.get(write_key)
        if was is not None:
            rate = (write - was) / dt if write >= was else _per_second(write, was, dt)
            if rate is not None:
                metrics[write_metric] = rate
                write_total += rate
    if before is not None:
        metrics["disk.read_bytes_per_s"] = read_total
        metrics["disk.write_bytes_per_s"] = write_total
    return Parsed(metrics, counters)


# --- df -P ------------------------------------------------------------------------------


def parse_df(text: str, t: float, previous: Sample | None, /) -> Parsed:
    """Used % of each mounted filesystem from ``df -P`` (GNU or busybox).

    Metrics: ``disk.used_percent[<mount point>]`` for each mount, and
    ``disk.used_percent`` for the root filesystem. The share is
    ``used / (used + available)``, as df computes its Capacity column, but unrounded.
    """
    metrics: dict[str, float] = {}
    pending = ""
    for line in text.splitlines()[1:]:
        fields = line.split()
        if pending:
            fields.insert(0, pending)
            pending = ""
        if len(fields) == 1:
            # A long device name on a line of its own, the numbers on the next.
            pending = fields[0]
            continue
        if len(fields) < 6:
            continue
        try:
            used = int(fields[2])
            available = int(fields[3])
        except ValueError:
            continue  # "-" for filesystems without block counts
        if used + available <= 0:
            continue
        mount = " ".join(fields[5:])
        percent = 100.0 * used / (used + available)
        metrics[f"disk.used_percent[{mount}]"] = percent
        if mount == "/":
            metrics["disk.used_percent"] = percent
    return Parsed(metrics)


DEFAULT_PARSERS: Mapping[str, MetricParser] = MappingProxyType(
    {
        "cat /proc/stat": parse_proc_stat,
        "cat /proc/meminfo": parse_meminfo,
        "cat /proc/loadavg": parse_loadavg,
        "cat /proc/net/dev": parse_net_dev,
        "cat /proc/diskstats": parse_diskstats,
        "df -P": parse_df,
    }
)
"""The built-in command -> parser table used for every host (Linux ``/proc``)."""

FREE_PARSERS: Mapping[str, MetricParser] = MappingProxyType(
    {"free -b": parse_free_bytes, "free": parse_free_kib}
)
"""Alternatives to ``/proc/meminfo``, for a host where only ``free`` is usable."""
