"""The ``otto`` command through its real entry point (a subprocess), on this machine
and, when the SSH lab can start, on its SSH and Telnet hosts."""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import pytest

if TYPE_CHECKING:
    from tests.lab import Lab as TestLab

DEADLINE = 60.0
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "NO_COLOR", "FORCE_COLOR"}}
    env["COLUMNS"] = "200"  # help text on one line per option
    env.update(extra)
    return env


def otto(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = DEADLINE,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m otto ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "otto", *args],
        capture_output=True,
        text=True,
        env=env if env is not None else clean_env(),
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def write_lab(path: Path, hosts: list[dict[str, object]], **top: object) -> Path:
    path.write_text(json.dumps({"hosts": hosts, **top}))
    return path


@pytest.fixture
def two_local(tmp_path: Path) -> Path:
    return write_lab(
        tmp_path / "lab.json",
        [{"name": "alpha", "term": "local", "tags": ["a"]}, {"name": "beta", "term": "local"}],
    )


# --- entry points and help -------------------------------------------------------------------


def test_console_script_is_installed() -> None:
    script = shutil.which("otto")
    if script is None:
        pytest.skip("the otto console script is not on PATH")
    proc = subprocess.run(
        [script, "--version"], capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("otto ")


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["host"],
        ["host", "x", "run"],
        ["host", "x", "put"],
        ["host", "x", "get"],
        ["host", "x", "login"],
        ["run"],
        ["monitor"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    proc = otto(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "Usage: otto" in proc.stdout


def test_bare_otto_prints_help() -> None:
    proc = otto()
    assert proc.returncode == 0
    for command in ("host", "run", "monitor"):
        assert command in proc.stdout


def test_shell_completion_of_host_names(two_local: Path) -> None:
    env = clean_env(_OTTO_COMPLETE="complete_bash", COMP_WORDS="otto host a", COMP_CWORD="2")
    env["OTTO_LAB"] = str(two_local)
    proc = otto(env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["alpha"]


# --- labs ------------------------------------------------------------------------------------


def test_list_hosts_without_a_lab_is_this_machine() -> None:
    proc = otto("--list-hosts")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TERM", "ADDRESS", "HOP", "TAGS"]
    assert lines[1].split()[:2] == ["local", "local"]
    assert len(lines) == 2


def test_list_hosts_merges_labs_from_options_and_env(tmp_path: Path, two_local: Path) -> None:
    more = write_lab(
        tmp_path / "more.json",
        [
            {"name": "beta", "term": "local", "tags": ["from-more"]},
            {"name": "gw", "address": "10.9.9.9", "user": "ops", "port": 2222},
            {"name": "db", "address": "10.9.9.10", "user": "ops", "hop": "gw"},
        ],
    )
    by_option = otto("--lab", str(two_local), "--lab", str(more), "--list-hosts")
    env = clean_env(OTTO_LAB=f"{two_local}{os.pathsep}{more}")
    by_env = otto("--list-hosts", env=env)
    for proc in (by_option, by_env):
        assert proc.returncode == 0, proc.stderr
        rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:]}
        assert list(rows) == ["alpha", "beta", "gw", "db"]
        assert rows["beta"][-1] == "from-more"
        assert rows["gw"][2] == "ops@10.9.9.9:2222"
        assert rows["db"][3] == "gw"


def test_bad_lab_is_reported_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    bad = write_lab(
        tmp_path / "bad.json",
        [{"name": "local", "term": "local"}, {"name": "x", "address": "h", "user": "u", "port": 0}],
    )
    proc = otto("--lab", str(bad), "host", "local", "run", f"touch {marker}")
    assert proc.returncode == 2
    assert f"{bad}: host 'x': field 'port'" in proc.stderr
    assert not marker.exists()


def test_missing_variable_in_lab_is_named(tmp_path: Path) -> None:
    lab = write_lab(
        tmp_path / "lab.json",
        [{"name": "x", "address": "h", "user": "u", "password": "${OTTO_CLI_TEST_PW}"}],
    )
    proc = otto("--lab", str(lab), "--list-hosts")
    assert proc.returncode == 2
    assert "OTTO_CLI_TEST_PW" in proc.stderr
    env = clean_env(OTTO_CLI_TEST_PW="s3cret-value")
    proc = otto("--lab", str(lab), "--list-hosts", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "s3cret-value" not in proc.stdout + proc.stderr


def test_unknown_host(two_local: Path) -> None:
    proc = otto("--lab", str(two_local), "host", "gamma", "run", "true")
    assert proc.returncode == 2
    assert "no host matches 'gamma' (hosts: alpha, beta)" in proc.stderr


# --- otto host NAME run ------------------------------------------------------------------


def test_run_prints_commands_and_output_prefixed_by_host() -> None:
    proc = otto("host", "local", "run", "cd /tmp", "pwd", "printf 'a\\nb\\n'")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "local $ cd /tmp",
        "local $ pwd",
        "local | /tmp",
        "local $ printf 'a\\nb\\n'",
        "local | a",
        "local | b",
    ]
    assert "\x1b[" not in proc.stdout  # plain when piped


def test_run_colours_when_asked(tmp_path: Path) -> None:
    proc = otto("host", "local", "run", "echo hi", env=clean_env(FORCE_COLOR="1"))
    assert proc.returncode == 0
    assert "\x1b[" in proc.stdout
    assert ANSI.sub("", proc.stdout).splitlines() == ["local $ echo hi", "local | hi"]


def test_run_stops_at_the_first_failure_with_its_exit_status() -> None:
    proc = otto("host", "local", "run", "echo one", "sh -c 'exit 7'", "echo never")
    assert proc.returncode == 7
    assert proc.stdout.splitlines() == [
        "local $ echo one",
        "local | one",
        "local $ sh -c 'exit 7'",
        "local ! exit status 7",
    ]


def test_run_timeout_interrupts_and_exits_124() -> None:
    started = time.monotonic()
    proc = otto("host", "local", "run", "--timeout", "0.5", "echo before; sleep 30")
    assert proc.returncode == 124
    assert time.monotonic() - started < 20
    assert "local | before" in proc.stdout
    assert "local ! timed out after 0.5s" in proc.stdout


def test_run_on_several_hosts(two_local: Path) -> None:
    proc = otto("--lab", str(two_local), "host", "alpha,beta", "run", "echo I am $((1+1))", "false")
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    for name in ("alpha", "beta"):
        mine = [line for line in lines if line.split()[0] == name]
        assert mine == [
            f"{name:<5} $ echo I am $((1+1))",
            f"{name:<5} | I am 2",
            f"{name:<5} $ false",
            f"{name:<5} ! exit status 1",
        ]
    # Names are aligned; each host's lines come as they are printed, so hosts interleave.
    assert sorted(line.split()[0] for line in lines) == ["alpha"] * 4 + ["beta"] * 4


def test_host_regex_selects_hosts(two_local: Path) -> None:
    proc = otto("--lab", str(two_local), "host", "al.*", "run", "true")
    assert proc.returncode == 0
    assert proc.stdout.splitlines() == ["alpha $ true"]


def pids_running(pattern: str) -> list[int]:
    """Live processes whose command line matches ``pattern`` (pgrep -f)."""
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True, check=False)
    return [pid for pid in map(int, found.stdout.split()) if alive(pid)]


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not reaped, does not count)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``."""
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    children = [int(child) for child in found.stdout.split()]
    return children + [d for child in children for d in descendants(child)]


def wait_for_line(fifo: Path, timeout: float = DEADLINE) -> bytes:
    """The first bytes written to the named pipe ``fifo``, within ``timeout``."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        ready, _, _ = select.select([fd], [], [], timeout)
        assert ready, f"nothing was written to {fifo} within {timeout}s"
        return os.read(fd, 4096)
    finally:
        os.close(fd)


