"""Sessions as another user through real sudo and su, on local, SSH and Telnet hosts.

The lab's ``ottosudo`` may sudo after typing its password, ``ottonopw``
without one (tests/lab/privilege.py); this process is root, so the local host
becomes a lab user with no password asked.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from otto import Host, LocalHost, Status
from otto.errors import AuthenticationError, ConnectError
from tests.integration.hosts import eventually, remote_host
from tests.lab import Lab
from tests.lab.privilege import NOPASSWD_USER, SUDO_USER
from tests.lab.users import LAB_PASSWORD, LAB_USER

pytestmark = pytest.mark.integration

REMOTE = {"ssh": "ssh1", "telnet": "telnet1"}


def login_as(lab: Lab, kind: str, user: str, **kwargs: object) -> Host:
    """A lab host of ``kind`` logged in as ``user`` (password auth, like a person)."""
    options: dict[str, object] = {"user": user, "password": LAB_PASSWORD}
    if kind == "ssh":
        options["key"] = None
    options.update(kwargs)
    return remote_host(lab, REMOTE[kind], **options)


def _alive(pattern: str) -> bool:
    found = subprocess.run(["pgrep", "-f", pattern], check=False, capture_output=True)
    return found.returncode == 0


@pytest.mark.parametrize("become", ["sudo", "su"])
async def test_local_root_becomes_a_lab_user(become: str) -> None:
    host = LocalHost()
    try:
        session = await host.open_session("other", as_user=LAB_USER, become=become)  # type: ignore[arg-type]
        assert (await session.run("whoami")).only.output == LAB_USER
        await session.run("export KEPT=yes; cd /tmp")
        assert (await session.run("echo $KEPT; pwd")).only.output == "yes\n/tmp"
        # The default session is not changed.
        assert (await host.run("whoami")).only.output == "root"
    finally:
        await host.close()


@pytest.mark.parametrize("kind", ["ssh", "telnet"])
async def test_sudo_with_a_password(lab: Lab, kind: str) -> None:
    host = login_as(lab, kind, SUDO_USER, become_password=LAB_PASSWORD)
    try:
        session = await host.open_session("root", as_user="root")
        assert (await session.run("whoami")).only.output == "root"
        assert (await host.run("whoami")).only.output == SUDO_USER
    finally:
        await host.close()


@pytest.mark.parametrize("kind", ["ssh", "telnet"])
async def test_su_with_the_target_users_password(lab: Lab, kind: str) -> None:
    host = login_as(lab, kind, LAB_USER, become_password=LAB_PASSWORD)
    try:
        session = await host.open_session("su", as_user=SUDO_USER, become="su")
        assert (await session.run("whoami")).only.output == SUDO_USER
    finally:
        await host.close()


@pytest.mark.parametrize("kind", ["ssh", "telnet"])
async def test_sudo_without_a_password(lab: Lab, kind: str) -> None:
    host = login_as(lab, kind, NOPASSWD_USER)
    try:
        session = await host.open_session("root", as_user="root")
        assert (await session.run("whoami")).only.output == "root"
    finally:
        await host.close()


@pytest.mark.parametrize(("kind", "become"), [("ssh", "sudo"), ("telnet", "sudo"), ("ssh", "su")])
async def test_a_wrong_password_fails_fast_and_is_never_shown(
    lab: Lab, kind: str, become: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Wrong-Secret-4711"
    user = SUDO_USER if become == "sudo" else LAB_USER
    target = "root" if become == "sudo" else SUDO_USER
    host = login_as(lab, kind, user, become_password=secret, connect_timeout=20)
    started = time.monotonic()
    try:
        with pytest.raises(AuthenticationError) as info:
            await host.open_session("bad", as_user=target, become=become)  # type: ignore[arg-type]
        took = time.monotonic() - started
        message = str(info.value)
        assert host.name in message
        assert secret not in message
        # One line naming the host and both users, without otto's own command text.
        assert "\n" not in message, message
        assert message.startswith(f"{host.name}: {become} to {target} refused the password of ")
        whose = user if become == "sudo" else target
        assert f"password of {whose} (become_password)" in message, message
        for own in ("otto-become", "OTTO_BECOME", "$((", "exec ", "/bin/sh -c", "otto-uid"):
            assert own not in message, message
        assert took < 10, f"took {took:.1f}s"
        assert secret not in repr(host)
        assert "bad" not in host.sessions
        # The host is still usable.
        assert (await host.run("whoami")).only.output == user
    finally:
        await host.close()
    assert secret not in caplog.text
    assert LAB_PASSWORD not in caplog.text


async def test_the_right_password_never_reaches_logs_or_reprs(
    lab: Lab, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    host = login_as(lab, "ssh", SUDO_USER, become_password=LAB_PASSWORD)
    try:
        session = await host.open_session("root", as_user="root")
        result = await session.run("whoami")
        assert result.only.output == "root"
        for text in (repr(host), repr(session), repr(result), str(host.__dict__)):
            assert LAB_PASSWORD not in text
    finally:
        await host.close()
    assert LAB_PASSWORD not in caplog.text


async def test_a_prompt_without_a_become_password_is_an_authentication_error(lab: Lab) -> None:
    host = login_as(lab, "ssh", SUDO_USER)
    try:
        with pytest.raises(AuthenticationError, match="no become_password"):
            await host.open_session("root", as_user="root")
    finally:
        await host.close()


async def test_a_user_sudo_refuses_is_a_connect_error_with_what_sudo_said(lab: Lab) -> None:
    host = login_as(lab, "ssh", LAB_USER, become_password=LAB_PASSWORD)
    try:
        with pytest.raises(ConnectError) as info:
            await host.open_session("root", as_user="root")
        assert "ssh1" in str(info.value)
        assert "sudoers" in str(info.value)
    finally:
        await host.close()


@pytest.mark.parametrize("kind", ["local", "ssh", "telnet"])
async def test_timeout_interrupts_the_other_users_command_and_close_leaves_nothing(
    lab: Lab, kind: str
) -> None:
    if kind == "local":
        host: Host = LocalHost()
        target = LAB_USER
    else:
        host = login_as(lab, kind, SUDO_USER, become_password=LAB_PASSWORD)
        target = "root"
    mark = {"local": "101.25", "ssh": "102.25", "telnet": "103.25"}[kind]
    try:
        session = await host.open_session("busy", as_user=target)
        result = (await session.run(f"sleep {mark}", timeout=1)).only
        assert result.status is Status.Error and result.timed_out
        assert (await session.run("whoami")).only.output == target
        assert await eventually(lambda: not _alive(f"sleep {mark}"), timeout=5)
        await session.send(f"sleep {mark} &\n")
        assert await eventually(lambda: _alive(f"sleep {mark}"), timeout=5)
        await session.close()
        assert await eventually(lambda: not _alive(f"sleep {mark}"), timeout=5)
    finally:
        await host.close()


async def test_reopening_with_other_become_settings_is_a_value_error() -> None:
    host = LocalHost()
    try:
        await host.open_session("x", as_user=LAB_USER)
        assert await host.open_session("x", as_user=LAB_USER) is host.sessions["x"]
        with pytest.raises(ValueError, match="already open"):
            await host.open_session("x", as_user=LAB_USER, become="su")
        with pytest.raises(ValueError, match="already open"):
            await host.open_session("x", pty=True)
    finally:
        await host.close()


_BECOME_TASK = """
import otto.lab
from otto.instructions import instruction


