"""``/metrics`` in the Prometheus text format, from a collector's latest round.

The export follows Prometheus's naming conventions: base units (seconds, bytes),
shares as ratios from 0 to 1 (``cpu.percent`` 12.5 is ``otto_cpu_busy_ratio``
0.125), cumulative counts as ``_total`` counters, and one family per quantity
with labels named for what they hold (``host``, ``cpu``, ``device``,
``interface``, ``mountpoint``), never empty.

A host-wide figure and its breakdown are separate families, so that a ``sum()``
over a family's labels never counts the same bytes twice:

=============================  ==================================================
otto metric                    Prometheus family
=============================  ==================================================
``cpu.percent``                ``otto_cpu_busy_ratio``
``cpu.percent[cpu0]``          ``otto_cpu_core_busy_ratio{cpu="0"}``
``mem.*``, ``swap.*``          ``otto_memory_{used,total}_bytes``, ``..._used_ratio``
``load.1m`` (5m, 15m)          ``otto_load1`` (``otto_load5``, ``otto_load15``)
``net.rx_bytes_per_s``         ``otto_network_receive_bytes_per_second``
``net.rx_bytes_per_s[eth0]``   ``otto_network_interface_receive_bytes_per_second``
``disk.read_bytes_per_s[sda]`` ``otto_disk_device_read_bytes_per_second``
``disk.used_percent[/boot]``   ``otto_filesystem_used_ratio{mountpoint="/boot"}``
``disk.used_percent``          ``otto_root_filesystem_used_ratio``
=============================  ==================================================

Beside those gauges, the raw counters the built-in parsers read (``Parsed.counters``)
are exported as counters for ``rate()``: ``otto_cpu_seconds_total{cpu, mode}``,
``otto_network_{receive,transmit}_bytes_total{interface}`` and
``otto_disk_{read,written}_bytes_total{device}``.

A metric otto does not know (a user's parser's ``gpu.percent``) is exported as
``otto_gpu_percent{host}`` as it is; with an item, ``gpu.percent[0]``, as
``otto_gpu_percent_by_item{host, item="0"}`` (``_by_interface``, ``_by_device``,
``_by_cpu`` when its name starts with ``net.``, ``disk.`` or ``cpu.``).

A host that is down in the latest round exports only ``otto_host_up 0``, so its
old values go stale in Prometheus instead of lingering. Its outages
(``otto.monitor.outages``) add up in ``otto_host_down_seconds_total{host}``: the
seconds it has been down so far, an outage still open counted up to now; alert on
``increase(otto_host_down_seconds_total[5m]) > 0``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from otto.monitor.store import HostState

__all__ = [
    "USER_HZ",
    "CounterView",
    "MetricsView",
    "OttoMetrics",
    "family_name",
    "render_metrics",
]

USER_HZ = 100
"""Ticks per second of the CPU times in ``/proc/stat`` (100 on every Linux port)."""

_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


@runtime_checkable
class MetricsView(Protocol):
    """The latest state of a collector (``Collector`` and ``Replay`` provide it)."""

    def host_states(self) -> dict[str, HostState]:
        """Each host's state in the latest round."""
        ...

    def latest_values(self) -> dict[str, dict[str, float]]:
        """``{host: metrics}`` of the hosts up in the latest round."""
        ...

    @property
    def last_round_duration(self) -> float | None:
        """Seconds the latest round took."""
        ...


@runtime_checkable
class CounterView(Protocol):
    """A source that also keeps the raw counters of the latest round (a live ``Collector``)."""

    def latest_counters(self) -> dict[str, dict[str, Mapping[str, int]]]:
        """``{host: {parser name: Parsed.counters}}`` of the hosts up in the latest round."""
        ...


class _SnapshotSource(Protocol):
    def snapshot(self) -> dict[str, object]: ...


# --- the families ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Family:
    """Where one otto metric goes: a family, its HELP, its item label and unit scale."""

    name: str
    help: str
    label: str | None = None
    scale: float = 1.0
    item: Callable[[str], str] = str


def _core(item: str) -> str:
    # /proc/stat names cores cpu0, cpu1...: the label says "cpu" already.
    return item.removeprefix("cpu") or item


_BETWEEN = "between the host's latest two rounds"

