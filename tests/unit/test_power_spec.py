"""PowerSpec and its drivers without a server: what they can do, what they say, and the
state read from a status output (``match_state``)."""

from __future__ import annotations

import asyncio

import pytest

from otto import PowerSpec, redact
from otto.hosts import DryRunHost
from otto.hosts.power.command import match_state
from otto.hosts.power.http import HttpPower, HttpRequest
from otto.hosts.power.snmp import SnmpOutlet
from otto.transports.snmp import SnmpSettings


@pytest.mark.parametrize(
    ("text", "on", "off", "state"),
    [
        ("Chassis Power is on", None, None, "on"),
        ("Chassis Power is OFF\n", None, None, "off"),
        ("outlet 1 state: unknown", None, None, None),
        ("on and off", None, None, None),  # both: neither is believed
        ("POWER: 1", "POWER: 1", "POWER: 0", "on"),
        ("onboard led: offline", None, None, None),  # words, not parts of words
    ],
)
def test_match_state(text: str, on: str | None, off: str | None, state: str | None) -> None:
    assert match_state(text, on, off) == state


def test_what_each_form_can_do() -> None:
    assert PowerSpec(on="a", off="b").can("cycle")
    assert not PowerSpec(on="a").can("cycle") and not PowerSpec(on="a").can("status")
    settings = SnmpSettings(community="c0mmunity", address="10.0.0.9")
    assert PowerSpec(driver=SnmpOutlet(settings, 1, "apc")).can("cycle")
    relay = HttpPower({"status": HttpRequest("http://relay/state", method="GET")})
    assert PowerSpec(driver=relay).can("status") and not PowerSpec(driver=relay).can("off")


def test_repr_hides_registered_secrets() -> None:
    redact.register("pw-in-a-command")
    try:
        spec = PowerSpec(on="pdu --pw pw-in-a-command on", status="pdu --pw pw-in-a-command st")
        assert "pw-in-a-command" not in repr(spec)
        assert "pdu --pw" in repr(spec) and "status=" in repr(spec)
    finally:
        redact.forget("pw-in-a-command")
    settings = SnmpSettings(community="c0mmunity-77", address="10.0.0.9")
    assert "c0mmunity-77" not in repr(PowerSpec(driver=SnmpOutlet(settings, 2, "raritan")))
    request = HttpRequest("https://admin:hunter2x@relay/on", headers={"Authorization": "tok-99x"})
    shown = repr(PowerSpec(driver=HttpPower({"on": request})))
    assert "hunter2x" not in shown and "tok-99x" not in shown


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SnmpOutlet(SnmpSettings(community="c"), 1), "needs the PDU's 'address'"),
        (lambda: SnmpOutlet(SnmpSettings(community="c", address="a"), 0), "outlet number"),
        (lambda: SnmpOutlet(SnmpSettings(community="c", address="a"), 1, "eaton"), "'oids'"),
        (lambda: HttpRequest("http://x", expect=(999,)), "HTTP status codes"),
        (lambda: HttpPower({}), "at least one"),
    ],
)
def test_bad_driver_arguments(make: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


def test_dry_run_says_each_driver_step_and_contacts_nothing() -> None:
    lines: list[str] = []
    settings = SnmpSettings(community="c0mmunity", address="10.0.0.9", port=1161)
    pdu = DryRunHost("board", say=lines.append, power=PowerSpec(driver=SnmpOutlet(settings, 4)))
    relay = HttpPower(
        {
            "on": HttpRequest("http://relay/on"),
            "off": HttpRequest("http://relay/off"),
            "status": HttpRequest("http://relay/state", method="GET"),
        }
    )
    web = DryRunHost("web", say=lines.append, power=PowerSpec(driver=relay))
    cmd = DryRunHost("cmd", say=lines.append, power=PowerSpec(on="relay on"))

    async def main() -> None:
        await pdu.power("status")
        await pdu.power("cycle")
        await web.power("cycle")
        await web.power("status")
        with pytest.raises(ValueError, match="no power 'status'"):
            await cmd.power("status")

    asyncio.run(main())
    oid = "1.3.6.1.4.1.318.1.1.4.4.2.1.3.4"
    assert lines == [
        f"[board] would read power status: SNMP v2c at udp:10.0.0.9:1161: GET {oid} (apc outlet 4)",
        f"[board] would switch power cycle: SNMP v2c at udp:10.0.0.9:1161: SET {oid} = 3 "
        "(apc outlet 4)",
        "[web] would switch power cycle: HTTP POST http://relay/off",
        "[web] would switch power cycle: HTTP POST http://relay/on",
        "[web] would read power status: HTTP GET http://relay/state",
    ]
