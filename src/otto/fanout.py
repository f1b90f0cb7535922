"""Do the same thing on many hosts of the current lab, each host's outcome kept apart.

Both helpers return ``{host_name: result or exception}`` in lab order. An
exception raised for one host is stored as that host's value; it never cancels
or hides the others. Cancelling the call itself cancels every host's work.
``pattern`` is a regular expression searched in host names (``"web"`` matches
``web1`` and ``old-web``; anchor it, ``"^web\\d+$"``, to be strict).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from otto.lab import current_lab

if TYPE_CHECKING:
    from otto.hosts import Host
    from otto.result import RunResult

__all__ = ["do_for_all_hosts", "run_on_all_hosts"]

T = TypeVar("T")


async def do_for_all_hosts(
    fn: Callable[..., Awaitable[T]],
    *args: object,
    pattern: str | re.Pattern[str] | None = None,
    concurrent: bool = True,
    **kwargs: object,
) -> dict[str, T | BaseException]:
    """Await ``fn(host, *args, **kwargs)`` for every host of the current lab.

    Args:
        fn: an async callable taking a host first.
        pattern: a regex searched in host names; ``None`` selects every host.
        concurrent: run all hosts at once (default) or one after another.

    Returns:
        Each selected host's name mapped to what ``fn`` returned or the exception
        it raised, in lab order.
    """
    lab = current_lab()
    hosts = [(name, lab.host(name)) for name in lab.select(pattern)]

    if concurrent:
        outcomes = await asyncio.gather(
            *(fn(host, *args, **kwargs) for _, host in hosts), return_exceptions=True
        )
        return {name: outcome for (name, _), outcome in zip(hosts, outcomes, strict=True)}

    results: dict[str, T | BaseException] = {}
    for name, host in hosts:
        try:
            results[name] = await fn(host, *args, **kwargs)
        except Exception as exc:
            results[name] = exc
    return results


async def run_on_all_hosts(
    cmds: str | Sequence[str],
    *,
    pattern: str | re.Pattern[str] | None = None,
    concurrent: bool = True,
    timeout: float | None = None,
) -> dict[str, RunResult | BaseException]:
    """``host.run(cmds, timeout=timeout)`` on every host of the current lab.

    A command that fails is in that host's ``RunResult``; an exception (a host
    that cannot be reached, say) is that host's value instead.
    """

    async def run_one(host: Host) -> RunResult:
        return await host.run(cmds, timeout=timeout)

    return await do_for_all_hosts(run_one, pattern=pattern, concurrent=concurrent)
