"""Deploying images to a real U-Boot (QEMU's qemu_arm build) with a network.

Every load is checked on the board itself: U-Boot's ``crc32`` of the loaded
bytes and ``md.b`` reads at a few offsets, against the file. The records that
skip an identical image are kept in the reservation store: both backends (a
SQLite file, a PostgreSQL server) are exercised.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import uuid
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from otto import RemoteHost, Status
from otto.hosts.deploy import Deployment, DeployResult, Via, tftp
from otto.hosts.deploy.image import Image
from otto.reservations import open_store
from otto.reservations.sqlite import SQLiteStore
from tests.lab import postgres
from tests.lab.uboot import uboot_missing
from tests.lab.uboot_net import BOARD_IP, UBootNet

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PROMPT = r"(?m)^=> "  # at a line's start: crc32 prints "==> " before its sum
ADDRESS = 0x40200000


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def board() -> AsyncIterator[UBootNet]:
    missing = uboot_missing()
    if missing:
        pytest.skip(missing)
    uboot = UBootNet()
    async with uboot:
        host = board_host(uboot)
        async with host, host.open_app(None, PROMPT, timeout=20) as app:
            # Outside 10.0.0.0/8 (the board's own net), through QEMU's gateway.
            await app.cmd("setenv netmask 255.255.255.0; setenv gatewayip 10.0.2.2")
        yield uboot


def board_host(uboot: UBootNet) -> RemoteHost:
    return RemoteHost(
        uboot.address, term="console", console_protocol="raw", name="board", connect_timeout=5
    )


@pytest.fixture
def store(tmp_path: Path) -> SQLiteStore:
    return SQLiteStore(tmp_path / "reservations.db")


def image(tmp_path: Path, size: int, name: str = "image.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


async def board_reads(host: RemoteHost, path: Path, address: int = ADDRESS) -> None:
    """U-Boot's crc32 of the loaded bytes and md.b at a few offsets match the file."""
    data = path.read_bytes()
    async with host.open_app(None, PROMPT, timeout=20) as app:
        answer = await app.cmd(f"crc32 {address:#x} {len(data):#x}")
        assert answer.endswith(f"==> {zlib.crc32(data):08x}")
        for offset in (0, 1, len(data) // 2, len(data) - 16):
            dump = await app.cmd(f"md.b {address + offset:#x} 0x10")
            shown = bytes.fromhex(" ".join(dump.split(":", 1)[1].split()[:16]))
            assert shown == data[offset : offset + 16], f"offset {offset}"


async def deploy_tftp(
    host: RemoteHost, uboot: UBootNet, path: Path, store: SQLiteStore, *, force: bool = False
) -> DeployResult:
    return await host.deploy(
        path,
        via="tftp",
        address=ADDRESS,
        records=store,
        server=uboot.server_ip,
        board_ip=BOARD_IP,
        force=force,
    )


async def test_tftp_lands_byte_for_byte_and_an_identical_image_is_skipped(
    board: UBootNet, tmp_path: Path, store: SQLiteStore
) -> None:
    path = image(tmp_path, 700_001)
    host = board_host(board)
    async with host:
        first = await deploy_tftp(host, board, path, store)
        assert first.status is Status.Success, first.error
        assert (first.bytes, first.skipped, first.target) == (700_001, False, "0x40200000")
        await board_reads(host, path)
        recorded = await store.deployment("board", "0x40200000")
        assert recorded is not None and recorded.sha256 == first.sha256
        again = await deploy_tftp(host, board, path, store)
        assert (again.status, again.skipped, again.bytes) == (Status.Success, True, 0)
        forced = await deploy_tftp(host, board, path, store, force=True)
        assert (forced.status, forced.skipped, forced.bytes) == (Status.Success, False, 700_001)
        await board_reads(host, path)
    await store.close()


async def test_memory_that_changed_is_loaded_again_despite_the_record(
    board: UBootNet, tmp_path: Path, store: SQLiteStore
) -> None:
    path = image(tmp_path, 50_000)
    host = board_host(board)
    async with host:
        assert (await deploy_tftp(host, board, path, store)).is_ok
        async with host.open_app(None, PROMPT, timeout=20) as app:
            await app.cmd(f"mw.b {ADDRESS + 100:#x} 0x5a 0x10")  # a power cycle's worth of change
        again = await deploy_tftp(host, board, path, store)
        assert (again.status, again.skipped, again.bytes) == (Status.Success, False, 50_000)
        await board_reads(host, path)
    await store.close()


async def test_a_corrupted_transfer_is_an_error_naming_both_checksums(
    board: UBootNet, tmp_path: Path, store: SQLiteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = image(tmp_path, 30_000, "kernel.img")
    data = bytearray(path.read_bytes())
    data[12_345] ^= 0xFF
    bad = zlib.crc32(bytes(data))

    damaged = tmp_path / "damaged.img"
    damaged.write_bytes(bytes(data))

    class Damaging(tftp.TftpServer):
        """Serves the damaged copy under the image's name: one flipped byte on the way."""

        def __init__(self, image: Image, *args: Any, **kwargs: Any) -> None:
            super().__init__(dataclasses.replace(image, path=damaged), *args, **kwargs)

    monkeypatch.setattr(tftp, "TftpServer", Damaging)
    host = board_host(board)
    async with host:
        result = await deploy_tftp(host, board, path, store, force=True)
    assert result.status is Status.Error
    good = zlib.crc32(path.read_bytes())
    assert "board" in result.error and "kernel.img" in result.error
    assert f"{bad:08x}" in result.error and f"{good:08x}" in result.error
    assert await store.deployment("board", "0x40200000") is None
    await store.close()


@pytest.mark.parametrize("via", ["ymodem", "xmodem"])
async def test_over_the_console(
    board: UBootNet, tmp_path: Path, store: SQLiteStore, via: Via
) -> None:
    path = image(tmp_path, 20_000 + 77)  # not a whole number of blocks
    host = board_host(board)
    async with host:
        result = await host.deploy(path, via=via, address=0x40400000, records=store)
        assert result.status is Status.Success, result.error
        assert (result.bytes, result.via) == (20_077, via)
        await board_reads(host, path, 0x40400000)
        # The console is the bootloader's again: an ordinary command answers exactly.
        async with host.open_app(None, PROMPT, timeout=20) as app:
            assert await app.cmd("echo back") == "back"
    await store.close()


async def test_the_cli_deploys_skips_and_forces(board: UBootNet, tmp_path: Path) -> None:
    path = image(tmp_path, 100_000)
    lab = tmp_path / "lab.json"
    host = {"name": "board", "term": "console", "address": board.address}
    host["console_protocol"] = "raw"
    lab.write_text(json.dumps({"hosts": [host]}))
    env = {
        **os.environ,
        "OTTO_LAB": str(lab),
        "OTTO_RESERVATIONS": f"sqlite:///{tmp_path / 'store.db'}",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
    }
    base = [sys.executable, "-m", "otto", "host", "board", "deploy", str(path)]
    net = ["--server", board.server_ip, "--board-ip", BOARD_IP, "--address", "0x40200000"]

    def otto(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*base, *net, *extra], env=env, capture_output=True, text=True, timeout=120, check=False
        )

    first = otto()
    assert first.returncode == 0, first.stderr
    assert re.fullmatch(
        r"board: image\.bin deployed at 0x40200000 over tftp \(100000 bytes in [\d.]+s, "
        rf"crc32 {zlib.crc32(path.read_bytes()):08x} checked\)\n",
        first.stdout,
    )
    second = otto()
    assert second.returncode == 0, second.stderr
    assert "already" in second.stdout and "not sent again" in second.stdout
    forced = otto("--force")
    assert forced.returncode == 0 and "deployed at 0x40200000" in forced.stdout
    wrong = otto("--via", "carrier-pigeon")
    assert wrong.returncode != 0 and "--via takes" in wrong.stderr
    path.unlink()
    gone = otto()
    assert gone.returncode != 0 and f"{path}: no such image file" in gone.stderr


# --- the record, on both backends -------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def pg() -> AsyncIterator[postgres.PostgresServer]:
    problem = postgres.missing()
    if problem:
        pytest.skip(problem)
    server = postgres.PostgresServer()
    try:
        await server.start()
        yield server
    finally:
        server.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store' / 'reservations.db'}"
    server: postgres.PostgresServer = request.getfixturevalue("pg")
    return server.url


async def test_the_record_is_kept_replaced_and_forgotten(store_url: str) -> None:
    host = f"board-{uuid.uuid4().hex[:8]}"
    async with open_store(store_url) as store:
        assert await store.deployment(host, "0x40200000") is None
        await store.forget_deployment(host, "0x40200000")  # nothing there: no error
        first = Deployment(host, "0x40200000", "a" * 64, "/images/one.img", 10, "tftp", "me@here")
        await store.record_deployment(first)
        await store.record_deployment(
            Deployment(host, "0x48000000", "c" * 64, "dtb", 3, "ymodem", "me@here")
        )
        found = await store.deployment(host, "0x40200000")
        assert found is not None and found.at is not None
        assert (found.sha256, found.image, found.size, found.via, found.by) == (
            "a" * 64,
            "/images/one.img",
            10,
            "tftp",
            "me@here",
        )
        await store.record_deployment(
            Deployment(host, "0x40200000", "b" * 64, "/images/two.img", 20, "shell", "you@there")
        )
    # Another client of the same store sees it (the record is shared).
    async with open_store(store_url) as other:
        replaced = await other.deployment(host, "0x40200000")
        assert replaced is not None and (replaced.sha256, replaced.by) == ("b" * 64, "you@there")
        await other.forget_deployment(host, "0x40200000")
        assert await other.deployment(host, "0x40200000") is None
        kept = await other.deployment(host, "0x48000000")
        assert kept is not None and kept.sha256 == "c" * 64
