"""Labs from an OpenSSH config: aliases, options, ProxyJump chains, Include, Match, errors."""

from __future__ import annotations

import getpass
import logging
from pathlib import Path

import pytest

from otto.errors import LabError
from otto.lab import Lab
from otto.lab.model import check_sources


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems_of(path: Path) -> list[str]:
    return check_sources([f"ssh:{path}"])[2]


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return write(tmp_path / "keys" / "id_lab", "not a key\n")


def test_aliases_and_their_options(tmp_path: Path, key: Path) -> None:
    config = write(
        tmp_path / "config",
        f"""\
# lab hosts
Host gw
    HostName 10.0.0.1
    User ops
    Port 2222
    IdentityFile /nowhere/id_missing
    IdentityFile {key}
    UserKnownHostsFile {tmp_path}/known_hosts
    ConnectTimeout 7

Host web1 web2
    HostName %h.example.com

Host *.example.com web?
    User patterned

Host *
    User everyone
    ForwardAgent yes
""",
    )
    lab = Lab.load(config)
    assert lab.names == ["gw", "web1", "web2"]  # patterns are not hosts
    gw = lab.spec("gw")
    assert (gw.term, gw.address, gw.user, gw.port) == ("ssh", "10.0.0.1", "ops", 2222)
    assert gw.key == key  # the first IdentityFile that exists
    assert gw.known_hosts == tmp_path / "known_hosts"
    assert gw.connect_timeout == 7.0
    web1 = lab.spec("web1")
    # The first value wins, as in OpenSSH: "Host web?" comes before "Host *".
    assert (web1.address, web1.user, web1.port, web1.hop) == (
        "web1.example.com",
        "patterned",
        None,
        None,
    )


def test_user_defaults_to_the_local_user(tmp_path: Path) -> None:
    config = write(tmp_path / "config", "Host box\n    HostName 10.1.1.1\n")
    assert Lab.load(config).spec("box").user == getpass.getuser()


def test_proxyjump_through_an_alias(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config",
        "Host gw\n  HostName 10.0.0.1\n  User ops\nHost db\n  HostName 10.0.1.5\n"
        "  User dba\n  ProxyJump gw\n",
    )
    lab = Lab.load(config)
    assert lab.spec("db").hop == "gw"
    assert lab.spec("gw").hop is None


def test_proxyjump_chain(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config",
        """\
Host gw
  HostName 10.0.0.1
  User ops
Host mid
  HostName 10.0.1.1
  User ops
Host deep
  HostName 10.0.2.1
  User ops
  ProxyJump gw,mid
Host other
  HostName 10.0.3.1
  User ops
  ProxyJump gw,mid2
Host mid2
  HostName 10.0.1.2
  User ops
  ProxyJump gw
""",
    )
    lab = Lab.load(config)
    # mid reached through gw is not the alias mid (reached directly): a host of its own.
    assert lab.spec("deep").hop == "mid-via-gw"
    via = lab.spec("mid-via-gw")
    assert (via.address, via.user, via.hop) == ("10.0.1.1", "ops", "gw")
    assert lab.spec("mid").hop is None
    # mid2's own config already hops through gw: the alias is used as it is.
    assert lab.spec("other").hop == "mid2"
    assert "mid2-via-gw" not in lab


def test_jump_host_that_is_not_an_alias(tmp_path: Path, key: Path) -> None:
    config = write(
        tmp_path / "config",
        f"Host target\n  HostName 10.9.9.9\n  User me\n  ProxyJump admin@bastion.example:2200\n"
        f"Host *.example\n  IdentityFile {key}\n",
    )
    lab = Lab.load(config)
    hop = lab.spec(lab.spec("target").hop or "")
    assert hop.name == "admin-bastion.example-2200"
    # The jump host gets the options ssh would use for it ("Host *.example").
    assert (hop.address, hop.user, hop.port, hop.key) == ("bastion.example", "admin", 2200, key)


def test_jump_host_by_plain_name_and_ssh_url(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config",
        "Host a\n  User u\n  ProxyJump jump.example\nHost b\n  User u\n"
        "  ProxyJump ssh://ops@[fd00::1]:2022\n",
    )
    lab = Lab.load(config)
    assert lab.spec("a").hop == "jump.example"
    assert lab.spec("jump.example").address == "jump.example"
    six = lab.spec(lab.spec("b").hop or "")
    assert (six.address, six.user, six.port) == ("fd00::1", "ops", 2022)


