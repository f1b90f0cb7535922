"""Link impairment on the netns lab: real tc on ssh1, logged in as a sudo user.

ssh1's interface ``up0`` is its veth to this process's namespace, so what it
sends back (ping replies, iperf3 data) leaves through the impaired queue.

Two groups:

- otto's machinery (the scripts, sudo, the state file, the revert on the
  host that outlives a killed controller, clear and re-apply cancelling it,
  the listing, the errors) runs on any kernel: it is given an ``htb`` root
  qdisc to manage where the kernel has no netem (``apply_qdisc``, the same
  path ``impair`` takes);
- the measured effect of netem (RTT, loss, rate, a peer's scope, the
  ``netem`` fixture through ``otto test``) needs a kernel with sch_netem: it
  is measured on the Linux VM of tests/lab/netvm.py (Debian's kernel with its
  netem modules, one VM for the module), impaired through otto on its console,
  from its network namespace here, whatever kernel this machine runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from functools import cache
from pathlib import Path

import pytest
import pytest_asyncio

from otto import Host, LocalHost, RemoteHost
from otto.errors import ConnectError, OttoError
from otto.hosts import netem
from tests.integration.hosts import eventually, remote_host
from tests.lab import Lab
from tests.lab.linuxvm import VM_PASSWORD, VM_USER, linuxvm_missing
from tests.lab.netns import wait_listening
from tests.lab.netvm import HOST_IP, OTHER_IP, VM_IFACE, VM_IP, NetVM
from tests.lab.privilege import NOPASSWD_USER, SUDO_USER
from tests.lab.users import LAB_PASSWORD

pytestmark = pytest.mark.integration

pytest_plugins = ["pytester"]

HOST = "ssh1"
IFACE = "up0"
NO_NETEM = "the kernel has no tc netem (sch_netem)"
IPERF_PORT = 5201


@cache
def netem_missing() -> str | None:
    """Why tc netem cannot run on this kernel (None: it can), tried in a scratch namespace."""
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", "tc qdisc add dev lo root netem delay 1ms"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        return None
    return f"{NO_NETEM}: tc said {done.stderr.strip() or done.stdout.strip()!r}"


def plan(interface: str = IFACE) -> tuple[list[list[str]], str]:
    """A root qdisc for the machinery tests: netem where the kernel has it, else htb."""
    if netem_missing() is None:
        made = netem.Impairment.build(delay="1ms")
        return made.tc_commands(interface), "delay 1ms"
    # "add": the script removes the old root first (htb cannot be changed in place).
    command = ["tc", "qdisc", "add", "dev", interface, "root", "handle", "1:", "htb"]
    return [[*command, "default", "1"]], "htb (no netem in this kernel)"


def root_kind(lab: Lab, interface: str = IFACE) -> str:
    """The kind of ``interface``'s root qdisc on ssh1, read straight from its namespace."""
    ns = lab.netns(HOST)
    assert ns is not None
    done = subprocess.run(
        ["ip", "netns", "exec", ns, "tc", "qdisc", "show", "dev", interface, "root"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.split()[1]


def expected_kind() -> str:
    return "netem" if netem_missing() is None else "htb"


@pytest.fixture(autouse=True)
def _netns_only(lab: Lab) -> None:
    if not lab.uses_netns:
        pytest.fail("link impairment is tested in the netns lab (OTTO_LAB_MODE=loopback given?)")


def sudo_host(lab: Lab) -> RemoteHost:
    """ssh1 logged in as a user who may sudo without a password (as a lab's admin would)."""
    return remote_host(lab, HOST, user=NOPASSWD_USER, password=LAB_PASSWORD, key=None)


@pytest_asyncio.fixture(loop_scope="session")
async def host(lab: Lab) -> AsyncIterator[RemoteHost]:
    made = sudo_host(lab)
    try:
        yield made
    finally:
        try:
            await made.clear_impairment(IFACE)
        finally:
            await made.close()


async def state_file(host: Host) -> dict[str, str]:
    """ssh1's state file for up0, as key=value pairs ({} when there is none)."""
    script = netem._PRELUDE + f'cat "$d"/{IFACE} 2>/dev/null || :\n'
    output = (await netem.run_as_root(host, script)).output
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def sleeper_alive(pid: str) -> bool:
    """Whether the revert process ``pid`` runs (the lab's namespaces share this machine's pids)."""
    try:
        return "otto-netem-revert:" in Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return False


# --- the machinery, on any kernel --------------------------------------------------------


async def test_clearing_removes_it_and_cancels_the_revert(host: RemoteHost, lab: Lab) -> None:
    commands, settings = plan()
    await netem.apply_qdisc(host, IFACE, commands, settings=settings, expire=300)
    assert root_kind(lab) == expected_kind()
    pid = (await state_file(host))["pid"]
    assert sleeper_alive(pid)
    listed = await host.impairments()
    assert [a.interface for a in listed] == [IFACE]
    assert listed[0].by_otto
    assert listed[0].expires_in is not None and 0 < listed[0].expires_in <= 300

    assert await host.clear_impairment(IFACE) is True
    assert root_kind(lab) == "noqueue"
    assert await eventually(lambda: not sleeper_alive(pid), timeout=10)
    assert await state_file(host) == {}
    assert await host.impairments() == []
    assert await host.clear_impairment(IFACE) is False  # nothing left: not an error


async def test_applying_again_replaces_the_revert(host: RemoteHost, lab: Lab) -> None:
    commands, settings = plan()
    await netem.apply_qdisc(host, IFACE, commands, settings=settings, expire=300)
    first = (await state_file(host))["pid"]
    await netem.apply_qdisc(host, IFACE, commands, settings=settings, expire=600)
    second = await state_file(host)
    assert second["pid"] != first
    assert await eventually(lambda: not sleeper_alive(first), timeout=10)
    assert sleeper_alive(second["pid"])
    assert root_kind(lab) == expected_kind()
    listed = await host.impairments()
    assert listed[0].expires_in is not None and listed[0].expires_in > 300


async def test_the_host_reverts_it_when_the_controller_is_killed(lab: Lab, tmp_path: Path) -> None:
    """Applied by a child process that is then killed -9: the host removes it by itself."""
    commands, settings = plan()
    spec = lab.host(HOST)
    child = textwrap.dedent(
        f"""
        import asyncio, sys
        from otto import RemoteHost
        from otto.hosts import netem

        async def main():
            host = RemoteHost({spec.address!r}, port={spec.port}, user={NOPASSWD_USER!r},
                              password={LAB_PASSWORD!r}, known_hosts={str(lab.known_hosts)!r},
                              name={HOST!r})
            await netem.apply_qdisc(host, {IFACE!r}, {commands!r}, settings={settings!r},
                                    expire=4)
            print("applied", flush=True)
            await asyncio.Event().wait()

        asyncio.run(main())
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        child,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        async with asyncio.timeout(60):
            line = await proc.stdout.readline()
        if line != b"applied\n":
            assert proc.stderr is not None
            pytest.fail(f"the child did not apply: {line!r} {await proc.stderr.read()!r}")
        proc.kill()
        await proc.wait()
        assert root_kind(lab) == expected_kind()  # still there once otto is gone
        assert await eventually(lambda: root_kind(lab) == "noqueue", timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    host = sudo_host(lab)
    try:
        assert await state_file(host) == {}  # the revert removed its state file too
        assert await host.impairments() == []
    finally:
        await host.close()


async def test_a_missing_interface_is_named_with_the_host_and_command(host: RemoteHost) -> None:
    with pytest.raises(OttoError) as caught:
        await host.impair("nosuch0", delay="10ms")
    text = str(caught.value)
    assert text.startswith(f"{HOST}: impair nosuch0: `tc qdisc replace dev nosuch0 root netem")
    assert 'Cannot find device "nosuch0"' in text
    assert "no such interface on the host" in text
    with pytest.raises(OttoError, match='Cannot find device "nosuch0"'):
        await host.clear_impairment("nosuch0")


async def test_a_login_without_sudo_is_refused_with_the_reason(lab: Lab) -> None:
    # The lab user: sudo takes its password, then refuses it any rights.
    host = remote_host(lab, HOST, become_password=LAB_PASSWORD)
    try:
        with pytest.raises(ConnectError) as caught:
            await host.impair(IFACE, delay="10ms")
        assert str(caught.value).startswith(f"{HOST}: sudo to root"), caught.value
        assert "sudoers" in str(caught.value) or "not allowed" in str(caught.value)
    finally:
        await host.close()


async def test_a_sudo_password_is_answered(lab: Lab) -> None:
    """A login whose sudo asks for its password: the host's become_password answers."""
    host = remote_host(
        lab, HOST, user=SUDO_USER, password=LAB_PASSWORD, key=None, become_password=LAB_PASSWORD
    )
    try:
        commands, settings = plan()
        await netem.apply_qdisc(host, IFACE, commands, settings=settings, expire=60)
        assert [a.interface for a in await host.impairments()] == [IFACE]
        assert await host.clear_impairment(IFACE) is True
        assert root_kind(lab) == "noqueue"
    finally:
        await host.close()


async def test_a_root_login_runs_tc_itself() -> None:
    """This process is root: the local host runs the scripts without sudo (no session)."""
    host = LocalHost()
    try:
        with pytest.raises(OttoError, match=r"^local: impair nosuch0: .*Cannot find device"):
            await host.impair("nosuch0", loss="1%")
        assert host.sessions == {}
    finally:
        await host.close()


@pytest.mark.parametrize("name", ["$(touch /tmp/otto-pwned)", "up0; reboot", "-up0", "a\nb"])
async def test_a_hostile_interface_name_never_reaches_the_host(host: RemoteHost, name: str) -> None:
    seen: list[str] = []
    remove = host.add_observer(lambda status: seen.append(status.command))
    try:
        with pytest.raises(ValueError, match=r"^interface: "):
            await host.impair(name, delay="10ms")
        with pytest.raises(ValueError, match=r"^interface: "):
            await host.clear_impairment(name)
    finally:
        remove()
    assert seen == []


# --- the command line -------------------------------------------------------------------


@pytest.fixture
def lab_file(lab: Lab, tmp_path: Path) -> Path:
    spec = lab.host(HOST)
    entry = {
        "name": HOST,
        "address": spec.address,
        "port": spec.port,
        "user": NOPASSWD_USER,
        "password": LAB_PASSWORD,
        "known_hosts": str(lab.known_hosts),
    }
    path = tmp_path / "lab.json"
    path.write_text(json.dumps({"hosts": [entry]}))
    return path


def otto(lab_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTO_")}
    return subprocess.run(
        [sys.executable, "-m", "otto", "--lab", str(lab_file), *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )


async def test_the_command_line_lists_in_text_and_json(
    lab: Lab, lab_file: Path, host: RemoteHost
) -> None:
    commands, settings = plan()
    await netem.apply_qdisc(host, IFACE, commands, settings=settings, expire=120)
    listed = await asyncio.to_thread(otto, lab_file, "host", HOST, "impair", "--list")
    assert listed.returncode == 0, listed.stderr
    # 2m00s when the listing runs within the wall-clock second of the apply.
    assert re.fullmatch(rf"{HOST}: {IFACE}: .+ \(reverts in (1m\d\d|2m00)s\)\n", listed.stdout), (
        listed.stdout
    )
    as_json = await asyncio.to_thread(otto, lab_file, "--json", "host", HOST, "impair", "--list")
    assert as_json.returncode == 0, as_json.stderr
    (record,) = json.loads(as_json.stdout)
    assert record["host"] == HOST
    assert record["interface"] == IFACE
    assert record["by_otto"] is True
    assert 0 < record["expires_in"] <= 120

    cleared = await asyncio.to_thread(otto, lab_file, "host", HOST, "impair", IFACE, "--clear")
    assert (cleared.returncode, cleared.stdout) == (0, f"{HOST}: {IFACE}: cleared\n")
    assert root_kind(lab) == "noqueue"
    empty = await asyncio.to_thread(otto, lab_file, "host", HOST, "impair", "--list")
    assert empty.stdout == f"{HOST}: no impairment\n"


async def test_the_command_line_reports_a_failure_on_one_line(lab_file: Path) -> None:
    done = await asyncio.to_thread(
        otto, lab_file, "host", HOST, "impair", "nosuch0", "--delay", "100ms"
    )
    assert done.returncode == 255
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"otto: {HOST}: impair nosuch0: `tc qdisc replace dev nosuch0")


# --- netem's measured effect, on a kernel that has it ------------------------------------
#
# This machine's kernel may have no netem (CI's has none): the effect is measured on the
# Linux VM of tests/lab/netvm.py (Debian's kernel, its netem and htb modules, this
# machine's tc and iperf3), impaired through otto on its console, measured from its
# network namespace here. Impairment acts on what the VM sends: ping's replies, iperf3's
# data (-R: the server in the VM sends).

PING_COUNT = 20


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def netvm() -> AsyncIterator[NetVM]:
    missing = linuxvm_missing()
    if missing:
        pytest.skip(missing)
    async with NetVM() as running:
        # The link is up once the VM answers each address here (the first reply to
        # each waits for the VM's ARP request to be answered).
        async with asyncio.timeout(60):
            for source in (HOST_IP, OTHER_IP):
                while (await vm_ping(running, 1, 0.2, source=source)).returncode != 0:
                    pass
        yield running


def console_host(vm: NetVM) -> RemoteHost:
    """The VM as otto reaches it: its serial console, logged in as root (no sudo)."""
    return RemoteHost(
        vm.address,
        name="netvm",
        term="console",
        console_protocol=vm.protocol,
        user=VM_USER,
        password=VM_PASSWORD,
        connect_timeout=10.0,
    )


@pytest_asyncio.fixture(loop_scope="session")
async def vm_host(netvm: NetVM) -> AsyncIterator[RemoteHost]:
    made = console_host(netvm)
    async with made:
        try:
            yield made
        finally:
            await made.clear_impairment(VM_IFACE)


async def vm_ping(
    vm: NetVM, count: int, interval: float, *, source: str | None = None, quiet: bool = True
) -> subprocess.CompletedProcess[str]:
    """ping the VM from its namespace (``-I source``: from that address of the namespace)."""
    argv = ["ping", "-n", "-c", str(count), "-i", str(interval), "-W", "2"]
    if quiet:
        argv.append("-q")
    if source is not None:
        argv += ["-I", source]
    return await asyncio.to_thread(
        subprocess.run,
        vm.here([*argv, VM_IP]),
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


async def rtt(vm: NetVM, *, source: str | None = None) -> float:
    """The VM's median round trip from here, in milliseconds, over PING_COUNT pings.

    The median, not the mean: a guest emulated by QEMU (TCG) on a busy machine
    now and then answers one ping late, which would move a mean by itself.
    """
    done = await vm_ping(vm, PING_COUNT, 0.05, source=source, quiet=False)
    times = [float(t) for t in re.findall(r" time=([\d.]+) ms", done.stdout)]
    assert len(times) >= PING_COUNT // 2, done.stdout + done.stderr
    return statistics.median(times)


def lost(output: str) -> float:
    found = re.search(r"([\d.]+)% packet loss", output)
    assert found is not None, output
    return float(found.group(1))


VM_TC = shutil.which("tc") or "/usr/sbin/tc"
"""This machine's tc, copied into the VM at the same path."""


async def vm_root_qdisc(host: Host) -> str:
    """The kind of the VM's eth0 root qdisc, as its own tc (iproute2's) shows it."""
    result = await host.run(f"{VM_TC} qdisc show dev {VM_IFACE} root")
    assert result.only.is_ok, result.only.output
    return result.only.output.split()[1]


async def test_in_busybox_s_shell_netem_runs_iproute2s_tc(vm_host: RemoteHost) -> None:
    """Regression: the VM's /bin/sh is busybox's, which runs its own tc (no netem) for the
    bare name `tc` whatever PATH says; otto's scripts call iproute2's by its path."""
    shell = await vm_host.run("readlink /bin/sh; sh -c 'tc -V' 2>&1 | head -n 1")
    assert shell.only.output.splitlines()[0] == "/bin/busybox"
    assert "BusyBox" in shell.only.output  # what `tc` is in this shell
    await vm_host.impair(VM_IFACE, loss="1%", expire=120)
    assert await vm_root_qdisc(vm_host) == "netem"
    assert await vm_host.clear_impairment(VM_IFACE) is True


async def test_a_delay_adds_to_the_round_trip(netvm: NetVM, vm_host: RemoteHost) -> None:
    """100ms asked: the round trip grows by 100ms +-20%, and shrinks back once cleared."""
    before = await rtt(netvm)
    await vm_host.impair(VM_IFACE, delay="100ms", expire=120)
    assert await vm_root_qdisc(vm_host) == "netem"
    after = await rtt(netvm)
    assert 80 <= after - before <= 120, (before, after)
    assert await vm_host.clear_impairment(VM_IFACE) is True
    again = await rtt(netvm)
    assert again - before < 20, (before, again)  # the delay is gone


async def test_loss_is_close_to_the_rate_asked(netvm: NetVM, vm_host: RemoteHost) -> None:
    """10% of 1,000 replies dropped: binomial sd ~0.95%, so 6-14% is over 4 sd either way."""
    await vm_host.impair(VM_IFACE, loss="10%", expire=120)
    done = await vm_ping(netvm, 1000, 0.002)
    output = done.stdout + done.stderr
    assert "1000 packets transmitted" in output, output
    assert 6.0 <= lost(output) <= 14.0, output


async def test_a_rate_caps_throughput(netvm: NetVM, vm_host: RemoteHost) -> None:
    """iperf3's server in the VM sends (-R) to its client here, through the capped eth0.

    The server serves until killed (``-1`` would end at the readiness probe's connection).
    """
    iperf3 = shutil.which("iperf3")
    assert iperf3 is not None, "iperf3 is installed by scripts/install-system-deps"
    started = await vm_host.run("iperf3 -s -D -I /tmp/iperf3.pid")
    assert started.only.is_ok, started.only.output
    try:
        await wait_listening(VM_IP, IPERF_PORT, netns=netvm.netns, timeout=30)
        await vm_host.impair(VM_IFACE, rate="1mbit", expire=120)
        done = await asyncio.to_thread(
            subprocess.run,
            netvm.here([iperf3, "-c", VM_IP, "-p", str(IPERF_PORT), "-R", "-t", "4", "-J"]),
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        report = json.loads(done.stdout)
        assert "error" not in report, report["error"]
        received = report["end"]["sum_received"]["bits_per_second"]
        assert 300_000 < received <= 1_100_000, received
    finally:
        await vm_host.run('kill "$(cat /tmp/iperf3.pid)"')


async def test_a_peer_scope_delays_only_that_peer(netvm: NetVM, vm_host: RemoteHost) -> None:
    """200ms for OTHER_IP only: its pings slow down by 200ms +-20%, HOST_IP's do not."""
    before = await rtt(netvm, source=OTHER_IP)
    await vm_host.impair(VM_IFACE, delay="200ms", peer=OTHER_IP, expire=120)
    listed = await vm_host.impairments()
    assert [(a.interface, a.peer) for a in listed] == [(VM_IFACE, OTHER_IP)]
    assert await vm_root_qdisc(vm_host) == "htb"
    slowed = await rtt(netvm, source=OTHER_IP)
    other = await rtt(netvm, source=HOST_IP)
    assert 160 <= slowed - before <= 240, (before, slowed)
    assert other - before < 40, (before, other)  # not delayed (20% of the delay, at most)


async def test_the_fixture_clears_even_when_the_test_fails(netvm: NetVM, tmp_path: Path) -> None:
    """``otto test``: the netem fixture impairs the VM, the test fails, teardown clears it."""
    entry = {
        "name": "netvm",
        "term": "console",
        "address": netvm.address,
        "console_protocol": netvm.protocol,
        "user": VM_USER,
        "password": VM_PASSWORD,
        "connect_timeout": 30,
    }
    lab_file = tmp_path / "lab.json"
    lab_file.write_text(json.dumps({"hosts": [entry]}))
    (tmp_path / "test_link.py").write_text(
        textwrap.dedent(
            f"""
            async def test_impaired(host, netem):
                await netem(host, {VM_IFACE!r}, delay="50ms", expire=600)
                listed = await host.impairments()
                assert [a.interface for a in listed] == [{VM_IFACE!r}]
                assert False, "the test fails with the link impaired"
            """
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "PYTEST_ADDOPTS"}}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "otto", "--lab", str(lab_file), "test",
         "-p", "no:cacheprovider", "test_link.py"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
        stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "1 failed" in out, out
    assert "the test fails with the link impaired" in out, out
    async with console_host(netvm) as host:
        assert await host.impairments() == []
        assert await vm_root_qdisc(host) != "netem"


def test_the_fixture_tries_every_clear_on_teardown(
    lab: Lab, lab_file: Path, pytester: pytest.Pytester
) -> None:
    """On any kernel: a test that failed applying still has its clear tried, and its
    failure reported, on teardown."""
    pytester.makepyfile(
        """
        async def test_impaired(host, netem):
            await netem(host, "nosuch0", delay="50ms")
        """
    )
    result = pytester.runpytest_subprocess("--lab", str(lab_file), "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*netem could not clear:*",
            f"*{HOST}: clearing nosuch0: {HOST}: clear impairment of nosuch0:*Cannot find device*",
        ]
    )
