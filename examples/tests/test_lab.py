"""Tests that look at the lab, and one test per host a mark picks."""

from __future__ import annotations

import pytest

from otto import Host, Lab


def test_the_lab_has_hosts(lab: Lab) -> None:
    assert lab.names


async def test_every_host_answers(hosts: dict[str, Host]) -> None:
    for name, host in hosts.items():
        result = await host.run("echo ok")
        assert result.only.output == "ok", name


@pytest.mark.hosts(".*")  # one run per host whose name matches: ids are host names
async def test_on_each_host(host: Host) -> None:
    result = await host.run("test -d /tmp")
    assert result.is_ok