@pytest.mark.parametrize("how", ["host", "instruction"])
def test_ctrl_c_closes_hosts_and_exits_130_within_a_second(tmp_path: Path, how: str) -> None:
    marker = f"OTTO_CTRL_C_{os.getpid()}_{how}"
    # A duration no other test uses, to find this very sleep.
    seconds = f"1000.{os.getpid()}{len(how)}"
    started = tmp_path / "started"
    os.mkfifo(started)
    # The command says it has begun through a named pipe: an event to wait on.
    command = f"echo up > {shlex.quote(str(started))}; sleep {seconds}; echo {marker}"
    env = clean_env()
    if how == "host":
        args = ["host", "local", "run", command]
    else:
        (tmp_path / "ctrlc_tasks.py").write_text(
            "import otto\n\n\n@otto.instruction()\nasync def hang() -> None:\n"
            f"    await otto.get_host('local').run({command!r})\n"
        )
        lab = write_lab(
            tmp_path / "lab.json",
            [{"name": "local", "term": "local"}],
            settings={"instructions": ["ctrlc_tasks"]},
        )
        env["PYTHONPATH"] = f"{tmp_path}{os.pathsep}{env.get('PYTHONPATH', '')}"
        args = ["--lab", str(lab), "run", "hang"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "otto", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=tmp_path,
    )
    sleeping = f"^sleep {re.escape(seconds)}$"
    try:
        assert wait_for_line(started) == b"up\n"
        assert proc.poll() is None, proc.communicate()
        below = descendants(proc.pid)
        assert below, "the host's shell should run below otto"
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        code = proc.wait(DEADLINE)
        took = time.monotonic() - sent
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 130, err
    assert took < 1.5, f"exit took {took:.2f}s"
    assert err.decode().endswith("otto: interrupted (SIGINT)\n"), err
    assert marker.encode() not in out.replace(command.encode(), b"")
    # Neither the sleep nor the shell that would echo the marker is left.
    assert pids_running(sleeping) == []
    assert [pid for pid in below if alive(pid)] == []


