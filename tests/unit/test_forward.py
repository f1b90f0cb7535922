"""otto.hosts.forward without a server: targets, ports, the errors of hosts that cannot
forward, a port that is taken, and how failures are reported."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from typing import cast

import pytest

from otto import LocalHost, RemoteHost
from otto.errors import ConnectError, ForwardError
from otto.hosts.forward import (
    Connect,
    Endpoint,
    Forward,
    _ChannelSide,
    _Outbound,
    local_forward,
    parse_target,
    socks_forward,
)


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("10.0.0.5:80", "10.0.0.5", 80),
        ("web1:8080", "web1", 8080),
        ("[::1]:80", "::1", 80),
        ("[fe80::1%eth0]:22", "fe80::1%eth0", 22),
        (" db:5432 ", "db", 5432),
        ("h:65535", "h", 65535),
    ],
)
def test_targets_are_read(text: str, host: str, port: int) -> None:
    assert parse_target(text) == Endpoint(host, port)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("web1", "write HOST:PORT"),
        ("web1:", "port must be a number from 1 to 65535"),
        (":80", "the host is missing"),
        ("web1:0", "port must be a number from 1 to 65535"),
        ("web1:65536", "port must be a number from 1 to 65535"),
        ("web1:http", "port must be a number from 1 to 65535"),
        ("::1:80", "put an IPv6 address in brackets: [::1]:80"),
        ("[::1]80", "[ADDRESS]:PORT"),
        ("[::1", "[ADDRESS]:PORT"),
        ("[]:80", "the host is missing"),
    ],
)
def test_a_bad_target_says_what_to_write(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="target") as info:
        parse_target(text)
    assert says in str(info.value)
    assert repr(text) in str(info.value)


def test_endpoints_print_ipv6_in_brackets() -> None:
    assert str(Endpoint("::1", 80)) == "[::1]:80"
    assert str(Endpoint("10.0.0.5", 80)) == "10.0.0.5:80"


def test_a_forward_says_what_it_serves() -> None:
    route = ("h1", "h2")
    local = Forward("local", Endpoint("127.0.0.1", 8080), Endpoint("10.0.0.5", 80), route)
    assert str(local) == "127.0.0.1:8080 -> 10.0.0.5:80 via h1 -> h2"
    assert (local.host, local.port, local.address) == ("h2", 8080, "127.0.0.1:8080")
    remote = Forward("remote", Endpoint("127.0.0.1", 9000), Endpoint("::1", 80), route)
    assert str(remote) == "127.0.0.1:9000 on h2 -> [::1]:80 from here, via h1 -> h2"
    socks = Forward("socks", Endpoint("::1", 1080), None, ("h2",))
    assert str(socks) == "[::1]:1080 (SOCKS) -> where h2 connects, via h2"
    assert local.open_channels == 0


async def test_a_local_host_cannot_forward() -> None:
    with pytest.raises(ForwardError, match="port forwards need an SSH host") as info:
        async with LocalHost().forward(8080, "10.0.0.5:80"):
            pass
    assert isinstance(info.value, ConnectError)  # caught where connection errors are
    with pytest.raises(ForwardError):
        LocalHost().socks(1080)


@pytest.mark.parametrize("term", ["telnet", "console"])
def test_a_host_that_is_not_ssh_cannot_forward(term: str) -> None:
    host = RemoteHost("192.0.2.1:7000", user="u", term=term, name="dut")  # type: ignore[arg-type]
    with pytest.raises(ForwardError) as info:
        host.forward_remote(9000, "127.0.0.1:80")
    assert str(info.value) == f"dut: port forwards need an SSH host; this is a {term} host"


@pytest.mark.parametrize(
    ("port", "target", "says"),
    [
        (70000, "10.0.0.5:80", "the local port must be a number from 0"),
        (-1, "10.0.0.5:80", "the local port must be a number from 0"),
        (8080, "10.0.0.5", "write HOST:PORT"),
    ],
)
async def test_bad_arguments_fail_before_connecting(port: int, target: str, says: str) -> None:
    # 192.0.2.1 (TEST-NET) answers nothing: reaching the connect would time out, not raise this.
    host = RemoteHost("192.0.2.1", user="u", known_hosts=None, connect_timeout=30)
    with pytest.raises(ValueError, match=re.escape(says)):
        async with host.forward(port, target):
            pass


async def _no_connection() -> object:
    """Stands in for the SSH connection: listening needs none until a client connects."""
    return None


async def test_a_taken_port_names_address_and_port() -> None:
    connect = cast(Connect, _no_connection)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for opening in (
            local_forward(connect, ["h1", "h2"], port, "10.0.0.5:80", bind="127.0.0.1"),
            socks_forward(connect, ["h2"], port, bind="127.0.0.1"),
        ):
            with pytest.raises(ForwardError) as info:
                async with opening:
                    pass
            assert str(info.value) == (
                f"h2: cannot listen on 127.0.0.1:{port} here: "
                "the port is taken (address already in use)"
            )


async def test_an_address_this_machine_lacks_is_one_error() -> None:
    connect = cast(Connect, _no_connection)
    with pytest.raises(ForwardError, match=r"cannot listen on 192\.0\.2\.1:0 here: this machine"):
        async with local_forward(connect, ["h"], 0, "10.0.0.5:80", bind="192.0.2.1"):
            pass


async def test_the_port_is_free_again_after_the_forward() -> None:
    connect = cast(Connect, _no_connection)
    async with local_forward(connect, ["h"], 0, "10.0.0.5:80", bind="127.0.0.1") as forward:
        assert forward.port != 0
        with socket.socket() as probe, pytest.raises(OSError):
            probe.bind(("127.0.0.1", forward.port))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", forward.port))


def test_failures_warn_once_and_are_kept(caplog: pytest.LogCaptureFixture) -> None:
    forward = Forward("local", Endpoint("127.0.0.1", 1), Endpoint("10.0.0.5", 80), ("h",))
    seen: list[str] = []
    forward.on_failure = seen.append
    with caplog.at_level(logging.INFO, logger="otto.forward"):
        for n in range(150):
            forward._failed(f"failure {n}")
    assert seen == [f"failure {n}" for n in range(150)]
    assert forward.failures == [f"failure {n}" for n in range(50, 150)]
    levels = [r.levelno for r in caplog.records]
    assert levels[0] == logging.WARNING
    assert set(levels[1:]) == {logging.INFO}
    assert caplog.records[0].getMessage() == "h: failure 0"


def test_refusals_and_unreachable_targets_read_differently() -> None:
    forward = Forward("local", Endpoint("127.0.0.1", 1), Endpoint("10.0.0.5", 80), ("h1", "h2"))
    target = Endpoint("10.0.0.5", 80)
    assert (
        forward._refusal(target, "Connection refused")
        == "target 10.0.0.5:80 refused the connection (through h2)"
    )
    assert (
        forward._refusal(target, "No route to host")
        == "target 10.0.0.5:80 cannot be reached through h2: No route to host"
    )


async def test_an_ipv6_bind_prints_in_brackets() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    connect = cast(Connect, _no_connection)
    try:
        opening = local_forward(connect, ["h"], 0, "[::1]:80", bind="::1")
        async with opening as forward:
            assert forward.address == f"[::1]:{forward.port}"
            assert str(forward) == f"[::1]:{forward.port} -> [::1]:80 via h"
    except ForwardError as exc:
        if "no such address" not in str(exc):
            raise
        pytest.skip("no IPv6 loopback here")


class _ChannelDouble:
    """Stands in for an SSH channel: records what the forward writes to it."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = asyncio.Event()

    def write(self, data: bytes) -> None:
        self.data += data

    def write_eof(self) -> None:
        self.eof.set()

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


async def test_a_remote_forward_keeps_what_the_target_says_before_its_channel_opens() -> None:
    # Regression: a target that greets at once (SSH, SMTP, a banner) lost its first
    # bytes: they arrived before the channel back to the host was open.
    forward = Forward("remote", Endpoint("127.0.0.1", 9000), Endpoint("127.0.0.1", 1), ("h",))
    here, there = socket.socketpair()
    there.sendall(b"220 hello\r\n")
    there.shutdown(socket.SHUT_WR)
    loop = asyncio.get_running_loop()
    transport, outbound = await loop.create_connection(lambda: _Outbound(forward), sock=here)
    assert not transport.is_reading()  # nothing is read until the channel is open
    channel = _ChannelDouble()
    _ChannelSide(outbound).connection_made(cast(asyncio.BaseTransport, channel))
    await asyncio.wait_for(channel.eof.wait(), 5)
    assert bytes(channel.data) == b"220 hello\r\n"
    assert forward.open_channels == 1
    transport.close()
    there.close()
