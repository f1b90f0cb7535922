"""``otto lab schema`` and ``otto lab check``: the lab format, and every problem of a lab."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from otto.cli.exits import EXIT_USAGE, fail

__all__ = ["check_lab", "lab_app"]

lab_app = typer.Typer(
    help="Check lab files, or print the JSON Schema of the lab format.",
    no_args_is_help=True,
)


class _Collect(logging.Handler):
    """Keeps the warnings a lab source logs while it is read."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def check_lab(sources: list[str]) -> tuple[list[str], list[str], int]:
    """``(problems, warnings, hosts)`` of the lab merged from ``sources``."""
    from otto.lab.model import check_sources

    handler = _Collect()
    logger = logging.getLogger("otto.lab")
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        specs, _, problems = check_sources(sources, check_files=True)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    warnings = handler.messages
    if not specs and not problems:
        warnings.append(f"no hosts in {', '.join(sources)}: the lab is empty")
    return problems, warnings, len(specs)


@lab_app.command("check")
def check_command(
    ctx: typer.Context,
    files: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[FILE]...",
            help="Lab sources, merged in order as --lab merges them (otto JSON or YAML, "
            "an OpenSSH config, an Ansible inventory; 'FORMAT:PATH' names the format). "
            "Default: the --lab files, else $OTTO_LAB.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print one JSON object: ok, sources, hosts, problems, warnings "
            "(exit status as without it).",
        ),
    ] = False,
) -> None:
    """Check a lab and report every problem, each with its file, host and field."""
    as_json = as_json or bool(ctx.find_root().params.get("json_output"))  # otto --json lab check
    from otto.lab import lab_paths_from_env

    given = ctx.find_root().params.get("lab") or []
    sources = list(files or []) or [str(p) for p in given] or lab_paths_from_env()
    if not sources:
        fail("no lab to check: name files, or give --lab or $OTTO_LAB")
    problems, warnings, hosts = check_lab(sources)
    if as_json:
        report = {
            "ok": not problems,
            "sources": sources,
            "hosts": hosts,
            "problems": problems,
            "warnings": warnings,
        }
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        if problems:
            raise typer.Exit(EXIT_USAGE)
        return
    for warning in warnings:
        sys.stderr.write(f"warning: {warning}\n")
    for problem in problems:
        sys.stderr.write(f"{problem}\n")
    if problems:
        count = f"{len(problems)} problem" + ("s" if len(problems) > 1 else "")
        fail(f"{count} in {', '.join(sources)}", code=EXIT_USAGE)
    typer.echo(f"ok: {hosts} host{'s' if hosts != 1 else ''} in {', '.join(sources)}")


@lab_app.command("schema")
def schema_command(
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write the schema to this file.", show_default=False),
    ] = None,
) -> None:
    """Print the JSON Schema of lab files (JSON or YAML), for editors to validate them."""
    from otto.lab.schema import lab_schema

    text = json.dumps(lab_schema(), indent=2) + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    try:
        from otto.transfer import write_whole

        write_whole(output, text)
    except OSError as exc:
        fail(f"cannot write the schema to {output}: {exc.strerror or exc}", code=1)
