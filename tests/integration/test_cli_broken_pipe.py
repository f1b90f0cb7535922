"""``otto ... | head -1``: a stdout (or stderr) closed early ends otto as a Unix tool ends.

No traceback and nothing else on stderr, exit status 141 (128 + SIGPIPE, what
``set -o pipefail`` reports for ``seq 1 200000 | head -1``), and the command
running on the host is stopped, not left to run. Each test runs otto as a real
process whose pipe the test closes after the first line, as ``head -1`` does.
"""

from __future__ import annotations

import os
import select
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Literal, TextIO

import pytest

from otto.cli import output
from otto.cli.fast import parse
from tests.integration.test_cli import ssh_lab_file, write_lab

if TYPE_CHECKING:
    from tests.lab import Lab as TestLab

__all__ = ["ssh_lab_file"]  # the module's fixture, used here

DEADLINE = 60.0
EXIT_PIPE = 141


def env_for(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "NO_COLOR", "FORCE_COLOR"}}
    env["OTTO_RESERVATIONS"] = f"sqlite:///{tmp_path / 'reservations.db'}"
    env.pop("OTTO_LOG", None)
    return env


def closed_early(
    args: list[str], tmp_path: Path, close: Literal["stdout", "stderr", "both"] = "stdout"
) -> tuple[int, bytes, str]:
    """Run ``otto ARGS``; after the first line of the stream ``close`` names, close it (and
    with ``both``, stderr too: ``2>&1 | head -1``). Its status, first line, and stderr."""
    err_file = tmp_path / "stderr.txt"
    with err_file.open("wb") as err_sink:
        err: int | IO[bytes] = err_sink
        if close == "both":
            err = subprocess.STDOUT
        elif close == "stderr":
            err = subprocess.PIPE
        proc = subprocess.Popen(
            [sys.executable, "-m", "otto", *args],
            stdout=subprocess.PIPE if close != "stderr" else subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env=env_for(tmp_path),
            cwd=tmp_path,
        )
        try:
            pipe = proc.stderr if close == "stderr" else proc.stdout
            assert pipe is not None
            ready, _, _ = select.select([pipe], [], [], DEADLINE)
            assert ready, "otto printed nothing"
            first = pipe.readline()
            pipe.close()  # what `head -1` does
            code = proc.wait(DEADLINE)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return code, first, err_file.read_text()


def assert_quiet(stderr: str) -> None:
    assert "Traceback" not in stderr, stderr
    assert "Error" not in stderr, stderr
    assert stderr == "", stderr


def holding(token: str) -> list[int]:
    """The processes on this machine (the lab's hosts share its process table) with
    ``token`` in their command line."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if token.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def running(token: str) -> bool:
    """Whether a process on this machine has ``token`` in its command line."""
    return bool(holding(token))


def gone(token: str) -> bool:
    """Wait (bounded) for every process with ``token`` in its command line to end: each
    one's pidfd becomes readable when it exits."""
    deadline = time.monotonic() + DEADLINE
    for pid in holding(token):
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue  # ended already
        try:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        finally:
            os.close(fd)
        if not ready:
            return False
    return not running(token)


def long_command(tmp_path: Path, tag: str) -> tuple[str, str, Path]:
    """A command that prints a lot, then waits in a process named by a unique token, then
    leaves a marker file: (command, token, marker)."""
    marker = tmp_path / f"finished-{tag}"
    token = f"otto-broken-pipe-{os.getpid()}-{tag}"
    inner = f"sleep 30 # {token}\ntouch {shlex.quote(str(marker))}"
    return f"seq 1 200000; sh -c {shlex.quote(inner)}", token, marker


def assert_stopped(token: str, marker: Path) -> None:
    assert gone(token), f"the command on the host was left running ({token})"
    assert not marker.exists()


def test_head_on_the_fast_path_local(tmp_path: Path) -> None:
    command, token, marker = long_command(tmp_path, "fast")
    args = ["host", "local", "run", command]
    assert parse(args) is not None
    code, first, stderr = closed_early(args, tmp_path)
    assert first == f"local $ {command}\n".encode()[: len(first)]
    assert code == EXIT_PIPE
    assert_quiet(stderr)
    assert_stopped(token, marker)


