"""``otto [OPTIONS] host NAME run CMD...`` without building the Typer app.

Most of a short command's time would go to importing Typer (and, through its
adapters, pydantic) and building every command's parser. The plain
``host NAME run`` line is recognised here and run with the very functions the
Typer command calls (:func:`setup_logging`, :func:`load`, :func:`host_names`,
:func:`run_or_plan`); any other line, or anything here that is not sure
(``--help``, an unknown or repeated option, a value Click would reject,
shell completion), goes to the full Typer app, which gives its usual answer.

The functions shared with :mod:`otto.cli.app` import nothing heavy: what a
command does not use is imported by the function that uses it.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO, cast

if TYPE_CHECKING:
    from otto.lab import Lab

__all__ = [
    "HostRunLine",
    "exit_now",
    "host_names",
    "load",
    "parse",
    "run_line",
    "run_or_plan",
    "run_plain",
    "setup_logging",
]


# --- shared with the Typer commands (otto.cli.app) --------------------------------------


def setup_logging(verbose: int, debug: bool) -> None:
    """``-v``/``--debug``/``$OTTO_LOG``: where otto's log lines go (a bad ``$OTTO_LOG`` fails)."""
    from otto.cli.exits import fail
    from otto.cli.logsetup import configure, level_from

    try:
        configure(level_from(verbose, debug, os.environ.get("OTTO_LOG")))
    except ValueError as exc:
        fail(str(exc))


def load(files: Sequence[Path | str] | None, connect_timeout: float | None) -> Lab:
    """The lab of ``--lab`` (else ``$OTTO_LAB``), made current, with ``--connect-timeout``.

    Validated in full before any command runs; a bad lab fails with its problems.
    """
    from otto.cli.exits import fail
    from otto.errors import LabError
    from otto.lab import lab_paths_from_env, load_lab

    try:
        loaded = load_lab(files or lab_paths_from_env())
        if connect_timeout is not None:
            _connect_timeout(loaded, connect_timeout)
    except LabError as exc:
        fail(str(exc))
    return loaded


def _connect_timeout(lab: Lab, seconds: float) -> None:
    """``--connect-timeout``: the lab field ``connect_timeout`` of every host that connects."""
    remote = [spec.name for spec in lab.specs if spec.term not in ("local", "none")]
    if remote:
        lab.override(remote, {"connect_timeout": (seconds, "--connect-timeout")})


def host_names(
    lab: Lab, name: str, overrides: Mapping[str, object], *, dry_run: bool, force: bool
) -> list[str]:
    """``otto host NAME [--user/--port/--hop/--term]``: the hosts named, their overrides
    applied and (unless a dry run, which prints the check itself) their reservations checked.
    """
    from otto.cli.exits import fail
    from otto.cli.hostcmds import apply_overrides, resolve_names
    from otto.errors import LabError

    try:
        names = resolve_names(lab, name)
        apply_overrides(lab, names, overrides)
    except LabError as exc:
        fail(str(exc))
    if not dry_run and not _no_store_file(lab):
        from otto.cli.guard import guard

        guard(lab, names, force=force)
    return names


def _no_store_file(lab: Lab) -> bool:
    """True when the reservation store is a SQLite file that does not exist: nothing
    is reserved, and the check (``guard``) would find no lease, say nothing and create
    nothing, so it is not loaded (the store's modules and ``sqlite3``).

    The URL is found as ``otto.reservations.store_url`` finds it (the lab's
    ``settings.reservations``, ``$OTTO_RESERVATIONS``, the default file); anything
    else (PostgreSQL, a URL the store would reject, a path that cannot be looked at)
    is False, and ``guard`` answers as usual.
    """
    url = lab.reservations or os.environ.get("OTTO_RESERVATIONS", "").strip()
    try:
        if not url:
            base = os.environ.get("XDG_DATA_HOME", "").strip()
            root = Path(base) if base else Path.home() / ".local" / "share"
            path = root / "otto" / "reservations.db"
        else:
            prefix = "sqlite:///"
            if not url.lower().startswith(prefix) or len(url) == len(prefix):
                return False
            path = Path(url[len(prefix) :]).expanduser()
        return not path.exists()
    except (OSError, RuntimeError):  # no home directory, a path that cannot be looked at
        return False


def run_or_plan(
    lab: Lab,
    names: Sequence[str],
    commands: Sequence[str],
    timeout: float | None,
    *,
    dry_run: bool,
    force: bool,
    as_json: bool,
) -> int:
    """``otto host NAMES run CMD...``: run the commands (or, with ``-n``, print the plan);
    the exit status."""
    if dry_run:
        from otto.cli.dryrun import plan_commands

        return plan_commands(lab, names, commands, timeout, force=force)
    from otto.cli.hostcmds import run_commands

    return run_commands(lab, names, commands, timeout, as_json=as_json)


# --- recognising the line -----------------------------------------------------------------

