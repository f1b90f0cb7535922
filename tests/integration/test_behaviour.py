"""SPEC §1-§3 behaviour, one suite for every kind of host.

The ``host`` fixture is parametrized by host kind; each test runs against a
local shell and, where the lab is up, against SSH and Telnet hosts too.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator

import pytest

from otto import ExpectTimeout, Host, SessionClosed, Status
from tests.integration.hosts import (
    HOST_KINDS,
    make_host,
    skip_on_one_stream,
    start_and_wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(params=HOST_KINDS)
def unopened_host(request: pytest.FixtureRequest) -> Host:
    return make_host(request, request.param)


@pytest.fixture
async def host(unopened_host: Host) -> AsyncIterator[Host]:
    try:
        yield unopened_host
    finally:
        await unopened_host.close()


def octal(data: bytes) -> str:
    """``data`` as a printf format that prints exactly those bytes."""
    return "".join(f"\\{b:03o}" for b in data)


# --- state and results -------------------------------------------------------------


async def test_state_persists_between_calls(host: Host) -> None:
    await host.run("cd /tmp")
    await host.run("export OTTO_X=42; otto_y=7; otto_f() { echo fn$1; }")
    await host.run("declare -a otto_arr=(a b c) 2>/dev/null || otto_arr=b")
    out = (await host.run("pwd; echo $OTTO_X $otto_y; otto_f 1")).only.output
    assert out == "/tmp\n42 7\nfn1"


async def test_list_runs_in_order_and_stops_at_first_failure(host: Host) -> None:
    result = await host.run(["echo one", "false", "echo never"])
    assert result.status is Status.Failed
    assert [s.command for s in result.statuses] == ["echo one", "false"]
    assert result.statuses[0].output == "one"
    assert result.statuses[1].retcode == 1


async def test_output_merges_stderr_in_order(host: Host) -> None:
    out = (await host.run("echo out1; echo err1 >&2; echo out2")).only
    assert out.output == "out1\nerr1\nout2"
    assert out.status is Status.Success and out.retcode == 0


async def test_retcode_and_status(host: Host) -> None:
    r = (await host.run("sh -c 'exit 7'")).only
    assert (r.status, r.retcode) == (Status.Failed, 7)


# --- adversarial output ----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"no trailing newline",
        b"two trailing\n\n",
        b"carriage\rreturn",
        b"\x1b[31mred\x1b[0m and \x1b[2J",
        b"nul\x00byte",
        b"\xff\xfe invalid \xc3",
        b"\x1eotto:0123456789abcdef:1:0\x1f look-alike marker",
        b"\x1e\x1f\x1e",
    ],
)
async def test_output_is_exact(host: Host, data: bytes) -> None:
    out = (await host.run(f"printf '{octal(data)}'")).only
    expected = data.replace(b"\r\n", b"\n").decode("utf-8", "replace").removesuffix("\n")
    assert out.output == expected


async def test_forged_marker_with_the_real_token_shape(host: Host) -> None:
    fake = "\\036otto:" + secrets.token_hex(8) + ":1:0\\037"
    out = (await host.run(f"printf '{fake}'; echo done")).only
    assert out.output.endswith("done")
    assert out.status is Status.Success


async def test_multibyte_character_split_across_reads(host: Host) -> None:
    out = (await host.run(r"printf '\342'; sleep 0.05; printf '\202\254 euro'")).only
    assert out.output == "\u20ac euro"


async def test_one_megabyte_line(host: Host) -> None:
    out = (await host.run("head -c 1000000 /dev/zero | tr '\\0' x")).only
    assert out.output == "x" * 1_000_000


async def test_hundred_megabytes(host: Host) -> None:
    if getattr(host, "term", "") in ("telnet", "console", "serial"):
        pytest.skip("100 MB over a terminal is covered by the SSH and local runs")
    out = (await host.run("head -c 75000000 /dev/zero | base64 -w 0", timeout=120)).only
    assert out.status is Status.Success
    assert len(out.output) == 100_000_000
    assert set(out.output) == {"A"}


# --- awkward command text ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("sleep 1 &", ""),
        ("echo hi # a comment", "hi"),
        ("cat <<'EOF'\nline 1\n$HOME stays\nEOF", "line 1\n$HOME stays"),
        ("echo one\necho two\n\necho three", "one\ntwo\nthree"),
        ("echo 'it''s'; echo \"q\\\"uote\"", 'its\nq"uote'),
        ("exec 3>/dev/null; echo after exec", "after exec"),
        ("", ""),
    ],
)
async def test_awkward_commands_end(host: Host, command: str, expected: str | None) -> None:
    out = (await host.run(command, timeout=20)).only
    assert out.status is Status.Success, out
    if expected is not None:
        assert out.output == expected
    assert (await host.run("echo still here")).only.output == "still here"


async def test_unbalanced_quote_is_a_failure_with_the_shells_message(host: Host) -> None:
    out = (await host.run("echo 'unbalanced", timeout=20)).only
    assert out.status is Status.Failed
    assert not out.timed_out
    assert re.search(r"unexpected|unterminated|EOF|quote", out.output), out.output
    assert (await host.run("echo fine")).only.output == "fine"


async def test_exec_replacing_the_shell_ends_the_call(host: Host) -> None:
    out = (await host.run("exec sh -c 'echo bye; exit 4'", timeout=20)).only
    assert (out.output, out.retcode, out.status) == ("bye", 4, Status.Failed)
    assert (await host.run("echo fresh")).only.output == "fresh"


# --- timeouts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", ["sleep 30", "cat", "read x", "yes", "while :; do sleep 1; done"]
)
async def test_timeout_interrupts_and_session_survives(host: Host, command: str) -> None:
    await host.run("cd /tmp && export OTTO_KEEP=kept")
    out = (await host.run(f"echo started; {command}", timeout=0.5)).only
    assert out.status is Status.Error
    assert out.timed_out
    assert out.output.startswith("started")
    assert host.name in out.error
    after = (await host.run("pwd; echo $OTTO_KEEP")).only
    assert after.output == "/tmp\nkept"


async def test_timeout_is_shared_by_a_list(host: Host) -> None:
    result = await host.run(["sleep 0.3", "sleep 0.3", "sleep 5"], timeout=1.0)
    assert result.status is Status.Error
    assert len(result.statuses) == 3
    assert result.statuses[-1].timed_out


async def test_exit_starts_a_fresh_shell_with_a_warning(
    host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    await host.run("cd /tmp")
    out = (await host.run("exit 3")).only
    assert out.retcode == 3
    assert out.status is Status.Failed
    with caplog.at_level(logging.WARNING, logger="otto"):
        again = (await host.run("echo new; pwd")).only
    assert again.output.startswith("new")
    assert again.output != "new\n/tmp"
    assert any("fresh shell" in r.getMessage() for r in caplog.records)


# --- sessions -----------------------------------------------------------------------------


async def test_named_sessions_are_independent(host: Host) -> None:
    skip_on_one_stream(host, "sessions share its cwd and env")
    s1 = await host.open_session("worker1")
    s2 = await host.open_session("worker2")
    await s1.run("cd /tmp; export WHO=one")
    await s2.run("cd /; export WHO=two")
    assert (await s1.run("pwd; echo $WHO")).only.output == "/tmp\none"
    assert (await s2.run("pwd; echo $WHO")).only.output == "/\ntwo"
    assert await host.open_session("worker1") is s1
    await s1.close()
    await s2.close()


async def test_closed_session_raises(host: Host) -> None:
    async with await host.open_session("short") as s:
        assert (await s.run("echo x")).only.output == "x"
    with pytest.raises(SessionClosed):
        await s.run("echo y")
    with pytest.raises(SessionClosed):
        await s.send("echo y\n")
    reopened = await host.open_session("short")
    assert reopened is not s
    await reopened.close()


async def test_sessions_run_concurrently(host: Host) -> None:
    skip_on_one_stream(host, "sessions take turns")
    sessions = [await host.open_session(f"par{i}") for i in range(3)]
    results = await asyncio.gather(*(s.run("sleep 0.4; echo done") for s in sessions))
    assert all(r.only.output == "done" for r in results)
    durations = [r.only.duration for r in results]
    assert max(durations) < 1.1  # serial would take 1.2 s
    for s in sessions:
        await s.close()


async def test_concurrent_runs_on_one_session_are_serialized(host: Host) -> None:
    async def burst(i: int) -> str:
        return (await host.run(f"for n in 1 2 3; do echo {i}-$n; done")).only.output

    outputs = await asyncio.gather(*(burst(i) for i in range(20)))
    for i, out in enumerate(outputs):
        assert out == f"{i}-1\n{i}-2\n{i}-3"


async def test_cancelled_run_leaves_the_session_usable(host: Host) -> None:
    s = await host.open_session("cancelled")
    await s.run("cd /tmp")
    task = await start_and_wait_for(s, "echo started; sleep 30", b"started")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await s.run("pwd", timeout=10)).only.output == "/tmp"
    await s.close()


# --- oneshot --------------------------------------------------------------------------------


async def test_oneshot_has_no_shell_state(host: Host) -> None:
    skip_on_one_stream(host, "oneshot runs in it too")
    await host.run("export OTTO_STATE=1")
    out = await host.oneshot("echo ${OTTO_STATE:-none}; echo err >&2")
    assert out.output == "none\nerr"
    assert out.status is Status.Success


async def test_many_oneshots_at_once(host: Host) -> None:
    outs = await asyncio.gather(*(host.oneshot(f"echo {i}") for i in range(30)))
    assert [o.output for o in outs] == [str(i) for i in range(30)]


async def test_oneshot_timeout_and_failure(host: Host) -> None:
    out = await host.oneshot("echo begun; sleep 30", timeout=0.5)
    assert out.status is Status.Error and out.timed_out
    assert out.output == "begun"
    failed = await host.oneshot("exit 5")
    assert (failed.status, failed.retcode) == (Status.Failed, 5)


# --- send / expect ----------------------------------------------------------------------------


async def test_seed_repl_example(host: Host) -> None:
    await host.send("python3 -i -c ''\n")
    await host.expect(r">>> ", timeout=5.0)
    await host.send("print('otto_test')\n")
    output = await host.expect(r">>> ", timeout=5.0)
    assert "otto_test" in output
    await host.send("exit()\n")
    assert (await host.run("echo back in the shell")).only.output == "back in the shell"


async def test_expect_returns_text_since_last_match(host: Host) -> None:
    await host.send("echo alpha; echo beta; echo gamma\n")
    assert (await host.expect("alpha", timeout=5)).endswith("alpha")
    assert await host.expect(re.compile(r"gamma"), timeout=5) == "\nbeta\ngamma"


async def test_expect_timeout_carries_what_was_received(host: Host) -> None:
    await host.send("echo partial-output\n")
    with pytest.raises(ExpectTimeout) as info:
        await host.expect("never-printed", timeout=0.5)
    assert isinstance(info.value, TimeoutError)
    assert "partial-output" in info.value.received
    assert "partial-output" in str(info.value)


async def test_expect_on_a_named_session(host: Host) -> None:
    s = await host.open_session("interactive")
    await s.send("read name; echo hello-$name\n")
    await s.send("otto\n")
    assert (await s.expect("hello-otto", timeout=5)).endswith("hello-otto")
    assert (await s.run("echo ok")).only.output == "ok"
    await s.close()


# --- pty sessions -------------------------------------------------------------------------------


async def test_pty_session(host: Host) -> None:
    s = await host.open_session("tty", pty=True)
    out = (await s.run("tty >/dev/null && echo is-a-tty; printf 'a\\nb'")).only
    assert out.output == "is-a-tty\na\nb"
    t = (await s.run("sleep 30", timeout=0.5)).only
    assert t.timed_out
    assert (await s.run("echo after")).only.output == "after"
    await s.close()


# --- property: any bytes a command prints come back exactly ----------------------------------


@pytest.mark.parametrize("turn_on", ["stty echo", "stty sane"])
async def test_a_terminal_whose_echo_is_turned_on_keeps_output_exact(
    host: Host, turn_on: str
) -> None:
    session = await host.open_session("echoing", pty=True)
    try:
        assert (await session.run(turn_on)).only.output == ""
        # Plain and framed commands, each shown exactly: never otto's own text.
        for command, expected in [
            ("echo hi", "hi"),
            ("printf 'a\\nb'", "a\nb"),
            ("echo 'x y' | cat", "x y"),
            ("true", ""),
            (f"{turn_on}; echo again", "again"),
            ("printf 'c\\td\\n'; echo e", "c\td\ne"),
        ]:
            assert (await session.run(command)).only.output == expected, command
        modes = (await session.run("stty -a")).only.output
        assert re.search(r"(^|\s)-echo(\s|$)", modes), modes  # off again for otto
    finally:
        await session.close()


async def test_random_bytes_round_trip(host: Host) -> None:
    rng = secrets.SystemRandom()
    for size in [1, 2, 3, 10, 100, 1000, 5000]:
        data = bytes(rng.randrange(0, 256) for _ in range(size))
        out = (await host.run(f"printf '{octal(data)}'")).only
        expected = data.replace(b"\r\n", b"\n").decode("utf-8", "replace").removesuffix("\n")
        assert out.output == expected, size


# --- transfers ----------------------------------------------------------------------------------


async def test_put_and_get_files_and_folders(host: Host, tmp_path: os.PathLike[str]) -> None:
    from pathlib import Path

    base = Path(tmp_path)
    src = base / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(bytes(range(256)) * 100)
    single = base / "single.txt"
    single.write_text("one file")
    remote = (await host.run("mktemp -d")).only.output
    seen: list[tuple[str, int, int]] = []
    put = await host.put([single, src], remote, progress=lambda p, d, t: seen.append((p, d, t)))
    assert put.status is Status.Success, put
    assert (await host.run(f"cat {remote}/single.txt {remote}/src/a.txt")).only.output == (
        "one filealpha"
    )
    assert seen and seen[-1][1] == seen[-1][2]
    back = base / "back"
    back.mkdir()
    got = await host.get(f"{remote}/src", back)
    assert got.status is Status.Success, got
    assert (back / "src" / "sub" / "b.bin").read_bytes() == bytes(range(256)) * 100
    missing = await host.get(f"{remote}/does-not-exist", back)
    assert missing.status is Status.Error
    assert "does-not-exist" in missing.error
    await host.run(f"rm -rf {remote}")


async def test_xtrace_does_not_end_a_command_early(host: Host) -> None:
    await host.run("set -x")
    out = (await host.run("echo traced; sleep 0.2; echo done")).only
    await host.run("set +x")
    assert out.status is Status.Success
    assert "traced" in out.output and out.output.endswith("done")
    assert "__otto" not in out.output and "otto:" not in out.output  # only the user's trace
    assert (await host.run("echo clean")).only.output == "clean"
