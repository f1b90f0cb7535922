"""Which device a serial host opens: a path, or a USB adapter found by its attributes.

A serial host names its line either by a device path (``/dev/ttyUSB0``, or a
stable link such as ``/dev/serial/by-id/usb-FTDI_..._A1-if00-port0`` or
``/dev/serial/by-path/...``) or, in the lab, by the adapter's USB attributes::

    "usb": {"serial": "A1B2C3", "vendor": "0403", "product": "6001", "port": "1-1.2"}

A path is opened as it is, so a link is followed at every open, never once:
after a USB re-enumeration (a board's reset) the link points at the new node.
USB attributes are matched against the tty devices udev knows (pyudev,
imported only when a ``usb`` field is used) at every open as well; no match,
or more than one, is a ``ConnectError`` naming the attributes and the
candidates found.

``SerialLine`` is one host's line over time: when the device disappears (the
stream ends), the next open waits for it to come back (bounded by the host's
connect timeout; ``ConnectionLost`` naming the device when it does not) and
notes the gap in ``console_log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from otto.errors import ConnectError, ConnectionLost
from otto.transports.console import ConsoleStream, StreamSink

__all__ = [
    "USB_KEYS",
    "SerialLine",
    "UsbIdentity",
    "UsbMatchError",
    "UsbTty",
    "matching",
    "problems_of",
    "resolve_usb",
    "usb_tty",
    "usb_ttys",
]

USB_KEYS = ("serial", "vendor", "product", "port")
_HEX = re.compile(r"^(?:0[xX])?[0-9a-fA-F]{1,4}$")
_POLL = 0.05  # how often a device path that disappeared is looked for
_POLL_USB = 0.2  # udev's ttys are listed less often (a scan of sysfs, in the loop)


def _hex(value: str) -> str:
    return f"{int(value, 16):04x}"


@dataclass(frozen=True)
class UsbIdentity:
    """The USB attributes a serial adapter is found by; those given must all match.

    ``vendor`` and ``product`` are hex (``0403``, ``0x6001``); ``port`` is where
    it is plugged: the USB device's kernel name (``1-1.2``), its interface's
    (``1-1.2:1.0``) or udev's ``ID_PATH``.
    """

    serial: str | None = None
    vendor: str | None = None
    product: str | None = None
    port: str | None = None

    @classmethod
    def from_mapping(cls, given: Mapping[str, object]) -> UsbIdentity:
        """Check a lab's ``usb`` object (``ValueError`` naming each problem)."""
        problems = problems_of(given)
        if problems:
            raise ValueError("; ".join(problems))
        values = {k: str(v) for k, v in given.items()}
        for key in ("vendor", "product"):
            if key in values:
                values[key] = _hex(values[key])
        return cls(**values)

    def describe(self) -> str:
        """``usb vendor=0403 product=6001 serial=A1``: the attributes given."""
        shown = " ".join(f"{k}={getattr(self, k)}" for k in USB_KEYS if getattr(self, k))
        return f"usb {shown}"


def problems_of(given: Mapping[str, object]) -> list[str]:
    """Why a lab's ``usb`` object is not valid: unknown keys, bad hex, nothing to match."""
    problems: list[str] = []
    for key, value in given.items():
        if key not in USB_KEYS:
            problems.append(f"unknown key {key!r} (expected {', '.join(map(repr, USB_KEYS))})")
        elif not isinstance(value, str) or not value:
            problems.append(f"{key!r} must be a non-empty string")
        elif key in ("vendor", "product") and not _HEX.match(value):
            problems.append(f"{key!r} must be a USB id in hex, such as '0403' (got {value!r})")
    if not any(k in given for k in USB_KEYS):
        problems.append("needs at least one of " + ", ".join(map(repr, USB_KEYS)))
    return problems


@dataclass(frozen=True)
class UsbTty:
    """A tty device of a USB adapter, as udev shows it."""

    node: str
    vendor: str
    product: str
    serial: str
    ports: tuple[str, ...]

    def describe(self) -> str:
        port = self.ports[0] if self.ports else "?"
        serial = self.serial or "-"
        return (
            f"{self.node} (vendor={self.vendor} product={self.product} serial={serial} port={port})"
        )


class _Attributes(Protocol):
    def get(self, attribute: str, default: Any = None) -> Any: ...


