"""Lab files in JSON: read, variables substituted, merged into raw host entries.

``${VAR}`` in any string is replaced by the environment variable ``VAR``
(``${VAR:-fallback}`` gives a fallback, ``$${`` a literal ``${``); a variable
that is not set is an error. The variables each field used are kept, so that
an error about the field can name them without showing their (secret) values.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import cast

from otto.errors import LabError
from otto.lab.raw import HOST_FIELDS, NAME_RE, RawHost, where_of

__all__ = ["read_file"]

_VAR_RE = re.compile(r"\$(\$?)\{([^}]*)\}")
_VARNAME_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)


def _substitute(value: str, where: str) -> str:
    """Replace ``${VAR}`` references in ``value`` from the environment."""

    def repl(m: re.Match[str]) -> str:
        escaped, body = m.group(1), m.group(2)
        if escaped:
            return "${" + body + "}"
        ref = _VARNAME_RE.fullmatch(body)
        if ref is None:
            # The text is not shown: it may be part of a password.
            raise LabError(
                f"{where}: bad variable reference (write ${{NAME}} or ${{NAME:-default}})"
            )
        name, fallback = ref.group(1), ref.group(2)
        got = os.environ.get(name)
        if got is None:
            if fallback is not None:
                return fallback
            raise LabError(f"{where}: environment variable {name!r} is not set")
        return got

    out = _VAR_RE.sub(repl, value)
    # A "${" left after substitution had no closing brace.
    unescaped = _VAR_RE.sub("", value)
    if "${" in unescaped:
        raise LabError(f"{where}: unterminated '${{' (write '$${{' for a literal)")
    return out


def _variables(value: object) -> list[str]:
    """The names of the variables referenced in a JSON value, in order."""
    if isinstance(value, str):
        names = []
        for m in _VAR_RE.finditer(value):
            ref = _VARNAME_RE.fullmatch(m.group(2))
            if not m.group(1) and ref is not None:
                names.append(ref.group(1))
        return names
    if isinstance(value, list):
        return [n for v in value for n in _variables(v)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _variables(v)]
    return []


def _expand(value: object, where: str) -> object:
    """Substitute variables in every string inside a JSON value."""
    if isinstance(value, str):
        return _substitute(value, where)
    if isinstance(value, list):
        return [_expand(v, where) for v in value]
    if isinstance(value, dict):
        return {k: _expand(v, where) for k, v in value.items()}
    return value


def _read_json(path: Path) -> object:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabError(f"{file}: lab file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabError(f"{file}: cannot read lab file: {exc}") from None
    try:
        return cast(object, json.loads(text))
    except json.JSONDecodeError as exc:
        raise LabError(f"{file}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}") from None


def read_file(path: Path, hosts: dict[str, RawHost], instructions: list[tuple[str, str]]) -> None:
    """Merge one lab file into ``hosts`` and ``instructions`` (module, file)."""
    file = str(path)
    data = _read_json(path)
    if not isinstance(data, dict):
        raise LabError(f"{file}: a lab file holds a JSON object with a 'hosts' list")
    unknown = sorted(set(data) - {"hosts", "settings"})
    if unknown:
        raise LabError(
            f"{file}: unknown top-level key {unknown[0]!r} (expected 'hosts', 'settings')"
        )

    settings = data.get("settings", {})
    if not isinstance(settings, dict):
        raise LabError(f"{file}: 'settings' must be an object")
    for key, value in settings.items():
        if key != "instructions":
            raise LabError(f"{file}: settings: unknown key {key!r} (expected 'instructions')")
        where = f"{file}: settings: 'instructions'"
        modules = _expand(value, where)
        if not isinstance(modules, list) or not all(isinstance(m, str) and m for m in modules):
            raise LabError(f"{where} must be a list of module names")
        instructions.extend((cast(str, m), file) for m in modules)

    entries = data.get("hosts", [])
    if not isinstance(entries, list):
        raise LabError(f"{file}: 'hosts' must be a list of host objects")
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries, start=1):
        label = f"host #{index}"
        if not isinstance(entry, dict):
            raise LabError(f"{file}: {label}: each host must be a JSON object")
        name = entry.get("name")
        if name is None:
            raise LabError(f"{file}: {label}: field 'name' is required")
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise LabError(
                f"{file}: {label}: field 'name' must be a string of letters, digits, "
                f"'_', '.' and '-' (got {name!r})"
            )
        if name in seen:
            raise LabError(
                f"{file}: host {name!r}: defined twice in this file "
                f"(hosts #{seen[name]} and #{index})"
            )
        seen[name] = index
        raw = hosts.setdefault(name, RawHost())
        raw.files.append(file)
        for key, value in entry.items():
            if key not in HOST_FIELDS:
                raise LabError(
                    f"{where_of(file, name, key)}: unknown field "
                    f"(expected one of {', '.join(HOST_FIELDS)})"
                )
            if key != "name":
                raw.fields[key] = (_expand(value, where_of(file, name, key)), file)
                raw.variables[key] = _variables(value)
