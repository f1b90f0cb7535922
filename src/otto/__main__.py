"""``python -m otto``: the ``otto`` command.

The plain ``otto [OPTIONS] host NAME run CMD...`` runs without importing the
Typer app (see :mod:`otto.cli.fast`); every other line goes to it.

A stdout or stderr closed before otto is done (``otto ... | head -1``) ends the
command quietly with exit status 141 (128 + SIGPIPE, as a shell reports
``seq 1 200000 | head -1``): what was still to be printed is dropped, the
command running on a host is stopped, and no traceback is shown (see
:class:`otto.cli.output.GuardedStream`).
"""

import sys


def main() -> None:
    """The ``otto`` console script."""
    from otto.cli.output import EXIT_PIPE, guard_streams, pipe_closed

    guard_streams()
    from otto.cli.fast import exit_now, run_plain

    try:
        code = run_plain(sys.argv[1:])
        if code is None:
            from otto.cli.app import main as typer_main

            typer_main()  # ends with SystemExit
            code = 0
    except SystemExit:
        if not _ends_on_closed_pipe(pipe_closed()):
            raise
        raise SystemExit(EXIT_PIPE) from None
    except BrokenPipeError:  # a write that went round sys.stdout/sys.stderr
        _ends_on_closed_pipe(True)
        raise SystemExit(EXIT_PIPE) from None
    exit_now(EXIT_PIPE if _ends_on_closed_pipe(pipe_closed()) else code)


def _ends_on_closed_pipe(closed: bool) -> bool:
    """Flush stdout and stderr; whether a pipe was found closed (``closed``, or now).

    A stream that cannot be flushed is pointed at ``/dev/null``, so the
    interpreter's own last flush says nothing either.
    """
    import os

    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            closed = True
        if closed:
            try:
                null = os.open(os.devnull, os.O_WRONLY)
                os.dup2(null, stream.fileno())
                os.close(null)
            except (OSError, ValueError):
                pass
    return closed


if __name__ == "__main__":
    main()
