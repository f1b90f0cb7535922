"""Bounds on YAML documents, checked on the composed node graph before anything is built.

A lab file, or an Ansible inventory, may come from anyone: a few hundred
bytes of aliases of aliases ("billion laughs") expand to billions of values,
an alias may hold itself, and thousands of nested brackets end in
``RecursionError``. Each is refused with the file and the line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from otto.errors import LabError
from otto.lab.raw import MAX_DEPTH

__all__ = ["MAX_ALIASES", "MAX_VALUES", "check_bounded", "check_graph"]

_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

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


def check_graph(root: yaml.Node, path: Path) -> None:
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
    # (node, depth, children done, the line of the collection that holds it)
    stack: list[tuple[yaml.Node, int, bool, int]] = [(root, 1, False, 1)]
    while stack:
        node, depth, done, held_at = stack.pop()
        key = id(node)
        line = node.start_mark.line + 1
        if done:
            open_.discard(key)
            total = 1 + sum(size[id(child)] for child in _children(node))
            if total > MAX_VALUES:
                raise LabError(
                    f"{path}:{line}: aliases expand this to more than {MAX_VALUES} values "
                    "(aliases of aliases); refused"
                )
            size[key] = total
            continue
        if key in size or key in open_:
            # An alias: named where it is used (the collection holding it).
            aliases += 1
            if key in open_:
                raise LabError(
                    f"{path}:{held_at}: an alias refers to the node that holds it; refused"
                )
            if aliases > MAX_ALIASES:
                raise LabError(f"{path}:{held_at}: more than {MAX_ALIASES} aliases; refused")
            continue
        if depth > MAX_DEPTH:
            raise LabError(
                f"{path}:{line}: lists and objects nested more than {MAX_DEPTH} deep "
                "(a lab needs five levels)"
            )
        open_.add(key)
        stack.append((node, depth, True, held_at))
        stack.extend((child, depth + 1, False, line) for child in reversed(_children(node)))


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
    loader = _LOADER(text)
    try:
        node = loader.get_single_node()
    except yaml.YAMLError:
        return
    finally:
        loader.dispose()
    if node is not None:
        check_graph(node, path)
