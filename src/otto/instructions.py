"""Instructions: async functions a user registers to run as ``otto run NAME``.

::

    import otto

    @otto.instruction()
    async def rotate_logs(keep: int = 7, dry_run: bool = False) -> None:
        \"\"\"Rotate the application logs on every web server.

        Args:
            keep: how many old logs to keep.
            dry_run: only print what would be removed.
        \"\"\"
        await otto.run_on_all_hosts(f"logrotate-app --keep {keep}", pattern="^web")

becomes ``otto run rotate-logs --keep 3 --dry-run``. The name is the function's
with ``_`` turned into ``-`` unless given (``@otto.instruction("rotate")``); the
help is the docstring. Every parameter becomes an option: ``--keep`` from
``keep``, typed by its annotation (``str``, ``int``, ``float``, ``bool``, ``Path``,
or one of those ``| None``), required when it has no default. A ``bool``
gives ``--flag/--no-flag``. Nothing is passed implicitly: an instruction reaches
its hosts with ``otto.get_host(name)``, ``otto.all_hosts()`` or the fan-out helpers,
which use the lab given to ``otto --lab``. What it returns decides the exit
status: ``None`` or a truthy value is success; ``False``, or a result whose
``is_ok`` is false, is failure; an ``int`` is the exit status itself.

The modules holding instructions are named, as importable module names, by
the lab's ``"settings": {"instructions": [...]}`` and by the project settings
file found from the current directory upwards: ``otto.toml`` with a top-level
``instructions = [...]``, or ``pyproject.toml`` with ``[tool.otto]``
``instructions = [...]``. The directory of the file naming a module is put on
``sys.path`` so modules beside it import.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import sys
import tomllib
import types
import typing
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar, cast

from otto.errors import OttoError

if TYPE_CHECKING:
    from otto.lab import Lab

__all__ = [
    "Instruction",
    "InstructionError",
    "Parameter",
    "find_project_settings",
    "instruction",
    "load_instructions",
    "registered",
]

OptionType = type[str] | type[int] | type[float] | type[bool] | type[Path]
F = TypeVar("F", bound=Callable[..., Awaitable[object]])

_SUPPORTED: tuple[type, ...] = (str, int, float, bool, Path)
_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


HOW_TO_REGISTER = (
    "no instructions are registered: write an async function decorated with "
    "@otto.instruction() in a module (tasks.py, say), then name that module in "
    'otto.toml beside it (instructions = ["tasks"]), in pyproject.toml under '
    '[tool.otto] (instructions = ["tasks"]), or in the lab\'s '
    '"settings": {"instructions": ["tasks"]}'
)
"""What ``otto run`` says when no module names an instruction."""


class InstructionError(OttoError):
    """An instruction cannot be registered, found or loaded, or a settings file is invalid."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: ``Parameter.default`` of a parameter that has none (a required option).
REQUIRED = _Required()


@dataclasses.dataclass(frozen=True)
class Parameter:
    """One parameter of an instruction, seen as a command-line option."""

    name: str
    """The Python parameter name."""
    type: OptionType
    default: object = REQUIRED
    optional: bool = False
    """The annotation allows ``None``."""
    help: str = ""

    @property
    def option(self) -> str:
        """The option's long name: ``--dry-run`` for ``dry_run``."""
        return "--" + self.name.replace("_", "-")

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


@dataclasses.dataclass(frozen=True)
class Instruction:
    """A registered instruction."""

    name: str
    function: Callable[..., Awaitable[object]]
    help: str
    parameters: tuple[Parameter, ...]

    @property
    def summary(self) -> str:
        """The first line of the help."""
        return self.help.strip().splitlines()[0] if self.help.strip() else ""

    async def __call__(self, **options: object) -> object:
        """Run the instruction with the given option values."""
        return await self.function(**options)


_registry: dict[str, Instruction] = {}


def _doc_params(doc: str) -> dict[str, str]:
    """Per-parameter help from a Google-style ``Args:`` section."""
    helps: dict[str, str] = {}
    lines = doc.splitlines()
    in_args = False
    current: str | None = None
    indent = 0
    for line in lines:
        if _ARGS_HEADER.match(line):
            in_args, current = True, None
            indent = len(line) - len(line.lstrip())
            continue
        if not in_args:
            continue
        if not line.strip():
            current = None
            continue
        if len(line) - len(line.lstrip()) <= indent:
            break
        m = _ARG_LINE.match(line)
        if m and (current is None or len(line) - len(line.lstrip()) <= indent + 4):
            current = m.group(1)
            helps[current] = m.group(2).strip()
        elif current is not None:
            helps[current] = f"{helps[current]} {line.strip()}".strip()
    return helps


def _option_type(fn_name: str, name: str, annotation: object, default: object) -> tuple[type, bool]:
    """The option type and whether ``None`` is allowed, from an annotation."""
    if annotation is inspect.Parameter.empty:
        if default is REQUIRED or default is None:
            return str, default is None
        annotation = type(default)
    optional = False
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0] if len(args) == 1 else annotation
    if annotation in _SUPPORTED:
        return annotation, optional
    raise InstructionError(
        f"instruction {fn_name!r}: parameter {name!r} has type {annotation!r}; "
        f"options can be str, int, float, bool or Path (or one of those | None)"
    )


