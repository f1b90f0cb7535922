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
from collections.abc import Callable
from pathlib import Path
from typing import cast

from otto.errors import LabError
from otto.lab.raw import HOST_FIELDS, MAX_DEPTH, NAME_RE, RawHost, deeper_than, where_of
from otto.lab.schema import SETTINGS, check_setting, suggest, unknown_key

__all__ = ["merge_data", "read_file", "read_text"]

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


_DEEP = f"lists and objects nested more than {MAX_DEPTH} deep (a lab needs five levels)"
_JSON_TOKEN_RE = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}\n]')


def _too_deep_line(text: str) -> int | None:
    """The line where JSON ``text`` nests deeper than ``MAX_DEPTH``, or None.

    Checked before parsing: Python's parser and every walk over its result
    recurse, and a file nested thousands deep would end in ``RecursionError``.
    """
    depth, line = 0, 1
    for m in _JSON_TOKEN_RE.finditer(text):
        token = m.group()
        if token == "\n":
            line += 1
        elif token in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return line
        elif token in "]}":
            depth -= 1
        else:
            line += token.count("\n")  # an (invalid) newline inside a string
    return None


def read_text(path: Path) -> str:
    """The text of a lab file; ``LabError`` naming it when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabError(f"{path}: lab file not found") from None
    except IsADirectoryError:
        raise LabError(f"{path}: is a directory, not a lab file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LabError(f"{path}: cannot read lab file: {exc}") from None


def read_file(
    path: Path,
    hosts: dict[str, RawHost],
    instructions: list[tuple[str, str]],
    problems: list[str],
    *,
    settings: dict[str, tuple[object, str]] | None = None,
) -> None:
    """Merge one JSON lab file into ``hosts`` and ``instructions`` (module, file).

    Problems are added to ``problems``; the rest of the file is still read.
    Other settings go to ``settings`` as ``(value, file)``, a later file's first.
    """
    file = str(path)
    try:
        text = read_text(path)
    except LabError as exc:
        problems.append(str(exc))
        return
    deep = _too_deep_line(text)
    if deep is not None:
        problems.append(f"{file}:{deep}: {_DEEP}")
        return
    try:
        data = cast(object, json.loads(text))
    except json.JSONDecodeError as exc:
        problems.append(f"{file}:{exc.lineno}:{exc.colno}: invalid JSON: {exc.msg}")
        return
    merge_data(data, file, hosts, instructions, problems, kind="JSON", settings=settings)


def merge_data(
    data: object,
    file: str,
    hosts: dict[str, RawHost],
    instructions: list[tuple[str, str]],
    problems: list[str],
    *,
    kind: str,
    line_of: Callable[[int], str] | None = None,
    settings: dict[str, tuple[object, str]] | None = None,
) -> None:
    """Merge a parsed lab file (JSON or YAML: the same shape) into ``hosts``.

    ``line_of(index)`` names where host entry ``index`` (from 1) starts
    (empty when the source does not know).
    """
    if not isinstance(data, dict):
        problems.append(f"{file}: a lab file holds a {kind} object with a 'hosts' list")
        return
    if deeper_than(data):
        problems.append(f"{file}: {_DEEP}")
        return
    for key in data:
        if key not in ("hosts", "settings"):
            hint = suggest(key, ("hosts", "settings")) if isinstance(key, str) else ""
            problems.append(
                f"{file}: unknown top-level key {key!r}{hint or ' (expected hosts, settings)'}"
            )

    given = data.get("settings", {})
    if not isinstance(given, dict):
        problems.append(f"{file}: 'settings' must be an object")
        given = {}
    for key, value in given.items():
        if key not in SETTINGS:
            problems.append(f"{file}: settings: {unknown_key(key, list(SETTINGS))}")
            continue
        where = f"{file}: settings: {key!r}"
        try:
            expanded = _expand(value, where)
        except LabError as exc:
            problems.append(str(exc))
            continue
        error = check_setting(key, expanded)
        if error is not None:
            problems.append(f"{where} {error}")
        elif key == "instructions":
            instructions.extend((m, file) for m in cast(list[str], expanded))
        elif settings is not None:
            settings[key] = (expanded, file)

    entries = data.get("hosts", [])
    if not isinstance(entries, list):
        problems.append(f"{file}: 'hosts' must be a list of host objects")
        return
    seen: dict[str, int] = {}
    for index, entry in enumerate(entries, start=1):
        at = line_of(index) if line_of is not None else ""
        label = f"host #{index} ({at})" if at else f"host #{index}"
        if not isinstance(entry, dict):
            problems.append(f"{file}: {label}: each host must be a {kind} object")
            continue
        name = entry.get("name")
        if name is None:
            problems.append(f"{file}: {label}: field 'name' is required")
            continue
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            problems.append(
                f"{file}: {label}: field 'name' must be a string of letters, digits, "
                f"'_', '.' and '-' (got {name!r})"
            )
            continue
        if name in seen:
            problems.append(
                f"{file}: host {name!r}: defined twice in this file "
                f"(hosts #{seen[name]} and #{index})"
            )
            continue
        seen[name] = index
        raw = hosts.setdefault(name, RawHost())
        raw.files.append(file)
        for key, value in entry.items():
            if key not in HOST_FIELDS:
                hint = suggest(key, HOST_FIELDS) if isinstance(key, str) else ""
                problems.append(
                    f"{where_of(file, name, str(key))}: unknown field"
                    f"{hint or ' (expected one of ' + ', '.join(HOST_FIELDS) + ')'}"
                )
                continue
            if key == "name":
                continue
            raw.variables[key] = _variables(value)
            try:
                raw.fields[key] = (_expand(value, where_of(file, name, key)), file)
            except LabError as exc:
                problems.append(str(exc))
                # Kept unexpanded: the entry is still checked, its other fields too.
                raw.fields[key] = (value, file)
