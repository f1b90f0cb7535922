"""Lab sources against real components: an ssh_config with ProxyJump into the real SSH lab,
and otto's view of Ansible inventories beside ``ansible-inventory --list`` of the same files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from otto.lab import Lab
from tests.integration.test_cli import otto

if TYPE_CHECKING:
    from tests.lab import Lab as TestLab


def ssh_config_for(lab: TestLab, path: Path) -> Path:
    """An ssh_config: 'gw' is ssh1, 'deep' is inner2 reached by ProxyJump gw,mid (mid: inner)."""
    ssh1, inner, inner2 = lab.hosts["ssh1"], lab.hosts["inner"], lab.hosts["inner2"]
    assert inner.hop == "ssh1" and inner2.hop == "inner"
    path.write_text(
        f"""\
# the test lab, as a user would write it
Host gw
    HostName {ssh1.address}
    Port {ssh1.port}

Host mid
    HostName {inner.address}
    Port {inner.port}

Host deep
    HostName {inner2.address}
    Port {inner2.port}
    ProxyJump gw,mid

Host inner-direct
    HostName {inner.address}
    Port {inner.port}
    ProxyJump {ssh1.user}@{ssh1.address}:{ssh1.port}

Host *
    User {ssh1.user}
    IdentityFile {lab.client_key}
    UserKnownHostsFile {lab.known_hosts}
    ServerAliveInterval 30
"""
    )
    return path


def test_ssh_config_lab_runs_through_proxyjump_chains(lab: TestLab, tmp_path: Path) -> None:
    config = ssh_config_for(lab, tmp_path / "ssh_config")
    listed = otto("--lab", str(config), "--list-hosts")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert rows["deep"][3] == "mid-via-gw"
    assert rows["mid-via-gw"][3] == "gw"

    inner, inner2 = lab.hosts["inner"], lab.hosts["inner2"]
    proc = otto(
        "--lab",
        str(config),
        "host",
        "deep,inner-direct",
        "run",
        "hostname",
        'echo "at ${SSH_CONNECTION#* * }"',
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # Each alias reached the sshd it names, through its hops.
    assert "deep" in proc.stdout
    assert f"at {inner2.address} {inner2.port}" in proc.stdout, proc.stdout
    assert f"at {inner.address} {inner.port}" in proc.stdout, proc.stdout


def test_ansible_inventory_lab_runs_commands(lab: TestLab, tmp_path: Path) -> None:
    pytest.importorskip("ansible")
    ssh1 = lab.hosts["ssh1"]
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(
        f"[lab]\nbox ansible_host={ssh1.address} ansible_port={ssh1.port}\n\n"
        f"[lab:vars]\nansible_user={ssh1.user}\n"
        f"ansible_ssh_private_key_file={lab.client_key}\n"
        "ansible_host_key_checking=false\n"
    )
    proc = otto("--lab", str(inventory), "host", "box", "run", 'echo "at ${SSH_CONNECTION#* * }"')
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"at {ssh1.address} {ssh1.port}" in proc.stdout


# --- otto's view of an inventory beside ansible-inventory's ---------------------------------

INI = """\
[web]
web[01:12].example.com ansible_user=deploy
web-special.example.com ansible_host=192.0.2.99 ansible_port=2299

[db]
db[a:d] ansible_host=10.0.0.1

[db:vars]
ansible_port=5522
ansible_user=dba

[prod:children]
web
db

[prod:vars]
ansible_user=produser
ansible_port=2200

[staging]
stage[1:3]

[all:vars]
ansible_user=everyone
"""

YAML = """\
all:
  vars:
    ansible_user: everyone
  children:
    prod:
      vars:
        ansible_port: 2200
      children:
        web:
          hosts:
            web[01:05]:
              ansible_user: deploy
        db:
          vars:
            ansible_user: dba
          hosts:
            db1:
              ansible_host: 10.0.0.5
              ansible_port: 5432
    ungrouped:
      hosts:
        loner:
          ansible_host: 192.0.2.1
"""


def ansible_view(path: Path) -> dict[str, dict[str, Any]]:
    """``ansible-inventory --list`` of ``path``: each host's address, user, port and groups."""
    command = shutil.which("ansible-inventory")
    if command is None:
        pytest.skip("ansible-inventory is not installed")
    proc = subprocess.run(
        [command, "-i", str(path), "--list"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    data = json.loads(proc.stdout)
    groups: dict[str, set[str]] = {}

    def walk(group: str, parents: list[str]) -> None:
        for host in data.get(group, {}).get("hosts", []):
            groups.setdefault(host, set()).update([*parents, group])
        for child in data.get(group, {}).get("children", []):
            walk(child, [*parents, group])

    walk("all", [])
    view = {}
    for host, variables in data["_meta"]["hostvars"].items():
        view[host] = {
            "address": variables.get("ansible_host", host),
            "user": variables.get("ansible_user"),
            "port": variables.get("ansible_port"),
            "groups": groups.get(host, set()) - {"all", "ungrouped"},
        }
    for host, member_of in groups.items():  # hosts without variables are not in hostvars
        bare = {"address": host, "user": None, "port": None}
        view.setdefault(host, {**bare, "groups": member_of - {"all", "ungrouped"}})
    return view


VARS_FILES = {
    "group_vars/all.yml": "ansible_user: from-all-file\n",
    "group_vars/db.yml": "ansible_port: 6000\n",
    "host_vars/web03.example.com.yml": "ansible_host: 198.51.100.3\nansible_user: h3\n",
}


@pytest.mark.parametrize(
    ("name", "text", "files"),
    [
        ("hosts.ini", INI, {}),
        ("inventory.yml", YAML, {}),
        ("hosts.ini", INI, VARS_FILES),  # group_vars/ and host_vars/ in Ansible's precedence
    ],
)
def test_otto_sees_the_inventory_as_ansible_does(
    tmp_path: Path, name: str, text: str, files: dict[str, str]
) -> None:
    pytest.importorskip("ansible")
    path = tmp_path / name
    path.write_text(text)
    for relative, content in files.items():
        (tmp_path / relative).parent.mkdir(exist_ok=True)
        (tmp_path / relative).write_text(content)
    expected = ansible_view(path)
    lab = Lab.load(path)
    assert set(lab.names) == set(expected)
    assert len(expected) > 5
    for spec in lab.specs:
        want = expected[spec.name]
        got = {
            "address": spec.address,
            "user": spec.user,
            "port": spec.port,
            "groups": set(spec.tags),
        }
        assert got == want, spec.name
