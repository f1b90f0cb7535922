"""The lab format, defined once: each host field's rule, its JSON Schema and its check.

``FIELDS`` is the one place a host field's accepted values are written down.
``check_value`` checks a value against a field's rule (the lab loader calls it),
and ``lab_schema`` turns the same rules into the JSON Schema that
``otto lab schema`` prints, so editors and otto cannot disagree on what a valid
field is. What a schema cannot say (that a key file exists, that a hop names a
host of the merged lab) is checked by the loader only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from otto.lab.raw import HOST_FIELDS, NAME_RE
from otto.transports.snmp import SNMP_AUTH_PROTOCOLS, SNMP_PRIV_PROTOCOLS

__all__ = [
    "FEATURE_PATTERN",
    "FIELDS",
    "MAX_FEATURES",
    "SETTINGS",
    "TERMS",
    "FieldRule",
    "check_setting",
    "check_value",
    "lab_schema",
    "not_used_message",
    "suggest",
    "unknown_key",
    "value_problems",
]

TERMS = ("ssh", "telnet", "local", "console", "serial", "none")
_REMOTE = ("ssh", "telnet", "console", "serial")
_SHELLS = ("ssh", "telnet")

MAX_FEATURES = 64
"""The most features one host may list."""
FEATURE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+:-]{0,63}$(?!\n)"
"""What a feature name may be: a short word (so that a list of them reads unambiguously)."""

Node = dict[str, Any]
"""A JSON Schema node; keys starting with ``_`` are otto's error texts, left out of the schema."""


@dataclass(frozen=True)
class FieldRule:
    """What one host field accepts, and for which terms."""

    doc: str
    value: Node
    """The JSON Schema of an accepted value (``_error``: the message when it is not)."""
    terms: tuple[str, ...] = TERMS
    """The terms that use the field; any other term refuses it."""
    required_for: tuple[str, ...] = ()
    secret: bool = False
    """A secret's value is never shown in an error."""


def _string(error: str = "must be a non-empty string") -> Node:
    return {"type": "string", "minLength": 1, "_error": error}


_USB_ID: Node = {
    "type": "string",
    "pattern": r"^(?:0[xX])?[0-9a-fA-F]{1,4}$",
    "_error": "must be a USB id in hex, such as '0403'",
}

_POWER_REQUEST_KEYS = (
    "method",
    "url",
    "body",
    "headers",
    "expect",
    "verify",
    "on_pattern",
    "off_pattern",
)
_POWER_REQUEST: Node = {
    "type": "object",
    "properties": {
        "method": _string(),
        "url": _string(),
        "body": {"type": "string"},
        "headers": {"type": "object"},
        "expect": {"type": ["integer", "array"]},
        "verify": {"type": "boolean"},
        "on_pattern": _string(),
        "off_pattern": _string(),
    },
    "additionalProperties": False,
}
"""A request of the HTTP power driver (its 'url' is checked by the driver)."""

