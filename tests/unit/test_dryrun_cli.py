"""The pieces of ``otto -n`` and of the one-off host options that need no host."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otto.cli.app import options_first
from otto.cli.dryrun import DryRunLab, connection
from otto.errors import LabError
from otto.hosts import DryRunHost
from otto.lab import KNOWN_HOSTS_DEFAULT, Lab


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    (tmp_path / "id_lab").write_text("not a real key")
    hosts = [
        {"name": "bastion", "address": "198.51.100.1", "user": "ops", "key": "id_lab"},
        {"name": "gw", "address": "10.0.0.1", "user": "ops", "port": 2222, "hop": "bastion"},
        {
            "name": "db",
            "address": "10.0.1.5",
            "user": "dba",
            "hop": "gw",
            "known_hosts": None,
            "power": {"on": "pdu on 4", "via": "bastion"},
        },
        {"name": "switch", "term": "telnet", "address": "10.0.0.9", "user": "admin"},
        {"name": "board", "term": "console", "address": "ts1:7001"},
        {"name": "dev", "term": "serial", "address": "/dev/ttyUSB0", "baud": 9600},
        {"name": "here", "term": "local"},
    ]
    path = tmp_path / "lab.json"
    path.write_text(json.dumps({"hosts": hosts}))
    return Lab.load(path)


def test_connection_names_term_destination_and_hops_outermost_first(lab: Lab) -> None:
    assert connection(lab, "bastion") == "ssh ops@198.51.100.1:22"
    assert connection(lab, "gw") == "ssh ops@10.0.0.1:2222 via bastion"
    assert connection(lab, "db") == "ssh dba@10.0.1.5:22 via bastion -> gw"
    assert connection(lab, "switch") == "telnet admin@10.0.0.9:23"
    assert connection(lab, "board") == "console ts1:7001 (telnet)"
    assert connection(lab, "dev") == "serial /dev/ttyUSB0 at 9600 baud"
    assert connection(lab, "here") == "local (this machine)"


def test_dry_run_lab_builds_hosts_that_print(lab: Lab) -> None:
    dry = DryRunLab.of(lab)
    db = dry.host("db")
    assert isinstance(db, DryRunHost)
    assert db.reaches == "ssh dba@10.0.1.5:22 via bastion -> gw"
    assert db.power_spec is not None and db.power_spec.via is dry.host("bastion")
    assert dry.used == ["db", "bastion"]
    assert dry.names == lab.names and dry.files == lab.files
    assert not lab._hosts  # the real lab built nothing


def test_override_user_and_port_for_named_hosts_only(lab: Lab) -> None:
    lab.override(["gw"], {"user": ("root", "--user"), "port": (22, "--port")})
    assert (lab.spec("gw").user, lab.spec("gw").port) == ("root", 22)
    assert lab.spec("db").user == "dba"
    assert lab.spec("gw").hop == "bastion"


def test_override_term_drops_what_the_old_term_used(lab: Lab) -> None:
    lab.override(["db"], {"term": ("telnet", "--term")})
    lab.override(["bastion"], {"term": ("telnet", "--term")})
    bastion = lab.spec("bastion")
    assert bastion.term == "telnet" and bastion.key is None and bastion.port is None
    db = lab.spec("db")
    assert db.known_hosts is KNOWN_HOSTS_DEFAULT and db.hop == "gw"
    assert db.power == (("on", "pdu on 4"), ("via", "bastion"))


def test_override_hop_is_checked_like_a_lab_file(lab: Lab) -> None:
    with pytest.raises(LabError, match=r"^--hop: host 'switch': field 'hop': no host named 'x'"):
        lab.override(["switch"], {"hop": ("x", "--hop")})
    with pytest.raises(LabError, match="hop 'switch' must be an SSH host"):
        lab.override(["gw"], {"hop": ("switch", "--hop")})
    with pytest.raises(LabError, match="hops form a cycle: bastion -> db -> gw -> bastion"):
        lab.override(["bastion"], {"hop": ("db", "--hop")})
    with pytest.raises(LabError, match="--hop: host 'here': field 'hop': not used by term 'local'"):
        lab.override(["here"], {"hop": ("gw", "--hop")})
    # A failed override changes nothing.
    assert lab.spec("bastion").hop is None and lab.spec("switch").hop is None


def test_override_checks_only_the_hosts_it_changes_and_their_hops(lab: Lab) -> None:
    # db goes through gw; switching gw to telnet breaks db, which is not used here.
    lab.override(["gw"], {"term": ("telnet", "--term")})
    assert lab.spec("gw").term == "telnet"
    with pytest.raises(LabError, match="hop 'gw' must be an SSH host"):
        lab.override(["db"], {"user": ("x", "--user")})


def test_override_after_hosts_are_built_is_refused(lab: Lab) -> None:
    lab.host("here")
    with pytest.raises(RuntimeError, match="built"):
        lab.override(["here"], {"user": ("x", "--user")})


@pytest.mark.parametrize(
    ("given", "parsed"),
    [
        (["web1", "run", "ls"], ["web1", "run", "ls"]),
        (["web1", "--user", "root", "run", "ls"], ["--user", "root", "web1", "run", "ls"]),
        (["web1", "-p", "2222", "--hop=gw", "put"], ["-p", "2222", "--hop=gw", "web1", "put"]),
        (["--user", "root", "web1", "run"], ["--user", "root", "web1", "run"]),
        (["web1", "--help"], ["web1", "--help"]),
        (["web1", "--user"], ["web1", "--user"]),
        (["web1", "run", "-t", "5", "ls"], ["web1", "run", "-t", "5", "ls"]),
    ],
)
def test_host_options_after_the_name_are_the_groups(given: list[str], parsed: list[str]) -> None:
    assert options_first(given) == parsed


def test_hostile_names_are_shown_on_one_line(
    lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from otto.cli.dryrun import plan_commands, plan_transfer

    monkeypatch.setenv("OTTO_RESERVATIONS", f"sqlite:///{tmp_path / 'reservations.db'}")
    hostile = tmp_path / "a\nb; rm -rf ~ $(reboot)"
    hostile.write_text("")
    assert plan_transfer(lab, ["gw"], "put", [str(hostile)], "/tmp/x y") == 0
    assert plan_commands(lab, ["gw"], ["echo 'one'\nreboot"], None) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"[gw] would put: {str(hostile)!r} -> gw:/tmp/x y" in lines
    assert "[gw] would run: \"echo 'one'\\nreboot\"  (no timeout)" in lines
    assert not any(line.startswith(("b; rm", "reboot")) for line in lines)