# otto metric -> (the host-wide family, the per-item family)
_KNOWN: dict[str, tuple[_Family, _Family | None]] = {
    "cpu.percent": (
        _Family(
            "otto_cpu_busy_ratio",
            f"Share of CPU time spent busy (not idle or in I/O wait), all cores, {_BETWEEN}, "
            "from 0 to 1",
            scale=0.01,
        ),
        _Family(
            "otto_cpu_core_busy_ratio",
            f"Share of one core's time spent busy (not idle or in I/O wait), {_BETWEEN}, "
            "from 0 to 1",
            "cpu",
            0.01,
            _core,
        ),
    ),
    "mem.used_bytes": (
        _Family(
            "otto_memory_used_bytes",
            "Memory in use in bytes: total less what the kernel says is available "
            "without swapping (MemAvailable)",
        ),
        None,
    ),
    "mem.total_bytes": (_Family("otto_memory_total_bytes", "Usable memory in bytes"), None),
    "mem.percent": (
        _Family(
            "otto_memory_used_ratio",
            "Memory in use as a share of the total, from 0 to 1",
            scale=0.01,
        ),
        None,
    ),
    "swap.used_bytes": (_Family("otto_swap_used_bytes", "Swap space in use in bytes"), None),
    "swap.total_bytes": (_Family("otto_swap_total_bytes", "Swap space in bytes"), None),
    "swap.percent": (
        _Family(
            "otto_swap_used_ratio",
            "Swap space in use as a share of the total, from 0 to 1 (0 without swap)",
            scale=0.01,
        ),
        None,
    ),
    "load.1m": (_Family("otto_load1", "Load average over 1 minute (/proc/loadavg)"), None),
    "load.5m": (_Family("otto_load5", "Load average over 5 minutes (/proc/loadavg)"), None),
    "load.15m": (_Family("otto_load15", "Load average over 15 minutes (/proc/loadavg)"), None),
    "procs.running": (
        _Family("otto_tasks_running", "Tasks (processes and threads) runnable right now"),
        None,
    ),
    "procs.total": (
        _Family("otto_tasks", "Tasks (processes and threads) that exist on the host"),
        None,
    ),
    "net.rx_bytes_per_s": (
        _Family(
            "otto_network_receive_bytes_per_second",
            f"Bytes per second received on all interfaces but loopback, {_BETWEEN}",
        ),
        _Family(
            "otto_network_interface_receive_bytes_per_second",
            f"Bytes per second received on one interface, {_BETWEEN}",
            "interface",
        ),
    ),
    "net.tx_bytes_per_s": (
        _Family(
            "otto_network_transmit_bytes_per_second",
            f"Bytes per second sent on all interfaces but loopback, {_BETWEEN}",
        ),
        _Family(
            "otto_network_interface_transmit_bytes_per_second",
            f"Bytes per second sent on one interface, {_BETWEEN}",
            "interface",
        ),
    ),
    "disk.read_bytes_per_s": (
        _Family(
            "otto_disk_read_bytes_per_second",
            f"Bytes per second read from all whole disks, {_BETWEEN}",
        ),
        _Family(
            "otto_disk_device_read_bytes_per_second",
            f"Bytes per second read from one whole disk, {_BETWEEN}",
            "device",
        ),
    ),
    "disk.write_bytes_per_s": (
        _Family(
            "otto_disk_written_bytes_per_second",
            f"Bytes per second written to all whole disks, {_BETWEEN}",
        ),
        _Family(
            "otto_disk_device_written_bytes_per_second",
            f"Bytes per second written to one whole disk, {_BETWEEN}",
            "device",
        ),
    ),
    "disk.used_percent": (
        _Family(
            "otto_root_filesystem_used_ratio",
            "Share of the root filesystem's space in use (used / (used + available), "
            "as df computes it), from 0 to 1",
            scale=0.01,
        ),
        _Family(
            "otto_filesystem_used_ratio",
            "Share of a mounted filesystem's space in use (used / (used + available), "
            "as df computes it), from 0 to 1",
            "mountpoint",
            0.01,
        ),
    ),
}

# The item label of a metric otto does not know, by the first part of its name.
_ITEM_LABELS = {"cpu": "cpu", "net": "interface", "disk": "device", "fs": "mountpoint"}


@dataclass(frozen=True, slots=True)
class _Counter:
    """A counter family fed by one built-in parser's raw counters."""

    name: str
    help: str
    label: str


