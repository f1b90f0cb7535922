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

The same package holds the kernel's modules: ``kernel_modules(names)`` takes
the ones named and what they depend on (read from each module's ``depends=``;
the package has no ``modules.dep``, depmod makes it on install) out of it, once,
decompressed, in load order; ``LinuxVM(modules=..., programs=..., address=...)``
puts them, host programs and an address for ``eth0`` into its initramfs (one
cached archive per kernel and content of what goes in; see tests/lab/netvm.py
for a VM with a network).

The kernel line has ``panic=1``: after a panic the guest restarts by itself
(QEMU runs without ``-no-reboot``), so ``reboot`` and a crash both bring the
login back on the same console.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gzip
import hashlib
import lzma
import os
import re
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal, Self

from tests.lab import procs
from tests.lab.initramfs import BUSYBOX, HOSTNAME, build_initramfs, shared_libraries

__all__ = [
    "HOSTNAME",
    "KERNEL_PACKAGE",
    "LOGIN_PROMPT",
    "VM_PASSWORD",
    "VM_USER",
    "LinuxVM",
    "cache_dir",
    "initramfs_image",
    "kernel_image",
    "kernel_modules",
    "kernel_release",
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


def kernel_release(folder: Path | None = None) -> str:
    """The cached kernel's release (``6.1.0-57-cloud-amd64``), from its package's name."""
    folder = folder or cache_dir()
    kernel_image(folder)
    package = (folder / "kernel-package").read_text().strip()
    return package.removeprefix("linux-image-")


_MODULE_SUFFIX = re.compile(r"\.ko(\.xz|\.gz|\.zst)?$")


def _module_name(path: str) -> str:
    """``kernel/net/sched/sch_netem.ko.xz`` -> ``sch_netem`` (``-`` and ``_`` are one)."""
    return _MODULE_SUFFIX.sub("", path.rsplit("/", 1)[-1]).replace("-", "_")


def _decompress(name: str, data: bytes) -> bytes:
    """A module as busybox ``insmod`` loads it: ``.xz`` and ``.gz`` undone here."""
    if name.endswith(".xz"):
        return lzma.decompress(data)
    if name.endswith(".gz"):
        return gzip.decompress(data)
    if name.endswith(".zst"):
        zstd = shutil.which("zstd")
        if zstd is None:
            raise OSError(f"{name} is zstd-compressed and zstd is not installed (package zstd)")
        done = subprocess.run([zstd, "-dc"], input=data, capture_output=True, check=True)
        return done.stdout
    return data


def _depends(module: bytes) -> list[str]:
    """The ``depends=`` of a module's ``.modinfo`` (the modules it needs loaded first)."""
    found = re.search(rb"(?:^|\0)depends=([^\0]*)\0", module)
    if found is None or not found.group(1):
        return []
    return [name.decode().replace("-", "_") for name in found.group(1).split(b",")]


def _extract_modules(deb: Path, release: str, into: Path) -> dict[str, Path]:
    """Every module of ``release`` in the package, decompressed into ``into``, by name."""
    found: dict[str, Path] = {}
    pattern = re.compile(rf"(\./)?lib/modules/{re.escape(release)}/kernel/.+\.ko(\.xz|\.gz|\.zst)?")
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        with tarfile.open(fileobj=proc.stdout, mode="r|*") as tar:
            for member in tar:
                if not (member.isfile() and pattern.fullmatch(member.name)):
                    continue
                source = tar.extractfile(member)
                assert source is not None
                name = _module_name(member.name)
                path = into / f"{name}.ko"
                path.write_bytes(_decompress(member.name, source.read()))
                found[name] = path
        proc.stdout.close()
        proc.wait()
    return found


def _load_order(names: Sequence[str], available: dict[str, Path]) -> list[str]:
    """``names`` and what they depend on, each after its dependencies."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str, wanted_by: str) -> None:
        if name in order:
            return
        if name not in available:
            raise OSError(f"the kernel package has no module {name}" + wanted_by)
        if name in visiting:
            raise OSError(f"modules depend on each other in a circle through {name}")
        visiting.add(name)
        for needed in _depends(available[name].read_bytes()):
            visit(needed, f" (needed by {name})")
        visiting.discard(name)
        order.append(name)

    for name in names:
        visit(name.replace("-", "_"), "")
    return order


def kernel_modules(names: Sequence[str], folder: Path | None = None) -> list[Path]:
    """The cached kernel's modules ``names`` and their dependencies, in load order.

    Taken out of the kernel's package (downloaded again the first time, not
    kept), decompressed, into ``modules-RELEASE/``; a list of what each
    request loads, in order, is kept beside them so a later run reads no package.
    """
    folder = folder or cache_dir()
    release = kernel_release(folder)
    where = folder / f"modules-{release}"
    request = hashlib.sha256(",".join(names).encode()).hexdigest()[:16]
    listing = where / f"order-{request}"

    def cached() -> list[Path] | None:
        if not listing.exists():
            return None
        paths = [where / f"{name}.ko" for name in listing.read_text().split()]
        return paths if all(path.exists() for path in paths) else None

    if (paths := cached()) is not None:
        return paths
    with _locked(folder):
        if (paths := cached()) is not None:
            return paths
        where.mkdir(exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="otto-modules-", dir=folder) as tmp:
            work = Path(tmp)
            os.chmod(work, 0o755)
            package = (folder / "kernel-package").read_text().strip()
            available = _extract_modules(_download(package, work), release, work)
            order = _load_order(names, available)
            for name in order:
                shutil.copyfile(available[name], where / f"{name}.ko")
        listing.write_text(" ".join(order) + "\n")
    return [where / f"{name}.ko" for name in order]


def _digest(*files: Path) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def initramfs_image(
    folder: Path | None = None,
    *,
    modules: Sequence[Path] = (),
    programs: Sequence[Path] = (),
    shell: Path | None = None,
    address: str | None = None,
) -> Path:
    """The cached initramfs (rebuilt when busybox or this lab's files change).

    With ``modules``, ``programs``, ``shell`` or ``address`` (see tests/lab/initramfs.py),
    an archive of its own, named by the kernel's release and a hash of what was
    asked, rebuilt when the content of anything that goes in changes (the
    programs' libraries too): one archive per kind of VM, not one per change.
    """
    folder = folder or cache_dir()
    here = Path(__file__).with_name("initramfs.py")
    parts = f"{BUSYBOX.stat().st_mtime_ns}-{here.stat().st_mtime_ns}-{VM_USER}-{VM_PASSWORD}"
    target = folder / "initramfs.cpio.gz"
    stamp = folder / "initramfs.key"
    if modules or programs or shell is not None or address is not None:
        everything = [*programs, *([shell] if shell is not None else [])]
        asked = "\0".join(map(str, [*modules, "", *everything, "", address]))
        short = hashlib.sha256(asked.encode()).hexdigest()[:12]
        name = f"initramfs-{kernel_release(folder)}-{short}"
        libraries = [lib for program in everything for lib in shared_libraries(program)]
        parts += f"-{_digest(*modules, *everything, *libraries)}-{address}"
        target = folder / f"{name}.cpio.gz"
        stamp = folder / f"{name}.key"
    key = hashlib.sha256(parts.encode()).hexdigest()
    with _locked(folder):
        if not target.exists() or not stamp.exists() or stamp.read_text() != key:
            build_initramfs(
                target,
                user=VM_USER,
                password=VM_PASSWORD,
                modules=modules,
                programs=programs,
                shell=shell,
                address=address,
            )
            stamp.write_text(key)
    return target


class LinuxVM:
    """QEMU running Linux; ``port`` is its serial console (one client at a time).

    ``telnet=True`` serves the console with the telnet protocol instead of raw TCP.
    ``modules`` (names, loaded at boot with their dependencies), ``programs``
    (host binaries), ``shell`` (a host shell as ``/bin/sh``) and ``address``
    (``eth0``'s) go into an initramfs of their own.
    """

    def __init__(
        self,
        *,
        boot_timeout: float = 180.0,
        memory: str = "256M",
        telnet: bool = False,
        modules: Sequence[str] = (),
        programs: Sequence[str] = (),
        shell: str | None = None,
        address: str | None = None,
    ) -> None:
        self.port = 0
        self.boot_timeout = boot_timeout
        self.memory = memory
        self.telnet = telnet
        self.modules = tuple(modules)
        self.programs = tuple(programs)
        self.shell = shell
        self.ip_address = address
        self.boot_seconds = 0.0
        """Seconds from QEMU's start to the first login prompt."""
        self.kernel_package = ""
        self._seen = b""
        self._proc: asyncio.subprocess.Process | None = None

    def _initramfs(self) -> Path:
        if not (self.modules or self.programs or self.shell or self.ip_address is not None):
            return initramfs_image()
        found: dict[str, Path] = {}
        for name in (*self.programs, *([self.shell] if self.shell else [])):
            where = shutil.which(name)
            if where is None:
                raise OSError(f"{name} is not installed here (the VM gets this machine's copy)")
            found[name] = Path(where)
        return initramfs_image(
            modules=kernel_modules(self.modules) if self.modules else [],
            programs=[found[name] for name in self.programs],
            shell=found[self.shell] if self.shell else None,
            address=self.ip_address,
        )

    def qemu_command(self, kernel: Path, initrd: Path, chardev: str) -> list[str]:
        """QEMU's command line (a subclass adds its network or runs it elsewhere)."""
        return [
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
        ]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def protocol(self) -> Literal["telnet", "raw"]:
        return "telnet" if self.telnet else "raw"

    async def __aenter__(self) -> Self:
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
        initrd = await asyncio.to_thread(self._initramfs)
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
                *self.qemu_command(kernel, initrd, chardev),
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