# --- put / get ---------------------------------------------------------------------------


def test_put_and_get_on_the_local_host(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("hello\n")
    (src / "sub" / "b.bin").write_bytes(os.urandom(300_000))
    dest = tmp_path / "dest"
    dest.mkdir()
    proc = otto("host", "local", "put", str(src / "a.txt"), str(src / "sub"), str(dest))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert re.fullmatch(r"local \| put 2 files \(300\.\d kB\) in \d+\.\d\ds\n", proc.stdout)
    assert (dest / "a.txt").read_text() == "hello\n"
    assert (dest / "sub" / "b.bin").read_bytes() == (src / "sub" / "b.bin").read_bytes()

    back = tmp_path / "back"
    proc = otto("host", "local", "get", str(dest / "a.txt"), str(back))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (back / "a.txt").read_text() == "hello\n"


def on_a_terminal(*args: str) -> tuple[int, bytes]:
    """Run ``python -m otto ARGS`` with stdout and stderr on a pty; its exit status and output."""
    master, slave = os.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "otto", *args],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        env=clean_env(TERM="xterm"),
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


def test_put_shows_progress_bars_on_a_terminal(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(b"\0" * 20_000_000)
    (tmp_path / "dest").mkdir()
    code, output = on_a_terminal("host", "local", "put", str(big), str(tmp_path / "dest"))
    assert code == 0, output
    text = ANSI.sub("", output.decode())
    assert "local big.bin" in text  # the bar's label
    assert "20.0/20.0 MB" in text
    assert "local | put 1 file (20.0 MB)" in text
    assert "\x1b[" in output.decode()  # coloured, as on any terminal


def test_run_on_a_terminal_is_coloured() -> None:
    code, output = on_a_terminal("host", "local", "run", "echo hi")
    assert code == 0
    assert ANSI.sub("", output.decode()).splitlines() == ["local $ echo hi", "local | hi"]
    assert "\x1b[" in output.decode()


def test_get_from_several_hosts_uses_a_folder_per_host(tmp_path: Path, two_local: Path) -> None:
    (tmp_path / "f.txt").write_text("x")
    proc = otto(
        "--lab",
        str(two_local),
        "host",
        "alpha,beta",
        "get",
        str(tmp_path / "f.txt"),
        str(tmp_path / "got"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "got" / "alpha" / "f.txt").read_text() == "x"
    assert (tmp_path / "got" / "beta" / "f.txt").read_text() == "x"


def test_get_of_a_missing_file_fails(tmp_path: Path) -> None:
    proc = otto("host", "local", "get", str(tmp_path / "nope"), str(tmp_path / "out"))
    assert proc.returncode == 1
    assert proc.stdout.startswith("local ! get failed:")


def test_put_of_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    proc = otto("host", "local", "put", str(tmp_path / "nope"), str(tmp_path))
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr


# --- otto run INSTRUCTION -------------------------------------------------------------------

TASKS = '''
from pathlib import Path

import otto.lab
from otto.instructions import instruction


@instruction()
async def greet(name: str, times: int = 1, shout: bool = False) -> None:
    """Say hello from every host.

    Args:
        name: who to greet.
        times: how many times.
    """
    for host in otto.lab.all_hosts():
        out = (await host.run(f"echo hello {name}")).only.output
        print(host.name, ((out.upper() if shout else out) + " ") * times)


@instruction("check-file")
async def check_file(path: Path) -> bool:
    """True when the file exists on the host 'alpha'."""
    result = await otto.lab.get_host("alpha").run(f"test -e {path}")
    return result.is_ok


@instruction()
async def status(code: int) -> int:
    return code
'''


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "deep" / "er").mkdir(parents=True)
    (root / "cli_test_tasks.py").write_text(TASKS)
    (root / "otto.toml").write_text('instructions = ["cli_test_tasks"]\n')
    return root


def test_run_lists_instructions_with_their_summary(project: Path) -> None:
    proc = otto("run", "--help", cwd=project / "deep" / "er")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"greet\s+Say hello from every host\.", proc.stdout)
    assert "check-file" in proc.stdout
    proc = otto("run", "greet", "--help", cwd=project)
    assert "--name" in proc.stdout and "who to greet." in proc.stdout
    assert "--shout" in proc.stdout and "--no-shout" in proc.stdout


