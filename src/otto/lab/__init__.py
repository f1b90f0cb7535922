"""Labs: JSON inventories of hosts, turned into host objects on demand.

A lab file looks like this::

    {
      "hosts": [
        {"name": "gw", "address": "10.0.0.1", "user": "ops", "key": "~/.ssh/lab"},
        {"name": "db1", "address": "192.168.1.5", "user": "ops",
         "password": "${DB1_PASSWORD}", "hop": "gw", "tags": ["db"]},
        {"name": "switch", "term": "telnet", "address": "10.0.0.9", "port": 2323,
         "user": "admin", "password": "${SWITCH_PASSWORD}"},
        {"name": "here", "term": "local"}
      ],
      "settings": {"instructions": ["lab_tasks"]}
    }

Host fields: ``name`` (letters, digits, ``_ . -``), ``term`` (``ssh`` by default,
``telnet`` or ``local``), ``address``, ``user``, ``password``, ``key`` (a private
key file), ``port``, ``hop`` (the name of an SSH host to tunnel through),
``tags`` (a list of strings otto does not interpret), ``known_hosts`` (a file, or
``null`` to turn host key checking off) and ``connect_timeout`` (seconds).

``${VAR}`` in any string is replaced by the environment variable ``VAR``
(``${VAR:-fallback}`` gives a fallback, ``$${`` a literal ``${``); a variable
that is not set is an error. Relative ``key`` and ``known_hosts`` paths are
relative to the file that names them.

Several files merge in order: a host whose name is already known has its
fields updated by the later file (so a private file can add passwords to a
shared one), a new name adds a host, and ``settings.instructions`` lists are
joined. The merged lab is validated as a whole before any host is built;
every problem raises :class:`~otto.errors.LabError` naming the file, the host
and the field. Passwords are never shown.

Besides JSON, a lab may be YAML of the same shape, an OpenSSH client config
(``~/.ssh/config``: each ``Host`` alias a host, ``ProxyJump`` its hops) or an
Ansible inventory (INI or YAML, with the ``ansible`` extra: groups become
tags); see ``otto.lab.sources`` for how the format is told apart, or name it
(``yaml:PATH``, ``ssh:PATH``, ``ansible:PATH``). ``otto lab schema`` prints the
JSON Schema of the format, ``otto lab check`` every problem of a lab.

Without a lab file the lab holds one host, ``local``, a ``LocalHost``.
"""

from otto.lab.current import (
    ENV_VAR,
    all_hosts,
    current_lab,
    get_host,
    lab_paths_from_env,
    load_lab,
    use_lab,
)
from otto.lab.current import (
    _state as _state,  # the tests reset the current lab through it
)
from otto.lab.model import DEFAULT_HOST_NAME, KNOWN_HOSTS_DEFAULT, HostSpec, Lab

__all__ = [
    "DEFAULT_HOST_NAME",
    "ENV_VAR",
    "KNOWN_HOSTS_DEFAULT",
    "HostSpec",
    "Lab",
    "all_hosts",
    "current_lab",
    "get_host",
    "lab_paths_from_env",
    "load_lab",
    "use_lab",
]
