"""Which lab hosts a test gets: the ``hosts`` mark's pool, and the error of a ``host``
fixture that does not say which."""

from __future__ import annotations

import re

import pytest

from otto.lab import Lab

__all__ = ["mark_pool", "mark_state", "which_host"]

STATES = ("off", "bootloader", "shell")
"""What ``@pytest.mark.state`` takes (``otto.hosts.lifecycle.STATES``, without importing hosts)."""


def mark_pool(lab: Lab, mark: pytest.Mark) -> tuple[list[str], int | None]:
    """The names a ``hosts`` mark allows, and its count; errors name what matched nothing."""
    pattern = mark.args[0] if mark.args else mark.kwargs.get("pattern")
    tags = mark.kwargs.get("tags", ())
    if isinstance(tags, str):
        tags = (tags,)
    count = mark.kwargs.get("count")
    names = lab.names
    if pattern is not None:
        regex = re.compile(pattern)
        names = [n for n in names if regex.fullmatch(n)]
    if tags:
        names = [n for n in names if set(tags) <= set(lab.spec(n).tags)]
    what = ", ".join(
        part
        for part in (
            f"name {pattern!r}" if pattern is not None else "",
            f"tags {list(tags)!r}" if tags else "",
        )
        if part
    )
    lab_name = "lab " + ", ".join(lab.files) if lab.files else "the default lab"
    if not names:
        raise pytest.UsageError(
            f"@pytest.mark.hosts: no host in {lab_name} has {what or 'a name'} "
            f"(hosts: {', '.join(lab.names) or 'none'})"
        )
    if count is not None and (not isinstance(count, int) or count < 1 or count > len(names)):
        raise pytest.UsageError(
            f"@pytest.mark.hosts: count={count!r}, but {len(names)} host(s) of {lab_name} "
            f"have {what}: {', '.join(names)}"
        )
    return names, count


def which_host(nodeid: str, lab: Lab) -> str:
    """The error of a test that asks for ``host`` on a lab of several hosts, without a mark."""
    lab_name = "lab " + ", ".join(lab.files) if lab.files else "the lab"
    first = lab.names[0]
    return (
        f"{nodeid} uses the `host` fixture, but {lab_name} has {len(lab)} hosts "
        f"({', '.join(lab.names)}): say which with a mark, e.g.\n"
        f"    @pytest.mark.hosts({first!r})        # on {first}\n"
        f"    @pytest.mark.hosts('.*')          # once on each host\n"
        f"    @pytest.mark.hosts(count=1)       # on any one free host"
    )


def mark_state(node: pytest.Item) -> str | None:
    """The state a ``state`` mark asks the test's hosts to be in first, or None."""
    mark = node.get_closest_marker("state")
    if mark is None:
        return None
    state = mark.args[0] if mark.args else mark.kwargs.get("state")
    if state not in STATES:
        raise pytest.UsageError(
            f"{node.nodeid}: @pytest.mark.state takes one of {', '.join(STATES)}, not {state!r}"
        )
    return str(state)
