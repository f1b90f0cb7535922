"""U-Boot in QEMU with a network: QEMU user networking inside a namespace of its own.

QEMU's user networking answers TFTP to its own gateway address (10.0.2.2)
with a TFTP server of its own, so a board there can reach otto's server only
at a real address. Each ``UBootNet`` gets a network namespace joined to this
one by a veth pair (``172.30.N.1`` here, ``172.30.N.2`` there): QEMU runs in
the namespace, and the board reaches this machine at ``server_ip`` (port 69,
which no other test binds on that address). The namespace and the veth are
deleted on leaving.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess

from tests.lab.netns import LabError, ip, ip_sync
from tests.lab.uboot import UBOOT_BIN, UBoot

__all__ = ["BOARD_IP", "UBootNet"]

BOARD_IP = "10.0.2.15"
"""The board's address on QEMU's user network (set as U-Boot's ``ipaddr``)."""

_SUBNETS = range(1, 250)


class UBootNet(UBoot):
    """``UBoot`` with a virtio network card on QEMU's user network, in a namespace of its own."""

    def __init__(self, *, boot_timeout: float = 30.0) -> None:
        super().__init__(boot_timeout=boot_timeout)
        self.netns = ""
        self.server_ip = ""
        self._link = ""

    async def start(self) -> None:
        await self._make_network()
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            self.port = listener.getsockname()[1]
            fd = listener.fileno()
            self._proc = await asyncio.create_subprocess_exec(
                "ip",
                "netns",
                "exec",
                self.netns,
                "qemu-system-arm",
                "-M",
                "virt",
                "-m",
                "64",
                "-nographic",
                "-bios",
                str(UBOOT_BIN),
                "-netdev",
                "user,id=net0",
                "-device",
                "virtio-net-device,netdev=net0",
                "-monitor",
                "none",
                "-chardev",
                f"socket,id=console,fd={fd},server=on,wait=off",
                "-serial",
                "chardev:console",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(fd,),
                start_new_session=True,
            )
        async with asyncio.timeout(self.boot_timeout):
            await self._wait_for_prompt()

    async def _make_network(self) -> None:
        """A namespace and a veth pair on the first free 172.30.N.0/30."""
        for n in _SUBNETS:
            # The link's name holds subnet N: creating it fails while another run has N.
            link = f"otto-ub{n}"
            netns = f"otto-uboot-{os.getpid()}-{n}"
            try:
                await ip("netns", "add", netns)
            except LabError:
                continue
            try:
                await ip(
                    "link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", netns
                )
            except LabError:
                ip_sync("netns", "del", netns, check=False)
                continue
            self.netns, self._link = netns, link
            here, there = f"172.30.{n}.1", f"172.30.{n}.2"
            await ip("addr", "add", f"{here}/30", "dev", link)
            await ip("link", "set", link, "up")
            await ip(
                "-n",
                netns,
                "addr",
                "add",
                f"{there}/30",
                "dev",
                "eth0",
            )
            await ip("-n", netns, "link", "set", "eth0", "up")
            await ip("-n", netns, "link", "set", "lo", "up")
            self.server_ip = here
            return
        raise LabError("no free 172.30.N.0/30 subnet for U-Boot's network")

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            if self._link:
                ip_sync("link", "del", self._link, check=False)
                self._link = ""
            if self.netns:
                with contextlib.suppress(OSError):
                    ip_sync("netns", "del", self.netns, check=False)
                self.netns = ""
