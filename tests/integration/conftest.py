"""Fixtures that start the real test lab (see tests/lab) once per test session."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.lab import Lab
from tests.lab.console import ConsoleLab, consoles_missing

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def lab() -> AsyncIterator[Lab]:
    """The running lab: hosts, users, keys, known_hosts and fault switches.

    Everything it started is torn down at the end of the session, whatever
    the tests did. Tests that kill servers or cut links should use
    ``fault_lab`` so the next test finds the lab whole again.
    """
    if os.geteuid() != 0:
        pytest.skip("the integration lab needs root (network namespaces, useradd, sshd)")
    async with Lab() as running:
        yield running


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def consoles() -> AsyncIterator[ConsoleLab]:
    """Serial consoles (socat ptys with login or busybox sh) served by ser2net."""
    missing = consoles_missing()
    if missing:
        pytest.skip(missing)
    async with ConsoleLab() as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def fault_lab(lab: Lab) -> AsyncIterator[Lab]:
    """The session lab, healed after the test: cut links restored, dead sshds restarted."""
    try:
        yield lab
    finally:
        await lab.heal()