FIELDS: dict[str, FieldRule] = {
    "name": FieldRule(
        "The host's name: letters, digits, '_', '.' and '-'.",
        {
            "type": "string",
            "pattern": f"^(?:{NAME_RE.pattern})$",
            "_error": "must be a string of letters, digits, '_', '.' and '-'",
        },
    ),
    "term": FieldRule(
        "How otto reaches the host's shell (default 'ssh'; 'none': a device with no "
        "shell, read over SNMP).",
        {
            "enum": list(TERMS),
            "_error": "must be one of " + ", ".join(repr(t) for t in TERMS),
        },
    ),
    "address": FieldRule(
        "Host name or IP address (console: HOST:PORT; serial: the device).",
        _string(),
        terms=(*_REMOTE, "none"),
        required_for=(*_REMOTE, "none"),
    ),
    "user": FieldRule("The login user.", _string(), terms=_REMOTE, required_for=_SHELLS),
    "password": FieldRule(
        "The login password (write ${VAR} to take it from the environment).",
        {"type": "string", "_error": "must be a string"},
        terms=_REMOTE,
        secret=True,
    ),
    "key": FieldRule(
        "A private key file (relative to the lab file).",
        _string("must be a file path"),
        terms=("ssh",),
    ),
    "port": FieldRule(
        "The TCP port.",
        {
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 65535},
                {"type": "string", "pattern": r"^[0-9]+$|\$\{"},
            ],
            "_error": "must be a port number 1-65535",
        },
        terms=_REMOTE,
    ),
    "hop": FieldRule(
        "The name of an SSH host of the lab to tunnel through.",
        _string("must be the name of another host"),
        terms=_SHELLS,
    ),
    "tags": FieldRule(
        "Labels otto does not interpret (select hosts by them).",
        {"type": "array", "items": {"type": "string"}, "_error": "must be a list of strings"},
    ),
    "features": FieldRule(
        "What the host offers a test (usb, wifi, gpu...): @pytest.mark.needs picks hosts "
        f"by them. At most {MAX_FEATURES}, each a short word (letters, digits, '_', '.', "
        "'+', '-', ':').",
        {
            "type": "array",
            "maxItems": MAX_FEATURES,
            "items": {"type": "string", "pattern": FEATURE_PATTERN},
            "_error": f"must be a list of at most {MAX_FEATURES} feature names "
            "(letters, digits, '_', '.', '+', '-', ':'; at most 64 characters each)",
        },
    ),
    "known_hosts": FieldRule(
        "A known_hosts file, or null to turn host key checking off.",
        {
            "type": ["string", "null"],
            "minLength": 1,
            "_error": "must be a file path, or null to turn host key checking off",
        },
        terms=("ssh",),
    ),
    "connect_timeout": FieldRule(
        "Seconds to wait for the connection and login.",
        {
            "type": "number",
            "exclusiveMinimum": 0,
            "_error": "must be a positive number of seconds",
        },
    ),
    "become_password": FieldRule(
        "The password sudo asks for.",
        {"type": "string", "_error": "must be a string"},
        secret=True,
    ),
    "power": FieldRule(
        "Power control: commands 'on', 'off', 'cycle', 'status' (with 'on_pattern' / "
        "'off_pattern' regexes for its output) run on the host named by 'via'; or "
        "'driver': 'snmp' ('address', 'outlet', 'community' or 'v3', 'oids': 'apc' or "
        "'raritan', 'port', 'timeout', 'retries'); or 'driver': 'http' ('on', 'off', "
        "'cycle', 'status' as requests: 'method', 'url', 'body', 'headers', 'expect', "
        "'verify', and for 'status' 'on_pattern' / 'off_pattern').",
        {
            "type": "object",
            "properties": {
                **{
                    k: {
                        **_POWER_REQUEST,
                        "type": ["string", "object"],
                        "minLength": 1,
                        "_error": "must be a command, or (driver 'http') a request object "
                        "of " + ", ".join(repr(k) for k in _POWER_REQUEST_KEYS),
                    }
                    for k in ("on", "off", "cycle", "status")
                },
                "via": _string(),
                "on_pattern": _string("must be a regex"),
                "off_pattern": _string("must be a regex"),
                "driver": {
                    "enum": ["command", "snmp", "http"],
                    "_error": "must be 'command', 'snmp' or 'http'",
                },
                "address": _string(),
                "outlet": {"type": "integer", "minimum": 1, "_error": "must be an outlet number"},
                "oids": {"enum": ["apc", "raritan"], "_error": "must be 'apc' or 'raritan'"},
                "community": _string(),
                "v3": {
                    "type": "object",
                    "properties": {
                        "user": _string(),
                        "auth_key": _string(),
                        "priv_key": _string(),
                        "auth_protocol": {
                            "enum": list(SNMP_AUTH_PROTOCOLS),
                            "_error": "must be one of " + ", ".join(SNMP_AUTH_PROTOCOLS),
                        },
                        "priv_protocol": {
                            "enum": list(SNMP_PRIV_PROTOCOLS),
                            "_error": "must be one of " + ", ".join(SNMP_PRIV_PROTOCOLS),
                        },
                    },
                    "additionalProperties": False,
                    "_error": "must be an object of 'user', 'auth_key', 'priv_key', ...",
                },
                "port": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 65535,
                    "_error": "must be a port number 1-65535",
                },
                "timeout": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "_error": "must be a positive number of seconds",
                },
                "retries": {"type": "integer", "minimum": 0, "_error": "must be 0 or more"},
            },
            "additionalProperties": False,
            "anyOf": [{"required": [k]} for k in ("on", "off", "cycle", "status", "driver")],
            "_error": "must be an object of 'on', 'off', 'cycle', 'status', 'via', or a 'driver'",
            "_anyOf": "needs at least one of 'on', 'off', 'cycle', 'status', or a 'driver'",
        },
        secret=True,
    ),
    "console_protocol": FieldRule(
        "The console server's protocol.",
        {"enum": ["telnet", "raw"], "_error": "must be 'telnet' or 'raw'"},
        terms=("console",),
    ),
    "baud": FieldRule(
        "The serial line's speed.",
        {"type": "integer", "exclusiveMinimum": 0, "_error": "must be a positive integer"},
        terms=("serial",),
    ),
    "console_log": FieldRule(
        "A file that records everything the console prints.",
        _string("must be a file path"),
        terms=("console", "serial"),
    ),
    "snmp": FieldRule(
        "Read the host's metrics from its SNMP agent too (term 'none': only): "
        "'community' (v2c), 'port' (161), 'version' ('2c'), 'address' (the "
        "host's), v3 'user', 'auth_key', 'priv_key', 'auth_protocol', 'priv_protocol', "
        "'timeout' (s), 'retries'.",
        {
            "type": "object",
            "properties": {
                "community": _string(),
                "port": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": 65535,
                    "_error": "must be a port number 1-65535",
                },
                "version": {"enum": ["2c", "3"], "_error": "must be '2c' or '3'"},
                "address": _string(),
                "user": _string(),
                "auth_key": _string(),
                "priv_key": _string(),
                "auth_protocol": {
                    "enum": list(SNMP_AUTH_PROTOCOLS),
                    "_error": "must be one of " + ", ".join(SNMP_AUTH_PROTOCOLS),
                },
                "priv_protocol": {
                    "enum": list(SNMP_PRIV_PROTOCOLS),
                    "_error": "must be one of " + ", ".join(SNMP_PRIV_PROTOCOLS),
                },
                "timeout": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "_error": "must be a positive number of seconds",
                },
                "retries": {"type": "integer", "minimum": 0, "_error": "must be 0 or more"},
            },
            "additionalProperties": False,
            "_error": 'must be an object such as {"community": ..., "version": "2c"}',
        },
        secret=True,
    ),
    "boot": FieldRule(
        "How the board's console shows its way up, for 'otto host NAME goto': "
        "'bootloader_prompt' (a regex, such as '=> '), 'autoboot' (a regex for the "
        "countdown text), 'interrupt' (what stops it; default Ctrl-C, ^C notation), "
        "'boot_command' (default 'boot'), 'shell_timeout' (s from boot to a login prompt).",
        {
            "type": "object",
            "properties": {
                "bootloader_prompt": _string("must be a regex"),
                "autoboot": _string("must be a regex"),
                "interrupt": _string(),
                "boot_command": _string(),
                "shell_timeout": {
                    "type": "number",
                    "exclusiveMinimum": 0,
                    "_error": "must be a positive number of seconds",
                },
            },
            "additionalProperties": False,
            "_error": 'must be an object such as {"bootloader_prompt": "=> ", "autoboot": '
            '"Hit any key"}',
        },
        terms=_REMOTE,
    ),
    "usb": FieldRule(
        "Find the serial line by its USB adapter instead of 'address', at every open: "
        "'serial', 'vendor' and 'product' (hex ids, such as '0403'), 'port' (where it is "
        "plugged: '1-1.2', or udev's ID_PATH); those given must all match one device.",
        {
            "type": "object",
            "properties": {
                "serial": _string(),
                "vendor": _USB_ID,
                "product": _USB_ID,
                "port": _string(),
            },
            "additionalProperties": False,
            "anyOf": [{"required": [k]} for k in ("serial", "vendor", "product", "port")],
            "_error": 'must be an object such as {"vendor": "0403", "product": "6001", '
            '"serial": "A1B2C3"}',
            "_anyOf": "needs at least one of 'serial', 'vendor', 'product', 'port'",
        },
        terms=("serial",),
    ),
}


