"""How the behaviour suite gets a host of each kind: local, SSH and Telnet in the lab,
consoles (ser2net) and serial lines (ptys) from tests/lab/console.py."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from otto import Host, LocalHost, RemoteHost, RunResult, Session

HOST_KINDS = ["local", "ssh", "telnet", "console", "serial"]

ONE_STREAM = ("console", "serial")
"""Kinds whose sessions and oneshots share one shell, serialized."""


def skip_on_one_stream(host: Host, reason: str) -> None:
    """Skip a test that needs independent shells on a console or serial host."""
    if getattr(host, "term", "") in ONE_STREAM:
        pytest.skip(f"{host.term} host: one stream, one shell ({reason})")  # type: ignore[attr-defined]


def remote_host(lab: object, name: str, **kwargs: object) -> RemoteHost:
    """A RemoteHost for the lab host ``name`` (hops built from the lab's chain)."""
    from tests.lab import Lab

    assert isinstance(lab, Lab)
    hop: RemoteHost | None = None
    for spec in lab.hop_chain(name):
        hop = RemoteHost(
            spec.address,
            user=spec.user,
            key=spec.key_path,
            password=spec.password,
            port=spec.port,
            term=spec.term,
            hop=hop,
            known_hosts=lab.known_hosts,
            name=spec.name,
        )
    spec = lab.host(name)
    options: dict[str, object] = {
        "user": spec.user,
        "port": spec.port,
        "term": spec.term,
        "hop": hop,
        "known_hosts": lab.known_hosts,
        "name": spec.name,
    }
    if spec.term == "ssh":
        options["key"] = spec.key_path
    else:
        options["password"] = spec.password
    options.update(kwargs)
    return RemoteHost(spec.address, **options)  # type: ignore[arg-type]


def make_host(request: pytest.FixtureRequest, kind: str) -> Host:
    """A host of ``kind``; call from a sync fixture (the lab is an async fixture)."""
    if kind == "local":
        return LocalHost()
    if kind in ONE_STREAM:
        from tests.lab.console import ConsoleLab
        from tests.lab.users import LAB_PASSWORD, LAB_USER

        consoles = request.getfixturevalue("consoles")
        assert isinstance(consoles, ConsoleLab)
        console = consoles["login" if kind == "console" else "serial"]
        return RemoteHost(
            console.address if kind == "console" else console.device,
            term=kind,  # type: ignore[arg-type]
            user=LAB_USER,
            password=LAB_PASSWORD,
            name=f"{kind}1",
        )
    lab = request.getfixturevalue("lab")
    return remote_host(lab, {"ssh": "ssh1", "telnet": "telnet1"}[kind])


async def start_and_wait_for(
    session: Session,
    command: str,
    seen: bytes,
    *,
    timeout: float = 10.0,
    run_timeout: float | None = None,
) -> asyncio.Task[RunResult]:
    """Start ``command`` on ``session`` and return once its output shows ``seen``.

    For tests that act while a command runs: they wait for proof that it runs,
    not for a guessed delay.
    """
    arrived = asyncio.Event()
    received = bytearray()

    def watch(data: bytes) -> None:
        received.extend(data)
        if seen in received:
            arrived.set()

    remove = session.add_listener(watch)
    task = asyncio.ensure_future(session.run(command, timeout=run_timeout))
    try:
        await asyncio.wait_for(arrived.wait(), timeout)
    finally:
        remove()
    return task


async def eventually(check: Callable[[], bool], *, timeout: float = 5.0) -> bool:
    """Whether ``check()`` becomes true within ``timeout``, looking after each loop turn."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            return False
        waker = loop.create_future()
        loop.call_later(0.005, waker.set_result, None)
        await waker
    return True
