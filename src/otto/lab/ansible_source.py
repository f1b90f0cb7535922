"""Labs from Ansible inventories (INI or YAML), read by Ansible's own inventory code.

Needs the ``ansible`` extra (``pip install 'otto-shell[ansible]'``, which
brings ansible-core). The inventory is parsed by Ansible's ``ini`` and ``yaml``
inventory plugins into an ``InventoryManager``, and each host's variables are
those ``ansible-inventory --list`` shows (host vars over group vars, with
``group_vars/`` and ``host_vars/``, in Ansible's order of precedence), so
ranges (``web[01:20]``), group vars and children work exactly as in Ansible.
Only those two plugins are enabled: an executable inventory script is never
run by reading a lab.

Each host becomes an otto host named after its inventory name:

- ``ansible_host`` -> ``address`` (the inventory name when not set),
- ``ansible_user`` -> ``user`` (the local user when not set, as Ansible does),
- ``ansible_port`` -> ``port``, ``ansible_ssh_private_key_file`` -> ``key``,
- ``ansible_password`` (or ``ansible_ssh_pass``) -> ``password``,
- ``ansible_become_password`` (or ``ansible_become_pass``) -> ``become_password``,
- ``ansible_ssh_timeout`` -> ``connect_timeout``,
- ``ansible_host_key_checking: false`` -> ``known_hosts: null``,
- ``ansible_connection``: ``ssh`` (also ``smart``, ``paramiko``) is an SSH host,
  ``local`` a local one; any other connection (``winrm``, ``docker``...) is left
  out of the lab with a warning,
- its groups (except ``all`` and ``ungrouped``) -> ``tags``,
- ``otto_features`` (a list, or words separated by commas: ``usb,wifi``) -> ``features``.

Templates (``{{ ... }}``) in variables are not rendered, as
``ansible-inventory --list`` does not render them.
"""

from __future__ import annotations

import getpass
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from otto.errors import LabError
from otto.lab.raw import NAME_RE, RawHost

__all__ = ["EXTRA_HINT", "inventory_view", "read_inventory"]

log = logging.getLogger("otto.lab")

EXTRA_HINT = "pip install 'otto-shell[ansible]'"

_SSH_CONNECTIONS = ("ssh", "smart", "paramiko", "paramiko_ssh")
_STRINGS = {
    "ansible_host": "address",
    "ansible_user": "user",
    "ansible_ssh_private_key_file": "key",
    "ansible_password": "password",
    "ansible_ssh_pass": "password",
    "ansible_become_password": "become_password",
    "ansible_become_pass": "become_password",
}
_FALSE = ("false", "no", "off", "0", "n")
_IMPLICIT = ("all", "ungrouped")