SETTINGS: dict[str, FieldRule] = {
    "instructions": FieldRule(
        "Modules of instructions (@otto.instruction) to import.",
        {
            "type": "array",
            "items": {"type": "string", "minLength": 1},
            "_error": "must be a list of module names",
        },
    ),
    "reservations": FieldRule(
        "The reservation store: sqlite:///PATH (one machine) or "
        "postgresql://USER:PASSWORD@HOST/DB (shared); default $OTTO_RESERVATIONS, "
        "else a SQLite file in the user's data dir.",
        {
            "type": "string",
            "pattern": "^(sqlite|postgresql|postgres)://",
            "_error": "must be a store URL: sqlite:///PATH or postgresql://...",
        },
    ),
}
"""The keys of a lab file's ``settings`` object."""


def not_used_message(fld: str, term: str) -> str:
    """The error for a field that ``term`` does not use."""
    terms = FIELDS[fld].terms
    if term == "local" or len(terms) > 2:
        return f"not used by term {term!r}"
    only = " or ".join(repr(t) for t in terms)
    return f"not used by term {term!r} (only for term {only})"


# --- checking a value ---------------------------------------------------------------------

_TYPES: dict[str, type | tuple[type, ...]] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "array": list,
    "object": dict,
    "boolean": bool,
    "null": type(None),
}


def _is_type(value: object, name: str) -> bool:
    if isinstance(value, bool) and name not in ("boolean",):
        return False
    return isinstance(value, _TYPES[name])


def suggest(key: str, names: Iterable[str]) -> str:
    """``; did you mean 'address'?`` for a mistyped ``key``, or empty when nothing is close."""
    import difflib  # here: a lab without a mistake does not need it

    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def unknown_key(key: object, names: Sequence[str]) -> str:
    """The problem of a key that is not one of ``names``: the nearest, or the list of them."""
    hint = suggest(key, names) if isinstance(key, str) else ""
    if hint:
        return f"unknown key {key!r}{hint}"
    return f"unknown key {key!r} (expected {', '.join(repr(k) for k in names)})"


