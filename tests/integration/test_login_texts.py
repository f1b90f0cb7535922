"""What a login shows that is not what it seems: a message of the day whose lines end
like prompts, and a password the far end echoes (real telnetd, ser2net consoles)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from otto import RemoteHost
from otto.errors import ConnectError
from tests.integration.hosts import remote_host
from tests.lab import Lab
from tests.lab.console import Console, ConsoleLab
from tests.lab.users import LAB_PASSWORD, LAB_USER, MOTD_USER

pytestmark = pytest.mark.integration

SECRET = "Sup3r-s3cret-4242"


def console_host(console: Console, **options: object) -> RemoteHost:
    return RemoteHost(
        console.address,
        term="console",
        console_protocol=console.protocol,  # type: ignore[arg-type]
        name=f"con-{console.name}",
        **{"connect_timeout": 10.0, **options},  # type: ignore[arg-type]
    )


async def test_a_motd_ending_lines_like_prompts_is_no_refused_telnet_login(lab: Lab) -> None:
    host = remote_host(lab, "telnet1", user=MOTD_USER, password=LAB_PASSWORD)
    try:
        assert (await host.run("id -un")).only.output == MOTD_USER
    finally:
        await host.close()


async def test_a_motd_ending_lines_like_prompts_is_no_refused_console_login(
    consoles: ConsoleLab,
) -> None:
    console = await consoles.add("motd")
    host = console_host(console, user=MOTD_USER, password=LAB_PASSWORD)
    try:
        assert (await host.run("id -un")).only.output == MOTD_USER
    finally:
        await host.close()


async def test_a_user_name_prompt_is_a_login_prompt(consoles: ConsoleLab) -> None:
    console = await consoles.add("username", login=False, protocol="raw")
    # A device's own login: "User name:", then a password, then a shell.
    await type_into(
        console,
        "trap '' INT; while :; do printf 'User name: '; read u; printf 'Password: '; read p; "
        f"[ \"$u:$p\" = {LAB_USER}:{LAB_PASSWORD} ] && break; echo 'Login incorrect'; done; "
        "stty -echo; PS1='dev$ ' sh",
        b"\nUser name: ",
    )
    host = console_host(console, user=LAB_USER, password=LAB_PASSWORD)
    try:
        assert (await host.run("echo $((6*7))")).only.output == "42"
    finally:
        await host.close()


async def type_into(console: Console, program: str, until: bytes) -> None:
    """Start ``program`` on a console with no login, as a person would, and wait for ``until``.

    Ctrl-C must not end it (``trap '' INT``): otto presses it on a console that does
    not answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", console.port)
    try:
        writer.write(f"\r{program}\r".encode())
        await writer.drain()
        await asyncio.wait_for(reader.readuntil(until), 5)
    finally:
        writer.close()


@pytest.mark.parametrize("after", ["refused", "silent"])
async def test_a_password_the_console_echoes_is_masked_in_errors_and_logs(
    consoles: ConsoleLab, after: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    console = await consoles.add(f"echoes-{after}", login=False, protocol="raw")
    # A login that echoes what is typed (the terminal's echo is on), then either
    # refuses it, or takes it and never answers again.
    login = f"while :; do printf 'login: '; read u; [ \"$u\" = {LAB_USER} ] && break; done"
    password = "printf 'Password: '; read p"
    if after == "refused":
        program = f"{login}; {password}; echo 'Login incorrect'; {login}; exec cat >/dev/null"
    else:
        program = f"{login}; {password}; exec cat >/dev/null"
    await type_into(console, f"trap '' INT; {program}", b"\nlogin: ")
    host = console_host(console, user=LAB_USER, password=SECRET, connect_timeout=4.0)
    try:
        with pytest.raises(ConnectError) as info:
            await host.run("true")
        for text in (str(info.value), repr(info.value), str(info.value.reason)):
            assert SECRET not in text, text
        assert "***" in str(info.value), str(info.value)
    finally:
        await host.close()
    assert SECRET not in caplog.text