_CPU_SECONDS = _Counter(
    "otto_cpu_seconds_total",
    f"CPU time of one core since boot in seconds (/proc/stat ticks / {USER_HZ}); "
    'mode="idle" is idle and I/O wait, mode="busy" everything else',
    "cpu",
)
# parser name -> {counter key prefix: family}; keys are "<prefix><item>".
_BYTE_COUNTERS: dict[str, dict[str, _Counter]] = {
    "parse_net_dev": {
        "rx:": _Counter(
            "otto_network_receive_bytes_total",
            "Bytes received on the interface since it came up "
            "(/proc/net/dev, or IF-MIB ifHCInOctets over SNMP)",
            "interface",
        ),
        "tx:": _Counter(
            "otto_network_transmit_bytes_total",
            "Bytes sent on the interface since it came up "
            "(/proc/net/dev, or IF-MIB ifHCOutOctets over SNMP)",
            "interface",
        ),
    },
    "parse_diskstats": {
        "r:": _Counter(
            "otto_disk_read_bytes_total",
            "Bytes read from the whole disk since boot "
            "(/proc/diskstats sectors * 512, or UCD-DISKIO over SNMP)",
            "device",
        ),
        "w:": _Counter(
            "otto_disk_written_bytes_total",
            "Bytes written to the whole disk since boot "
            "(/proc/diskstats sectors * 512, or UCD-DISKIO over SNMP)",
            "device",
        ),
    },
}
# An SNMP probe's byte counters (``otto.monitor.snmp.SNMP_COUNTERS``) feed the same
# families; where a host has both, the shell's reading wins, as for its gauges.
_BYTE_COUNTERS["snmp_octets"] = {
    **_BYTE_COUNTERS["parse_net_dev"],
    **_BYTE_COUNTERS["parse_diskstats"],
}

_RESERVED = frozenset(
    {
        "otto_host_up",
        "otto_host_down_seconds_total",
        "otto_round_duration_seconds",
        "otto_rounds_total",
        _CPU_SECONDS.name,
    }
    | {family.name for pair in _KNOWN.values() for family in pair if family is not None}
    | {c.name for table in _BYTE_COUNTERS.values() for c in table.values()}
)


def family_name(metric: str) -> tuple[str, str | None]:
    """The Prometheus family of an otto metric, and its item if it has one.

    ``"disk.used_percent[/boot]"`` -> ``("otto_filesystem_used_ratio", "/boot")``;
    ``"gpu-0.temp"`` -> ``("otto_gpu_0_temp", None)``.
    """
    family, item = _family_of(metric)
    return family.name, item


@functools.lru_cache(maxsize=8192)  # the same few names come back every scrape
def _family_of(metric: str) -> tuple[_Family, str | None]:
    item: str | None = None
    base = metric
    if metric.endswith("]") and "[" in metric:
        base, _, rest = metric.partition("[")
        item = rest[:-1]
    known = _KNOWN.get(base)
    if known is not None:
        whole, per_item = known
        if item is None:
            return whole, None
        if per_item is not None:
            return per_item, item
    name = "otto_" + _UNSAFE.sub("_", base)
    if name in _RESERVED:
        name = "otto_custom_" + _UNSAFE.sub("_", base)
    unit = " (a percentage, from 0 to 100)" if base.endswith("percent") else ""
    if item is None:
        return _Family(name, f"otto metric {base}{unit}, as the host's parser reported it"), None
    label = _ITEM_LABELS.get(base.partition(".")[0], "item")
    return (
        _Family(
            f"{name}_by_{label}",
            f"otto metric {base}{unit} per {label}, as the host's parser reported it",
            label,
        ),
        item,
    )


# --- the collector ---------------------------------------------------------------------------


class OttoMetrics:
    """A prometheus-client custom collector over an otto collector's latest round.

    Args:
        source: a ``MetricsView`` (``Collector``, ``Replay``), or any dashboard
            source with ``snapshot()``, whose latest points are then used.
        down_seconds: ``{host: seconds down so far}`` for
            ``otto_host_down_seconds_total``; by default the source's own
            ``down_seconds()`` if it has one (``Replay``), else the family is left out.
    """

    def __init__(
        self,
        source: MetricsView | _SnapshotSource,
        down_seconds: Mapping[str, float] | None = None,
    ) -> None:
        self._source = source
        self._down = down_seconds

    def describe(self) -> list[Metric]:
        # Nothing to describe up front: the families depend on what hosts report.
        return []

    def collect(self) -> Iterator[Metric]:
        states, values, duration = self._read()
        up = GaugeMetricFamily(
            "otto_host_up", "1 if the host answered in the latest round, else 0", labels=["host"]
        )
        for host, state in sorted(states.items()):
            up.add_metric([host], 1.0 if state.up else 0.0)
        yield up
        down = self._down_seconds()
        if down is not None:
            family = CounterMetricFamily(
                "otto_host_down_seconds_total",
                "Seconds the host has been down (not answering its rounds) since the "
                "collector started, an ongoing outage counted up to now",
                labels=["host"],
            )
            for host in sorted(set(down) | set(states)):
                if host:
                    family.add_metric([host], down.get(host, 0.0))
            yield family
        if duration is not None:
            yield GaugeMetricFamily(
                "otto_round_duration_seconds",
                "Seconds the latest round took, from its start to the last answer",
                value=duration,
            )
        rounds = getattr(self._source, "rounds_run", None)
        if isinstance(rounds, int) and not isinstance(rounds, bool):
            yield CounterMetricFamily(
                "otto_rounds_total", "Rounds the collector has run since it started", value=rounds
            )
        yield from _gauges(values)
        if isinstance(self._source, CounterView):
            yield from _counters(self._source.latest_counters(), states)

    def _down_seconds(self) -> Mapping[str, float] | None:
        if self._down is not None:
            return self._down
        own = getattr(self._source, "down_seconds", None)
        if callable(own):
            found: Mapping[str, float] = own()
            return found
        return None

    def _read(
        self,
    ) -> tuple[Mapping[str, HostState], Mapping[str, Mapping[str, float]], float | None]:
        source = self._source
        if isinstance(source, MetricsView):
            return source.host_states(), source.latest_values(), source.last_round_duration
        snapshot = source.snapshot()
        hosts = snapshot.get("hosts", {})
        series = snapshot.get("series", {})
        states: dict[str, HostState] = {}
        if isinstance(hosts, dict):
            for host, info in hosts.items():
                states[host] = HostState(bool(info.get("up")), str(info.get("last_error", "")))
        values: dict[str, dict[str, float]] = {}
        if isinstance(series, dict):
            for metric, per_host in series.items():
                for host, points in per_host.items():
                    if points and states.get(host, HostState(True)).up:
                        values.setdefault(host, {})[metric] = float(points[-1][1])
        return states, values, None


