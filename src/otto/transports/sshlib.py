"""asyncssh, imported once, quietly and without running a compiler.

asyncssh still names DSA keys, and the ``cryptography`` releases it runs on
warn about DSA at import time (``CryptographyDeprecationWarning``). That
warning is about asyncssh's code, not the user's: otto's users never see it.
Every module of otto that needs asyncssh imports it from here.

asyncssh also looks for optional C libraries (liboqs for post-quantum key
exchange, nettle for UMAC) with ``ctypes.util.find_library``, which on Linux
runs ``ldconfig -p``, then ``gcc`` and ``ld`` when the library is not in the
loader's cache: about 20 ms of every SSH command's start (more on a loaded
machine), spent to learn that liboqs is not installed. While asyncssh is
imported, that search first looks for any file named like the library where
the loader or the linker could find one (the loader's cache,
``LD_LIBRARY_PATH``, ``LIBRARY_PATH`` and the usual library folders); only if
there is one does the full search run, so asyncssh finds a library exactly as
before.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

# SSHLocalPortForwarder and SSHSOCKSForwarder: the protocols asyncssh's own local and SOCKS
# forwards use (otto.hosts.forward keeps its own listener, so it can close every
# forwarded channel itself).
__all__ = ["SSHLocalPortForwarder", "SSHSOCKSForwarder", "asyncssh", "library_may_exist"]

_LD_CACHE = "/etc/ld.so.cache"


def _library_dirs() -> list[str]:
    """Where the loader or the linker looks for a shared library on this machine."""
    arch = getattr(sys.implementation, "_multiarch", "") or ""
    dirs: list[str] = []
    for variable in ("LD_LIBRARY_PATH", "LIBRARY_PATH"):
        dirs += [d for d in os.environ.get(variable, "").split(os.pathsep) if d]
    for base in ("/lib", "/usr/lib", "/usr/local/lib"):
        dirs += [base, base + "64"]
        if arch:
            dirs.append(f"{base}/{arch}")
    dirs.append(os.path.join(sys.base_prefix, "lib"))
    return dirs


def library_may_exist(name: str) -> bool:
    """Whether a shared library ``lib<name>`` might be found by ``find_library(name)``.

    False only when no such file is in the loader's cache nor in any folder the
    loader or the linker searches; True when one is, or when that cannot be told.
    """
    stem = f"lib{name}."
    try:
        with open(_LD_CACHE, "rb") as cache:
            if stem.encode() in cache.read():
                return True
    except FileNotFoundError:
        pass  # no cache (a static or musl system): the folders tell
    except OSError:
        return True
    seen: set[str] = set()
    for folder in _library_dirs():
        real = os.path.realpath(folder)
        if real in seen:
            continue
        seen.add(real)
        try:
            with os.scandir(real) as entries:
                if any(entry.name.startswith(stem) for entry in entries):
                    return True
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError:
            return True
    return False


@contextmanager
def _quick_library_search() -> Iterator[None]:
    """While asyncssh is imported: ``find_library`` answers None at once when
    :func:`library_may_exist` says no such file exists (Linux; elsewhere nothing changes)."""
    if not sys.platform.startswith("linux"):
        yield
        return
    import ctypes.util

    real = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        if not library_may_exist(name):
            return None
        return real(name)

    ctypes.util.find_library = find_library
    try:
        yield
    finally:
        ctypes.util.find_library = real


with warnings.catch_warnings(), _quick_library_search():
    # By message and category name, so this works whether or not
    # cryptography still defines that class.
    warnings.filterwarnings("ignore", message=r".*\bDSA\b.*deprecated")
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"asyncssh(\.|$)")
    import asyncssh
    import asyncssh.config
    from asyncssh.forward import SSHLocalPortForwarder
    from asyncssh.socks import SSHSOCKSForwarder
