"""/metrics text, checked with prometheus-client's own parser and Prometheus's conventions."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families

from otto.monitor.parsers import parse_diskstats, parse_net_dev, parse_proc_stat
from otto.monitor.prometheus import USER_HZ, family_name, render_metrics
from otto.monitor.store import HostState

Key = tuple[str, tuple[tuple[str, str], ...]]


class View:
    """A collector's latest round, as the Prometheus export reads it."""

    def __init__(self) -> None:
        self.states = {
            "web1": HostState(True),
            "db1": HostState(True),
            "gone": HostState(False, "x"),
        }
        self.values: dict[str, dict[str, float]] = {
            "web1": {
                "cpu.percent": 12.5,
                "cpu.percent[cpu0]": 20.0,
                'disk.used_percent[/mnt/My "Share"]': 50.0,
                "disk.used_percent": 25.0,
                "mem.used_bytes": 2.0**40,
                "mem.percent": 40.0,
                "net.rx_bytes_per_s": 10.0,
                "net.rx_bytes_per_s[eth0]": 10.0,
                "net.rx_bytes_per_s[lo]": 4.0,
                "disk.write_bytes_per_s[vda]": 512.0,
                "procs.total": 300.0,
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


class CounterSource(View):
    """A live collector: also the raw counters of the parsers, and a round count."""

    rounds_run = 7

    def __init__(self, counters: dict[str, dict[str, Mapping[str, int]]]) -> None:
        super().__init__()
        self.counters = counters

    def latest_counters(self) -> dict[str, dict[str, Mapping[str, int]]]:
        return self.counters


def parse(text: str) -> tuple[dict[Key, float], dict[str, tuple[str, str]]]:
    """Samples by (name, labels), and each family's (type, help)."""
    found: dict[Key, float] = {}
    families: dict[str, tuple[str, str]] = {}
    for family in text_string_to_metric_families(text):
        families[family.name] = (family.type, family.documentation)
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found, families


def check_conventions(text: str) -> None:
    """What Prometheus's naming guide asks of every family otto exports."""
    _, families = parse(text)
    for name, (kind, help_text) in families.items():
        assert name.startswith("otto_"), name
        assert len(help_text) > 20 and "otto metric" not in help_text, (name, help_text)
        assert "percent" not in name, name  # shares are ratios from 0 to 1
        if kind == "counter":
            assert name.endswith("_total") or text.count(f"{name}_total") > 0, name
        else:
            assert kind == "gauge", (name, kind)
            assert not name.endswith("_total"), name
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert all(value for value in sample.labels.values()), sample


def test_family_names() -> None:
    assert family_name("cpu.percent") == ("otto_cpu_busy_ratio", None)
    assert family_name("cpu.percent[cpu0]") == ("otto_cpu_core_busy_ratio", "cpu0")
    assert family_name("net.rx_bytes_per_s[eth0]") == (
        "otto_network_interface_receive_bytes_per_second",
        "eth0",
    )
    assert family_name("disk.used_percent[/boot]") == ("otto_filesystem_used_ratio", "/boot")
    assert family_name("disk.used_percent") == ("otto_root_filesystem_used_ratio", None)
    assert family_name("load.15m") == ("otto_load15", None)
    assert family_name("gpu-0.temp") == ("otto_gpu_0_temp", None)
    assert family_name("net.rx_errors_per_s[eth0]") == (
        "otto_net_rx_errors_per_s_by_interface",
        "eth0",
    )
    assert family_name("gpu.percent[0]") == ("otto_gpu_percent_by_item", "0")
    # A user's metric cannot take over one of otto's own families.
    assert family_name("host.up") == ("otto_custom_host_up", None)


def test_render_parses_back_in_base_units_with_named_labels() -> None:
    text = render_metrics(View()).decode()
    check_conventions(text)
    found, families = parse(text)
    assert found[("otto_host_up", (("host", "web1"),))] == 1.0
    assert found[("otto_host_up", (("host", "gone"),))] == 0.0
    assert found[("otto_round_duration_seconds", ())] == 0.042
    assert found[("otto_cpu_busy_ratio", (("host", "web1"),))] == 0.125
    assert found[("otto_cpu_busy_ratio", (("host", "db1"),))] == 0.99
    assert found[("otto_cpu_core_busy_ratio", (("cpu", "0"), ("host", "web1")))] == 0.2
    share = ("otto_filesystem_used_ratio", (("host", "web1"), ("mountpoint", '/mnt/My "Share"')))
    assert found[share] == 0.5
    assert found[("otto_root_filesystem_used_ratio", (("host", "web1"),))] == 0.25
    assert found[("otto_memory_used_bytes", (("host", "web1"),))] == 2.0**40
    assert found[("otto_memory_used_ratio", (("host", "web1"),))] == 0.4
    assert found[("otto_load1", (("host", "db1"),))] == 0.25
    assert found[("otto_tasks", (("host", "web1"),))] == 300.0
    assert found[("otto_network_receive_bytes_per_second", (("host", "web1"),))] == 10.0
    per_interface = "otto_network_interface_receive_bytes_per_second"
    assert found[(per_interface, (("host", "web1"), ("interface", "lo")))] == 4.0
    per_device = "otto_disk_device_written_bytes_per_second"
    assert found[(per_device, (("device", "vda"), ("host", "web1")))] == 512.0
    assert "Memory in use" in families["otto_memory_used_bytes"][1]
    assert not any(
        labels and dict(labels).get("host") == "gone" and name != "otto_host_up"
        for name, labels in found
    )
    # A replay has no counters and no round count.
    assert "otto_rounds_total" not in families


def test_unknown_metrics_keep_their_name_and_say_what_they_are() -> None:
    view = View()
    view.values = {
        "web1": {
            "gpu.percent": 55.0,
            "gpu.percent[0]": 50.0,
            "gpu.percent[]": 1.0,
            "host.up": 3.0,
            "a.b": 1.0,
            "a_b": 2.0,
        }
    }
    text = render_metrics(view).decode()
    found, families = parse(text)
    assert found[("otto_gpu_percent", (("host", "web1"),))] == 55.0
    assert found[("otto_gpu_percent_by_item", (("host", "web1"), ("item", "0")))] == 50.0
    assert "percentage, from 0 to 100" in families["otto_gpu_percent"][1]
    assert found[("otto_custom_host_up", (("host", "web1"),))] == 3.0
    assert found[("otto_host_up", (("host", "web1"),))] == 1.0
    # Two metrics that meet in one name give one sample, not an invalid duplicate.
    assert text.count('otto_a_b{host="web1"}') == 1
    # "gpu.percent[]" would need an empty label value: left out.
    assert sum(1 for name, _ in found if name == "otto_gpu_percent_by_item") == 1


def _counters_of(
    host_text: Mapping[str, tuple[str, str, str]],
) -> dict[str, dict[str, Mapping[str, int]]]:
    counters: dict[str, dict[str, Mapping[str, int]]] = {}
    for host, (stat, net, disks) in host_text.items():
        counters[host] = {
            "parse_proc_stat": parse_proc_stat(stat, 1.0, None).counters,
            "parse_net_dev": parse_net_dev(net, 1.0, None).counters,
            "parse_diskstats": parse_diskstats(disks, 1.0, None).counters,
        }
    return counters


STAT = (
    "cpu  300 0 100 5000 100 0 0 0 0 0\n"
    "cpu0 200 0 50 2500 50 0 0 0 0 0\n"
    "cpu1 100 0 50 2500 50 0 0 0 0 0\n"
    "intr 1 2 3\n"
)
NET_DEV = (
    "Inter-|   Receive                            |  Transmit\n"
    " face |bytes    packets errs drop fifo frame compressed multicast|bytes ...\n"
    "    lo:    1000      10    0    0    0     0          0         0     1000      10"
    "    0    0    0     0       0          0\n"
    "  eth0: 5000000    4000    0    0    0     0          0         0   123456     900"
    "    0    0    0     0       0          0\n"
)
DISKSTATS = (
    " 253       0 vda 100 0 2048 10 50 0 4096 20 0 30 30 0 0 0 0\n"
    " 253       1 vda1 90 0 2000 9 40 0 4000 19 0 28 28 0 0 0 0\n"
)


def test_raw_counters_are_exported_as_total_counters() -> None:
    source = CounterSource(_counters_of({"web1": (STAT, NET_DEV, DISKSTATS)}))
    source.counters["gone"] = source.counters["web1"]  # down: its counters go stale
    text = render_metrics(source).decode()
    check_conventions(text)
    found, families = parse(text)
    assert families["otto_cpu_seconds"][0] == "counter"
    assert "# TYPE otto_cpu_seconds_total counter" in text
    cpu0 = (("cpu", "0"), ("host", "web1"))
    assert found[("otto_cpu_seconds_total", (*cpu0, ("mode", "busy")))] == 250 / USER_HZ
    assert found[("otto_cpu_seconds_total", (*cpu0, ("mode", "idle")))] == 2550 / USER_HZ
    # Only the cores: the all-cores line would count each second twice in a sum().
    assert {dict(labels)["cpu"] for name, labels in found if name == "otto_cpu_seconds_total"} == {
        "0",
        "1",
    }
    eth0 = (("host", "web1"), ("interface", "eth0"))
    assert found[("otto_network_receive_bytes_total", eth0)] == 5_000_000
    assert found[("otto_network_transmit_bytes_total", eth0)] == 123_456
    vda = (("device", "vda"), ("host", "web1"))
    assert found[("otto_disk_read_bytes_total", vda)] == 2048 * 512
    assert found[("otto_disk_written_bytes_total", vda)] == 4096 * 512
    assert ("otto_disk_read_bytes_total", (("device", "vda1"), ("host", "web1"))) not in found
    assert found[("otto_rounds_total", ())] == 7
    assert not any(dict(labels).get("host") == "gone" for name, labels in found if "total" in name)


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
    found, _ = parse(render_metrics(SnapshotOnly()).decode())
    assert found[("otto_load1", (("host", "a"),))] == 0.75
    assert ("otto_load1", (("host", "b"),)) not in found
    assert found[("otto_host_up", (("host", "b"),))] == 0.0
