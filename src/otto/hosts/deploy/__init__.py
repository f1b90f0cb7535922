"""Deploying an image: load a file through the host's bootloader (or its shell), checked.

``await host.deploy("zImage", via="tftp", address=0x40200000)`` loads the
file at that address with U-Boot on the host's console and returns a
``DeployResult`` (a ``TransferResult``). The transports, one file each:

- ``tftp``: otto serves the file from this machine for the length of the load
  and U-Boot's ``tftpboot`` fetches it (``otto.hosts.deploy.tftp``); otto sets
  ``serverip`` and ``tftpwindowsize`` (and ``ipaddr`` given ``board_ip``) in
  U-Boot's environment for it, and does not save the environment;
- ``ymodem`` / ``xmodem``: over the console itself, U-Boot's ``loady`` /
  ``loadx`` (``otto.hosts.deploy.ymodem``);
- ``shell``: a host at a shell gets the file with ``put`` into the folder
  ``address`` (default ``/tmp``) (``otto.hosts.deploy.shell``).

What landed is checked by the receiver itself: U-Boot's ``crc32 ADDR SIZE``
against the file's CRC-32 (``sha256sum`` on a shell). A mismatch is a
``Status.Error`` result naming the host, the image and both values.

An image already deployed at the same place (same SHA-256, recorded per host
and target in the lab's reservation store, so every machine of the lab sees
it) is skipped unless ``force``: the result has ``skipped`` set and moved no
bytes. The record alone is not trusted: the bootloader's checksum of what is
at the address (or the shell's SHA-256 of the file) must match it too, so a
board whose memory was lost (a power cycle) is loaded again.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

from otto.hosts.deploy.bootloader import DeployError, bootloader_crc32, default_address
from otto.hosts.deploy.image import Image, read_image
from otto.hosts.deploy.records import Deployment, DeployRecords
from otto.result import Status, TransferResult

if TYPE_CHECKING:
    import os

    from otto.hosts.apps import App
    from otto.hosts.base import Host

__all__ = [
    "BOOTLOADER_PROMPT",
    "DeployError",
    "DeployRecords",
    "DeployResult",
    "Deployment",
    "Via",
    "bootloader_prompt",
    "deploy",
    "parse_address",
]

log = logging.getLogger("otto.deploy")

Via = Literal["tftp", "ymodem", "xmodem", "shell"]
VIAS: tuple[str, ...] = get_args(Via)

_LEADING_FLAGS = re.compile(r"\A\(\?[aiLmsux]+\)")

BOOTLOADER_PROMPT = r"(?m)^=> "
"""U-Boot's prompt at the start of a line: ``crc32`` prints ``... ==> `` before it
computes the sum, and a prompt matched there would cut its answer short."""


@dataclass(frozen=True, slots=True)
class DeployResult(TransferResult):
    """The outcome of ``deploy``: a ``TransferResult`` with what identifies the image."""

    skipped: bool = False
    """The same image was there already (recorded and checked): nothing was sent."""
    via: str = ""
    target: str = ""
    """Where it went: the load address (``0x40200000``) or the path on the host."""
    sha256: str = ""
    crc32: int = 0
    """The file's CRC-32, which the bootloader's matched."""


def bootloader_prompt(host: Host, given: str | None) -> str | re.Pattern[str]:
    """The prompt to wait for: ``given``, else the lab's ``boot.bootloader_prompt`` held to
    a line's start, else ``BOOTLOADER_PROMPT``."""
    if given is not None:
        return given
    spec = host.boot_spec
    if spec is None or not spec.bootloader_prompt:
        return BOOTLOADER_PROMPT
    compiled = re.compile(spec.bootloader_prompt)
    body = _LEADING_FLAGS.sub("", compiled.pattern)  # inline flags must lead the whole
    return re.compile(rf"^(?:{body})", compiled.flags | re.MULTILINE)


def parse_address(address: int | str | None) -> int | None:
    """``0x40200000``, ``40200000`` (hex, as U-Boot reads it) or an int -> the address.

    Raises:
        ValueError: not an address.
    """
    if address is None or isinstance(address, int):
        return address
    text = address.strip().lower()
    try:
        return int(text, 16)
    except ValueError:
        raise ValueError(f"{address!r} is no address (write it in hex: 0x40200000)") from None