def _describe(fn: Callable[..., Awaitable[object]], name: str, help: str | None) -> Instruction:
    fn_name = getattr(fn, "__qualname__", repr(fn))
    if not inspect.iscoroutinefunction(fn):
        raise InstructionError(f"instruction {fn_name!r} must be an async function")
    try:
        hints = typing.get_type_hints(fn)
    except Exception as exc:
        raise InstructionError(f"instruction {fn_name!r}: cannot read annotations: {exc}") from exc
    doc = inspect.getdoc(fn) or ""
    doc_params = _doc_params(doc)
    params: list[Parameter] = []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise InstructionError(
                f"instruction {fn_name!r}: *{p.name} cannot be an option; name each parameter"
            )
        if p.kind is p.POSITIONAL_ONLY:
            raise InstructionError(
                f"instruction {fn_name!r}: parameter {p.name!r} is positional-only; "
                f"options are passed by name"
            )
        default: object = REQUIRED if p.default is p.empty else p.default
        typ, optional = _option_type(fn_name, p.name, hints.get(p.name, p.empty), default)
        params.append(
            Parameter(
                name=p.name,
                type=cast(OptionType, typ),
                default=default,
                optional=optional,
                help=doc_params.get(p.name, ""),
            )
        )
    text = help if help is not None else doc.split("\nArgs:")[0].strip()
    return Instruction(name=name, function=fn, help=text, parameters=tuple(params))


def instruction(name: str | None = None, *, help: str | None = None) -> Callable[[F], F]:
    """Register an async function as an instruction; the function is returned unchanged.

    Args:
        name: the command name; by default the function's, with ``_`` as ``-``.
        help: the help text; by default the docstring (without its ``Args:`` part).

    Raises:
        InstructionError: the function is not async, a parameter's type cannot be
            an option, or another function already has the name.
    """
    if callable(name):
        raise TypeError("write @otto.instruction() with parentheses")

    def register(fn: F) -> F:
        command = name or fn.__name__.replace("_", "-")
        described = _describe(fn, command, help)
        existing = _registry.get(command)
        if existing is not None and _origin(existing.function) != _origin(fn):
            raise InstructionError(
                f"instruction {command!r} is defined twice: by {_origin(existing.function)} "
                f"and by {_origin(fn)}"
            )
        _registry[command] = described
        return fn

    return register


def _origin(fn: Callable[..., object]) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"


def registered() -> dict[str, Instruction]:
    """Every instruction registered so far, by name, sorted."""
    return dict(sorted(_registry.items()))


def unregister(name: str) -> None:
    """Forget an instruction (for tests and reloads)."""
    _registry.pop(name, None)


# --- settings and loading --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProjectSettings:
    """The otto settings found in a project's ``otto.toml`` or ``pyproject.toml``."""

    file: Path
    instructions: tuple[str, ...]


def _module_list(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InstructionError(f"{where}: 'instructions' must be a list of module names")
    return tuple(cast(list[str], value))


def find_project_settings(start: Path | None = None) -> ProjectSettings | None:
    """The nearest ``otto.toml`` or ``pyproject.toml`` with ``[tool.otto]``, from ``start`` up.

    ``start`` defaults to the current directory. An ``otto.toml`` wins over a
    ``pyproject.toml`` in the same directory; a ``pyproject.toml`` without a
    ``[tool.otto]`` table is passed over.

    Raises:
        InstructionError: the file found is not valid TOML or its settings are malformed.
    """
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        for filename in ("otto.toml", "pyproject.toml"):
            path = directory / filename
            if not path.is_file():
                continue
            try:
                data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
                raise InstructionError(f"{path}: cannot read settings: {exc}") from None
            if filename == "pyproject.toml":
                tool = data.get("tool", {})
                if not isinstance(tool, dict) or "otto" not in tool:
                    continue
                table = tool["otto"]
                where = f"{path}: [tool.otto]"
            else:
                table = data
                where = str(path)
            if not isinstance(table, dict):
                raise InstructionError(f"{where}: must be a table")
            modules = _module_list(table.get("instructions", []), where)
            return ProjectSettings(file=path, instructions=modules)
    return None


def _import(module: str, named_by: Path) -> None:
    directory = str(named_by.parent.resolve())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module.startswith(exc.name):
            raise InstructionError(
                f"{named_by}: instruction module {module!r} not found "
                f"(looked on sys.path, which starts with {directory})"
            ) from None
        raise InstructionError(
            f"{named_by}: instruction module {module!r} failed to import: {exc}"
        ) from exc
    except InstructionError:
        raise
    except Exception as exc:
        raise InstructionError(
            f"{named_by}: instruction module {module!r} failed to import: "
            f"{type(exc).__name__}: {exc}"
        ) from exc


def load_instructions(
    lab: Lab | None = None,
    *,
    start: Path | None = None,
    modules: Sequence[tuple[str, Path]] = (),
) -> dict[str, Instruction]:
    """Import the instruction modules the project settings and ``lab`` name.

    Args:
        lab: a lab whose settings name modules (files are read relative to it).
        start: where to look for the project settings file (the current directory).
        modules: more ``(module, file naming it)`` pairs to import.

    Returns:
        Every registered instruction, by name.

    Raises:
        InstructionError: a settings file is invalid or a module cannot be imported.
    """
    wanted: list[tuple[str, Path]] = []
    settings = find_project_settings(start)
    if settings is not None:
        wanted.extend((m, settings.file) for m in settings.instructions)
    if lab is not None:
        wanted.extend((m, Path(file)) for m, file in lab.instruction_modules)
    wanted.extend(modules)
    for module, named_by in wanted:
        _import(module, named_by)
    return registered()
