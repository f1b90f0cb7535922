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
_SUBNETS_PER_KIND = 15


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
    """Give each node a /24 to its parent: 10.213.(32*slot + i) for nodes on the
    root namespace, 10.213.(32*slot + 16 + j) for nodes behind another node.
    The parent side is .1 and the node .2, so with the default nodes ssh1 is
    10.213.1.2 and inner (behind ssh1) is 10.213.17.2.
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
        if node.parent is None:
            top += 1
            index = top
            third = base + index
            parent_dev = f"ol{slot}n{index}"
        else:
            deep += 1
            index = deep
            third = base + 16 + index
            parent_dev = f"dn{index}"
        if index > _SUBNETS_PER_KIND:
            raise ValueError("too many nodes for one lab slot")
        links[node.name] = Link(
            parent=node.parent,
            child=node.name,
            parent_dev=parent_dev,
            child_dev="up0",
            parent_addr=f"10.213.{third}.1",
            child_addr=f"10.213.{third}.2",
        )
    return Plan(slot=slot, links=links, supernet=f"10.213.{base}.0/19")