class UdevDevice(Protocol):
    """What is read of a ``pyudev.Device`` (a test gives a double)."""

    @property
    def device_node(self) -> str | None: ...

    @property
    def sys_name(self) -> str: ...

    @property
    def properties(self) -> Mapping[str, str]: ...

    @property
    def attributes(self) -> _Attributes: ...

    def find_parent(self, subsystem: str, device_type: str | None = None) -> Any: ...


def _text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace").strip()
    return "" if value is None else str(value).strip()


def usb_tty(device: UdevDevice) -> UsbTty | None:
    """The USB attributes of a tty device; None for a tty that is not on USB (``ttyS0``)."""
    node = device.device_node
    if not node:
        return None
    props = device.properties
    usb = device.find_parent("usb", "usb_device")
    if usb is None:
        return None
    interface = device.find_parent("usb", "usb_interface")

    def pick(names: Iterable[str], attribute: str) -> str:
        for name in names:
            if props.get(name):
                return str(props.get(name))
        return _text(usb.attributes.get(attribute))

    vendor = pick(("ID_USB_VENDOR_ID", "ID_VENDOR_ID"), "idVendor")
    product = pick(("ID_USB_MODEL_ID", "ID_MODEL_ID"), "idProduct")
    serial = pick(("ID_USB_SERIAL_SHORT", "ID_SERIAL_SHORT"), "serial")
    ports = [str(usb.sys_name)]
    if interface is not None:
        ports.append(str(interface.sys_name))
    for name in ("ID_PATH", "ID_PATH_TAG"):
        if props.get(name):
            ports.append(str(props.get(name)))
    return UsbTty(
        node=str(node),
        vendor=_hex(vendor) if _HEX.match(vendor) else vendor,
        product=_hex(product) if _HEX.match(product) else product,
        serial=serial,
        ports=tuple(dict.fromkeys(ports)),
    )


def matching(candidates: Iterable[UsbTty], want: UsbIdentity) -> list[UsbTty]:
    """The candidates whose attributes are all those ``want`` gives."""
    found = []
    for tty in candidates:
        if want.vendor is not None and tty.vendor != want.vendor:
            continue
        if want.product is not None and tty.product != want.product:
            continue
        if want.serial is not None and tty.serial != want.serial:
            continue
        if want.port is not None and want.port not in tty.ports:
            continue
        found.append(tty)
    return found


def usb_ttys() -> list[UsbTty]:
    """Every tty device on USB that udev knows (pyudev is imported here)."""
    import pyudev  # type: ignore[import-untyped]  # only a host with a ``usb`` field needs it

    context = pyudev.Context()
    found = []
    for device in context.list_devices(subsystem="tty"):
        tty = usb_tty(device)
        if tty is not None:
            found.append(tty)
    return sorted(found, key=lambda t: t.node)


def _no_match(want: UsbIdentity, candidates: list[UsbTty], found: list[UsbTty]) -> str:
    if found:
        return (
            f"{len(found)} USB serial devices match {want.describe()}: "
            + "; ".join(t.describe() for t in found)
            + " (add 'serial' or 'port' to tell them apart)"
        )
    seen = "; ".join(t.describe() for t in candidates) if candidates else "none"
    return f"no USB serial device matches {want.describe()}; USB serial devices found: {seen}"


class UsbMatchError(ConnectError):
    """No USB serial device, or several (``found``), match a host's ``usb`` attributes."""

    def __init__(self, host: str, reason: str, found: list[UsbTty]) -> None:
        super().__init__(host, reason)
        self.found = found


def resolve_usb(
    host: str, want: UsbIdentity, candidates: Callable[[], list[UsbTty]] = usb_ttys
) -> str:
    """The device node of the one tty that matches ``want`` (``ConnectError`` otherwise)."""
    try:
        every = candidates()
    except ImportError as exc:
        raise ConnectError(
            host, f"finding {want.describe()} needs pyudev (pip install pyudev): {exc}"
        ) from exc
    found = matching(every, want)
    if len(found) != 1:
        raise UsbMatchError(host, _no_match(want, every, found), found)
    return found[0].node


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)) + f".{int(when % 1 * 1000):03d}"


class _Watch:
    """The stream's sink as the line sees it: a loss is noted before the link hears of it."""

    def __init__(self, line: SerialLine, sink: StreamSink, device: str) -> None:
        self._line = line
        self._sink = sink
        self._device = device

    def stream_data(self, data: bytes) -> None:
        self._sink.stream_data(data)

    def stream_lost(self, reason: str) -> None:
        self._sink.stream_lost(self._line.lost(self._device, reason))


Opener = Callable[[StreamSink, str], Awaitable[ConsoleStream]]


