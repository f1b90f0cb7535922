"""Lab sources: YAML labs, every problem at once, the JSON Schema, how a source's format is told."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema  # a dev dependency: the schema tests never skip
import pytest
from typer.testing import CliRunner

import otto.lab as lab_module
from otto.cli.app import app
from otto.errors import LabError
from otto.lab import Lab
from otto.lab.model import check_sources
from otto.lab.raw import HOST_FIELDS
from otto.lab.schema import FIELDS, check_value, lab_schema
from otto.lab.sources import source_format

SECRET = "hunter2-Sekr3t"


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("OTTO_LAB", raising=False)
    saved = lab_module._state.lab
    lab_module._state.lab = None
    yield
    lab_module._state.lab = saved


def error_of(paths: Path | list[Path] | str) -> str:
    with pytest.raises(LabError) as info:
        Lab.load(paths)  # type: ignore[arg-type]
    return str(info.value)


GOOD_YAML = """\
# a lab in YAML
hosts:
  - name: gw
    address: 10.0.0.1
    user: ops
    port: 2222
    tags: [edge, prod]
  - name: db1
    address: 192.168.1.5
    user: ops
    password: ${LAB_PW}
    hop: gw
    known_hosts: null
  - name: here
    term: local
settings:
  instructions: [lab_tasks]
