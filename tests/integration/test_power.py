"""Power and reboot against real lab nodes whose power switch kills and restarts them.

The lab here is the module's own (tests/lab/power.py explains why): ``pw1``
and ``pw2`` are SSH hosts; their power scripts drop every packet and kill
every process of the node, then start its sshd again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from otto import RemoteHost
from otto.errors import ConnectError
from otto.hosts.device import DeviceHost
from otto.hosts.power import PowerSpec
from tests.integration.hosts import remote_host
from tests.lab import Lab
from tests.lab.hosts import NodeSpec
from tests.lab.power import power_script
from tests.lab.privilege import NOPASSWD_USER
from tests.lab.users import LAB_PASSWORD

pytestmark = pytest.mark.integration

NODES = (
    NodeSpec("pw1", None, (("pw1", "ssh"),)),
    NodeSpec("pw2", None, (("pw2", "ssh"),)),
)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def power_lab() -> AsyncIterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("the integration lab needs root")
    async with Lab(NODES) as lab:
        if not lab.uses_netns:
            pytest.skip("power switches need the lab in netns mode")
        yield lab


def switched(lab: Lab, name: str, **kwargs: object) -> RemoteHost:
    script = power_script(lab, name)
    spec = PowerSpec(on=f"{script} on", off=f"{script} off")
    options: dict[str, object] = {"power": spec, "connect_timeout": 3.0}
    options.update(kwargs)
    return remote_host(lab, name, **options)


async def test_power_off_and_on_is_a_real_outage(power_lab: Lab) -> None:
    host = switched(power_lab, "pw1")
    try:
        assert (await host.run("echo up")).only.output == "up"
        await host.power("off")
        with pytest.raises(ConnectError, match="pw1"):
            await host.wait_until_up(timeout=1)
        await host.wait_until_down(timeout=5)
        await host.power("on")
        await host.wait_until_up(timeout=20)
        assert (await host.run("echo back")).only.output == "back"
    finally:
        await host.power("on")
        await host.close()


async def test_hard_reboot_power_cycles_and_sessions_start_fresh(
    power_lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    host = switched(power_lab, "pw1")
    try:
        session = await host.open_session("state")
        await session.run("export BEFORE=kept")
        old_pid = (await session.run("echo $$")).only.output
        caplog.set_level(logging.WARNING)
        await host.reboot(hard=True, timeout=30)
        assert (await session.run("echo ${BEFORE:-gone}")).only.output == "gone"
        assert (await session.run("echo $$")).only.output != old_pid
        assert any(
            "state" in r.getMessage() and "fresh shell" in r.getMessage() for r in caplog.records
        )
    finally:
        await host.close()


async def test_soft_reboot_runs_the_reboot_command_and_waits_for_the_host(
    power_lab: Lab,
) -> None:
    script = power_script(power_lab, "pw2")
    host = remote_host(
        power_lab, "pw2", user=NOPASSWD_USER, password=LAB_PASSWORD, key=None, connect_timeout=3.0
    )
    try:
        before = (await host.run("echo $$")).only.output
        await host.reboot(timeout=30, command=f"sudo -n {script} reboot")
        assert (await host.run("echo $$")).only.output != before
    finally:
        await host.close()


async def test_a_reboot_command_that_fails_is_the_error(power_lab: Lab) -> None:
    host = remote_host(power_lab, "pw2", connect_timeout=3.0)
    try:
        with pytest.raises(ConnectError, match=r"pw2.*status 3.*no reboot here"):
            await host.reboot(timeout=20, command="echo no reboot here; exit 3")
    finally:
        await host.close()


async def test_a_host_that_never_comes_back_fails_at_the_timeout(power_lab: Lab) -> None:
    script = power_script(power_lab, "pw1")
    host = switched(power_lab, "pw1", power=PowerSpec(off=f"{script} off", on="true"))
    try:
        with pytest.raises(ConnectError) as info:
            await host.reboot(hard=True, timeout=4)
        assert "pw1" in str(info.value)
        assert "within 4s" in str(info.value)
    finally:
        switch_on = await asyncio.create_subprocess_exec(str(script), "on")
        assert await switch_on.wait() == 0
        await host.wait_until_up(timeout=20)
        await host.close()


async def test_an_unreachable_controller_names_both_hosts(power_lab: Lab) -> None:
    controller = RemoteHost(
        "127.0.0.1", user="nobody", port=1, name="pdu", known_hosts=None, connect_timeout=2
    )
    host = switched(power_lab, "pw1", power=PowerSpec(on="true", off="true", via=controller))
    try:
        with pytest.raises(ConnectError) as info:
            await host.power("off")
        assert "pw1" in str(info.value) and "pdu" in str(info.value)
    finally:
        await host.close()
        await controller.close()


async def test_a_failing_power_command_shows_its_output(power_lab: Lab) -> None:
    host = switched(power_lab, "pw1", power=PowerSpec(off="echo relay stuck >&2; exit 7"))
    try:
        with pytest.raises(ConnectError, match=r"pw1: power off.*status 7.*relay stuck"):
            await host.power("off")
        with pytest.raises(ValueError, match="no power 'on' command"):
            await host.power("on")
    finally:
        await host.close()


async def test_a_hung_power_command_is_bounded_by_the_reboots_timeout(power_lab: Lab) -> None:
    script = power_script(power_lab, "pw1")
    hung = f"sleep 600 && {script} cycle"
    host = switched(power_lab, "pw1", power=PowerSpec(cycle=hung))
    try:
        # The guard is the test's own: without the fix the command had 120 s.
        with pytest.raises(ConnectError) as info:
            await asyncio.wait_for(host.reboot(hard=True, timeout=2), 60)
        message = str(info.value)
        assert "pw1" in message and f"`{hung}`" in message and "did not finish" in message
        assert (await host.run("echo still up")).only.output == "still up"
    finally:
        await host.close()


async def test_a_device_power_cycle_is_bounded_by_the_reboots_timeout() -> None:
    device = DeviceHost("192.0.2.1", name="pdu-fed", power=PowerSpec(cycle="sleep 600"))
    with pytest.raises(ConnectError) as info:
        await asyncio.wait_for(device.reboot(hard=True, wait=False, timeout=1), 60)
    assert "pdu-fed" in str(info.value) and "`sleep 600`" in str(info.value)


async def test_wait_until_up_says_the_wait_it_was_given(power_lab: Lab) -> None:
    host = switched(power_lab, "pw1")
    try:
        await host.power("off")
        with pytest.raises(ConnectError) as info:
            await host.wait_until_up(timeout=0.01)
        message = str(info.value)
        assert "not up within 0.01s" in message
        assert "0.05" not in message  # a floor of otto's own, never the wait
    finally:
        await host.power("on")
        await host.wait_until_up(timeout=20)
        await host.close()


# --- the CLI --------------------------------------------------------------------------


def write_lab(tmp_path: Path, lab: Lab, power: dict[str, str]) -> Path:
    spec = lab.host("pw1")
    entry = {
        "name": "pw1",
        "address": spec.address,
        "port": spec.port,
        "user": spec.user,
        "key": str(spec.key_path),
        "known_hosts": str(lab.known_hosts),
        "connect_timeout": 3,
        "power": power,
    }
    path = tmp_path / "lab.json"
    path.write_text(json.dumps({"hosts": [entry]}))
    return path


def otto(*args: str, lab_file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otto", "--lab", str(lab_file), *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_cli_power_and_reboot(power_lab: Lab, tmp_path: Path) -> None:
    script = power_script(power_lab, "pw1")
    lab_file = write_lab(tmp_path, power_lab, {"on": f"{script} on", "off": f"{script} off"})
    done = otto("host", "pw1", "power", "off", lab_file=lab_file)
    assert done.returncode == 0, done.stderr
    assert "pw1: power off done" in done.stdout
    down = otto("host", "pw1", "run", "true", lab_file=lab_file)
    assert down.returncode != 0
    done = otto("host", "pw1", "power", "on", lab_file=lab_file)
    assert done.returncode == 0, done.stderr
    done = otto("host", "pw1", "reboot", "--hard", "--timeout", "30", lab_file=lab_file)
    assert done.returncode == 0, done.stderr
    assert "pw1: back up after the reboot" in done.stdout
    assert otto("host", "pw1", "run", "true", lab_file=lab_file).returncode == 0
    bad = otto("host", "pw1", "power", "sideways", lab_file=lab_file)
    assert bad.returncode != 0 and "on, off or cycle" in bad.stderr


def test_cli_power_command_failure_exits_nonzero(power_lab: Lab, tmp_path: Path) -> None:
    lab_file = write_lab(tmp_path, power_lab, {"off": "echo relay stuck; exit 7"})
    done = otto("host", "pw1", "power", "off", lab_file=lab_file)
    assert done.returncode == 255
    assert "pw1" in done.stderr and "relay stuck" in done.stderr
