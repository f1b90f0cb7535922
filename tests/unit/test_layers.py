"""Imports flow one way: transports -> session -> hosts -> features and labs -> CLI."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "otto"

LAYERS: list[set[str]] = [
    {"otto.errors", "otto.result"},
    {"otto.framing", "otto.expect", "otto.transports", "otto.loop", "otto.transfer"},
    {"otto.session"},
    {"otto.hosts", "otto.shellxfer"},
    {"otto.periodic", "otto.monitor", "otto.lab"},
    {"otto.fanout", "otto.instructions"},
    {"otto.cli", "otto.__main__"},
]

# Host.start_repeat hands its periodic tasks to RepeatRunner, imported when first used.
ALLOWED_UPWARD = {("otto.hosts.base", "otto.periodic")}

CLI_ONLY = {"typer", "rich", "click"}


def layer_of(module: str) -> int:
    for index, layer in enumerate(LAYERS):
        for name in layer:
            if module == name or module.startswith(name + "."):
                return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS")


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(p for p in parts if p != "__init__")
        if name != "otto":
            found[name] = path
    return found


def imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_every_module_has_a_layer() -> None:
    for name in modules():
        layer_of(name)


def test_imports_only_go_down() -> None:
    wrong = []
    for name, path in modules().items():
        mine = layer_of(name)
        for imported in imports(path):
            if not imported.startswith("otto.") or (name, imported) in ALLOWED_UPWARD:
                continue
            if layer_of(imported) > mine:
                wrong.append(f"{name} imports {imported}")
    assert wrong == []


def test_only_the_cli_uses_terminal_libraries() -> None:
    wrong = []
    for name, path in modules().items():
        if layer_of(name) == len(LAYERS) - 1:
            continue
        for imported in imports(path):
            if imported.split(".")[0] in CLI_ONLY:
                wrong.append(f"{name} imports {imported}")
    assert wrong == []
