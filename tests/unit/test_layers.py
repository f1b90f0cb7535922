"""Imports flow one way: transports -> session -> hosts -> features and labs -> CLI."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "otto"

LAYERS: list[set[str]] = [
    {"otto.redact"},
    {"otto.errors", "otto.result"},
    {"otto.framing", "otto.expect", "otto.transports", "otto.loop", "otto.transfer"},
    {"otto.session"},
    {"otto.hosts", "otto.shellxfer"},
    {"otto.periodic", "otto.monitor", "otto.lab", "otto.results"},
    {"otto.fanout", "otto.instructions", "otto.reservations"},
    {"otto.testing"},
    {"otto.cli", "otto.__main__"},
]

# Host.start_repeat hands its periodic tasks to RepeatRunner, imported when first used.
ALLOWED_UPWARD = {
    ("otto.hosts.base", "otto.periodic"),
    # host.deploy records what it loaded in the reservation store, opened when used.
    ("otto.hosts.deploy.store", "otto.reservations.base"),
    ("otto.hosts.deploy.store", "otto.reservations.sqlite"),
    ("otto.hosts.deploy.store", "otto.reservations.postgres"),
}

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


def runtime_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The otto modules ``name`` imports when it runs, at module or function level.

    ``from package import module`` counts as importing the module; imports under
    ``if TYPE_CHECKING:`` do not run and are left out.
    """
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(child) for stmt in node.body for child in ast.walk(stmt))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")
                parent = parent[: len(parent) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            for alias in node.names:
                module = f"{base}.{alias.name}"
                found.add(module if module in known else base)
    return {m for m in found if m in known and m != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path that ends where it starts, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_find_cycle_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    found = modules()
    known = set(found) | {"otto"}
    graph = {name: runtime_imports(name, path, known) for name, path in found.items()}
    # otto/__init__.py re-exports lazily; an import of the bare package by a module
    # inside it would be a cycle, so it is kept in the graph.
    graph["otto"] = runtime_imports("otto", SRC / "__init__.py", known)
    assert find_cycle(graph) is None