def _gauges(values: Mapping[str, Mapping[str, float]]) -> Iterator[Metric]:
    """One gauge family per quantity, each sample once (two metrics may meet in one name)."""
    families: dict[str, GaugeMetricFamily] = {}
    seen: set[tuple[str, str, str]] = set()
    for host, metrics in sorted(values.items()):
        if not host:
            continue
        for metric, value in sorted(metrics.items()):
            family, item = _family_of(metric)
            labels = [host]
            if family.label is not None:
                if not item:
                    continue  # "metric[]": no empty label values
                labels.append(family.item(item))
            key = (family.name, host, labels[-1] if family.label else "")
            if key in seen:
                continue
            seen.add(key)
            out = families.get(family.name)
            if out is None:
                names = ["host"] if family.label is None else ["host", family.label]
                out = families[family.name] = GaugeMetricFamily(
                    family.name, family.help, labels=names
                )
            out.add_metric(labels, value * family.scale)
    for name in sorted(families):
        yield families[name]


def _counters(
    counters: Mapping[str, Mapping[str, Mapping[str, int]]], states: Mapping[str, HostState]
) -> Iterator[Metric]:
    """The built-in parsers' raw counters as ``_total`` counter families."""
    families: dict[str, CounterMetricFamily] = {}

    def family(counter: _Counter, *extra: str) -> CounterMetricFamily:
        out = families.get(counter.name)
        if out is None:
            out = families[counter.name] = CounterMetricFamily(
                counter.name, counter.help, labels=["host", counter.label, *extra]
            )
        return out

    for host, by_parser in sorted(counters.items()):
        if not host or not states.get(host, HostState(True)).up:
            continue
        stat = by_parser.get("parse_proc_stat", {})
        for key, total in sorted(stat.items()):
            core, _, kind = key.rpartition(".")
            if kind != "total" or core == "cpu" or not core.startswith("cpu"):
                continue  # the all-cores line would count every core twice
            idle = stat.get(core + ".idle")
            if idle is None or not _core(core):
                continue
            cpu = family(_CPU_SECONDS, "mode")
            cpu.add_metric([host, _core(core), "busy"], max(total - idle, 0) / USER_HZ)
            cpu.add_metric([host, _core(core), "idle"], idle / USER_HZ)
        seen: set[tuple[str, str]] = set()
        for parser, table in _BYTE_COUNTERS.items():
            for key, value in sorted(by_parser.get(parser, {}).items()):
                prefix, _, item = key.partition(":")
                counter = table.get(prefix + ":")
                if counter is None or not item or (counter.name, item) in seen:
                    continue
                seen.add((counter.name, item))
                family(counter).add_metric([host, item], float(value))
    for name in sorted(families):
        yield families[name]


def render_metrics(
    source: MetricsView | _SnapshotSource, *, down_seconds: Mapping[str, float] | None = None
) -> bytes:
    """The Prometheus text exposition of ``source``'s latest round (``down_seconds``:
    see ``OttoMetrics``)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OttoMetrics(source, down_seconds))
    data: bytes = generate_latest(registry)
    return data
