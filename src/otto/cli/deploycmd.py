"""``otto host NAME deploy IMAGE [--via tftp] [--address 0x...] [--force]``.

Loads the image through each host's bootloader (or shell) with
``host.deploy``, recording it in the lab's reservation store, so an identical
image is skipped by whoever deploys next (``--force`` sends it anyway).
Exit status: 0 when every host has the image, 255 otherwise.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, cast

import typer

from otto.cli.exits import fail

if TYPE_CHECKING:
    from otto.hosts import Host
    from otto.hosts.deploy import DeployRecords, DeployResult, Via
    from otto.lab import Lab

__all__ = ["deploy_hosts", "describe", "host_deploy"]

_VIAS = ("tftp", "ymodem", "xmodem", "shell")


def describe(name: str, image: str, result: DeployResult) -> str:
    """The line printed for one host's deployment."""
    if not result.is_ok:
        text = result.error
        return text if text.startswith(name) else f"{name}: {text}"
    if result.skipped:
        return (
            f"{name}: {image} is at {result.target} already (sha256 {result.sha256[:12]}); "
            "not sent again (--force sends it)"
        )
    return (
        f"{name}: {image} deployed at {result.target} over {result.via} "
        f"({result.bytes} bytes in {result.duration:.2f}s, crc32 {result.crc32:08x} checked)"
    )


def deploy_hosts(
    lab: Lab,
    names: list[str],
    image: Path,
    *,
    via: str,
    address: str | None,
    force: bool,
    server: str | None = None,
    board_ip: str | None = None,
    timeout: float = 300.0,
) -> int:
    """Deploy ``image`` to each host of ``names``; the exit status (0 or 255)."""
    from otto.cli.interrupt import run_interruptible
    from otto.cli.output import EXIT_ERROR
    from otto.errors import OttoError
    from otto.reservations import open_store

    async def one(host: Host, records: DeployRecords) -> int:
        try:
            result = await host.deploy(
                image,
                via=cast("Via", via),
                address=address,
                force=force,
                records=records,
                server=server,
                board_ip=board_ip,
                timeout=timeout,
            )
        except (OttoError, OSError, ValueError) as exc:
            text = str(exc)
            sys.stderr.write(
                f"otto: {text if text.startswith(host.name) else f'{host.name}: {text}'}\n"
            )
            return EXIT_ERROR
        line = describe(host.name, image.name, result)
        if not result.is_ok:
            sys.stderr.write(f"otto: {line}\n")
            return EXIT_ERROR
        sys.stdout.write(line + "\n")
        sys.stdout.flush()
        return 0

    async def main() -> int:
        store = open_store(lab=lab)
        try:
            codes = await asyncio.gather(*(one(lab.host(name), store) for name in names))
        finally:
            await store.close()
        return max(codes, default=0)

    return run_interruptible(main(), lab)


def host_deploy(  # noqa: PLR0917 (typer passes each option as a parameter)
    ctx: typer.Context,
    image: Annotated[
        Path,
        typer.Argument(metavar="IMAGE", help="The image file to load.", show_default=False),
    ],
    via: Annotated[
        str,
        typer.Option(
            "--via",
            metavar="tftp|ymodem|xmodem|shell",
            help="How: TFTP served by otto from this machine, YMODEM or XMODEM over the "
            "console (U-Boot's loady/loadx), or a copy through the host's shell.",
        ),
    ] = "tftp",
    address: Annotated[
        str | None,
        typer.Option(
            "--address",
            metavar="0x...",
            help="The load address (default: U-Boot's loadaddr); with --via shell, the "
            "folder on the host (default /tmp).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Load it even if the same image is recorded there."),
    ] = False,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            metavar="ADDR[:PORT]",
            help="TFTP: this machine's address as the board reaches it, where otto serves "
            "(default: the board's serverip, else the address on the route to its ipaddr).",
            show_default=False,
        ),
    ] = None,
    board_ip: Annotated[
        str | None,
        typer.Option(
            "--board-ip",
            metavar="ADDR",
            help="TFTP: set the board's ipaddr first.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0, metavar="SECONDS", help="Seconds the transfer may take."),
    ] = 300.0,
) -> None:
    """Load an image through the host's bootloader, checked by the bootloader's crc32."""
    from otto.cli.guard import guard
    from otto.cli.hostcmds import apply_overrides, resolve_names
    from otto.errors import LabError
    from otto.lab import current_lab

    root = ctx.find_root().params
    if root.get("dry_run"):
        fail("--dry-run: deploy has no dry run (it would contact the hosts)")
    if via not in _VIAS:
        fail(f"--via takes {', '.join(_VIAS)}, not {via!r}")
    if not image.is_file():
        fail(f"{image}: no such image file")
    assert ctx.parent is not None
    params = ctx.parent.params
    lab = current_lab()
    try:
        names = resolve_names(lab, str(params["name"]))
        apply_overrides(lab, names, {f: params.get(f) for f in ("user", "port", "hop", "term")})
    except LabError as exc:
        fail(str(exc))
    guard(lab, names, force=bool(root.get("force")))
    raise typer.Exit(
        deploy_hosts(
            lab,
            names,
            image,
            via=via,
            address=address,
            force=force,
            server=server,
            board_ip=board_ip,
            timeout=timeout,
        )
    )
