"""A real Linux target: Debian's cloud kernel booted in QEMU x86_64 (TCG), a busybox
initramfs, its serial console (``console=ttyS0``) on a TCP port.

``async with LinuxVM() as vm:`` starts QEMU on a free loopback port, returns
once getty asks for a login on the console, and stops QEMU on leaving (no
qemu is left behind, whatever happened). ``vm.boot_seconds`` is how long the
boot took, from QEMU's start to the login prompt.

The kernel is the one of Debian's ``linux-image-cloud-amd64``: its package is
fetched with ``apt-get download`` (nothing is installed on this machine) and
its ``vmlinuz`` taken out of it, once, into a cache folder every later run
reuses (``$OTTO_TEST_CACHE``, else ``/var/cache/otto-test`` when writable,
else ``~/.cache/otto-test``). The initramfs is built by tests/lab/initramfs.py.

The kernel line has ``panic=1``: after a panic the guest restarts by itself
(QEMU runs without ``-no-reboot``), so ``reboot`` and a crash both bring the
login back on the same console.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.lab import procs
from tests.lab.initramfs import BUSYBOX, HOSTNAME, build_initramfs

__all__ = [
    "HOSTNAME",
    "KERNEL_PACKAGE",
    "LOGIN_PROMPT",
    "VM_PASSWORD",
    "VM_USER",
    "LinuxVM",
    "cache_dir",
    "kernel_image",
    "linuxvm_missing",
]

KERNEL_PACKAGE = "linux-image-cloud-amd64"
VM_USER = "root"
VM_PASSWORD = "otto-vm-pw1"
LOGIN_PROMPT = re.compile(rb"login: $")
QEMU = "qemu-system-x86_64"
KERNEL_ARGS = "console=ttyS0,115200 panic=1 quiet"
"""``quiet`` keeps the boot short on a serial console; messages of level 3 (error) and
more urgent still print, as a panic does."""


def linuxvm_missing() -> str | None:
    """Why the Linux VM cannot run here (for a skip), or None."""
    for tool, package in ((QEMU, "qemu-system-x86"), ("apt-get", "apt"), ("dpkg-deb", "dpkg")):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Debian package {package}; scripts/install-system-deps)"
    if not BUSYBOX.exists():
        return f"{BUSYBOX} is missing (Debian package busybox-static)"
    if shutil.which("openssl") is None:
        return "openssl is not installed (it hashes the VM's password)"
    return None


def cache_dir() -> Path:
    """Where the kernel and the initramfs are kept between runs."""
    chosen = os.environ.get("OTTO_TEST_CACHE")
    if chosen:
        folder = Path(chosen)
    else:
        system = Path("/var/cache/otto-test")
        if os.access(system.parent, os.W_OK) or os.access(system, os.W_OK):
            folder = system
        else:
            folder = Path.home() / ".cache" / "otto-test"
    folder = folder / "linuxvm"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """One process at a time fills the cache (pytest-xdist workers share it)."""
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def _download(package: str, into: Path) -> Path:
    """``apt-get download`` one package into ``into``; its .deb.

    apt needs its package lists: when the first try fails, ``apt-get update``
    runs once and the download is tried again.
    """
    done = _run(["apt-get", "download", "-q", package], into)
    if done.returncode != 0:
        updated = _run(["apt-get", "update", "-qq"], into)
        done = _run(["apt-get", "download", "-q", package], into)
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip()[-500:]
            update = updated.stderr.strip()[-300:]
            raise OSError(
                f"apt-get download {package} failed ({done.returncode}): {said}"
                + (f"; apt-get update said: {update}" if update else "")
            )
    debs = sorted(into.glob(f"{package}_*.deb"))
    if not debs:
        raise OSError(f"apt-get download {package} left no .deb in {into}")
    return debs[-1]


def _depends_on_image(deb: Path) -> str:
    """The versioned kernel package a metapackage (``linux-image-cloud-amd64``) depends on."""
    done = _run(["dpkg-deb", "-f", str(deb), "Depends"], deb.parent)
    for alternative in re.split(r"[,|]", done.stdout):
        name = alternative.strip().split(" ")[0]
        if name.startswith("linux-image-"):
            return name
    raise OSError(f"{deb.name} depends on no linux-image package: {done.stdout.strip()!r}")


def _extract_vmlinuz(deb: Path, target: Path) -> None:
    """Stream the package's data and keep its ``boot/vmlinuz-*`` only, as ``target``."""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        found = False
        with tarfile.open(fileobj=proc.stdout, mode="r|*") as tar:
            for member in tar:
                if member.isfile() and re.fullmatch(r"(\./)?boot/vmlinuz-.*", member.name):
                    source = tar.extractfile(member)
                    assert source is not None
                    tmp = target.with_name(target.name + ".tmp")
                    with tmp.open("wb") as out:
                        shutil.copyfileobj(source, out)
                    tmp.replace(target)
                    found = True
                    break
        proc.stdout.close()
        proc.kill()
    if not found:
        raise OSError(f"{deb.name} holds no boot/vmlinuz-*")