def test_head_on_the_typer_path_local(tmp_path: Path) -> None:
    command, token, marker = long_command(tmp_path, "typer")
    args = ["host", "local", "run", "-t", "60", "-t", "60", command]  # repeated: Typer reads it
    assert parse(args) is None
    code, _, stderr = closed_early(args, tmp_path)
    assert code == EXIT_PIPE
    assert_quiet(stderr)
    assert_stopped(token, marker)


def test_head_on_two_hosts(tmp_path: Path) -> None:
    command, token, marker = long_command(tmp_path, "two")
    lab = write_lab(
        tmp_path / "lab.json",
        [{"name": "alpha", "term": "local"}, {"name": "b", "term": "local"}],
    )
    code, _, stderr = closed_early(["--lab", str(lab), "host", "alpha,b", "run", command], tmp_path)
    assert code == EXIT_PIPE
    assert_quiet(stderr)
    assert_stopped(token, marker)


def test_head_on_json(tmp_path: Path) -> None:
    code, first, stderr = closed_early(["--json", "host", "local", "run", "seq 1 200000"], tmp_path)
    assert first == b"[\n"
    assert code == EXIT_PIPE
    assert_quiet(stderr)


def test_stdout_and_stderr_into_head(tmp_path: Path) -> None:
    command, token, marker = long_command(tmp_path, "both")
    code, _, _ = closed_early(["host", "local", "run", f"{command} >&2"], tmp_path, "both")
    assert code == EXIT_PIPE
    assert_stopped(token, marker)


def test_stderr_closed(tmp_path: Path) -> None:
    marker = tmp_path / "finished-stderr"
    token = f"otto-broken-pipe-{os.getpid()}-stderr"
    inner = f"sleep 30 # {token}\ntouch {shlex.quote(str(marker))}"
    command = f"seq 1 200000 >&2; sh -c {shlex.quote(inner)}"
    code, first, _ = closed_early(["host", "local", "run", command], tmp_path, "stderr")
    assert first == b"local ! 1\n"
    assert code == EXIT_PIPE
    assert_stopped(token, marker)


def test_head_on_a_listing(tmp_path: Path) -> None:
    """A plain, synchronous listing (Typer path) ends the same way."""
    lab = write_lab(
        tmp_path / "lab.json",
        [{"name": f"h{n}", "term": "local", "tags": ["x" * 200]} for n in range(2000)],
    )
    code, first, stderr = closed_early(["--lab", str(lab), "--list-hosts"], tmp_path)
    assert first.startswith(b"NAME")
    assert code == EXIT_PIPE
    assert_quiet(stderr)


def test_head_over_ssh(ssh_lab_file: Path, lab: TestLab, tmp_path: Path) -> None:
    # The lab's hosts share this machine's files and processes: the marker and the
    # sleep are seen from here.
    tmp_path.chmod(0o777)
    command, token, marker = long_command(tmp_path, "ssh")
    code, first, stderr = closed_early(
        ["--lab", str(ssh_lab_file), "host", "ssh1", "run", command], tmp_path
    )
    assert first.startswith(b"ssh1 $ seq 1 200000")
    assert code == EXIT_PIPE
    assert_quiet(stderr)
    assert_stopped(token, marker)


