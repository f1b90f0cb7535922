"""The ``otto`` command: list a lab's hosts, run commands, copy files, log in,
run instructions and watch hosts in the monitor dashboard.

Only argument parsing lives here; each command imports what it needs when it
runs, so ``otto --help`` starts fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from typer import _click as click  # Typer's own Click, which its classes derive from
from typer._click.exceptions import ClickException, NoSuchOption
from typer.core import TyperGroup

from otto.cli import helpstyle
from otto.cli.argv import globals_first
from otto.cli.deploycmd import host_deploy
from otto.cli.exits import EXIT_USAGE, fail
from otto.cli.fast import host_names, load, run_or_plan, setup_logging
from otto.cli.impaircmd import host_impair
from otto.cli.labcmds import lab_app
from otto.cli.output import use_colour
from otto.cli.reservecmds import release_command, reservations_command, reserve_command
from otto.cli.runcmd import InstructionGroup
from otto.cli.testcmd import TEST_EPILOG, test_command
from otto.cli.tunnelcmd import tunnel_app

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


_HELP = ("-h", "--help")


def options_first(args: list[str]) -> list[str]:
    """``NAME --user u run ...`` -> ``--user u NAME run ...``: the options between NAME
    and the command moved in front of NAME (each takes a value)."""
    if not args or args[0].startswith("-"):
        return args
    end = 1
    while end < len(args) and args[end].startswith("-") and args[end] not in _HELP:
        step = 1 if "=" in args[end] else 2
        if end + step > len(args):
            break  # a last option without its value: Click says what is missing
        end += step
    return [*args[1:end], args[0], *args[end:]]


class _HostGroup(TyperGroup):
    """``otto host``: options written after NAME (``otto host web1 --user root run``) are its own.

    Click stops reading a group's options at its first argument, so those
    between NAME and the command are moved in front of NAME: both orders work.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, options_first(args))


