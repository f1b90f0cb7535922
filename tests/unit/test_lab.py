"""Lab files: parsing, ${VAR}, merging, validation errors, hops, the current lab."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import otto.lab as lab_module
from otto.errors import LabError
from otto.hosts import LocalHost
from otto.lab import KNOWN_HOSTS_DEFAULT, Lab, all_hosts, current_lab, get_host, load_lab

SECRET = "hunter2-Sekr3t"


def write(path: Path, data: object) -> Path:
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "id_test"
    path.write_text("not really a key\n")
    return path


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("OTTO_LAB", raising=False)
    saved = lab_module._state.lab
    lab_module._state.lab = None
    yield
    lab_module._state.lab = saved


def error_of(paths: Path | list[Path]) -> str:
    with pytest.raises(LabError) as info:
        Lab.load(paths)
    return str(info.value)


# --- reading -----------------------------------------------------------------------------


def test_full_host_entry_is_read(tmp_path: Path, key: Path) -> None:
    f = write(
        tmp_path / "lab.json",
        {
            "hosts": [
                {"name": "gw", "address": "10.0.0.1", "user": "ops", "key": key.name},
                {
                    "name": "db1",
                    "address": "192.168.1.5",
                    "user": "ops",
                    "password": SECRET,
                    "port": 2222,
                    "hop": "gw",
                    "tags": ["db", "prod"],
                    "known_hosts": "kh",
                    "connect_timeout": 3,
                },
                {"name": "sw", "term": "telnet", "address": "10.0.0.9", "user": "admin"},
                {"name": "here", "term": "local"},
            ]
        },
    )
    lab = Lab.load(f)
    assert lab.names == ["gw", "db1", "sw", "here"]
    gw, db1, sw, here = lab.specs
    assert gw.term == "ssh"
    assert gw.key == key  # relative to the lab file
    assert gw.known_hosts is KNOWN_HOSTS_DEFAULT
    assert db1.password == SECRET
    assert db1.port == 2222
    assert db1.hop == "gw"
    assert db1.tags == ("db", "prod")
    assert db1.known_hosts == tmp_path / "kh"
    assert db1.connect_timeout == 3.0
    assert db1.destination == "ops@192.168.1.5:2222"
    assert sw.term == "telnet"
    assert here.term == "local" and here.destination == "local"
    assert lab.files == (str(f),)


def test_known_hosts_null_turns_checking_off(tmp_path: Path) -> None:
    f = write(
        tmp_path / "lab.json",
        {"hosts": [{"name": "a", "address": "h", "user": "u", "known_hosts": None}]},
    )
    assert Lab.load(f).spec("a").known_hosts is None


def test_password_never_in_repr_or_errors(tmp_path: Path) -> None:
    f = write(
        tmp_path / "lab.json",
        {"hosts": [{"name": "a", "address": "h", "user": "u", "password": SECRET}]},
    )
    lab = Lab.load(f)
    assert SECRET not in repr(lab.spec("a"))
    assert SECRET not in repr(lab)
    bad = write(
        tmp_path / "bad.json",
        {"hosts": [{"name": "a", "address": "h", "user": "u", "password": SECRET, "port": "x"}]},
    )
    assert SECRET not in error_of(bad)


# --- environment variables -----------------------------------------------------------------


def test_variables_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAB_ADDR", "10.1.2.3")
    monkeypatch.setenv("LAB_PORT", "2200")
    monkeypatch.setenv("LAB_PW", SECRET)
    f = write(
        tmp_path / "lab.json",
        {
            "hosts": [
                {
                    "name": "a",
                    "address": "${LAB_ADDR}",
                    "user": "${LAB_USER:-tester}",
                    "password": "${LAB_PW}",
                    "port": "${LAB_PORT}",
                    "tags": ["at-${LAB_ADDR}", "$${LITERAL}", "cost$5"],
                }
            ]
        },
    )
    spec = Lab.load(f).spec("a")
    assert spec.address == "10.1.2.3"
    assert spec.user == "tester"
    assert spec.password == SECRET
    assert spec.port == 2200
    assert spec.tags == ("at-10.1.2.3", "${LITERAL}", "cost$5")


def test_missing_variable_is_named_with_file_host_and_field(tmp_path: Path) -> None:
    os.environ.pop("OTTO_TEST_UNSET_VAR", None)
    f = write(
        tmp_path / "lab.json",
        {
            "hosts": [
                {"name": "a", "address": "h", "user": "u", "password": "${OTTO_TEST_UNSET_VAR}"}
            ]
        },
    )
    message = error_of(f)
    assert str(f) in message
    assert "host 'a'" in message
    assert "field 'password'" in message
    assert "OTTO_TEST_UNSET_VAR" in message


@pytest.mark.parametrize("value", ["${1BAD}", "${}", "${UNCLOSED"])
def test_bad_variable_references(tmp_path: Path, value: str) -> None:
    f = write(tmp_path / "lab.json", {"hosts": [{"name": "a", "address": value, "user": "u"}]})
    message = error_of(f)
    assert "field 'address'" in message


# --- merging ----------------------------------------------------------------------------


def test_later_files_override_fields_and_add_hosts(tmp_path: Path) -> None:
    shared = write(
        tmp_path / "shared.json",
        {
            "hosts": [
                {"name": "a", "address": "10.0.0.1", "user": "ops", "tags": ["x"]},
                {"name": "b", "address": "10.0.0.2", "user": "ops"},
            ],
            "settings": {"instructions": ["shared_tasks"]},
        },
    )
    private = write(
        tmp_path / "private.json",
        {
            "hosts": [
                {"name": "a", "password": SECRET, "port": 2222},
                {"name": "c", "term": "local"},
            ],
            "settings": {"instructions": ["my_tasks", "shared_tasks"]},
        },
    )
    lab = Lab.load([shared, private])
    assert lab.names == ["a", "b", "c"]
    a = lab.spec("a")
    assert (a.address, a.user, a.password, a.port, a.tags) == (
        "10.0.0.1",
        "ops",
        SECRET,
        2222,
        ("x",),
    )
    assert a.files == (str(shared), str(private))
    assert [m for m, _ in lab.instruction_modules] == ["shared_tasks", "my_tasks"]


def test_error_names_the_file_that_gave_the_bad_field(tmp_path: Path) -> None:
    shared = write(
        tmp_path / "shared.json", {"hosts": [{"name": "a", "address": "h", "user": "u"}]}
    )
    private = write(tmp_path / "private.json", {"hosts": [{"name": "a", "port": 70000}]})
    message = error_of([shared, private])
    assert message.startswith(str(private))
    assert "host 'a'" in message and "field 'port'" in message


# --- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "field", "words"),
    [
        ({"address": "h", "user": "u"}, "name", "required"),
        ({"name": "bad name", "address": "h", "user": "u"}, "name", "letters"),
        ({"name": "a", "user": "u"}, "address", "required"),
        ({"name": "a", "address": "h"}, "user", "required"),
        ({"name": "a", "address": "h", "user": "u", "term": "rsh"}, "term", "one of"),
        ({"name": "a", "address": "h", "user": "u", "port": 0}, "port", "1-65535"),
        ({"name": "a", "address": "h", "user": "u", "port": True}, "port", "1-65535"),
        ({"name": "a", "address": "h", "user": "u", "port": "22x"}, "port", "1-65535"),
        ({"name": "a", "address": "h", "user": "u", "password": 5}, "password", "string"),
        ({"name": "a", "address": "h", "user": "u", "key": "nope"}, "key", "does not exist"),
        ({"name": "a", "address": "h", "user": "u", "tags": "db"}, "tags", "list of strings"),
        ({"name": "a", "address": "h", "user": "u", "hop": "zz"}, "hop", "no host named 'zz'"),
        ({"name": "a", "address": "h", "user": "u", "pasword": "x"}, "pasword", "unknown field"),
        (
            {"name": "a", "address": "h", "user": "u", "connect_timeout": -1},
            "connect_timeout",
            "positive",
        ),
        ({"name": "a", "term": "local", "address": "h"}, "address", "not used by term 'local'"),
        ({"name": "a", "term": "telnet", "address": "h", "user": "u", "key": "k"}, "key", "telnet"),
    ],
)
def test_invalid_host_fields(
    tmp_path: Path, entry: dict[str, object], field: str, words: str
) -> None:
    f = write(tmp_path / "lab.json", {"hosts": [entry]})
    message = error_of(f)
    assert message.startswith(str(f))
    assert f"field {field!r}" in message
    assert words in message
    if "name" in entry and field != "name":
        assert f"host {entry['name']!r}" in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", "invalid JSON"),
        ("[]", "JSON object"),
        ('{"hosts": {}}', "'hosts' must be a list"),
        ('{"hosts": [], "extra": 1}', "unknown top-level key 'extra'"),
        ('{"hosts": [5]}', "host #1"),
        ('{"settings": {"instructions": "tasks"}}', "list of module names"),
        ('{"settings": {"color": true}}', "unknown key 'color'"),
    ],
)
def test_invalid_files(tmp_path: Path, text: str, words: str) -> None:
    f = write(tmp_path / "lab.json", text)
    message = error_of(f)
    assert message.startswith(str(f))
    assert words in message


def test_json_error_has_line_and_column(tmp_path: Path) -> None:
    f = write(tmp_path / "lab.json", '{\n  "hosts": [\n    {"name": "a",}\n  ]\n}')
    assert error_of(f).startswith(f"{f}:3:")


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in error_of(tmp_path / "nope.json")


def test_duplicate_name_in_one_file(tmp_path: Path) -> None:
    f = write(
        tmp_path / "lab.json",
        {"hosts": [{"name": "a", "term": "local"}, {"name": "a", "term": "local"}]},
    )
    assert "host 'a': defined twice in this file (hosts #1 and #2)" in error_of(f)


# --- hops -------------------------------------------------------------------------------


def test_hop_cycle_is_rejected(tmp_path: Path) -> None:
    f = write(
        tmp_path / "lab.json",
        {
            "hosts": [
                {"name": "a", "address": "h", "user": "u", "hop": "b"},
                {"name": "b", "address": "h", "user": "u", "hop": "c"},
                {"name": "c", "address": "h", "user": "u", "hop": "a"},
            ]
        },
    )
    message = error_of(f)
    assert "field 'hop'" in message
    assert "cycle: a -> b -> c -> a" in message


def test_hop_to_itself_is_a_cycle(tmp_path: Path) -> None:
    f = write(
        tmp_path / "lab.json", {"hosts": [{"name": "a", "address": "h", "user": "u", "hop": "a"}]}
    )
    assert "cycle: a -> a" in error_of(f)


def test_hop_must_be_ssh(tmp_path: Path) -> None:
    f = write(
        tmp_path / "lab.json",
        {
            "hosts": [
                {"name": "t", "term": "telnet", "address": "h", "user": "u"},
                {"name": "a", "address": "h", "user": "u", "hop": "t"},
            ]
        },
    )
    assert "must be an SSH host" in error_of(f)


def test_hop_chain_is_fine(tmp_path: Path) -> None:
    f = write(
        tmp_path / "lab.json",
        {
            "hosts": [
                {"name": "inner2", "address": "h3", "user": "u", "hop": "inner"},
                {"name": "inner", "address": "h2", "user": "u", "hop": "gw"},
                {"name": "gw", "address": "h1", "user": "u"},
                {
                    "name": "inner-telnet",
                    "term": "telnet",
                    "address": "h4",
                    "user": "u",
                    "hop": "inner",
                },
            ]
        },
    )
    assert Lab.load(f).spec("inner2").hop == "inner"


# --- building hosts ---------------------------------------------------------------------


def test_default_lab_is_one_local_host() -> None:
    lab = Lab.load([])
    assert lab.names == ["local"]
    host = lab.host("local")
    assert isinstance(host, LocalHost)
    assert host.name == "local"
    assert lab.host("local") is host  # built once


def test_select_searches_names(tmp_path: Path) -> None:
    f = write(
        tmp_path / "lab.json",
        {"hosts": [{"name": n, "term": "local"} for n in ("web1", "web2", "db1", "old-web")]},
    )
    lab = Lab.load(f)
    assert lab.select("web") == ["web1", "web2", "old-web"]
    assert lab.select(r"^web\d$") == ["web1", "web2"]
    assert lab.select(None) == lab.names
    assert [h.name for h in lab.hosts("^db")] == ["db1"]


def test_unknown_host_lists_the_known_ones(tmp_path: Path) -> None:
    lab = Lab.load([])
    with pytest.raises(LabError, match=r"no host named 'nope' in the default lab \(hosts: local\)"):
        lab.host("nope")


def test_remote_hosts_are_built_with_their_hops(tmp_path: Path, key: Path) -> None:
    from otto.hosts import remote

    f = write(
        tmp_path / "lab.json",
        {
            "hosts": [
                {"name": "gw", "address": "10.0.0.1", "user": "ops", "key": str(key)},
                {
                    "name": "db",
                    "address": "10.0.0.2",
                    "user": "ops",
                    "password": SECRET,
                    "port": 2222,
                    "hop": "gw",
                    "known_hosts": None,
                },
            ]
        },
    )
    lab = Lab.load(f)
    db = lab.host("db")
    assert isinstance(db, remote.RemoteHost)
    assert db.name == "db"
    assert SECRET not in repr(db)
    assert lab.host("gw") is lab.host("gw")


async def test_close_closes_built_hosts() -> None:
    lab = Lab.load([])
    host = lab.host("local")
    assert (await host.run("echo hi")).only.output == "hi"
    await lab.close()
    assert host.sessions == {}


# --- the current lab --------------------------------------------------------------------


def test_current_lab_defaults_to_local() -> None:
    assert current_lab().names == ["local"]
    assert [h.name for h in all_hosts()] == ["local"]
    assert get_host("local") is get_host("local")


def test_current_lab_comes_from_otto_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = write(tmp_path / "a.json", {"hosts": [{"name": "one", "term": "local"}]})
    b = write(tmp_path / "b.json", {"hosts": [{"name": "two", "term": "local"}]})
    monkeypatch.setenv("OTTO_LAB", f"{a}{os.pathsep}{b}")
    assert current_lab().names == ["one", "two"]


def test_load_lab_replaces_the_current_lab(tmp_path: Path) -> None:
    a = write(tmp_path / "a.json", {"hosts": [{"name": "one", "term": "local"}]})
    lab = load_lab(a)
    assert current_lab() is lab
    assert [h.name for h in all_hosts()] == ["one"]
    with pytest.raises(LabError):
        get_host("local")
    assert load_lab([]).names == ["local"]


@pytest.mark.parametrize(
    ("fld", "value"),
    [("port", "${LAB_SECRET}"), ("port", "99${LAB_SECRET}"), ("term", "${LAB_SECRET}")],
)
def test_an_error_about_a_variable_names_it_and_never_shows_its_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fld: str, value: str
) -> None:
    monkeypatch.setenv("LAB_SECRET", "hunter2-s3cret")
    entry = {"name": "db", "address": "10.0.0.5", "user": "ops", fld: value}
    message = error_of(write(tmp_path / "lab.json", {"hosts": [entry]}))
    assert f"host 'db': field '{fld}'" in message
    assert "${LAB_SECRET}" in message
    assert "hunter2" not in message and "s3cret" not in message


def test_a_bad_value_written_in_the_file_is_still_shown(tmp_path: Path) -> None:
    entry = {"name": "db", "address": "10.0.0.5", "user": "ops", "port": 70000}
    assert "(got 70000)" in error_of(write(tmp_path / "lab.json", {"hosts": [entry]}))
