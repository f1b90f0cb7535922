"""How the ``otto`` command shows its help and usage: metavars as Click writes them.

Typer 0.29 shows each parameter's Python type (``<bool>``, ``<str>``,
``<list[str]>``) beside it and braces around required arguments in usage
lines and error hints (``otto host {NAME} run``). otto shows what a user
types instead: nothing after a flag, the metavar a parameter names, else the
Click name of its type (``TEXT``, ``INTEGER``, ``FLOAT``, ``PATH``), and
``NAME`` / ``[NAME]`` in usage. Colour in help follows ``NO_COLOR`` and
``FORCE_COLOR`` as otto's own output does (no escape at all without it).

:func:`install` changes Typer's parameter and command classes, once; it is
called by ``otto.cli.app`` only, so the library never touches Typer.
"""

from __future__ import annotations

import sys
import types
import typing
from pathlib import PurePath
from typing import Any

from typer import _click as click  # Typer's own Click, which its classes derive from
from typer import core

from otto.cli.output import use_colour

__all__ = ["install", "type_metavar"]

_NAMES: dict[type, str] = {str: "TEXT", int: "INTEGER", float: "FLOAT", bool: "BOOLEAN"}


def type_metavar(annotation: object) -> str:
    """Click's name for values of ``annotation``: ``TEXT``, ``INTEGER``, ``PATH``..."""
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return type_metavar(args[0]) if args else "TEXT"
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return type_metavar(args[0]) if len(args) == 1 else "TEXT"
    if isinstance(annotation, type):
        if issubclass(annotation, PurePath):
            return "PATH"
        for kind, name in _NAMES.items():
            if issubclass(annotation, kind):
                return name
    return "TEXT"


def _option_type(self: core.TyperOption, ctx: click.Context) -> str | None:
    if self.is_flag or self.count:
        return None
    if self.metavar is not None:
        return self.metavar
    descriptor = self.type_descriptor
    if descriptor.is_choice and descriptor.choices is not None:
        name = "|".join(str(getattr(c, "value", c)) for c in descriptor.choices)
    else:
        name = type_metavar(descriptor.annotation)
    return name + "..." if self.nargs != 1 else name


def _argument_type(self: core.TyperArgument, ctx: click.Context) -> str | None:
    return None  # the argument's name, in the column before, says it


def _argument_usage(self: core.TyperArgument) -> str:
    name = self.display_name_raw
    if self.metavar is not None and (name.startswith("[") or name.endswith("...")):
        return name  # written whole by whoever named it
    if not self.required:
        name = f"[{name}]"
    return name + "..." if self.nargs != 1 else name


def _plain_unless_coloured(format_help: Any) -> Any:
    def format_help_in_colour_only(
        self: click.Command, ctx: click.Context, formatter: click.HelpFormatter
    ) -> None:
        if core.HAS_RICH:
            from typer import rich_utils

            # No colour system: Rich writes text without a single escape.
            rich_utils.COLOR_SYSTEM = "auto" if use_colour(sys.stdout) else None
        format_help(self, ctx, formatter)

    return format_help_in_colour_only


_installed = False


def install() -> None:
    """Make Typer's help and usage lines read as described above (idempotent)."""
    global _installed
    if _installed:
        return
    _installed = True
    # Each is checked, so a Typer without these hooks keeps its own ways.
    if hasattr(core.TyperOption, "display_type_rich"):
        core.TyperOption.display_type_rich = _option_type  # type: ignore[method-assign]
    if hasattr(core.TyperArgument, "display_type_rich"):
        core.TyperArgument.display_type_rich = _argument_type  # type: ignore[method-assign,assignment]
    if hasattr(core.TyperArgument, "_usage_display_name"):
        core.TyperArgument._usage_display_name = _argument_usage  # type: ignore[method-assign]
    for cls in (core.TyperCommand, core.TyperGroup):
        cls.format_help = _plain_unless_coloured(cls.format_help)  # type: ignore[method-assign]
