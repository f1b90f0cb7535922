"""How the behaviour suite gets a host of each kind."""

from __future__ import annotations

import pytest

from otto import Host, LocalHost

HOST_KINDS = ["local"]


async def make_host(request: pytest.FixtureRequest, kind: str) -> Host:
    if kind == "local":
        return LocalHost()
    raise ValueError(f"unknown host kind {kind!r}")