@pytest.mark.parametrize("lines", [1, 3])
def test_a_shell_pipeline_with_head(tmp_path: Path, lines: int) -> None:
    """The real thing: ``set -o pipefail; otto ... | head -N`` in bash."""
    command, token, marker = long_command(tmp_path, f"bash{lines}")
    line = (
        f"set -o pipefail; {shlex.quote(sys.executable)} -m otto host local run "
        f"{shlex.quote(command)} | head -{lines}"
    )
    proc = subprocess.run(
        ["bash", "-c", line],
        capture_output=True,
        env=env_for(tmp_path),
        cwd=tmp_path,
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == EXIT_PIPE
    assert proc.stdout.count(b"\n") == lines
    assert_quiet(proc.stderr.decode())
    assert_stopped(token, marker)


def test_head_on_reservations(tmp_path: Path) -> None:
    """A listing longer than a pipe holds (3000 leases), read by ``head -1``."""
    lab = write_lab(
        tmp_path / "lab.json", [{"name": f"h{n}", "term": "local"} for n in range(3000)]
    )
    reserve = subprocess.run(
        [sys.executable, "-m", "otto", "--lab", str(lab), "reserve", "h.*"],
        capture_output=True,
        env=env_for(tmp_path),
        cwd=tmp_path,
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert reserve.returncode == 0, reserve.stderr
    code, first, stderr = closed_early(["--lab", str(lab), "reservations"], tmp_path)
    assert first.startswith(b"HOST")
    assert code == EXIT_PIPE
    assert_quiet(stderr)


def test_head_on_monitor(tmp_path: Path) -> None:
    """The monitor runs until stopped: its output closed stops it (its next line finds it)."""
    lab = write_lab(tmp_path / "lab.json", [{"name": "alpha", "term": "local"}])
    code, first, stderr = closed_early(
        ["--lab", str(lab), "monitor", "--interval", "0.5", "--port", "0", "alpha"], tmp_path
    )
    assert first.startswith(b"otto monitor: watching alpha")
    assert code == EXIT_PIPE
    assert_quiet(stderr)


def test_head_on_otto_test(tmp_path: Path) -> None:
    """``otto test -v`` with more lines than a pipe holds: pytest stops at the closed
    pipe, so the last test never runs."""
    marker = tmp_path / "last-test-ran"
    (tmp_path / "test_many.py").write_text(
        "import pathlib\nimport pytest\n\n\n"
        '@pytest.mark.parametrize("n", range(3000))\n'
        "def test_n(n: int) -> None:\n    assert n >= 0\n\n\n"
        f"def test_zz_last() -> None:\n    pathlib.Path({str(marker)!r}).touch()\n"
    )
    code, first, stderr = closed_early(
        ["test", "-v", "-p", "no:randomly", "-p", "no:cacheprovider", str(tmp_path)], tmp_path
    )
    assert first.startswith(b"=")
    assert code == EXIT_PIPE
    assert_quiet(stderr)
    assert not marker.exists()


@pytest.fixture
def fresh_pipe_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process' record of a closed pipe, reset for the test and restored after it."""
    monkeypatch.setattr(output._Pipe, "closed", False)
    monkeypatch.setattr(output._Pipe, "listeners", [])


def pipe_without_reader() -> TextIO:
    """A text stream on a real pipe whose reading end is closed (``head`` has gone)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return open(write_end, "w", encoding="utf-8")


def test_a_guarded_stream_stops_the_work_once_and_drops_the_rest(
    fresh_pipe_state: None,
) -> None:
    stream = pipe_without_reader()
    try:
        stops: list[str] = []
        forget = output.on_pipe_closed(lambda: stops.append("stop"))
        guarded = output.GuardedStream(stream)
        for _ in range(3):
            assert guarded.write("x" * 200_000) == 200_000
            guarded.flush()
        assert output.pipe_closed()
        assert stops == ["stop"]
        forget()
        assert output._Pipe.listeners == []
        # The descriptor now goes to /dev/null: Python's own last flush finds nothing wrong.
        stream.write("late\n")
        stream.flush()
    finally:
        stream.close()


def test_plain_output_into_a_closed_pipe_raises_once(fresh_pipe_state: None) -> None:
    """With no work registered to stop, the first write raises so the writer stops."""
    stream = pipe_without_reader()
    try:
        guarded = output.GuardedStream(stream)
        with pytest.raises(BrokenPipeError):
            guarded.write("x\n")
            guarded.flush()
        assert output.pipe_closed()
        guarded.write("more\n")
        guarded.flush()
    finally:
        stream.close()


@pytest.mark.parametrize("path", ["fast", "typer"])
def test_a_silent_command_is_stopped_as_soon_as_the_reader_goes(tmp_path: Path, path: str) -> None:
    # otto's line naming the command, then nothing for a long time: otto has nothing more
    # to write, so only the pipe's own signal (its reader gone) can tell it to stop.
    marker = tmp_path / "finished"
    token = f"otto-silent-{os.getpid()}-{path}"
    inner = f"sleep 3000 # {token}\ntouch {shlex.quote(str(marker))}"
    command = f"sh -c {shlex.quote(inner)}"
    # A timeout far beyond the test's deadline: only the closed pipe can end it in time.
    args = ["host", "local", "run", "-t", "6000", command]
    if path == "typer":
        args = ["host", "local", "run", "-t", "6000", "-t", "6000", command]
    assert (parse(args) is not None) == (path == "fast")
    code, first, stderr = closed_early(args, tmp_path)
    assert first.startswith(b"local $ sh -c")
    assert code == EXIT_PIPE
    assert_quiet(stderr)
    assert_stopped(token, marker)
