"""Instructions: registration, parameters as options, settings files, module loading."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from otto import instructions as ins
from otto.instructions import (
    REQUIRED,
    InstructionError,
    find_project_settings,
    instruction,
    load_instructions,
    registered,
)
from otto.lab import Lab


@pytest.fixture(autouse=True)
def clean_registry() -> Iterator[None]:
    saved = dict(ins._registry)
    modules = set(sys.modules)
    path = list(sys.path)
    ins._registry.clear()
    yield
    ins._registry.clear()
    ins._registry.update(saved)
    for name in set(sys.modules) - modules:
        del sys.modules[name]
    sys.path[:] = path


def test_name_help_and_parameters() -> None:
    @instruction()
    async def rotate_logs(
        keep: int, where: Path = Path("/var/log"), ratio: float = 0.5, dry_run: bool = False
    ) -> None:
        """Rotate the logs.

        More words here.

        Args:
            keep: how many to keep,
                counting today's.
            where: the folder.
        """

    got = registered()["rotate-logs"]
    assert got.function is rotate_logs
    assert got.summary == "Rotate the logs."
    assert "More words here." in got.help
    assert "Args:" not in got.help
    keep, where, ratio, dry_run = got.parameters
    assert (keep.name, keep.type, keep.default, keep.required) == ("keep", int, REQUIRED, True)
    assert keep.help == "how many to keep, counting today's."
    assert (where.type, where.default, where.help) == (Path, Path("/var/log"), "the folder.")
    assert (ratio.type, ratio.required) == (float, False)
    assert (dry_run.option, dry_run.type, dry_run.default) == ("--dry-run", bool, False)


def test_given_name_and_optional_types() -> None:
    @instruction("deploy", help="Ship it.")
    async def do_deploy(version: str | None = None, count=3) -> None:  # type: ignore[no-untyped-def]
        pass

    got = registered()["deploy"]
    assert got.help == "Ship it."
    version, count = got.parameters
    assert (version.type, version.optional, version.default) == (str, True, None)
    assert (count.type, count.default) == (int, 3)  # typed from the default


async def test_calling_runs_the_function() -> None:
    @instruction()
    async def add(a: int, b: int = 2) -> int:
        return a + b

    assert await registered()["add"](a=40) == 42
    assert await add(1, 1) == 2  # the function is returned unchanged


def test_decorator_without_parentheses_is_explained() -> None:
    async def f() -> None:
        pass

    with pytest.raises(TypeError, match="parentheses"):
        instruction(f)  # type: ignore[arg-type]


def test_rejects_sync_functions() -> None:
    with pytest.raises(InstructionError, match="async"):

        @instruction()  # type: ignore[type-var]
        def sync() -> None:
            pass


@pytest.mark.parametrize(
    "source",
    [
        "async def f(items: list[str]) -> None: ...",
        "async def f(*args: str) -> None: ...",
        "async def f(x: int, /) -> None: ...",
        "async def f(x: int | str) -> None: ...",
    ],
)
def test_rejects_parameters_that_cannot_be_options(source: str) -> None:
    namespace: dict[str, object] = {}
    exec(source, namespace)
    with pytest.raises(InstructionError, match="instruction 'f'"):
        instruction()(namespace["f"])  # type: ignore[type-var]


def test_a_name_taken_by_another_function_is_an_error() -> None:
    @instruction("x")
    async def one() -> None:
        pass

    with pytest.raises(InstructionError, match="defined twice"):

        @instruction("x")
        async def two() -> None:
            pass


# --- settings files and loading ----------------------------------------------------------


TASKS = textwrap.dedent(
    """
    from otto.instructions import instruction

    @instruction()
    async def {name}(n: int = 1) -> int:
        return n
    """
)


def module(directory: Path, name: str, instruction_name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(TASKS.format(name=instruction_name))


def test_no_settings_file(tmp_path: Path) -> None:
    assert find_project_settings(tmp_path) is None


def test_otto_toml_found_upwards(tmp_path: Path) -> None:
    (tmp_path / "otto.toml").write_text('instructions = ["tasks_a"]\n')
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    found = find_project_settings(deep)
    assert found is not None
    assert found.file == tmp_path / "otto.toml"
    assert found.instructions == ("tasks_a",)


def test_pyproject_without_tool_otto_is_passed_over(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.otto]\ninstructions = ["outer"]\n')
    inner = tmp_path / "pkg"
    inner.mkdir()
    (inner / "pyproject.toml").write_text('[project]\nname = "x"\n')
    found = find_project_settings(inner)
    assert found is not None and found.instructions == ("outer",)


def test_otto_toml_wins_in_the_same_directory(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.otto]\ninstructions = ["py"]\n')
    (tmp_path / "otto.toml").write_text('instructions = ["toml"]\n')
    found = find_project_settings(tmp_path)
    assert found is not None and found.instructions == ("toml",)


@pytest.mark.parametrize(
    "text", ["instructions = 'tasks'\n", "instructions = [1]\n", "not toml at all ["]
)
def test_bad_settings(tmp_path: Path, text: str) -> None:
    (tmp_path / "otto.toml").write_text(text)
    with pytest.raises(InstructionError, match=r"otto\.toml"):
        find_project_settings(tmp_path)


def test_load_from_project_and_lab_settings(tmp_path: Path) -> None:
    project = tmp_path / "project"
    module(project, "proj_tasks_mod", "from_project")
    (project / "pyproject.toml").write_text('[tool.otto]\ninstructions = ["proj_tasks_mod"]\n')
    labdir = tmp_path / "labs"
    module(labdir, "lab_tasks_mod", "from_lab")
    lab_file = labdir / "lab.json"
    lab_file.write_text(json.dumps({"settings": {"instructions": ["lab_tasks_mod"]}}))
    got = load_instructions(Lab.load(lab_file), start=project)
    assert {"from-project", "from-lab"} <= set(got)


def test_missing_module_names_the_settings_file(tmp_path: Path) -> None:
    (tmp_path / "otto.toml").write_text('instructions = ["no_such_tasks_module"]\n')
    with pytest.raises(InstructionError) as info:
        load_instructions(start=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "otto.toml") in message
    assert "'no_such_tasks_module' not found" in message


def test_module_that_fails_to_import(tmp_path: Path) -> None:
    (tmp_path / "broken_tasks_mod.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "otto.toml").write_text('instructions = ["broken_tasks_mod"]\n')
    with pytest.raises(InstructionError, match="RuntimeError: boom") as info:
        load_instructions(start=tmp_path)
    assert isinstance(info.value.__cause__, RuntimeError)