def test_run_instruction_with_options(project: Path, two_local: Path) -> None:
    proc = otto(
        "--lab",
        str(two_local),
        "run",
        "greet",
        "--name",
        "bob",
        "--times",
        "2",
        "--shout",
        cwd=project,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["alpha HELLO BOB HELLO BOB ", "beta HELLO BOB HELLO BOB "]


def test_run_instruction_exit_status(project: Path, two_local: Path) -> None:
    lab = ["--lab", str(two_local)]
    assert otto(*lab, "run", "check-file", "--path", "/", cwd=project).returncode == 0
    assert otto(*lab, "run", "check-file", "--path", "/nonexistent", cwd=project).returncode == 1
    assert otto("run", "status", "--code", "5", cwd=project).returncode == 5


def test_run_instruction_option_errors(project: Path) -> None:
    proc = otto("run", "greet", cwd=project)
    assert proc.returncode == 2
    assert "Missing option '--name'" in proc.stderr
    proc = otto("run", "greet", "--name", "x", "--times", "many", cwd=project)
    assert proc.returncode == 2
    proc = otto("run", "nope", cwd=project)
    assert proc.returncode == 2
    assert "No such command 'nope'" in proc.stderr


def test_instruction_modules_named_by_the_lab(tmp_path: Path) -> None:
    labdir = tmp_path / "labdir"
    labdir.mkdir()
    (labdir / "lab_named_tasks.py").write_text(TASKS)
    lab = write_lab(
        labdir / "lab.json",
        [{"name": "alpha", "term": "local"}],
        settings={"instructions": ["lab_named_tasks"]},
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = otto("--lab", str(lab), "run", "greet", "--name", "lab", cwd=elsewhere)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "alpha hello lab \n"


def test_broken_instruction_module_is_reported(tmp_path: Path) -> None:
    (tmp_path / "broken_cli_tasks.py").write_text("raise RuntimeError('boom in tasks')\n")
    (tmp_path / "otto.toml").write_text('instructions = ["broken_cli_tasks"]\n')
    proc = otto("run", "anything", cwd=tmp_path)
    assert proc.returncode == 2
    assert "'broken_cli_tasks' failed to import: RuntimeError: boom in tasks" in proc.stderr
    assert "Traceback" in proc.stderr  # the user's own error, with where it happened


# --- otto monitor ----------------------------------------------------------------------


@dataclass
class Monitor:
    """A running ``otto monitor`` and the dashboard address it printed."""

    proc: subprocess.Popen[bytes]
    output: bytes = b""
    url: str = ""
    port: int = 0

    def read_until(self, pattern: bytes, timeout: float = DEADLINE) -> re.Match[bytes]:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while (found := regex.search(self.output)) is None:
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} not printed; got {self.output!r}"
            if select.select([fd], [], [], left)[0]:
                chunk = os.read(fd, 65536)
                assert chunk, f"otto monitor ended: {self.output!r}"
                self.output += chunk
        return found

    def stop(self, sig: int = signal.SIGINT) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(DEADLINE)
        assert self.proc.stdout is not None
        self.output += self.proc.stdout.read()
        return code


class StartMonitor(Protocol):
    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Monitor: ...


@pytest.fixture
def start_monitor() -> Iterator[StartMonitor]:
    started: list[Monitor] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Monitor:
        proc = subprocess.Popen(
            [sys.executable, "-m", "otto", *args, "monitor", "--port", "0"]
            if args and args[0] == "--lab"
            else [sys.executable, "-m", "otto", "monitor", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env or clean_env(),
        )
        monitor = Monitor(proc)
        started.append(monitor)
        found = monitor.read_until(rb"dashboard: (http://127\.0\.0\.1:(\d+)/)")
        monitor.url = found.group(1).decode()
        monitor.port = int(found.group(2))
        return monitor

    yield start
    for monitor in started:
        if monitor.proc.poll() is None:
            monitor.proc.kill()
            monitor.proc.wait(DEADLINE)


def get_json(port: int, path: str) -> dict[str, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        assert response.status == 200
        return json.loads(response.read())  # type: ignore[no-any-return]
    finally:
        conn.close()


def next_round(port: int, timeout: float = DEADLINE) -> dict[str, object]:
    """Wait on the dashboard's event stream for the next collected round."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    deadline = time.monotonic() + timeout
    try:
        conn.request("GET", "/api/stream")
        response = conn.getresponse()
        assert response.status == 200
        while time.monotonic() < deadline:
            line = response.readline()  # chunked transfer decoded
            assert line, "the stream ended"
            if line.startswith(b"data:"):
                message = json.loads(line[5:])
                if message.get("type") == "round":
                    return message  # type: ignore[no-any-return]
        raise AssertionError("no round within the deadline")
    finally:
        conn.close()


def test_monitor_watches_this_machine_without_a_lab(
    start_monitor: StartMonitor, tmp_path: Path
) -> None:
    db = tmp_path / "run.db"
    monitor = start_monitor("--interval", "0.5", "--db", str(db))
    assert b"watching local every 0.5s" in monitor.output
    page = http.client.HTTPConnection("127.0.0.1", monitor.port, timeout=DEADLINE)
    page.request("GET", "/")
    assert page.getresponse().status == 200
    page.close()
    first = next_round(monitor.port)
    hosts = first["hosts"]
    assert isinstance(hosts, dict) and hosts["local"]["up"] is True
    second = next_round(monitor.port)  # rates need two rounds
    assert "cpu.percent" in second["hosts"]["local"]["metrics"]  # type: ignore[index]
    assert monitor.stop() == 0
    assert db.stat().st_size > 0

    # The stored run replays in the dashboard, from the SQLite file or a JSON export.
    from otto.monitor.store import MetricStore

    exported = tmp_path / "run.json"
    with MetricStore(db) as store:
        store.export_json(exported)
    for saved in (db, exported):
        replay = start_monitor("--file", str(saved))
        snapshot = get_json(replay.port, "/api/snapshot")
        assert snapshot["live"] is False
        series = snapshot["series"]
        assert isinstance(series, dict) and series["cpu.percent"]["local"]
        assert replay.stop(signal.SIGTERM) == 0


def test_monitor_selects_hosts_by_name(start_monitor: StartMonitor, two_local: Path) -> None:
    monitor = start_monitor("--lab", str(two_local))
    assert b"watching alpha, beta every 5s" in monitor.output
    assert monitor.stop() == 0
    proc = otto("--lab", str(two_local), "monitor", "gamma", "--port", "0")
    assert proc.returncode == 2
    assert "no host matches 'gamma'" in proc.stderr


def test_monitor_bad_replay_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    proc = otto("monitor", "--file", str(bad), "--port", "0")
    assert proc.returncode == 1
    assert f"cannot replay {bad}" in proc.stderr


def test_monitor_port_in_use() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = otto("monitor", "--port", str(port))
    assert proc.returncode == 1
    assert f"cannot serve the dashboard on 127.0.0.1:{port}" in proc.stderr


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("missing/run.db", "cannot create metric database {path}: folder {folder} does not exist"),
        (".", "cannot open metric database {path}: it is a folder, not a file"),
    ],
)
def test_monitor_db_that_cannot_be_opened_is_one_line(
    tmp_path: Path, name: str, reason: str
) -> None:
    path = tmp_path / name
    proc = otto("monitor", "--db", str(path), "--port", "0")
    assert proc.returncode == 1
    expected = reason.format(path=path, folder=path.parent)
    assert proc.stderr == f"otto: error: {expected}\n"


def test_monitor_refuses_another_programs_database(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "contacts.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE contacts (name TEXT, phone TEXT)")
    db.commit()
    db.close()
    before = path.read_bytes()
    proc = otto("monitor", "--db", str(path), "--port", "0")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"{path} is another program's SQLite database (tables: contacts)" in proc.stderr
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["contacts.db"]
    # Replaying it is refused the same way.
    proc = otto("monitor", "--file", str(path), "--port", "0")
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert path.read_bytes() == before


# --- the SSH / Telnet lab ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ssh_lab_file(lab: TestLab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An otto lab file for the test lab's hosts (key, password, known_hosts, hops)."""
    hosts = []
    for record in lab.inventory():
        entry = {k: v for k, v in record.items() if v is not None}
        if entry["term"] == "ssh":
            entry["known_hosts"] = str(lab.known_hosts)
        entry["tags"] = [str(entry["term"])]
        hosts.append(entry)
    return write_lab(tmp_path_factory.mktemp("otto-lab") / "lab.json", hosts)


def test_lab_hosts_are_listed(ssh_lab_file: Path, lab: TestLab) -> None:
    proc = otto("--lab", str(ssh_lab_file), "--list-hosts")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines()[1:]}
    assert set(rows) == set(lab.hosts)
    assert rows["inner2"][3] == "inner"
    assert lab.password not in proc.stdout


def test_run_over_ssh_telnet_and_hops(ssh_lab_file: Path) -> None:
    proc = otto(
        "--lab",
        str(ssh_lab_file),
        "host",
        "ssh1,telnet1,inner2",
        "run",
        "cd /tmp",
        "echo $((6*7)) $PWD",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for name in ("ssh1", "telnet1", "inner2"):
        assert re.search(rf"^{name}\s+\| 42 /tmp$", proc.stdout, re.MULTILINE), proc.stdout


def test_run_failure_over_ssh(ssh_lab_file: Path) -> None:
    proc = otto("--lab", str(ssh_lab_file), "host", "ssh2", "run", "exit 3")
    assert proc.returncode == 3
    assert "ssh2 ! exit status 3" in proc.stdout


def test_put_and_get_over_ssh(ssh_lab_file: Path, tmp_path: Path) -> None:
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(1_000_000))
    remote_dir = f"/tmp/otto-cli-{os.getpid()}"
    lab = ["--lab", str(ssh_lab_file)]
    assert otto(*lab, "host", "ssh1", "run", f"mkdir -p {remote_dir}").returncode == 0
    proc = otto(*lab, "host", "ssh1", "put", str(payload), remote_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ssh1 | put 1 file (1.0 MB)")
    proc = otto(*lab, "host", "ssh1", "get", f"{remote_dir}/payload.bin", str(tmp_path / "back"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "back" / "payload.bin").read_bytes() == payload.read_bytes()
    otto(*lab, "host", "ssh1", "run", f"rm -rf {remote_dir}")


def test_monitor_lab_hosts(start_monitor: StartMonitor, ssh_lab_file: Path) -> None:
    env = clean_env(OTTO_LAB=str(ssh_lab_file))
    monitor = start_monitor("ssh1", "telnet1", "--interval", "1", env=env)
    deadline = time.monotonic() + DEADLINE
    while True:
        hosts = next_round(monitor.port)["hosts"]
        assert isinstance(hosts, dict) and set(hosts) == {"ssh1", "telnet1"}
        if all(h["up"] for h in hosts.values()):
            break
        assert time.monotonic() < deadline, hosts
    assert monitor.stop() == 0


def test_unreachable_host_fails_fast_with_its_name(tmp_path: Path) -> None:
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    lab = write_lab(
        tmp_path / "lab.json",
        [{"name": "gone", "address": "127.0.0.1", "port": port, "user": "u", "connect_timeout": 5}],
    )
    proc = otto("--lab", str(lab), "host", "gone", "run", "true")
    assert proc.returncode == 255
    assert proc.stdout.startswith("gone $ true\ngone ! ")
    assert "gone" in proc.stdout.splitlines()[1][6:]


# --- layering and start-up -------------------------------------------------------------------

HEAVY = (
    "asyncssh",
    "telnetlib3",
    "starlette",
    "uvicorn",
    "rich.progress",
    "otto.monitor",
    "pydantic",
)


def test_help_imports_nothing_heavy() -> None:
    """``otto --help`` stays fast: the CLI itself imports no transport, web or monitor code."""
    code = (
        "import sys\n"
        "import otto\n"  # whatever the package itself imports is not the CLI's doing
        "before = set(sys.modules)\n"
        "sys.argv = ['otto', '--help']\n"
        "from otto.cli.app import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        f"heavy = {HEAVY!r}\n"
        "new = set(sys.modules) - before\n"
        "print(sorted(m for m in new if m.startswith(heavy)), file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=DEADLINE,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "[]"


def test_core_never_imports_the_cli_libraries() -> None:
    import ast

    import otto

    root = Path(otto.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if root / "cli" in path.parents:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [
                f"{path.relative_to(root)}: {n}"
                for n in names
                if n.split(".")[0] in {"typer", "rich", "click"}
            ]
    assert offenders == []