class SerialLine:
    """One serial host's line: what to open, and its gaps when the device went away.

    Args:
        host: the host's name, for messages.
        address: the device path (``usb`` not given).
        usb: the adapter's attributes, resolved at every open.
        candidates: lists the USB ttys (a test gives its own).
    """

    def __init__(
        self,
        host: str,
        address: str,
        usb: UsbIdentity | None = None,
        *,
        candidates: Callable[[], list[UsbTty]] = usb_ttys,
    ) -> None:
        self.host = host
        self.address = address
        self.usb = usb
        self._candidates = candidates
        self.where = usb.describe() if usb is not None else address
        self.node = ""
        """The device node opened last (a link's target, the tty a ``usb`` field found)."""
        self._gone_at: float | None = None
        self.waiting = False
        """Whether an open waits for the device that disappeared to come back."""

    def resolve(self) -> str:
        """The path to open now (``ConnectError``: no USB device, or several, match)."""
        if self.usb is None:
            return self.address
        return resolve_usb(self.host, self.usb, self._candidates)

    def _named(self, device: str) -> str:
        node = os.path.realpath(device)
        return device if node == device else f"{device} (-> {node})"

    def lost(self, device: str, reason: str) -> str:
        """Note that the stream of ``device`` ended; the reason the link is given."""
        self._gone_at = time.time()
        if self.usb is None and os.path.exists(device) and os.path.realpath(device) == self.node:
            return f"the serial line {self.where} broke: {reason}"
        return f"the serial device {self.where} disappeared ({reason})"

    def forget(self) -> None:
        """otto closed the line: the next open is a first one."""
        self._gone_at = None

    async def open(
        self,
        sink: StreamSink,
        opener: Opener,
        *,
        connect_timeout: float,
        console_log: str | None = None,
    ) -> ConsoleStream:
        """Open the line; after it disappeared, wait for it to come back (then note the gap).

        Raises:
            ConnectError: no USB device (or several) match, on a first open.
            ConnectionLost: the device disappeared and did not come back in time.
            OSError: the device cannot be opened (a first open).
        """
        gone_at = self._gone_at
        if gone_at is None:
            device = self.resolve()
            stream = await opener(_Watch(self, sink, device), device)
            self.node = os.path.realpath(device)
            return stream
        loop = asyncio.get_running_loop()
        # Under the link's own bound (connect_timeout less a little): this error,
        # which names the device, is the one the session sees.
        deadline = loop.time() + max(0.0, connect_timeout - min(0.5, connect_timeout / 5))
        self.waiting = True
        try:
            stream, device = await self._reopen(sink, opener, deadline, gone_at, connect_timeout)
        finally:
            self.waiting = False
        self.node = os.path.realpath(device)
        self._gone_at = None
        if console_log:
            now = time.time()
            note = (
                f"[{_stamp(now)}] [otto: {self._named(device) if self.usb is None else self.where}"
                f" disappeared at {_stamp(gone_at)}, reopened at {_stamp(now)}"
                + (f" as {device}" if self.usb is not None else "")
                + "]\n"
            )
            # A console_log that cannot be written is the link's to report, as it opens it.
            with contextlib.suppress(OSError):
                fd = os.open(console_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, note.encode())
                finally:
                    os.close(fd)
        return stream

    async def _reopen(
        self,
        sink: StreamSink,
        opener: Opener,
        deadline: float,
        gone_at: float,
        connect_timeout: float,
    ) -> tuple[ConsoleStream, str]:
        loop = asyncio.get_running_loop()
        why = "it is not there"
        while True:
            try:
                device = self.resolve()
                stream = await opener(_Watch(self, sink, device), device)
                return stream, device
            except UsbMatchError as exc:
                if exc.found:  # several match: waiting does not settle that
                    raise
                why = exc.reason
            except OSError as exc:
                # EACCES: udev has not yet given the new node its group.
                if exc.errno not in (
                    errno.ENOENT,
                    errno.ENXIO,
                    errno.EIO,
                    errno.ENODEV,
                    errno.EACCES,
                ):
                    raise
                why = f"it is not there ({exc.strerror or exc})"
            if loop.time() >= deadline:
                raise ConnectionLost(
                    self.host,
                    f"the serial device {self.where} disappeared at {_stamp(gone_at)} and did "
                    f"not come back within {connect_timeout:g}s: {why}",
                )
            await asyncio.sleep(_POLL if self.usb is None else _POLL_USB)