"""


# --- YAML labs ---------------------------------------------------------------------------


def test_yaml_lab_reads_like_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_PW", SECRET)
    path = tmp_path / "lab.yaml"
    path.write_text(GOOD_YAML)
    lab = Lab.load(path)
    assert lab.names == ["gw", "db1", "here"]
    gw, db1 = lab.spec("gw"), lab.spec("db1")
    assert (gw.address, gw.user, gw.port, gw.tags) == ("10.0.0.1", "ops", 2222, ("edge", "prod"))
    assert (db1.password, db1.hop, db1.known_hosts) == (SECRET, "gw", None)
    assert lab.spec("here").term == "local"
    assert [m for m, _ in lab.instruction_modules] == ["lab_tasks"]
    # The same lab written as JSON gives the same hosts.
    as_json = tmp_path / "lab.json"
    import yaml

    as_json.write_text(json.dumps(yaml.safe_load(GOOD_YAML)))
    again = Lab.load(as_json)
    strip = [s.__class__(**{**s.__dict__, "files": ()}) for s in lab.specs]
    assert strip == [s.__class__(**{**s.__dict__, "files": ()}) for s in again.specs]


def test_yaml_with_a_tab_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "lab.yml"
    path.write_text("hosts:\n  - name: a\n\t  term: local\n")
    assert error_of(path) == f"{path}:3: a tab in the indentation (YAML indents with spaces)"


def test_yaml_repeated_key_names_file_and_lines(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("hosts:\n  - name: a\n    address: h\n    user: u\n    address: other\n")
    message = error_of(path)
    assert message.startswith(f"{path}:5:")
    assert "key 'address' given twice (lines 3 and 5)" in message


def test_yaml_repeated_top_level_key(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("hosts: []\nsettings: {}\nhosts: []\n")
    assert "key 'hosts' given twice (lines 1 and 3)" in error_of(path)


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("hosts:\n  - name: [a\n")
    message = error_of(path)
    assert message.startswith(f"{path}:")
    assert "invalid YAML" in message


def test_yaml_entry_problem_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("hosts:\n  - name: ok\n    term: local\n  - term: local\n")
    assert f"{path}: host #2 (line 4): field 'name' is required" in error_of(path)


def test_yaml_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("- a\n- b\n")
    assert "a lab file holds a YAML object with a 'hosts' list" in error_of(path)


# --- every problem, not the first -----------------------------------------------------------


BAD = {
    "hosts": [
        {"name": "a", "port": 0, "user": 5},
        {"name": "b", "address": "x", "user": "u", "hop": "zz", "pasword": 1},
        {"name": "c", "term": "local", "power": {"toggle": "x"}},
        {"name": "bad name", "term": "local"},
        {"name": "d", "term": "telnet", "address": "h", "user": "u", "key": "k"},
    ],
    "settings": {"colour": True},
}


def test_every_problem_is_reported_with_file_host_and_field(tmp_path: Path) -> None:
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(BAD))
    _, _, problems = check_sources([path])
    expected = [
        f"{path}: settings: unknown key 'colour'",
        f"{path}: host #4: field 'name' must be a string",
        f"{path}: host 'b': field 'pasword': unknown field",
        f"{path}: host 'a': field 'port': must be a port number 1-65535 (got 0)",
        f"{path}: host 'a': field 'user': must be a non-empty string (got 5)",
        f"{path}: host 'a': field 'address': required for term 'ssh'",
        f"{path}: host 'c': field 'power': unknown key 'toggle'",
        f"{path}: host 'd': field 'key': not used by term 'telnet'",
        f"{path}: host 'b': field 'hop': no host named 'zz' in the lab",
    ]
    assert len(problems) == len(expected), problems
    for want in expected:
        assert any(p.startswith(want) for p in problems), (want, problems)
    # Lab.load raises once, with all of them, the first one first.
    message = error_of(path)
    assert message.splitlines() == problems


def test_problems_in_several_files_are_all_reported(tmp_path: Path) -> None:
    one = tmp_path / "one.json"
    one.write_text("{not json")
    two = tmp_path / "two.yaml"
    two.write_text("hosts:\n  - name: x\n    term: rsh\n")
    _, _, problems = check_sources([one, two])
    assert len(problems) == 2
    assert problems[0].startswith(f"{one}:1:2: invalid JSON")
    assert problems[1].startswith(f"{two}: host 'x': field 'term': must be one of")


def test_a_secret_is_never_shown_in_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "lab.json"
    path.write_text(
        json.dumps({"hosts": [{"name": "a", "term": "local", "become_password": [SECRET]}]})
    )
    message = error_of(path)
    assert "'become_password': must be a string" in message
    assert SECRET not in message


def test_hop_cycle_is_reported_once(tmp_path: Path) -> None:
    hosts = [
        {"name": n, "address": "h", "user": "u", "hop": h}
        for n, h in (("a", "b"), ("b", "c"), ("c", "a"))
    ]
    path = tmp_path / "lab.json"
    path.write_text(json.dumps({"hosts": hosts}))
    _, _, problems = check_sources([path])
    assert len(problems) == 1 and "hops form a cycle: a -> b -> c -> a" in problems[0]


# --- the JSON Schema ------------------------------------------------------------------------


def test_every_lab_field_has_a_rule() -> None:
    assert set(FIELDS) == set(HOST_FIELDS)


def test_schema_is_valid_and_accepts_the_example_labs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yaml

    schema = lab_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    examples = [yaml.safe_load(GOOD_YAML)]
    examples.append(
        {
            "hosts": [
                {
                    "name": "board",
                    "term": "console",
                    "address": "ts:7001",
                    "console_protocol": "raw",
                    "console_log": "logs/board.log",
                },
                {
                    "name": "uart",
                    "term": "serial",
                    "address": "/dev/ttyUSB0",
                    "baud": 115200,
                    "power": {"cycle": "relay 3", "via": "pdu"},
                },
                {
                    "name": "pdu",
                    "address": "10.0.0.9",
                    "user": "admin",
                    "port": "${PDU_PORT}",
                    "connect_timeout": 2.5,
                    "become_password": "${PW}",
                },
                {
                    "name": "switch",
                    "term": "telnet",
                    "address": "10.0.0.2",
                    "port": 2323,
                    "user": "admin",
                    "password": "x",
                    "hop": "pdu",
                },
            ]
        }
    )
    for example in examples:
        assert list(validator.iter_errors(example)) == []
        path = tmp_path / "example.json"
        path.write_text(json.dumps(example))
        monkeypatch.setenv("LAB_PW", "x")
        monkeypatch.setenv("PDU_PORT", "22")
        monkeypatch.setenv("PW", "x")
        assert check_sources([path])[2] == []  # and otto takes them


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "a", "term": "rsh"},
        {"name": "a b"},
        {"name": "a", "port": 0},
        {"name": "a", "port": "22x"},
        {"name": "a", "port": True},
        {"name": "a", "tags": "db"},
        {"name": "a", "pasword": "x"},
        {"name": "a", "term": "local", "address": "h"},
        {"name": "a", "term": "telnet", "key": "k"},
        {"name": "a", "term": "ssh", "baud": 9600},
        {"name": "a", "power": {"via": "pdu"}},
        {"name": "a", "power": {"on": ""}},
        {"name": "a", "connect_timeout": 0},
        {"address": "h"},
    ],
)
def test_schema_refuses_what_otto_refuses(entry: dict[str, object]) -> None:
    validator = jsonschema.Draft202012Validator(lab_schema())
    assert list(validator.iter_errors({"hosts": [entry]})) != []


VALUES: list[object] = [
    None, True, False, 0, -1, 1, 22, 65535, 65536, 2.5, "", "x", "22", "22x", "${P}",
    "ssh", "raw", "telnet", [], ["a"], [1], {}, {"on": "x"}, {"on": ""}, {"via": "p"},
    {"on": "x", "toggle": "y"}, {"cycle": "c", "via": "p"},
]  # fmt: skip


@pytest.mark.parametrize("fld", [f for f in HOST_FIELDS if f != "name"])
def test_schema_and_loader_agree_on_every_value(fld: str) -> None:
    """The loader's check of a value and the schema's are the same rule, value by value."""
    node = lab_schema()["properties"]["hosts"]["items"]["properties"][fld]  # type: ignore[index]
    validator = jsonschema.Draft202012Validator(node)
    for value in VALUES:
        by_schema = validator.is_valid(value)
        by_loader = check_value(fld, value) is None
        if fld == "port" and isinstance(value, str) and value.isdigit():
            by_loader = by_schema  # the loader also checks the range after ${VAR}
        assert by_schema == by_loader, (fld, value)


# --- telling formats apart ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "fmt"),
    [
        ("lab.json", "{}", "json"),
        ("lab.yaml", "hosts: []", "yaml"),
        ("lab.yml", "all:\n  hosts:\n", "yaml"),  # the YAML reader hands it to Ansible
        ("config", "Host a\n", "ssh"),
        ("ssh_config", "", "ssh"),
        ("work.ssh_config", "", "ssh"),
        ("hosts", "[web]\nweb1\n", "ansible"),
        ("inventory", "web1\n", "ansible"),
        ("prod.ini", "[web]\n", "ansible"),
        ("mylab", '  {"hosts": []}', "json"),
        ("mylab", "# comment\n\nHost gw\n  HostName 1.2.3.4\n", "ssh"),
        ("mylab", "Include ~/.ssh/conf.d/*\n", "ssh"),
        ("mylab", "---\nhosts: []\n", "yaml"),
        ("mylab", "hosts:\n  - name: a\n", "yaml"),
        ("mylab", "[web]\nweb[01:10]\n", "ansible"),
        ("mylab", "web1 ansible_host=10.0.0.1\n", "ansible"),
    ],
)
def test_source_format(tmp_path: Path, name: str, text: str, fmt: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    assert source_format(path) == fmt


def test_a_directory_is_an_ansible_inventory(tmp_path: Path) -> None:
    assert source_format(tmp_path) == "ansible"


def test_prefix_names_the_format(tmp_path: Path) -> None:
    path = tmp_path / "odd.txt"
    path.write_text("hosts:\n  - name: a\n    term: local\n")
    assert Lab.load(f"yaml:{path}").names == ["a"]
    assert "invalid JSON" in error_of(f"json:{path}")


# --- otto lab check / schema ----------------------------------------------------------------


def test_lab_check_reports_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "lab.json"
    path.write_text(json.dumps(BAD))
    result = CliRunner().invoke(app, ["lab", "check", str(path)])
    assert result.exit_code == 2
    assert result.output.count(f"{path}: ") >= 9
    assert "9 problems in" in result.output


def test_lab_check_of_the_lab_option_is_not_stopped_by_the_bad_lab(tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text("hosts:\n  - name: a\n    port: 0\n")
    result = CliRunner().invoke(app, ["--lab", str(path), "lab", "check"])
    assert result.exit_code == 2
    assert f"{path}: host 'a': field 'port': must be a port number 1-65535" in result.output
    assert f"{path}: host 'a': field 'address': required for term 'ssh'" in result.output


def test_lab_check_of_a_good_lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LAB_PW", "x")
    path = tmp_path / "lab.yaml"
    path.write_text(GOOD_YAML)
    result = CliRunner().invoke(app, ["lab", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output == f"ok: 3 hosts in {path}\n"


def test_lab_schema_prints_the_schema() -> None:
    result = CliRunner().invoke(app, ["lab", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.output) == lab_schema()


def test_lab_schema_written_to_a_file(tmp_path: Path) -> None:
    out = tmp_path / "otto-lab.schema.json"
    result = CliRunner().invoke(app, ["lab", "schema", "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == lab_schema()
    bad = CliRunner().invoke(app, ["lab", "schema", "--output", str(tmp_path / "no" / "x")])
    assert bad.exit_code == 1 and "cannot write the schema to" in bad.output


def test_lab_check_without_a_lab(monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(app, ["lab", "check"])
    assert result.exit_code == 2 and "no lab to check" in result.output
