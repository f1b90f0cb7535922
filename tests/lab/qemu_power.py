"""QEMU boards with a power switch: the console on a TCP port, power through QEMU's monitor.

``async with PoweredBoard(tmp) as board:`` starts qemu-system-arm with
Debian's qemu_arm U-Boot (``PoweredLinux``: the Linux target of
tests/lab/linuxvm.py, its kernel loaded by QEMU), its serial console on a
loopback port (the board's ``address``) and its human monitor on a Unix
socket. ``board.power_fields()`` gives the commands a lab's ``power`` field
would hold: each runs this file as a script that speaks to the monitor, the
way a PDU's tool speaks to a PDU::

    python3 qemu_power.py SOCKET on       # reset and run, when stopped
    python3 qemu_power.py SOCKET off      # stop the CPU: the console goes silent
    python3 qemu_power.py SOCKET cycle    # reset and run
    python3 qemu_power.py SOCKET status   # prints "VM status: running" or "...: paused"

Each monitor command is written once its ``(qemu)`` prompt shows, and the
script ends once the prompt after the last command shows: the reset has
happened when the command returns. The board starts off (``-S``), unless
``running=True``.
"""

from __future__ import annotations

import asyncio
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["PoweredBoard", "PoweredLinux", "monitor"]

_PROMPT = b"(qemu) "
_ACTIONS = {
    "off": ("stop",),
    "on": (),
    "cycle": ("system_reset", "cont"),
    "status": ("info status",),
}


def monitor(path: str, commands: tuple[str, ...], timeout: float = 10.0) -> str:
    """Run ``commands`` on the QEMU monitor at ``path``; what the last one printed."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        answer = b""

        def until_prompt() -> bytes:
            seen = b""
            while not seen.endswith(_PROMPT):
                chunk = sock.recv(4096)
                if not chunk:
                    raise OSError("the QEMU monitor closed")
                seen += chunk
            return seen

        until_prompt()
        for command in commands:
            sock.sendall(command.encode() + b"\n")
            answer = until_prompt()
    text = answer.decode(errors="replace").replace("\r", "")
    # The monitor echoes the command line (with terminal escapes) before its answer.
    lines = [line for line in text.split("\n")[1:] if line and not line.startswith("(qemu)")]
    return "\n".join(lines)


def _console_peer(path: str) -> str:
    """Who QEMU forwards the console to: ``127.0.0.1:PORT``, or "" for nobody."""
    for line in monitor(path, ("info chardev",)).splitlines():
        if line.startswith("console:"):
            return line.partition(" <-> ")[2].strip()
    return ""


def _power_on(path: str, bound: float = 2.0) -> None:
    """Start a stopped board from its reset, once QEMU forwards its console to a client
    that is not the one it had when the board went off (or after ``bound`` seconds).

    QEMU takes a client that reconnected only once it has seen the old one go;
    a console server forwards from the moment one is connected. Waiting for the
    new client makes the fake a console server's equal: what the board prints
    from power-on reaches the client connected by then.

    Unlike a board that is off, the stopped one keeps a key typed into it in its
    UART (QEMU 7.2's reset does not empty it) and U-Boot reads it at power-on.
    """
    peer = Path(path + ".off-peer")
    gone = peer.read_text() if peer.exists() else ""
    deadline = time.monotonic() + bound
    while _console_peer(path) in ("", gone) and time.monotonic() < deadline:
        time.sleep(0.02)  # QEMU's own state, read through its monitor: there is no event
    monitor(path, ("system_reset", "cont"))


def _main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] not in _ACTIONS:
        sys.stderr.write("usage: qemu_power.py SOCKET on|off|cycle|status\n")
        return 2
    path, action = argv
    running = "running" in monitor(path, ("info status",))
    if action == "off":
        Path(path + ".off-peer").write_text(_console_peer(path))
    elif action == "on" or (action == "cycle" and not running):
        if not running:  # a PDU's "on" does nothing to a board that is on
            _power_on(path)
        return 0
    output = monitor(path, _ACTIONS[action])
    if output:
        print(output)
    return 0


class PoweredBoard:
    """qemu-system-arm running U-Boot; ``address`` is its console, ``monitor_path`` its switch."""

    def __init__(self, folder: Path, *, running: bool = False) -> None:
        self.folder = folder
        self.running = running
        self.port = 0
        self.monitor_path = str(folder / "qemu-monitor.sock")
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self, action: str) -> str:
        """The shell command that does ``action`` to this board."""
        return shlex.join([sys.executable, __file__, self.monitor_path, action])

    def power_fields(self) -> dict[str, str]:
        """The board's lab field ``power``: on, off, cycle and status commands, and what
        status prints when on and off."""
        fields = {a: self.command(a) for a in ("on", "off", "cycle", "status")}
        return {**fields, "on_pattern": "running", "off_pattern": "paused"}

    async def __aenter__(self) -> PoweredBoard:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def qemu_args(self) -> list[str]:
        """QEMU's machine, firmware and boot arguments (the console and monitor are added)."""
        from tests.lab.uboot import UBOOT_BIN

        return [
            "qemu-system-arm",
            "-M",
            "virt",
            "-m",
            "64",
            "-nographic",
            "-bios",
            str(UBOOT_BIN),
            "-nic",
            "none",
        ]

    async def start(self) -> None:
        """Start QEMU; return once its monitor answers (the console port accepts already)."""
        args = await self.qemu_args()
        with socket.socket() as listener, socket.socket(socket.AF_UNIX) as switch:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            self.port = listener.getsockname()[1]
            # Both sockets listen before QEMU runs: nothing to poll for.
            switch.bind(self.monitor_path)
            switch.listen(4)
            fd, mon = listener.fileno(), switch.fileno()
            self._proc = await asyncio.create_subprocess_exec(
                *args,
                *(() if self.running else ("-S",)),
                "-chardev",
                f"socket,id=monitor,fd={mon},server=on,wait=off",
                "-mon",
                "chardev=monitor,mode=readline",
                "-chardev",
                f"socket,id=console,fd={fd},server=on,wait=off",
                "-serial",
                "chardev:console",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(fd, mon),
                start_new_session=True,
            )
        # The monitor answers once QEMU runs.
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, monitor, self.monitor_path, ("info status",), 20.0)

    def status(self) -> str:
        """``running`` or ``paused``, as the monitor says."""
        said = monitor(self.monitor_path, ("info status",))
        return said.partition("VM status:")[2].split()[0]

    async def stop(self) -> None:
        """Stop QEMU (terminate, then kill) and reap it."""
        # Imported here: this file also runs as a script (the power commands).
        from tests.lab import procs

        proc, self._proc = self._proc, None
        await procs.end_process(proc)


class PoweredLinux(PoweredBoard):
    """The Linux target of tests/lab/linuxvm.py (its kernel and initramfs, no bootloader:
    QEMU loads the kernel), with the same power switch; it starts off."""

    async def qemu_args(self) -> list[str]:
        from tests.lab.linuxvm import KERNEL_ARGS, QEMU, initramfs_image, kernel_image

        kernel = await asyncio.to_thread(kernel_image)
        initrd = await asyncio.to_thread(initramfs_image)
        return [
            QEMU,
            "-machine",
            "q35,accel=tcg",
            "-m",
            "256M",
            "-smp",
            "1",
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-nic",
            "none",
            "-kernel",
            str(kernel),
            "-initrd",
            str(initrd),
            "-append",
            KERNEL_ARGS,
        ]


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
