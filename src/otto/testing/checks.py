"""Non-fatal checks: the ``check`` fixture collects failures and the test goes on.

``check.equal(a, b)``, ``check.that(cond, msg)`` and ``with check: ...`` (an
``AssertionError`` inside the block) each record a failed check with its message
and the line of the test that made it. The plugin fails the test at its end (its
call report, not its teardown) listing every one, or lets it pass when none failed.
"""

from __future__ import annotations

import contextlib
import linecache
import sys
from pathlib import Path
from types import FrameType, TracebackType

from otto import redact
from otto.testing.records import FailedCheck

__all__ = ["Check", "describe_checks"]

_HERE = str(Path(__file__).resolve())
_MAX_REPR = 200


def _short_repr(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_REPR else text[: _MAX_REPR - 3] + "..."


class Check:
    """The failed checks of one test run.

    Args:
        test_file: the test's source file: a failure's location is the deepest line in
            it (the call to ``check`` or the assertion in a ``with check:`` block),
            else the line that called ``check``.
        rootdir: locations are shown relative to it when they are inside it.
    """

    def __init__(self, test_file: Path | None = None, rootdir: Path | None = None) -> None:
        self.failures: list[FailedCheck] = []
        self._test_file = str(Path(test_file).resolve()) if test_file is not None else None
        self._rootdir = Path(rootdir).resolve() if rootdir is not None else None

    def __bool__(self) -> bool:
        """True while no check has failed."""
        return not self.failures

    def equal(self, a: object, b: object, msg: str | None = None) -> bool:
        """Check ``a == b``; return whether it held."""
        if a == b:
            return True
        text = f"{_short_repr(a)} != {_short_repr(b)}"
        self._fail(f"{msg}: {text}" if msg else text, self._caller())
        return False

    def that(self, condition: object, msg: str) -> bool:
        """Check that ``condition`` is true; ``msg`` says what failed. Return whether it held."""
        if condition:
            return True
        self._fail(msg, self._caller())
        return False

    def __enter__(self) -> Check:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if error is None or not isinstance(error, AssertionError):
            return False  # other exceptions end the test as they would without the block
        where, line = self._in_traceback(tb)
        text = str(error).strip() or (f"assert failed: {line}" if line else "AssertionError")
        self._fail(text, where)
        return True

    # --- where and what -----------------------------------------------------------------

    def _fail(self, message: str, location: str) -> None:
        self.failures.append(FailedCheck(redact.redact(message), location))

    def _where(self, filename: str, lineno: int) -> str:
        path = Path(filename)
        if self._rootdir is not None:
            with contextlib.suppress(ValueError):  # outside the rootdir: shown whole
                path = path.resolve().relative_to(self._rootdir)
        return f"{path}:{lineno}"

    def _caller(self) -> str:
        frame: FrameType | None = sys._getframe(1)
        first: FrameType | None = None
        while frame is not None:
            filename = str(Path(frame.f_code.co_filename).resolve())
            if filename != _HERE:
                if first is None:
                    first = frame
                if self._test_file is None or filename == self._test_file:
                    return self._where(frame.f_code.co_filename, frame.f_lineno)
            frame = frame.f_back
        if first is None:
            return "?"
        return self._where(first.f_code.co_filename, first.f_lineno)

    def _in_traceback(self, tb: TracebackType | None) -> tuple[str, str]:
        """``(file:line, source line)`` of the deepest frame of ``tb`` in the test's file."""
        found: tuple[str, int] | None = None
        last: tuple[str, int] | None = None
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            last = (filename, tb.tb_lineno)
            if self._test_file is not None and str(Path(filename).resolve()) == self._test_file:
                found = last
            tb = tb.tb_next
        where = found or last
        if where is None:
            return "?", ""
        return self._where(*where), linecache.getline(where[0], where[1]).strip()


def describe_checks(failures: list[FailedCheck]) -> str:
    """The failed checks, one per line, as the terminal, the report and JUnit show them."""
    count = len(failures)
    head = f"{count} check{'s' if count != 1 else ''} failed:"
    lines = [head]
    for f in failures:
        first, *rest = f.message.splitlines() or [""]
        lines.append(f"  {f.location}: {first}")
        lines += [f"      {line}" for line in rest]
    return "\n".join(lines)
