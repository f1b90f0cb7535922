"""Many lightweight SSH targets in one process: asyncssh servers on loopback ports whose
shells replay a fixed snapshot of this machine's ``/proc``.

    python3 bench/fake_targets.py --ports 3 --dir DIR     (prints "ready PORT ..." when listening)

What a target's shell does, for the text otto sends (``otto.framing``):

- it prints every end marker it is sent (``printf '\\036%s:%d%s\\037' TOKEN:SEQ ...``)
  with the status of the command before it, and the set-up's marker with a PID;
- a command defining the monitor's round function (``otto.monitor.shell_probe``)
  is run ONCE by a real bash here (that function, on this machine's ``/proc``),
  with its arguments 1 and 0; every later call of the function answers with what
  bash printed: a fixed snapshot, the same bytes every round;
- ``true`` prints nothing, status 0, and so does ``kill`` (the interrupt otto sends
  after a timeout: every command here has ended already); any other command
  answers status 127;
- on an exec channel, the command's PID line, then the same rules.

So the controller does exactly the work it does against a real host (key
exchange, channels, framing, the same bytes of output to parse), and the targets
cost one Python process instead of a thousand sshd and shells. The server host key
and a known_hosts file for the ports are written to ``DIR``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import asyncssh

PID = 4242
_MARKER = re.compile(r"printf '\\036%s:%d%s\\037' (\S+) (\S+) \$__or")
_DEFINES = re.compile(r"^(\w+)\(\) \{$", re.MULTILINE)
_CALL = re.compile(r"(\w+) ([01])\Z")
_DQ_WORD = re.compile(r'((?:[^"\\]|\\.)*)"', re.DOTALL)
_DQ_ESCAPE = re.compile(r"\\(.)", re.DOTALL)


def _unescape(found: re.Match[str]) -> str:
    char = found.group(1)
    if char == "\n":
        return ""
    return char if char in '\\$`"' else found.group(0)


_EXEC_PID = "printf '\\036otto-pid:%d\\037' $$; exec 2>&1\n"


class Outputs:
    """What each round function prints, by name and argument: bash runs it once."""

    def __init__(self) -> None:
        self.known: dict[str, tuple[bytes, bytes]] = {}

    def define(self, script: str) -> None:
        names = _DEFINES.findall(script)
        if not names:
            return
        name = names[-1]
        if name in self.known:
            return
        prints = []
        for argument in ("0", "1"):
            ran = subprocess.run(
                ["bash", "--noprofile", "--norc", "-c", f"{script}\n{name} {argument}"],
                capture_output=True,
                check=True,
            )
            prints.append(ran.stdout)
        self.known[name] = (prints[0], prints[1])

    def call(self, command: str) -> bytes | None:
        found = _CALL.search(command.strip())
        if found is None or found.group(1) not in self.known:
            return None
        return self.known[found.group(1)][int(found.group(2))]


OUTPUTS = Outputs()


class FakeShell(asyncssh.SSHServerSession[bytes]):
    """A shell channel (or an exec one) that answers otto's framing from ``OUTPUTS``."""

    def __init__(self) -> None:
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.pending = b""
        self.quoted: list[str] | None = None
        self.oc = ""
        self.status = 0
        self.exec: str | None = None

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:  # type: ignore[override]
        self.chan = chan

    def shell_requested(self) -> bool:
        return True

    def exec_requested(self, command: str) -> bool:
        self.exec = command
        return True

    def pty_requested(self, *args: object) -> bool:
        return True

    def session_started(self) -> None:
        if self.exec is None:
            return
        assert self.chan is not None
        command = self.exec
        if command.startswith(_EXEC_PID):
            self.chan.write(b"\x1eotto-pid:%d\x1f" % PID)
            command = command[len(_EXEC_PID) :]
        out = self.run(command)
        self.chan.write(out)
        self.chan.exit(self.status)

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.pending += data
        if b"\n" not in self.pending:
            return
        *lines, self.pending = self.pending.split(b"\n")
        out = b"".join(self.line(line.decode("utf-8", "surrogateescape")) for line in lines)
        if out and self.chan is not None:
            self.chan.write(out)

    def eof_received(self) -> bool:
        if self.chan is not None:
            self.chan.exit(0)
        return False

    def line(self, line: str) -> bytes:
        if self.quoted is not None:
            return self._quoted(line)
        if line.startswith('__oc="'):
            self.quoted = []
            return self._quoted(line[len('__oc="') :])
        if line.startswith("__oc='"):
            self.oc = shlex.split(line[len("__oc=") :])[0]
            return b""
        if line.startswith("__os="):
            _, _, rest = line.partition(";")
            if rest.startswith("for __oi in 1;do eval"):
                return self.run(self.oc)
            command, _, marker = rest.partition(";printf ")
            return self.run(command) + self.marker("printf " + marker)
        return self.marker(line)

    def _quoted(self, line: str) -> bytes:
        # A double-quoted __oc="..." over several lines (its own newlines, and
        # backslash-newline between pieces): complete at the unescaped closing quote.
        assert self.quoted is not None
        self.quoted.append(line)
        text = "\n".join(self.quoted)
        closed = _DQ_WORD.match(text)
        if closed is None:
            return b""
        self.quoted = None
        self.oc = _DQ_ESCAPE.sub(_unescape, closed.group(1))
        return b""

    def marker(self, line: str) -> bytes:
        found = _MARKER.search(line)
        if found is None:
            return b""
        value = {"$?": str(self.status), "$$": str(PID)}.get(found.group(2), found.group(2))
        return f"\x1e{found.group(1)}:{value}k\x1f".encode()

    def run(self, command: str) -> bytes:
        if "() {" in command:
            OUTPUTS.define(command)
            command = command.rsplit("\n", 1)[-1]
        out = OUTPUTS.call(command)
        if out is not None:
            self.status = 0
            return out
        if command.strip() in ("true", ":", "") or command.startswith("kill "):
            # kill: an interrupt after a timeout; every command here has already ended.
            self.status = 0
            return b""
        self.status = 127
        return b""


class Server(asyncssh.SSHServer):
    def __init__(self) -> None:
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn

    def begin_auth(self, username: str) -> bool:
        return False  # anyone, no credentials

    def session_requested(self) -> tuple[asyncssh.SSHServerChannel[bytes], FakeShell]:
        assert self.conn is not None
        return self.conn.create_server_channel(encoding=None), FakeShell()


async def serve(ports: int, folder: Path) -> None:
    key_path = folder / "host_key"
    if not key_path.exists():
        asyncssh.generate_private_key("ssh-ed25519").write_private_key(str(key_path))
    key = asyncssh.read_private_key(str(key_path))
    servers = []
    for _ in range(ports):
        servers.append(
            await asyncssh.create_server(
                Server, "127.0.0.1", 0, server_host_keys=[key], backlog=4096, keepalive_interval=0
            )
        )
    bound = [s.sockets[0].getsockname()[1] for s in servers]
    public = key.export_public_key().decode().strip()
    (folder / "known_hosts").write_text("".join(f"[127.0.0.1]:{port} {public}\n" for port in bound))
    print("ready", *bound, flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ports", type=int, default=1)
    parser.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args()
    try:
        if os.environ.get("FT_DEBUG"):  # asyncssh's log of every packet, to stderr
            logging.basicConfig(level=logging.DEBUG)
            asyncssh.set_debug_level(2)
        else:
            # A controller that goes away mid-write is expected here: not worth a line each.
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        asyncio.run(serve(args.ports, args.dir))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
