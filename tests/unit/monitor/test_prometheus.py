"""/metrics text, checked with prometheus-client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from otto.monitor.prometheus import family_name, render_metrics
from otto.monitor.store import HostState


class View:
    """A collector's latest round, as the Prometheus export reads it."""

    def __init__(self) -> None:
        self.states = {
            "web1": HostState(True),
            "db1": HostState(True),
            "gone": HostState(False, "x"),
        }
        self.values = {
            "web1": {
                "cpu.percent": 12.5,
                "cpu.percent[cpu0]": 20.0,
                'disk.used_percent[/mnt/My "Share"]': 50.0,
                "mem.used_bytes": 2.0**40,
            },
            "db1": {"cpu.percent": 99.0, "load.1m": 0.25},
        }

    def host_states(self) -> dict[str, HostState]:
        return self.states

    def latest_values(self) -> dict[str, dict[str, float]]:
        return self.values

    @property
    def last_round_duration(self) -> float | None:
        return 0.042


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge"
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_family_names() -> None:
    assert family_name("cpu.percent") == ("otto_cpu_percent", None)
    assert family_name("net.rx_bytes_per_s[eth0]") == ("otto_net_rx_bytes_per_s", "eth0")
    assert family_name("disk.used_percent[/boot]") == ("otto_disk_used_percent", "/boot")
    assert family_name("gpu-0.temp") == ("otto_gpu_0_temp", None)


def test_render_parses_back_with_the_prometheus_parser() -> None:
    found = samples(render_metrics(View()).decode())
    assert found[("otto_host_up", (("host", "web1"),))] == 1.0
    assert found[("otto_host_up", (("host", "gone"),))] == 0.0
    assert found[("otto_round_duration_seconds", ())] == 0.042
    assert found[("otto_cpu_percent", (("host", "web1"), ("item", "")))] == 12.5
    assert found[("otto_cpu_percent", (("host", "web1"), ("item", "cpu0")))] == 20.0
    assert found[("otto_cpu_percent", (("host", "db1"), ("item", "")))] == 99.0
    assert (
        found[("otto_disk_used_percent", (("host", "web1"), ("item", '/mnt/My "Share"')))] == 50.0
    )
    assert found[("otto_mem_used_bytes", (("host", "web1"),))] == 2.0**40
    assert found[("otto_load_1m", (("host", "db1"),))] == 0.25
    assert not any(
        labels and dict(labels).get("host") == "gone" and name != "otto_host_up"
        for name, labels in found
    )


class SnapshotOnly:
    """A dashboard source with nothing but ``snapshot`` (the web module's test source)."""

    def snapshot(self) -> dict[str, object]:
        return {
            "interval": 1.0,
            "live": True,
            "hosts": {"a": {"up": True, "last_error": ""}, "b": {"up": False, "last_error": "x"}},
            "metrics": ["load.1m"],
            "series": {"load.1m": {"a": [[1.0, 0.5], [2.0, 0.75]], "b": [[1.0, 3.0]]}},
            "events": [],
        }


def test_render_from_a_snapshot_uses_the_latest_points() -> None:
    found = samples(render_metrics(SnapshotOnly()).decode())
    assert found[("otto_load_1m", (("host", "a"),))] == 0.75
    assert ("otto_load_1m", (("host", "b"),)) not in found
    assert found[("otto_host_up", (("host", "b"),))] == 0.0
