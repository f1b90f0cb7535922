"""A lab value taken from the environment may be a secret: errors about ``hop`` and
``power.via`` name the variable, never its value."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otto.errors import LabError
from otto.lab import Lab

HOP_VALUE = "Hop-Sekr3t-value"
VIA_VALUE = "Via-Sekr3t-value"
PDU_PASSWORD = "Pdu-Sekr3t-pw"


def lab_file(tmp_path: Path, host: dict[str, object]) -> Path:
    path = tmp_path / "lab.json"
    path.write_text(json.dumps({"hosts": [host]}))
    return path


def load_error(path: Path) -> str:
    with pytest.raises(LabError) as info:
        Lab.load(path)
    return str(info.value)


def test_an_unknown_hop_from_the_environment_is_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GW_NAME", HOP_VALUE)
    path = lab_file(
        tmp_path, {"name": "db", "address": "10.0.0.5", "user": "u", "hop": "${GW_NAME}"}
    )
    message = load_error(path)
    assert (
        "field 'hop': no host in the lab is named by the value of ${GW_NAME} (not shown)" in message
    )
    assert HOP_VALUE not in message


def test_an_unknown_power_via_from_the_environment_is_not_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDU_HOST", VIA_VALUE)
    monkeypatch.setenv("PDU_PASSWORD", PDU_PASSWORD)
    power = {"via": "${PDU_HOST}", "on": "pdu --password ${PDU_PASSWORD} on 3"}
    path = lab_file(tmp_path, {"name": "db", "address": "10.0.0.5", "user": "u", "power": power})
    message = load_error(path)
    # Only the variable 'via' came from is named.
    assert "'via': no host in the lab is named by the value of ${PDU_HOST} (not shown)" in message
    assert VIA_VALUE not in message and PDU_PASSWORD not in message


def test_an_unknown_hop_written_in_the_lab_is_shown(tmp_path: Path) -> None:
    path = lab_file(tmp_path, {"name": "db", "address": "10.0.0.5", "user": "u", "hop": "gw"})
    assert "field 'hop': no host named 'gw' in the lab" in load_error(path)


def test_a_fallback_written_in_the_lab_is_shown(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GW_NAME", raising=False)
    path = lab_file(
        tmp_path, {"name": "db", "address": "10.0.0.5", "user": "u", "hop": "${GW_NAME:-gw}"}
    )
    assert "field 'hop': no host named 'gw' in the lab" in load_error(path)