@instruction()
async def become_root() -> None:
    session = await otto.lab.get_host("target").open_session("root", as_user="root")
    await session.run("true")
"""


def test_a_wrong_sudo_password_is_one_line_from_the_otto_command(lab: Lab, tmp_path: Path) -> None:
    secret = "Wrong-Secret-0815"
    spec = lab.host("ssh1")
    host = {
        "name": "target", "address": spec.address, "port": spec.port, "term": "ssh",
        "user": SUDO_USER, "password": LAB_PASSWORD, "known_hosts": str(lab.known_hosts),
        "become_password": secret,
    }  # fmt: skip
    (tmp_path / "lab.json").write_text(json.dumps({"hosts": [host]}))
    (tmp_path / "become_tasks.py").write_text(_BECOME_TASK)
    (tmp_path / "otto.toml").write_text('instructions = ["become_tasks"]\n')
    env = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "NO_COLOR"}}
    proc = subprocess.run(
        [sys.executable, "-m", "otto", "--lab", str(tmp_path / "lab.json"), "run", "become-root"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "target" in lines[0] and "sudo to root" in lines[0] and SUDO_USER in lines[0], lines
    for own in (secret, LAB_PASSWORD, "otto-become", "$((", "/bin/sh -c", "Traceback"):
        assert own not in proc.stdout + proc.stderr
