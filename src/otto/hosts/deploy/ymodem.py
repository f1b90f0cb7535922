"""YMODEM and XMODEM over the console: U-Boot's ``loady`` / ``loadx`` receive the image.

The console is handed over to the protocol cleanly and back: otto waits for
U-Boot's ``Ready for binary`` line, then every byte the console prints goes to
the sender (the ``xmodem`` library, in a worker thread) and nothing else is
read until the transfer ended; then U-Boot's prompt is awaited as after any
command. A transfer that fails is cancelled (CAN, then Ctrl-C) so that the
console is at the prompt again.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Literal

from xmodem import XMODEM1k  # type: ignore[import-untyped]

from otto.errors import ExpectTimeout
from otto.hosts.apps import anchored_prompt
from otto.hosts.deploy.bootloader import DeployError
from otto.hosts.deploy.image import Image

if TYPE_CHECKING:
    from otto.hosts.apps import App
    from otto.session import Session

__all__ = ["Protocol", "load", "ymodem_header"]

log = logging.getLogger("otto.deploy")

# The library logs each retry as an error: otto says what failed itself.
logging.getLogger("xmodem").setLevel(logging.CRITICAL)

Protocol = Literal["ymodem", "xmodem"]

SOH, EOT, ACK, NAK, CAN, CRC = b"\x01", b"\x04", b"\x06", b"\x15", b"\x18", b"C"
BYTE_WAIT = 3.0
"""Seconds the sender waits for the receiver's next byte before a retry."""
READY_WAIT = 10.0
"""Seconds U-Boot may take to say it is ready for the binary."""

_READY = re.compile(r"Ready for binary \((?:x|y)modem\) download[^\n]*\n")
_TOTAL = re.compile(r"Total Size\s*=\s*0x([0-9a-fA-F]+)")


def ymodem_header(name: str, size: int) -> bytes:
    """YMODEM block 0: the file's name and size (an empty name ends the batch)."""
    body = (name.encode() + b"\0" + str(size).encode() + b"\0") if name else b""
    body = body[:128].ljust(128, b"\0")
    return SOH + b"\x00\xff" + body + binascii.crc_hqx(body, 0).to_bytes(2, "big")


class _Line:
    """The console's bytes for the sender thread, and its writes back to the console."""

    def __init__(self, session: Session, loop: asyncio.AbstractEventLoop) -> None:
        self._session = session
        self._loop = loop
        self._buffer = bytearray()
        self._ready = threading.Condition()

    def feed(self, data: bytes) -> None:
        with self._ready:
            self._buffer.extend(data)
            self._ready.notify_all()

    def getc(self, size: int, timeout: float = 1) -> bytes | None:
        deadline = time.monotonic() + timeout
        with self._ready:
            while len(self._buffer) < size:
                left = deadline - time.monotonic()
                if left <= 0 or not self._ready.wait(left):
                    return None
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
            return data

    def putc(self, data: bytes, timeout: float = 1) -> int:
        # surrogateescape carries every byte through the session's text interface unchanged.
        text = data.decode("utf-8", "surrogateescape")
        future = asyncio.run_coroutine_threadsafe(self._session.send(text), self._loop)
        future.result(max(timeout, BYTE_WAIT))
        return len(data)

    def wait_for(self, wanted: bytes, timeout: float) -> bool:
        """Read until one of the bytes in ``wanted`` comes (others are dropped)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            byte = self.getc(1, left)
            if byte is not None and byte in wanted:
                return True
        return False


def _send(line: _Line, image: Image, protocol: Protocol) -> str | None:
    """Run the protocol (in a worker thread); None on success, else why it failed."""
    if protocol == "ymodem":
        if not line.wait_for(CRC, BYTE_WAIT * 3):
            return "the receiver never asked for the file (no 'C')"
        line.putc(ymodem_header(image.name, image.size))
        if not line.wait_for(ACK, BYTE_WAIT):
            return "the receiver did not acknowledge the file's name and size"
    modem = XMODEM1k(line.getc, line.putc)
    with open(image.path, "rb") as stream:
        sent = modem.send(stream, retry=10, timeout=BYTE_WAIT)
    if not sent:
        return "the receiver stopped acknowledging blocks"
    # The receiver asks for the next file: an empty header ends the batch.
    if protocol == "ymodem" and line.wait_for(CRC, BYTE_WAIT):
        line.putc(ymodem_header("", 0))
        line.wait_for(ACK, BYTE_WAIT)
    return None


def _cancel(line: _Line) -> None:
    line.putc(CAN * 5)


async def load(
    app: App,
    host: str,
    image: Image,
    address: int,
    *,
    protocol: Protocol = "ymodem",
    timeout: float = 300.0,
) -> int:
    """Send ``image`` to ``address`` with ``loady`` (YMODEM) or ``loadx`` (XMODEM).

    Returns the size U-Boot reports (XMODEM pads the last block, so it may be
    larger than the file).

    Raises:
        DeployError: U-Boot did not start receiving, or the transfer failed.
    """
    session = app.session
    command = f"{'loady' if protocol == 'ymodem' else 'loadx'} {address:#x}"
    # The protocol runs before the next prompt: the command is typed, not run with cmd().
    await app.send(command + "\n")
    try:
        await session.expect(_READY, READY_WAIT)
    except ExpectTimeout as exc:
        raise DeployError(
            f"{host}: `{command}` did not get ready to receive: {exc.received[-300:]!r}"
        ) from None
    line = _Line(session, asyncio.get_running_loop())
    remove = session.add_listener(line.feed)
    try:
        async with asyncio.timeout(timeout):
            failure = await asyncio.to_thread(_send, line, image, protocol)
            if failure is not None:
                await asyncio.to_thread(_cancel, line)
    except TimeoutError:
        await asyncio.to_thread(_cancel, line)
        failure = f"not done within {timeout:g}s"
    finally:
        remove()
    prompt = anchored_prompt(app.prompt)
    try:
        printed = await session.expect(prompt, BYTE_WAIT * 3)
    except ExpectTimeout as exc:
        await app.send("\x03")
        printed = exc.received
        failure = failure or "U-Boot's prompt did not come back"
    if failure is not None:
        raise DeployError(f"{host}: {protocol} transfer of {image.name}: {failure}")
    found = _TOTAL.search(printed)
    if found is None:
        raise DeployError(f"{host}: `{command}` reported no size: {printed[-300:]!r}")
    return int(found.group(1), 16)
