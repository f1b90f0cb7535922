"""File transfer through a shell session: for hosts with no SFTP (Telnet).

Files move in base64 chunks, one command per chunk, so no file is ever held
in memory whole; each file is written beside its target and renamed into
place only after its SHA-256 (or MD5 where sha256sum is missing) matches.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath

from otto.errors import TransferError
from otto.session import Session
from otto.transfer import Progress

__all__ = ["ShellTransferError", "Transfer", "get", "put"]

CHUNK = 48 * 1024
"""Raw bytes per command (64 KiB of base64)."""


class ShellTransferError(TransferError):
    """A shell command of a transfer failed."""


Transfer = Callable[[Session, list[str], str, "Progress | None"], Awaitable[tuple[list[str], int]]]
"""``put`` or ``get``: (session, sources, destination folder, progress) -> (files, bytes)."""


async def _sh(session: Session, command: str) -> str:
    result = (await session.run(command)).only
    if not result.is_ok:
        raise ShellTransferError(
            f"`{command[:80]}` failed ({result.retcode}): {result.output[-300:]}"
        )
    return result.output


async def _remote_digest(session: Session, path: str) -> tuple[str, str]:
    q = shlex.quote(path)
    out = await _sh(
        session,
        f"if command -v sha256sum >/dev/null 2>&1; then echo sha256 $(sha256sum < {q}); "
        f"else echo md5 $(md5sum < {q}); fi",
    )
    algo, digest = out.split()[:2]
    return algo, digest


async def _put_file(session: Session, local: Path, remote: str, progress: Progress | None) -> int:
    part = remote + ".otto-part"
    qpart = shlex.quote(part)
    await _sh(session, f": > {qpart}")
    total = local.stat().st_size
    sha, md5 = hashlib.sha256(), hashlib.md5()
    done = 0
    with open(local, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            encoded = base64.b64encode(chunk).decode()
            await _sh(session, f"printf %s {encoded} | base64 -d >> {qpart}")
            done += len(chunk)
            if progress is not None:
                progress(remote, done, total)
    if progress is not None and total == 0:
        progress(remote, 0, 0)
    algo, digest = await _remote_digest(session, part)
    expected = sha.hexdigest() if algo == "sha256" else md5.hexdigest()
    if digest != expected:
        await _sh(session, f"rm -f -- {qpart}")
        raise ShellTransferError(f"{remote}: checksum mismatch after upload")
    await _sh(session, f"mv -f -- {qpart} {shlex.quote(remote)}")
    return done


async def put(
    session: Session, sources: list[str], dest_dir: str, progress: Progress | None
) -> tuple[list[str], int]:
    """Copy local files and folders into ``dest_dir`` on the session's host."""
    found = await _sh(session, f"[ -d {shlex.quote(dest_dir)} ] && echo yes; true")
    if found != "yes":
        raise ShellTransferError(f"destination folder {dest_dir} does not exist")
    files: list[str] = []
    moved = 0
    for name in sources:
        src = Path(name)
        if not src.exists():
            raise ShellTransferError(f"{src} does not exist")
        target = PurePosixPath(dest_dir) / src.name
        if src.is_dir():
            for root, _dirs, names in os.walk(src):
                out = target / Path(root).relative_to(src).as_posix()
                await _sh(session, f"mkdir -p -- {shlex.quote(str(out))}")
                for file in names:
                    moved += await _put_file(session, Path(root) / file, str(out / file), progress)
                    files.append(str(out / file))
        else:
            moved += await _put_file(session, src, str(target), progress)
            files.append(str(target))
    return files, moved


async def _get_file(session: Session, remote: str, local: Path, progress: Progress | None) -> int:
    q = shlex.quote(remote)
    total = int(await _sh(session, f"wc -c < {q}"))
    sha, md5 = hashlib.sha256(), hashlib.md5()
    part = local.with_name(local.name + ".otto-part")
    done = 0
    with open(part, "wb") as f:
        for index in range((total + CHUNK - 1) // CHUNK):
            encoded = await _sh(
                session, f"dd if={q} bs={CHUNK} skip={index} count=1 2>/dev/null | base64"
            )
            chunk = base64.b64decode(encoded)
            f.write(chunk)
            sha.update(chunk)
            md5.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(str(local), done, total)
    algo, digest = await _remote_digest(session, remote)
    if digest != (sha.hexdigest() if algo == "sha256" else md5.hexdigest()):
        part.unlink()
        raise ShellTransferError(f"{remote}: checksum mismatch after download")
    part.replace(local)
    if progress is not None and total == 0:
        progress(str(local), 0, 0)
    return done


async def get(
    session: Session, sources: list[str], dest_dir: str, progress: Progress | None
) -> tuple[list[str], int]:
    """Copy files and folders from the session's host into local ``dest_dir``."""
    dest = Path(dest_dir)
    if not dest.is_dir():
        raise ShellTransferError(f"local destination folder {dest} does not exist")
    files: list[str] = []
    moved = 0
    for name in sources:
        q = shlex.quote(name)
        kind = await _sh(session, f"if [ -d {q} ]; then echo d; elif [ -f {q} ]; then echo f; fi")
        base = dest / PurePosixPath(name).name
        if kind == "f":
            moved += await _get_file(session, name, base, progress)
            files.append(str(base))
        elif kind == "d":
            base.mkdir(exist_ok=True)
            for sub in (await _sh(session, f"cd -- {q} && find . -type d")).splitlines():
                (base / sub).mkdir(parents=True, exist_ok=True)
            for sub in (await _sh(session, f"cd -- {q} && find . -type f")).splitlines():
                local = base / sub
                moved += await _get_file(session, f"{name}/{sub[2:]}", local, progress)
                files.append(str(local))
        else:
            raise ShellTransferError(f"{name} does not exist")
    return files, moved
