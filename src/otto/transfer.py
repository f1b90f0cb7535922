"""File transfer helpers shared by every host: sources, progress, local copies."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeAlias

from otto.result import Status, TransferResult

__all__ = ["PathArg", "Progress", "copy_local", "source_list"]

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
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(_CHUNK):
            fout.write(chunk)
            done += len(chunk)
            if progress is not None:
                progress(str(dest), done, total)
    if progress is not None and total == 0:
        progress(str(dest), 0, 0)
    shutil.copystat(src, dest)
    return done


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
    src: PathArg | Sequence[PathArg], dest_dir: PathArg, progress: Progress | None = None
) -> TransferResult:
    """Copy files and folders (recursively) into ``dest_dir`` on this machine."""
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
            Status.Error, duration=time.monotonic() - started, error=f"local: {exc}"
        )
    return TransferResult(Status.Success, files, moved, time.monotonic() - started)
