"""Power drivers against real servers: snmpd faking a PDU's outlets (APC and Raritan OIDs,
v2c and v3), an HTTP server this test runs, and the command form; and ``otto host NAME
power status`` through the real CLI."""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import pytest_asyncio

from otto import LocalHost, PowerSpec, redact
from otto.errors import ConnectError
from otto.hosts.power.http import HttpPower, HttpRequest
from otto.hosts.power.snmp import SnmpOutlet
from otto.lab import Lab
from otto.transports.snmp import SnmpSettings
from tests.lab.pdu import V3_USER, PduAgent, start_pdu
from tests.lab.snmp import snmpd_missing

pytestmark = pytest.mark.integration


# --- SNMP --------------------------------------------------------------------------------


@pytest_asyncio.fixture(params=["apc", "raritan"], loop_scope="session")
async def pdu(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PduAgent]:
    missing = snmpd_missing()
    if missing:
        pytest.skip(missing)
    agent = await start_pdu(tmp_path, request.param)
    try:
        yield agent
    finally:
        await asyncio.to_thread(agent.stop)


def outlet_host(pdu: PduAgent, outlet: int, **settings: object) -> LocalHost:
    given: dict[str, object] = {"community": pdu.community}
    given.update(settings)
    made = SnmpSettings(address=pdu.address, port=pdu.port, **given)  # type: ignore[arg-type]
    return LocalHost(name="board", power=PowerSpec(driver=SnmpOutlet(made, outlet, pdu.kind)))


@pytest.mark.asyncio(loop_scope="session")
async def test_snmp_outlet_switches_and_reads_back(pdu: PduAgent) -> None:
    host = outlet_host(pdu, 2)
    assert await host.power("status") == "on"
    assert await host.power("off") == "off"
    assert pdu.state(2) == "off" and pdu.state(1) == "on"
    assert await host.power("status") == "off"
    assert await host.power("on") == "on"
    assert await host.power("status") == "on"
    await host.power("cycle")
    assert pdu.log() == ["2 off", "2 on", "2 cycle"]  # the PDU's own cycle, one SET
    pdu.set_state(2, "off")  # switched by someone else: read back, not remembered
    assert await host.power("status") == "off"


@pytest.mark.asyncio(loop_scope="session")
async def test_snmp_outlet_over_v3(pdu: PduAgent) -> None:
    user, auth, priv = V3_USER
    host = outlet_host(pdu, 3, community=None, version="3", user=user, auth_key=auth, priv_key=priv)
    assert await host.power("off") == "off"
    assert pdu.state(3) == "off"
    assert await host.power("status") == "off"


@pytest.mark.asyncio(loop_scope="session")
async def test_snmp_outlet_in_an_unknown_state_is_an_error(pdu: PduAgent) -> None:
    pdu.set_state(1, "unknown")
    host = outlet_host(pdu, 1)
    with pytest.raises(ConnectError, match="neither on nor off") as info:
        await host.power("status")
    assert "GET 1.3.6.1.4.1." in str(info.value) and "outlet 1" in str(info.value)


@pytest.mark.asyncio(loop_scope="session")
async def test_snmp_wrong_community_names_the_agent_and_never_shows_it(pdu: PduAgent) -> None:
    host = outlet_host(pdu, 1, community="not-the-community", timeout=0.2, retries=0)
    with pytest.raises(ConnectError, match="no answer") as info:
        await host.power("off")
    assert f"udp:{pdu.address}:{pdu.port}" in str(info.value)
    assert "not-the-community" not in str(info.value) + repr(host.power_spec)
    assert pdu.state(1) == "on"


@pytest.mark.asyncio(loop_scope="session")
async def test_snmp_cycle_is_sent_once_even_with_retries(pdu: PduAgent) -> None:
    # A SET sent again after a lost answer cycles the outlet again: a cycle is never retried.
    host = outlet_host(pdu, 1, timeout=0.3, retries=3)
    pdu.freeze()  # requests queue up unanswered
    try:
        with pytest.raises(ConnectError, match="no answer"):
            await host.power("cycle")
    finally:
        pdu.thaw()
    # The agent answers in order: once the status is read, every queued SET was served.
    assert await host.power("status") == "on"
    assert pdu.log() == ["1 cycle"]
    await host.power("off")  # an idempotent SET may be sent again
    assert pdu.log()[-1] == "1 off"


