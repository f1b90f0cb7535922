"""The record store ``deploy`` uses when given none: the reservation store of this machine's lab.

That is the store ``$OTTO_RESERVATIONS`` names, else the default SQLite file
(the CLI passes the lab's own, its ``settings.reservations``). Only the two
backends are imported here, never ``otto.reservations`` itself, which reaches
back up to the lab and its hosts.
"""

from __future__ import annotations

import os

from otto.reservations.base import holder_identity
from otto.reservations.postgres import PostgresStore
from otto.reservations.sqlite import SQLiteStore, default_path, path_of_url

__all__ = ["default_records", "who"]

_ENV_VAR = "OTTO_RESERVATIONS"


def default_records() -> SQLiteStore | PostgresStore:
    """The store at ``$OTTO_RESERVATIONS``, else the default SQLite file; opened on first use.

    Raises:
        ValueError: ``$OTTO_RESERVATIONS`` names no backend otto has.
    """
    url = os.environ.get(_ENV_VAR, "").strip() or f"sqlite:///{default_path()}"
    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        return SQLiteStore(path_of_url(url), url=url)
    if scheme in ("postgresql", "postgres"):
        return PostgresStore(url)
    raise ValueError(f"${_ENV_VAR}: {url!r} is no sqlite:/// or postgresql:// URL")


def who() -> str:
    """Who deploys: ``$OTTO_USER``, else ``login@machine`` (as for reservations)."""
    return holder_identity()
