"""Finding a serial line by its USB attributes, and reopening it when it comes back.

The matching reads pyudev devices: the real library on this machine's tty
devices (none of which may be on USB), and a small double for USB adapters.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema  # a dev dependency (as in test_lab_sources)
import pytest
from typer.testing import CliRunner

from otto import RemoteHost
from otto.cli.app import app
from otto.errors import ConnectError, ConnectionLost
from otto.hosts.console import ConsoleConnection
from otto.lab import Lab
from otto.lab.schema import lab_schema
from otto.transports.console import ConsoleStream, StreamSink
from otto.transports.serial_identity import (
    SerialLine,
    UsbIdentity,
    UsbMatchError,
    UsbTty,
    matching,
    resolve_usb,
    usb_tty,
    usb_ttys,
)


class _Attributes:
    def __init__(self, values: Mapping[str, bytes]) -> None:
        self._values = values

    def get(self, attribute: str, default: Any = None) -> Any:
        return self._values.get(attribute, default)


class FakeDevice:
    """What pyudev shows of a device: node, name, properties, sysfs attributes, parents."""

    def __init__(
        self,
        sys_name: str,
        *,
        node: str | None = None,
        properties: Mapping[str, str] | None = None,
        attributes: Mapping[str, bytes] | None = None,
        parents: Mapping[tuple[str, str], FakeDevice] | None = None,
    ) -> None:
        self.sys_name = sys_name
        self.device_node = node
        self.properties = dict(properties or {})
        self.attributes = _Attributes(attributes or {})
        self._parents = dict(parents or {})

    def find_parent(self, subsystem: str, device_type: str | None = None) -> Any:
        return self._parents.get((subsystem, device_type or ""))


def adapter(
    node: str, vendor: bytes, product: bytes, serial: bytes, port: str, **props: str
) -> FakeDevice:
    usb = FakeDevice(
        port, attributes={"idVendor": vendor, "idProduct": product, "serial": serial + b"\n"}
    )
    interface = FakeDevice(f"{port}:1.0")
    return FakeDevice(
        os.path.basename(node),
        node=node,
        properties={"SUBSYSTEM": "tty", **props},
        parents={("usb", "usb_device"): usb, ("usb", "usb_interface"): interface},
    )


FTDI_A = UsbTty("/dev/ttyUSB0", "0403", "6001", "A1", ("1-1.2", "1-1.2:1.0"))
FTDI_B = UsbTty("/dev/ttyUSB1", "0403", "6001", "B2", ("1-1.3", "1-1.3:1.0"))
CP210 = UsbTty("/dev/ttyUSB2", "10c4", "ea60", "0001", ("2-4", "2-4:1.0"))


def test_a_usb_field_is_checked_and_its_ids_read_as_hex() -> None:
    got = UsbIdentity.from_mapping({"vendor": "0x403", "product": "6001", "serial": "A1"})
    assert got == UsbIdentity(serial="A1", vendor="0403", product="6001")
    assert got.describe() == "usb serial=A1 vendor=0403 product=6001"
    with pytest.raises(ValueError) as info:
        UsbIdentity.from_mapping({"vendor": "FTDI", "prodcut": "6001"})
    message = str(info.value)
    assert "'vendor' must be a USB id in hex, such as '0403' (got 'FTDI')" in message
    assert "unknown key 'prodcut'" in message
    with pytest.raises(ValueError, match="needs at least one of"):
        UsbIdentity.from_mapping({})


def test_a_tty_on_usb_is_read_from_udev_properties() -> None:
    device = adapter(
        "/dev/ttyUSB0", b"ffff", b"ffff", b"X", "1-1.2",
        ID_VENDOR_ID="0403", ID_MODEL_ID="6001", ID_SERIAL_SHORT="A1",
        ID_PATH="pci-0000:00:14.0-usb-0:1.2:1.0",
    )  # fmt: skip
    tty = usb_tty(device)
    assert tty == UsbTty(
        "/dev/ttyUSB0", "0403", "6001", "A1",
        ("1-1.2", "1-1.2:1.0", "pci-0000:00:14.0-usb-0:1.2:1.0"),
    )  # fmt: skip


def test_without_udev_properties_the_usb_parent_attributes_are_read() -> None:
    tty = usb_tty(adapter("/dev/ttyACM0", b"2E8A", b"000a", b"E66", "3-2"))
    assert tty == UsbTty("/dev/ttyACM0", "2e8a", "000a", "E66", ("3-2", "3-2:1.0"))


def test_a_tty_not_on_usb_is_no_candidate() -> None:
    assert usb_tty(FakeDevice("ttyS0", node="/dev/ttyS0")) is None
    assert usb_tty(FakeDevice("console")) is None


def test_the_real_ttys_of_this_machine_read_through_pyudev() -> None:
    pyudev = pytest.importorskip("pyudev")
    context = pyudev.Context()
    ttys = sorted(Path("/sys/class/tty").glob("*"))
    if not ttys:
        pytest.skip("no tty devices in /sys/class/tty")
    for path in ttys:
        device = pyudev.Devices.from_sys_path(context, str(path))
        tty = usb_tty(device)
        on_usb = device.find_parent("usb", "usb_device") is not None
        if tty is None:
            assert not on_usb or device.device_node is None, path
        else:
            assert on_usb and tty.node == device.device_node, path
            assert re.fullmatch(r"[0-9a-f]{4}", tty.vendor), tty
    listed = usb_ttys()
    assert [t.node for t in listed] == sorted(t.node for t in listed)


def test_matching_by_each_attribute() -> None:
    every = [FTDI_A, FTDI_B, CP210]
    assert matching(every, UsbIdentity(vendor="0403", product="6001")) == [FTDI_A, FTDI_B]
    assert matching(every, UsbIdentity(vendor="0403", serial="B2")) == [FTDI_B]
    assert matching(every, UsbIdentity(port="1-1.2")) == [FTDI_A]
    assert matching(every, UsbIdentity(port="2-4:1.0")) == [CP210]
    assert matching(every, UsbIdentity(vendor="0403", serial="C3")) == []


def test_resolving_one_match_gives_its_node() -> None:
    want = UsbIdentity.from_mapping({"vendor": "10C4", "product": "EA60"})
    assert resolve_usb("board", want, lambda: [FTDI_A, CP210]) == "/dev/ttyUSB2"


def test_no_match_names_the_attributes_and_what_was_found() -> None:
    want = UsbIdentity(vendor="0403", serial="C3")
    with pytest.raises(ConnectError) as info:
        resolve_usb("board", want, lambda: [FTDI_A, CP210])
    message = str(info.value)
    assert message.startswith("board: no USB serial device matches usb serial=C3 vendor=0403")
    assert "/dev/ttyUSB0 (vendor=0403 product=6001 serial=A1 port=1-1.2)" in message
    assert "/dev/ttyUSB2 (vendor=10c4 product=ea60 serial=0001 port=2-4)" in message
    with pytest.raises(ConnectError, match="USB serial devices found: none"):
        resolve_usb("board", want, list)


def test_several_matches_are_an_error_listing_them() -> None:
    want = UsbIdentity(vendor="0403", product="6001")
    with pytest.raises(UsbMatchError) as info:
        resolve_usb("board", want, lambda: [FTDI_A, FTDI_B, CP210])
    message = str(info.value)
    assert "2 USB serial devices match usb vendor=0403 product=6001" in message
    assert "/dev/ttyUSB0 (" in message and "/dev/ttyUSB1 (" in message
    assert "/dev/ttyUSB2" not in message
    assert "add 'serial' or 'port'" in message
    assert info.value.found == [FTDI_A, FTDI_B]


class _Sink:
    def __init__(self) -> None:
        self.lost: list[str] = []

    def stream_data(self, data: bytes) -> None:
        pass

    def stream_lost(self, reason: str) -> None:
        self.lost.append(reason)


class _Stream(ConsoleStream):
    def __init__(self, sink: StreamSink, device: str) -> None:
        self.sink = sink
        self.device = device

    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Adapters:
    """The USB ttys udev lists now, and the streams opened on them."""

    def __init__(self, *ttys: UsbTty) -> None:
        self.ttys = list(ttys)
        self.opened: list[_Stream] = []
        self.looked = asyncio.Event()

    def __call__(self) -> list[UsbTty]:
        self.looked.set()
        return list(self.ttys)

    async def open(self, sink: StreamSink, device: str) -> ConsoleStream:
        if device not in [t.node for t in self.ttys]:
            raise FileNotFoundError(2, "No such file or directory", device)
        stream = _Stream(sink, device)
        self.opened.append(stream)
        return stream


async def test_a_usb_line_is_found_again_after_re_enumeration(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    adapters = _Adapters(FTDI_A, CP210)
    line = SerialLine("board", "", UsbIdentity(serial="A1"), candidates=adapters)
    sink = _Sink()
    await line.open(sink, adapters.open, connect_timeout=30.0, console_log=str(log))
    assert adapters.opened[-1].device == "/dev/ttyUSB0"
    # The board resets: the adapter goes, its stream ends.
    adapters.ttys = [CP210]
    adapters.opened[-1].sink.stream_lost("the serial device closed")
    adapters.looked.clear()
    assert sink.lost == ["the serial device usb serial=A1 disappeared (the serial device closed)"]
    reopen = asyncio.create_task(
        line.open(sink, adapters.open, connect_timeout=30.0, console_log=str(log))
    )
    # The open looked, found no adapter, and waits for it to come back.
    await asyncio.wait_for(adapters.looked.wait(), 10.0)
    assert line.waiting
    adapters.ttys = [CP210, UsbTty("/dev/ttyUSB3", "0403", "6001", "A1", ("1-1.2",))]
    await asyncio.wait_for(reopen, 10.0)
    assert adapters.opened[-1].device == "/dev/ttyUSB3"
    note = log.read_text()
    assert re.fullmatch(
        r"\[[-0-9 :.]+\] \[otto: usb serial=A1 disappeared at [-0-9 :.]+, reopened at "
        r"[-0-9 :.]+ as /dev/ttyUSB3\]\n",
        note,
    ), note


async def test_a_usb_line_that_does_not_come_back_is_connection_lost() -> None:
    adapters = _Adapters(FTDI_A)
    line = SerialLine("board", "", UsbIdentity(serial="A1"), candidates=adapters)
    sink = _Sink()
    await line.open(sink, adapters.open, connect_timeout=30.0)
    adapters.ttys = [CP210]
    adapters.opened[-1].sink.stream_lost("the serial device closed")
    with pytest.raises(ConnectionLost) as info:
        await line.open(sink, adapters.open, connect_timeout=0.2)
    message = str(info.value)
    assert message.startswith("board: the serial device usb serial=A1 disappeared at ")
    assert "did not come back within 0.2s: no USB serial device matches usb serial=A1" in message
    assert "/dev/ttyUSB2 (" in message


async def test_two_matches_after_re_enumeration_fail_at_once() -> None:
    adapters = _Adapters(FTDI_A)
    line = SerialLine("board", "", UsbIdentity(vendor="0403"), candidates=adapters)
    sink = _Sink()
    await line.open(sink, adapters.open, connect_timeout=30.0)
    adapters.opened[-1].sink.stream_lost("the serial device closed")
    adapters.ttys = [FTDI_A, FTDI_B]
    with pytest.raises(UsbMatchError, match="2 USB serial devices match"):
        await line.open(sink, adapters.open, connect_timeout=30.0)


async def test_a_first_open_of_a_missing_path_is_the_opener_error(tmp_path: Path) -> None:
    adapters = _Adapters()
    line = SerialLine("board", str(tmp_path / "ttyUSB9"))
    with pytest.raises(FileNotFoundError):
        await line.open(_Sink(), adapters.open, connect_timeout=30.0)
    assert not line.waiting


# --- the lab field ----------------------------------------------------------------------------


def test_a_lab_serial_host_by_usb_attributes(tmp_path: Path) -> None:
    path = tmp_path / "lab.json"
    usb = {"vendor": "0x403", "product": "6001", "serial": "A1B2", "port": "1-1.2"}
    lab_file = {"hosts": [{"name": "board", "term": "serial", "usb": usb, "baud": 9600}]}
    path.write_text(json.dumps(lab_file))
    jsonschema.validate(lab_file, lab_schema())
    lab = Lab.load(path)
    (spec,) = lab.specs
    assert spec.usb == (
        ("serial", "A1B2"),
        ("vendor", "0403"),
        ("product", "6001"),
        ("port", "1-1.2"),
    )
    assert spec.destination == "usb serial=A1B2 vendor=0403 product=6001 port=1-1.2"
    host = lab.host("board")
    assert isinstance(host, RemoteHost) and host.name == "board"
    assert host.usb == {"serial": "A1B2", "vendor": "0403", "product": "6001", "port": "1-1.2"}
    connection = host.connection
    assert isinstance(connection, ConsoleConnection) and connection.serial_line is not None
    assert connection.serial_line.usb == UsbIdentity("A1B2", "0403", "6001", "1-1.2")
    result = CliRunner().invoke(app, ["lab", "check", str(path)])
    assert (result.exit_code, result.output) == (0, f"ok: 1 host in {path}\n")


def test_lab_check_reports_each_problem_of_a_usb_field(tmp_path: Path) -> None:
    path = tmp_path / "lab.json"
    hosts = [
        {"name": "a", "term": "serial", "usb": {"vendor": "FTDI", "serail": "A1"}},
        {"name": "b", "term": "serial", "address": "/dev/ttyUSB0", "usb": {"serial": "A1"}},
        {"name": "c", "term": "serial", "usb": {}},
        {"name": "d", "term": "ssh", "address": "h", "user": "u", "usb": {"serial": "A1"}},
        {"name": "e", "term": "serial", "usb": "A1"},
    ]
    path.write_text(json.dumps({"hosts": hosts}))
    result = CliRunner().invoke(app, ["lab", "check", str(path)])
    assert result.exit_code == 2
    out = result.output
    assert f"{path}: host 'a': field 'usb': 'vendor' must be a USB id in hex, such as '0403'" in out
    assert f"{path}: host 'a': field 'usb': unknown key 'serail'; did you mean 'serial'?" in out
    assert f"{path}: host 'b': field 'usb': give 'address' (the device) or 'usb'" in out
    assert f"{path}: host 'c': field 'usb': needs at least one of 'serial'" in out
    assert f"{path}: host 'd': field 'usb': not used by term 'ssh' (only for term 'serial')" in out
    assert f"{path}: host 'e': field 'usb': must be an object such as" in out
    assert "address" not in out.replace("give 'address'", "")


async def test_a_host_whose_usb_adapter_is_not_plugged_is_a_clear_connect_error() -> None:
    pytest.importorskip("pyudev")
    host = RemoteHost(
        "", term="serial", name="board", usb={"serial": "otto-no-such-adapter", "vendor": "f00d"}
    )
    with pytest.raises(ConnectError) as info:
        await host.run("true")
    await host.close()
    message = str(info.value)
    assert message.startswith(
        "board: no USB serial device matches usb serial=otto-no-such-adapter vendor=f00d; "
        "USB serial devices found: "
    ), message
