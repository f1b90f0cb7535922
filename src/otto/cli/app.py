"""The ``otto`` command: list a lab's hosts, run commands, copy files, log in,
run instructions and watch hosts in the monitor dashboard.

Only argument parsing lives here; each command imports what it needs when it
runs, so ``otto --help`` starts fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from otto.cli.exits import EXIT_USAGE, fail
from otto.cli.labcmds import lab_app
from otto.cli.runcmd import InstructionGroup
from otto.cli.testcmd import TEST_EPILOG, test_command

if TYPE_CHECKING:
    from otto.lab import Lab

__all__ = ["EXIT_USAGE", "app", "fail", "main"]

app = typer.Typer(
    name="otto",
    help="Run, drive and watch commands on local, SSH and Telnet hosts.\n\n"
    "Hosts come from lab files (--lab, or $OTTO_LAB); without one, the lab is "
    "this machine, as host 'local'.",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_show_locals=False,  # locals may hold passwords
    add_completion=True,
)
host_app = typer.Typer(
    help="Run commands on hosts, copy files to and from them, or log in.",
    no_args_is_help=True,
)
run_app = typer.Typer(
    cls=InstructionGroup,
    help="Run an instruction: an async function registered with @otto.instruction() "
    "in a module named by the lab's settings or by otto.toml / pyproject.toml \\[tool.otto].",
    no_args_is_help=True,
)
app.add_typer(host_app, name="host")
app.add_typer(run_app, name="run")
app.add_typer(lab_app, name="lab")


def _lab() -> Lab:
    from otto.lab import current_lab

    return current_lab()


def _complete_host(ctx: typer.Context, incomplete: str) -> list[str]:
    from otto.errors import OttoError
    from otto.lab import Lab, lab_paths_from_env

    files = ctx.find_root().params.get("lab") or lab_paths_from_env()
    try:
        lab = Lab.load(files)
    except OttoError:
        return []
    return [n for n in lab.names if n.startswith(incomplete)]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"otto {version('otto-shell')}")
        raise typer.Exit()


@app.callback(invoke_without_command=True)
def main_callback(
    ctx: typer.Context,
    lab: Annotated[
        list[Path] | None,
        typer.Option(
            "--lab",
            "-l",
            metavar="LAB",
            help="A lab: otto JSON or YAML, an OpenSSH config (~/.ssh/config) or an "
            "Ansible inventory (INI or YAML, needs otto-shell\\[ansible]); told apart by "
            "name and content, or named as json:, yaml:, ssh:, ansible:PATH. Repeat to "
            "merge several; later files override hosts by name. Default: the files in "
            "$OTTO_LAB (separated by ':').",
            show_default=False,
        ),
    ] = None,
    list_hosts: Annotated[
        bool, typer.Option("--list-hosts", help="List the lab's hosts and exit.")
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", help="Show otto's version and exit.", callback=_version),
    ] = False,
) -> None:
    """Run, drive and watch commands on local, SSH and Telnet hosts."""
    from otto.errors import LabError
    from otto.lab import lab_paths_from_env, load_lab

    if ctx.invoked_subcommand == "lab":
        return  # otto lab check reports a bad lab's problems itself
    try:
        # Validated in full before any command runs.
        loaded = load_lab(lab or lab_paths_from_env())
    except LabError as exc:
        fail(str(exc))
    if list_hosts:
        from otto.cli.hostcmds import print_hosts

        print_hosts(loaded)
        raise typer.Exit()
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit()


# --- otto host NAME ... ------------------------------------------------------------


@host_app.callback()
def host_callback(
    name: Annotated[
        str,
        typer.Argument(
            metavar="NAME",
            help="A host name. Several hosts: names or regexes matching whole names, "
            "separated by commas ('web1,db1', 'web.*').",
            autocompletion=_complete_host,
            show_default=False,
        ),
    ],
) -> None:
    """Run commands on hosts, copy files to and from them, or log in."""


def _names(ctx: typer.Context) -> list[str]:
    from otto.cli.hostcmds import resolve_names
    from otto.errors import LabError

    assert ctx.parent is not None
    try:
        return resolve_names(_lab(), str(ctx.parent.params["name"]))
    except LabError as exc:
        fail(str(exc))


@host_app.command(
    "run",
    epilog="Exit status: 0 when every command succeeds; otherwise that of the first "
    "command that did not: its own exit status, 124 if it timed out, 255 if the host "
    "could not run it.",
)
def host_run(
    ctx: typer.Context,
    commands: Annotated[
        list[str],
        typer.Argument(
            metavar="CMD",
            help="Commands, one per argument (quote each), run in order on the host's "
            "shell; cd and variables carry over. Stops at the first that fails.",
            show_default=False,
        ),
    ],
    timeout: Annotated[
        float | None,
        typer.Option(
            "--timeout", "-t", min=0, help="Seconds each command may run before it is interrupted."
        ),
    ] = None,
) -> None:
    """Run commands on the host, printing each with its output, prefixed by host name."""
    from otto.cli.hostcmds import run_commands

    names = _names(ctx)
    raise typer.Exit(run_commands(_lab(), names, commands, timeout))


@host_app.command("put")
def host_put(
    ctx: typer.Context,
    sources: Annotated[
        list[Path],
        typer.Argument(
            metavar="SRC", exists=True, help="Local files or folders.", show_default=False
        ),
    ],
    dest: Annotated[
        str, typer.Argument(metavar="DEST", help="The folder on the host.", show_default=False)
    ],
) -> None:
    """Copy local files or folders into a folder on the host."""
    from otto.cli.hostcmds import transfer

    names = _names(ctx)
    raise typer.Exit(transfer(_lab(), names, "put", [str(s) for s in sources], dest))


@host_app.command("get")
def host_get(
    ctx: typer.Context,
    sources: Annotated[
        list[str],
        typer.Argument(metavar="SRC", help="Files or folders on the host.", show_default=False),
    ],
    dest: Annotated[
        Path,
        typer.Argument(
            metavar="DEST",
            help="The local folder (from several hosts: a subfolder per host).",
            show_default=False,
        ),
    ],
) -> None:
    """Copy files or folders from the host into a local folder."""
    from otto.cli.hostcmds import transfer

    names = _names(ctx)
    raise typer.Exit(transfer(_lab(), names, "get", sources, str(dest)))


@host_app.command("power")
def host_power(
    ctx: typer.Context,
    action: Annotated[
        str,
        typer.Argument(
            metavar="on|off|cycle",
            help="Run the host's power command (lab field 'power') on its controller.",
            show_default=False,
        ),
    ],
) -> None:
    """Switch the host on or off, or power-cycle it."""
    from otto.cli.powercmds import power_hosts
    from otto.hosts.power import POWER_ACTIONS

    if action not in POWER_ACTIONS:
        fail(f"power takes on, off or cycle, not {action!r}")
    names = _names(ctx)
    raise typer.Exit(power_hosts(_lab(), names, action))


@host_app.command("reboot")
def host_reboot(
    ctx: typer.Context,
    hard: Annotated[
        bool, typer.Option("--hard", help="Power-cycle instead of running `reboot`.")
    ] = False,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait until the host answers again.")
    ] = True,
    timeout: Annotated[
        float,
        typer.Option("--timeout", "-t", min=0, help="Seconds to wait for it to go and come back."),
    ] = 300.0,
) -> None:
    """Reboot the host, wait until it went down and is up again."""
    from otto.cli.powercmds import reboot_hosts

    names = _names(ctx)
    raise typer.Exit(reboot_hosts(_lab(), names, hard=hard, wait=wait, timeout=timeout))


@host_app.command("login")
def host_login(ctx: typer.Context) -> None:
    """Open an interactive shell on the host in this terminal; Ctrl-] leaves."""
    import asyncio

    from otto.cli.login import login
    from otto.errors import OttoError

    names = _names(ctx)
    if len(names) != 1:
        fail(f"login takes one host, not {len(names)}: {', '.join(names)}")
    lab = _lab()
    if not sys.stdin.isatty():
        fail("login needs a terminal on standard input")

    async def main() -> str:
        try:
            return await login(lab.host(names[0]))
        finally:
            await lab.close()

    try:
        reason = asyncio.run(main())
    except OttoError as exc:
        fail(str(exc), code=1)
    sys.stderr.write(f"\r\notto: {names[0]}: {reason}\r\n")


# --- otto monitor ------------------------------------------------------------------------


@app.command()
def monitor(
    names: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="NAMES",
            help="Hosts to watch: names or regexes matching whole names. Default: every host.",
            autocompletion=_complete_host,
            show_default=False,
        ),
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", "-i", min=0.1, help="Seconds between rounds.")
    ] = 5.0,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db", help="Also store the metrics in this SQLite file.", show_default=False
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            exists=True,
            dir_okay=False,
            help="Replay a saved run (a JSON export, or a --db file) instead of collecting.",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int,
        typer.Option(
            "--port", "-p", min=0, max=65535, help="Dashboard port on 127.0.0.1 (0: any)."
        ),
    ] = 8000,
) -> None:
    """Watch CPU, memory, disk and network of hosts in a live dashboard (Ctrl-C stops)."""
    from otto.cli.hostcmds import resolve_names
    from otto.cli.monitorcmd import run_monitor
    from otto.errors import LabError, OttoError

    lab = _lab()
    try:
        selected = resolve_names(lab, ",".join(names)) if names else lab.names
    except LabError as exc:
        fail(str(exc))
    try:
        code = run_monitor(lab, selected, interval=interval, db=db, file=file, port=port)
    except OttoError as exc:
        fail(str(exc), code=1)
    except OSError as exc:
        fail(f"cannot serve the dashboard on 127.0.0.1:{port}: {exc.strerror or exc}", code=1)
    raise typer.Exit(code)


# --- otto test ----------------------------------------------------------------------------

app.command(
    "test",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    options_metavar="[OPTIONS] [PYTEST ARGS]...",
    epilog=TEST_EPILOG,
)(test_command)


def main() -> None:
    """The ``otto`` console script."""
    app(prog_name="otto")
