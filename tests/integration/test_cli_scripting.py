"""The ``otto`` command for people and for scripts, through its real entry point:
lines streamed as they come, ``--json``, logging flags, global options after the
command, ``--connect-timeout``, help text, and errors a person can act on."""

from __future__ import annotations

import json
import os
import re
import select
import shlex
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.integration.test_cli import (
    DEADLINE,
    clean_env,
    otto,
    write_lab,
)

if TYPE_CHECKING:
    from tests.lab import Lab as TestLab

HELP_PLACEHOLDER = re.compile(
    r"<(?:bool|str|int|float|path|list|tuple|[a-z]+ range)[^>]*>|\{[A-Z]+\}"
)


@pytest.fixture(scope="module")
def ssh_lab_file(lab: TestLab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An otto lab file for the test lab's hosts (as test_cli.py builds it)."""
    hosts = []
    for record in lab.inventory():
        entry = {k: v for k, v in record.items() if v is not None}
        if entry["term"] == "ssh":
            entry["known_hosts"] = str(lab.known_hosts)
        entry["tags"] = [str(entry["term"])]
        hosts.append(entry)
    return write_lab(tmp_path_factory.mktemp("otto-lab") / "lab.json", hosts)


@pytest.fixture
def two_local(tmp_path: Path) -> Path:
    return write_lab(
        tmp_path / "lab.json",
        [{"name": "alpha", "term": "local"}, {"name": "beta", "term": "local"}],
    )


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder every lab user can reach (the lab's SSH hosts share this machine's files)."""
    path = Path(tempfile.mkdtemp(prefix="otto-cli-", dir="/tmp"))
    path.chmod(0o777)
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


def make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    path.chmod(0o666)
    return path


def release(fifo: Path) -> None:
    """Let a command blocked reading ``fifo`` go on (opening for writing waits for its reader)."""
    fd = os.open(fifo, os.O_WRONLY)
    try:
        os.write(fd, b"go\n")
    finally:
        os.close(fd)


class Running:
    """A running ``otto`` whose stdout and stderr are read as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otto", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env or clean_env(),
        )
        self.out = b""
        self.err = b""

    def read_until(self, pattern: str, *, stream: str = "out") -> None:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        fds = {self.proc.stdout.fileno(): "out", self.proc.stderr.fileno(): "err"}
        regex = re.compile(pattern.encode(), re.MULTILINE)
        deadline = time.monotonic() + DEADLINE
        while not regex.search(getattr(self, stream)):
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} not on std{stream}: {self.out!r} {self.err!r}"
            ready, _, _ = select.select(list(fds), [], [], left)
            for fd in ready:
                chunk = os.read(fd, 65536)
                assert chunk, f"otto ended: {self.out!r} {self.err!r}"
                setattr(self, fds[fd], getattr(self, fds[fd]) + chunk)

    def finish(self) -> int:
        out, err = self.proc.communicate(timeout=DEADLINE)
        self.out += out
        self.err += err
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


# --- lines as they come ----------------------------------------------------------------


@pytest.mark.parametrize("hosts", ["local", "ssh1,telnet1"])
def test_run_prints_each_line_before_the_command_ends(
    hosts: str, request: pytest.FixtureRequest, shared_dir: Path
) -> None:
    gate = make_fifo(shared_dir / "gate")
    command = f"echo first; read x < {shlex.quote(str(gate))}; echo second"
    lab = [] if hosts == "local" else ["--lab", str(request.getfixturevalue("ssh_lab_file"))]
    names = hosts.split(",")
    running = Running(*lab, "host", hosts, "run", command)
    try:
        for name in names:
            running.read_until(rf"^{name}\s+\| first$")
        # Every host printed its first line and is waiting for the gate: still running.
        assert running.proc.poll() is None
        assert b"| second" not in running.out
        for _ in names:
            release(gate)
        assert running.finish() == 0, running.err
    finally:
        running.kill()
    lines = running.out.decode().splitlines()
    for name in names:
        mine = [line for line in lines if line.split()[0] == name]
        assert [re.sub(r"\s+", " ", line, count=1) for line in mine] == [
            f"{name} $ {command}",
            f"{name} | first",
            f"{name} | second",
        ]
    assert running.err == b""


