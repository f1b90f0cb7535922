"""What the lab is made of: nodes (machines), the hosts they serve, addresses."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

Term = Literal["ssh", "telnet"]

SSH_PORT = 22
TELNET_PORT = 23

# Each lab takes one slot; a slot owns 10.213.(32*slot).0/19, so labs started
# by concurrent test runs on one machine never share an address.
MAX_SLOTS = 8
_WIDE_SUBNETS = 15
_NARROW_SUBNETS = 64


@dataclass(frozen=True)
class LabHost:
    """One way into the lab: a daemon (``term``) on an address, and who logs in.

    ``address`` is the address as seen from ``hop`` (or from the test process
    when ``hop`` is None); ``hop`` names the SSH host to tunnel through.
    """

    name: str
    address: str
    port: int
    term: Term
    user: str
    password: str = field(repr=False)
    key_path: Path | None
    hop: str | None
    node: str

    def as_user(self, user: str) -> LabHost:
        """The same host, logging in as ``user`` (same password and key)."""
        return replace(self, user=user)


@dataclass(frozen=True)
class NodeSpec:
    """A machine of the lab: its own network namespace running some daemons.

    ``parent`` is the node it is wired to (None: the test process's namespace);
    a node with a parent is reachable only through that parent's SSH host.
    """

    name: str
    parent: str | None
    services: tuple[tuple[str, Term], ...]


DEFAULT_NODES: tuple[NodeSpec, ...] = (
    NodeSpec("ssh1", None, (("ssh1", "ssh"),)),
    NodeSpec("ssh2", None, (("ssh2", "ssh"),)),
    NodeSpec("ssh3", None, (("ssh3", "ssh"),)),
    NodeSpec("telnet1", None, (("telnet1", "telnet"),)),
    NodeSpec("inner", "ssh1", (("inner", "ssh"), ("inner-telnet", "telnet"))),
    NodeSpec("inner2", "inner", (("inner2", "ssh"),)),
)


def ssh_nodes(count: int, prefix: str = "h") -> tuple[NodeSpec, ...]:
    """``count`` plain SSH hosts named h1, h2, ... (up to 79 in netns mode)."""
    return tuple(
        NodeSpec(f"{prefix}{i}", None, ((f"{prefix}{i}", "ssh"),)) for i in range(1, count + 1)
    )


@dataclass(frozen=True)
class Link:
    """A veth pair from ``parent`` (None: root namespace) down to ``child``."""

    parent: str | None
    child: str
    parent_dev: str
    child_dev: str
    parent_addr: str
    child_addr: str
    prefix: int = 24


@dataclass(frozen=True)
class Plan:
    """Addresses and links of every node for one slot."""

    slot: int
    links: dict[str, Link]
    supernet: str

    def netns(self, node: str) -> str:
        return netns_name(self.slot, node)


def netns_name(slot: int, node: str) -> str:
    return f"ottolab{slot}-{node}"


def netns_prefix(slot: int) -> str:
    return f"ottolab{slot}-"


def plan_addresses(slot: int, nodes: tuple[NodeSpec, ...]) -> Plan:
    """Give each node a subnet shared with its parent, the parent side .1 and the node .2.

    Within the slot's 10.213.(32*slot).0/19: the first 15 nodes on the root
    namespace get 10.213.(32*slot + i).0/24, nodes behind another node
    10.213.(32*slot + 16 + j).0/24 (j up to 14), and root nodes past the 15th
    a /30 each in 10.213.(32*slot + 31).0/24 (64 more). With the default nodes
    ssh1 is 10.213.1.2 and inner (behind ssh1) is 10.213.17.2.
    """
    if not 0 <= slot < MAX_SLOTS:
        raise ValueError(f"slot {slot} out of range")
    names = {node.name for node in nodes}
    base = 32 * slot
    links: dict[str, Link] = {}
    top = deep = 0
    for node in nodes:
        if node.parent is not None and node.parent not in names:
            raise ValueError(f"node {node.name}: unknown parent {node.parent}")
        prefix = 24
        if node.parent is None:
            top += 1
            parent_dev = f"ol{slot}n{top}"
            if top <= _WIDE_SUBNETS:
                net, first = f"10.213.{base + top}", 0
            elif top <= _WIDE_SUBNETS + _NARROW_SUBNETS:
                net, first, prefix = f"10.213.{base + 31}", 4 * (top - _WIDE_SUBNETS - 1), 30
            else:
                raise ValueError(f"more than {_WIDE_SUBNETS + _NARROW_SUBNETS} root nodes")
        else:
            deep += 1
            parent_dev = f"dn{deep}"
            if deep >= _WIDE_SUBNETS:
                raise ValueError(f"more than {_WIDE_SUBNETS - 1} nodes behind hops")
            net, first = f"10.213.{base + 16 + deep}", 0
        links[node.name] = Link(
            parent=node.parent,
            child=node.name,
            parent_dev=parent_dev,
            child_dev="up0",
            parent_addr=f"{net}.{first + 1}",
            child_addr=f"{net}.{first + 2}",
            prefix=prefix,
        )
    return Plan(slot=slot, links=links, supernet=f"10.213.{base}.0/19")
