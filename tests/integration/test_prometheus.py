"""A real Prometheus server scrapes a live otto monitor over the SSH lab, and PromQL answers."""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from otto import LocalHost
from otto.monitor import Collector
from otto.monitor.access import new_token
from otto.monitor.web import DashboardServer
from tests.integration.hosts import remote_host
from tests.lab import Lab
from tests.lab.prometheus import PrometheusServer, ScrapeJob, make_tls, prometheus_missing

WAIT = 30.0

pytestmark = pytest.mark.skipif(prometheus_missing() is not None, reason=str(prometheus_missing()))


class ScrapeWatch:
    """Wraps a dashboard app to count the /metrics answers it gave, by status."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.state = getattr(app, "state", None)  # the server ends its streams through it
        self.answers: dict[int, int] = {}
        self.changed = asyncio.Condition()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        if scope["type"] == "http" and scope["path"] == "/metrics":
            async with self.changed:
                self.answers[status] = self.answers.get(status, 0) + 1
                self.changed.notify_all()

    async def wait_for(self, status: int, count: int) -> None:
        """Until ``count`` more /metrics requests were answered ``status``."""
        async with self.changed:
            target = self.answers.get(status, 0) + count
            async with asyncio.timeout(WAIT):
                await self.changed.wait_for(lambda: self.answers.get(status, 0) >= target)


async def first_round(collector: Collector) -> None:
    stream: AsyncIterator[dict[str, object]] = collector.subscribe()
    async with asyncio.timeout(WAIT):
        async for update in stream:
            if update["type"] == "round":
                return


def by_host(result: list[dict[str, object]]) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {}
    for series in result:
        labels = series["metric"]
        value = series["value"]
        assert isinstance(labels, dict) and isinstance(value, list)
        assert all(labels.values()), labels  # no empty label values
        found.setdefault(labels["host"], []).append(float(value[1]))
    return found


def check_conventions(text: str, hosts: set[str]) -> None:
    """Prometheus's naming conventions, on what a live collector over real hosts exports."""
    families = list(text_string_to_metric_families(text))
    kinds = {family.name: family.type for family in families}
    for family in families:
        assert family.documentation and "otto metric" not in family.documentation, family.name
        assert "percent" not in family.name, family.name  # shares are ratios
        assert family.type in {"gauge", "counter"}, family.name
        for sample in family.samples:
            assert all(sample.labels.values()), sample  # no empty label values
            if family.type == "gauge":
                assert not sample.name.endswith("_total"), sample.name
            if family.name.endswith("_ratio"):
                assert 0.0 <= sample.value <= 1.0, sample
    for name in (
        "otto_cpu_seconds",
        "otto_network_receive_bytes",
        "otto_network_transmit_bytes",
        "otto_rounds",
    ):
        assert kinds.get(name) == "counter", (name, sorted(kinds))
    for name in ("otto_cpu_busy_ratio", "otto_memory_used_bytes", "otto_load1"):
        assert kinds.get(name) == "gauge", (name, sorted(kinds))
    labelled = {
        (family.name, label)
        for family in families
        for sample in family.samples
        for label in sample.labels
    }
    assert ("otto_cpu_seconds", "cpu") in labelled and ("otto_cpu_seconds", "mode") in labelled
    assert ("otto_network_receive_bytes", "interface") in labelled
    assert ("otto_filesystem_used_ratio", "mountpoint") in labelled
    up = next(f for f in families if f.name == "otto_host_up")
    assert {s.labels["host"] for s in up.samples} == hosts


async def test_prometheus_scrapes_otto_and_rate_answers(lab: Lab, tmp_path: Path) -> None:
    hosts = [remote_host(lab, "ssh1"), remote_host(lab, "ssh2"), LocalHost(name="local0")]
    names = {"ssh1", "ssh2", "local0"}
    tls = make_tls(tmp_path / "tls")
    token = new_token()
    collector = Collector(hosts, interval=0.25)
    try:
        async with collector:
            await first_round(collector)
            plain = DashboardServer(collector, port=0)
            # Beyond loopback: a token, and HTTPS; Prometheus sends the token as a bearer.
            guarded = DashboardServer(
                collector, host="0.0.0.0", port=0, token=token, tls_cert=tls.cert, tls_key=tls.key
            )
            plain_watch, guarded_watch = ScrapeWatch(plain.app), ScrapeWatch(guarded.app)
            plain.app, guarded.app = plain_watch, guarded_watch  # type: ignore[assignment]
            async with plain, guarded:
                jobs = [
                    ScrapeJob("otto", f"127.0.0.1:{plain.port}"),
                    ScrapeJob(
                        "otto_tls",
                        f"127.0.0.1:{guarded.port}",
                        scheme="https",
                        token=token,
                        ca_file=tls.ca,
                    ),
                    ScrapeJob(
                        "otto_wrong_token",
                        f"127.0.0.1:{guarded.port}",
                        scheme="https",
                        token=new_token(),
                        ca_file=tls.ca,
                    ),
                ]
                async with PrometheusServer(jobs, interval="1s") as prometheus:
                    # rate() divides by its whole range: wait until scrapes cover it.
                    await asyncio.gather(
                        plain_watch.wait_for(200, 7),
                        guarded_watch.wait_for(200, 7),
                        guarded_watch.wait_for(401, 2),
                    )
                    received = await prometheus.query(
                        'rate(otto_network_receive_bytes_total{job="otto"}[5s])'
                    )
                    cpu = await prometheus.query(
                        'sum by (host) (rate(otto_cpu_seconds_total{job="otto_tls"}[5s]))'
                    )
                    busy = await prometheus.query('otto_cpu_busy_ratio{job="otto_tls"} >= 0 <= 1')
                    up = await prometheus.query('otto_host_up{job="otto"}')
                    refused = await prometheus.query('up{job="otto_wrong_token"}')
                    targets = await prometheus.targets()
                    async with httpx.AsyncClient(timeout=WAIT) as http:
                        exposition = (await http.get(f"http://127.0.0.1:{plain.port}/metrics")).text
    finally:
        for host in hosts:
            await host.close()

    check_conventions(exposition, names)
    rates = by_host(received)
    assert set(rates) == names, received
    assert all(math.isfinite(v) and v >= 0 for values in rates.values() for v in values)
    interfaces = {s["metric"]["interface"] for s in received}  # type: ignore[index]
    assert "lo" in interfaces
    # CPU seconds per second over all cores: about the number of cores, not 100x it
    # (ticks) nor 1/100 of it.
    cores = os.cpu_count() or 1
    seconds = by_host(cpu)
    assert set(seconds) == names, cpu
    for host, (value,) in seconds.items():
        assert cores / 4 <= value <= cores * 4, (host, value, cores)
    assert set(by_host(busy)) == names
    assert {host: values for host, values in by_host(up).items()} == {n: [1.0] for n in names}
    assert [float(s["value"][1]) for s in refused] == [0.0]  # type: ignore[index]
    wrong = [t for t in targets if t["labels"]["job"] == "otto_wrong_token"]  # type: ignore[index]
    assert wrong and "401" in str(wrong[0]["lastError"]), wrong
    healthy = {t["labels"]["job"]: t["health"] for t in targets}  # type: ignore[index]
    assert healthy["otto"] == healthy["otto_tls"] == "up", targets
