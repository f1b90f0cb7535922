"""A host whose shell start-up turns on ``set -e`` and ``set -x``: otto's shell is
not ended by a failing command, and its output carries no trace (a local bash
with BASH_ENV, and a real sshd user whose ~/.bashrc does it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from otto import Host, LocalHost, Status
from tests.integration.hosts import remote_host
from tests.lab import Lab
from tests.lab.users import ERREXIT_USER, LAB_PASSWORD

pytestmark = pytest.mark.integration


@pytest.fixture(params=["local", "ssh"])
def errexit_host(request: pytest.FixtureRequest, tmp_path: Path) -> Host:
    """A host whose every bash starts with ``set -e`` and ``set -x``."""
    if request.param == "local":
        startup = tmp_path / "startup.sh"
        startup.write_text("set -e\nset -x\n")
        return LocalHost(shell="/bin/bash", env={**os.environ, "BASH_ENV": str(startup)})
    lab = request.getfixturevalue("lab")
    assert isinstance(lab, Lab)
    return remote_host(lab, "ssh1", user=ERREXIT_USER, password=LAB_PASSWORD, key=None)


@pytest.mark.parametrize("pty", [False, True], ids=["pipes", "pty"])
async def test_set_e_and_set_x_in_a_startup_file_leave_otto_s_shell_alone(
    errexit_host: Host, pty: bool, caplog: pytest.LogCaptureFixture
) -> None:
    host = errexit_host
    try:
        session = await host.open_session("s", pty=pty)
        await session.run("export KEPT=state; cd /tmp")
        failed = (await session.run("false")).only
        assert (failed.status, failed.retcode) == (Status.Failed, 1)
        kept = (await session.run("echo $KEPT; pwd")).only
        assert kept.output == "state\n/tmp"  # the same shell: nothing traced, nothing lost
        assert (await session.run(["true", "ls -d /", "sh -c 'exit 3'"])).statuses[-1].retcode == 3
        assert (await session.run("printf 'a\\nb'")).only.output == "a\nb"
        assert "the shell ended" not in caplog.text
    finally:
        await host.close()
