"""How the behaviour suite gets a host of each kind: local, SSH and Telnet in the lab."""

from __future__ import annotations

import pytest

from otto import Host, LocalHost, RemoteHost

HOST_KINDS = ["local", "ssh", "telnet"]


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
    lab = request.getfixturevalue("lab")
    return remote_host(lab, {"ssh": "ssh1", "telnet": "telnet1"}[kind])
