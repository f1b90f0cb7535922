"""The collector on real LocalHosts: rounds, a host timing out and rejoining, busybox, storage."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from otto import LocalHost
from otto.monitor import Collector, MonitorTarget, gauge_parser
from otto.monitor.parsers import CORE_METRICS
from otto.monitor.prometheus import render_metrics
from tests.integration.hosts import remote_host
from tests.lab import Lab

WAIT = 20.0
CONTRACT = CORE_METRICS


async def next_round(stream: AsyncIterator[dict[str, object]]) -> dict[str, dict[str, object]]:
    while True:
        update = await asyncio.wait_for(anext(stream), WAIT)
        if update["type"] == "round":
            hosts = update["hosts"]
            assert isinstance(hosts, dict)
            return hosts


async def test_rounds_over_local_hosts_give_every_contract_metric(tmp_path: Path) -> None:
    hosts = [LocalHost(name=f"local{i}") for i in range(3)]
    collector = Collector(hosts, interval=0.3, db=tmp_path / "m.db")
    stream = collector.subscribe()
    try:
        async with collector:
            await next_round(stream)
            second = await next_round(stream)
            text = render_metrics(collector).decode()
    finally:
        for host in hosts:
            await host.close()
    for name, result in second.items():
        assert result["up"], (name, result)
        metrics = result["metrics"]
        assert isinstance(metrics, dict)
        for metric in CONTRACT:
            assert metric in metrics, (name, metric)
        assert 0.0 <= metrics["cpu.percent"] <= 100.0
        assert metrics["mem.used_bytes"] < metrics["mem.total_bytes"]
    # The same round time for every host: they were polled at the same instant.
    times = {tuple(t for t, _ in collector.series(h.name, "mem.percent")) for h in hosts}
    assert len(times) == 1
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert {s.labels["host"] for s in families["otto_host_up"].samples} == {
        "local0",
        "local1",
        "local2",
    }
    assert "otto_cpu_busy_ratio" in families
    assert "otto_network_receive_bytes" in families  # the counter, sampled as _total
    db = sqlite3.connect(tmp_path / "m.db")
    (hosts_stored,) = db.execute("select count(*) from hosts").fetchone()
    (rounds_stored,) = db.execute("select count(*) from rounds").fetchone()
    db.close()
    assert hosts_stored == 3 and rounds_stored >= 2


async def test_a_host_that_times_out_is_down_then_rejoins(tmp_path: Path) -> None:
    flag = tmp_path / "stall"
    flag.touch()
    # A probe that hangs while the flag file exists: the round's timeout cuts it.
    probe = f"if [ -e {flag} ]; then sleep 30; fi; echo 7"
    steady, stalling = LocalHost(name="steady"), LocalHost(name="stalling")
    target = MonitorTarget(stalling, parsers={probe: gauge_parser(lambda t: {"probe": float(t)})})
    collector = Collector([steady, target], interval=0.5)
    stream = collector.subscribe()
    try:
        async with collector:
            first = await next_round(stream)
            assert first["steady"]["up"] is True
            assert first["stalling"]["up"] is False
            assert "no answer within" in str(first["stalling"]["last_error"])
            flag.unlink()
            for _ in range(4):
                later = await next_round(stream)
                assert later["steady"]["up"] is True
                if later["stalling"]["up"]:
                    break
            else:
                pytest.fail("the stalled host never rejoined")
            metrics = later["stalling"]["metrics"]
            assert isinstance(metrics, dict) and metrics["probe"] == 7.0
    finally:
        await steady.close()
        await stalling.close()


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
async def test_a_busybox_host_with_a_missing_command(tmp_path: Path) -> None:
    # A host whose only programs are busybox applets: its sh, cat and df, no GPU tool.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    busybox = shutil.which("busybox")
    assert busybox is not None
    for applet in ("sh", "cat", "df", "printf"):
        (bin_dir / applet).symlink_to(busybox)
    host = LocalHost(name="tiny", shell=str(bin_dir / "sh"), env={"PATH": str(bin_dir)})
    gpu = "nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits"
    target = MonitorTarget(host, parsers={gpu: gauge_parser(lambda t: {"gpu.percent": float(t)})})
    collector = Collector([target], interval=0.4)
    stream = collector.subscribe()
    try:
        async with collector:
            await next_round(stream)
            result = (await next_round(stream))["tiny"]
    finally:
        await host.close()
    assert result["up"] is True
    assert result["last_error"] == f"{gpu}: exit status 127"
    metrics = result["metrics"]
    assert isinstance(metrics, dict)
    for metric in CONTRACT:
        assert metric in metrics, metric
    assert "gpu.percent" not in metrics


async def test_remote_hosts_and_a_cut_link(fault_lab: Lab) -> None:
    local = LocalHost(name="here")
    ssh = remote_host(fault_lab, "ssh2")
    telnet = remote_host(fault_lab, "telnet1")
    collector = Collector([local, ssh, telnet], interval=1.0)
    stream = collector.subscribe()
    try:
        async with collector:
            await next_round(stream)
            hosts = await next_round(stream)
            for name in ("here", "ssh2", "telnet1"):
                assert hosts[name]["up"], (name, hosts[name])
                metrics = hosts[name]["metrics"]
                assert isinstance(metrics, dict)
                assert "cpu.percent" in metrics and "mem.percent" in metrics, name
            await fault_lab.cut_network("ssh2")
            for _ in range(5):
                hosts = await next_round(stream)
                assert hosts["here"]["up"] is True
                if not hosts["ssh2"]["up"]:
                    break
            else:
                pytest.fail("ssh2 stayed up with its network cut")
            await fault_lab.restore_network("ssh2")
            for _ in range(30):
                hosts = await next_round(stream)
                assert hosts["here"]["up"] is True
                if hosts["ssh2"]["up"]:
                    break
            else:
                pytest.fail("ssh2 never rejoined after its network came back")
    finally:
        for host in (local, ssh, telnet):
            await host.close()
