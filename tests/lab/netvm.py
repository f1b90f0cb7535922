"""The Linux target of tests/lab/linuxvm.py with a network, and tc netem, iperf3 in it.

``async with NetVM() as vm:`` makes a network namespace of its own holding a
tap device ``tap0`` (``HOST_IP`` and a second address, ``OTHER_IP``), boots
QEMU inside it with a virtio network card on that tap, and returns at the
VM's login prompt; its ``eth0`` has ``VM_IP``. The namespace is private to
this VM, so the addresses are the same in every run. On leaving, QEMU is
stopped and the namespace (with the tap) deleted.

The VM's initramfs carries the modules of Debian's kernel that its own
configuration leaves out of the image (virtio's PCI and network drivers,
``sch_netem``, ``sch_htb``, ``sch_prio``, ``cls_u32``), loaded at boot, and this
machine's ``tc`` (iproute2) and ``iperf3`` with their libraries: a kernel with
netem, whatever kernel this machine runs. Its ``/bin/sh`` is busybox's shell,
which runs busybox's own ``tc`` (no netem) for the bare name: otto's netem
scripts run iproute2's by its full path.
``vm.here(argv)`` is ``argv`` run in the namespace, the VM's side of the link
seen from this machine.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

from tests.lab.linuxvm import LinuxVM
from tests.lab.netns import LabError, ip, ip_sync

__all__ = ["HOST_IP", "NETEM_MODULES", "OTHER_IP", "VM_IFACE", "VM_IP", "NetVM"]

VM_IP = "10.77.0.2"
HOST_IP = "10.77.0.1"
OTHER_IP = "10.77.0.3"
"""A second address of the namespace's side: traffic to it is another peer's."""
VM_IFACE = "eth0"
NETEM_MODULES = ("virtio_pci", "virtio_net", "sch_netem", "sch_htb", "sch_prio", "cls_u32")
PROGRAMS = ("tc", "iperf3")
_TAP = "tap0"


class NetVM(LinuxVM):
    """``LinuxVM`` on a tap in a namespace of its own (``netns``), with netem and iperf3."""

    def __init__(self, *, boot_timeout: float = 240.0, memory: str = "256M") -> None:
        super().__init__(
            boot_timeout=boot_timeout,
            memory=memory,
            modules=NETEM_MODULES,
            programs=PROGRAMS,
            address=f"{VM_IP}/24",
        )
        self.netns = ""

    def here(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run in the VM's namespace (``ip netns exec``)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def qemu_command(self, kernel: Path, initrd: Path, chardev: str) -> list[str]:
        argv = super().qemu_command(kernel, initrd, chardev)
        nic = argv.index("-nic")
        argv[nic : nic + 2] = [
            "-netdev",
            f"tap,id=net0,ifname={_TAP},script=no,downscript=no",
            "-device",
            "virtio-net-pci,netdev=net0",
        ]
        return self.here(argv)

    async def start(self) -> None:
        await self._make_network()
        await super().start()

    async def _make_network(self) -> None:
        """The namespace, its tap and its two addresses."""
        for n in range(1, 250):
            netns = f"otto-netvm-{os.getpid()}-{n}"
            try:
                await ip("netns", "add", netns)
            except LabError:
                continue
            self.netns = netns
            break
        else:
            raise LabError("no free name for the Linux VM's network namespace")
        await ip("-n", self.netns, "tuntap", "add", "dev", _TAP, "mode", "tap")
        await ip("-n", self.netns, "addr", "add", f"{HOST_IP}/24", "dev", _TAP)
        await ip("-n", self.netns, "addr", "add", f"{OTHER_IP}/24", "dev", _TAP)
        await ip("-n", self.netns, "link", "set", _TAP, "up")
        await ip("-n", self.netns, "link", "set", "lo", "up")

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            if self.netns:
                with contextlib.suppress(OSError):
                    ip_sync("netns", "del", self.netns, check=False)
                self.netns = ""
