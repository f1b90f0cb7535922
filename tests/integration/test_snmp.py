"""SNMP hosts against real net-snmp agents in the lab's namespaces (tests/lab/snmp.py).

A device with no shell (term 'none') and a host with a shell and SNMP, read
through a lab file; an agent that does not answer, a wrong community, a
32-bit counter that wraps, a counter that resets, an agent that restarts and
an agent without 64-bit counters.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from otto.errors import ConnectError
from otto.lab import Lab as OttoLab
from otto.monitor import Collector
from otto.monitor.prometheus import render_metrics
from otto.monitor.snmp import SnmpProbe
from otto.periodic import FakeClock
from otto.transports.snmp import SnmpSettings
from tests.integration.test_cli import StartMonitor, clean_env, next_round, start_monitor
from tests.lab import Lab
from tests.lab.snmp import Counters, SnmpAgent, SnmpLab, snmpd_missing

pytestmark = pytest.mark.integration

__all__ = ["start_monitor"]  # the fixture, used by the CLI test below

CORE = ("mem.total_bytes", "mem.used_bytes", "mem.percent", "load.1m", "disk.used_percent")


@pytest_asyncio.fixture(loop_scope="session")
async def snmp(lab: Lab) -> AsyncIterator[SnmpLab]:
    missing = snmpd_missing()
    if missing:
        pytest.skip(missing)
    async with SnmpLab(lab) as agents:
        yield agents


def settings(agent: SnmpAgent, **more: object) -> SnmpSettings:
    given: dict[str, object] = {"community": agent.community, "port": agent.port}
    given.update(more)
    return SnmpSettings(**given)  # type: ignore[arg-type]


def lab_file(tmp_path: Path, hosts: list[dict[str, object]]) -> Path:
    path = tmp_path / "lab.json"
    path.write_text(json.dumps({"hosts": hosts}))
    return path


async def test_a_device_with_no_shell_is_monitored_over_snmp(snmp: SnmpLab, tmp_path: Path) -> None:
    agent = await snmp.agent("ssh2")
    path = lab_file(
        tmp_path,
        [
            {
                "name": "switch1",
                "term": "none",
                "address": agent.address,
                "snmp": {"community": "public", "port": agent.port, "version": "2c"},
            }
        ],
    )
    lab = OttoLab.load(path)
    device = lab.host("switch1")
    assert "public" not in repr(lab.specs) and "public" not in repr(device.snmp)
    with pytest.raises(ConnectError, match=r"switch1: .*no shell"):
        await device.run("true")
    with pytest.raises(ConnectError, match=r"switch1: .*no shell"):
        await device.oneshot("true")
    with pytest.raises(ConnectError, match=r"switch1: .*no shell"):
        await device.put(str(path), "/tmp")
    async with Collector(lab.hosts(), interval=30.0) as collector:
        first = (await collector.poll_round())["switch1"]
        assert first.up, first.error
        for metric in CORE:
            assert metric in first.metrics, metric
        assert 0 < first.metrics["mem.used_bytes"] < first.metrics["mem.total_bytes"]
        second = (await collector.poll_round())["switch1"]  # rates need two readings
        assert second.up, second.error
        assert second.metrics["net.rx_bytes_per_s"] >= 0
        assert any(m.startswith("net.rx_bytes_per_s[") for m in second.metrics)
    await lab.close()


async def test_a_host_with_a_shell_and_snmp_gets_both(
    lab: Lab, snmp: SnmpLab, tmp_path: Path
) -> None:
    counters = Counters({7: ("snmp0", 1000, 2000)}, wide=True)
    agent = await snmp.agent("ssh1", counters=counters)
    ssh1 = lab.hosts["ssh1"]
    path = lab_file(
        tmp_path,
        [
            {
                "name": "ssh1",
                "address": ssh1.address,
                "port": ssh1.port,
                "user": ssh1.user,
                "password": ssh1.password,
                "known_hosts": str(lab.known_hosts),
                "snmp": {"community": "public", "port": agent.port},
            }
        ],
    )
    otto_lab = OttoLab.load(path)
    clock = FakeClock(start=1000.0)
    collector = Collector(otto_lab.hosts(), interval=30.0, clock=clock)
    try:
        await collector.poll_round()
        clock.advance(10.0)
        counters.interfaces[7] = ("snmp0", 1000 + 5000, 2000 + 300)
        counters.write()
        result = (await collector.poll_round())["ssh1"]
        assert result.up, result.error
        # From the agent: the interface only it has, at the exact rate.
        assert result.metrics["net.rx_bytes_per_s[snmp0]"] == pytest.approx(500.0)
        assert result.metrics["net.tx_bytes_per_s[snmp0]"] == pytest.approx(30.0)
        # From the shell: what only /proc gives.
        assert "procs.total" in result.metrics
        # /metrics exports the agent's 64-bit byte counters as _total counters,
        # beside the shell's own interfaces.
        text = render_metrics(collector).decode()
        snmp0 = 'interface="snmp0"'
        assert f'otto_network_receive_bytes_total{{host="ssh1",{snmp0}}} 6000.0' in text
        assert f'otto_network_transmit_bytes_total{{host="ssh1",{snmp0}}} 2300.0' in text
        assert 'otto_network_receive_bytes_total{host="ssh1",interface="lo"}' in text
    finally:
        await collector.stop()
        await otto_lab.close()


async def poll(probe: SnmpProbe, clock: FakeClock, index: int, budget: float = 5.0) -> object:
    return await probe.poll(index, clock.monotonic() + budget)


async def test_a_32_bit_counter_that_wraps_gives_the_true_rate(snmp: SnmpLab) -> None:
    counters = Counters({1: ("eth9", (1 << 32) - 1000, 10)})
    agent = await snmp.agent("ssh1", counters=counters)
    clock = FakeClock(start=50.0)
    probe = SnmpProbe("dev", settings(agent), address=agent.address, clock=clock)
    try:
        first = await probe.poll(0, clock.monotonic() + 5)
        assert first.up, first.error
        clock.advance(10.0)
        counters.interfaces[1] = ("eth9", 5000, 20)  # past 2**32: it wrapped
        counters.write()
        second = await probe.poll(1, clock.monotonic() + 5)
        assert second.up, second.error
        assert second.metrics["net.rx_bytes_per_s[eth9]"] == pytest.approx(600.0)
        assert second.metrics["net.tx_bytes_per_s[eth9]"] == pytest.approx(1.0)
        assert second.metrics["net.rx_bytes_per_s"] == pytest.approx(600.0)
        # The round's cost: one GET's answer, counted in bytes.
        assert second.cost is not None and 0 < second.cost.received < first.cost.received  # type: ignore[union-attr]
    finally:
        await probe.close()


async def test_a_counter_reset_gives_no_rate_never_a_negative_or_huge_one(
    snmp: SnmpLab,
) -> None:
    counters = Counters({1: ("eth9", 3_000_000_000, 2_000_000_000)})
    agent = await snmp.agent("ssh1", counters=counters)
    clock = FakeClock(start=50.0)
    probe = SnmpProbe("dev", settings(agent), address=agent.address, clock=clock)
    try:
        await probe.poll(0, clock.monotonic() + 5)
        clock.advance(10.0)
        counters.interfaces[1] = ("eth9", 1000, 2000)  # far down: a reset, not a wrap
        counters.write()
        second = await probe.poll(1, clock.monotonic() + 5)
        assert second.up, second.error
        assert "net.rx_bytes_per_s[eth9]" not in second.metrics
        assert "net.tx_bytes_per_s[eth9]" not in second.metrics
        assert all(v >= 0 for k, v in second.metrics.items() if k.startswith("net."))
        clock.advance(10.0)
        counters.interfaces[1] = ("eth9", 1000 + 700, 2000 + 70)
        counters.write()
        third = await probe.poll(2, clock.monotonic() + 5)
        assert third.metrics["net.rx_bytes_per_s[eth9]"] == pytest.approx(70.0)
        assert third.metrics["net.tx_bytes_per_s[eth9]"] == pytest.approx(7.0)
    finally:
        await probe.close()


async def test_an_agent_restart_drops_the_rates_of_that_round(snmp: SnmpLab) -> None:
    counters = Counters({1: ("eth9", 1_000_000, 1_000_000)}, wide=True)
    agent = await snmp.agent("ssh1", counters=counters)
    clock = FakeClock(start=50.0)
    probe = SnmpProbe("dev", settings(agent), address=agent.address, clock=clock)
    try:
        await probe.poll(0, clock.monotonic() + 5)
        # sysUpTime must have moved on before the restart for "went back" to show.
        clock.advance(10.0)
        counters.interfaces[1] = ("eth9", 1_000_500, 1_000_500)
        counters.write()
        before = await probe.poll(1, clock.monotonic() + 5)
        assert before.metrics["net.rx_bytes_per_s[eth9]"] == pytest.approx(50.0)
        await agent.restart()
        clock.advance(10.0)
        # The counters look as if they grew; the agent's clock says it restarted.
        counters.interfaces[1] = ("eth9", 9_000_000, 9_000_000)
        counters.write()
        after = await probe.poll(2, clock.monotonic() + 5)
        assert after.up, after.error
        assert "net.rx_bytes_per_s[eth9]" not in after.metrics
        assert "mem.total_bytes" in after.metrics
    finally:
        await probe.close()


async def test_an_agent_without_64_bit_counters_is_read_through_the_32_bit_ones(
    snmp: SnmpLab,
) -> None:
    counters = Counters({3: ("old0", 100, 100)}, wide=False)
    agent = await snmp.agent("ssh1", counters=counters)
    clock = FakeClock(start=50.0)
    probe = SnmpProbe("dev", settings(agent), address=agent.address, clock=clock)
    try:
        await probe.poll(0, clock.monotonic() + 5)
        clock.advance(4.0)
        counters.interfaces[3] = ("old0", 500, 300)
        counters.write()
        second = await probe.poll(1, clock.monotonic() + 5)
        assert second.metrics["net.rx_bytes_per_s[old0]"] == pytest.approx(100.0)
        assert second.metrics["net.tx_bytes_per_s[old0]"] == pytest.approx(50.0)
    finally:
        await probe.close()


async def test_an_agent_that_does_not_answer_is_down_by_the_deadline(snmp: SnmpLab) -> None:
    agent = await snmp.agent("ssh2")
    # Three tries of 0.2 s end inside the 1 s round: the round gets the probe's own
    # report. (A probe still asking at the deadline keeps its poll and the round says
    # "no answer within 1s": tests/unit/monitor/test_collector.py.)
    device_settings = settings(agent, timeout=0.2, retries=2)
    from otto.hosts.device import DeviceHost

    device = DeviceHost(agent.address, name="silent", snmp=device_settings)
    async with Collector([device], interval=1.0) as collector:
        first = await collector.poll_round()
        assert first["silent"].up, first["silent"].error
        agent.freeze()
        try:
            result = (await collector.poll_round())["silent"]
        finally:
            agent.thaw()
        assert not result.up
        # The probe's own report (not the collector cutting it off at the deadline):
        # the host, the agent's address and what was asked.
        assert result.error.startswith("silent: SNMP v2c at udp:")
        assert f"{agent.address}:{agent.port}" in result.error
        assert "no answer to GET" in result.error
        back = (await collector.poll_round())["silent"]
        assert back.up, back.error


async def test_a_wrong_community_is_a_clear_error(snmp: SnmpLab) -> None:
    agent = await snmp.agent("ssh2", community="right-one")
    clock = FakeClock(start=50.0)
    probe = SnmpProbe(
        "dev",
        SnmpSettings(community="wrong-one", port=agent.port, timeout=0.2, retries=0),
        address=agent.address,
        clock=clock,
    )
    try:
        result = await probe.poll(0, clock.monotonic() + 1.0)
        assert not result.up
        assert result.error.startswith(f"dev: SNMP v2c at udp:{agent.address}:{agent.port}")
        assert "community" in result.error
        assert "wrong-one" not in result.error
    finally:
        await probe.close()


async def test_snmp_v3_with_authentication_and_privacy(snmp: SnmpLab) -> None:
    agent = await snmp.agent("ssh2", v3=("otto", "auth-pass-1", "priv-pass-1"))
    clock = FakeClock(start=50.0)
    good = SnmpSettings(
        version="3", user="otto", auth_key="auth-pass-1", priv_key="priv-pass-1", port=agent.port
    )
    probe = SnmpProbe("v3dev", good, address=agent.address, clock=clock)
    bad = SnmpProbe(
        "v3bad",
        SnmpSettings(
            version="3",
            user="otto",
            auth_key="not-the-pass",
            priv_key="priv-pass-1",
            port=agent.port,
            timeout=0.3,
            retries=0,
        ),
        address=agent.address,
        clock=clock,
    )
    try:
        result = await probe.poll(0, clock.monotonic() + 5)
        assert result.up, result.error
        assert "mem.total_bytes" in result.metrics
        refused = await bad.poll(0, clock.monotonic() + 2)
        assert not refused.up
        assert refused.error.startswith("v3bad: SNMP v3 user 'otto' authPriv at udp:")
        assert "not-the-pass" not in refused.error
    finally:
        await probe.close()
        await bad.close()


async def test_otto_monitor_watches_a_device_with_no_shell(
    snmp: SnmpLab, start_monitor: StartMonitor, tmp_path: Path
) -> None:
    agent = await snmp.agent("ssh2")
    path = lab_file(
        tmp_path,
        [
            {
                "name": "pdu1",
                "term": "none",
                "address": agent.address,
                "snmp": {"community": "public", "port": agent.port},
            }
        ],
    )
    monitor = start_monitor("--lab", str(path))
    assert b"watching pdu1" in monitor.output
    first = next_round(monitor.port)
    hosts = first["hosts"]
    assert isinstance(hosts, dict)
    assert hosts["pdu1"]["up"] is True, hosts["pdu1"]
    assert "mem.total_bytes" in hosts["pdu1"]["metrics"]
    # The other process's blocking reads: the agents are processes of their own.
    assert monitor.stop() == 0, monitor.output.decode(errors="replace")


async def test_an_interface_that_goes_away_makes_the_tables_walked_again_soon(
    snmp: SnmpLab,
) -> None:
    counters = Counters({1: ("if1", 0, 0), 2: ("if2", 0, 0)}, wide=True)
    agent = await snmp.agent("ssh1", counters=counters)
    clock = FakeClock(start=50.0)
    probe = SnmpProbe("dev", settings(agent), address=agent.address, clock=clock, refresh=1000)
    try:
        await probe.poll(0, clock.monotonic() + 5)
        counters.interfaces = {1: ("if1", 0, 0), 3: ("if3", 0, 0)}  # if2 gone, if3 new
        counters.write()
        seen = None
        for index in range(1, 20):
            clock.advance(1.0)
            result = await probe.poll(index, clock.monotonic() + 5)
            assert result.up, result.error
            if "net.rx_bytes_per_s[if3]" in result.metrics:
                seen = index
                break
        # Seen after the next walk (at most ten rounds later) and a second reading,
        # not after the `refresh` of 1000 rounds.
        assert seen is not None and seen <= 12
    finally:
        await probe.close()


async def test_two_v3_devices_with_one_user_name_and_different_keys_are_both_read(
    snmp: SnmpLab,
) -> None:
    # One shared engine kept one USM entry per user name: each probe's keys
    # replaced the other's, and every round one of them got 'Wrong SNMP PDU digest'.
    first = await snmp.agent("ssh1", v3=("otto", "auth-pass-one", "priv-pass-one"))
    second = await snmp.agent("ssh2", v3=("otto", "auth-pass-two", "priv-pass-two"))
    clock = FakeClock(start=50.0)
    probes = [
        SnmpProbe(
            f"dev{n}",
            SnmpSettings(
                version="3",
                user="otto",
                auth_key=f"auth-pass-{word}",
                priv_key=f"priv-pass-{word}",
                port=agent.port,
            ),
            address=agent.address,
            clock=clock,
        )
        for n, (word, agent) in enumerate((("one", first), ("two", second)), 1)
    ]
    try:
        for index in range(3):
            rounds = await asyncio.gather(
                *(probe.poll(index, clock.monotonic() + 5) for probe in probes)
            )
            for result in rounds:
                assert result.up, f"round {index}: {result.error}"
                assert "mem.total_bytes" in result.metrics
            clock.advance(1.0)
    finally:
        for probe in probes:
            await probe.close()


async def test_otto_monitor_of_snmp_devices_prints_nothing_on_stderr(
    snmp: SnmpLab, tmp_path: Path
) -> None:
    # pysnmp, pyasn1 and uvicorn are imported and used: none of them may speak.
    agent = await snmp.agent("ssh2", v3=("otto", "auth-pass-1", "priv-pass-1"))
    path = lab_file(
        tmp_path,
        [
            {
                "name": "pdu1",
                "term": "none",
                "address": agent.address,
                "snmp": {"community": "public", "port": agent.port},
            },
            {
                "name": "pdu2",
                "term": "none",
                "address": agent.address,
                "snmp": {
                    "version": "3",
                    "user": "otto",
                    "auth_key": "auth-pass-1",
                    "priv_key": "priv-pass-1",
                    "port": agent.port,
                },
            },
        ],
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "otto",
        "--lab",
        str(path),
        "monitor",
        "--port",
        "0",
        "--interval",
        "0.5",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=clean_env(),
    )
    assert proc.stdout is not None
    output = b""
    try:
        async with asyncio.timeout(30):
            # The cost lines come after the first round has been answered.
            while b"cost pdu1:" not in output or b"cost pdu2:" not in output:
                line = await proc.stdout.readline()
                assert line, output
                output += line
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(30):
            rest, errors = await proc.communicate()
    output += rest
    assert proc.returncode == 0, output + errors
    assert errors == b""


async def test_otto_monitor_reads_two_v3_devices_with_one_user_name_every_round(
    snmp: SnmpLab, start_monitor: StartMonitor, tmp_path: Path
) -> None:
    first = await snmp.agent("ssh1", v3=("otto", "auth-pass-one", "priv-pass-one"))
    second = await snmp.agent("ssh2", v3=("otto", "auth-pass-two", "priv-pass-two"))
    path = lab_file(
        tmp_path,
        [
            {
                "name": name,
                "term": "none",
                "address": agent.address,
                "snmp": {
                    "version": "3",
                    "user": "otto",
                    "auth_key": f"auth-pass-{word}",
                    "priv_key": f"priv-pass-{word}",
                    "port": agent.port,
                },
            }
            for name, word, agent in (("pdu1", "one", first), ("pdu2", "two", second))
        ],
    )
    monitor = start_monitor("--interval", "1", env=clean_env(OTTO_LAB=str(path)))
    # The first rounds may end before an agent's engine discovery: then every round
    # answers both (before, each round's keys replaced the other's, one of them failed).
    both = 0
    for _ in range(20):
        hosts = next_round(monitor.port)["hosts"]
        assert isinstance(hosts, dict)
        if hosts["pdu1"]["up"] and hosts["pdu2"]["up"]:
            both += 1
            if both == 3:
                break
        else:
            assert both == 0, hosts  # once both answer, they go on answering
    assert both == 3
    assert monitor.stop() == 0, monitor.output.decode(errors="replace")
