"""``otto --list-hosts`` and ``otto host NAME run|put|get``: the work behind the commands."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otto.cli.interrupt import run_interruptible
from otto.cli.output import EXIT_ERROR, HostPrinter, exit_code, pipe_closed, use_colour
from otto.errors import LabError, OttoError
from otto.result import CommandStatus, Status, TransferResult

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from otto.hosts import Host
    from otto.lab import Lab

__all__ = ["apply_overrides", "print_hosts", "resolve_names", "run_commands", "transfer"]

ProgressFn = Callable[[str, int, int], None]


def print_hosts(lab: Lab, *, as_json: bool = False) -> None:
    """One line per host: name, term, where it is, its hop and its tags.

    With ``as_json``, one JSON list of ``{"name", "term", "address", "user",
    "port", "hop", "tags"}`` (no secret: passwords are never listed).
    """
    if as_json:
        hosts = [
            {
                "name": s.name,
                "term": s.term,
                "address": s.address,
                "user": s.user,
                "port": s.port,
                "hop": s.hop,
                "tags": list(s.tags),
            }
            for s in lab.specs
        ]
        import json

        sys.stdout.write(json.dumps(hosts, indent=2) + "\n")
        sys.stdout.flush()
        return
    header = ("NAME", "TERM", "ADDRESS", "HOP", "TAGS")
    rows = [
        (s.name, s.term, s.destination, s.hop or "-", ",".join(s.tags) or "-") for s in lab.specs
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    colour = use_colour(sys.stdout)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    head = line(header)
    sys.stdout.write((f"\x1b[1m{head}\x1b[0m" if colour else head) + "\n")
    for row in rows:
        sys.stdout.write(line(row) + "\n")
    sys.stdout.flush()


def resolve_names(lab: Lab, spec: str) -> list[str]:
    """Host names from ``NAME``: names and regexes (matching whole names), comma-separated.

    Raises:
        LabError: a part names no host and, as a regex, matches none.
    """
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part in lab:
            names.append(part)
            continue
        try:
            regex = re.compile(part)
        except re.error:
            matched = []
        else:
            matched = [n for n in lab.names if regex.fullmatch(n)]
        if not matched:
            known = ", ".join(lab.names)
            raise LabError(f"no host matches {part!r} (hosts: {known})")
        names.extend(matched)
    if not names:
        raise LabError("no host named")
    return list(dict.fromkeys(names))


_OVERRIDE_TERMS = ("ssh", "telnet")


def apply_overrides(lab: Lab, names: Sequence[str], given: Mapping[str, object]) -> None:
    """Apply ``otto host NAMES --user/--port/--hop/--term`` to the hosts ``names`` of ``lab``.

    Only the options given (not None) change anything; each is checked as a
    lab file's field would be, and errors name the option.

    Raises:
        LabError: an option's value is invalid (a port out of range, a hop
            that names no SSH host of the lab, a term otto cannot switch to).
    """
    fields = {f: (v, f"--{f}") for f, v in given.items() if v is not None}
    if not fields:
        return
    term = fields.get("term", (None, ""))[0]
    if term is not None and term not in _OVERRIDE_TERMS:
        raise LabError(f"--term: must be 'ssh' or 'telnet' (got {term!r})")
    lab.override(names, fields)


def _pattern(names: Sequence[str]) -> str:
    return "^(?:" + "|".join(re.escape(n) for n in names) + ")$"


@dataclass
class _Progress:
    """What each host is doing, for the summary after Ctrl-C."""

    running: dict[str, str] = field(default_factory=dict)
    codes: dict[str, int] = field(default_factory=dict)

    def summary(self, names: Sequence[str]) -> str:
        lines = []
        for name in names:
            if name in self.codes:
                code = self.codes[name]
                how = "succeeded" if code == 0 else f"failed (exit status {code})"
                lines.append(f"otto: {name}: {how}")
            elif name in self.running:
                lines.append(f"otto: {name}: interrupted while running: {self.running[name]}")
            else:
                lines.append(f"otto: {name}: not started")
        return "".join(line + "\n" for line in lines)


async def _stream_host(
    host: Host,
    commands: Sequence[str],
    timeout: float | None,
    *,
    out: HostPrinter,
    err: HostPrinter,
    progress: _Progress,
) -> int:
    """Run ``commands`` on ``host``, its lines shown as they come; its exit status."""
    from otto.cli.stream import LiveStream, wrap

    live = LiveStream(host.name, out, err)
    remove = host.add_tap(live.tap)
    try:
        for number, command in enumerate(commands, 1):
            out.command(host.name, command)
            progress.running[host.name] = command
            live.begin()
            try:
                result = await host.run(wrap(command, number), timeout=timeout)
            except OttoError as exc:
                live.flush()
                out.problem(host.name, str(exc))
                return EXIT_ERROR
            except asyncio.CancelledError:
                live.flush()  # what it printed so far, before the summary
                raise
            status = result.statuses[0]
            await live.finish(status)
            out.verdict(host.name, status, timeout)
            if not status.is_ok:
                return exit_code(status)
        return 0
    finally:
        remove()


class _JsonDocument:
    """The records of one ``--json`` command, printed as one JSON list when it ends.

    One document on stdout (SPEC §15), so ``json.load`` reads it whole; it is
    printed even when the command is interrupted, with what finished so far.
    """

    def __init__(self) -> None:
        self.records: list[Mapping[str, object]] = []

    def add(self, record: Mapping[str, object]) -> None:
        self.records.append(record)

    def emit(self) -> None:
        import json

        sys.stdout.write(json.dumps(self.records, indent=2) + "\n")
        sys.stdout.flush()


def status_record(
    host: str, command: str, status: CommandStatus | None, error: str = ""
) -> dict[str, object]:
    """One command's result as ``--json`` prints it."""
    if status is None:
        return {
            "host": host,
            "command": command,
            "status": "error",
            "exit_code": None,
            "output": "",
            "timed_out": False,
            "duration": 0.0,
            "error": error,
        }
    return {
        "host": host,
        "command": command,
        "status": status.status.name.lower(),
        "exit_code": status.retcode if status.retcode >= 0 else None,
        "output": status.output,
        "timed_out": status.timed_out,
        "duration": round(status.duration, 6),
        "error": status.error,
    }


