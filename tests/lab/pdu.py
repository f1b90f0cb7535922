"""A fake switched PDU: a real ``snmpd`` whose outlet table is ``pdu_pass.py``'s file.

::

    pdu = await start_pdu(tmp_path, "apc", outlets=4)    # on 127.0.0.1, a free port
    pdu.set_state(2, "off"); pdu.state(2); pdu.log()      # the faked outlets, the SETs seen
    pdu.stop()

The agent accepts SETs from community ``pdu.community`` (v2c) and from the
SNMPv3 user ``pdu.v3`` (SHA, AES, authPriv); it answers only the vendor's
subtree (APC PowerNet or Raritan PDU2), from the file.
"""

from __future__ import annotations

import json
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .snmp import SnmpAgent

PDU_PASS = Path(__file__).with_name("pdu_pass.py")
SUBTREE = {"apc": "1.3.6.1.4.1.318", "raritan": "1.3.6.1.4.1.13742"}
V3_USER = ("pduadmin", "pdu-auth-pass", "pdu-priv-pass")


@dataclass
class PduAgent(SnmpAgent):
    """An snmpd with read-write access whose only MIB is the fake outlet table."""

    kind: str = "apc"
    outlets: int = 4
    pdu_v3: tuple[str, str, str] = field(default=V3_USER)

    @property
    def table(self) -> Path:
        return self.folder / "outlets.json"

    def config(self) -> str:
        user, auth, priv = self.pdu_v3
        command = f"{sys.executable} {PDU_PASS} {self.table} {self.kind}"
        lines = [
            f"agentAddress udp:{self.address}:{self.port}",
            f"rwcommunity {self.community} default",
            f"createUser {user} SHA {auth} AES {priv}",
            f"rwuser {user} priv",
            "master no",
            f"pass_persist .{SUBTREE[self.kind]} {command}",
        ]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if not self.table.exists():
            outlets = {str(n): "on" for n in range(1, self.outlets + 1)}
            self.table.write_text(json.dumps({"outlets": outlets, "log": []}))
        super().start()

    def _data(self) -> dict[str, object]:
        data: dict[str, object] = json.loads(self.table.read_text())
        return data

    def state(self, outlet: int) -> str:
        outlets = self._data()["outlets"]
        assert isinstance(outlets, dict)
        return str(outlets[str(outlet)])

    def set_state(self, outlet: int, state: str) -> None:
        data = self._data()
        outlets = data["outlets"]
        assert isinstance(outlets, dict)
        outlets[str(outlet)] = state
        temp = self.table.with_suffix(".tmp")
        temp.write_text(json.dumps(data))
        temp.replace(self.table)

    def log(self) -> list[str]:
        log = self._data()["log"]
        assert isinstance(log, list)
        return [str(entry) for entry in log]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def start_pdu(folder: Path, kind: str, *, outlets: int = 4) -> PduAgent:
    """A fake PDU of ``kind`` (``apc`` or ``raritan``) on 127.0.0.1, started and ready."""
    port = _free_udp_port()
    agent = PduAgent(
        name=f"pdu-{kind}-{port}",
        netns=None,
        address="127.0.0.1",
        port=port,
        community="pdu-write-community",
        folder=folder / f"pdu-{kind}-{port}",
        kind=kind,
        outlets=outlets,
    )
    agent.start()
    try:
        await agent.wait_ready()
    except BaseException:
        agent.stop()
        raise
    return agent
