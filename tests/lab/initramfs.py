"""A small busybox initramfs for the QEMU Linux target (tests/lab/linuxvm.py).

The archive is built here, in Python, as the kernel reads it: a gzip'd cpio
"newc" archive. It holds the static busybox, a ``/dev/console`` node (the
kernel opens it for init before anything is mounted), and busybox init's
configuration: the start-up script mounts proc, sys, devtmpfs and devpts, links
``/dev/stdin`` and the others to ``/proc/self/fd`` (as udev would),
turns every sysrq function on and installs the applets; ``getty`` then asks
for a login on ``ttyS0``, again after each logout. ``reboot`` goes through
busybox init (its shutdown actions, then the kernel's restart).

Options of the builder, for the targets that need more (the plain target
takes none of them, so its archive stays small):

- ``modules``: kernel modules (``.ko`` files, already decompressed) put in
  ``/lib/modules`` and loaded by the start-up script with busybox ``insmod``,
  in the order given (dependencies first);
- ``programs``: host binaries (``/usr/sbin/tc``, ``/usr/bin/iperf3``) copied at
  their own paths with the shared libraries ``ldd`` lists and the dynamic
  loader; a busybox applet of the same name (busybox has a ``tc`` without
  netem) is removed at boot so the real program is the one on ``PATH``;
- ``shell``: a host shell (``/usr/bin/bash``, copied as a program) made
  ``/bin/sh``, the login's and ``sh -c``'s shell: Debian's static busybox runs
  its own applet for any name it has (``tc`` among them) whatever ``PATH``
  says, so a program that shares an applet's name is reached only from
  another shell;
- ``address``: an interface address (``10.77.0.2/24``) the start-up script
  gives ``eth0`` (after the modules, so a network driver among them has made it).

Nothing needs root: device nodes are entries of the archive, not files.
"""

from __future__ import annotations

import gzip
import io
import ipaddress
import re
import shlex
import shutil
import stat
import subprocess
from collections.abc import Sequence
from pathlib import Path

__all__ = ["BUSYBOX", "HOSTNAME", "build_initramfs", "password_hash", "shared_libraries"]

BUSYBOX = Path("/bin/busybox")
HOSTNAME = "ottovm"

_INITTAB = """\
::sysinit:/etc/init.d/rcS
ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100
::ctrlaltdel:/sbin/reboot
::shutdown:/bin/umount -a -r
"""

_RCS = f"""\
#!/bin/sh
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /tmp
echo 1 > /proc/sys/kernel/sysrq
hostname {HOSTNAME}
"""


