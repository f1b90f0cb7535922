"""Which reader a lab source goes to: otto JSON or YAML, an OpenSSH config, an Ansible inventory.

A source may name its format: ``json:PATH``, ``yaml:PATH``, ``ssh:PATH``
(an OpenSSH client config) or ``ansible:PATH`` (an inventory file or
directory). Without a prefix the format is told apart like this, first
match wins:

1. a directory is an Ansible inventory;
2. ``.json`` is an otto lab in JSON;
3. ``.yaml`` / ``.yml`` is an otto lab in YAML, unless its top level is made
   of groups (``all:`` with ``hosts``/``children``/``vars``): an Ansible inventory;
4. a file named ``config`` or ``ssh_config`` (``~/.ssh/config``), or ending in
   ``.ssh_config``, is an OpenSSH client config;
5. ``.ini``, or a file named ``hosts`` or ``inventory``, is an Ansible INI inventory;
6. otherwise the first line that is not blank or a comment decides: ``{`` is
   JSON, an OpenSSH keyword (``Host``, ``Match``, ``Include``, ``HostName``...)
   is an OpenSSH config, ``---`` or ``key:`` is YAML (as in 3), ``[group]`` or a
   host line is an Ansible INI inventory.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from otto.lab.raw import RawHost

__all__ = ["FORMATS", "read_source", "source_format"]

FORMATS = ("json", "yaml", "ssh", "ansible")
_PREFIX_RE = re.compile(r"^(json|yaml|ssh|ansible):(.+)$", re.DOTALL)
_SSH_FIRST_WORDS = {
    "host",
    "match",
    "include",
    "hostname",
    "user",
    "port",
    "identityfile",
    "proxyjump",
    "proxycommand",
    "stricthostkeychecking",
    "userknownhostsfile",
    "serveraliveinterval",
    "forwardagent",
    "identitiesonly",
    "addkeystoagent",
    "controlmaster",
    "controlpath",
    "controlpersist",
    "ignoreunknown",
}
_YAML_START_RE = re.compile(r"^(---|[A-Za-z0-9_.-]+\s*:(\s|$))")


def split_prefix(source: str) -> tuple[str | None, str]:
    """``(format, path)`` of a source; the format is None when not given."""
    m = _PREFIX_RE.match(source)
    if m is None:
        return None, source
    return m.group(1), m.group(2)


def _first_line(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                text = line.strip()
                if text and not text.startswith(("#", ";")):
                    return text
    except OSError:
        return ""
    return ""


def source_format(path: Path) -> str:
    """The format of an unprefixed source (see the module docs)."""
    suffix = path.suffix.lower()
    if path.is_dir():
        return "ansible"
    if suffix == ".json":
        return "json"
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if path.name in ("config", "ssh_config") or path.name.endswith(".ssh_config"):
        return "ssh"
    if suffix == ".ini" or path.name in ("hosts", "inventory"):
        return "ansible"
    first = _first_line(path)
    if not first or first.startswith("{"):
        return "json"  # an empty or missing file gets the JSON reader's message
    word = re.split(r"[\s=]", first, maxsplit=1)[0].lower()
    if word in _SSH_FIRST_WORDS:
        return "ssh"
    if _YAML_START_RE.match(first):
        return "yaml"
    return "ansible"


def read_source(
    source: str | os.PathLike[str],
    hosts: dict[str, RawHost],
    instructions: list[tuple[str, str]],
    problems: list[str],
    *,
    settings: dict[str, tuple[object, str]] | None = None,
) -> None:
    """Merge one lab source into ``hosts``; its problems are added to ``problems``.

    Settings other than ``instructions`` go to ``settings`` as ``(value, file)``.
    """
    fmt, text = split_prefix(os.fspath(source))
    path = Path(text).expanduser()
    sniffed = fmt is None
    if fmt is None:
        fmt = source_format(path)
    if fmt == "json":
        from otto.lab.json_source import read_file

        read_file(path, hosts, instructions, problems, settings=settings)
    elif fmt == "yaml":
        from otto.lab.yaml_source import read_file as read_yaml

        read_yaml(path, hosts, instructions, problems, ansible_ok=sniffed, settings=settings)
    elif fmt == "ssh":
        from otto.lab.ssh_config import read_file as read_ssh

        read_ssh(path, hosts, problems)
    else:
        from otto.lab.ansible_source import read_inventory

        read_inventory(path, hosts, problems)
