"""A real test lab for otto's integration tests.

OpenSSH ``sshd`` and busybox ``telnetd`` hosts, each in its own network
namespace (or on its own loopback port when namespaces are unavailable), with
generated keys, a known_hosts file, test users, hosts reachable only through
SSH hops, and switches to kill servers and cut the network.

    async with Lab() as lab:
        ssh1 = lab.hosts["ssh1"]
"""

from .hosts import DEFAULT_NODES, LabHost, NodeSpec, Term
from .lab import CutHow, Lab, Mode
from .netns import LabError, netns_socket
from .users import LAB_PASSWORD, LAB_USER, SLOW_STARTUP_SECONDS, SLOW_USER

__all__ = [
    "DEFAULT_NODES",
    "LAB_PASSWORD",
    "LAB_USER",
    "SLOW_STARTUP_SECONDS",
    "SLOW_USER",
    "CutHow",
    "Lab",
    "LabError",
    "LabHost",
    "Mode",
    "NodeSpec",
    "Term",
    "netns_socket",
]