def password_hash(password: str, salt: str = "ottolinuxvm") -> str:
    """A SHA-512 crypt(3) hash of ``password``, as /etc/shadow holds it (openssl makes it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise OSError("openssl is needed to hash the VM's password (Debian package openssl)")
    done = subprocess.run(
        [openssl, "passwd", "-6", "-salt", salt, "-stdin"],
        input=password,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def shared_libraries(program: Path) -> list[Path]:
    """The shared libraries ``ldd`` lists for ``program``, the dynamic loader among them."""
    done = subprocess.run(
        ["ldd", str(program)], capture_output=True, text=True, check=False, timeout=60
    )
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip()
        raise OSError(f"ldd {program} failed ({done.returncode}): {said}")
    found: list[Path] = []
    for line in done.stdout.splitlines():
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
        match = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if match is not None:
            found.append(Path(match.group(1)))
        elif "not found" in line:
            raise OSError(f"ldd {program}: a library is missing: {line.strip()}")
    return found


class _Cpio:
    """Writes a cpio "newc" archive, entry by entry."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self._ino = 1
        self._dirs: set[str] = set()

    def _entry(
        self, name: str, mode: int, data: bytes = b"", *, rdev: tuple[int, int] = (0, 0)
    ) -> None:
        encoded = name.encode() + b"\0"
        fields = [
            self._ino,  # inode
            mode,
            0,  # uid
            0,  # gid
            2 if stat.S_ISDIR(mode) else 1,  # nlink
            0,  # mtime
            len(data),
            0,  # dev major
            0,  # dev minor
            rdev[0],
            rdev[1],
            len(encoded),
            0,  # check
        ]
        self._ino += 1
        header = b"070701" + b"".join(b"%08X" % field for field in fields)
        self.out.write(header + encoded)
        self._pad()
        self.out.write(data)
        self._pad()

    def _pad(self) -> None:
        self.out.write(b"\0" * (-self.out.tell() % 4))

    def directory(self, name: str, perm: int = 0o755) -> None:
        self._dirs.add(name)
        self._entry(name, stat.S_IFDIR | perm)

    def parents(self, name: str) -> None:
        """The directories leading to ``name``, those not in the archive yet."""
        parts = name.split("/")[:-1]
        for end in range(1, len(parts) + 1):
            folder = "/".join(parts[:end])
            if folder not in self._dirs:
                self.directory(folder)

    def file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        self._entry(name, stat.S_IFREG | perm, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self.out.getvalue()


def _boot_lines(modules: Sequence[Path], programs: Sequence[Path], address: str | None) -> str:
    """What the start-up script runs after its base: modules, programs' names, the address."""
    lines: list[str] = []
    for index, module in enumerate(modules):
        lines.append(f"insmod /lib/modules/{index:02d}-{module.name}")
    for program in programs:
        name = shlex.quote(program.name)
        lines.append(
            f"for d in /bin /sbin /usr/bin /usr/sbin; do "
            f'[ ! -L "$d"/{name} ] || rm -f "$d"/{name}; done'
        )
    if address is not None:
        lines += [
            "ip link set lo up",
            f"ip addr add {shlex.quote(address)} dev eth0",
            "ip link set eth0 up",
        ]
    return "".join(line + "\n" for line in lines)


def build_initramfs(
    path: Path,
    *,
    user: str,
    password: str,
    modules: Sequence[Path] = (),
    programs: Sequence[Path] = (),
    shell: Path | None = None,
    address: str | None = None,
) -> None:
    """Write the gzip'd archive to ``path``: root's login is ``user`` (uid 0) with ``password``.

    ``modules``, ``programs``, ``shell`` and ``address``: see the module's docstring.
    """
    if shell is not None:
        programs = [*programs, shell]
    if address is not None:
        ipaddress.ip_interface(address)  # ValueError for anything else
    archive = _Cpio()
    for name in ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "etc/init.d"):
        archive.directory(name)
    for name in ("proc", "sys", "dev", "root", "tmp", "run", "var"):
        archive.directory(name, 0o1777 if name == "tmp" else 0o755)
    archive.chardev("dev/console", 5, 1)
    archive.chardev("dev/null", 1, 3, 0o666)
    archive.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    archive.symlink("bin/sh", "/bin/busybox" if shell is None else str(shell))
    for applet in ("sbin/init", "sbin/getty", "bin/login", "bin/mount", "bin/mkdir"):
        archive.symlink(applet, "/bin/busybox")
    archive.symlink("init", "/bin/busybox")
    for index, module in enumerate(modules):
        name = f"lib/modules/{index:02d}-{module.name}"
        archive.parents(name)
        archive.file(name, module.read_bytes())
    copied: set[str] = set()
    for program in programs:
        for source in (program, *shared_libraries(program)):
            name = str(source).lstrip("/")
            if name in copied:
                continue
            copied.add(name)
            archive.parents(name)
            # The file itself (a library's path is often a symlink to its versioned name).
            archive.file(name, source.resolve().read_bytes(), 0o755)
    archive.file("etc/inittab", _INITTAB.encode())
    rcs = _RCS + _boot_lines(modules, programs, address)
    archive.file("etc/init.d/rcS", rcs.encode(), 0o755)
    archive.file("etc/passwd", f"{user}:x:0:0:{user}:/root:/bin/sh\n".encode())
    archive.file("etc/shadow", f"{user}:{password_hash(password)}:19000::::::\n".encode(), 0o600)
    archive.file("etc/group", b"root:x:0:\n")
    archive.file("etc/shells", b"/bin/sh\n")
    archive.file("etc/hostname", f"{HOSTNAME}\n".encode())
    archive.file("etc/profile", b"export PATH=/bin:/sbin:/usr/bin:/usr/sbin\ncd /root\n")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(gzip.compress(archive.finish(), compresslevel=6, mtime=0))
    tmp.replace(path)
