"""Where otto's own log lines go when it runs as the ``otto`` command.

Off by default: a library's warnings are not a command's output. ``-v``
shows otto's ``info`` lines on stderr, ``-vv`` or ``--debug`` its ``debug``
lines; ``$OTTO_LOG`` (``debug``, ``info`` or ``warning``) does the same when
no flag is given. Every line goes through :func:`otto.redact.redact`.
"""

from __future__ import annotations

import logging
import sys

__all__ = ["LEVELS", "configure", "level_from"]

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
"""The values ``$OTTO_LOG`` takes."""

_FORMAT = "otto: %(levelname)s %(name)s: %(message)s"


class _Redacting(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from otto.redact import redact

        return redact(super().format(record))


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (tests swap it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def emit(self, record: logging.LogRecord) -> None:
        self.setStream(sys.stderr)
        super().emit(record)


def level_from(verbose: int, debug: bool, env: str | None) -> int | None:
    """The level ``-v`` (counted), ``--debug`` and ``$OTTO_LOG`` ask for; None: no logging.

    Raises:
        ValueError: ``$OTTO_LOG`` holds something else than a level name.
    """
    if debug or verbose >= 2:
        return logging.DEBUG
    if verbose == 1:
        return logging.INFO
    if env is None or not env.strip():
        return None
    level = LEVELS.get(env.strip().lower())
    if level is None:
        raise ValueError(f"$OTTO_LOG: must be one of {', '.join(LEVELS)} (got {env!r})")
    return level


def configure(level: int | None) -> None:
    """Send otto's log records of ``level`` and above to stderr; None: show none of them.

    Records still propagate (a pytest run's log capture sees them); only
    Python's last-resort printing of warnings is kept off.
    """
    logger = logging.getLogger("otto")
    for handler in list(logger.handlers):
        if isinstance(handler, _Handler | logging.NullHandler):
            logger.removeHandler(handler)
    if level is None:
        logger.addHandler(logging.NullHandler())
        return
    handler = _Handler()
    handler.setFormatter(_Redacting(_FORMAT))
    handler.setLevel(level)
    logger.addHandler(handler)
    logger.setLevel(level)
