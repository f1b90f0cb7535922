"""``otto tunnel add NAME --host H --local PORT --to TARGET:PORT``: a port forward through
an SSH host and its hops, kept open in the foreground until Ctrl-C (see
``otto.hosts.forward``). ``--remote`` forwards the other way, ``--socks`` is a
SOCKS proxy."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from otto.cli.exits import fail

if TYPE_CHECKING:
    from contextlib import AbstractAsyncContextManager

    from otto.hosts.forward import Forward
    from otto.lab import Lab

__all__ = ["tunnel_add", "tunnel_app"]

tunnel_app = typer.Typer(
    help="Forward ports through an SSH host and its hops (local, remote, SOCKS).",
    no_args_is_help=True,
)

_EPILOG = (
    "The tunnel stays open until Ctrl-C (exit status 130) or SIGTERM (143). "
    "Before it serves, the target is tried once (--no-check skips that): a target "
    "that refuses or cannot be reached ends the command with status 1. Exit status 2 "
    "for a bad command line, 1 when the host cannot be reached or the port cannot be had, "
    "or when a --remote tunnel loses its SSH connection (the host stops listening)."
)


def _port(value: int | None, option: str) -> int | None:
    if value is not None and not 0 <= value <= 65535:
        fail(f"{option}: a port is a number from 0 (any free port) to 65535, not {value}")
    return value


@tunnel_app.command("add", epilog=_EPILOG)
def tunnel_add(  # noqa: PLR0917 (typer passes each option as a parameter)
    ctx: typer.Context,
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME", help="What to call the tunnel in its messages.", show_default=False
        ),
    ],
    host: Annotated[
        str,
        typer.Option(
            "--host",
            metavar="HOST",
            help="The SSH host of the lab that forwards (reached through its hops).",
            show_default=False,
        ),
    ],
    local: Annotated[
        int | None,
        typer.Option(
            "--local",
            metavar="PORT",
            help="Listen here on PORT (0: a free one, printed); HOST connects to --to.",
            show_default=False,
        ),
    ] = None,
    remote: Annotated[
        int | None,
        typer.Option(
            "--remote",
            metavar="PORT",
            help="HOST listens on PORT; this machine connects to --to.",
            show_default=False,
        ),
    ] = None,
    socks: Annotated[
        int | None,
        typer.Option(
            "--socks",
            metavar="PORT",
            help="A SOCKS4/5 proxy here on PORT whose connections leave from HOST.",
            show_default=False,
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="TARGET:PORT",
            help="Where connections go (as HOST sees it for --local): 10.0.0.5:80, [::1]:80.",
            show_default=False,
        ),
    ] = None,
    bind: Annotated[
        str,
        typer.Option(
            "--bind",
            metavar="ADDRESS",
            help="The address to listen on (on HOST for --remote).",
        ),
    ] = "127.0.0.1",
    check: Annotated[
        bool,
        typer.Option("--check/--no-check", help="Try the target once before serving."),
    ] = True,
) -> None:
    """Keep a port forward open in the foreground and print what it serves."""
    from otto.cli.hostcmds import resolve_names
    from otto.errors import LabError
    from otto.hosts.forward import parse_target
    from otto.lab import current_lab

    kinds = (("--local", local), ("--remote", remote), ("--socks", socks))
    given = [(option, value) for option, value in kinds if value is not None]
    if len(given) != 1:
        fail("give one of --local PORT, --remote PORT or --socks PORT")
    option, port = given[0]
    _port(port, option)
    if option == "--socks" and to is not None:
        fail("--socks takes no --to: each SOCKS client names its own target")
    if option != "--socks":
        if to is None:
            fail(f"{option} needs --to TARGET:PORT")
        try:
            parse_target(to)
        except ValueError as exc:
            fail(f"--to: {exc}")
    if ctx.find_root().params.get("dry_run"):
        fail("--dry-run: tunnel add has no dry run (it would contact the host)")
    lab = current_lab()
    try:
        names = resolve_names(lab, host)
    except LabError as exc:
        fail(f"--host: {exc}")
    if len(names) != 1:
        fail(f"--host: a tunnel goes through one host, not {len(names)}: {', '.join(names)}")
    from otto.cli.guard import guard

    guard(lab, names, force=bool(ctx.find_root().params.get("force")))
    assert port is not None
    error = _serve(
        lab, name, host=names[0], option=option, port=port, to=to or "", bind=bind, check=check
    )
    if error:
        fail(f"tunnel {name}: {error}", code=1)


def _serve(
    lab: Lab, name: str, *, host: str, option: str, port: int, to: str, bind: str, check: bool
) -> str:
    """Open the forward, print it, keep it until interrupted; an error's message, or ""."""
    from otto.cli.interrupt import run_interruptible
    from otto.errors import OttoError

    def say(message: str) -> None:
        sys.stderr.write(f"otto: tunnel {name}: {message}\n")
        sys.stderr.flush()

    async def serve() -> str:
        forwarding = lab.host(host)
        try:
            opened: AbstractAsyncContextManager[Forward]
            if option == "--local":
                opened = forwarding.forward(port, to, bind=bind)
            elif option == "--remote":
                opened = forwarding.forward_remote(port, to, bind=bind)
            else:
                opened = forwarding.socks(port, bind=bind)
            async with opened as forward:
                if check and forward.target is not None:
                    await forward.probe()
                forward.on_failure = say
                sys.stdout.write(f"tunnel {name}: {forward}\n")
                sys.stdout.flush()
                # Until Ctrl-C or SIGTERM cancels us, or a remote forward loses its connection.
                broken = await forward.wait_broken()
        except (OttoError, ValueError) as exc:
            return str(exc)
        return f"{host}: {broken}"

    return run_interruptible(serve(), lab)