def kernel_image(folder: Path | None = None) -> Path:
    """The cached kernel (``vmlinuz``), fetched from Debian's package the first time."""
    folder = folder or cache_dir()
    target = folder / "vmlinuz"
    if target.exists():
        return target
    with _locked(folder):
        if target.exists():
            return target
        with tempfile.TemporaryDirectory(prefix="otto-kernel-", dir=folder) as tmp:
            work = Path(tmp)
            os.chmod(work, 0o755)  # apt's _apt user writes there when it can
            meta = _download(KERNEL_PACKAGE, work)
            image = _depends_on_image(meta)
            _extract_vmlinuz(_download(image, work), target)
            (folder / "kernel-package").write_text(image + "\n")
    return target


def initramfs_image(folder: Path | None = None) -> Path:
    """The cached initramfs (rebuilt when busybox or this lab's files change)."""
    folder = folder or cache_dir()
    here = Path(__file__).with_name("initramfs.py")
    parts = f"{BUSYBOX.stat().st_mtime_ns}-{here.stat().st_mtime_ns}-{VM_USER}-{VM_PASSWORD}"
    key = hashlib.sha256(parts.encode()).hexdigest()
    target = folder / "initramfs.cpio.gz"
    stamp = folder / "initramfs.key"
    with _locked(folder):
        if not target.exists() or not stamp.exists() or stamp.read_text() != key:
            build_initramfs(target, user=VM_USER, password=VM_PASSWORD)
            stamp.write_text(key)
    return target


class LinuxVM:
    """QEMU running Linux; ``port`` is its serial console (one client at a time).

    ``telnet=True`` serves the console with the telnet protocol instead of raw TCP.
    """

    def __init__(
        self, *, boot_timeout: float = 180.0, memory: str = "256M", telnet: bool = False
    ) -> None:
        self.port = 0
        self.boot_timeout = boot_timeout
        self.memory = memory
        self.telnet = telnet
        self.boot_seconds = 0.0
        """Seconds from QEMU's start to the first login prompt."""
        self.kernel_package = ""
        self._seen = b""
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def protocol(self) -> str:
        return "telnet" if self.telnet else "raw"

    async def __aenter__(self) -> LinuxVM:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Fetch the kernel if needed, boot QEMU and wait until getty asks for a login.

        The listening socket is made here and handed to QEMU, so the port is
        known and accepting before QEMU runs (no race for it, no polling).
        """
        kernel = await asyncio.to_thread(kernel_image)
        initrd = await asyncio.to_thread(initramfs_image)
        package = kernel.with_name("kernel-package")
        self.kernel_package = package.read_text().strip() if package.exists() else ""
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)
            self.port = listener.getsockname()[1]
            fd = listener.fileno()
            chardev = f"socket,id=console,fd={fd},server=on,wait=off"
            if self.telnet:
                chardev += ",telnet=on"
            started = time.monotonic()
            self._proc = await asyncio.create_subprocess_exec(
                QEMU,
                "-machine",
                "q35,accel=tcg",
                "-m",
                self.memory,
                "-smp",
                "1",
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-nic",
                "none",
                "-monitor",
                "none",
                "-kernel",
                str(kernel),
                "-initrd",
                str(initrd),
                "-append",
                KERNEL_ARGS,
                "-chardev",
                chardev,
                "-serial",
                "chardev:console",
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                pass_fds=(fd,),
                start_new_session=True,
            )
        try:
            async with asyncio.timeout(self.boot_timeout):
                await self._wait_for_login()
        except TimeoutError:
            shown = self._seen[-300:].decode("utf-8", "replace")
            raise TimeoutError(
                f"the Linux VM showed no login prompt within {self.boot_timeout:g}s; "
                f"its console printed last: {shown!r}"
            ) from None
        self.boot_seconds = time.monotonic() - started

    async def _wait_for_login(self) -> None:
        """Read the console until getty's ``login:`` shows, then hang up (otto connects next)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            self._seen = seen = b""
            while not LOGIN_PROMPT.search(seen):
                chunk = await reader.read(4096)
                if not chunk:
                    error = b""
                    if self._proc is not None and self._proc.stderr is not None:
                        with contextlib.suppress(TimeoutError):
                            error = await asyncio.wait_for(self._proc.stderr.read(), 2)
                    raise OSError(
                        f"the Linux VM's console closed before a login prompt: {error.decode()!r}"
                    )
                self._seen = seen = (seen + chunk)[-4096:]
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def stop(self) -> None:
        """Stop QEMU (terminate, then kill) and reap it."""
        proc, self._proc = self._proc, None
        await procs.end_process(proc)