async def _json_host(
    host: Host,
    commands: Sequence[str],
    timeout: float | None,
    progress: _Progress,
    document: _JsonDocument,
) -> int:
    """Run ``commands`` on ``host``, one JSON record per result; its exit status."""
    for command in commands:
        progress.running[host.name] = command
        try:
            result = await host.run(command, timeout=timeout)
        except OttoError as exc:
            document.add(status_record(host.name, command, None, str(exc)))
            return EXIT_ERROR
        status = result.statuses[0]
        document.add(status_record(host.name, command, status))
        if not status.is_ok:
            return exit_code(status)
    return 0


def run_commands(
    lab: Lab,
    names: Sequence[str],
    commands: Sequence[str],
    timeout: float | None,
    *,
    as_json: bool = False,
) -> int:
    """Run ``commands`` in order on each host, all hosts at once; the exit status of the
    first failure (in host order).

    Each host's lines are printed as they come, prefixed by its name (stderr
    lines on stderr); with ``as_json``, one JSON list with an object per command
    result, in the order they ended. After Ctrl-C, a summary says what each
    host was doing.
    """
    out = HostPrinter(names)
    err = HostPrinter(names, stream=sys.stderr)
    progress = _Progress()
    document = _JsonDocument()

    async def one(name: str) -> int:
        host = lab.host(name)
        if as_json:
            code = await _json_host(host, commands, timeout, progress, document)
        else:
            code = await _stream_host(host, commands, timeout, out=out, err=err, progress=progress)
        progress.codes[name] = code
        return code

    async def main() -> int:
        try:
            outcomes = await asyncio.gather(*(one(n) for n in names), return_exceptions=True)
        except asyncio.CancelledError:
            if pipe_closed():
                raise  # stdout or stderr is gone: stop, say nothing
            if as_json:
                document.emit()
            sys.stdout.flush()
            sys.stderr.write(progress.summary(names))
            raise
        codes = []
        for name, outcome in zip(names, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                if as_json:
                    document.add(
                        status_record(name, "", None, f"{type(outcome).__name__}: {outcome}")
                    )
                else:
                    out.problem(name, f"{type(outcome).__name__}: {outcome}")
                codes.append(EXIT_ERROR)
            else:
                codes.append(outcome)
        if as_json:
            document.emit()
        return next((c for c in codes if c), 0)

    return _run_async(lab, main())


def _run_async(lab: Lab, coro: Coroutine[Any, Any, int]) -> int:
    return run_interruptible(coro, lab)


# --- put / get --------------------------------------------------------------------------


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


@contextmanager
def _transfer_progress() -> Iterator[Progress | None]:
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True, color_system="auto" if use_colour(sys.stderr) else None),
    )
    with progress:
        yield progress


