"""Labs from Ansible inventories through Ansible's own inventory code (needs ansible-core)."""

from __future__ import annotations

import getpass
import logging
import sys
from pathlib import Path

import pytest

from otto.lab import Lab
from otto.lab.model import check_sources

pytest.importorskip("ansible")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


INI = """\
[web]
web[01:03] ansible_user=deploy

[db]
db1 ansible_host=10.0.0.5 ansible_port=2222 ansible_password=s3cret

[prod:children]
web
db

[prod:vars]
ansible_user=produser
ansible_become_password=sudo-pw

[edge]
gw ansible_host=10.0.0.1 ansible_ssh_private_key_file=keys/id_gw ansible_host_key_checking=false

[here]
box ansible_connection=local ansible_host=ignored

[win]
w1 ansible_connection=winrm
"""


def test_ini_inventory(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path / "keys" / "id_gw", "not a key\n")
    inventory = write(tmp_path / "hosts", INI)
    with caplog.at_level(logging.WARNING, logger="otto.lab"):
        lab = Lab.load(inventory)
    assert lab.names == ["web01", "web02", "web03", "db1", "gw", "box"]
    web = lab.spec("web02")
    # A host variable beats the group variable of a parent group, as in Ansible.
    assert (web.address, web.user, web.port, web.tags) == ("web02", "deploy", None, ("web", "prod"))
    db = lab.spec("db1")
    assert (db.address, db.user, db.port, db.password) == ("10.0.0.5", "produser", 2222, "s3cret")
    assert db.become_password == "sudo-pw"
    gw = lab.spec("gw")
    assert gw.key == tmp_path / "keys" / "id_gw"
    assert gw.known_hosts is None
    assert gw.user == getpass.getuser()  # ansible_user unset: the local user
    box = lab.spec("box")
    assert (box.term, box.address, box.tags) == ("local", None, ("here",))
    assert "host 'w1': ansible_connection 'winrm' is not one otto drives" in caplog.text


def test_yaml_inventory_with_group_vars_directory(tmp_path: Path) -> None:
    inventory = write(
        tmp_path / "inv.yml",
        """\
all:
  children:
    app:
      hosts:
        app[a:c].example.com:
      vars:
        ansible_port: 2201
    lb:
      hosts:
        lb1:
          ansible_host: 192.0.2.10
""",
    )
    write(tmp_path / "group_vars" / "app.yml", "ansible_user: appuser\n")
    write(tmp_path / "host_vars" / "lb1.yml", "ansible_user: lbuser\n")
    lab = Lab.load(inventory)
    assert lab.names == ["appa.example.com", "appb.example.com", "appc.example.com", "lb1"]
    app = lab.spec("appb.example.com")
    assert (app.user, app.port, app.tags) == ("appuser", 2201, ("app",))
    lb = lab.spec("lb1")
    assert (lb.address, lb.user) == ("192.0.2.10", "lbuser")


def test_group_cycle_is_an_error_naming_file_and_line(tmp_path: Path) -> None:
    inventory = write(tmp_path / "cycle.ini", "[a:children]\nb\n\n[b:children]\n# x\na\n")
    problems = check_sources([inventory])[2]
    assert len(problems) == 1
    assert problems[0].startswith(f"{inventory}:6: Ansible cannot read this inventory")
    assert "recursive dependency loop" in problems[0]


def test_group_cycle_in_a_yaml_inventory(tmp_path: Path) -> None:
    inventory = write(
        tmp_path / "cycle.yml",
        "all:\n  children:\n    a:\n      children:\n        b:\n          children:\n"
        "            a:\n",
    )
    problems = check_sources([inventory])[2]
    assert len(problems) == 1
    assert problems[0].startswith(f"{inventory}:5: Ansible cannot read"), problems
    assert "recursive dependency loop" in problems[0]


def test_bad_inventory_gives_ansible_reason(tmp_path: Path) -> None:
    inventory = write(tmp_path / "bad.ini", "[web\nweb1\n")
    problems = check_sources([inventory])[2]
    assert len(problems) == 1 and problems[0].startswith(f"{inventory}: Ansible cannot read")


def test_no_inventory_script_is_run(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    script = write(tmp_path / "inventory.sh", f"#!/bin/sh\ntouch {marker}\necho '{{}}'\n")
    script.chmod(0o755)
    check_sources([f"ansible:{script}"])
    assert not marker.exists()


def test_host_name_otto_cannot_take(tmp_path: Path) -> None:
    inventory = write(tmp_path / "hosts", "[x]\nok1\nbad,name ansible_host=1.2.3.4\n")
    problems = check_sources([inventory])[2]
    assert any("host 'bad,name': not a valid otto host name" in p for p in problems), problems


def test_without_ansible_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inventory = write(tmp_path / "hosts", "[web]\nweb1\n")
    for name in list(sys.modules):
        if name == "ansible" or name.startswith("ansible."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ansible", None)  # import ansible fails
    problems = check_sources([inventory])[2]
    assert problems == [
        f"{inventory}: reading an Ansible inventory needs ansible-core: "
        "pip install 'otto-shell[ansible]'"
    ]