def test_proxyjump_cycle_is_a_lab_error(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config",
        "Host a\n  User u\n  ProxyJump b\nHost b\n  User u\n  ProxyJump a\n",
    )
    problems = problems_of(config)
    assert len(problems) == 1
    assert "hops form a cycle" in problems[0] and str(config) in problems[0]


def test_include_is_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    write(home / ".ssh" / "conf.d" / "lab.conf", "Host included\n  HostName 10.5.5.5\n  User i\n")
    write(tmp_path / "abs.conf", "Host absolute\n  User a\n")
    config = write(
        home / ".ssh" / "config",
        f"Include conf.d/*.conf\nInclude {tmp_path}/abs.conf\nInclude nothing-matches/*\n"
        "Host main\n  User m\n",
    )
    lab = Lab.load(config)
    assert lab.names == ["included", "absolute", "main"]
    assert lab.spec("included").address == "10.5.5.5"


def test_match_is_evaluated_per_alias(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config",
        "Host a b\n  User u\nMatch originalhost b\n  Port 2200\nMatch all\n  Port 22\n",
    )
    lab = Lab.load(config)
    assert (lab.spec("a").port, lab.spec("b").port) == (22, 2200)


def test_match_exec_is_refused_with_file_and_line(tmp_path: Path) -> None:
    config = write(tmp_path / "config", 'Host a\n  User u\n\nMatch exec "true"\n  Port 1\n')
    problems = problems_of(config)
    assert len(problems) == 1
    assert problems[0].startswith(f"{config}:4: 'Match exec' is not supported")


def test_unknown_keyword_is_an_error_with_file_and_line(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config",
        "Host a\n  User u\n  Colour blue\n  UseKeychain yes\n",
    )
    problems = problems_of(config)
    assert [p.split(" (")[0] for p in problems] == [
        f"{config}:3: unknown keyword 'Colour'",
        f"{config}:4: unknown keyword 'UseKeychain'",
    ]
    assert "IgnoreUnknown" in problems[0]


def test_ignore_unknown_is_honoured(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config",
        "IgnoreUnknown UseKeychain,Add*\nHost a\n  User u\n  UseKeychain yes\n"
        "  AddSomething x\n  LocalForward 8080 localhost:80\n",
    )
    assert Lab.load(config).names == ["a"]


def test_proxycommand_host_is_left_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write(
        tmp_path / "config",
        "Host ok\n  User u\nHost piped\n  User u\n  ProxyCommand nc %h %p\n",
    )
    with caplog.at_level(logging.WARNING, logger="otto.lab"):
        lab = Lab.load(config)
    assert lab.names == ["ok"]
    assert f"{config}:3: host 'piped' uses ProxyCommand" in caplog.text


def test_bad_value_names_file_and_line(tmp_path: Path) -> None:
    config = write(tmp_path / "config", "Host a\n  User u\n  Port many\n")
    problems = problems_of(config)
    assert problems == [f"{config}:3: Invalid Port integer value: many"]


def test_error_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    inner = write(tmp_path / "inner.conf", "Host b\n  Bogus 1\n")
    config = write(tmp_path / "config", f"Include {inner}\nHost a\n  User u\n")
    problems = problems_of(config)
    assert len(problems) == 1 and problems[0].startswith(f"{inner}:2: unknown keyword 'Bogus'")


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(LabError, match="lab file not found"):
        Lab.load(f"ssh:{tmp_path / 'nope'}")


def test_json_overlay_adds_to_ssh_config_hosts(tmp_path: Path) -> None:
    config = write(tmp_path / "config", "Host gw\n  HostName 10.0.0.1\n  User ops\n")
    overlay = write(tmp_path / "more.json", '{"hosts": [{"name": "gw", "tags": ["edge"]}]}')
    lab = Lab.load([config, overlay])
    assert lab.spec("gw").tags == ("edge",)
    assert lab.spec("gw").files == (str(config), str(overlay))


def test_hostile_alias_is_left_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = write(tmp_path / "config", "Host ok\n  User u\nHost $(rm\n  User u\n")
    with caplog.at_level(logging.WARNING, logger="otto.lab"):
        assert Lab.load(config).names == ["ok"]
    assert "not a valid otto host name" in caplog.text


def test_strict_host_key_checking_off_turns_checking_off(tmp_path: Path) -> None:
    config = write(
        tmp_path / "config",
        "Host lax\n  User u\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n"
        "Host new\n  User u\n  StrictHostKeyChecking accept-new\n"
        f"  UserKnownHostsFile {tmp_path}/kh\n",
    )
    lab = Lab.load(config)
    assert lab.spec("lax").known_hosts is None
    assert lab.spec("new").known_hosts == tmp_path / "kh"