@pytest.mark.parametrize("hosts", ["local", "ssh1,telnet1"])
def test_stderr_lines_go_to_stderr_marked_with_the_host(
    hosts: str, request: pytest.FixtureRequest
) -> None:
    lab = [] if hosts == "local" else ["--lab", str(request.getfixturevalue("ssh_lab_file"))]
    names = hosts.split(",")
    width = max(len(n) for n in names)
    proc = otto(
        *lab, "host", hosts, "run", "cd /tmp", "echo out; echo oops >&2; printf tail >&2", "pwd"
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(proc.stderr.splitlines()) == sorted(
        f"{n:<{width}} ! {text}" for n in names for text in ("oops", "tail")
    )
    for name in names:
        mine = [line for line in proc.stdout.splitlines() if line.split()[0] == name]
        assert mine == [
            f"{name:<{width}} $ cd /tmp",
            f"{name:<{width}} $ echo out; echo oops >&2; printf tail >&2",
            f"{name:<{width}} | out",
            f"{name:<{width}} $ pwd",
            f"{name:<{width}} | /tmp",  # cd carried over
        ]


def test_a_background_job_or_wait_does_not_hold_the_command() -> None:
    proc = otto(
        "host", "local", "run", "sleep 0.1 & wait; echo waited", "(exec 2>&-; echo bg-out) &"
    )
    assert proc.returncode == 0, proc.stderr
    assert "local | waited" in proc.stdout.splitlines()


def test_ctrl_c_shows_what_each_host_printed_then_the_summary(
    two_local: Path, shared_dir: Path
) -> None:
    gate = make_fifo(shared_dir / "never")
    command = f"echo first; printf half; echo err >&2; read x < {shlex.quote(str(gate))}"
    running = Running("--lab", str(two_local), "host", "alpha,beta", "run", "true", command)
    try:
        for name in ("alpha", "beta"):
            # Its stderr line comes after 'half' on the same stream: both have arrived.
            running.read_until(rf"^{name}\s+! err$", stream="err")
        running.proc.send_signal(signal.SIGINT)
        code = running.finish()
    finally:
        running.kill()
    assert code == 130
    out = running.out.decode().splitlines()
    for name in ("alpha", "beta"):
        assert [line for line in out if line.startswith(name)] == [
            f"{name:<5} $ true",
            f"{name:<5} $ {command}",
            f"{name:<5} | first",
            f"{name:<5} | half",  # the unfinished line, shown on Ctrl-C
        ]
    err = running.err.decode()
    assert err.endswith(
        f"otto: alpha: interrupted while running: {command}\n"
        f"otto: beta: interrupted while running: {command}\n"
        "\notto: interrupted (SIGINT)\n"
    ), err


# --- --json -------------------------------------------------------------------------------


def test_run_json_is_one_list_of_an_object_per_command_result(two_local: Path) -> None:
    proc = otto(
        "--lab",
        str(two_local),
        "host",
        "alpha,beta",
        "run",
        "--json",
        "echo hi; echo there",
        "exit 4",
    )
    assert proc.returncode == 4
    assert proc.stderr == ""
    records = json.loads(proc.stdout)
    assert len(records) == 4
    for name in ("alpha", "beta"):
        mine = [r for r in records if r["host"] == name]
        assert [
            (r["command"], r["status"], r["exit_code"], r["output"], r["timed_out"]) for r in mine
        ] == [
            ("echo hi; echo there", "success", 0, "hi\nthere", False),
            ("exit 4", "failed", 4, "", False),
        ]


def test_run_json_reports_a_host_that_cannot_be_reached(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    lab = write_lab(
        tmp_path / "lab.json",
        [{"name": "gone", "address": "127.0.0.1", "port": port, "user": "u"}],
    )
    proc = otto("--lab", str(lab), "--json", "host", "gone", "run", "true")
    assert proc.returncode == 255
    (record,) = json.loads(proc.stdout)
    assert record["host"] == "gone" and record["command"] == "true"
    assert record["status"] == "error" and record["exit_code"] is None
    assert "gone" in record["error"]


def test_list_hosts_json(ssh_lab_file: Path) -> None:
    proc = otto("--lab", str(ssh_lab_file), "--list-hosts", "--json")
    assert proc.returncode == 0, proc.stderr
    hosts = {h["name"]: h for h in json.loads(proc.stdout)}
    assert hosts["inner2"]["hop"] == "inner"
    assert hosts["ssh1"]["term"] == "ssh" and hosts["ssh1"]["tags"] == ["ssh"]
    assert "password" not in proc.stdout


def test_put_and_get_json(tmp_path: Path, two_local: Path) -> None:
    (tmp_path / "f.txt").write_text("hello")
    dest = tmp_path / "dest"
    dest.mkdir()
    lab = ["--lab", str(two_local)]
    proc = otto(*lab, "host", "alpha", "put", str(tmp_path / "f.txt"), str(dest), "--json")
    assert proc.returncode == 0, proc.stderr
    (record,) = json.loads(proc.stdout)
    assert record["host"] == "alpha" and record["verb"] == "put"
    assert (record["status"], record["bytes"], record["error"]) == ("success", 5, "")
    assert record["files"] == [str(dest / "f.txt")]
    proc = otto(*lab, "--json", "host", "alpha,beta", "get", str(tmp_path / "nope"), str(dest))
    assert proc.returncode == 1
    records = json.loads(proc.stdout)
    assert [r["host"] for r in records] == ["alpha", "beta"]
    assert all(r["status"] != "success" and r["error"] for r in records)


# --- logging -------------------------------------------------------------------------------


def test_quiet_by_default_and_logging_on_request() -> None:
    quiet = otto("host", "local", "run", "true")
    assert quiet.returncode == 0
    assert quiet.stderr == ""
    for flags, env in (
        (["-vv"], {}),
        (["--debug"], {}),
        ([], {"OTTO_LOG": "debug"}),
        (["-v", "-v"], {}),
    ):
        proc = otto(*flags, "host", "local", "run", "true", env=clean_env(**env))
        assert proc.returncode == 0, proc.stderr
        assert re.search(
            r"^otto: DEBUG otto\.session: local/\S+: shell ready in", proc.stderr, re.M
        ), (
            flags,
            proc.stderr,
        )
    info = otto("-v", "host", "local", "run", "true")
    assert "DEBUG" not in info.stderr


def test_debug_log_of_a_lab_run_shows_no_password(ssh_lab_file: Path, lab: TestLab) -> None:
    proc = otto("--lab", str(ssh_lab_file), "--debug", "host", "ssh1,telnet1,inner2", "run", "true")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "otto: DEBUG" in proc.stderr
    assert lab.password not in proc.stderr


def test_bad_otto_log_is_one_line() -> None:
    proc = otto("host", "local", "run", "true", env=clean_env(OTTO_LOG="loud"))
    assert proc.returncode == 2
    assert proc.stderr == (
        "otto: error: $OTTO_LOG: must be one of debug, info, warning (got 'loud')\n"
    )


# --- global options after the command --------------------------------------------------


def test_global_options_after_the_command(two_local: Path, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    proc = otto("host", "local", "run", "true", "--force")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "local $ true\n"
    # -n after the command is --dry-run: nothing runs.
    after = otto("host", "local", "run", f"touch {marker}", "-n")
    before = otto("-n", "host", "local", "run", f"touch {marker}")
    assert after.returncode == before.returncode == 0, after.stderr
    assert after.stdout == before.stdout
    assert not marker.exists()
    # --lab and --json after the command, the lab's value taken along.
    proc = otto("host", "alpha", "run", "echo hi", "--lab", str(two_local), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["output"] == "hi"
    # reserve takes them too.
    env = clean_env(OTTO_RESERVATIONS=f"sqlite:///{tmp_path / 'res.db'}")
    late = otto("reserve", "alpha", "-n", "--lab", str(two_local), env=env)
    early = otto("-n", "--lab", str(two_local), "reserve", "alpha", env=env)
    assert late.returncode == early.returncode == 0, late.stderr
    assert "alpha: would reserve" in late.stdout
    assert late.stdout == early.stdout and late.stderr == early.stderr
    # An option a command has itself stays its own (reservations --json).
    listed = otto("reservations", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    # ... and otto's global --json before the command asks for the same.
    listed = otto("--json", "reservations", env=env)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    checked = otto("--json", "lab", "check", str(two_local))
    assert json.loads(checked.stdout)["ok"] is True, checked.stdout


def test_an_option_only_otto_takes_says_where_it_goes() -> None:
    proc = otto("host", "local", "run", "true", "--list-hosts")
    assert proc.returncode == 2
    assert proc.stderr.endswith(
        "Error: No such option here: --list-hosts is otto's own; write it before the "
        "command (otto --list-hosts ...)\n"
    )


def test_words_after_double_dash_are_not_moved() -> None:
    proc = otto("host", "local", "run", "--", "echo -n", "--force")
    # '--force' is a command here, not otto's option.
    assert proc.returncode == 127, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[:2] == ["local $ echo -n", "local $ --force"]


def test_globals_first_keeps_command_options_and_values() -> None:
    import typer

    from otto.cli.app import app
    from otto.cli.argv import globals_first

    root = typer.main.get_command(app)
    assert globals_first(root, ["host", "x", "run", "true", "--force", "-vv"]) == [
        "--force",
        "-vv",
        "host",
        "x",
        "run",
        "true",
    ]
    # An option's value is never taken for an option.
    assert globals_first(root, ["host", "x", "--user", "-n", "run", "-t", "-n", "true"]) == [
        "host",
        "x",
        "--user",
        "-n",
        "run",
        "-t",
        "-n",
        "true",
    ]
    assert globals_first(root, ["host", "x", "run", "--connect-timeout", "3", "a"]) == [
        "--connect-timeout",
        "3",
        "host",
        "x",
        "run",
        "a",
    ]
    # pytest's own short options and --debug stay with otto test.
    assert globals_first(root, ["test", "-n", "2", "-v", "--debug", "--force"]) == [
        "--force",
        "test",
        "-n",
        "2",
        "-v",
        "--debug",
    ]


# --- --connect-timeout -----------------------------------------------------------------


def test_connect_timeout_overrides_the_labs(tmp_path: Path) -> None:
    with socket.socket() as silent:
        # Accepts TCP (the backlog) and never speaks SSH.
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        lab = write_lab(
            tmp_path / "lab.json",
            [
                {
                    "name": "mute",
                    "address": "127.0.0.1",
                    "port": port,
                    "user": "u",
                    "connect_timeout": 600,
                    "known_hosts": None,
                }
            ],
        )
        proc = otto("--lab", str(lab), "host", "mute", "run", "true", "--connect-timeout", "0.5")
    assert proc.returncode == 255, proc.stdout + proc.stderr
    problem = proc.stdout.splitlines()[1]
    assert problem.startswith("mute ! ")
    assert "0.5s" in problem and "600" not in problem


def test_connect_timeout_says_it_does_not_reach_otto_test() -> None:
    proc = otto("test", "--connect-timeout", "5", "-k", "nothing")
    assert proc.returncode == 2
    assert proc.stderr == (
        "otto: error: --connect-timeout does not reach otto test: set connect_timeout in the lab\n"
    )


def test_connect_timeout_is_checked_as_the_lab_field(tmp_path: Path) -> None:
    proc = otto("--connect-timeout", "0", "host", "local", "run", "true")
    assert proc.returncode == 0, proc.stderr  # only hosts that connect take it
    lab = write_lab(tmp_path / "lab.json", [{"name": "r", "address": "10.9.9.9", "user": "u"}])
    proc = otto("--lab", str(lab), "--list-hosts", "--connect-timeout", "0")
    assert proc.returncode == 2
    assert "--connect-timeout" in proc.stderr and "positive number of seconds" in proc.stderr


# --- help and errors ---------------------------------------------------------------------

COMMANDS = [
    [],
    ["host"],
    ["host", "x", "run"],
    ["host", "x", "put"],
    ["host", "x", "get"],
    ["host", "x", "power"],
    ["host", "x", "reboot"],
    ["host", "x", "login"],
    ["run"],
    ["monitor"],
    ["reserve"],
    ["release"],
    ["reservations"],
    ["lab"],
    ["test"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "otto")
def test_help_shows_metavars_not_types(command: list[str]) -> None:
    proc = otto(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert HELP_PLACEHOLDER.findall(proc.stdout) == []
    assert "\x1b[" not in proc.stdout


def test_help_names_real_metavars() -> None:
    proc = otto("host", "x", "run", "--help")
    assert "Usage: otto host NAME run [OPTIONS] CMD..." in proc.stdout
    assert re.search(r"--timeout\s+-t\s+SECONDS \[x>=0\]", proc.stdout)
    top = otto("--help").stdout
    assert re.search(r"--connect-timeout\s+SECONDS", top)
    assert re.search(r"--force\s+Act on hosts", top)  # a flag: no type beside it


def test_usage_errors_are_plain_with_no_placeholders() -> None:
    proc = otto("host", "x", "run", "--bogus")
    assert proc.returncode == 2
    assert proc.stderr == (
        "Usage: otto host NAME run [OPTIONS] CMD...\n"
        "Try 'otto host NAME run -h' for help.\n"
        "\n"
        "Error: No such option: --bogus\n"
    )


def test_no_color_holds_on_a_terminal() -> None:
    for args in (["--help"], ["host", "x", "run", "--help"], ["host", "x", "run", "--bogus"]):
        code, output = on_a_terminal_with(args, NO_COLOR="1")
        assert code in (0, 2)
        assert b"\x1b[" not in output, (args, output)
    code, output = on_a_terminal_with(["--help"])
    assert b"\x1b[" in output  # colour on a terminal by default


def on_a_terminal_with(args: list[str], **env: str) -> tuple[int, bytes]:
    """Run ``python -m otto ARGS`` with stdout and stderr on a pty; its exit status and output."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "otto", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=clean_env(TERM="xterm", **env),
    )
    os.close(slave)
    output = b""
    deadline = time.monotonic() + DEADLINE
    while True:
        left = deadline - time.monotonic()
        assert left > 0, output
        if select.select([master], [], [], left)[0]:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO once the program has closed the terminal
                chunk = b""
            if not chunk:
                break
            output += chunk
    os.close(master)
    return proc.wait(DEADLINE), output


# --- otto run without instructions; reboot --------------------------------------------


def test_run_without_instructions_says_how_to_register_them(tmp_path: Path) -> None:
    for args in (["run"], ["run", "deploy"]):
        proc = otto(*args, cwd=tmp_path)
        assert proc.returncode == 2
        assert proc.stderr == (
            "otto: error: no instructions are registered: write an async function decorated "
            "with @otto.instruction() in a module (tasks.py, say), then name that module in "
            'otto.toml beside it (instructions = ["tasks"]), in pyproject.toml under '
            '[tool.otto] (instructions = ["tasks"]), or in the lab\'s "settings": '
            '{"instructions": ["tasks"]}\n'
        )
    assert otto("run", "--help", cwd=tmp_path).returncode == 0


def test_reboot_no_wait_fails_when_the_reboot_command_fails(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "reboot"
    fake.write_text("#!/bin/sh\necho 'reboot: must be superuser' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    env = clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    # Never the machine's own reboot: the host's shell must find the fake one first.
    found = otto("host", "local", "run", "command -v reboot", env=env)
    assert found.stdout.splitlines()[1] == f"local | {fake}", found.stdout
    proc = otto("host", "local", "reboot", "--no-wait", env=env)
    assert proc.returncode == 255
    assert proc.stdout == ""
    assert (
        proc.stderr == "otto: local: `reboot` failed with status 1: 'reboot: must be superuser'\n"
    )


def test_reboot_of_a_host_without_a_shell_suggests_the_flags(tmp_path: Path) -> None:
    lab = write_lab(
        tmp_path / "lab.json",
        [{"name": "dev", "term": "none", "address": "127.0.0.1", "snmp": {"community": "public"}}],
    )
    for flags in ([], ["--hard"], ["--no-wait"]):
        proc = otto("--lab", str(lab), "host", "dev", "reboot", *flags)
        assert proc.returncode == 255
        assert proc.stderr == (
            "otto: dev: has no shell (term 'none'), so it can only be power-cycled without "
            "waiting: otto host dev reboot --hard --no-wait\n"
        )
