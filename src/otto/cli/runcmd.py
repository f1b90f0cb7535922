"""``otto run INSTRUCTION [options]``: one subcommand per registered instruction.

The instructions are only known once the modules the settings name are
imported, so the group builds its subcommands when asked for them (to run
one, to list them in ``--help``, or to complete them in a shell).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer import _click as click  # Typer's own Click, which its classes derive from
from typer.core import TyperGroup

if TYPE_CHECKING:
    from otto.instructions import Instruction

__all__ = ["InstructionGroup"]


def _exit_status(value: object) -> int:
    """What an instruction's return value means as an exit status."""
    if value is None:
        return 0
    if isinstance(value, bool):
        return 0 if value else 1
    if isinstance(value, int):
        return value
    is_ok = getattr(value, "is_ok", None)
    if isinstance(is_ok, bool):
        return 0 if is_ok else 1
    return 0


def _run(instruction: Instruction, options: dict[str, object], *, force: bool = False) -> int:
    from otto.cli.exits import fail
    from otto.cli.guard import exit_reserved, guard_lab
    from otto.cli.interrupt import run_interruptible
    from otto.errors import OttoError, ReservedError
    from otto.lab import current_lab

    async def main() -> object:
        return await instruction(**options)

    lab = current_lab()
    # The instruction finds its hosts as it runs: each one held by someone else
    # refuses when first used (exit status 3), or says --force overrides it.
    guard_lab(lab, force=force)
    try:
        value = run_interruptible(main(), lab)
    except ReservedError as exc:
        exit_reserved(exc)
    except OttoError as exc:  # what failed, on which host: one line, no traceback
        fail(str(exc), code=1)
    if value is not None and not isinstance(value, bool | int):
        typer.echo(repr(value))
    return _exit_status(value)


def _command(
    instruction: Instruction, *, dry_run: bool = False, force: bool = False
) -> click.Command:
    """A Click command (via Typer) whose options are the instruction's parameters.

    With ``dry_run`` (``otto -n run``) the instruction runs on hosts that print
    what they would do (see ``otto.cli.dryrun``).
    """
    params = []
    annotations: dict[str, object] = {}
    for p in instruction.parameters:
        names = [p.option]
        if p.type is bool:
            names = [f"{p.option}/--no-{p.option[2:]}"]
        option = typer.Option(*names, help=p.help, show_default=not p.required)
        base: object = p.type | None if p.optional else p.type
        annotation = Annotated[base, option]  # type: ignore[valid-type]
        default = inspect.Parameter.empty if p.required else p.default
        params.append(
            inspect.Parameter(
                p.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
            )
        )
        annotations[p.name] = annotation

    def callback(**options: object) -> None:
        if dry_run:
            from otto.cli.dryrun import run_instruction

            raise typer.Exit(run_instruction(instruction, options, force=force))
        raise typer.Exit(_run(instruction, options, force=force))

    callback.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    callback.__annotations__ = annotations
    callback.__doc__ = instruction.help
    app = typer.Typer(add_completion=False)
    app.command(name=instruction.name, help=instruction.help or None)(callback)
    return typer.main.get_command(app)


class InstructionGroup(TyperGroup):
    """A command group whose subcommands are the registered instructions."""

    def _instructions(self, ctx: click.Context) -> dict[str, Instruction]:
        from otto.cli.exits import fail
        from otto.errors import OttoError
        from otto.instructions import load_instructions
        from otto.lab import current_lab

        cache = ctx.meta.get("otto.instructions")
        if cache is None:
            try:
                cache = load_instructions(current_lab(), start=Path.cwd())
            except OttoError as exc:
                if ctx.resilient_parsing:  # completing: stay quiet
                    cache = {}
                else:
                    fail(str(exc), cause=exc.__cause__)
            ctx.meta["otto.instructions"] = cache
        return dict(cache)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not ctx.resilient_parsing and not set(args) & set(ctx.help_option_names):
            from otto.cli.exits import fail
            from otto.instructions import HOW_TO_REGISTER

            if not self._instructions(ctx):
                fail(HOW_TO_REGISTER)
        return super().parse_args(ctx, args)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self._instructions(ctx))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        instruction = self._instructions(ctx).get(cmd_name)
        if instruction is None:
            return None
        root = ctx.find_root().params
        return _command(
            instruction, dry_run=bool(root.get("dry_run")), force=bool(root.get("force"))
        )
