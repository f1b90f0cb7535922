"""Running a command's coroutine so that Ctrl-C ends it promptly and cleanly.

On SIGINT (or SIGTERM) the work is cancelled (a running command is interrupted
by its session), then every host the lab built is closed, all at once, within
``CLOSE_BOUND`` seconds; a host that takes longer is abandoned (its local
processes killed). The command then exits with status 130 (143 for SIGTERM).

Its stdout or stderr found closed (``otto ... | head -1``) stops the work the
same way, quietly: exit status 141 (128 + SIGPIPE), nothing more printed.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from otto.cli.exits import EXIT_INTERRUPTED
from otto.cli.output import EXIT_PIPE, on_pipe_closed, watch_readers

if TYPE_CHECKING:
    from otto.lab import Lab

__all__ = ["CLOSE_BOUND", "run_interruptible"]

T = TypeVar("T")

CLOSE_BOUND = 0.8
"""Seconds closing the hosts may take after Ctrl-C (the command exits within ~1 s)."""

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


async def _guarded(work: Coroutine[Any, Any, T], lab: Lab) -> T:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(work)
    received: list[int] = []

    def on_signal(signum: int) -> None:
        if not received:
            task.cancel()
        received.append(signum)

    for sig in _SIGNALS:
        loop.add_signal_handler(sig, on_signal, sig)
    # Called from within a write (a tap's, a callback's): the task is cancelled, not run.
    forget = on_pipe_closed(lambda: on_signal(signal.SIGPIPE))
    unwatch = watch_readers(loop)
    try:
        try:
            return await task
        except asyncio.CancelledError:
            if not received:
                raise
            raise _Interrupted(received[0]) from None
        finally:
            # After Ctrl-C, closing is bounded; otherwise hosts get their usual time.
            await lab.close(timeout=CLOSE_BOUND if received else None)
    finally:
        unwatch()
        forget()
        for sig in _SIGNALS:
            loop.remove_signal_handler(sig)


def run_interruptible(work: Coroutine[Any, Any, T], lab: Lab) -> T:
    """Run ``work``, then close ``lab``'s hosts; on Ctrl-C exit with status 130.

    Raises:
        typer.Exit: interrupted by SIGINT (status 130) or SIGTERM (143).
    """
    try:
        return asyncio.run(_guarded(work, lab))
    except _Interrupted as interrupted:
        import typer  # here: a command that is not interrupted does not import it

        if interrupted.signum == signal.SIGPIPE:
            raise typer.Exit(EXIT_PIPE) from None  # who reads is gone: nothing to say
        sys.stderr.write(f"\notto: interrupted ({interrupted})\n")
        code = EXIT_INTERRUPTED if interrupted.signum == signal.SIGINT else 128 + interrupted.signum
        raise typer.Exit(code) from None