_LAB = ("--lab", "-l")
_GLOBAL_FLAGS = {
    "--force": "force",
    "--dry-run": "dry_run",
    "-n": "dry_run",
    "--json": "as_json",
    "--debug": "debug",
}
_HOST_OPTIONS = {"--user": "user", "-u": "user", "--port": "port", "-p": "port"}
_HOST_OPTIONS |= {"--hop": "hop", "--term": "term"}
_TIMEOUT = ("--timeout", "-t")
_VERBOSE = re.compile(r"-v+")
# Numbers Click and Python read alike; anything else is left to the Typer app.
_INT = re.compile(r"[0-9]{1,9}")
_FLOAT = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,9})?")


class _NotPlain(Exception):
    """The line is not one this module is sure of: the Typer app takes it."""


@dataclass
class HostRunLine:
    """What ``otto [OPTIONS] host NAME [OPTIONS] run [OPTIONS] CMD...`` asks for."""

    name: str = ""
    commands: list[str] = field(default_factory=list)
    labs_before: list[Path] = field(default_factory=list)  # written before ``host``
    labs_after: list[Path] = field(default_factory=list)  # written after it (moved first)
    connect_timeout: float | None = None
    force: bool = False
    dry_run: bool = False
    as_json: bool = False
    debug: bool = False
    verbose: int = 0
    timeout: float = 30.0
    overrides: dict[str, str | int | None] = field(
        default_factory=lambda: dict.fromkeys(("user", "port", "hop", "term"))
    )

    @property
    def labs(self) -> list[Path] | None:
        """The ``--lab`` files in the order the Typer app reads them (those written after
        the command are moved in front), None when none was given."""
        return [*self.labs_after, *self.labs_before] or None


class _Parser:
    def __init__(self, args: Sequence[str]) -> None:
        self.args = args
        self.at = 0
        self.line = HostRunLine()
        self._seen: set[str] = set()

    def _value(self, word: str) -> str:
        """The value of option ``word`` (``--opt=V`` or ``--opt V``)."""
        name, equals, value = word.partition("=")
        if equals:
            if not name.startswith("--"):
                raise _NotPlain  # -l=x: Click reads the value as '=x'
        else:
            self.at += 1
            if self.at >= len(self.args):
                raise _NotPlain
            value = self.args[self.at]
        if not value or value.startswith("-"):
            raise _NotPlain
        return value

    def _once(self, key: str) -> None:
        if key in self._seen:
            raise _NotPlain  # Click keeps the last: the Typer app says what it does
        self._seen.add(key)

    def _global(self, word: str, *, after: bool) -> bool:
        """Read the global option ``word``; False when it is not one."""
        line = self.line
        name = word.partition("=")[0]
        if name in _LAB:
            (line.labs_after if after else line.labs_before).append(Path(self._value(word)))
        elif name == "--connect-timeout":
            self._once(name)
            line.connect_timeout = _float(self._value(word))
        elif word in _GLOBAL_FLAGS:
            setattr(line, _GLOBAL_FLAGS[word], True)
        elif word == "--verbose":
            line.verbose += 1
        elif _VERBOSE.fullmatch(word):
            line.verbose += len(word) - 1
        else:
            return False
        return True

    def parse(self) -> HostRunLine:
        args, line = self.args, self.line
        # otto [GLOBALS] host
        while self.at < len(args) and args[self.at] != "host":
            if not self._global(args[self.at], after=False):
                raise _NotPlain
            self.at += 1
        self.at += 1
        # NAME, its options and globals, in any order, then run
        while True:
            if self.at >= len(args):
                raise _NotPlain
            word = args[self.at]
            if word == "run" and line.name:
                break
            option = _HOST_OPTIONS.get(word.partition("=")[0])
            if option is not None:
                self._once(option)
                value = self._value(word)
                line.overrides[option] = _int(value) if option == "port" else value
            elif word.startswith("-"):
                if not self._global(word, after=True):
                    raise _NotPlain
            elif line.name:
                raise _NotPlain  # another command than run
            else:
                line.name = word
            self.at += 1
        self.at += 1
        # run [--timeout S] CMD...
        while self.at < len(args):
            word = args[self.at]
            if word == "--":
                line.commands.extend(args[self.at + 1 :])
                break
            if word.partition("=")[0] in _TIMEOUT:
                self._once("timeout")
                line.timeout = _float(self._value(word))
            elif word.startswith("-") and word != "-":
                if not self._global(word, after=True):
                    raise _NotPlain
            else:
                line.commands.append(word)
            self.at += 1
        if not line.commands:
            raise _NotPlain  # Click says what is missing
        return line


def _int(text: str) -> int:
    if not _INT.fullmatch(text):
        raise _NotPlain
    return int(text)


def _float(text: str) -> float:
    if not _FLOAT.fullmatch(text):
        raise _NotPlain
    return float(text)


def parse(args: Sequence[str]) -> HostRunLine | None:
    """The ``host NAME run`` line ``args`` asks for; None when the Typer app should read it."""
    if os.environ.get("_OTTO_COMPLETE"):
        return None  # shell completion
    try:
        return _Parser(args).parse()
    except _NotPlain:
        return None


# --- running it ---------------------------------------------------------------------------


