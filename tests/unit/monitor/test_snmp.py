"""SNMP without an agent: settings, the plan from walked tables, values to metrics
(wraps, resets, restarts), the lab's term 'none' and 'snmp' field, DeviceHost."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from otto import LocalHost
from otto.errors import ConnectError, LabError
from otto.hosts.device import DeviceHost
from otto.lab import Lab
from otto.monitor import Collector, MonitorTarget
from otto.monitor.shell_probe import ShellProbe
from otto.monitor.snmp import (
    DISK_IO_DEVICE,
    DISK_IO_READ,
    DISK_IO_WRITTEN,
    HR_PROCESSOR_LOAD,
    HR_STORAGE_DESCR,
    HR_STORAGE_SIZE,
    HR_STORAGE_TYPE,
    HR_STORAGE_UNITS,
    HR_STORAGE_USED,
    IF_DESCR,
    IF_HC_IN_OCTETS,
    IF_HC_OUT_OCTETS,
    IF_IN_OCTETS,
    IF_NAME,
    IF_OUT_OCTETS,
    IF_TYPE,
    LA_LOAD,
    SS_CPU_RAW,
    SYS_UPTIME,
    Oid,
    SnmpPlan,
    SnmpProbe,
    SnmpValue,
    plan_from_tables,
    read_metrics,
)
from otto.periodic import FakeClock
from otto.transports.snmp import SnmpSettings

STORAGE_TYPE = "1.3.6.1.2.1.25.2.1."


def tables() -> dict[Oid, dict[Oid, SnmpValue]]:
    """Walked columns shaped like net-snmp 5.9's on Linux."""
    return {
        HR_PROCESSOR_LOAD: {(196608,): 10, (196609,): 30},
        HR_STORAGE_TYPE: {
            (1,): STORAGE_TYPE + "2",
            (3,): STORAGE_TYPE + "3",
            (6,): STORAGE_TYPE + "1",
            (7,): STORAGE_TYPE + "1",
            (10,): STORAGE_TYPE + "3",
            (11,): STORAGE_TYPE + "1",
            (36,): STORAGE_TYPE + "4",
            (37,): STORAGE_TYPE + "4",
        },
        HR_STORAGE_DESCR: {
            (1,): "Physical memory",
            (3,): "Virtual memory",
            (6,): "Memory buffers",
            (7,): "Cached memory",
            (10,): "Swap space",
            (11,): "Available memory",
            (36,): "/",
            (37,): "/boot",
        },
        HR_STORAGE_UNITS: {(i,): 1024 for i in (1, 3, 6, 7, 10, 11)} | {(36,): 4096, (37,): 4096},
        IF_DESCR: {(1,): "lo", (2,): "eth0", (3,): "old0"},
        IF_TYPE: {(1,): 24, (2,): 6, (3,): 6},
        IF_NAME: {(1,): "lo", (2,): "eth0"},
        IF_HC_IN_OCTETS: {(1,): 0, (2,): 0},
        DISK_IO_DEVICE: {(1,): "loop0", (2,): "vda", (3,): "vda1", (4,): "sdb"},
    }


def reading(
    plan: SnmpPlan,
    *,
    uptime: int = 1000,
    rx: Mapping[str, int] | None = None,
    cpu: Mapping[str, int] | None = None,
    **extra: SnmpValue,
) -> dict[Oid, SnmpValue]:
    """One GET's values for ``plan``: memory, disks, load; counters as given."""
    values: dict[Oid, SnmpValue] = {SYS_UPTIME: uptime}
    values[(*LA_LOAD, 1)] = "0.50"
    values[(*LA_LOAD, 2)] = "0.25"
    values[(*LA_LOAD, 3)] = "0.10"
    sizes = {1: (1000, 600), 6: (1000, 50), 7: (150, 150), 10: (500, 100), 11: (800, 0)}
    sizes |= {36: (100, 25), 37: (200, 200), 3: (1500, 700)}
    for index, (size, used) in sizes.items():
        values[(*HR_STORAGE_SIZE, index)] = size
        values[(*HR_STORAGE_USED, index)] = used
    for index in plan.processors:
        values[(*HR_PROCESSOR_LOAD, index)] = 20
    for iface in plan.interfaces:
        value = (rx or {}).get(iface.name)
        if value is None:
            continue
        in_oid = IF_HC_IN_OCTETS if iface.wide else IF_IN_OCTETS
        out_oid = IF_HC_OUT_OCTETS if iface.wide else IF_OUT_OCTETS
        values[(*in_oid, iface.index)] = value
        values[(*out_oid, iface.index)] = value * 2
    for name, value in (cpu or {}).items():
        values[SS_CPU_RAW[name]] = value
    for index, _ in plan.disks:
        values[(*DISK_IO_READ, index)] = 0
        values[(*DISK_IO_WRITTEN, index)] = 0
    return values


