"""Every name the examples take from ``otto`` is a public, lazily imported export."""

from __future__ import annotations

import ast
import doctest
import re
import subprocess
import sys
from pathlib import Path

import otto

ROOT = Path(__file__).resolve().parents[2]
_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def _example_sources() -> dict[str, str]:
    sources: dict[str, str] = {}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for n, match in enumerate(_BLOCK.finditer(path.read_text())):
            sources[f"{path.name} block {n + 1}"] = match.group(1)
    for path in sorted((ROOT / "docs").glob("*.txt")):
        examples = doctest.DocTestParser().get_examples(path.read_text())
        sources[path.name] = "".join(example.source for example in examples)
    for path in sorted((ROOT / "examples").rglob("*.py")):
        sources[str(path.relative_to(ROOT))] = path.read_text()
    return sources


def _names_taken_from_otto(source: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "otto":
            names.update(alias.name for alias in node.names)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "otto"
        ):
            names.add(node.attr)
    return names


def test_the_examples_are_found() -> None:
    sources = _example_sources()
    assert any(name.startswith("README.md") for name in sources)
    assert "sessions-and-periodic-tasks.txt" in sources
    assert "examples/myproject/instructions.py" in sources


def test_every_name_an_example_uses_is_exported() -> None:
    missing = {
        where: sorted(_names_taken_from_otto(source) - set(otto.__all__))
        for where, source in _example_sources().items()
    }
    assert {where: names for where, names in missing.items() if names} == {}


def test_power_spec_is_exported() -> None:
    from otto.hosts.power import PowerSpec

    assert otto.PowerSpec is PowerSpec
    assert "PowerSpec" in dir(otto)


def test_every_export_is_lazy_and_listed_once() -> None:
    where = otto._WHERE
    assert sorted(where) == otto.__all__
    assert len(set(otto.__all__)) == len(otto.__all__)


_RUFF = [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated"]
_RUFF += ["--select", "F821,F704", "--output-format", "concise"]


def test_no_example_has_an_undefined_name_or_a_top_level_await() -> None:
    """pyflakes' rules through ruff: a name never defined or imported (F821), an
    ``await`` outside a function (F704)."""
    found = {}
    for where, source in _example_sources().items():
        done = subprocess.run(
            [*_RUFF, "--stdin-filename", "example.py", "-"],
            input=source,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            found[where] = done.stdout
    assert found == {}