def _plain(value: object) -> object:
    """An Ansible value as a plain Python one (Ansible tags its strings)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return value


def inventory_view(path: Path) -> list[tuple[str, dict[str, Any], list[str]]]:
    """``(name, variables, groups)`` of each host of the inventory at ``path``, as Ansible sees it.

    Raises:
        ImportError: ansible-core is not installed.
        ValueError: Ansible cannot parse the inventory (the message is Ansible's).
    """
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import inventory_loader

    errors: list[str] = []

    def plugin(name: str) -> Any:
        found = inventory_loader.get(name)
        parse = found.parse

        def parse_noting_errors(*args: Any, **kwargs: Any) -> None:
            # Ansible would only print the reason as a warning and go on with
            # an empty inventory: keep it to report it.
            try:
                parse(*args, **kwargs)
            except Exception as exc:  # any failure of the plugin is the inventory's problem
                errors.append(str(getattr(exc, "message", "") or exc))

        found.parse = parse_noting_errors
        return found

    loader = DataLoader()
    try:
        manager = InventoryManager(loader=loader, sources=[str(path)], parse=False)
        yaml_first = path.is_dir() or path.suffix.lower() in (".yml", ".yaml")
        plugins = [plugin(n) for n in (("yaml", "ini") if yaml_first else ("ini", "yaml"))]
        manager._fetch_inventory_plugins = lambda: plugins  # only these two: no script is run
        manager.parse_sources(cache=False)
        if errors:
            raise ValueError(errors[0].strip())
        return [
            (name, variables, [g.name for g in host.get_groups() if g.name not in _IMPLICIT])
            for name, host, variables in _host_variables(manager, loader)
        ]
    finally:
        loader.cleanup_all_tmp_files()  # the loader's temporary files (vault), if any


def _host_variables(manager: Any, loader: Any) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """Each host's inventory variables, merged as ``ansible-inventory --list`` merges them.

    That is Ansible's ``VariableManager.get_vars(host=...)`` without a play:
    the group levels in the order of Ansible's ``VARIABLE_PRECEDENCE`` setting
    (inventory group vars, and those of vars plugins such as ``group_vars/``
    beside the inventory), then the host's own vars and its vars-plugin vars
    (``host_vars/``). No playbook directory is searched (``ansible-inventory``
    searches none without ``--playbook-dir``) and no fact cache is read. The
    group levels are merged once per distinct set of groups, not once per host:
    on a 1,000-host inventory that is most of the cost of ``get_vars``.
    """
    from ansible import constants
    from ansible.inventory.helpers import get_group_vars, sort_groups
    from ansible.utils.vars import combine_vars
    from ansible.vars.plugins import get_vars_from_inventory_sources

    sources = manager._sources

    def plugins(entities: list[Any]) -> dict[str, Any]:
        return dict(get_vars_from_inventory_sources(loader, sources, entities, "all"))

    all_group = manager.groups["all"]

    def level(name: str, groups: list[Any]) -> dict[str, Any]:
        if name == "all_inventory":
            return dict(all_group.get_vars())
        if name == "groups_inventory":
            return dict(get_group_vars(groups))
        if name == "all_plugins_inventory":
            return plugins([all_group])
        if name in ("groups_plugins_inventory", "plugins_by_groups"):
            return plugins(groups)
        return {}  # the *_play levels: without a play there is nothing to add

    merged: dict[tuple[str, ...], dict[str, Any]] = {}
    for name, host in manager.hosts.items():
        groups = sort_groups([g for g in host.get_groups() if g.name != "all"])
        key = tuple(g.name for g in groups)
        if key not in merged:
            found: dict[str, Any] = {}
            for entry in constants.VARIABLE_PRECEDENCE:
                found = combine_vars(found, level(entry, groups))
            merged[key] = found
        variables = combine_vars(combine_vars(merged[key], host.get_vars()), plugins([host]))
        yield str(name), host, variables


_CYCLE_RE = re.compile(r"Adding group '(.+?)' as child to '(.+?)' creates a recursive")


def _cycle_line(path: Path, message: str) -> int | None:
    """The line that makes a group its own ancestor, when Ansible's message names one."""
    m = _CYCLE_RE.search(message)
    if m is None or not path.is_file():
        return None
    child, parent = m.group(1), m.group(2)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    if path.suffix.lower() in (".yml", ".yaml"):
        return _yaml_child_line(text, parent, child)
    section = None
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("["):
            section = stripped
        elif section == f"[{parent}:children]" and stripped.split(maxsplit=1)[:1] == [child]:
            return number
    return None


def _yaml_child_line(text: str, parent: str, child: str) -> int | None:
    """The line of ``child`` under ``parent: children:`` in a YAML inventory."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    stack = [root]
    while stack:
        node = stack.pop()
        if not isinstance(node, yaml.MappingNode):
            continue
        for key, value in node.value:
            if key.value == parent and isinstance(value, yaml.MappingNode):
                for sub_key, sub_value in value.value:
                    if sub_key.value == "children" and isinstance(sub_value, yaml.MappingNode):
                        for name, _ in sub_value.value:
                            if name.value == child:
                                return int(name.start_mark.line) + 1
            stack.append(value)
    return None


def _check_yaml_files(path: Path) -> None:
    """Bound the YAML files Ansible would read: aliases of aliases or deep nesting never end well.

    Raises:
        LabError: naming the file and line.
    """
    from otto.lab.bounds import check_bounded

    files = [path] if path.is_file() else sorted(path.rglob("*"))
    for file in files:
        if file.is_file() and file.suffix.lower() in (".yml", ".yaml", ".json", ""):
            check_bounded(file)


def _features(value: object) -> object:
    """``otto_features`` as a list: INI host vars give ``usb,wifi`` as one string."""
    if isinstance(value, str):
        return [word.strip() for word in value.split(",") if word.strip()]
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def read_inventory(path: Path, hosts: dict[str, RawHost], problems: list[str]) -> None:
    """Merge the hosts of the Ansible inventory at ``path`` into ``hosts`` (see the module docs)."""
    file = str(path)
    if not path.exists():
        problems.append(f"{file}: lab file not found")
        return
    try:
        _check_yaml_files(path)
    except LabError as exc:
        problems.append(str(exc))
        return
    try:
        view = inventory_view(path)
    except ImportError:
        problems.append(f"{file}: reading an Ansible inventory needs ansible-core: {EXTRA_HINT}")
        return
    except ValueError as exc:
        line = _cycle_line(path, str(exc))
        where = f"{file}:{line}" if line is not None else file
        problems.append(f"{where}: Ansible cannot read this inventory: {exc}")
        return
    local_user = getpass.getuser()
    for name, found, groups in view:
        if not NAME_RE.fullmatch(name):
            problems.append(
                f"{file}: host {name!r}: not a valid otto host name "
                f"(letters, digits, '_', '.', '-')"
            )
            continue
        connection = str(found.get("ansible_connection", "ssh"))
        if connection not in (*_SSH_CONNECTIONS, "local"):
            log.warning(
                "%s: host %r: ansible_connection %r is not one otto drives (ssh, local): "
                "left out of the lab",
                file,
                name,
                connection,
            )
            continue
        fields: dict[str, object] = {"tags": groups}
        if connection == "local":
            fields["term"] = "local"
            if "ansible_become_password" in found or "ansible_become_pass" in found:
                become = found.get("ansible_become_password", found.get("ansible_become_pass"))
                fields["become_password"] = _plain(become)
        else:
            fields["term"] = "ssh"
            fields["address"] = name
            fields["user"] = local_user
            for var, fld in _STRINGS.items():
                if var in found and found[var] is not None:
                    fields[fld] = _plain(found[var])
            for var, fld in (("ansible_port", "port"), ("ansible_ssh_port", "port")):
                if var in found and found[var] is not None:
                    fields[fld] = _plain(found[var])
            if found.get("ansible_ssh_timeout") is not None:
                fields["connect_timeout"] = _plain(found["ansible_ssh_timeout"])
            checking = found.get("ansible_host_key_checking")
            if checking is False or str(checking).lower() in _FALSE:
                fields["known_hosts"] = None
        if found.get("otto_features") is not None:
            fields["features"] = _features(_plain(found["otto_features"]))
        raw = hosts.setdefault(name, RawHost())
        raw.files.append(file)
        for fld, value in fields.items():
            raw.fields[fld] = (value, file)
