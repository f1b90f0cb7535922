"""File transfer helpers shared by every host: sources, progress, local copies.

Every host kind gives ``put`` and ``get`` the same semantics: the destination
folder must exist (else ``Status.Error`` naming the host and the folder), and
each file is written under a temporary name beside its target and renamed into
place only once complete, so an interrupted transfer never leaves a truncated
file where a good one was.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias

from otto.result import Status, TransferResult

__all__ = [
    "PART",
    "PathArg",
    "Progress",
    "copy_local",
    "place_staged",
    "remove_staged",
    "source_list",
    "staging_dir",
    "write_whole",
]

log = logging.getLogger("otto.transfer")

PART = ".otto-part"
"""Marks the temporary names files and staging folders have until they are complete."""

PathArg: TypeAlias = "str | os.PathLike[str]"
Progress: TypeAlias = Callable[[str, int, int], None]
"""``progress(path, bytes_done, bytes_total)``, called as a file's bytes move."""

_CHUNK = 1 << 20


def source_list(src: PathArg | Sequence[PathArg]) -> list[str]:
    """One path or several -> a list of path strings."""
    if isinstance(src, (str, os.PathLike)):
        return [os.fspath(src)]
    return [os.fspath(s) for s in src]


def _copy_file(src: Path, dest: Path, progress: Callable[[str, int, int], None] | None) -> int:
    total = src.stat().st_size
    done = 0
    part = dest.with_name(f".{dest.name}{PART}-{secrets.token_hex(4)}")
    try:
        with open(src, "rb") as fin, open(part, "wb") as fout:
            while chunk := fin.read(_CHUNK):
                fout.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(str(dest), done, total)
        shutil.copystat(src, part)
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if progress is not None and total == 0:
        progress(str(dest), 0, 0)
    return done


def write_whole(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all: a failed write (a full disk,
    an error while writing) leaves the file that was there as it was."""
    dest = Path(path)
    part = dest.with_name(f".{dest.name}{PART}-{secrets.token_hex(4)}")
    try:
        with open(part, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def staging_dir(dest_dir: Path) -> Path:
    """A new, empty folder inside ``dest_dir`` to receive files before they are placed."""
    return Path(tempfile.mkdtemp(prefix=f"{PART}-", dir=dest_dir))


def place_staged(stage: Path, dest_dir: Path) -> list[str]:
    """Move everything in ``stage`` into ``dest_dir`` (each file renamed over its
    target, folders merged); return the destination paths of the files."""
    files: list[str] = []
    for entry in sorted(os.listdir(stage)):
        _place(stage / entry, dest_dir / entry, files)
    return files


def _place(src: Path, target: Path, files: list[str]) -> None:
    if src.is_dir() and not src.is_symlink():
        if target.is_dir():
            for entry in sorted(os.listdir(src)):
                _place(src / entry, target / entry, files)
            return
        os.replace(src, target)
        for root, _dirs, names in os.walk(target):
            files.extend(str(Path(root) / name) for name in sorted(names))
        return
    os.replace(src, target)
    files.append(str(target))


def remove_staged(stage: Path) -> None:
    """Delete a staging folder and whatever is left in it; log (never raise) failures."""
    if stage.exists():
        shutil.rmtree(stage, onerror=_log_removal_error)


def _log_removal_error(_func: object, path: str, info: object) -> None:
    log.info("could not remove the staging leftover %s: %s", path, info)


def _copy_tree(
    sources: list[str], dest_dir: Path, progress: Progress | None
) -> tuple[list[str], int]:
    files: list[str] = []
    moved = 0
    if not dest_dir.is_dir():
        raise FileNotFoundError(f"destination folder {dest_dir} does not exist")
    for name in sources:
        src = Path(name)
        if not src.exists():
            raise FileNotFoundError(f"{src} does not exist")
        target = dest_dir / src.name
        if src.is_dir():
            for root, _dirs, names in os.walk(src):
                out = target / Path(root).relative_to(src)
                out.mkdir(parents=True, exist_ok=True)
                for file in names:
                    moved += _copy_file(Path(root) / file, out / file, progress)
                    files.append(str(out / file))
        else:
            moved += _copy_file(src, target, progress)
            files.append(str(target))
    return files, moved


async def copy_local(
    src: PathArg | Sequence[PathArg],
    dest_dir: PathArg,
    progress: Progress | None = None,
    *,
    host: str = "local",
) -> TransferResult:
    """Copy files and folders (recursively) into ``dest_dir`` on this machine.

    ``host`` names the host in error messages.
    """
    loop = asyncio.get_running_loop()
    started = time.monotonic()

    def report(path: str, done: int, total: int) -> None:
        if progress is not None:
            loop.call_soon_threadsafe(progress, path, done, total)

    try:
        files, moved = await asyncio.to_thread(
            _copy_tree, source_list(src), Path(os.fspath(dest_dir)), report if progress else None
        )
    except OSError as exc:
        return TransferResult(
            Status.Error, duration=time.monotonic() - started, error=f"{host}: {exc}"
        )
    return TransferResult(Status.Success, files, moved, time.monotonic() - started)
