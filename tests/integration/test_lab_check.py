"""``otto lab check`` as users run it: hostile files refused fast, every mistake named.

A lab file may come from anywhere (a colleague, a generator, a download):
aliases of aliases, nesting thousands deep and ssh_config ``Include`` loops
are refused with one line naming the file and the line, exit status 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab.reservations import ROOT

pytestmark = pytest.mark.integration

# A few hundred bytes that expand to 9**8 strings: PyYAML builds them shared, but every
# walk over the result (variable substitution, validation) visits each one.
LAUGHS = """\
x:
  a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
  b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
  c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
  d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
  e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
  f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
  g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
  h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
hosts: [{name: a, term: local, tags: *h}]
"""


def otto(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTO_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    # The timeout only stops a hang from stalling the suite: the check itself is the
    # answer arriving at all, with the right words.
    return subprocess.run(
        [sys.executable, "-m", "otto", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def refused(result: subprocess.CompletedProcess[str], where: str, words: str) -> None:
    """One problem line naming ``where`` (file:line) and ``words``, then the summary; exit 2."""
    assert result.returncode == 2, result
    lines = result.stderr.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(where), lines
    assert words in lines[0], lines
    assert lines[1].startswith("otto: error: 1 problem in ")
    assert "Traceback" not in result.stderr and "RecursionError" not in result.stderr


# --- hostile files --------------------------------------------------------------------------


def test_a_yaml_alias_bomb_is_refused_with_file_and_line(tmp_path: Path) -> None:
    lab = tmp_path / "bomb.yaml"
    lab.write_text(LAUGHS)
    refused(otto("lab", "check", str(lab), cwd=tmp_path), f"{lab}:7:", "aliases expand")
    # The same file as the lab of a command: refused before anything runs.
    ran = otto("--lab", str(lab), "host", "a", "run", "echo ran", cwd=tmp_path)
    assert ran.returncode == 2 and "ran" not in ran.stdout
    assert f"{lab}:7: aliases expand" in ran.stderr


def test_a_yaml_alias_that_holds_itself_is_refused(tmp_path: Path) -> None:
    lab = tmp_path / "loop.yaml"
    lab.write_text("x: &a [1, *a]\nhosts: []\n")
    refused(otto("lab", "check", str(lab), cwd=tmp_path), f"{lab}:1:", "refers to the node")


def test_a_yaml_bomb_in_an_ansible_inventory_is_refused(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        LAUGHS.replace("hosts: [{name: a, term: local, tags: *h}]", "")
        + ("all:\n  hosts:\n    h1:\n      junk: *h\n")
    )
    refused(
        otto("lab", "check", f"ansible:{inventory}", cwd=tmp_path),
        f"{inventory}:7:",
        "aliases expand",
    )


@pytest.mark.parametrize("depth", [100, 900, 20000])
def test_deep_json_nesting_is_one_line(tmp_path: Path, depth: int) -> None:
    lab = tmp_path / "deep.json"
    tags = "[" * depth + "]" * depth
    lab.write_text('{"hosts": [\n{"name": "a", "term": "local", "tags": ' + tags + "}]}\n")
    refused(otto("lab", "check", str(lab), cwd=tmp_path), f"{lab}:2:", "nested more than 64")


@pytest.mark.parametrize("depth", [100, 800])
def test_deep_yaml_nesting_is_one_line(tmp_path: Path, depth: int) -> None:
    lab = tmp_path / "deep.yaml"
    lab.write_text("hosts:\n- {name: a, term: local, tags: " + "[" * depth + "]" * depth + "}\n")
    refused(otto("lab", "check", str(lab), cwd=tmp_path), f"{lab}:2:", "nested more than 64")


def test_deep_ansible_groups_are_one_line(tmp_path: Path) -> None:
    lines, indent = ["all:", "  children:"], "    "
    for level in range(300):
        lines += [f"{indent}g{level}:", f"{indent}  children:"]
        indent += "    "
    lines += [f"{indent}leaf:", f"{indent}  hosts:", f"{indent}    h1:"]
    inventory = tmp_path / "deep.yml"
    inventory.write_text("\n".join(lines) + "\n")
    refused(otto("lab", "check", f"ansible:{inventory}", cwd=tmp_path), f"{inventory}:", "nested")


def test_an_ssh_config_include_loop_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "config"
    other = tmp_path / "other.conf"
    config.write_text(f"Include {other}\nHost a\n  HostName 10.0.0.1\n")
    other.write_text(f"# loops back\nInclude {config}\n")
    result = otto("lab", "check", f"ssh:{config}", cwd=tmp_path)
    assert result.returncode == 2, result
    (problem, summary) = result.stderr.splitlines()
    # The 17th nested Include is refused, as OpenSSH refuses it.
    assert problem.startswith(f"{config}:1: Include nested more than 16 deep"), problem
    assert summary.startswith("otto: error: 1 problem in ")


def test_a_chain_of_sixteen_includes_is_fine_and_seventeen_is_not(tmp_path: Path) -> None:
    def chain(count: int) -> Path:
        folder = tmp_path / f"chain{count}"
        folder.mkdir()
        files = [folder / f"c{i}" for i in range(count + 1)]
        for i, file in enumerate(files[:-1]):
            file.write_text(f"Include {files[i + 1]}\n")
        files[-1].write_text("Host deep\n  HostName 10.0.0.9\n  User u\n")
        return files[0]

    ok = otto("lab", "check", f"ssh:{chain(16)}", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("ok: 1 host in ")
    too_deep = otto("lab", "check", f"ssh:{chain(17)}", cwd=tmp_path)
    assert too_deep.returncode == 2
    assert "Include nested more than 16 deep" in too_deep.stderr


# --- every mistake named ------------------------------------------------------------------------


def test_every_unknown_key_at_every_level_with_the_nearest_name(tmp_path: Path) -> None:
    lab = tmp_path / "lab.json"
    lab.write_text(
        json.dumps(
            {
                "hots": [],
                "hosts": [
                    {
                        "name": "a",
                        "adress": "10.0.0.1",
                        "usr": "u",
                        "zzz": 1,
                        "snmp": {"comunity": "public", "verison": "2c", "qqq": 1},
                        "power": {"onn": "x", "of": "y"},
                    }
                ],
                "settings": {"reservatons": "sqlite:///x", "colour": True},
                "extra": 1,
            }
        )
    )
    result = otto("lab", "check", str(lab), cwd=tmp_path)
    assert result.returncode == 2
    problems = result.stderr.splitlines()[:-1]
    expected = [
        f"{lab}: unknown top-level key 'hots'; did you mean 'hosts'?",
        f"{lab}: unknown top-level key 'extra' (expected hosts, settings)",
        f"{lab}: settings: unknown key 'reservatons'; did you mean 'reservations'?",
        f"{lab}: settings: unknown key 'colour' (expected 'instructions', 'reservations')",
        f"{lab}: host 'a': field 'adress': unknown field; did you mean 'address'?",
        f"{lab}: host 'a': field 'usr': unknown field; did you mean 'user'?",
        f"{lab}: host 'a': field 'zzz': unknown field (expected one of name, term, ",
        f"{lab}: host 'a': field 'snmp': unknown key 'comunity'; did you mean 'community'?",
        f"{lab}: host 'a': field 'snmp': unknown key 'verison'; did you mean 'version'?",
        f"{lab}: host 'a': field 'snmp': unknown key 'qqq' (expected 'community', ",
        f"{lab}: host 'a': field 'power': unknown key 'onn'; did you mean 'on'?",
        f"{lab}: host 'a': field 'power': unknown key 'of'; did you mean 'off'?",
    ]
    for want in expected:
        assert sum(p.startswith(want) for p in problems) == 1, (want, problems)


def test_key_and_known_hosts_files_must_exist(tmp_path: Path) -> None:
    (tmp_path / "id_test").write_text("not really a key\n")
    (tmp_path / "known").write_text("")
    lab = tmp_path / "lab.json"
    hosts = [
        {"name": "good", "address": "h", "user": "u", "key": "id_test", "known_hosts": "known"},
        {"name": "nokey", "address": "h", "user": "u", "key": "id_missing"},
        {"name": "nokh", "address": "h", "user": "u", "known_hosts": "kh_missing"},
        {"name": "off", "address": "h", "user": "u", "known_hosts": None},
    ]
    lab.write_text(json.dumps({"hosts": hosts}))
    result = otto("lab", "check", str(lab), cwd=tmp_path)
    assert result.returncode == 2
    problems = result.stderr.splitlines()[:-1]
    assert len(problems) == 2, problems
    assert problems[0].startswith(f"{lab}: host 'nokey': field 'key': key file ")
    assert problems[1] == (
        f"{lab}: host 'nokh': field 'known_hosts': file '{tmp_path / 'kh_missing'}' does not "
        'exist (fill it with ssh-keyscan, or set "known_hosts": null to turn host key '
        "checking off)"
    )


def test_an_snmp_device_without_shell_settings_points_at_term_none(tmp_path: Path) -> None:
    lab = tmp_path / "lab.json"
    lab.write_text(
        json.dumps({"hosts": [{"name": "sw1", "address": "10.0.0.2", "snmp": {"community": "p"}}]})
    )
    result = otto("lab", "check", str(lab), cwd=tmp_path)
    assert result.returncode == 2
    (problem, _) = result.stderr.splitlines()
    assert problem.startswith(f"{lab}: host 'sw1': field 'term': a host with 'snmp' and no shell")
    assert 'set "term": "none"' in problem
    fixed = json.loads(lab.read_text())
    fixed["hosts"][0]["term"] = "none"
    lab.write_text(json.dumps(fixed))
    assert otto("lab", "check", str(lab), cwd=tmp_path).returncode == 0


def test_an_empty_lab_is_a_warning(tmp_path: Path) -> None:
    lab = tmp_path / "lab.json"
    lab.write_text('{"hosts": []}')
    result = otto("lab", "check", str(lab), cwd=tmp_path)
    assert result.returncode == 0
    assert result.stderr == f"warning: no hosts in {lab}: the lab is empty\n"
    assert result.stdout == f"ok: 0 hosts in {lab}\n"


def test_lab_check_json(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"hosts": [{"name": "a", "term": "local"}]}))
    result = otto("lab", "check", "--json", str(good), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert json.loads(result.stdout) == {
        "ok": True,
        "sources": [str(good)],
        "hosts": 1,
        "problems": [],
        "warnings": [],
    }
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hosts": [{"name": "a", "adress": "h"}]}))
    result = otto("lab", "check", "--json", str(bad), cwd=tmp_path)
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["ok"] is False and report["hosts"] == 0
    assert (
        f"{bad}: host 'a': field 'adress': unknown field; did you mean 'address'?"
        in (report["problems"])
    )
