"""Which lab hosts a test gets: the ``hosts`` mark's pool, and the error of a ``host``
fixture that does not say which."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from otto.lab import Lab
from otto.testing.needs import needed, with_features

__all__ = ["hosts_mark", "mark_pool", "mark_scope", "mark_state", "which_host"]

STATES = ("off", "bootloader", "shell")
"""What ``@pytest.mark.state`` takes (``otto.hosts.lifecycle.STATES``, without importing hosts)."""


def _what(mark: pytest.Mark) -> str:
    """What a ``hosts`` mark asks of a host's name and tags: ``name 'web.*', tags ['db']``."""
    pattern = mark.args[0] if mark.args else mark.kwargs.get("pattern")
    tags = mark.kwargs.get("tags", ())
    if isinstance(tags, str):
        tags = (tags,)
    return ", ".join(
        part
        for part in (
            f"name {pattern!r}" if pattern is not None else "",
            f"tags {list(tags)!r}" if tags else "",
        )
        if part
    )


def hosts_mark(node: pytest.Item | pytest.Collector, *, one: bool) -> pytest.Mark | None:
    """The test's ``hosts`` mark; for a test that ``needs`` features and has none, the mark
    it amounts to: any one free host that has them for ``host`` (``count=1``), all of them
    for ``hosts``."""
    mark = node.get_closest_marker("hosts")
    if mark is not None or not needed(node):
        return mark
    return pytest.mark.hosts(count=1).mark if one else pytest.mark.hosts.mark


def mark_pool(
    lab: Lab, mark: pytest.Mark, *, features: Sequence[str] = ()
) -> tuple[list[str], int | None]:
    """The names a ``hosts`` mark allows (of those with every one of ``features``), and its
    count; errors name what matched nothing. None has the features: ``[]`` (the test is
    skipped, see ``otto.testing.needs``)."""
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
    what = _what(mark)
    lab_name = "lab " + ", ".join(lab.files) if lab.files else "the default lab"
    if not names:
        raise pytest.UsageError(
            f"@pytest.mark.hosts: no host in {lab_name} has {what or 'a name'} "
            f"(hosts: {', '.join(lab.names) or 'none'})"
        )
    if features:
        names = with_features(lab, names, features)
        if not names or (isinstance(count, int) and count > len(names)):
            return [], count
    if count is not None and (not isinstance(count, int) or count < 1 or count > len(names)):
        raise pytest.UsageError(
            f"@pytest.mark.hosts: count={count!r}, but {len(names)} host(s) of {lab_name} "
            f"have {what}: {', '.join(names)}"
        )
    return names, count


def mark_scope(lab: Lab, node: pytest.Item) -> tuple[list[str], int, str] | None:
    """The hosts a test may use before its features are looked at (its ``hosts`` mark's
    pool, else the whole lab), how many it needs at once, and what narrowed them (for the
    skip reason); None when its ``hosts`` mark matches nothing (an error of its own)."""
    mark = node.get_closest_marker("hosts")
    if mark is None:
        return lab.names, 1, ""
    try:
        names, count = mark_pool(lab, mark)
    except pytest.UsageError:
        return None
    what = _what(mark)
    return names, count or 1, f"of those with {what}" if what else ""


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