host_app = typer.Typer(
    cls=_HostGroup,
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
app.add_typer(tunnel_app, name="tunnel")
host_app.command("deploy")(host_deploy)
host_app.command("impair")(host_impair)


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
def main_callback(  # noqa: PLR0917 (typer passes each option as a parameter)
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
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            "-n",
            help="Print what host run/put/get/power/reboot, run and test would do on "
            "each host (commands, transfers, the hop path, the reservation check) and "
            "contact no host. Exit status 0 when the plan is valid.",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Act on hosts reserved by someone else (says whose reservation it "
            "overrides); with reserve and release, take or end their reservations.",
        ),
    ] = False,
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            show_default=False,
            help="Show otto's log on stderr: -v what it does (info), -vv every step (debug). "
            "Default: $OTTO_LOG (debug, info or warning), else nothing.",
        ),
    ] = 0,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show otto's debug log on stderr (as -vv).")
    ] = False,
    json_output: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print for scripts: --list-hosts as one JSON list; host run, put and get "
            "as one JSON object per line (per command, or per host for put/get).",
        ),
    ] = False,
    connect_timeout: Annotated[
        float | None,
        typer.Option(
            "--connect-timeout",
            metavar="SECONDS",
            help="Seconds each host may take to connect and start its shell, instead of "
            "the lab's connect_timeout.",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option("--version", help="Show otto's version and exit.", callback=_version),
    ] = False,
) -> None:
    """Run, drive and watch commands on local, SSH and Telnet hosts.

    Global options may also follow the command (otto host web1 run true --force).
    """
    setup_logging(verbose, debug)
    if ctx.invoked_subcommand == "lab":
        return  # otto lab check reports a bad lab's problems itself
    if connect_timeout is not None and ctx.invoked_subcommand == "test":
        # pytest loads the lab afresh, in its own plugin: this lab object is not the one used.
        fail("--connect-timeout does not reach otto test: set connect_timeout in the lab")
    loaded = load(lab, connect_timeout)
    if list_hosts:
        from otto.cli.hostcmds import print_hosts

        print_hosts(loaded, as_json=json_output)
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
    user: Annotated[
        str | None,
        typer.Option(
            "--user",
            "-u",
            metavar="USER",
            help="Log in as this user instead of the lab's.",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(
            "--port",
            "-p",
            metavar="PORT",
            help="Connect to this port instead of the lab's.",
            show_default=False,
        ),
    ] = None,
    hop: Annotated[
        str | None,
        typer.Option(
            "--hop",
            metavar="HOST",
            help="Go through this SSH host of the lab instead of the lab's hop.",
            show_default=False,
        ),
    ] = None,
    term: Annotated[
        str | None,
        typer.Option(
            "--term",
            metavar="ssh|telnet",
            help="Reach the host this way instead; the lab's port, key and known_hosts "
            "belong to its own term and are not used (give --port for the new one).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run commands on hosts, copy files to and from them, or log in.

    --user, --port, --hop and --term change the hosts' lab entries for this
    command only, checked as a lab file's would be.
    """


def _dry_run(ctx: typer.Context) -> bool:
    return bool(ctx.find_root().params.get("dry_run"))


def _json(ctx: typer.Context) -> bool:
    return bool(ctx.find_root().params.get("json_output"))


def _forced(ctx: typer.Context) -> bool:
    return bool(ctx.find_root().params.get("force"))


def _no_dry_run(ctx: typer.Context, command: str) -> None:
    if _dry_run(ctx):
        fail(f"--dry-run: {command} has no dry run (it would contact the hosts)")


def _names(ctx: typer.Context) -> list[str]:
    assert ctx.parent is not None
    params = ctx.parent.params
    return host_names(
        _lab(),
        str(params["name"]),
        {f: params.get(f) for f in ("user", "port", "hop", "term")},
        dry_run=_dry_run(ctx),
        force=_forced(ctx),
    )


@host_app.command(
    "run",
    epilog="Exit status: 0 when every command succeeds; otherwise that of the first "
    "command that did not: its own exit status, 124 if it timed out, 255 if the host "
    "could not run it; 141 if otto's output was closed early (| head).",
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
        float,
        typer.Option(
            "--timeout",
            "-t",
            min=0,
            metavar="SECONDS",
            help="Seconds each command may run before it is interrupted (0: no limit).",
        ),
    ] = 30.0,
) -> None:
    """Run commands on the host, printing each with its output, prefixed by host name."""
    names = _names(ctx)
    raise typer.Exit(
        run_or_plan(
            _lab(),
            names,
            commands,
            timeout or None,
            dry_run=_dry_run(ctx),
            force=_forced(ctx),
            as_json=_json(ctx),
        )
    )


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
    if _dry_run(ctx):
        from otto.cli.dryrun import plan_transfer

        raise typer.Exit(
            plan_transfer(_lab(), names, "put", [str(s) for s in sources], dest, force=_forced(ctx))
        )
    raise typer.Exit(
        transfer(_lab(), names, "put", [str(s) for s in sources], dest, as_json=_json(ctx))
    )


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
    if _dry_run(ctx):
        from otto.cli.dryrun import plan_transfer

        raise typer.Exit(
            plan_transfer(_lab(), names, "get", sources, str(dest), force=_forced(ctx))
        )
    raise typer.Exit(transfer(_lab(), names, "get", sources, str(dest), as_json=_json(ctx)))


@host_app.command("power")
def host_power(
    ctx: typer.Context,
    action: Annotated[
        str,
        typer.Argument(
            metavar="on|off|cycle|status",
            help="Run the host's power command (lab field 'power') on its controller; "
            "status prints NAME: on|off.",
            show_default=False,
        ),
    ],
) -> None:
    """Switch the host on or off, power-cycle it, or read its power state."""
    from otto.cli.powercmds import power_hosts
    from otto.hosts.power import POWER_ACTIONS

    if action not in POWER_ACTIONS:
        fail(f"power takes on, off or cycle, or status, not {action!r}")
    names = _names(ctx)
    if _dry_run(ctx):
        from otto.cli.dryrun import plan_power

        raise typer.Exit(plan_power(_lab(), names, action, force=_forced(ctx)))
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
        typer.Option(
            "--timeout",
            "-t",
            min=0,
            metavar="SECONDS",
            help="Seconds to wait for it to go and come back.",
        ),
    ] = 300.0,
) -> None:
    """Reboot the host, wait until it went down and is up again."""
    from otto.cli.powercmds import reboot_hosts

    names = _names(ctx)
    if _dry_run(ctx):
        from otto.cli.dryrun import plan_reboot

        raise typer.Exit(
            plan_reboot(_lab(), names, hard=hard, wait=wait, timeout=timeout, force=_forced(ctx))
        )
    raise typer.Exit(reboot_hosts(_lab(), names, hard=hard, wait=wait, timeout=timeout))


@host_app.command(
    "goto",
    epilog="Exit status: 0 when every host got there; 255 otherwise, with the step that "
    "failed and what the console printed last.",
)
def host_goto(
    ctx: typer.Context,
    state: Annotated[
        str,
        typer.Argument(
            metavar="off|bootloader|shell",
            help="Where to bring the host: powered off, at its bootloader's prompt (lab "
            "field 'boot'), or at a shell.",
            show_default=False,
        ),
    ],
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", "-t", min=0, metavar="SECONDS", help="Seconds it may take in all."
        ),
    ] = 300.0,
) -> None:
    """Bring the host to a state from the one it is in now, the shortest way."""
    from otto.cli.gotocmd import goto_hosts
    from otto.hosts.lifecycle.states import STATES

    if state not in STATES:
        fail(f"goto takes {', '.join(STATES)}, not {state!r}")
    names = _names(ctx)
    _no_dry_run(ctx, "host goto")
    raise typer.Exit(goto_hosts(_lab(), names, state, timeout))


@host_app.command("login")
def host_login(ctx: typer.Context) -> None:
    """Open an interactive shell on the host in this terminal; Ctrl-] leaves."""
    import asyncio

    from otto.cli.login import login
    from otto.errors import OttoError

    names = _names(ctx)
    _no_dry_run(ctx, "host login")
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
def monitor(  # noqa: PLR0917 (typer passes each option as a parameter)
    ctx: typer.Context,
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
        float,
        typer.Option(
            "--interval", "-i", min=0.1, metavar="SECONDS", help="Seconds between rounds."
        ),
    ] = 5.0,
    df_every: Annotated[
        int | None,
        typer.Option(
            "--df-every",
            min=1,
            metavar="N",
            help="Run df (disk usage) on every N-th round only; the other rounds start "
            "no process on a Linux host. Default: 12.",
            show_default=False,
        ),
    ] = None,
    db: Annotated[
        Path | None,
        typer.Option(
            "--db",
            metavar="FILE",
            help="Also store the metrics in this SQLite file, as a new run after the "
            "runs it already holds (a file from an older otto is upgraded in place).",
            show_default=False,
        ),
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            "-f",
            metavar="FILE",
            exists=True,
            dir_okay=False,
            help="Replay a saved run (a JSON export, or a --db file) instead of collecting: "
            "the latest run, or the one --run names; the page can switch runs.",
            show_default=False,
        ),
    ] = None,
    port: Annotated[
        int,
        typer.Option(
            "--port",
            "-p",
            min=0,
            max=65535,
            metavar="PORT",
            help="Dashboard port on --bind (0: any).",
        ),
    ] = 8000,
    bind: Annotated[
        str,
        typer.Option(
            "--bind",
            metavar="ADDR",
            help="Serve the dashboard on this address. Any address but loopback requires "
            "an access token: printed in the URL (?token=...); Prometheus sends it as "
            "'Authorization: Bearer'.",
        ),
    ] = "127.0.0.1",
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="TOKEN",
            envvar="OTTO_MONITOR_TOKEN",
            show_envvar=True,
            help="The access token (16 characters or more); prefer the environment "
            "variable, which ps does not show. Default: a random one beyond loopback, "
            "none on loopback.",
            show_default=False,
        ),
    ] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option(
            "--tls-cert",
            dir_okay=False,
            metavar="FILE",
            help="Serve HTTPS with this PEM certificate (chain); needs --tls-key.",
            show_default=False,
        ),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option(
            "--tls-key",
            dir_okay=False,
            metavar="FILE",
            help="The PEM private key of --tls-cert.",
            show_default=False,
        ),
    ] = None,
    label: Annotated[
        str | None,
        typer.Option(
            "--label",
            metavar="LABEL",
            help="Name the run stored in --db, to pick it later with --run LABEL.",
            show_default=False,
        ),
    ] = None,
    note: Annotated[
        str | None,
        typer.Option(
            "--note",
            metavar="TEXT",
            help="Free text kept with the run in --db.",
            show_default=False,
        ),
    ] = None,
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            metavar="N|LABEL",
            help="With --file: the run to replay (or to --export), by number or label "
            "(the latest run with that label). Default: the latest run.",
            show_default=False,
        ),
    ] = None,
    list_runs: Annotated[
        bool,
        typer.Option(
            "--list-runs",
            help="List the runs of --file (or --db): number, label, times, rounds, "
            "hosts, note; then exit.",
        ),
    ] = False,
    export: Annotated[
        Path | None,
        typer.Option(
            "--export",
            metavar="JSON",
            dir_okay=False,
            help="Write the run --run names (every run without --run) of --file (or --db) "
            "to this JSON file, then exit.",
            show_default=False,
        ),
    ] = None,
    import_from: Annotated[
        Path | None,
        typer.Option(
            "--import",
            metavar="JSON",
            exists=True,
            dir_okay=False,
            help="Add the runs of this JSON export to --db, each as a new run, then exit.",
            show_default=False,
        ),
    ] = None,
    watch: Annotated[
        list[str] | None,
        typer.Option(
            "--watch",
            metavar="HOST:PATH:REGEX",
            help="Put each new line of PATH on HOST that REGEX (Python) matches on the "
            "timeline, following rotation; repeatable. PATH ends at the first ':' after "
            "HOST (write '\\:' for a ':' in PATH); REGEX is the rest and may hold ':'.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Watch CPU, memory, disk and network of hosts in a live dashboard (Ctrl-C stops).

    Every minute it prints what the rounds cost each host; above 50 hosts, a fleet
    summary instead: hosts up, down and connecting, rounds (late, skipped), the five
    costliest hosts.
    """
    _no_dry_run(ctx, "monitor")
    from otto.cli.hostcmds import resolve_names
    from otto.cli.monitorcmd import MonitorOptions, run_monitor
    from otto.errors import LabError, OttoError

    if list_runs:
        from otto.cli.monitorcmd import list_runs as print_runs

        listed = file if file is not None else db
        if listed is None:
            fail("--list-runs lists the runs of --file FILE or --db FILE: give one")
        raise typer.Exit(print_runs(listed))
    if export is not None:
        from otto.cli.monitorcmd import export_to_json

        source = file if file is not None else db
        if source is None:
            fail("--export writes runs of --file FILE or --db FILE: give one")
        raise typer.Exit(export_to_json(source, export, run))
    if import_from is not None:
        from otto.cli.monitorcmd import import_from_json

        if db is None:
            fail("--import adds runs to a database: give --db FILE too")
        raise typer.Exit(import_from_json(import_from, db))
    if run is not None and file is None:
        fail("--run picks a run to replay (or to --export): give --file FILE too")
    from otto.monitor.logwatch import parse_watch

    try:
        watches = [parse_watch(text) for text in watch or ()]
    except ValueError as exc:
        fail(str(exc))
    if watches and file is not None:
        fail("--watch follows logs while collecting: it does not go with --file")

    from otto.monitor.access import Serving

    try:
        serving = Serving(bind, token, tls_cert, tls_key).check()
    except ValueError as exc:
        fail(str(exc))

    lab = _lab()
    try:
        selected = resolve_names(lab, ",".join(names)) if names else lab.names
        for spec in watches:
            lab.spec(spec.host)
    except LabError as exc:
        fail(str(exc))
    try:
        options = MonitorOptions(
            interval=interval,
            port=port,
            db=db,
            file=file,
            serving=serving,
            label=label,
            note=note,
            run=run,
            watches=watches,
            df_every=df_every,
        )
        code = run_monitor(lab, selected, options)
    except OttoError as exc:
        fail(str(exc), code=1)
    except OSError as exc:
        fail(f"cannot serve the dashboard on {bind}:{port}: {exc.strerror or exc}", code=1)
    raise typer.Exit(code)


# --- otto reserve / release / reservations -----------------------------------------------

app.command(
    "reserve",
    epilog="A reservation made here is not renewed: it ends after --for (default 1h). "
    "Reserving hosts you hold extends them. Exit status 3 when a host is held by someone "
    "else (--force takes it). The store: the lab's settings.reservations, else "
    "$OTTO_RESERVATIONS, else a SQLite file in ~/.local/share/otto.",
)(reserve_command)
app.command(
    "release", epilog="Exit status 3 when a host is held by someone else (--force ends it)."
)(release_command)
app.command("reservations")(reservations_command)


# --- otto test ----------------------------------------------------------------------------

app.command(
    "test",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    options_metavar="[OPTIONS] [PYTEST ARGS]...",
    epilog=TEST_EPILOG,
)(test_command)


def _own_options(root: click.Command) -> set[str]:
    return {opt for param in root.params for opt in getattr(param, "opts", ())}


def main() -> None:
    """The ``otto`` console script."""
    helpstyle.install()
    # An unexpected error's traceback: Rich's framed one in colour, else Python's own.
    app.pretty_exceptions_enable = use_colour(sys.stderr)
    args = sys.argv[1:]
    root = typer.main.get_command(app)
    if not os.environ.get("_OTTO_COMPLETE"):
        args = globals_first(root, args)
    try:
        code = app(args=args, prog_name="otto", standalone_mode=False)
    except ClickException as exc:
        option = getattr(exc, "option_name", None)
        if isinstance(exc, NoSuchOption) and option in _own_options(root):
            exc.message = (
                f"No such option here: {option} is otto's own; write it before the command "
                f"(otto {option} ...)"
            )
        # Click's own words, without Typer's box: one plain block on any stream.
        exc.show(file=sys.stderr)
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.stderr.write("otto: aborted\n")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
