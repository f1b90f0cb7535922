"""Lab fields ``power`` and ``become_password``: parsed, checked, passed to hosts, never shown."""

from __future__ import annotations

import json
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
