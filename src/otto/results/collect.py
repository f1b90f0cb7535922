"""Run a suite on a host, parse what it printed (or the file it wrote), and hand the cases on."""

from __future__ import annotations

import gc
import importlib
import shlex
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from otto.redact import redact
from otto.result import CommandStatus, Status
from otto.results.model import SUITE, Case, cap_output, suite_error
from otto.results.sink import publish

if TYPE_CHECKING:
    from otto.hosts import Host

Format = Literal["tap", "ptest", "unity", "junit"]

# Each parser's module is imported on first use: the test plugin imports this package
# on every run, and most runs never read a JUnit file.
_PARSERS: dict[str, tuple[str, str]] = {
    "tap": ("otto.results.tap", "parse_tap"),
    "ptest": ("otto.results.ptest", "parse_ptest"),
    "unity": ("otto.results.unity", "parse_unity"),
    "junit": ("otto.results.junit", "parse_junit"),
}
_loaded: dict[str, Callable[[str], list[Case]]] = {}

#: Failed cases named in a ``ResultsFailed`` message; the rest are counted.
NAMED_FAILURES = 20


def _parser(format: str) -> Callable[[str], list[Case]]:
    found = _loaded.get(format)
    if found is None:
        where = _PARSERS.get(format)
        if where is None:
            raise ValueError(
                f"unknown result format {format!r}: use one of {', '.join(sorted(_PARSERS))}"
            )
        found = getattr(importlib.import_module(where[0]), where[1])
        _loaded[format] = found
    return found


def parse(text: str | bytes, format: Format = "tap") -> list[Case]:
    """Parse a suite's output into cases.

    Args:
        text: What the suite printed, or the file it wrote (bytes are decoded:
            UTF-8, invalid bytes replaced; JUnit XML by its own rules).
        format: ``"tap"``, ``"ptest"``, ``"unity"`` or ``"junit"``.

    Returns:
        The cases in the order the suite reported them. A suite that crashed or
        was cut off is never all passed: what is missing is an ``error`` case.

    Raises:
        ValueError: ``format`` is none of those.
    """
    parser = _parser(format)
    if format != "junit":  # the JUnit parser decodes bytes by XML's rules
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        if "\r" in text:
            text = text.replace("\r\n", "\n")
    # The cases hold no reference cycles, but 100,000 new objects set off full
    # collections that walk everything alive, the parsed XML tree too: a third
    # of the time. The collector is paused while they are built.
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        return parser(text)  # type: ignore[arg-type]
    finally:
        if paused:
            gc.enable()


def failed(cases: Sequence[Case]) -> list[Case]:
    """The cases that failed or are errors (skips are not failures)."""
    return [case for case in cases if not case.ok]


class ResultsFailed(AssertionError):
    """Cases of a suite run on a host failed, are errors, or are missing.

    An ``AssertionError``, so pytest reports the test as failed (not broken).
    The message names the host, the command and the first failed cases; it
    is redacted, as is everything here that might be shown.

    Attributes:
        host: The host's name.
        command: The command that ran the suite (redacted).
        cases: Every case of the suite.
        failures: The cases that failed or are errors.
    """

    def __init__(self, host: str, command: str, cases: Sequence[Case]) -> None:
        self.host = host
        self.command = redact(command)
        self.cases = list(cases)
        self.failures = failed(cases)
        super().__init__(redact(self._message()))

    def _message(self) -> str:
        total = len(self.cases)
        count = len(self.failures)
        lines = [f"{self.host}: {self.command}: {count} of {total} cases failed"]
        for case in self.failures[:NAMED_FAILURES]:
            note = " ".join(case.message[:400].split())[:200]
            lines.append(f"  {case.name} ({case.status}{': ' + note if note else ''})")
        if count > NAMED_FAILURES:
            lines.append(f"  and {count - NAMED_FAILURES} more")
        return "\n".join(lines)


