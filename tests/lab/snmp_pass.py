"""snmpd ``pass_persist`` helper: answers GET and GETNEXT from a JSON file a test writes.

    pass_persist -p 1 .1.3.6.1.2.1.2.2 python3 snmp_pass.py FILE 1.3.6.1.2.1.2.2

The file maps numeric OIDs to ``[type, value]`` (snmpd's pass types:
``integer``, ``counter``, ``counter64``, ``string``, ...). It is read again
for every request, so a test changes what the agent says by rewriting it.
Only the OIDs under SUBTREE are answered: snmpd runs one helper per
``pass_persist`` line, so each subtree has its own.
"""

from __future__ import annotations

import json
import sys


def _key(oid: str) -> tuple[int, ...]:
    return tuple(int(part) for part in oid.strip().strip(".").split(".") if part)


def _rows(path: str, subtree: tuple[int, ...]) -> list[tuple[tuple[int, ...], str, object]]:
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError):
        return []
    rows = ((_key(oid), kind, value) for oid, (kind, value) in data.items())
    return sorted(row for row in rows if row[0][: len(subtree)] == subtree)


def _answer(row: tuple[tuple[int, ...], str, object] | None) -> str:
    if row is None:
        return "NONE\n"
    oid, kind, value = row
    return "." + ".".join(map(str, oid)) + f"\n{kind}\n{value}\n"


def main() -> None:
    path, subtree = sys.argv[1], _key(sys.argv[2])
    out = sys.stdout
    while True:
        command = sys.stdin.readline()
        if not command:
            return
        command = command.strip()
        if command == "PING":
            out.write("PONG\n")
        elif command in ("get", "getnext"):
            wanted = _key(sys.stdin.readline())
            rows = _rows(path, subtree)
            if command == "get":
                found = next((r for r in rows if r[0] == wanted), None)
            else:
                found = next((r for r in rows if r[0] > wanted), None)
            out.write(_answer(found))
        elif command == "set":
            sys.stdin.readline()
            sys.stdin.readline()
            out.write("not-writable\n")
        else:
            out.write("NONE\n")
        out.flush()


if __name__ == "__main__":
    main()
