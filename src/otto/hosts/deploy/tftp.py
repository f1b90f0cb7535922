"""TFTP: otto serves the one image from the controller while U-Boot's ``tftpboot`` fetches it.

The server runs on the event loop for the duration of the load only: it
serves that one file under a generated name (nothing else, and no uploads),
sends it in windows of blocks (RFC 7440, which U-Boot speaks since 2020.10;
a lock-step server waits one round trip through the board's network stack
per block, and that is most of what a load costs), and is stopped once
U-Boot's prompt is back, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import socket
import struct
from typing import TYPE_CHECKING, cast

from otto.errors import ExpectTimeout
from otto.hosts.deploy.bootloader import DeployError, env_value
from otto.hosts.deploy.image import Image

if TYPE_CHECKING:
    from otto.hosts.apps import App

__all__ = ["TFTP_PORT", "WINDOW", "TftpServer", "load", "served_name", "split_server"]

log = logging.getLogger("otto.deploy")

TFTP_PORT = 69
WINDOW = 16
"""Blocks sent before each acknowledgement (RFC 7440), set as U-Boot's ``tftpwindowsize``.
Lock-step TFTP waits one round trip per block; a window of 16 loads a board
over QEMU's network about twice as fast, and U-Boot without window support
ignores the setting."""
RETRANSMIT = 1.0
"""Seconds without an acknowledgement before the unacknowledged blocks are sent again."""
RETRIES = 8
"""Times a block is sent again before the transfer is given up."""

_RRQ, _WRQ, _DATA, _ACK, _ERROR, _OACK = 1, 2, 3, 4, 5, 6
_MAX_BLKSIZE = 65464
_MAX_WINDOW = 64
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


def _error(code: int, message: str) -> bytes:
    return struct.pack("!HH", _ERROR, code) + message.encode() + b"\0"


def _option(value: bytes, low: int, high: int) -> int | None:
    try:
        number = int(value)
    except ValueError:
        return None
    return min(number, high) if number >= low else None


class _Transfer(asyncio.DatagramProtocol):
    """One read request: the file sent in windows of blocks from a port of its own."""

    def __init__(
        self, server: TftpServer, peer: tuple[str, int], options: dict[bytes, bytes]
    ) -> None:
        self.server = server
        self.peer = peer
        self.blksize = 512
        self.window = 1
        self.timeout = server.timeout
        self.reply: dict[bytes, bytes] = {}
        for key, value in options.items():
            if key == b"blksize" and (n := _option(value, 8, _MAX_BLKSIZE)) is not None:
                self.blksize = n
                self.reply[key] = str(n).encode()
            elif key == b"windowsize" and (n := _option(value, 1, _MAX_WINDOW)) is not None:
                self.window = n
                self.reply[key] = str(n).encode()
            elif key == b"tsize":
                self.reply[key] = str(server.image.size).encode()
            elif key == b"timeout" and (n := _option(value, 1, 255)) is not None:
                self.timeout = float(n)
                self.reply[key] = str(n).encode()
        self.last = server.image.size // self.blksize + 1
        """The final block (shorter than blksize; empty when the size is a multiple)."""
        self.started = not self.reply
        """Whether the data is being sent (the options, if any, were acknowledged)."""
        self.acked = 0
        self.sent_to = 0
        self.tries = 0
        self.done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        """Done once its socket is closed."""
        self._fd = os.open(server.image.path, os.O_RDONLY)
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._due = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._send()

    def _send(self) -> None:
        """(Re)send what is unacknowledged: the option acknowledgement, or a window of blocks.

        Windows end at multiples of the window size, where U-Boot acknowledges.
        """
        assert self._transport is not None
        if not self.started:
            parts = [struct.pack("!H", _OACK)]
            for key, value in self.reply.items():
                parts += [key, b"\0", value, b"\0"]
            self._transport.sendto(b"".join(parts), self.peer)
        else:
            end = min((self.acked // self.window + 1) * self.window, self.last)
            for block in range(self.acked + 1, end + 1):
                data = os.pread(self._fd, self.blksize, (block - 1) * self.blksize)
                header = struct.pack("!HH", _DATA, block & 0xFFFF)
                self._transport.sendto(header + data, self.peer)
            self.sent_to = end
        self._arm()

    def _arm(self) -> None:
        """Give what was just sent ``timeout`` seconds to be acknowledged.

        One timer follows the transfer (it moves its own deadline when it
        fires early): a timer made and cancelled per block would cost more
        than the block.
        """
        loop = asyncio.get_running_loop()
        self._due = loop.time() + self.timeout
        if self._timer is None:
            self._timer = loop.call_at(self._due, self._watch)

    def _watch(self) -> None:
        self._timer = None
        if self.done.done():
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._due:
            self._timer = loop.call_at(self._due, self._watch)
            return
        self.tries += 1
        if self.tries > RETRIES:
            self._end(f"{self.peer[0]} stopped acknowledging (block {self.acked + 1})")
            return
        self._send()  # from the last block acknowledged

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if addr != self.peer or len(data) < 4 or self.done.done():
            return  # RFC 1350: another port's packet is no part of this transfer
        opcode, number = struct.unpack("!HH", data[:4])
        if opcode == _ERROR:
            said = data[4:].split(b"\0", 1)[0].decode(errors="replace")
            self._end(f"{self.peer[0]} ended the transfer: error {number} {said!r}")
            return
        if opcode != _ACK:
            return
        if not self.started:
            if number == 0:  # the options are agreed: the data follows
                self.started = True
                self.tries = 0
                self._send()
            return
        # Block numbers wrap at 16 bits: the acknowledged one nearest to what was sent.
        block = (self.sent_to & ~0xFFFF) | number
        if block > self.sent_to:
            block -= 0x10000
        if block < self.acked:
            return
        if block == self.acked:
            # Repeated: within a window, the receiver lost what followed it. (In
            # lock-step, a repeat is only a late copy: answering it would double
            # every later block, the Sorcerer's Apprentice.)
            if self.window > 1 and self.sent_to > self.acked:
                self._send()
            return
        self.acked = block
        self.tries = 0
        if self.acked >= self.last:
            self._end(None)
        elif self.acked >= self.sent_to or self.window > 1:
            self._send()  # the next window, or the rest of one the receiver cut short

    def error_received(self, exc: Exception) -> None:
        log.debug("tftp: sending to %s: %s", self.peer, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def _end(self, failure: str | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if not self.done.done():
            if failure is None:
                self.done.set_result(self.server.image.size)
            else:
                self.done.set_exception(DeployError(failure))
                self.done.exception()  # read: the server reports it, or nobody needs it
        self.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._timer is not None:
            self._timer.cancel()


class _Listener(asyncio.DatagramProtocol):
    def __init__(self, server: TftpServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        peer = (str(addr[0]), int(addr[1]))
        self.server.request(data, peer)


class TftpServer:
    """A read-only TFTP server for one file, on the event loop, for an ``async with`` block.

    It answers a read request for ``name`` (RFC 1350, octet mode) with the
    ``blksize``, ``tsize``, ``timeout`` and ``windowsize`` options (RFC 2347,
    2348, 2349, 7440); any other name is not found, and writes are refused.
    """

    def __init__(
        self,
        image: Image,
        name: str,
        address: str,
        port: int = TFTP_PORT,
        *,
        timeout: float = RETRANSMIT,
    ) -> None:
        self.image = image
        self.name = name
        self.address = address
        self.port = port
        self.timeout = timeout
        self.transfers: list[_Transfer] = []
        self.failures: list[str] = []
        self._listener: _Listener | None = None
        self._starting: set[asyncio.Task[object]] = set()

    async def __aenter__(self) -> TftpServer:
        loop = asyncio.get_running_loop()
        try:
            _, listener = await loop.create_datagram_endpoint(
                lambda: _Listener(self), local_addr=(self.address, self.port)
            )
        except OSError as exc:
            raise DeployError(
                f"cannot serve TFTP on {self.address}:{self.port}: {exc.strerror or exc}"
            ) from None
        self._listener = listener
        if self.port == 0:
            assert listener.transport is not None
            self.port = listener.transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._starting:
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)
        closing = []
        for transfer in self.transfers:
            if transfer._transport is not None:
                closing.append(transfer.lost)
            transfer.close()
        listener, self._listener = self._listener, None
        if listener is not None and listener.transport is not None:
            listener.transport.close()
            closing.append(listener.lost)
        # The sockets close on the loop's next turn: the port is free once this returns.
        await asyncio.gather(*closing)

    def _reply(self, peer: tuple[str, int], packet: bytes) -> None:
        if self._listener is not None and self._listener.transport is not None:
            self._listener.transport.sendto(packet, peer)

    def request(self, data: bytes, peer: tuple[str, int]) -> None:
        """A packet on the server's port: a read request starts a transfer."""
        if len(data) < 4:
            return
        (opcode,) = struct.unpack("!H", data[:2])
        if opcode == _WRQ:
            self._reply(peer, _error(2, "otto's TFTP server only sends"))
            return
        if opcode != _RRQ:
            return
        fields = data[2:].split(b"\0")
        if len(fields) < 3:
            self._reply(peer, _error(4, "malformed request"))
            return
        filename = fields[0].decode(errors="replace").lstrip("/")
        mode = fields[1].lower()
        if filename != self.name:
            log.debug("tftp: %s asked for %r; only %r is served", peer[0], filename, self.name)
            self._reply(peer, _error(1, "file not found"))
            return
        if mode != b"octet":
            self._reply(peer, _error(0, "only octet mode is served"))
            return
        options = {
            fields[i].lower(): fields[i + 1] for i in range(2, len(fields) - 1, 2) if fields[i]
        }
        task = asyncio.ensure_future(self._start(peer, options))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _start(self, peer: tuple[str, int], options: dict[bytes, bytes]) -> None:
        loop = asyncio.get_running_loop()
        transfer = _Transfer(self, peer, options)
        self.transfers.append(transfer)
        try:
            await loop.create_datagram_endpoint(lambda: transfer, local_addr=(self.address, 0))
        except OSError as exc:
            transfer.close()
            self.failures.append(f"cannot answer {peer[0]}: {exc.strerror or exc}")
            return
        with contextlib.suppress(DeployError):
            await transfer.done
        if transfer.done.exception() is not None:
            self.failures.append(str(transfer.done.exception()))


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
    window: int = WINDOW,
    timeout: float = 300.0,
) -> int:
    """Load ``image`` at ``address`` with U-Boot's ``tftpboot``; the byte count it reports.

    Args:
        server: ``ADDR[:PORT]`` otto serves on, ADDR also being what the board
            sends to (its ``serverip``). Default: the bootloader's ``serverip``,
            else this machine's address on the route to its ``ipaddr``. A port
            other than 69 is given to U-Boot as ``tftpdstp`` (where built in).
        board_ip: set the bootloader's ``ipaddr`` first.
        window: U-Boot's ``tftpwindowsize`` for the load (1: lock-step).

    Raises:
        DeployError: the server could not start, or U-Boot reported no transfer.
    """
    if board_ip is not None:
        await app.cmd(f"setenv ipaddr {board_ip}")
    bind, port = await _server_address(app, host, server)
    name = served_name(image)
    settings = f"setenv serverip {bind}; setenv tftpwindowsize {window}"
    if port != TFTP_PORT:
        settings += f"; setenv tftpdstp {port}"
    command = f"tftpboot {address:#x} {name}"
    async with TftpServer(image, name, bind, port) as served:
        try:
            # One line: U-Boot answers each line it is sent a round trip later.
            answer = await app.cmd(f"{settings}; {command}", timeout=timeout)
        except ExpectTimeout as exc:
            await app.send("\x03")  # U-Boot stops a transfer on Ctrl-C
            raise DeployError(
                f"{host}: `{command}` did not finish within {timeout:g}s; "
                f"received: {exc.received[-300:]!r}"
            ) from None
    found = _BYTES.search(answer)
    if found is None:
        why = f" (otto's server: {'; '.join(served.failures)})" if served.failures else ""
        raise DeployError(f"{host}: `{command}` loaded nothing{why}: {answer[-400:]!r}")
    return int(found.group(1))
