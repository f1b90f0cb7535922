"""Lab fields ``power`` and ``become_password``: parsed, checked, passed to hosts, never shown."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from otto.errors import LabError
from otto.lab import Lab


def lab_file(tmp_path: Path, *hosts: dict[str, object]) -> Path:
    path = tmp_path / "lab.json"
    path.write_text(json.dumps({"hosts": list(hosts)}))
    return path


def test_power_and_become_password_reach_the_host(tmp_path: Path) -> None:
    path = lab_file(
        tmp_path,
        {"name": "pdu", "address": "10.0.0.9", "user": "admin"},
        {
            "name": "board",
            "address": "10.0.0.2",
            "user": "u",
            "become_password": "s3cret-pw",
            "power": {"on": "pdu on 3", "off": "pdu off 3", "via": "pdu"},
        },
    )
    lab = Lab.load(path)
    host = lab.host("board")
    assert host.power_spec is not None
    assert host.power_spec.on == "pdu on 3" and host.power_spec.cycle is None
    assert host.power_spec.via is lab.host("pdu")
    assert "s3cret-pw" not in repr(lab.spec("board"))
    assert "s3cret-pw" not in repr(host) and "s3cret-pw" not in str(host.__dict__)


def test_power_via_defaults_to_this_machine(tmp_path: Path) -> None:
    path = lab_file(tmp_path, {"name": "b", "term": "local", "power": {"cycle": "relay 1"}})
    spec = Lab.load(path).host("b").power_spec
    assert spec is not None and spec.via is None and spec.cycle == "relay 1"


@pytest.mark.parametrize(
    ("power", "message"),
    [
        ("reboot-it", "must be an object"),
        ({"on": "x", "toggle": "y"}, "unknown key 'toggle'"),
        ({"on": ""}, "'on' must be a command"),
        ({"via": "pdu"}, "needs at least one of"),
        ({"on": "x", "via": "nowhere"}, "no host named 'nowhere'"),
        ({"on": "x", "via": "b"}, "its own power controller"),
    ],
)
def test_bad_power_names_file_host_and_field(tmp_path: Path, power: object, message: str) -> None:
    path = lab_file(tmp_path, {"name": "b", "term": "local", "power": power})
    with pytest.raises(LabError, match=message) as info:
        Lab.load(path)
    assert str(path) in str(info.value) and "'b'" in str(info.value)
    assert "'power'" in str(info.value)


def test_become_password_from_a_variable_is_never_echoed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOARD_PW", "very-secret")
    path = lab_file(
        tmp_path, {"name": "b", "address": "a", "user": "u", "become_password": "${BOARD_PW}"}
    )
    assert "very-secret" not in repr(Lab.load(path).spec("b"))
    bad = lab_file(tmp_path, {"name": "b", "term": "local", "become_password": 42})
    with pytest.raises(LabError, match="'become_password': must be a string"):
        Lab.load(bad)


def test_power_status_and_patterns_reach_the_spec(tmp_path: Path) -> None:
    power = {"status": "ipmitool power status", "on_pattern": "is on$", "off_pattern": "is off$"}
    path = lab_file(tmp_path, {"name": "b", "term": "local", "power": power})
    spec = Lab.load(path).host("b").power_spec
    assert spec is not None and spec.status == "ipmitool power status"
    assert (spec.on_pattern, spec.off_pattern) == ("is on$", "is off$")
    assert spec.can("status") and not spec.can("on") and not spec.can("cycle")


def test_snmp_and_http_drivers_from_the_lab(tmp_path: Path) -> None:
    from otto.hosts.power.http import HttpPower
    from otto.hosts.power.snmp import SnmpOutlet

    snmp = {
        "driver": "snmp",
        "address": "10.0.0.9",
        "outlet": 3,
        "oids": "raritan",
        "v3": {"user": "pdu", "auth_key": "auth-key-77", "priv_key": "priv-key-77"},
    }
    http = {
        "driver": "http",
        "on": {"url": "https://relay/on", "body": "1", "expect": [200, 204]},
        "off": {"url": "https://relay/off", "method": "PUT"},
        "status": {"url": "https://relay/state", "on_pattern": "ON"},
    }
    path = lab_file(
        tmp_path,
        {"name": "a", "term": "local", "power": snmp},
        {"name": "b", "term": "local", "power": http},
    )
    lab = Lab.load(path)
    outlet = lab.host("a").power_spec
    assert outlet is not None and isinstance(outlet.driver, SnmpOutlet)
    assert outlet.driver.outlet == 3 and outlet.driver.oids == "raritan"
    assert outlet.driver.settings.security == "v3 user 'pdu' authPriv"
    assert "auth-key-77" not in repr(outlet) and outlet.can("cycle")
    relay = lab.host("b").power_spec
    assert relay is not None and isinstance(relay.driver, HttpPower)
    assert relay.driver.requests["on"].method == "POST"
    assert relay.driver.requests["on"].expect == (200, 204)
    assert relay.driver.requests["off"].method == "PUT"
    assert relay.driver.requests["status"].method == "GET"
    assert relay.can("cycle") and relay.driver.requests["on"].verify


@pytest.mark.parametrize(
    ("power", "message"),
    [
        ({"driver": "pdu9000"}, "'driver' must be 'command', 'snmp' or 'http'"),
        ({"driver": "snmp", "address": "p", "community": "c"}, "needs 'address' and 'outlet'"),
        ({"driver": "snmp", "address": "p", "outlet": 1}, "needs one of 'community'"),
        ({"driver": "snmp", "address": "p", "outlet": 0, "community": "c"}, "outlet number"),
        ({"driver": "snmp", "address": "p", "outlet": 1, "community": "c", "on": "x"}, "'on'"),
        ({"driver": "snmp", "address": "p", "outlet": 1, "v3": {"usr": "u"}}, "unknown key 'usr'"),
        ({"driver": "http", "on": "curl -X POST x"}, "request object"),
        ({"driver": "http", "on": {"url": "ftp://x"}}, "http(s):// 'url'"),
        ({"driver": "http", "on": {"url": "http://x", "verb": "PUT"}}, "unknown key 'verb'"),
        ({"driver": "http", "on": {"url": "http://x", "on_pattern": "x"}}, "for 'status' only"),
        ({"driver": "http", "via": "pdu"}, "'via' not used by driver 'http'"),
        ({"on": {"url": "http://x"}}, 'needs "driver": "http"'),
        ({"status": "x", "on_pattern": "(unclosed"}, "not a valid regex"),
        ({"on": "x", "outlet": 2}, "'outlet' not used by the command form"),
    ],
)
def test_bad_power_drivers_are_named(tmp_path: Path, power: object, message: str) -> None:
    path = lab_file(tmp_path, {"name": "b", "term": "local", "power": power})
    with pytest.raises(LabError, match=re.escape(message)) as info:
        Lab.load(path)
    assert "host 'b'" in str(info.value) and "'power'" in str(info.value)


def test_a_community_in_a_bad_power_value_is_never_shown(tmp_path: Path) -> None:
    power = {"driver": "snmp", "address": "p", "outlet": "one", "community": "sekrit-comm"}
    path = lab_file(tmp_path, {"name": "b", "term": "local", "power": power})
    with pytest.raises(LabError, match="outlet number") as info:
        Lab.load(path)
    assert "sekrit-comm" not in str(info.value)


def test_reading_a_lab_with_power_drivers_imports_no_host_code(tmp_path: Path) -> None:
    # Reading a lab (otto --help, --list-hosts) must not pay for the hosts and transports.
    snmp = {"driver": "snmp", "address": "p", "outlet": 1, "community": "c0mm"}
    http = {"driver": "http", "status": {"url": "http://relay/state"}}
    path = lab_file(
        tmp_path,
        {"name": "a", "term": "local", "power": snmp},
        {"name": "b", "term": "local", "power": http},
        {"name": "c", "term": "local", "power": {"on": "x", "status": "y"}},
    )
    code = (
        "import sys\n"
        "from otto.lab import Lab\n"
        f"Lab.load({str(path)!r})\n"
        "print(sorted(m for m in sys.modules if m.startswith('otto.hosts')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout == "[]\n"
