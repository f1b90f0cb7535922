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
from otto.lab.json_source import merge_data, read_text
from otto.lab.raw import MAX_DEPTH, RawHost

__all__ = [
    "MAX_ALIASES",
    "MAX_VALUES",
    "check_bounded",
    "load_yaml",
    "looks_like_inventory",
    "read_file",
]

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


#: The most aliases (``*name``) a lab file may use.
MAX_ALIASES = 1000
#: The most values a lab file may hold once its aliases are expanded.
MAX_VALUES = 100_000


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [item for pair in node.value for item in pair]
    return []


def _check_graph(root: yaml.Node, path: Path) -> None:
    """Refuse a document whose aliases blow up, refer to themselves, or that nests too deep.

    The composed document is a graph (an alias is the anchored node itself),
    walked once without recursion before anything is built: a few hundred
    bytes of aliases of aliases ("billion laughs") would otherwise expand to
    billions of values, and each later step over the lab would take forever.

    Raises:
        LabError: naming the file and the line of the node at fault.
    """
    size: dict[int, int] = {}
    open_: set[int] = set()
    aliases = 0
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        key = id(node)
        where = f"{path}:{node.start_mark.line + 1}"
        if done:
            open_.discard(key)
            total = 1 + sum(size[id(child)] for child in _children(node))
            if total > MAX_VALUES:
                raise LabError(
                    f"{where}: aliases expand this to more than {MAX_VALUES} values "
                    "(aliases of aliases); refused"
                )
            size[key] = total
            continue
        if key in size or key in open_:
            aliases += 1
            if key in open_:
                raise LabError(f"{where}: an alias refers to the node that holds it; refused")
            if aliases > MAX_ALIASES:
                raise LabError(f"{where}: more than {MAX_ALIASES} aliases; refused")
            continue
        if depth > MAX_DEPTH:
            raise LabError(
                f"{where}: lists and objects nested more than {MAX_DEPTH} deep "
                "(a lab needs five levels)"
            )
        open_.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in reversed(_children(node)))


def load_yaml(path: Path) -> tuple[object, dict[int, int]]:
    """The YAML document in ``path``, and the line where each mapping starts (by ``id``).

    Raises:
        LabError: the file cannot be read, has a tab in its indentation, a
            repeated key, aliases that expand past ``MAX_VALUES`` or refer to
            themselves, nests deeper than ``MAX_DEPTH``, or is not valid YAML
            (naming the file and line).
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
        _check_graph(node, path)
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


def check_bounded(path: Path) -> None:
    """Refuse a YAML file read by another parser (Ansible's) whose aliases or nesting blow up.

    Only the bounds of ``_check_graph`` are checked: a file that is not valid
    YAML is left to the parser that reads it, to report in its own words.

    Raises:
        LabError: the file's aliases expand too far, or it nests too deep.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return
    loader = _Base(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError:
        return
    finally:
        loader.dispose()
    if node is not None:
        _check_graph(node, path)


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