async def deploy(
    host: Host,
    path: str | os.PathLike[str],
    *,
    via: Via = "tftp",
    address: int | str | None = None,
    force: bool = False,
    records: DeployRecords | None = None,
    prompt: str | None = None,
    server: str | None = None,
    board_ip: str | None = None,
    timeout: float = 300.0,
) -> DeployResult:
    """Load the image at ``path`` onto ``host`` (see the module's description).

    Args:
        via: ``"tftp"``, ``"ymodem"``, ``"xmodem"`` (through U-Boot on the
            console) or ``"shell"`` (a host at a shell).
        address: the load address (default: U-Boot's ``loadaddr``); for
            ``"shell"`` the folder on the host (default ``/tmp``).
        force: load even when the same image is recorded there.
        records: where deployments are recorded (default: the reservation
            store ``$OTTO_RESERVATIONS`` names, else the default SQLite file;
            the CLI passes the lab's own).
        prompt: the bootloader's prompt (default: the lab's
            ``boot.bootloader_prompt`` at a line's start, else U-Boot's ``=> ``).
            The host must be at it (``await host.goto("bootloader")``).
        server: for TFTP, ``ADDR[:PORT]`` otto serves on and the board fetches
            from (default: the board's ``serverip``, else this machine's
            address on the route to the board's ``ipaddr``).
        board_ip: for TFTP, set the board's ``ipaddr`` first.
        timeout: seconds the transfer itself may take.

    Returns:
        ``Status.Success`` (``skipped`` when nothing had to be sent), or
        ``Status.Error`` with ``error`` naming the host, the image and what
        went wrong (a checksum mismatch gives both values).

    Raises:
        ValueError: an unknown ``via`` or a malformed ``address``.
        ConnectError, ExpectTimeout: the host's console or shell could not be used.
    """
    if via not in VIAS:
        raise ValueError(f"via must be one of {', '.join(VIAS)}, not {via!r}")
    where = None if via == "shell" else parse_address(address)
    started = time.monotonic()
    image = await read_image(path)
    from otto.hosts.deploy.store import default_records

    owned = None
    if records is None:
        owned = records = default_records()
    store: DeployRecords = records
    try:
        if via == "shell":
            folder = None if address is None else str(address)
            return await _deploy_shell(
                host, image, folder=folder, force=force, store=store, started=started
            )
        async with host.open_app(None, bootloader_prompt(host, prompt)) as app:
            return await _deploy_bootloader(
                app,
                host,
                image,
                via=via,
                address=where,
                force=force,
                store=store,
                started=started,
                server=server,
                board_ip=board_ip,
                timeout=timeout,
            )
    except DeployError as exc:
        return DeployResult(
            Status.Error,
            duration=time.monotonic() - started,
            error=str(exc),
            via=via,
            sha256=image.sha256,
            crc32=image.crc32,
        )
    finally:
        if owned is not None:
            await owned.close()


async def _deploy_bootloader(
    app: App,
    host: Host,
    image: Image,
    *,
    via: str,
    address: int | None,
    force: bool,
    store: DeployRecords,
    started: float,
    server: str | None,
    board_ip: str | None,
    timeout: float,
) -> DeployResult:
    from otto.hosts.deploy import tftp, ymodem

    if address is None:
        address = await default_address(app, host.name)
    target = f"{address:#x}"

    def result(moved: int, *, skipped: bool = False) -> DeployResult:
        return DeployResult(
            Status.Success,
            files=[target],
            bytes=moved,
            duration=time.monotonic() - started,
            skipped=skipped,
            via=via,
            target=target,
            sha256=image.sha256,
            crc32=image.crc32,
        )

    if not force and await _recorded(store, host.name, target, image):
        there = await bootloader_crc32(app, host.name, address, image.size)
        if there == image.crc32:
            log.info("%s: %s is at %s already; not sent again", host.name, image.name, target)
            return result(0, skipped=True)
        log.info(
            "%s: %s is recorded at %s but the memory there differs (crc32 %08x): sending it",
            host.name,
            image.name,
            target,
            there,
        )
    await store.forget_deployment(host.name, target)
    if via == "tftp":
        loaded = await tftp.load(
            app, host.name, image, address, server=server, board_ip=board_ip, timeout=timeout
        )
    else:
        protocol: ymodem.Protocol = "ymodem" if via == "ymodem" else "xmodem"
        loaded = await ymodem.load(
            app, host.name, image, address, protocol=protocol, timeout=timeout
        )
    # XMODEM pads the last block: the bootloader may hold more than the file, never less.
    if loaded < image.size or (via != "xmodem" and loaded != image.size):
        raise DeployError(
            f"{host.name}: {image.name} is {image.size} bytes but the bootloader "
            f"received {loaded} over {via}"
        )
    there = await bootloader_crc32(app, host.name, address, image.size)
    if there != image.crc32:
        raise DeployError(
            f"{host.name}: {image.name} did not land intact at {target} over {via}: "
            f"the bootloader's crc32 is {there:08x}, the file's {image.crc32:08x}"
        )
    await store.record_deployment(_record(host, target, image, via))
    return result(image.size)


async def _deploy_shell(
    host: Host,
    image: Image,
    *,
    folder: str | None,
    force: bool,
    store: DeployRecords,
    started: float,
) -> DeployResult:
    from otto.hosts.deploy import shell

    target = shell.target_path(image, folder)
    skipped = False
    if not force and await _recorded(store, host.name, target, image):
        skipped = await shell.remote_sha256(host, target) == image.sha256
    moved = 0
    if not skipped:
        await store.forget_deployment(host.name, target)
        moved = await shell.load(host, image, folder)
        await store.record_deployment(_record(host, target, image, "shell"))
    return DeployResult(
        Status.Success,
        files=[target],
        bytes=moved,
        duration=time.monotonic() - started,
        skipped=skipped,
        via="shell",
        target=target,
        sha256=image.sha256,
        crc32=image.crc32,
    )


async def _recorded(store: DeployRecords, host: str, target: str, image: Image) -> bool:
    found = await store.deployment(host, target)
    return found is not None and found.sha256 == image.sha256


def _record(host: Host, target: str, image: Image, via: str) -> Deployment:
    from otto.hosts.deploy.store import who

    return Deployment(host.name, target, image.sha256, str(image.path), image.size, via, who())
