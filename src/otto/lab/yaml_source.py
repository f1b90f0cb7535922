"""Lab files in YAML: the same shape as JSON, read strictly.

PyYAML takes a repeated key silently (the last one wins) and a tab in the
indentation gives an obscure message; a lab is read with a loader that
refuses both, naming the file and the line. Everything else (``${VAR}``,
merging, validation) is the JSON reader's.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import yaml

from otto.errors import LabError
from otto.lab.bounds import check_graph
from otto.lab.json_source import merge_data, read_text
from otto.lab.raw import RawHost

__all__ = ["load_yaml", "looks_like_inventory", "read_file"]

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_Base):  # type: ignore[misc]
    """A safe loader that refuses repeated keys and records where each mapping starts."""

    lines: dict[int, int]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class says so
                break
            line = key_node.start_mark.line + 1
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} given twice (lines {first} and {line})",
                    key_node.start_mark,
                )
            seen[key] = line
        return cast(dict[Any, Any], super().construct_mapping(node, deep=deep))

    def construct_yaml_map(self, node: yaml.MappingNode) -> Iterator[dict[Any, Any]]:
        data: dict[Any, Any] = {}
        self.lines[id(data)] = node.start_mark.line + 1
        yield data
        data.update(self.construct_mapping(node))


_StrictLoader.add_constructor("tag:yaml.org,2002:map", _StrictLoader.construct_yaml_map)


def load_yaml(path: Path) -> tuple[object, dict[int, int]]:
    """The YAML document in ``path``, and the line where each mapping starts (by ``id``).

    Raises:
        LabError: the file cannot be read, has a tab in its indentation, a
            repeated key, aliases past the bounds of ``bounds.check_graph``,
            or is not valid YAML (naming the file and line).
    """
    text = read_text(path)
    for number, line in enumerate(text.splitlines(), start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            raise LabError(f"{path}:{number}: a tab in the indentation (YAML indents with spaces)")
    loader = _StrictLoader(text)
    loader.lines = {}
    try:
        node = loader.get_single_node()
        if node is None:
            return None, loader.lines
        check_graph(node, path)
        return loader.construct_document(node), loader.lines
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        what = exc.problem or exc.context or "cannot be parsed"
        raise LabError(f"{where}: invalid YAML: {what}") from None
    except yaml.YAMLError as exc:
        raise LabError(f"{path}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def looks_like_inventory(data: object) -> bool:
    """Whether parsed YAML is an Ansible inventory (groups at the top) rather than a lab."""
    if not isinstance(data, dict) or not data or {"hosts", "settings"} & set(data):
        return False
    for group in data.values():
        if group is None:
            continue
        if not isinstance(group, dict) or not set(group) <= {"hosts", "children", "vars"}:
            return False
    return True


def read_file(
    path: Path,
    hosts: dict[str, RawHost],
    instructions: list[tuple[str, str]],
    problems: list[str],
    *,
    ansible_ok: bool = False,
    settings: dict[str, tuple[object, str]] | None = None,
) -> None:
    """Merge one YAML lab file into ``hosts`` and ``instructions`` (module, file).

    With ``ansible_ok``, a file shaped as an Ansible inventory goes to the
    Ansible reader instead.
    """
    try:
        data, lines = load_yaml(path)
    except LabError as exc:
        problems.append(str(exc))
        return
    if ansible_ok and looks_like_inventory(data):
        from otto.lab.ansible_source import read_inventory

        read_inventory(path, hosts, problems)
        return
    entries = data.get("hosts") if isinstance(data, dict) else None

    def line_of(index: int) -> str:
        assert isinstance(entries, list)
        line = lines.get(id(entries[index - 1]))
        return f"line {line}" if line is not None else ""

    merge_data(
        data,
        str(path),
        hosts,
        instructions,
        problems,
        kind="YAML",
        line_of=line_of if isinstance(entries, list) else None,
        settings=settings,
    )
