"""``/metrics`` in the Prometheus text format, from a collector's latest round.

Each otto metric becomes one gauge family: ``cpu.percent`` -> ``otto_cpu_percent``
with a ``host`` label. Per-item metrics (``net.rx_bytes_per_s[eth0]``) join the
family of their base name with an ``item`` label; the family's total has
``item=""``. A host that is down in the latest round exports only
``otto_host_up 0``, so its old values go stale in Prometheus instead of lingering.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Protocol, runtime_checkable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from otto.monitor.store import HostState

__all__ = ["MetricsView", "OttoMetrics", "family_name", "render_metrics"]

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


class _SnapshotSource(Protocol):
    def snapshot(self) -> dict[str, object]: ...


def family_name(metric: str) -> tuple[str, str | None]:
    """The Prometheus family name of an otto metric, and its item if it has one.

    ``"disk.used_percent[/boot]"`` -> ``("otto_disk_used_percent", "/boot")``.
    """
    item: str | None = None
    if metric.endswith("]") and "[" in metric:
        metric, _, rest = metric.partition("[")
        item = rest[:-1]
    name = "otto_" + _UNSAFE.sub("_", metric)
    return name, item


class OttoMetrics:
    """A prometheus-client custom collector over an otto collector's latest round.

    Args:
        source: a ``MetricsView`` (``Collector``, ``Replay``), or any dashboard
            source with ``snapshot()``, whose latest points are then used.
    """

    def __init__(self, source: MetricsView | _SnapshotSource) -> None:
        self._source = source

    def describe(self) -> list[Metric]:
        # Nothing to describe up front: the families depend on what hosts report.
        return []

    def collect(self) -> Iterator[Metric]:
        states, values, duration = self._read()
        up = GaugeMetricFamily(
            "otto_host_up", "1 if the host answered in the latest round", labels=["host"]
        )
        for host, state in sorted(states.items()):
            up.add_metric([host], 1.0 if state.up else 0.0)
        yield up
        if duration is not None:
            yield GaugeMetricFamily(
                "otto_round_duration_seconds",
                "Seconds the latest round took, from its start to the last answer",
                value=duration,
            )
        grouped: dict[str, list[tuple[str, str | None, float]]] = {}
        for host, metrics in sorted(values.items()):
            for metric, value in metrics.items():
                name, item = family_name(metric)
                grouped.setdefault(name, []).append((host, item, value))
        for name, points in sorted(grouped.items()):
            itemized = any(item is not None for _, item, _ in points)
            family = GaugeMetricFamily(
                name,
                f"otto metric {name.removeprefix('otto_').replace('_', ' ')}",
                labels=["host", "item"] if itemized else ["host"],
            )
            for host, item, value in points:
                family.add_metric([host, item or ""] if itemized else [host], value)
            yield family

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


def render_metrics(source: MetricsView | _SnapshotSource) -> bytes:
    """The Prometheus text exposition of ``source``'s latest round."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(OttoMetrics(source))
    data: bytes = generate_latest(registry)
    return data