@pytest.mark.asyncio(loop_scope="session")
async def test_snmp_power_from_the_lab_through_the_cli(pdu: PduAgent, tmp_path: Path) -> None:
    lab = tmp_path / "lab.json"
    power = {
        "driver": "snmp",
        "address": pdu.address,
        "port": pdu.port,
        "outlet": 4,
        "community": "${PDU_COMMUNITY}",
        "oids": pdu.kind,
    }
    lab.write_text(json.dumps({"hosts": [{"name": "board", "term": "local", "power": power}]}))
    env = {**os.environ, "PDU_COMMUNITY": pdu.community}
    env.pop("OTTO_LAB", None)

    def otto(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "otto", "--lab", str(lab), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    off = await asyncio.to_thread(otto, "host", "board", "power", "off")
    assert off.returncode == 0, off.stderr
    status = await asyncio.to_thread(otto, "host", "board", "power", "status")
    assert (status.returncode, status.stdout) == (0, "board: off\n"), status.stderr
    plan = await asyncio.to_thread(otto, "-n", "host", "board", "power", "status")
    assert plan.returncode == 0, plan.stderr
    assert "would read power status: SNMP v2c at udp:" in plan.stdout
    assert pdu.community not in plan.stdout + plan.stderr
    assert pdu.log() == ["4 off"]  # the dry run contacted nothing


# --- HTTP --------------------------------------------------------------------------------

TOKEN = "Bearer relay-token-8812"


class Relay:
    """A relay board's web API: POST /outlet/on|off|cycle, GET /outlet (a status page)."""

    def __init__(self) -> None:
        self.state = "on"
        self.log: list[str] = []
        self.status_page = "Outlet 1: {state}"
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _reply(self, code: int, text: str) -> None:
                body = text.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != "/outlet":
                    return self._reply(404, "no such page")
                self._reply(200, relay.status_page.format(state=relay.state.upper()))

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
                if self.headers.get("Authorization") != TOKEN:
                    return self._reply(401, "login first")
                action = self.path.removeprefix("/outlet/")
                if action not in ("on", "off", "cycle"):
                    return self._reply(404, "no such action")
                relay.log.append(f"{action} {body}")
                relay.state = "off" if action == "off" else "on"
                self._reply(204 if action == "cycle" else 200, "")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def relay() -> Iterator[Relay]:
    server = Relay()
    try:
        yield server
    finally:
        server.close()


def http_host(relay: Relay, *, cycle: bool = True, **status: object) -> LocalHost:
    headers = {"Authorization": TOKEN}

    def post(action: str, **more: object) -> HttpRequest:
        return HttpRequest(
            f"{relay.url}/outlet/{action}",
            body='{"outlet": 1}',
            headers=headers,
            **more,  # type: ignore[arg-type]
        )

    requests = {"on": post("on"), "off": post("off")}
    if cycle:
        requests["cycle"] = post("cycle", expect=(204,))
    requests["status"] = HttpRequest(f"{relay.url}/outlet", method="GET", **status)  # type: ignore[arg-type]
    return LocalHost(name="board", power=PowerSpec(driver=HttpPower(requests)))  # type: ignore[arg-type]


@pytest.mark.asyncio(loop_scope="session")
async def test_http_template_switches_and_reads_back(relay: Relay) -> None:
    host = http_host(relay)
    assert await host.power("off") == "off"
    assert relay.state == "off" and await host.power("status") == "off"
    assert await host.power("on") == "on"
    assert await host.power("status") == "on"
    await host.power("cycle")
    assert relay.log == ['off {"outlet": 1}', 'on {"outlet": 1}', 'cycle {"outlet": 1}']


@pytest.mark.asyncio(loop_scope="session")
async def test_http_cycle_without_its_request_is_off_then_on(relay: Relay) -> None:
    await http_host(relay, cycle=False).power("cycle")
    assert [entry.split()[0] for entry in relay.log] == ["off", "on"]


@pytest.mark.asyncio(loop_scope="session")
async def test_http_status_patterns_and_an_unmatched_page(relay: Relay) -> None:
    relay.status_page = "relay=1 power={state}"
    host = http_host(relay, on_pattern=r"power=ON\b", off_pattern=r"power=OFF\b")
    assert await host.power("status") == "on"
    relay.status_page = "relay=1 fault"
    with pytest.raises(ConnectError, match="matches not exactly one") as info:
        await host.power("status")
    assert f"HTTP GET {relay.url}/outlet" in str(info.value) and "relay=1 fault" in str(info.value)


@pytest.mark.asyncio(loop_scope="session")
async def test_http_unexpected_status_names_the_request_and_the_answer(relay: Relay) -> None:
    request = HttpRequest(f"{relay.url}/outlet/on")  # no token: 401
    host = LocalHost(name="board", power=PowerSpec(driver=HttpPower({"on": request})))
    with pytest.raises(ConnectError) as info:
        await host.power("on")
    text = str(info.value)
    assert f"HTTP POST {relay.url}/outlet/on answered 401 (expected 2xx)" in text
    assert "login first" in text and relay.state == "on"
    assert TOKEN.split()[1] not in repr(http_host(relay).power_spec)


@pytest.mark.asyncio(loop_scope="session")
async def test_http_server_gone_is_a_connect_error(relay: Relay) -> None:
    host = http_host(relay)
    relay.close()
    with pytest.raises(ConnectError, match="no answer"):
        await host.power("off")
    relay.server = ThreadingHTTPServer(("127.0.0.1", 0), relay.server.RequestHandlerClass)
    relay.thread = threading.Thread(target=relay.server.serve_forever, daemon=True)
    relay.thread.start()


@pytest.mark.asyncio(loop_scope="session")
async def test_https_certificates_are_verified_unless_told_not_to(
    relay: Relay, tmp_path: Path
) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    openssl += ["-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    made = await asyncio.to_thread(subprocess.run, openssl, capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"openssl cannot make a certificate: {made.stderr!r}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    relay.server.socket = context.wrap_socket(relay.server.socket, server_side=True)
    url = relay.url.replace("http://", "https://") + "/outlet"
    checked = LocalHost(
        name="board",
        power=PowerSpec(driver=HttpPower({"status": HttpRequest(url, method="GET")})),
    )
    with pytest.raises(ConnectError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
        await checked.power("status")
    trusting = HttpPower({"status": HttpRequest(url, method="GET", verify=False)})
    assert await LocalHost(name="board", power=PowerSpec(driver=trusting)).power("status") == "on"


# --- the command form ------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_command_status_with_patterns(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("Chassis Power is on\n")
    spec = PowerSpec(
        on=f"echo 'Chassis Power is on' > {state}",
        off=f"echo 'Chassis Power is off' > {state}",
        status=f"cat {state}",
    )
    host = LocalHost(name="board", power=spec)
    assert await host.power("status") == "on"
    await host.power("off")
    assert await host.power("status") == "off"
    relay = LocalHost(
        name="relay",
        power=PowerSpec(status=f"cat {state}", on_pattern="POWER: 1", off_pattern="POWER: 0"),
    )
    state.write_text("POWER: 0\n")
    assert await relay.power("status") == "off"
    state.write_text("POWER: 1\n")
    assert await relay.power("status") == "on"


@pytest.mark.asyncio(loop_scope="session")
async def test_command_status_unmatched_names_the_command_and_its_output(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("Chassis Power is unknown\n")
    host = LocalHost(name="board", power=PowerSpec(status=f"cat {state}"))
    with pytest.raises(ConnectError) as info:
        await host.power("status")
    text = str(info.value)
    assert f"`cat {state}`" in text and "Chassis Power is unknown" in text
    assert "neither on_pattern" in text and text.startswith("board")
    bare = LocalHost(name="bare", power=PowerSpec(on="true"))
    with pytest.raises(ValueError, match="no power 'status'"):
        await bare.power("status")


@pytest.mark.asyncio(loop_scope="session")
async def test_a_password_in_power_commands_is_never_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Issue 18 item 3: the lab expands ${PDU_PW} into the command, and the command was
    # printed in PowerSpec's repr and in every power failure.
    monkeypatch.setenv("PDU_PW", "pdu-pw-4471")
    lab = tmp_path / "lab.json"
    power = {
        "on": "echo switching --pw ${PDU_PW}; exit 3",
        "status": "echo 'no answer for --pw ${PDU_PW}'",
    }
    lab.write_text(json.dumps({"hosts": [{"name": "board", "term": "local", "power": power}]}))
    host = Lab.load(lab).host("board")
    assert "pdu-pw-4471" not in repr(host.power_spec)
    for action in ("on", "status"):
        with pytest.raises(ConnectError) as info:
            await host.power(action)
        assert "pdu-pw-4471" not in str(info.value) and redact.MASK in str(info.value)


def test_cli_power_status_and_its_dry_run(tmp_path: Path) -> None:
    state = tmp_path / "state"
    lab = tmp_path / "lab.json"
    power = {"on": f"echo on > {state}", "off": f"echo off > {state}", "status": f"cat {state}"}
    lab.write_text(json.dumps({"hosts": [{"name": "board", "term": "local", "power": power}]}))
    env = {k: v for k, v in os.environ.items() if k != "OTTO_LAB"}

    def otto(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "otto", "--lab", str(lab), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    on = otto("host", "board", "power", "on")
    assert (on.returncode, on.stdout) == (0, "board: power on done\n"), on.stderr
    status = otto("host", "board", "power", "status")
    assert (status.returncode, status.stdout) == (0, "board: on\n"), status.stderr
    state.write_text("flickering\n")
    bad = otto("host", "board", "power", "status")
    assert bad.returncode == 255 and "flickering" in bad.stderr and f"cat {state}" in bad.stderr
    plan = otto("-n", "host", "board", "power", "status")
    assert plan.returncode == 0, plan.stderr
    assert f"would read power status: run on this machine: cat {state}" in plan.stdout
    assert state.read_text() == "flickering\n"
