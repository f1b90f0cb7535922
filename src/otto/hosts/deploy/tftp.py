"""TFTP: otto serves the one image from the controller while U-Boot's ``tftpboot`` fetches it.

The server (tftpy) runs in a thread of its own for the duration of the load
only: it serves that one file under a generated name (nothing else, and no
uploads), and is stopped once U-Boot's prompt is back, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import tempfile
import threading
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import tftpy  # type: ignore[import-untyped]

from otto.errors import ExpectTimeout
from otto.hosts.deploy.bootloader import DeployError, env_value
from otto.hosts.deploy.image import Image

if TYPE_CHECKING:
    from otto.hosts.apps import App

__all__ = ["TFTP_PORT", "TftpServer", "load", "served_name"]

log = logging.getLogger("otto.deploy")

TFTP_PORT = 69
RETRANSMIT = 1.0
"""Seconds without an acknowledgement before a block is sent again."""
START_WAIT = 5.0
"""Seconds the server thread may take to start listening."""

# tftpy logs every packet and every session it ends (our wake-up packet too):
# those are no lines for the user's terminal.
logging.getLogger("tftpy").setLevel(logging.CRITICAL)

_BYTES = re.compile(r"Bytes transferred = (\d+)")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def served_name(image: Image) -> str:
    """The name the image is served under: no character U-Boot's command line would split on."""
    return f"otto-{image.sha256[:12]}-{_UNSAFE.sub('_', image.name)[:64]}"


def split_server(server: str) -> tuple[str, int]:
    """``ADDR`` or ``ADDR:PORT`` -> (address, port)."""
    address, sep, port = server.rpartition(":")
    if sep and port.isdigit() and ":" not in address:
        return address, int(port)
    return server, TFTP_PORT


class TftpServer:
    """A TFTP server for one file, in a thread, for the length of an ``async with`` block."""

    def __init__(self, image: Image, name: str, address: str, port: int = TFTP_PORT) -> None:
        self.image = image
        self.name = name
        self.address = address
        self.port = port
        self._root = tempfile.TemporaryDirectory(prefix="otto-tftp-")
        self._server = tftpy.TftpServer(
            self._root.name, dyn_file_func=self._open, upload_open=self._refuse
        )
        self._thread: threading.Thread | None = None
        self._failed: list[BaseException] = []

    def _open(self, path: str, **_peer: Any) -> IO[bytes] | None:
        if path.lstrip("/") != self.name:
            log.debug("tftp: %r asked for; only %r is served", path, self.name)
            return None
        return open(self.image.path, "rb")

    @staticmethod
    def _refuse(path: str, context: object) -> None:
        return None

    async def __aenter__(self) -> TftpServer:
        # Bind here first: a port in use or an address not ours is said at once.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((self.address, self.port))
            except OSError as exc:
                self._root.cleanup()
                raise DeployError(
                    f"cannot serve TFTP on {self.address}:{self.port}: {exc.strerror or exc}"
                ) from None

        def serve() -> None:
            try:
                self._server.listen(self.address, self.port, timeout=RETRANSMIT)
            except BaseException as exc:  # reported by __aenter__ or __aexit__
                self._failed.append(exc)
                self._server.is_running.set()

        self._thread = threading.Thread(target=serve, name="otto-tftp", daemon=True)
        self._thread.start()
        started = await asyncio.to_thread(self._server.is_running.wait, START_WAIT)
        if self._failed or not started:
            await self._stop()
            why = self._failed[0] if self._failed else f"not listening after {START_WAIT:g}s"
            raise DeployError(f"cannot serve TFTP on {self.address}:{self.port}: {why}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stop()

    async def _stop(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._server.stop(now=True)
            # The server notices the stop when its select() wakes: wake it now.
            with (
                contextlib.suppress(OSError),
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as wake,
            ):
                wake.sendto(b"\0\0", (self.address, self.port))
            await asyncio.to_thread(thread.join, RETRANSMIT * 3)
        if self._failed:
            log.debug("tftp: the server ended with %r", self._failed[0])
        # tftpy leaves its socket open when it ends on an error: the port must be free after.
        sock = self._server.sock
        if sock is not None:
            sock.close()
        self._root.cleanup()


def _route_address(board: str) -> str | None:
    """This machine's address on the way to ``board`` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((board, TFTP_PORT))
        except OSError:
            return None
        address: str = probe.getsockname()[0]
        return address


async def _server_address(app: App, host: str, server: str | None) -> tuple[str, int]:
    if server is not None:
        return split_server(server)
    current = await env_value(app, "serverip")
    if current:
        return current, TFTP_PORT
    board = await env_value(app, "ipaddr")
    found = _route_address(board) if board else None
    if found is None:
        raise DeployError(
            f"{host}: no TFTP server address: give server= (this machine's address as the "
            "board reaches it), or set the bootloader's serverip or ipaddr"
        )
    return found, TFTP_PORT


async def load(
    app: App,
    host: str,
    image: Image,
    address: int,
    *,
    server: str | None = None,
    board_ip: str | None = None,
    timeout: float = 300.0,
) -> int:
    """Load ``image`` at ``address`` with U-Boot's ``tftpboot``; the byte count it reports.

    Args:
        server: ``ADDR[:PORT]`` otto serves on, ADDR also being what the board
            sends to (its ``serverip``). Default: the bootloader's ``serverip``,
            else this machine's address on the route to its ``ipaddr``. A port
            other than 69 is given to U-Boot as ``tftpdstp`` (where built in).
        board_ip: set the bootloader's ``ipaddr`` first.

    Raises:
        DeployError: the server could not start, or U-Boot reported no transfer.
    """
    if board_ip is not None:
        await app.cmd(f"setenv ipaddr {board_ip}")
    bind, port = await _server_address(app, host, server)
    name = served_name(image)
    async with TftpServer(image, name, bind, port):
        await app.cmd(f"setenv serverip {bind}")
        if port != TFTP_PORT:
            await app.cmd(f"setenv tftpdstp {port}")
        command = f"tftpboot {address:#x} {name}"
        try:
            answer = await app.cmd(command, timeout=timeout)
        except ExpectTimeout as exc:
            await app.send("\x03")  # U-Boot stops a transfer on Ctrl-C
            raise DeployError(
                f"{host}: `{command}` did not finish within {timeout:g}s; "
                f"received: {exc.received[-300:]!r}"
            ) from None
    found = _BYTES.search(answer)
    if found is None:
        raise DeployError(f"{host}: `{command}` loaded nothing: {answer[-400:]!r}")
    return int(found.group(1))
