"""How the ``otto`` command ends: its exit statuses, and one line for an error."""

from __future__ import annotations

import sys
import traceback
from typing import NoReturn

from otto.cli.output import use_colour
from otto.errors import OttoError

__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "fail"]

#: Exit status for a bad lab, an unknown host or a bad command line (as Click uses).
EXIT_USAGE = 2
#: Exit status after Ctrl-C (SIGINT), as a shell reports a command it interrupted.
EXIT_INTERRUPTED = 130


def fail(message: str, code: int = EXIT_USAGE, cause: BaseException | None = None) -> NoReturn:
    """Print ``otto: error: message`` on stderr (with ``cause``'s traceback) and exit."""
    if cause is not None and not isinstance(cause, OttoError):
        traceback.print_exception(cause, file=sys.stderr)
    label = "\x1b[1;31motto: error:\x1b[0m" if use_colour(sys.stderr) else "otto: error:"
    sys.stderr.write(f"{label} {message}\n")
    import typer  # here: a command that does not fail does not import it

    raise typer.Exit(code)
