"""Global options written after a command (``otto host web1 run true --force``).

Click reads a group's options only before its command, so ``--force``,
``-n``/``--dry-run``, ``--lab``, ``-v``, ``--debug``, ``--json`` and
``--connect-timeout`` are moved in front of the first command before Click
sees the line. The line is walked with the commands' own parameters: an
option a command defines itself stays its own (``reservations --json``), the
value of an option is never taken for an option, and nothing after ``--``
moves. A command that hands its unknown options to another program (``otto
test`` passes them to pytest) keeps the short ones and ``--debug``/``-v``,
which mean something there.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from typer._click import core as click  # Typer's own Click, which its classes derive from
from typer.core import TyperArgument, TyperGroup, TyperOption

__all__ = ["GLOBAL_OPTIONS", "globals_first"]

GLOBAL_OPTIONS: dict[str, bool] = {
    "--lab": True,
    "-l": True,
    "--connect-timeout": True,
    "--force": False,
    "--dry-run": False,
    "-n": False,
    "--verbose": False,
    "-v": False,
    "--debug": False,
    "--json": False,
}
"""The global options that may follow a command, each with whether it takes a value."""

_PASSED_ON_SAFE = frozenset({"--lab", "--connect-timeout", "--force", "--dry-run"})
# (--connect-timeout moves too, so that otto, not pytest, says what to do instead.)
"""What moves out of a command that passes unknown options on (pytest has none of these)."""

_VERBOSE = re.compile(r"-v+")


def _options(command: click.Command) -> dict[str, bool]:
    """``command``'s option strings, each with whether it takes a value."""
    found: dict[str, bool] = {}
    for param in command.params:
        if isinstance(param, TyperOption):
            takes = not (param.is_flag or param.count)
            for opt in (*param.opts, *param.secondary_opts):
                found[opt] = takes
    return found


def _arguments(command: click.Command) -> float:
    """How many words ``command``'s own arguments take (a group's, before its command)."""
    count = 0.0
    for param in command.params:
        if isinstance(param, TyperArgument):
            count += float("inf") if param.nargs < 0 else param.nargs
    return count


def _passes_options_on(command: click.Command) -> bool:
    return bool(command.context_settings.get("ignore_unknown_options"))


def _global(name: str, command: click.Command | None) -> str | None:
    """The global option ``name`` stands for, when it moves out of ``command``
    (None: a command known only once it runs, an instruction)."""
    canonical = "-v" if _VERBOSE.fullmatch(name) else name
    if canonical not in GLOBAL_OPTIONS:
        return None
    if command is not None and _passes_options_on(command) and canonical not in _PASSED_ON_SAFE:
        return None
    return canonical


def globals_first(root: click.Command, args: Sequence[str]) -> list[str]:
    """``args`` with the global options found after a command moved to the front."""
    moved: list[str] = []
    kept: list[str] = []
    command: click.Command | None = root
    options = _options(root)
    left = _arguments(root)
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            kept.extend(args[i:])
            break
        if word.startswith("-") and word != "-":
            name, equals, _ = word.partition("=")
            takes = options.get(name)
            target = kept
            if takes is None and command is not root:
                canonical = _global(name, command)
                if canonical is not None:
                    takes = GLOBAL_OPTIONS[canonical]
                    target = moved
            step = 2 if takes and not equals and i + 1 < len(args) else 1
            target.extend(args[i : i + step])
            i += step
            continue
        kept.append(word)
        i += 1
        if left > 0:
            left -= 1
        elif isinstance(command, TyperGroup):
            command = _subcommand(command, word)
            options = _options(command) if command is not None else {}
            left = _arguments(command) if command is not None else float("inf")
    return [*moved, *kept]


def _subcommand(group: TyperGroup, name: str) -> click.Command | None:
    """``group``'s command ``name``, when it is known without running anything (None otherwise)."""
    from otto.cli.runcmd import InstructionGroup

    if isinstance(group, InstructionGroup):
        return None  # its commands exist once the instructions are imported
    return group.commands.get(name)
