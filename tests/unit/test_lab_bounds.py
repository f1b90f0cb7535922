"""Lab files are bounded: aliases, expansion and nesting, whatever the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from otto.errors import LabError
from otto.lab import Lab
from otto.lab.bounds import MAX_ALIASES, MAX_VALUES, check_bounded
from otto.lab.model import check_sources
from otto.lab.raw import MAX_DEPTH, deeper_than
from otto.lab.yaml_source import load_yaml


def test_aliases_a_lab_really_uses_still_work(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lab.write_text(
        "hosts:\n"
        "- {name: b1, address: 10.0.0.1, user: &user root, tags: &tags [board]}\n"
        "- {name: b2, address: 10.0.0.2, user: *user, tags: *tags}\n"
        "- {name: l, term: local, tags: &t [a, b]}\n"
        "- {name: m, term: local, tags: *t}\n"
    )
    data, _ = load_yaml(lab)
    assert isinstance(data, dict)
    specs, _, problems = check_sources([lab])
    assert problems == []
    assert specs["b2"].user == "root" and specs["m"].tags == ("a", "b")


def test_more_aliases_than_the_bound_are_refused(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    aliases = ", ".join(["*s"] * (MAX_ALIASES + 1))
    lab.write_text(f"s: &s x\nhosts: []\nmany: [\n  {aliases}]\n")
    with pytest.raises(LabError, match=rf"^{lab}:3: more than {MAX_ALIASES} aliases; refused$"):
        load_yaml(lab)


def test_expansion_is_bounded_even_with_few_aliases(tmp_path: Path) -> None:
    lab = tmp_path / "lab.yaml"
    lines = ["a0: &a0 [" + ", ".join(["x"] * 10) + "]"]
    level, size = 0, 11
    while 1 + 10 * size <= MAX_VALUES:  # each level: ten aliases of the one before
        level, size = level + 1, 1 + 10 * size
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    lines.append(f"top: [{', '.join([f'*a{level}'] * 10)}]")  # just past the bound
    lab.write_text("\n".join(lines) + "\n")
    with pytest.raises(LabError, match=rf"^{lab}:{len(lines)}: aliases expand"):
        Lab.load(lab)


def test_check_bounded_leaves_invalid_yaml_to_its_reader(tmp_path: Path) -> None:
    ini = tmp_path / "hosts"
    ini.write_text("[web]\nweb1 ansible_host=10.0.0.1\n: : :\n")
    check_bounded(ini)  # not YAML: Ansible says what is wrong with it


def test_deeper_than() -> None:
    nested: object = "leaf"
    for _ in range(MAX_DEPTH):
        nested = [nested]
    assert not deeper_than(nested)
    assert deeper_than([nested])
    assert deeper_than({"a": {"b": [nested]}}, limit=MAX_DEPTH + 2)
