"""put/get semantics on every host kind: a missing destination folder, hostile
file names, and transfers interrupted half-way (the old file must survive)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shlex
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from otto import Host, LocalHost, RemoteHost, Status
from tests.integration.hosts import remote_host
from tests.lab import Lab

pytestmark = pytest.mark.integration

KINDS = ["local", "sftp", "scp", "telnet"]


def host_of(kind: str, lab: Lab | None) -> Host:
    if kind == "local":
        return LocalHost()
    assert lab is not None
    if kind == "telnet":
        return remote_host(lab, "telnet1")
    return remote_host(lab, "ssh1", transfer=kind)


@pytest.fixture(params=KINDS)
def unopened_host(request: pytest.FixtureRequest) -> Host:
    lab = None if request.param == "local" else request.getfixturevalue("lab")
    return host_of(request.param, lab)


@pytest.fixture
async def host(unopened_host: Host) -> AsyncIterator[Host]:
    try:
        yield unopened_host
    finally:
        await unopened_host.close()


async def remote_dir(host: Host) -> str:
    return (await host.run("mktemp -d")).only.output


async def listing(host: Host, folder: str) -> list[str]:
    """The names in ``folder`` (any bytes but NUL; ``ls`` would quote them on a tty)."""
    out = await host.run(
        f"cd {shlex.quote(folder)} && for f in * .[!.]* ..?*; do "
        """[ -e "$f" ] && printf '%s\\0' "$f"; done; true"""
    )
    return sorted(n for n in out.only.output.split("\0") if n)


# --- a destination folder that does not exist -----------------------------------------


async def test_put_into_a_missing_folder_fails_naming_host_and_folder(
    host: Host, tmp_path: Path
) -> None:
    src = tmp_path / "f.txt"
    src.write_text("data")
    base = await remote_dir(host)
    missing = f"{base}/no-such-folder"
    result = await host.put(src, missing)
    assert result.status is Status.Error
    assert host.name in result.error
    assert missing in result.error
    assert result.files == []
    # Nothing was written under the folder's name (SFTP used to create a file there).
    assert await listing(host, base) == []
    await host.run(f"rm -rf {shlex.quote(base)}")


async def test_get_into_a_missing_folder_fails_naming_host_and_folder(
    host: Host, tmp_path: Path
) -> None:
    base = await remote_dir(host)
    await host.run(f"echo data > {base}/f.txt")
    missing = tmp_path / "no-such-folder"
    result = await host.get(f"{base}/f.txt", missing)
    assert result.status is Status.Error
    assert host.name in result.error
    assert str(missing) in result.error
    assert not missing.exists()
    await host.run(f"rm -rf {shlex.quote(base)}")


# --- hostile file names ---------------------------------------------------------------

HOSTILE = [
    "$(touch PWNED).txt",
    "`touch PWNED`.txt",
    "a'b\"c.txt",
    "new\nline.txt",
    "-dash.txt",
    "with  space.txt",
    "semi;colon&amp.txt",
]


@pytest.mark.parametrize("name", HOSTILE, ids=lambda n: n.encode("unicode_escape").decode())
async def test_hostile_names_move_exactly_that_file_and_run_nothing(
    host: Host, tmp_path: Path, name: str
) -> None:
    token = secrets.token_hex(4)
    name = name.replace("PWNED", f"PWNED_{token}")
    content = f"content of {name!r}\n"
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text(content)
    decoy = name.split("'")[0]
    if decoy != name:
        # What an unquoted shell would pick up instead of the real file.
        (out / decoy).write_text("decoy\n")
    base = await remote_dir(host)

    put = await host.put(out / name, base)
    scp_newline = isinstance(host, RemoteHost) and host.transfer == "scp" and "\n" in name
    if scp_newline:
        # SCP's protocol cannot carry such a name: a clean error, nothing written.
        assert put.status is Status.Error
        assert "newline" in put.error and host.name in put.error
        assert await listing(host, base) == []
    else:
        assert put.status is Status.Success, put.error
        assert put.files == [f"{base}/{name}"]
        remote = shlex.quote(f"{base}/{name}")
        assert (await host.run(f"cat {remote}")).only.output + "\n" == content
        assert await listing(host, base) == sorted([name])

        back = tmp_path / "back"
        back.mkdir()
        got = await host.get(f"{base}/{name}", back)
        assert got.status is Status.Success, got.error
        assert got.files == [str(back / name)]
        assert (back / name).read_text() == content
        assert sorted(os.listdir(back)) == [name]

    pwned = f"PWNED_{token}"
    check = f"ls -d ~/{pwned}* {shlex.quote(base)}/{pwned}* 2>/dev/null; true"
    assert (await host.run(check)).only.output == ""
    assert not list(Path.cwd().glob(f"{pwned}*"))
    await host.run(f"rm -rf {shlex.quote(base)}")


# --- interrupted transfers ------------------------------------------------------------

SSH_KINDS = ["sftp", "scp"]
BIG = 32 * 1024 * 1024


@pytest.mark.parametrize("kind", SSH_KINDS)
async def test_cancelled_put_keeps_the_old_file_and_leaves_no_temp(
    lab: Lab, kind: str, tmp_path: Path
) -> None:
    host = host_of(kind, lab)
    base = await remote_dir(host)
    good = tmp_path / "f.bin"
    good.write_text("the good version\n")
    assert (await host.put(good, base)).is_ok
    big = tmp_path / "big" / "f.bin"
    big.parent.mkdir()
    big.write_bytes(os.urandom(BIG))

    def cut(path: str, done: int, total: int) -> None:
        if 0 < done < total and not task.done():
            task.cancel()

    task = asyncio.ensure_future(host.put(big, base, progress=cut))
    with pytest.raises(asyncio.CancelledError):
        await task
    await host.close()

    checker = host_of(kind, lab)
    assert (await checker.run(f"cat {base}/f.bin")).only.output == "the good version"
    assert await listing(checker, base) == ["f.bin"]
    await checker.run(f"rm -rf {base}")
    await checker.close()


@pytest.mark.parametrize("kind", SSH_KINDS)
async def test_put_cut_by_closing_the_host_keeps_the_old_file_quietly(
    lab: Lab, kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    host = host_of(kind, lab)
    base = await remote_dir(host)
    good = tmp_path / "f.bin"
    good.write_text("the good version\n")
    assert (await host.put(good, base)).is_ok
    big = tmp_path / "big" / "f.bin"
    big.parent.mkdir()
    big.write_bytes(os.urandom(BIG))
    closing: list[asyncio.Task[None]] = []

    def cut(path: str, done: int, total: int) -> None:
        if 0 < done < total and not closing:
            closing.append(asyncio.ensure_future(host.close()))

    with caplog.at_level(logging.DEBUG):
        result = await host.put(big, base, progress=cut)
        await closing[0]
    assert result.status is Status.Error
    assert host.name in result.error
    assert not [r for r in caplog.records if "socket.send() raised" in r.getMessage()]

    checker = host_of(kind, lab)
    assert (await checker.run(f"cat {base}/f.bin")).only.output == "the good version"
    assert await listing(checker, base) == ["f.bin"]
    await checker.run(f"rm -rf {base}")
    await checker.close()


@pytest.mark.parametrize("kind", SSH_KINDS)
async def test_interrupted_get_keeps_the_old_local_file_and_leaves_no_temp(
    lab: Lab, kind: str, tmp_path: Path
) -> None:
    host = host_of(kind, lab)
    base = await remote_dir(host)
    await host.run(f"head -c {BIG} /dev/urandom > {base}/f.bin")
    (tmp_path / "f.bin").write_text("the good version\n")

    def cut(path: str, done: int, total: int) -> None:
        if 0 < done < total and not task.done():
            task.cancel()

    task = asyncio.ensure_future(host.get(f"{base}/f.bin", tmp_path, progress=cut))
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (tmp_path / "f.bin").read_text() == "the good version\n"
    assert os.listdir(tmp_path) == ["f.bin"]

    # Cut by closing the host: an Error result, and still the old file.
    closing: list[asyncio.Task[None]] = []

    def close(path: str, done: int, total: int) -> None:
        if 0 < done < total and not closing:
            closing.append(asyncio.ensure_future(host.close()))

    result = await host.get(f"{base}/f.bin", tmp_path, progress=close)
    await closing[0]
    assert result.status is Status.Error
    assert (tmp_path / "f.bin").read_text() == "the good version\n"
    assert os.listdir(tmp_path) == ["f.bin"]
    await host.run(f"rm -rf {base}")
    await host.close()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_folder_is_merged_and_its_files_replaced(
    lab: Lab, kind: str, tmp_path: Path
) -> None:
    host = host_of(kind, lab)
    base = await remote_dir(host)
    await host.run(f"mkdir -p {base}/d/old && echo keep > {base}/d/old/k && echo old > {base}/d/f")
    src = tmp_path / "d"
    (src / "sub").mkdir(parents=True)
    (src / "f").write_text("new\n")
    (src / "sub" / "g").write_text("g\n")
    put = await host.put(src, base)
    assert put.status is Status.Success, put.error
    assert sorted(put.files) == [f"{base}/d/f", f"{base}/d/sub/g"]
    out = (await host.run(f"cd {base}/d && cat f sub/g old/k")).only.output
    assert out.splitlines() == ["new", "g", "keep"]
    assert await listing(host, f"{base}/d") == ["f", "old", "sub"]
    back = tmp_path / "back"
    back.mkdir()
    got = await host.get(f"{base}/d", back)
    assert got.status is Status.Success, got.error
    assert sorted(got.files) == sorted(str(back / "d" / p) for p in ("f", "sub/g", "old/k"))
    assert (back / "d" / "old" / "k").read_text() == "keep\n"
    await host.run(f"rm -rf {base}")
    await host.close()
