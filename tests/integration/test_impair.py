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
  ``netem`` fixture) needs a kernel with sch_netem and is skipped, saying so,
  on one built without it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from functools import cache
from pathlib import Path

import pytest
import pytest_asyncio

from otto import Host, LocalHost, RemoteHost
from otto.errors import ConnectError, OttoError
from otto.hosts import netem
from tests.integration.hosts import eventually, remote_host
from tests.lab import Lab
from tests.lab.privilege import NOPASSWD_USER, SUDO_USER
from tests.lab.users import LAB_PASSWORD

pytestmark = pytest.mark.integration

pytest_plugins = ["pytester"]

HOST = "ssh1"
IFACE = "up0"
NO_NETEM = "the kernel has no tc netem (sch_netem)"


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


def needs_netem() -> None:
    missing = netem_missing()
    if missing is not None:
        pytest.skip(missing)


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
    assert re.fullmatch(rf"{HOST}: {IFACE}: .+ \(reverts in 1m\d\ds\)\n", listed.stdout), (
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


# --- netem's measured effect --------------------------------------------------------------


def ping(lab: Lab, count: int, interval: float, *, source: str | None = None) -> str:
    """ping ssh1 from this namespace; ping's output."""
    argv = ["ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "2"]
    if source is not None:
        argv += ["-I", source]
    done = subprocess.run(
        [*argv, lab.host(HOST).address], capture_output=True, text=True, check=False
    )
    assert "packets transmitted" in done.stdout, done.stdout + done.stderr
    return done.stdout


def average_rtt(output: str) -> float:
    """ping's average round trip, in milliseconds."""
    found = re.search(r"= [\d.]+/([\d.]+)/", output)
    assert found is not None, output
    return float(found.group(1))


def lost(output: str) -> float:
    found = re.search(r"([\d.]+)% packet loss", output)
    assert found is not None, output
    return float(found.group(1))


async def test_a_delay_adds_to_the_round_trip(host: RemoteHost, lab: Lab) -> None:
    needs_netem()
    before = average_rtt(await asyncio.to_thread(ping, lab, 10, 0.05))
    await host.impair(IFACE, delay="100ms", expire=120)
    after = average_rtt(await asyncio.to_thread(ping, lab, 20, 0.05))
    assert 80 <= after - before <= 120, (before, after)
    await host.clear_impairment(IFACE)
    again = average_rtt(await asyncio.to_thread(ping, lab, 10, 0.05))
    assert again < 50, again


async def test_loss_is_close_to_the_rate_asked(host: RemoteHost, lab: Lab) -> None:
    """10% of 1,000 replies dropped: binomial sd ~0.95%, so 6-14% is over 4 sd either way."""
    needs_netem()
    await host.impair(IFACE, loss="10%", expire=120)
    output = await asyncio.to_thread(ping, lab, 1000, 0.002)
    assert 6.0 <= lost(output) <= 14.0, output


async def test_a_rate_caps_throughput(host: RemoteHost, lab: Lab) -> None:
    """iperf3's server in ssh1's namespace sends (-R) to its client here, through up0.

    The server serves until killed (``-1`` would end at the readiness probe's connection).
    """
    needs_netem()
    iperf3 = shutil.which("iperf3")
    assert iperf3 is not None, "iperf3 is installed by scripts/install-system-deps"
    ns = lab.netns(HOST)
    assert ns is not None
    address = lab.host(HOST).address
    port = 5201 + lab.slot
    server = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", ns, iperf3, "-s", "-B", address, "-p", str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        from tests.lab.netns import wait_listening

        await wait_listening(address, port, timeout=10)
        await host.impair(IFACE, rate="1mbit", expire=120)
        done = await asyncio.to_thread(
            subprocess.run,
            [iperf3, "-c", address, "-p", str(port), "-R", "-t", "4", "-J"],
            capture_output=True,
            text=True,
            check=False,
        )
        report = json.loads(done.stdout)
        assert "error" not in report, report["error"]
        received = report["end"]["sum_received"]["bits_per_second"]
        assert 300_000 < received <= 1_100_000, received
    finally:
        if server.returncode is None:
            server.kill()
        await server.wait()


@pytest.fixture
def second_address(lab: Lab) -> Iterator[str]:
    """A second address of this namespace on ssh1's link (x.x.x.100), removed afterwards."""
    parent = lab.host(HOST).address.rsplit(".", 1)[0]
    address = f"{parent}.100"
    link = next(
        name
        for name in os.listdir("/sys/class/net")
        if name.startswith(f"ol{lab.slot}n")
        and subprocess.run(
            ["ip", "-o", "addr", "show", "dev", name],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.count(f" {parent}.1/")
    )
    subprocess.run(["ip", "addr", "add", f"{address}/24", "dev", link], check=True)
    try:
        yield address
    finally:
        subprocess.run(["ip", "addr", "del", f"{address}/24", "dev", link], check=False)


async def test_a_peer_scope_delays_only_that_peer(
    host: RemoteHost, lab: Lab, second_address: str
) -> None:
    needs_netem()
    await host.impair(IFACE, delay="200ms", peer=second_address, expire=120)
    listed = await host.impairments()
    assert listed[0].peer == second_address
    slowed = average_rtt(await asyncio.to_thread(ping, lab, 10, 0.05, source=second_address))
    first = lab.host(HOST).address.rsplit(".", 1)[0] + ".1"
    other = average_rtt(await asyncio.to_thread(ping, lab, 10, 0.05, source=first))
    assert 160 <= slowed <= 240, slowed
    assert other < 50, other


def test_the_fixture_clears_even_when_the_test_fails(
    lab: Lab, lab_file: Path, pytester: pytest.Pytester
) -> None:
    needs_netem()
    pytester.makepyfile(
        f"""
        async def test_impaired(host, netem):
            await netem(host, {IFACE!r}, delay="50ms", expire=600)
            assert False, "the test fails with the link impaired"
        """
    )
    result = pytester.runpytest_subprocess("--lab", str(lab_file), "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert root_kind(lab) == "noqueue"


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
