"""A local serial line (``/dev/ttyUSB0``) as a console stream.

pyserial opens the device and sets its line (baud rate, 8N1, raw); the event
loop then watches its descriptor: reads as data arrives, writes without
blocking (what the line cannot take yet waits for it to drain). Closing never
waits for a line that does not drain: what it cannot take at once is dropped,
with a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import termios

import serial

from otto.transports.console import ConsoleStream, StreamSink

__all__ = ["SerialStream"]

log = logging.getLogger("otto.transports.serial")

_READ = 65536


class SerialStream(ConsoleStream):
    """A serial device read and written through the event loop."""

    def __init__(self, sink: StreamSink, port: serial.Serial) -> None:
        self.where = str(port.port)
        self._sink = sink
        self._port = port
        self._fd = port.fileno()
        self._loop = asyncio.get_running_loop()
        self._out = bytearray()
        self._drained: asyncio.Future[None] | None = None
        self._closed = False
        self._writing = False
        """Whether the loop watches the descriptor for room to write."""
        self._loop.add_reader(self._fd, self._readable)

    @classmethod
    async def open(cls, sink: StreamSink, device: str, baud: int) -> SerialStream:
        """Open ``device`` at ``baud`` (raises ``OSError``)."""
        try:
            port = serial.Serial(device, baudrate=baud)
        except serial.SerialException as exc:
            raise OSError(exc.errno or errno.EIO, str(exc)) from exc
        try:
            fd = port.fileno()
            # pyserial leaves VMIN at 0, where an empty read means "nothing yet";
            # with VMIN 1 and the descriptor non-blocking, that is EAGAIN and an
            # empty read is the end of the line.
            attrs = termios.tcgetattr(fd)
            attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
            os.set_blocking(fd, False)
            return cls(sink, port)
        except BaseException:
            port.close()
            raise

    def _readable(self) -> None:
        try:
            data = os.read(self._fd, _READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(f"the serial line broke: {exc}")
            return
        if not data:
            self._lost("the serial device closed")
            return
        self._sink.stream_data(data)

    def _lost(self, reason: str) -> None:
        if self._closed:
            return
        self._shut()
        self._sink.stream_lost(reason)

    def write(self, data: bytes) -> None:
        if self._closed or not data:
            return
        if not self._out:
            try:
                written = os.write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                written = 0
            except OSError as exc:
                self._lost(f"the serial line broke: {exc}")
                return
            if written == len(data):
                return
            data = data[written:]
            self._loop.add_writer(self._fd, self._writable)
            self._writing = True
        self._out += data

    def _writable(self) -> None:
        try:
            written = os.write(self._fd, self._out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._lost(f"the serial line broke: {exc}")
            return
        del self._out[:written]
        if not self._out:
            self._loop.remove_writer(self._fd)
            self._writing = False
            self._wake()

    def _wake(self) -> None:
        waiter, self._drained = self._drained, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def drain(self) -> None:
        if not self._out or self._closed:
            return
        if self._drained is None:
            self._drained = self._loop.create_future()
        await self._drained

    def _shut(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Both watches go before the descriptor closes: a watch left on a closed
        # number breaks whatever opens that number next on this loop (its
        # reader is never registered, and its data never read).
        self._loop.remove_reader(self._fd)
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        self._out.clear()
        self._wake()
        self._port.close()

    def close(self) -> None:
        if self._out and not self._closed:
            # What the line takes now goes (the inner shell's `exit` is short); a
            # device that does not drain (flow control held, nobody reading) must
            # not hold the event loop: the rest is dropped.
            with contextlib.suppress(OSError):
                del self._out[: os.write(self._fd, self._out)]
            if self._out:
                log.warning(
                    "%s: closing; %d byte(s) the serial line did not take were dropped",
                    self.where,
                    len(self._out),
                )
                self._out.clear()
        self._shut()
