"""``otto --list-hosts`` and ``otto host NAME run|put|get``: the work behind the commands."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from otto.cli.interrupt import run_interruptible
from otto.cli.output import EXIT_ERROR, HostPrinter, exit_code, use_colour
from otto.errors import LabError, OttoError
from otto.result import CommandStatus, Status, TransferResult

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from otto.hosts import Host
    from otto.lab import Lab

__all__ = ["apply_overrides", "print_hosts", "resolve_names", "run_commands", "transfer"]

ProgressFn = Callable[[str, int, int], None]


def print_hosts(lab: Lab) -> None:
    """One line per host: name, term, where it is, its hop and its tags."""
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


@contextmanager
def _fanout_progress(total: int) -> Iterator[Callable[[], None]]:
    """A transient 'hosts done' bar on a terminal; yields the function that advances it."""
    if total < 2 or not (sys.stdout.isatty() and sys.stderr.isatty()):
        yield lambda: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
        redirect_stdout=True,
    )
    with progress:
        task = progress.add_task("hosts", total=total)
        yield lambda: progress.advance(task)


async def _run_on(
    host: Host, commands: Sequence[str], timeout: float | None
) -> tuple[list[CommandStatus], OttoError | None]:
    statuses: list[CommandStatus] = []
    for command in commands:
        try:
            result = await host.run(command, timeout=timeout)
        except OttoError as exc:
            return statuses, exc
        statuses.extend(result.statuses)
        if not result.is_ok:
            break
    return statuses, None


def _code(statuses: Sequence[CommandStatus], error: OttoError | None) -> int:
    for status in statuses:
        if not status.is_ok:
            return exit_code(status)
    return EXIT_ERROR if error is not None else 0


async def _run_single(lab: Lab, name: str, commands: Sequence[str], timeout: float | None) -> int:
    printer = HostPrinter([name])
    host = lab.host(name)
    for command in commands:
        printer.command(name, command)
        statuses, error = await _run_on(host, [command], timeout)
        for status in statuses:
            printer.result(name, status, timeout)
        if error is not None:
            printer.problem(name, str(error))
        code = _code(statuses, error)
        if code:
            return code
    return 0


async def _run_many(
    lab: Lab, names: Sequence[str], commands: Sequence[str], timeout: float | None
) -> int:
    from otto.fanout import do_for_all_hosts

    printer = HostPrinter(names)
    with _fanout_progress(len(names)) as advance:

        async def one(host: Host) -> int:
            statuses, error = await _run_on(host, commands, timeout)
            # A host's block is printed whole, as soon as that host is done.
            for status in statuses:
                printer.command(host.name, status.command)
                printer.result(host.name, status, timeout)
            if error is not None:
                printer.problem(host.name, str(error))
            advance()
            return _code(statuses, error)

        outcomes = await do_for_all_hosts(one, pattern=_pattern(names))
    codes = []
    for name, outcome in outcomes.items():
        if isinstance(outcome, BaseException):
            printer.problem(name, f"{type(outcome).__name__}: {outcome}")
            codes.append(EXIT_ERROR)
        else:
            codes.append(outcome)
    return next((c for c in codes if c), 0)


def run_commands(
    lab: Lab, names: Sequence[str], commands: Sequence[str], timeout: float | None
) -> int:
    """Run ``commands`` in order on each host; the exit status of the first failure."""
    if len(names) == 1:
        return _run_async(lab, _run_single(lab, names[0], commands, timeout))
    return _run_async(lab, _run_many(lab, names, commands, timeout))


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
        console=Console(stderr=True),
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


def transfer(lab: Lab, names: Sequence[str], verb: str, sources: Sequence[str], dest: str) -> int:
    """``put`` local ``sources`` into ``dest`` on each host, or ``get`` them from each.

    Getting from several hosts puts each host's files in ``dest/HOST/``.
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
