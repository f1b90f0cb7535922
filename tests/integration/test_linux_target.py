"""A real Linux target: Debian's kernel in QEMU (tests/lab/linuxvm.py), on its serial console.

One VM serves the module. What a lab's board does and a container cannot: the
kernel prints on the console whenever it likes (in the middle of a command's
output), ``reboot`` restarts the kernel behind the same console, and a kernel
panic ends the shell in the middle of a test.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from otto import RemoteHost, Status, redact
from tests.lab.linuxvm import VM_PASSWORD, VM_USER, LinuxVM, linuxvm_missing
from tests.lab.procs import wait_gone

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
KMSG_LINES = 40
BOOT_ID = "cat /proc/sys/kernel/random/boot_id"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def vm(request: pytest.FixtureRequest) -> AsyncIterator[LinuxVM]:
    missing = linuxvm_missing()
    if missing:
        pytest.skip(missing)
    async with LinuxVM() as running:
        shown = (
            f"linuxvm: {running.kernel_package or 'the kernel'} booted to a login prompt "
            f"in {running.boot_seconds:.1f}s (QEMU TCG, console {running.address})"
        )
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.ensure_newline()
                reporter.write_line(shown)
        pid = running.pid
        yield running
    # No QEMU is left behind.
    assert pid is not None
    assert await wait_gone([pid], 5) == []


@pytest.fixture
def boot_time(vm: LinuxVM, record_property: pytest.RecordProperty) -> float:
    record_property("linuxvm_boot_seconds", round(vm.boot_seconds, 2))
    return vm.boot_seconds


def vm_host(vm: LinuxVM, **options: object) -> RemoteHost:
    base: dict[str, object] = {
        "name": "linuxvm",
        "term": "console",
        "console_protocol": vm.protocol,
        "user": VM_USER,
        "password": VM_PASSWORD,
        "connect_timeout": 10.0,
    }
    base.update(options)
    return RemoteHost(vm.address, **base)  # type: ignore[arg-type]


async def test_kernel_messages_amid_a_command_stay_out_of_its_output(
    vm: LinuxVM, boot_time: float, tmp_path: Path
) -> None:
    log_path = tmp_path / "console.log"
    expected = "\n".join(f"line-{i}" for i in range(1, KMSG_LINES + 1))
    async with vm_host(vm, console_log=str(log_path)) as host:
        # Each line of output is followed by a kernel message, printed by the kernel
        # straight to the console while the line may still be queued in the terminal.
        result = await host.run(
            f"for i in $(seq 1 {KMSG_LINES}); do echo line-$i; "
            'echo "<2>otto-kmsg $i" > /dev/kmsg; done'
        )
        assert (result.only.status, result.only.output) == (Status.Success, expected)
        # From a job of its own, while another command prints.
        result = await host.run(
            f'(for i in $(seq 1 {KMSG_LINES}); do echo "<2>otto-bg $i" > /dev/kmsg; done) & '
            f"for i in $(seq 1 {KMSG_LINES}); do echo line-$i; done; wait"
        )
        assert (result.only.status, result.only.output) == (Status.Success, expected)
        assert (await host.run("echo after")).only.output == "after"
        # The kernel's log printed by a command is the command's output: kept.
        printed = (await host.run("dmesg | grep -c otto-kmsg; dmesg | grep 'otto-kmsg 7$'")).only
        count, line = printed.output.split("\n")
        assert count == str(KMSG_LINES)
        assert re.fullmatch(r"\[ *\d+\.\d{6}\] otto-kmsg 7", line)
    text = log_path.read_text()
    for i in range(1, KMSG_LINES + 1):
        assert f"] otto-kmsg {i}\n" in text
        assert f"] otto-bg {i}\n" in text
    assert VM_PASSWORD not in text


async def test_reboot_comes_back_to_a_fresh_boot(vm: LinuxVM) -> None:
    async with vm_host(vm) as host:
        before = (await host.run(BOOT_ID)).only.output
        await host.run("echo kept > /tmp/mark")
        started = time.monotonic()
        await host.reboot(timeout=120)
        after = (await host.run(BOOT_ID)).only.output
        uptime = float((await host.run("cat /proc/uptime")).only.output.split()[0])
        gone = (await host.run("cat /tmp/mark")).only
    assert len(before) == 36 and len(after) == 36 and after != before
    # The kernel started after the reboot began: it has been up less than that.
    assert uptime < time.monotonic() - started
    assert gone.status is Status.Failed  # /tmp was a tmpfs of the boot before


PANIC_TESTS = """
import contextlib

