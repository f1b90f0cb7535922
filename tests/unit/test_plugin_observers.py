"""Host.add_observer: every command's CommandStatus, for a test's failing-commands report."""

from __future__ import annotations

from otto import LocalHost
from otto.result import CommandStatus, Status


async def test_observer_sees_run_lists_sessions_and_oneshot() -> None:
    host = LocalHost()
    seen: list[CommandStatus] = []
    remove = host.add_observer(seen.append)
    try:
        await host.run("true")
        await host.run(["echo a", "exit 3", "echo never"])
        async with host.open_session("other") as other:
            await other.run("false")
        await host.oneshot("echo one")
    finally:
        await host.close()
    assert [(s.command, s.status) for s in seen] == [
        ("true", Status.Success),
        ("echo a", Status.Success),
        ("exit 3", Status.Failed),
        ("false", Status.Failed),
        ("echo one", Status.Success),
    ]
    assert {s.host for s in seen} == {"local"}
    remove()
    await host.run("true")
    assert len(seen) == 5
    await host.close()