async def collect(
    host: Host,
    command: str,
    format: Format = "tap",
    *,
    path: str | None = None,
    timeout: float | None = None,
    check: bool = True,
) -> list[Case]:
    """Run a test suite on ``host`` and return its cases.

    The cases are also handed to the running test (``otto test`` makes each a
    JUnit test case of its own), before anything is raised.

    Args:
        host: Where the suite runs.
        command: The shell command that runs it.
        format: ``"tap"``, ``"ptest"``, ``"unity"`` or ``"junit"``.
        path: Read the results from this file on the host once the command
            ends (JUnit XML from GoogleTest, CTest or pytest) rather than from
            what it printed. It is removed before the command runs, so a file
            left by an earlier run is never read as this one's. It must be
            absolute: the shell's working folder and a file transfer's differ.
        timeout: Seconds the command may take (the session's default if None).
            A run that times out keeps the cases it printed, plus an error case.
        check: Raise ``ResultsFailed`` when any case failed or is an error.

    Returns:
        The cases; beside the suite's own, an ``error`` case named ``(suite)``
        for a command that timed out, lost its connection, or exited non-zero
        while no case failed, and for a results file that could not be read.

    Raises:
        ResultsFailed: ``check`` is true and a case failed or is an error.
        ValueError: ``format`` is unknown, or ``path`` is not absolute.
    """
    _parser(format)  # an unknown format fails before anything runs
    if path is not None and not path.startswith("/"):
        raise ValueError(
            f"path must be absolute (the shell's working folder and a file transfer's "
            f"differ): {path!r}"
        )
    if path is not None:
        await host.run(f"rm -f -- {shlex.quote(path)}", timeout=timeout)
    status = (await host.run(command, timeout=timeout)).only
    if status.status is Status.NotRun:
        return []  # a dry run: nothing ran, there is nothing to report
    if path is None:
        cases = parse(status.output, format)
    else:
        cases = await _from_file(host, path, format, status)
    cases.extend(_command_errors(status, cases, path))
    publish(f"{host.name}: {command}", cases)
    if check and failed(cases):
        raise ResultsFailed(host.name, command, cases)
    return cases


MAX_RESULTS_FILE = 256 * 1024 * 1024
"""The largest results file ``collect(path=...)`` parses (a command's output has the
same bound, ``host.max_output``); a larger one is an error case, never read whole."""


async def _from_file(host: Host, path: str, format: Format, status: CommandStatus) -> list[Case]:
    with tempfile.TemporaryDirectory(prefix="otto-results-") as folder:
        got = await host.get(path, folder)
        local = Path(folder) / Path(path).name
        if not got.is_ok or not local.is_file():
            why = got.error or "no such file"
            message = f"{path} could not be read from {host.name} after the command: {why}"
            return [suite_error(message, status.output)]
        size = local.stat().st_size
        if size > MAX_RESULTS_FILE:
            message = (
                f"{path} on {host.name} holds {size} bytes, more than a results file may "
                f"({MAX_RESULTS_FILE}); it was not parsed"
            )
            return [suite_error(message, status.output)]
        data = local.read_bytes()
    return parse(data, format)


def _command_errors(status: CommandStatus, cases: Sequence[Case], path: str | None) -> list[Case]:
    """Error cases for how the command itself ended, when the cases do not already say it."""
    output = status.output if path is not None else _tail(status.output)
    if status.timed_out:
        return [suite_error(f"the command timed out: {status.error or 'no exit status'}", output)]
    if status.status is Status.Error:
        return [suite_error(f"the command did not finish: {status.error}", output)]
    if status.retcode != 0 and not failed(cases):
        message = f"the command exited {status.retcode}, but no case failed"
        return [suite_error(message, output)]
    return []


def _tail(output: str, size: int = 4096) -> str:
    """The end of the output (the cases already hold the rest)."""
    return output if len(output) <= size else output[-size:]


__all__ = ["SUITE", "Format", "ResultsFailed", "cap_output", "collect", "failed", "parse"]