def run_line(line: HostRunLine, *, freeze: bool = False) -> int:
    """Run ``line`` as the Typer commands would (the callback's part, then host run's).

    With ``freeze`` (a process that ends with the command), what reading the lab
    and importing the hosts' transports made is moved out of the collector's
    sight (``gc.freeze``) before the work starts.
    """
    # Reading the lab and importing the transports (asyncssh: ~50k objects) make many
    # objects and free none, so the collector is held off until the work starts; its
    # first pass after that would walk them all (~20 ms) to free nothing.
    collecting = gc.isenabled()
    gc.disable()
    try:
        setup_logging(line.verbose, line.debug)
        lab = load(line.labs, line.connect_timeout)
        names = host_names(lab, line.name, line.overrides, dry_run=line.dry_run, force=line.force)
        if not line.dry_run:
            _prepare(lab, names)
    finally:
        if collecting:
            if freeze:
                gc.freeze()
            gc.enable()
    try:
        return run_or_plan(
            lab,
            names,
            line.commands,
            line.timeout or None,
            dry_run=line.dry_run,
            force=line.force,
            as_json=line.as_json,
        )
    finally:
        if "otto.transports.ssh_early" in sys.modules:
            from otto.transports.ssh_early import discard_all

            discard_all()


_EARLY_MAX = 8
"""Hosts up to which SSH connections are begun before asyncssh is imported."""


def _prepare(lab: Lab, names: Sequence[str]) -> None:
    """Before the work starts: begin the TCP connects to the SSH hosts reached directly
    (the named hosts, or the first hop of those behind hops; see
    :mod:`otto.transports.ssh_early`), then import the transports the hosts use.

    A lab problem (a hop cycle) is left for the host to report as usual.
    """
    terms: set[str] = set()
    first: set[tuple[str, int]] = set()
    for name in names:
        spec = lab.spec(name)
        terms.add(spec.term)
        seen = {name}
        while spec.hop is not None and spec.hop not in seen and spec.hop in lab:
            seen.add(spec.hop)
            spec = lab.spec(spec.hop)
            terms.add(spec.term)
        if spec.hop is None and spec.term == "ssh" and spec.address is not None:
            first.add((spec.address, spec.port or 22))
    terms -= {"local", "none"}
    if not terms:
        return
    if "ssh" in terms and len(first) <= _EARLY_MAX:
        from otto.transports import ssh_early

        for address, port in sorted(first):
            ssh_early.start(address, port)
    from otto.hosts.remote import connection_kind

    for term in sorted(terms):
        with contextlib.suppress(ValueError, TypeError):  # the host reports it when built
            connection_kind(term)


class _Pacified:
    """A stream whose flush ignores a closed pipe (what Click does after EPIPE)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


def _run(line: HostRunLine) -> int:
    """``run_line``, ending as the Typer app ends a command (its exits, Ctrl-C), and
    with status 141 when its stdout or stderr was closed early (see ``otto.__main__``)."""
    try:
        return run_line(line, freeze=True)
    except KeyboardInterrupt:
        return 130  # Typer: Exit(130)
    except EOFError:
        sys.stderr.write("\notto: aborted\n")
        return 1
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        sys.stdout = cast("TextIO", _Pacified(sys.stdout))
        sys.stderr = cast("TextIO", _Pacified(sys.stderr))
        from otto.cli.output import EXIT_PIPE

        return EXIT_PIPE  # 128 + SIGPIPE, as a shell reports `seq 1 200000 | head -1`
    except Exception as exc:
        from typer import Exit  # already imported by whatever raised it

        if isinstance(exc, Exit):
            return exc.exit_code
        raise


def exit_now(code: int) -> NoReturn:
    """End the process with status ``code`` once its output is out, without tearing
    down every module first.

    What a command leaves to the end of the process is done as usual: the
    standard streams are flushed and the exit handlers run (``atexit``: otto's
    hosts, logging's files). The interpreter's own teardown after that (every
    module's objects freed one by one, ~15-30 ms once asyncssh is loaded) would
    free nothing the system does not free anyway, so the process ends there
    (``os._exit``). When that is not sure to be the same (a stream that cannot be
    flushed, a thread other than daemons still running), it ends as Python does.
    """
    import threading

    main = threading.main_thread()
    alone = all(t.daemon for t in threading.enumerate() if t is not main)
    if alone and _flushed():
        import atexit

        atexit._run_exitfuncs()  # run once: they are cleared, sys.exit would not rerun them
        if _flushed():
            os._exit(code)
    # Left out of the collection Python makes as it ends: it would only walk everything
    # the imports built to free nothing.
    gc.freeze()
    sys.exit(code)


def _flushed() -> bool:
    """Flush stdout and stderr; whether both went out (a closed pipe is Python's to report)."""
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return False
    return True


def run_plain(args: Sequence[str]) -> int | None:
    """Run ``args`` when it is the plain ``host NAME run`` line: its exit status; None (nothing
    done) when the Typer app should read it."""
    line = parse(args)
    return None if line is None else _run(line)
