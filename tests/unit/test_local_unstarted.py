"""A local shell that never started signals nobody (pgid 0 would be our own group)."""

from __future__ import annotations

import os

import pytest

from otto.transports import local


async def test_unstarted_shell_signals_no_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "killpg", lambda pgid, sig: sent.append((pgid, sig)))
    monkeypatch.setattr(os, "kill", lambda pid, sig: sent.append((pid, sig)))
    shell = local.LocalShell()
    await shell.interrupt(None)
    await shell.kill_children(None)
    shell.abandon()
    await shell.close()
    assert sent == []