def _problems(value: object, node: Node) -> list[str]:
    """Why ``value`` does not match ``node`` (a schema node of ``FIELDS``): every reason."""
    error = cast(str, node.get("_error", "is not valid"))
    if "anyOf" in node and "type" not in node:
        options = cast(list[Node], node["anyOf"])
        return [] if any(not _problems(value, {**o}) for o in options) else [error]
    if "enum" in node and value not in node["enum"]:
        return [error]
    if "type" in node:
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if not any(_is_type(value, t) for t in types):
            return [error]
    if isinstance(value, str):
        if len(value) < node.get("minLength", 0):
            return [error]
        if "pattern" in node and not re.search(node["pattern"], value):
            return [error]
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in node and value < node["minimum"]:
            return [error]
        if "maximum" in node and value > node["maximum"]:
            return [error]
        if "exclusiveMinimum" in node and value <= node["exclusiveMinimum"]:
            return [error]
    if isinstance(value, list):
        if len(value) > node.get("maxItems", len(value)):
            return [error]
        if any(_problems(v, node.get("items", {})) for v in value):
            return [error]
    if isinstance(value, dict):
        props = cast(dict[str, Node], node.get("properties", {}))
        found: list[str] = []
        for key, item in value.items():
            if key not in props:
                if node.get("additionalProperties", True) is False:
                    found.append(unknown_key(key, list(props)))
                continue
            found += [f"{key!r} {sub}" for sub in _problems(item, props[key])]
        if found:
            return found
        if "anyOf" in node:
            options = cast(list[Node], node["anyOf"])
            if not any(all(k in value for k in o.get("required", ())) for o in options):
                return [cast(str, node.get("_anyOf", error))]
    return []


def check_value(fld: str, value: object) -> str | None:
    """Why ``value`` is not valid for the host field ``fld``, or None when it is."""
    found = value_problems(fld, value)
    return found[0] if found else None


def value_problems(fld: str, value: object) -> list[str]:
    """Every reason ``value`` is not valid for the host field ``fld`` (each unknown key...)."""
    return _problems(value, FIELDS[fld].value)


def check_setting(key: str, value: object) -> str | None:
    """Why ``value`` is not valid for the lab setting ``key``, or None when it is."""
    found = _problems(value, SETTINGS[key].value)
    return "; ".join(found) if found else None


# --- the JSON Schema ----------------------------------------------------------------------


def _public(node: object) -> object:
    """A schema node without otto's private ``_`` keys."""
    if isinstance(node, dict):
        return {k: _public(v) for k, v in node.items() if not k.startswith("_")}
    if isinstance(node, list):
        return [_public(v) for v in node]
    return node


def _term_is(term: str) -> Node:
    if term == "ssh":  # the default: a host without 'term' is an SSH host
        return {
            "anyOf": [
                {"not": {"required": ["term"]}},
                {"required": ["term"], "properties": {"term": {"const": "ssh"}}},
            ]
        }
    return {"required": ["term"], "properties": {"term": {"const": term}}}


def _host_schema() -> Node:
    missing = [f for f in HOST_FIELDS if f not in FIELDS]
    if missing:  # a field added to the lab without a rule: caught by the tests
        raise RuntimeError(f"lab fields without a rule in otto.lab.schema: {missing}")
    properties: dict[str, object] = {}
    for name in HOST_FIELDS:
        rule = FIELDS[name]
        node = cast(Node, _public(rule.value))
        properties[name] = {"description": rule.doc, **node}
    rules = []
    for term in TERMS:
        refused = {f: False for f in HOST_FIELDS if term not in FIELDS[f].terms}
        if refused:
            rules.append({"if": _term_is(term), "then": {"properties": refused}})
    return {
        "type": "object",
        "required": ["name"],
        "properties": properties,
        "additionalProperties": False,
        "allOf": rules,
    }


def lab_schema() -> dict[str, object]:
    """The JSON Schema of one lab file (JSON or YAML).

    It checks each file alone: a file that only adds passwords to hosts of
    another may leave out their address, so fields required by a term
    (``address``, ``user``) and references to other hosts (``hop``,
    ``power.via``) are checked by ``otto lab check`` on the merged lab.
    """
    settings: Mapping[str, object] = {
        "type": "object",
        "properties": {
            name: {"description": rule.doc, **cast(Node, _public(rule.value))}
            for name, rule in SETTINGS.items()
        },
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "otto lab",
        "description": "A lab: the hosts otto drives. ${VAR} in a string is an environment "
        "variable.",
        "type": "object",
        "properties": {
            "hosts": {"type": "array", "items": _host_schema()},
            "settings": settings,
        },
        "additionalProperties": False,
    }
