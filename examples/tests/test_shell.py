"""A first otto test suite: run it as it is with ``otto test examples/tests``.

Without a lab file the lab is this machine, as host ``local``; with
``otto test --lab lab.json examples/tests`` the same tests run on the lab's host
(the lab's only host, or one run per host picked by ``@pytest.mark.hosts``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from otto import Host


async def test_a_command_succeeds(host: Host) -> None:
    result = await host.run("uname -s")
    # A failing assert on a result shows the host, the command, its exit status
    # and the tail of its output.
    assert result.status.is_ok
    assert result.only.output.strip()


async def test_the_shell_keeps_its_state(host: Host) -> None:
    await host.run(["cd /tmp", "export GREETING=hello"])
    result = await host.run('echo "$GREETING from $(pwd)"')
    assert result.only.output == "hello from /tmp"


async def test_a_failing_command_is_a_result_not_an_exception(host: Host) -> None:
    result = await host.run("ls /no/such/folder")
    assert not result.is_ok
    assert result.only.retcode != 0
    assert "No such file" in result.only.output


async def test_a_named_session_is_a_shell_of_its_own(host: Host) -> None:
    async with await host.open_session("worker") as worker:
        await worker.run("cd /")
        assert (await worker.run("pwd")).only.output == "/"
    assert (await host.run("pwd")).only.output != "/"


@pytest.mark.parametrize("word", ["alpha", "beta", "gamma"])
async def test_parametrized(host: Host, word: str) -> None:
    result = await host.run(f"printf '%s' {word} | wc -c")
    assert int(result.only.output) == len(word)


async def test_files_round_trip(host: Host, artifacts: Path) -> None:
    # artifacts: a folder of this test's own in the run folder, kept with the report.
    sent = artifacts / "hello.txt"
    sent.write_text("hello, board\n")
    await host.run("rm -rf /tmp/otto-example && mkdir -p /tmp/otto-example")
    await host.put([str(sent)], "/tmp/otto-example")
    back = artifacts / "back"
    back.mkdir()
    await host.get(["/tmp/otto-example/hello.txt"], str(back))
    assert (back / "hello.txt").read_text() == "hello, board\n"
