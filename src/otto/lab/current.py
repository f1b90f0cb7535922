"""The current lab: the last ``load_lab``, else the files in ``$OTTO_LAB``, else this machine."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from otto.lab.model import Lab, StrPath

if TYPE_CHECKING:
    from otto.hosts import Host

__all__ = [
    "ENV_VAR",
    "all_hosts",
    "current_lab",
    "get_host",
    "lab_paths_from_env",
    "load_lab",
    "use_lab",
]

#: The environment variable naming lab files when ``--lab`` is not given.
ENV_VAR = "OTTO_LAB"


class _State:
    lab: Lab | None = None


_state = _State()


def lab_paths_from_env() -> list[str]:
    """The lab files named by ``$OTTO_LAB`` (``os.pathsep``-separated), if any."""
    value = os.environ.get(ENV_VAR, "")
    return [p for p in value.split(os.pathsep) if p.strip()]


def load_lab(paths: StrPath | Sequence[StrPath]) -> Lab:
    """Load lab files (merged in order) and make them the current lab.

    An empty list gives the default lab (one host, ``local``). Hosts built from
    a previous lab are not closed; close them (``await lab.close()``) if they
    were used.

    Raises:
        LabError: a file is missing or invalid (naming the file, host and field).
    """
    _state.lab = Lab.load(paths)
    return _state.lab


def use_lab(lab: Lab) -> Lab:
    """Make an already built ``lab`` the current one (as ``load_lab`` does for files)."""
    _state.lab = lab
    return lab


def current_lab() -> Lab:
    """The current lab: the last ``load_lab``, else ``$OTTO_LAB``, else the default lab."""
    if _state.lab is None:
        _state.lab = Lab.load(lab_paths_from_env())
    return _state.lab


def all_hosts(pattern: str | re.Pattern[str] | None = None) -> list[Host]:
    """Every host of the current lab, or those whose name the regex ``pattern`` matches."""
    return current_lab().hosts(pattern)


def get_host(name: str) -> Host:
    """The host called ``name`` in the current lab.

    Raises:
        LabError: the lab has no host by that name.
    """
    return current_lab().host(name)
