"""The pieces of ``otto.hosts.deploy`` that need no board: parsing, framing, the TFTP server."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import socket
import struct
import zlib
from pathlib import Path

import pytest
from xmodem import XMODEM1k  # type: ignore[import-untyped]

from otto import LocalHost, Status
from otto.cli.deploycmd import describe
from otto.hosts.apps import anchored_prompt
from otto.hosts.deploy import BOOTLOADER_PROMPT, DeployError, DeployResult, parse_address
from otto.hosts.deploy.bootloader import parse_crc32
from otto.hosts.deploy.image import read_image
from otto.hosts.deploy.tftp import TftpServer, served_name, split_server
from otto.hosts.deploy.ymodem import ymodem_header
from otto.reservations.sqlite import SQLiteStore


def test_crc32_is_read_from_uboots_answer() -> None:
    assert parse_crc32("crc32 for 40200000 ... 402f423f ==> add7b3cc") == 0xADD7B3CC
    assert parse_crc32("Usage:\ncrc32 address count [addr]") is None


def test_addresses_are_hex_as_uboot_reads_them() -> None:
    assert parse_address("0x40200000") == 0x40200000
    assert parse_address("40200000") == 0x40200000
    assert parse_address(4096) == 4096
    assert parse_address(None) is None
    with pytest.raises(ValueError, match="no address"):
        parse_address("0xkernel")


def test_ymodem_header_holds_name_and_size_with_the_crc_xmodem_computes() -> None:
    header = ymodem_header("zImage", 1234)
    assert len(header) == 133 and header[:3] == b"\x01\x00\xff"
    body = header[3:131]
    assert body.startswith(b"zImage\x001234\x00") and body.rstrip(b"\0") == b"zImage\x001234"
    reference = XMODEM1k(None, None).calc_crc(body)
    assert int.from_bytes(header[131:], "big") == reference
    end = ymodem_header("", 0)
    assert end[3:131] == bytes(128)


async def test_an_image_is_digested_in_one_pass(tmp_path: Path) -> None:
    path = tmp_path / "a.img"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    image = await read_image(path)
    assert (image.size, image.crc32) == (len(data), zlib.crc32(data))
    assert image.sha256 == hashlib.sha256(data).hexdigest()
    with pytest.raises(IsADirectoryError):
        await read_image(tmp_path)


async def test_the_served_name_is_one_word_uboot_cannot_split(tmp_path: Path) -> None:
    path = tmp_path / "my kernel; reset.img"
    path.write_bytes(b"x")
    name = served_name(await read_image(path))
    assert name.startswith("otto-") and all(c.isalnum() or c in "._-" for c in name)
    assert split_server("192.0.2.1") == ("192.0.2.1", 69)
    assert split_server("192.0.2.1:6969") == ("192.0.2.1", 6969)


def _get(
    port: int,
    name: str,
    options: dict[str, str] | None = None,
    *,
    lose: int | None = None,
    mode: str = "octet",
) -> bytes:
    """A TFTP client (RFC 1350/2347/7440): fetch ``name``; ``lose`` drops that block once."""
    wanted = dict(options or {})
    window = int(wanted.get("windowsize", "1"))
    blksize = int(wanted.get("blksize", "512"))
    request = struct.pack("!H", 1) + name.encode() + b"\0" + mode.encode() + b"\0"
    for key, value in wanted.items():
        request += key.encode() + b"\0" + value.encode() + b"\0"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(request, ("127.0.0.1", port))
        received = bytearray()
        expected, since_ack = 1, 0
        while True:
            packet, peer = sock.recvfrom(70000)
            opcode, number = struct.unpack("!HH", packet[:4]) if len(packet) >= 4 else (0, 0)
            if opcode == 5:
                raise OSError(number, packet[4:-1].decode())
            if opcode == 6:
                agreed = dict(zip(*[iter(packet[2:].split(b"\0")[:-1])] * 2, strict=True))
                assert set(agreed) == {k.encode() for k in wanted}
                sock.sendto(struct.pack("!HH", 4, 0), peer)
                continue
            assert opcode == 3
            if lose is not None and number == lose:
                lose = None
                sock.sendto(struct.pack("!HH", 4, (expected - 1) & 0xFFFF), peer)
                continue
            if number != expected & 0xFFFF:
                continue  # after a loss: the rest of the window, sent again
            received += packet[4:]
            expected += 1
            since_ack += 1
            last = len(packet) - 4 < blksize
            if last or since_ack == window or (expected - 1) % window == 0:
                sock.sendto(struct.pack("!HH", 4, (expected - 1) & 0xFFFF), peer)
                since_ack = 0
            if last:
                return bytes(received)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"blksize": "1468", "windowsize": "16", "tsize": "0"},
        {"blksize": "8", "windowsize": "4"},  # past 65535 blocks: the numbers wrap
    ],
)
async def test_the_tftp_server_sends_its_one_file_and_frees_the_port(
    tmp_path: Path, options: dict[str, str]
) -> None:
    path = tmp_path / "image.bin"
    path.write_bytes(os.urandom(600_000 if options.get("blksize") == "8" else 300_001))
    image = await read_image(path)
    name = served_name(image)
    async with TftpServer(image, name, "127.0.0.1", 0) as server:
        port = server.port
        assert await asyncio.to_thread(_get, port, name, options) == path.read_bytes()
        with pytest.raises(OSError, match="file not found"):
            await asyncio.to_thread(_get, port, "../../etc/passwd")
        with pytest.raises(OSError, match="only octet"):
            await asyncio.to_thread(_get, port, name, mode="netascii")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))  # nothing of the server is left on it


async def test_a_block_lost_in_a_window_is_sent_again(tmp_path: Path) -> None:
    path = tmp_path / "image.bin"
    path.write_bytes(os.urandom(100_000))
    image = await read_image(path)
    async with TftpServer(image, "x", "127.0.0.1", 0) as server:
        got = await asyncio.to_thread(
            _get, server.port, "x", {"blksize": "1000", "windowsize": "8"}, lose=13
        )
    assert got == path.read_bytes()


async def test_a_receiver_that_goes_silent_ends_its_transfer(tmp_path: Path) -> None:
    path = tmp_path / "image.bin"
    path.write_bytes(b"x" * 5000)
    image = await read_image(path)
    async with TftpServer(image, "x", "127.0.0.1", 0, timeout=0.01) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"\0\x01x\0octet\0", ("127.0.0.1", server.port))
            sock.settimeout(5)
            await asyncio.to_thread(sock.recvfrom, 1000)  # the first block, never acknowledged
            with pytest.raises(DeployError, match=r"stopped acknowledging \(block 1\)"):
                async with asyncio.timeout(10):
                    await server.transfers[0].done


async def test_a_port_in_use_is_said_at_once(tmp_path: Path) -> None:
    path = tmp_path / "image.bin"
    path.write_bytes(b"x")
    image = await read_image(path)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(Exception, match=rf"cannot serve TFTP on 127.0.0.1:{port}"):
            async with TftpServer(image, "x", "127.0.0.1", port):
                pass


def test_the_cli_line_says_what_happened() -> None:
    done = DeployResult(
        Status.Success,
        files=["0x40200000"],
        bytes=10,
        duration=0.5,
        via="tftp",
        target="0x40200000",
        sha256="ab" * 32,
        crc32=0xADD7B3CC,
    )
    assert describe("b1", "zImage", done) == (
        "b1: zImage deployed at 0x40200000 over tftp (10 bytes in 0.50s, crc32 add7b3cc checked)"
    )
    skipped = DeployResult(Status.Success, skipped=True, target="0x40200000", sha256="ab" * 32)
    assert "already" in describe("b1", "zImage", skipped)
    failed = DeployResult(Status.Error, error="b1: the bootloader's crc32 is 1, the file's 2")
    assert describe("b1", "zImage", failed) == failed.error


async def test_an_unknown_way_is_refused_before_anything(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="via must be one of tftp, ymodem, xmodem, shell"):
        await LocalHost().deploy(tmp_path, via="carrier-pigeon")  # type: ignore[arg-type]


async def test_via_shell_copies_checks_skips_and_forces(tmp_path: Path) -> None:
    path = tmp_path / "app.img"
    path.write_bytes(b"image bytes\n" * 1000)
    dest = tmp_path / "target"
    dest.mkdir()
    store = SQLiteStore(tmp_path / "records.db")
    async with LocalHost() as host:
        first = await host.deploy(path, via="shell", address=str(dest), records=store)
        assert (first.status, first.skipped, first.bytes) == (Status.Success, False, 12000)
        assert (dest / "app.img").read_bytes() == path.read_bytes()
        assert first.target == str(dest / "app.img")
        again = await host.deploy(path, via="shell", address=str(dest), records=store)
        assert (again.skipped, again.bytes) == (True, 0)
        # Changed on the host behind otto's back: the record alone does not skip it.
        (dest / "app.img").write_bytes(b"other")
        fixed = await host.deploy(path, via="shell", address=str(dest), records=store)
        assert (fixed.skipped, fixed.bytes) == (False, 12000)
        assert (dest / "app.img").read_bytes() == path.read_bytes()
        forced = await host.deploy(path, via="shell", address=str(dest), records=store, force=True)
        assert (forced.skipped, forced.bytes) == (False, 12000)
    await store.close()


def test_the_bootloader_prompt_is_never_found_inside_crc32s_line() -> None:
    prompt = anchored_prompt(BOOTLOADER_PROMPT)
    # U-Boot prints this, then computes the sum: a prompt here would cut the answer.
    assert prompt.search("crc32 0x40200000 0x800000\ncrc32 for 40200000 ... 409fffff ==> ") is None
    assert prompt.search("crc32 for 40200000 ... 409fffff ==> 73cdc98f\n=> ") is not None
    assert prompt.search("=> ") is not None


def test_the_labs_bootloader_prompt_is_held_to_a_lines_start() -> None:
    from otto.hosts.deploy import bootloader_prompt
    from otto.hosts.lifecycle import BootSpec

    host = LocalHost()
    assert bootloader_prompt(host, None) == BOOTLOADER_PROMPT
    assert bootloader_prompt(host, "mine> ") == "mine> "
    host.boot_spec = BootSpec(bootloader_prompt=r"(?i)board=> ")
    prompt = bootloader_prompt(host, None)
    assert isinstance(prompt, re.Pattern)
    assert anchored_prompt(prompt).search("x\nBOARD=> ") is not None
    assert anchored_prompt(prompt).search("crc32 ... board=> ") is None