from otto.errors import OttoError


async def test_before(host):
    assert (await host.run("echo fine")).only.output == "fine"


async def test_panics(host):
    assert (await host.run("echo going")).only.output == "going"
    with contextlib.suppress(OttoError, TimeoutError):
        # The kernel prints the lab's password just before it panics: masked in the excerpt.
        await host.run("echo '<2>token PASSWORD' > /dev/kmsg; echo c > /proc/sysrq-trigger",
                       timeout=60)


async def test_after(host):
    # The guest restarted by itself (panic=1): the same host logs in again.
    assert (await host.run("echo back")).only.output == "back"
"""


async def test_a_kernel_panic_fails_the_test_with_its_excerpt_in_the_report(
    vm: LinuxVM, tmp_path: Path
) -> None:
    async with vm_host(vm) as host:
        boot = (await host.run(BOOT_ID)).only.output
    lab_file = tmp_path / "lab.json"
    host = {
        "name": "vm",
        "term": "console",
        "address": vm.address,
        "console_protocol": vm.protocol,
        "user": VM_USER,
        "password": VM_PASSWORD,
        "connect_timeout": 30,  # the guest boots again after its panic
    }
    lab_file.write_text(json.dumps({"hosts": [host]}))
    (tmp_path / "test_board.py").write_text(PANIC_TESTS.replace("PASSWORD", VM_PASSWORD))
    env = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "PYTEST_ADDOPTS"}}
    env["COLUMNS"] = "200"
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "otto", "--lab", str(lab_file), "test", "--output", "run",
         "-p", "no:cacheprovider", "test_board.py"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=180,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1 failed, 2 passed" in out, out
    # The terminal: the failure names the crash and shows its lines.
    assert "otto: vm crashed during the test" in out
    assert "Kernel panic - not syncing: sysrq triggered crash" in out
    assert f"token {redact.MASK}" in out
    run = tmp_path / "run"
    report = (run / "report.html").read_text()
    assert "Device crash on vm" in report
    assert "Kernel panic - not syncing: sysrq triggered crash" in report
    assert "sysrq: Trigger a crash" in report  # the lines before it too
    cases = {c.get("name"): c for c in ET.parse(run / "junit.xml").getroot().iter("testcase")}
    failure = cases["test_panics"].find("failure")
    assert failure is not None and failure.get("type") == "otto.crash"
    assert "Kernel panic - not syncing: sysrq triggered crash" in (failure.text or "")
    assert cases["test_before"].find("failure") is None
    assert cases["test_after"].find("failure") is None
    for text in (report, (run / "junit.xml").read_text()):
        assert VM_PASSWORD not in text
    # panic=1: the guest restarted by itself; a new login reaches the new boot.
    async with vm_host(vm) as host:
        assert (await host.run(BOOT_ID)).only.output not in ("", boot)


async def test_a_telnet_console_logs_in_and_keeps_output_exact(tmp_path: Path) -> None:
    missing = linuxvm_missing()
    if missing:
        pytest.skip(missing)
    log_path = tmp_path / "console.log"
    async with LinuxVM(telnet=True) as telnet_vm:
        pid = telnet_vm.pid
        async with vm_host(telnet_vm, console_log=str(log_path)) as host:
            result = await host.run(
                f"for i in $(seq 1 {KMSG_LINES}); do echo line-$i; "
                'echo "<2>otto-kmsg $i" > /dev/kmsg; done'
            )
    assert result.only.output == "\n".join(f"line-{i}" for i in range(1, KMSG_LINES + 1))
    assert f"] otto-kmsg {KMSG_LINES}\n" in log_path.read_text()
    assert pid is not None and await wait_gone([pid], 5) == []
