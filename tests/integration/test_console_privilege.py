"""A session as another user on a console (ser2net, /bin/login, real sudo and su).

A console is one shell every session shares, and it outlives otto: a session
as root must not turn the others into root, nor leave root's shell behind for
the next person who joins the console (``otto host NAME login``).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from otto import RemoteHost
from otto.errors import AuthenticationError, ConnectError
from tests.lab import Lab
from tests.lab.console import Console, ConsoleLab
from tests.lab.privilege import NOPASSWD_USER, SUDO_USER
from tests.lab.users import LAB_PASSWORD, LAB_USER

pytestmark = pytest.mark.integration


def console_host(console: Console, user: str, **options: object) -> RemoteHost:
    return RemoteHost(
        console.address,
        term="console",
        console_protocol="telnet",
        user=user,
        password=LAB_PASSWORD,
        name=f"con-{console.name}",
        **{"connect_timeout": 10.0, **options},  # type: ignore[arg-type]
    )


def cli_login_user(console: Console, user: str, tmp_path: Path) -> str:
    """Join the console through ``otto host NAME login`` and ask who its shell runs as."""
    from tests.integration.test_login import Terminal

    lab_file = tmp_path / "lab.json"
    lab_file.write_text(
        json.dumps(
            {"hosts": [{"name": "board", "term": "console", "address": console.address,
                        "user": user, "password": LAB_PASSWORD}]}
        )
    )  # fmt: skip
    env = {**os.environ, "TERM": "xterm", "NO_COLOR": "1"}
    env.pop("OTTO_LAB", None)
    argv = [sys.executable, "-m", "otto", "--lab", str(lab_file), "host", "board", "login"]
    term = Terminal(argv, env, 30, 120)
    try:
        term.wait_for(rb"console of board .*Ctrl-\] leaves")
        term.type(b'echo "who=$(id -un)=ohw"\r')
        found = term.wait_for(rb"who=([a-z]+)=ohw")
        term.type(b"\x1d")
        assert term.wait_exit() == 0
        return found.group(1).decode()
    finally:
        term.close()


@pytest.mark.parametrize(
    ("login", "become", "target"),
    [
        (NOPASSWD_USER, "sudo", "root"),  # no password asked
        (SUDO_USER, "sudo", NOPASSWD_USER),  # the login user's password
        (LAB_USER, "su", SUDO_USER),  # the target user's password
    ],
)
async def test_a_session_as_another_user_on_a_console_changes_no_other_session(
    lab: Lab, consoles: ConsoleLab, tmp_path: Path, login: str, become: str, target: str
) -> None:
    # The lab fixture keeps the sudoers drop-in in place.
    console = await consoles.add(f"priv-{login}-{become}")
    host = console_host(console, login, become_password=LAB_PASSWORD)
    try:
        await host.run("cd /tmp; export KEPT=login-shell")
        other = await host.open_session("other", as_user=target, become=become)  # type: ignore[arg-type]
        assert (await other.run("id -un")).only.output == target
        # The others wait for their turn: never typed into the other user's shell.
        waiting = asyncio.ensure_future(host.run("id -un; pwd; echo $KEPT"))
        oneshot = asyncio.ensure_future(host.oneshot("id -un"))
        assert (await other.run("id -un")).only.output == target
        assert not waiting.done() and not oneshot.done()
        await other.close()
        assert (await waiting).only.output == f"{login}\n/tmp\nlogin-shell"
        assert (await oneshot).output == login
    finally:
        await host.close()
    # Whoever joins the console next finds the login user's shell.
    assert await asyncio.to_thread(cli_login_user, console, login, tmp_path) == login


async def test_after_a_session_as_root_otto_host_login_finds_the_login_users_shell(
    lab: Lab, consoles: ConsoleLab, tmp_path: Path
) -> None:
    console = await consoles.add("priv-login")
    async with console_host(console, NOPASSWD_USER) as host:
        root = await host.open_session("root", as_user="root")
        assert (await root.run("id -un")).only.output == "root"
    assert await asyncio.to_thread(cli_login_user, console, NOPASSWD_USER, tmp_path) == (
        NOPASSWD_USER
    )


async def test_a_disconnect_under_a_session_as_root_leaves_no_root_shell_behind(
    lab: Lab, consoles: ConsoleLab, tmp_path: Path
) -> None:
    # wait_until_up and reboot disconnect after a failed probe; the root session's
    # shell must not outlive the link on the console.
    console = await consoles.add("priv-disconnect")
    async with console_host(console, NOPASSWD_USER) as host:
        root = await host.open_session("root", as_user="root")
        assert (await root.run("id -un")).only.output == "root"
        await host.disconnect()
        assert await asyncio.to_thread(cli_login_user, console, NOPASSWD_USER, tmp_path) == (
            NOPASSWD_USER
        )
        # The session starts a fresh shell as root on next use; the others wait again.
        assert (await root.run("id -un")).only.output == "root"
        await root.close()
        assert (await host.run("id -un")).only.output == NOPASSWD_USER


async def test_a_console_held_by_a_session_as_root_names_it_to_the_others(
    lab: Lab, consoles: ConsoleLab
) -> None:
    console = await consoles.add("priv-held")
    host = console_host(console, NOPASSWD_USER, connect_timeout=3.0)
    try:
        root = await host.open_session("root", as_user="root")
        with pytest.raises(ConnectError, match=r"as root .*holds the console"):
            await host.run("id -un")
        assert (await root.run("id -un")).only.output == "root"
        await root.close()
        assert (await host.run("id -un")).only.output == NOPASSWD_USER
    finally:
        await host.close()


@pytest.mark.parametrize("become", ["sudo", "su"])
async def test_a_wrong_password_on_a_console_leaves_the_shared_shell_as_it_was(
    lab: Lab, consoles: ConsoleLab, become: str, caplog: pytest.LogCaptureFixture
) -> None:
    login, target = (SUDO_USER, "root") if become == "sudo" else (LAB_USER, SUDO_USER)
    console = await consoles.add(f"priv-wrong-{become}")
    host = console_host(console, login, become_password="Not-The-Password-9")
    try:
        await host.run("cd /tmp; export KEPT=login-shell")
        with pytest.raises(AuthenticationError) as info:
            await host.open_session("other", as_user=target, become=become)  # type: ignore[arg-type]
        assert "Not-The-Password-9" not in str(info.value)
        assert "\n" not in str(info.value)
        # The same shell as before, its state whole: nothing ended it.
        out = (await host.run("id -un; pwd; echo $KEPT")).only.output
        assert out == f"{login}\n/tmp\nlogin-shell"
        assert "would not end" not in caplog.text
    finally:
        await host.close()
