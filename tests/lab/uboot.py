"""A real U-Boot (Debian's qemu_arm build) booted in QEMU, its serial console on a TCP port.

``async with UBoot() as board:`` starts QEMU on a free loopback port, returns
once U-Boot answers at its ``=> `` prompt, and stops QEMU on leaving (no qemu
is left behind, whatever happened).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
from pathlib import Path

from tests.lab import procs

__all__ = ["UBOOT_BIN", "UBoot", "uboot_missing"]

UBOOT_BIN = Path("/usr/lib/u-boot/qemu_arm/u-boot.bin")
PROMPT = b"=> "


def uboot_missing() -> str | None:
    """Why U-Boot cannot run here (for a skip), or None."""
    if shutil.which("qemu-system-arm") is None:
        return "qemu-system-arm is not installed (scripts/install-system-deps)"
    if not UBOOT_BIN.exists():
        return f"{UBOOT_BIN} is missing (Debian package u-boot-qemu)"
    return None


class UBoot:
    """QEMU running U-Boot; ``port`` is its serial console (one client at a time)."""

    def __init__(self, *, boot_timeout: float = 30.0) -> None:
        self.port = 0
        self.boot_timeout = boot_timeout
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> UBoot:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Boot QEMU and wait until U-Boot shows its prompt.

        The listening socket is made here and handed to QEMU, so the port is
        known and accepting before QEMU runs (no race for it, no polling).
        """
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            self.port = listener.getsockname()[1]
            fd = listener.fileno()
            self._proc = await asyncio.create_subprocess_exec(
                "qemu-system-arm",
                "-M",
                "virt",
                "-m",
                "64",
                "-nographic",
                "-bios",
                str(UBOOT_BIN),
                "-nic",
                "none",
                "-monitor",
                "none",
                "-chardev",
                f"socket,id=console,fd={fd},server=on,wait=off",
                "-serial",
                "chardev:console",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(fd,),
                start_new_session=True,
            )
        async with asyncio.timeout(self.boot_timeout):
            await self._wait_for_prompt()

    async def _wait_for_prompt(self) -> None:
        """Press Enter until the prompt answers (the console drops output while unwatched)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            seen = b""
            while not seen.endswith(PROMPT):
                writer.write(b"\n")
                await writer.drain()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.5):
                        while not seen.endswith(PROMPT):
                            chunk = await reader.read(4096)
                            if not chunk:
                                raise OSError("U-Boot's console closed")
                            seen = (seen + chunk)[-4096:]
            # One more Enter, read through its prompt: nothing is left pending.
            writer.write(b"\n")
            await writer.drain()
            seen = b""
            while not seen.endswith(b"\n" + PROMPT):
                chunk = await reader.read(4096)
                if not chunk:
                    raise OSError("U-Boot's console closed")
                seen += chunk
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def stop(self) -> None:
        """Stop QEMU (terminate, then kill) and reap it."""
        proc, self._proc = self._proc, None
        await procs.end_process(proc)
