"""snmpd ``pass_persist`` helper: a PDU's switched outlets, kept in a JSON file.

    pass_persist .1.3.6.1.4.1.318 python3 pdu_pass.py FILE apc
    pass_persist .1.3.6.1.4.1.13742 python3 pdu_pass.py FILE raritan

FILE holds ``{"outlets": {"1": "on", "2": "off", ...}, "log": [...]}``; a state
other than on or off (``"unknown"``) is answered as the PDU's value for
neither. A SET on an outlet's control object switches it and appends
``"N action"`` to the log (so a test sees a cycle, which ends on). The OIDs
are those of ``otto.hosts.power.snmp``:

- apc: sPDUOutletCtl.N, GET 1 on / 2 off / 4 unknown; SET 1 on, 2 off, 3 reboot.
- raritan: switchingOperation.1.N SET 0 off, 1 on, 2 cycle; the outlet's
  onOff sensor state measurementsOutletSensorState.1.N.14, GET 7 on / 8 off / -1.
"""

from __future__ import annotations

import json
import os
import sys

APC_CTL = (1, 3, 6, 1, 4, 1, 318, 1, 1, 4, 4, 2, 1, 3)
RARITAN_CTL = (1, 3, 6, 1, 4, 1, 13742, 6, 4, 1, 2, 1, 2, 1)
RARITAN_STATE = (1, 3, 6, 1, 4, 1, 13742, 6, 5, 4, 3, 1, 3, 1)

Oid = tuple[int, ...]


def _key(oid: str) -> Oid:
    return tuple(int(part) for part in oid.strip().strip(".").split(".") if part)


def _load(path: str) -> dict[str, object]:
    with open(path, encoding="utf-8") as file:
        data: dict[str, object] = json.load(file)
    return data


def _save(path: str, data: dict[str, object]) -> None:
    with open(path + ".tmp", "w", encoding="utf-8") as file:
        json.dump(data, file)
    os.replace(path + ".tmp", path)


def _rows(kind: str, outlets: dict[str, str]) -> list[tuple[Oid, int]]:
    rows: list[tuple[Oid, int]] = []
    for name, state in outlets.items():
        n = int(name)
        if kind == "apc":
            rows.append(((*APC_CTL, n), {"on": 1, "off": 2}.get(state, 4)))
        else:
            rows.append(((*RARITAN_CTL, n), {"on": 1, "off": 0}.get(state, 0)))
            rows.append(((*RARITAN_STATE, n, 14), {"on": 7, "off": 8}.get(state, -1)))
    return sorted(rows)


def _set(kind: str, data: dict[str, object], oid: Oid, value: int) -> str:
    outlets = data["outlets"]
    log = data["log"]
    assert isinstance(outlets, dict) and isinstance(log, list)
    control = APC_CTL if kind == "apc" else RARITAN_CTL
    if oid[: len(control)] != control or len(oid) != len(control) + 1:
        return "not-writable"
    outlet = str(oid[-1])
    if outlet not in outlets:
        return "no-creation"
    actions = {1: "on", 2: "off", 3: "cycle"} if kind == "apc" else {0: "off", 1: "on", 2: "cycle"}
    action = actions.get(value)
    if action is None:
        return "wrong-value"
    outlets[outlet] = "off" if action == "off" else "on"
    log.append(f"{outlet} {action}")
    return "DONE"


def main() -> None:
    path, kind = sys.argv[1], sys.argv[2]
    out = sys.stdout
    while True:
        command = sys.stdin.readline()
        if not command:
            return
        command = command.strip()
        if not command:
            continue  # snmpd ends a set with an empty line: nothing to answer
        if command == "PING":
            out.write("PONG\n")
        elif command in ("get", "getnext"):
            wanted = _key(sys.stdin.readline())
            outlets = _load(path)["outlets"]
            assert isinstance(outlets, dict)
            rows = _rows(kind, outlets)
            if command == "get":
                found = next((r for r in rows if r[0] == wanted), None)
            else:
                found = next((r for r in rows if r[0] > wanted), None)
            if found is None:
                out.write("NONE\n")
            else:
                out.write("." + ".".join(map(str, found[0])) + f"\ninteger\n{found[1]}\n")
        elif command == "set":
            oid = _key(sys.stdin.readline())
            typed = sys.stdin.readline().split()
            if not typed or typed[0] != "integer":
                out.write("wrong-type\n")
            else:
                data = _load(path)
                answer = _set(kind, data, oid, int(typed[-1]))
                if answer == "DONE":
                    _save(path, data)
                out.write(answer + "\n")
        else:
            out.write("NONE\n")
        out.flush()


if __name__ == "__main__":
    main()
