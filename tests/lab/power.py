"""Power switches for lab nodes: a script per node that really stops and starts it.

``power_script(lab, name)`` writes ``<lab dir>/hosts/<name>/power`` (netns
mode only) and returns its path. ``power off`` drops every packet of the
node (an nftables table in its namespace, as a pulled cable) and SIGKILLs
every process in it (its daemons, every session and command); ``power on``
starts its daemons again and lets packets through; ``power reboot`` is a
soft reboot from inside: it detaches, powers the node off, waits a second
("booting") and powers it on. Run ``reboot`` as root on the node
(``sudo -n <script> reboot`` as the lab's NOPASSWD user).

The daemons started by the script are not the lab's ``Daemon`` objects: use
a lab of its own for power tests (``heal`` would start a second sshd). Lab
teardown kills them with everything else in the node's namespace.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from .lab import _CUT_RULESET, _CUT_TABLE, Lab
from .netns import LabError

_SCRIPT = """#!/bin/sh
# Power switch of lab node {node} (written by tests/lab/power.py).
set -u
ns={ns}
off() {{
    ip netns exec "$ns" nft -f - <<'EOF' 2>/dev/null || true
{ruleset}EOF
    for pid in $(ip netns pids "$ns"); do
        # A process may end between `ip netns pids` and its kill: not a failure.
        [ "$pid" = "$$" ] || kill -KILL "$pid" 2>/dev/null || :
    done
}}
on() {{
{starts}
    ip netns exec "$ns" nft delete table inet {table} 2>/dev/null || true
}}
case "${{1:-}}" in
    on) on ;;
    off) off ;;
    cycle) off; on ;;
    reboot)
        if [ "${{2:-}}" != --detached ]; then
            setsid -f "$0" reboot --detached </dev/null >/dev/null 2>&1
            exit 0
        fi
        off; sleep 1; on ;;
    *) echo "usage: $0 on|off|cycle|reboot" >&2; exit 2 ;;
esac
"""


def power_script(lab: Lab, name: str) -> Path:
    """The power switch of host ``name``'s node (every host of that node goes with it)."""
    ns = lab.netns(name)
    if ns is None:
        raise LabError("power switches need the lab in netns mode")
    node = lab.hosts[name].node
    starts = []
    for (daemon_node, _), daemon in lab._daemons.items():
        if daemon_node != node:
            continue
        # Without -D (sshd) or -F (telnetd) the daemon detaches by itself.
        argv = [a for a in daemon.argv if a not in ("-D", "-F")]
        starts.append(
            f'    ip netns exec "$ns" {shlex.join(argv)} >>{shlex.quote(str(daemon.log_path))} 2>&1'
        )
    path = lab.dir / "hosts" / name / "power"
    path.write_text(
        _SCRIPT.format(
            node=node,
            ns=shlex.quote(ns),
            ruleset=_CUT_RULESET,
            table=_CUT_TABLE,
            starts="\n".join(starts),
        )
    )
    path.chmod(0o755)
    return path
