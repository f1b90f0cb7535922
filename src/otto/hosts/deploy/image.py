"""An image file to deploy: its name, size and digests, read in one pass."""

from __future__ import annotations

import asyncio
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Image", "read_image"]

_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class Image:
    """A local file and what identifies its bytes."""

    path: Path
    size: int
    sha256: str
    crc32: int
    """``zlib.crc32`` of the whole file: what U-Boot's ``crc32`` prints for it."""

    @property
    def name(self) -> str:
        return self.path.name


def _digest(path: Path) -> Image:
    sha = hashlib.sha256()
    crc = 0
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return Image(path, size, sha.hexdigest(), crc)


async def read_image(path: str | os.PathLike[str]) -> Image:
    """Size, SHA-256 and CRC-32 of ``path`` (read in a worker thread).

    Raises:
        OSError: the file cannot be read (missing, a folder, no permission).
    """
    file = Path(path)
    if file.is_dir():
        raise IsADirectoryError(f"{file} is a folder, not an image file")
    return await asyncio.to_thread(_digest, file)