# --- settings ------------------------------------------------------------------------------


def test_settings_hide_their_secrets() -> None:
    v2 = SnmpSettings(community="s3cret-community", port=1161)
    assert "s3cret" not in repr(v2)
    assert v2.security == "v2c"
    v3 = SnmpSettings(version="3", user="mon", auth_key="auth-secret", priv_key="priv-secret")
    assert "auth-secret" not in repr(v3) and "priv-secret" not in repr(v3)
    assert v3.security == "v3 user 'mon' authPriv"
    assert SnmpSettings(version="3", user="mon").security == "v3 user 'mon' noAuthNoPriv"
    assert SnmpSettings(**v3.as_dict()) == v3  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({}, "needs a 'community'"),
        ({"community": "x", "version": "2"}, "version must be"),
        ({"community": "x", "version": "1"}, "version must be '2c' or '3'"),
        ({"community": "x", "port": 0}, "port must be"),
        ({"version": "3"}, "needs a 'user'"),
        ({"version": "3", "user": "u", "priv_key": "12345678"}, "needs an 'auth_key'"),
        ({"version": "3", "user": "u", "auth_key": "short"}, "at least 8"),
        ({"version": "3", "user": "u", "auth_protocol": "ROT13"}, "auth_protocol"),
        ({"community": "x", "timeout": 0}, "timeout"),
        ({"community": "x", "retries": -1}, "retries"),
    ],
)
def test_bad_settings_are_refused(given: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SnmpSettings(**given)  # type: ignore[arg-type]


# --- the plan -----------------------------------------------------------------------------


def test_the_plan_reads_what_the_tables_have() -> None:
    plan = plan_from_tables(tables())
    assert plan.processors == (196608, 196609)
    kinds = {s.name: s.kind for s in plan.storages}
    assert kinds == {
        "Physical memory": "ram",
        "Memory buffers": "buffers",
        "Cached memory": "cached",
        "Swap space": "swap",
        "Available memory": "available",
        "/": "disk",
        "/boot": "disk",
    }
    by_name = {i.name: i for i in plan.interfaces}
    assert by_name["lo"].loopback and not by_name["eth0"].loopback
    assert by_name["eth0"].wide and not by_name["old0"].wide  # old0: no ifHC*, no ifName
    assert plan.disks == ((2, "vda"), (4, "sdb"))  # no loop device, no partition
    oids = plan.oids()
    assert len(oids) == len(set(oids))
    assert (*IF_HC_IN_OCTETS, 2) in oids and (*IF_IN_OCTETS, 3) in oids
    assert (*IF_HC_IN_OCTETS, 3) not in oids
    assert SYS_UPTIME in oids
    assert SYS_UPTIME not in plan.without_scalars([SYS_UPTIME]).oids()


def test_an_empty_walk_still_reads_the_scalars() -> None:
    plan = plan_from_tables({})
    assert plan.oids() == list(plan.scalars)


# --- values to metrics ---------------------------------------------------------------------


def test_memory_disks_and_load() -> None:
    plan = plan_from_tables(tables())
    metrics, _ = read_metrics(plan, reading(plan), 10.0, None)
    assert metrics["mem.total_bytes"] == 1000 * 1024
    assert metrics["mem.used_bytes"] == (1000 - 800) * 1024  # total less available
    assert metrics["mem.percent"] == pytest.approx(20.0)
    assert metrics["swap.total_bytes"] == 500 * 1024
    assert metrics["swap.percent"] == pytest.approx(20.0)
    assert metrics["disk.used_percent"] == pytest.approx(25.0)
    assert metrics["disk.used_percent[/]"] == pytest.approx(25.0)
    assert metrics["disk.used_percent[/boot]"] == pytest.approx(100.0)
    assert metrics["load.1m"] == 0.5 and metrics["load.15m"] == 0.1
    assert metrics["cpu.percent[cpu0]"] == 20.0 and metrics["cpu.percent[cpu1]"] == 20.0
    assert metrics["cpu.percent"] == 20.0  # no raw ticks: the mean processor load
    assert not any(m.startswith("net.") for m in metrics)  # rates need a second reading


def test_used_memory_without_an_available_row_leaves_out_buffers_and_cache() -> None:
    walked = tables()
    for column in (HR_STORAGE_TYPE, HR_STORAGE_DESCR):
        del walked[column][(11,)]
    plan = plan_from_tables(walked)
    metrics, _ = read_metrics(plan, reading(plan), 10.0, None)
    assert metrics["mem.used_bytes"] == (600 - 50 - 150) * 1024


def test_garbage_load_is_left_out() -> None:
    plan = plan_from_tables(tables())
    values = reading(plan)
    values[(*LA_LOAD, 1)] = "n/a"
    metrics, _ = read_metrics(plan, values, 10.0, None)
    assert "load.1m" not in metrics and metrics["load.5m"] == 0.25


def test_cpu_from_raw_ticks_and_an_unchanged_cache() -> None:
    plan = plan_from_tables(tables())
    ticks = {"user": 100, "nice": 0, "system": 50, "idle": 800, "wait": 50, "steal": 0}
    _, first = read_metrics(plan, reading(plan, cpu=ticks), 10.0, None)
    later = {**ticks, "user": 130, "system": 60, "idle": 860}
    metrics, second = read_metrics(plan, reading(plan, cpu=later), 15.0, first)
    assert metrics["cpu.percent"] == pytest.approx(100.0 * 40 / 100)
    # The agent's cached reading, unchanged: no figure, and the older counters kept.
    metrics, third = read_metrics(plan, reading(plan, cpu=later), 16.0, second)
    assert "cpu.percent" not in metrics
    latest = {**later, "user": 160, "idle": 890}
    metrics, _ = read_metrics(plan, reading(plan, cpu=latest), 20.0, third)
    assert metrics["cpu.percent"] == pytest.approx(50.0)


def test_network_rates_wraps_and_resets() -> None:
    plan = plan_from_tables(tables())
    start = {"lo": 1_000, "eth0": 10_000, "old0": (1 << 32) - 100}
    _, first = read_metrics(plan, reading(plan, rx=start), 100.0, None)
    moved = {"lo": 2_000, "eth0": 30_000, "old0": 900}  # old0 (32-bit) wrapped by 1000
    metrics, second = read_metrics(plan, reading(plan, rx=moved), 110.0, first)
    assert metrics["net.rx_bytes_per_s[eth0]"] == pytest.approx(2_000.0)
    assert metrics["net.tx_bytes_per_s[eth0]"] == pytest.approx(4_000.0)
    assert metrics["net.rx_bytes_per_s[old0]"] == pytest.approx(100.0)
    assert metrics["net.rx_bytes_per_s[lo]"] == pytest.approx(100.0)
    assert metrics["net.rx_bytes_per_s"] == pytest.approx(2_100.0)  # loopback left out
    # A 64-bit counter that went down, and a 32-bit one that went down by more than
    # a wrap explains: reset, no rate.
    reset = {"lo": 3_000, "eth0": 5, "old0": 500_000_000}
    metrics, _ = read_metrics(plan, reading(plan, rx=reset), 120.0, second)
    assert "net.rx_bytes_per_s[eth0]" not in metrics
    assert metrics["net.rx_bytes_per_s[old0]"] == pytest.approx((500_000_000 - 900) / 10)
    assert all(v >= 0 for v in metrics.values())


def test_an_agent_restart_gives_no_rates_that_round() -> None:
    plan = plan_from_tables(tables())
    _, first = read_metrics(plan, reading(plan, uptime=50_000, rx={"eth0": 100}), 0.0, None)
    metrics, second = read_metrics(
        plan, reading(plan, uptime=300, rx={"eth0": 10_000}), 10.0, first
    )
    assert not any(m.startswith("net.") for m in metrics)
    metrics, _ = read_metrics(plan, reading(plan, uptime=1300, rx={"eth0": 20_000}), 20.0, second)
    assert metrics["net.rx_bytes_per_s[eth0]"] == pytest.approx(1_000.0)


def test_no_time_between_readings_gives_no_rates() -> None:
    plan = plan_from_tables(tables())
    _, first = read_metrics(plan, reading(plan, rx={"eth0": 100}), 5.0, None)
    metrics, _ = read_metrics(plan, reading(plan, rx={"eth0": 200}), 5.0, first)
    assert not any(m.startswith("net.") for m in metrics)


# --- the probe, the collector and the hosts --------------------------------------------------


async def test_a_probe_with_no_time_left_is_down_without_asking() -> None:
    clock = FakeClock(start=10.0)
    probe = SnmpProbe("dev", SnmpSettings(community="c"), address="192.0.2.1", clock=clock)
    result = await probe.poll(0, 9.0)
    assert not result.up and "no time left" in result.error
    await probe.close()


def test_a_probe_needs_an_address() -> None:
    with pytest.raises(ValueError, match="needs an address"):
        SnmpProbe("dev", SnmpSettings(community="c"), clock=FakeClock())


def test_monitor_targets_get_a_probe_per_way_in() -> None:
    settings = SnmpSettings(community="c")
    clock = FakeClock()

    def probes(host: object) -> list[type]:
        target = MonitorTarget(host)  # type: ignore[arg-type]
        return [type(p) for p in target.probes(separator="x", session_name="m", clock=clock)]

    assert probes(DeviceHost("192.0.2.1", snmp=settings)) == [SnmpProbe]
    local = LocalHost()
    assert probes(local) == [ShellProbe]
    local.snmp = settings
    assert probes(local) == [SnmpProbe, ShellProbe]
    with pytest.raises(ValueError, match="no shell and no 'snmp'"):
        Collector([DeviceHost("192.0.2.1", name="mute")])


async def test_every_shell_verb_of_a_device_fails_naming_it(tmp_path: Path) -> None:
    device = DeviceHost("192.0.2.1", name="pdu1", snmp=SnmpSettings(community="c"))
    calls = [
        device.run("true"),
        device.oneshot("true"),
        device.open_session("s"),
        device.send("x"),
        device.expect("x", 1.0),
        device.put(str(tmp_path), str(tmp_path)),
        device.get(str(tmp_path), str(tmp_path)),
        device.wait_until_up(1.0),
        device.wait_until_down(1.0),
        device.reboot(),
    ]
    for call in calls:
        with pytest.raises(ConnectError, match=r"^pdu1: .*no shell"):
            await call
    with pytest.raises(ConnectError, match=r"^pdu1: .*no shell"):
        device.start_repeat("r", "true", 1.0)
    with pytest.raises(ConnectError, match=r"^pdu1: .*no shell"):
        async with device.open_app(None, "> "):
            pass
    await device.close()
    assert repr(device) == "DeviceHost('192.0.2.1', name='pdu1')"


# --- the lab -------------------------------------------------------------------------------


def load(tmp_path: Path, *hosts: dict[str, object]) -> Lab:
    path = tmp_path / "lab.json"
    path.write_text(json.dumps({"hosts": list(hosts)}))
    return Lab.load(path)


def test_a_lab_device_with_no_shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNMP_COMMUNITY", "env-secret")
    lab = load(
        tmp_path,
        {
            "name": "sw1",
            "term": "none",
            "address": "192.0.2.7",
            "snmp": {"community": "${SNMP_COMMUNITY}", "port": 1161},
        },
        {"name": "box", "term": "local", "snmp": {"community": "public"}},
    )
    device = lab.host("sw1")
    assert isinstance(device, DeviceHost) and not device.has_shell
    assert device.snmp == SnmpSettings(community="env-secret", port=1161)
    assert "env-secret" not in repr(lab.specs)
    assert lab.host("box").snmp == SnmpSettings(community="public")
    assert lab.host("box").has_shell


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"term": "none", "address": "a"}, "field 'snmp': required for term 'none'"),
        ({"term": "none", "snmp": {"community": "c"}}, "field 'address': required"),
        (
            {"term": "none", "address": "a", "user": "u", "snmp": {"community": "c"}},
            "field 'user': not used by term 'none'",
        ),
        ({"address": "a", "user": "u", "snmp": "public"}, "field 'snmp': must be an object"),
        ({"address": "a", "user": "u", "snmp": {"colour": 1}}, "unknown key 'colour'"),
        ({"address": "a", "user": "u", "snmp": {"version": "3"}}, "SNMPv3 needs a 'user'"),
        ({"address": "a", "user": "u", "snmp": {"port": 99999}}, "'port' must be a port"),
        (
            {"term": "console", "address": "a:1", "snmp": {"community": "c"}},
            "'address' is required for a console host",
        ),
    ],
)
def test_bad_snmp_entries_name_the_file_host_and_field(
    tmp_path: Path, entry: dict[str, object], message: str
) -> None:
    with pytest.raises(LabError, match=message) as caught:
        load(tmp_path, {"name": "h", **entry})
    assert "lab.json: host 'h'" in str(caught.value)


def test_a_bad_community_value_is_never_shown(tmp_path: Path) -> None:
    with pytest.raises(LabError) as caught:
        load(tmp_path, {"name": "h", "address": "a", "user": "u", "snmp": {"community": 4242}})
    assert "4242" not in str(caught.value)
    assert "field 'snmp'" in str(caught.value)


async def test_probes_share_an_engine_only_with_the_same_credentials() -> None:
    from otto.transports.snmp_client import _Engine

    def v3(auth: str, user: str = "otto") -> SnmpSettings:
        return SnmpSettings(version="3", user=user, auth_key=auth, priv_key="priv-pass")

    engines = [
        _Engine.acquire(s)
        for s in (
            v3("auth-pass-1"),
            v3("auth-pass-1"),
            v3("auth-pass-2"),
            v3("auth-pass-1", user="other"),
            SnmpSettings(community="public"),
            SnmpSettings(community="private"),
        )
    ]
    try:
        assert engines[0] is engines[1]
        assert len({id(e) for e in engines[1:5]}) == 4
        assert engines[4] is engines[5]  # v2c: the community travels in each message
    finally:
        for engine in engines:
            engine.release()