def _progress_for(progress: Progress | None, host: str) -> ProgressFn | None:
    if progress is None:
        return None
    tasks: dict[str, TaskID] = {}

    def report(path: str, done: int, total: int) -> None:
        task = tasks.get(path)
        if task is None:
            label = f"{host} {os.path.basename(path.rstrip('/')) or path}"
            task = tasks[path] = progress.add_task(label, total=total or None)
        progress.update(task, completed=done, total=total or None)

    return report


def transfer_record(
    host: str, verb: str, outcome: TransferResult | BaseException
) -> dict[str, object]:
    """One host's transfer as ``--json`` prints it."""
    if isinstance(outcome, BaseException):
        text = (
            str(outcome)
            if isinstance(outcome, OttoError)
            else f"{type(outcome).__name__}: {outcome}"
        )
        return {
            "host": host,
            "verb": verb,
            "status": "error",
            "files": [],
            "bytes": 0,
            "duration": 0.0,
            "error": text,
        }
    return {
        "host": host,
        "verb": verb,
        "status": outcome.status.name.lower(),
        "files": list(outcome.files),
        "bytes": outcome.bytes,
        "duration": round(outcome.duration, 6),
        "error": outcome.error,
    }


def transfer(
    lab: Lab,
    names: Sequence[str],
    verb: str,
    sources: Sequence[str],
    dest: str,
    *,
    as_json: bool = False,
) -> int:
    """``put`` local ``sources`` into ``dest`` on each host, or ``get`` them from each.

    Getting from several hosts puts each host's files in ``dest/HOST/``. With
    ``as_json``, one JSON list with an object per host (and no progress bars).
    """
    printer = HostPrinter(names)

    async def one(host: Host, progress: Progress | None) -> TransferResult:
        report = _progress_for(progress, host.name)
        if verb == "put":
            return await host.put(list(sources), dest, progress=report)
        target = Path(dest) / host.name if len(names) > 1 else Path(dest)
        target.mkdir(parents=True, exist_ok=True)
        return await host.get(list(sources), target, progress=report)

    async def main() -> int:
        from otto.fanout import do_for_all_hosts

        if as_json:
            outcomes = await do_for_all_hosts(one, None, pattern=_pattern(names))
            document = _JsonDocument()
            for name, outcome in outcomes.items():
                document.add(transfer_record(name, verb, outcome))
            document.emit()
            return (
                0
                if all(isinstance(o, TransferResult) and o.is_ok for o in outcomes.values())
                else 1
            )
        with _transfer_progress() as progress:
            outcomes = await do_for_all_hosts(one, progress, pattern=_pattern(names))
        failed = False
        for name, outcome in outcomes.items():
            if isinstance(outcome, BaseException):
                printer.problem(name, f"{type(outcome).__name__}: {outcome}")
                failed = True
            elif outcome.status is Status.Success:
                count = len(outcome.files)
                noun = "file" if count == 1 else "files"
                printer.output(
                    name,
                    f"{verb} {count} {noun} ({_size(outcome.bytes)}) in {outcome.duration:.2f}s",
                )
            else:
                printer.problem(name, f"{verb} failed: {outcome.error or outcome.status.name}")
                failed = True
        return 1 if failed else 0

    return _run_async(lab, main())
