"""``otto host NAME run`` starts without Typer, pydantic or any transport it does not use,
and says and does exactly what the Typer command says and does.

The plain line is run by ``otto.cli.fast`` (``python -m otto``); the same line
through the Typer app (``otto.cli.app.main``) is the reference. Both run as
real processes; only timings (durations, "ready in N ms") and the interleaving
of several hosts' lines are left out of the comparison.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from otto.cli.fast import parse

if TYPE_CHECKING:
    from tests.lab import Lab as TestLab

DEADLINE = 60.0
# The modules a local `host run` must not import (the list, and the Typer app's).
HEAVY = ("asyncssh", "telnetlib3", "pysnmp", "starlette", "rich", "typer", "pydantic")
# Nor these, which it never uses: other kinds of host, file transfer, consoles, dates, JSON
# output, and (while no reservation store file exists) the store and its check.
LAZY = (
    "datetime",
    "json",
    "otto.cli.guard",
    "otto.hosts.device",
    "otto.hosts.dryrun",
    "otto.hosts.power",
    "otto.hosts.privilege",
    "otto.hosts.remote",
    "otto.reservations",
    "otto.transfer",
    "otto.transports.console",
    "sqlite3",
)
TYPER_MAIN = "import sys; sys.argv[0] = 'otto'; from otto.cli.app import main; main()"


def env_for(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "NO_COLOR", "FORCE_COLOR"}}
    env["OTTO_RESERVATIONS"] = f"sqlite:///{tmp_path / 'reservations.db'}"
    env.pop("OTTO_LOG", None)
    env.update(extra)
    return env


def fast(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otto", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def typer_path(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", TYPER_MAIN, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
        check=False,
    )


_TIMINGS = (
    (re.compile(r'"duration": [0-9.e-]+'), '"duration": 0'),
    (re.compile(r"in [0-9.]+ ms"), "in N ms"),
)
_PREFIX = re.compile(r"^(\S+)\s+[$|!] ")


def normalised(text: str, *, hosts_interleave: bool) -> list[str]:
    """``text``'s lines without timings; with ``hosts_interleave``, grouped by host
    (each host's own lines keep their order)."""
    for pattern, replacement in _TIMINGS:
        text = pattern.sub(replacement, text)
    lines = text.splitlines()
    if hosts_interleave:

        def host(line: str) -> str:
            found = _PREFIX.match(line)
            return found.group(1) if found else ""

        lines.sort(key=host)
    return lines


def assert_same(
    args: list[str], env: dict[str, str], cwd: Path, *, hosts_interleave: bool = False
) -> subprocess.CompletedProcess[str]:
    assert parse(args) is not None, f"{args} should take the fast path"
    mine, reference = fast(args, env, cwd), typer_path(args, env, cwd)
    assert mine.returncode == reference.returncode, (mine.stderr, reference.stderr)
    for stream in ("stdout", "stderr"):
        got = normalised(getattr(mine, stream), hosts_interleave=hosts_interleave)
        want = normalised(getattr(reference, stream), hosts_interleave=hosts_interleave)
        assert got == want, stream
    return mine


def write_lab(path: Path, hosts: list[dict[str, object]]) -> Path:
    path.write_text(json.dumps({"hosts": hosts}))
    return path


@pytest.fixture
def two_local(tmp_path: Path) -> Path:
    return write_lab(
        tmp_path / "lab.json",
        [{"name": "alpha", "term": "local"}, {"name": "b", "term": "local"}],
    )


# --- what a local run imports ------------------------------------------------------------


def imported_modules(stderr: str) -> set[str]:
    """The modules ``python -X importtime`` reported."""
    found = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            found.add(line.rsplit("|", 1)[1].strip())
    return found


@pytest.mark.parametrize(
    "launcher",
    [
        ["-m", "otto"],
        # The console script's form, once its entry point is otto.__main__:main.
        ["-c", "import sys; sys.argv[0] = 'otto'; from otto.__main__ import main; main()"],
    ],
    ids=["python -m otto", "otto.__main__:main"],
)
def test_a_local_run_imports_no_transport_typer_or_pydantic(
    tmp_path: Path, launcher: list[str]
) -> None:
    modules = local_run_imports(tmp_path, env_for(tmp_path), launcher)
    assert "otto.cli.fast" in modules  # what was read is a real import report
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == []
    assert sorted(m for m in modules if m in LAZY or m.startswith("otto.reservations.")) == []


def local_run_imports(
    tmp_path: Path, env: dict[str, str], launcher: list[str] | None = None, host: str = "local"
) -> set[str]:
    """The modules ``otto host HOST run true`` imported (it must succeed)."""
    line = ["host", host, "run", "true"]
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", *(launcher or ["-m", "otto"]), *line],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=DEADLINE,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{host} $ true\n"
    return imported_modules(proc.stderr)


def test_otto_hosts_names_load_on_first_use() -> None:
    """``otto.hosts`` imports a kind of host when it is named, and gives all of them."""
    code = """if True:
        import sys
        import otto.hosts
        from otto.hosts import LocalHost
        assert "otto.hosts.remote" not in sys.modules
        assert "otto.hosts.device" not in sys.modules
        from otto.hosts import DEFAULT_SESSION, DeviceHost, DryRunHost, Host, RemoteHost, power
        from otto.hosts.base import Host as BaseHost
        from otto.hosts.remote import RemoteHost as Remote
        assert Host is BaseHost and RemoteHost is Remote and issubclass(LocalHost, Host)
        assert power.__name__ == "otto.hosts.power" and DEFAULT_SESSION == "default"
        assert set(otto.hosts.__all__) <= set(dir(otto.hosts))
        try:
            otto.hosts.Nothing
        except AttributeError as exc:
            assert "Nothing" in str(exc)
        else:
            raise AssertionError("otto.hosts.Nothing")
        print("ok")
    """
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=DEADLINE, check=False
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "ok\n", "")


def test_the_collector_is_on_again_once_the_work_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``run_line`` holds the collector off while it reads the lab, never after."""
    import gc

    import typer

    import otto.cli.fast
    from otto.cli.fast import run_line

    for name, value in env_for(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OTTO_LAB", raising=False)
    seen: list[tuple[str, bool]] = []
    real_load = otto.cli.fast.load

    def load(*args: Any) -> Any:
        seen.append(("load", gc.isenabled()))
        return real_load(*args)

    monkeypatch.setattr("otto.cli.fast.load", load)
    monkeypatch.setattr(
        "otto.cli.fast.run_or_plan", lambda *a, **k: seen.append(("run", gc.isenabled()))
    )
    line = parse(["host", "local", "run", "true"])
    assert line is not None
    run_line(line)
    assert seen == [("load", False), ("run", True)]
    assert gc.isenabled()
    unknown = parse(["host", "nosuch", "run", "true"])
    assert unknown is not None
    with pytest.raises(typer.Exit):
        run_line(unknown)
    assert "no host matches 'nosuch'" in capsys.readouterr().err
    assert gc.isenabled()


def test_the_fast_path_freezes_what_reading_and_importing_made(tmp_path: Path) -> None:
    """The objects the lab and the transports' imports made are out of the collector's
    sight once the work starts (its first pass would walk them all to free nothing)."""
    code = """if True:
        import gc, sys
        from otto.cli import fast
        seen = []
        real = fast.run_or_plan
        fast.run_or_plan = lambda *a, **k: seen.append(gc.get_freeze_count()) or real(*a, **k)
        assert fast.run_plain(sys.argv[1:]) == 0
        print(seen[0] > 10000, gc.isenabled())
    """
    proc = subprocess.run(
        [sys.executable, "-c", code, "host", "local", "run", "true"],
        capture_output=True,
        text=True,
        env=env_for(tmp_path),
        cwd=tmp_path,
        timeout=DEADLINE,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "True True"


_EXIT = """if True:
    import atexit, sys, threading
    from otto.cli.fast import exit_now

    sys.stdout.write("output, not yet flushed")
    atexit.register(lambda: sys.stdout.write(" and the exit handler's"))
    if sys.argv[1] == "thread":
        go = threading.Event()
        def late() -> None:
            go.wait(30)
            sys.stdout.write(" and the thread's")
        threading.Thread(target=late).start()
        go.set()
    exit_now(3)
"""


@pytest.mark.parametrize("case", ["alone", "thread"])
def test_exit_now_ends_with_the_status_output_and_exit_handlers(case: str) -> None:
    """``exit_now``: the status, the output and the exit handlers as ``sys.exit`` gives
    them; while a thread other than daemons runs, Python ends as usual (waiting for it)."""
    proc = subprocess.run(
        [sys.executable, "-c", _EXIT, case],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )
    assert proc.returncode == 3
    assert proc.stderr == ""
    thread = " and the thread's" if case == "thread" else ""
    assert proc.stdout == f"output, not yet flushed{thread} and the exit handler's"


def test_the_reservation_check_loads_once_a_store_file_exists(tmp_path: Path) -> None:
    """No store file: nothing can be reserved, the check is not loaded; a file: it runs."""
    env = env_for(tmp_path)
    store = tmp_path / "reservations.db"
    assert not store.exists()
    assert "otto.cli.guard" not in local_run_imports(tmp_path, env)
    assert not store.exists()  # the check creates nothing either way
    bob = {**env, "OTTO_USER": "bob@ci"}
    assert fast(["reserve", "local"], bob, tmp_path).returncode == 0
    assert fast(["release", "local"], bob, tmp_path).returncode == 0
    assert store.exists()
    modules = local_run_imports(tmp_path, env)
    assert {"otto.cli.guard", "otto.reservations.sqlite", "sqlite3"} <= modules


def test_a_host_someone_else_holds(tmp_path: Path) -> None:
    env = {**env_for(tmp_path), "OTTO_USER": "alice@laptop"}
    bob = {**env, "OTTO_USER": "bob@ci"}
    assert fast(["reserve", "local", "--note", "flashing"], bob, tmp_path).returncode == 0
    refused = assert_same(["host", "local", "run", "true"], env, tmp_path)
    assert refused.returncode == 3
    assert "local: reserved by bob@ci" in refused.stderr
    assert refused.stdout == ""
    forced = assert_same(["--force", "host", "local", "run", "true"], env, tmp_path)
    assert forced.returncode == 0
    assert "--force overrides the reservation of bob@ci" in forced.stderr
    mine = assert_same(["host", "local", "run", "true"], bob, tmp_path)
    assert mine.returncode == 0


def test_a_store_named_by_the_lab_or_the_default_file(tmp_path: Path) -> None:
    """The store is found where ``otto.reservations`` finds it: the lab's
    ``settings.reservations``, then ``$OTTO_RESERVATIONS``, then the default file."""
    bob_store = tmp_path / "lab-store.db"
    lab_file = tmp_path / "lab.json"
    lab_file.write_text(
        json.dumps(
            {
                "settings": {"reservations": f"sqlite:///{bob_store}"},
                "hosts": [{"name": "alpha", "term": "local"}],
            }
        )
    )
    env = {**env_for(tmp_path), "OTTO_USER": "alice@laptop"}
    bob = {**env, "OTTO_USER": "bob@ci"}
    assert fast(["--lab", str(lab_file), "reserve", "alpha"], bob, tmp_path).returncode == 0
    assert bob_store.exists()
    held = assert_same(["--lab", str(lab_file), "host", "alpha", "run", "true"], env, tmp_path)
    assert held.returncode == 3
    # The default file, under $XDG_DATA_HOME, when $OTTO_RESERVATIONS is not set.
    default = {k: v for k, v in env.items() if k != "OTTO_RESERVATIONS"}
    default["XDG_DATA_HOME"] = str(tmp_path / "data")
    bob_default = {**default, "OTTO_USER": "bob@ci"}
    assert assert_same(["host", "local", "run", "true"], default, tmp_path).returncode == 0
    assert fast(["reserve", "local"], bob_default, tmp_path).returncode == 0
    assert (tmp_path / "data" / "otto" / "reservations.db").exists()
    held = assert_same(["host", "local", "run", "true"], default, tmp_path)
    assert held.returncode == 3
    # A store otto cannot use is still reported, whatever the file system holds.
    unknown = {**env, "OTTO_RESERVATIONS": "mysql://db/x"}
    bad = assert_same(["host", "local", "run", "true"], unknown, tmp_path)
    assert bad.returncode == 1
    assert "unknown kind of URL" in bad.stderr
    empty = {**env, "OTTO_RESERVATIONS": "sqlite:///"}
    assert assert_same(["host", "local", "run", "true"], empty, tmp_path).returncode == 1


def test_the_typer_path_still_finds_its_commands(tmp_path: Path) -> None:
    """Anything but the plain line goes to the Typer app, unchanged."""
    env = env_for(tmp_path)
    helped = fast(["host", "local", "run", "--help"], env, tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert "Run commands on the host" in helped.stdout
    missing = fast(["host", "local", "run"], env, tmp_path)
    assert missing.returncode == 2
    assert "Missing argument 'CMD'" in missing.stderr
    unknown = fast(["host", "local", "run", "--frobnicate", "true"], env, tmp_path)
    assert unknown.returncode == 2
    assert "No such option: --frobnicate" in unknown.stderr


# --- the line the fast path reads, and the lines it leaves to Typer ----------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["--list-hosts"],
        ["host", "local", "put", "a", "b"],
        ["host", "local", "run"],
        ["host", "local"],
        ["host", "local", "-h", "run", "true"],
        ["host", "local", "run", "true", "--help"],
        ["host", "local", "run", "-x"],
        ["host", "local", "run", "-t", "-1", "true"],
        ["host", "local", "run", "-t5", "true"],
        ["host", "local", "run", "--timeout", "5", "--timeout", "6", "true"],
        ["host", "local", "run", "--timeout", "1e3", "true"],
        ["host", "local", "run", "--timeout"],
        ["-nv", "host", "local", "run", "true"],
        ["-l=lab.json", "host", "local", "run", "true"],
        ["--lab", "", "host", "local", "run", "true"],
        ["host", "local", "--port", "x", "run", "true"],
        ["host", "local", "--user", "a", "--user", "b", "run", "true"],
        ["host", "local", "run", "true", "--list-hosts"],
        ["--force=1", "host", "local", "run", "true"],
        ["lab", "check"],
        [],
    ],
)
def test_lines_it_is_not_sure_of_go_to_typer(args: list[str]) -> None:
    assert parse(args) is None


def test_shell_completion_goes_to_typer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("_OTTO_COMPLETE", "complete_bash")
    assert parse(["host", "local", "run", "true"]) is None


def test_the_line_as_the_typer_app_reads_it() -> None:
    line = parse(
        [
            "-v",
            "--lab",
            "one.json",
            "host",
            "--force",
            "web1,db.*",
            "-u",
            "root",
            "--port=2222",
            "run",
            "uptime",
            "-t",
            "0",
            "--json",
            "--lab=two.json",
            "-vv",
            "--",
            "ls -l",
            "--force",
        ]
    )
    assert line is not None
    assert line.name == "web1,db.*"
    assert line.commands == ["uptime", "ls -l", "--force"]
    # Options after the command are moved in front of those before it (globals_first).
    assert line.labs == [Path("two.json"), Path("one.json")]
    assert (line.force, line.as_json, line.dry_run, line.verbose) == (True, True, False, 3)
    assert line.timeout == 0.0
    assert line.overrides == {"user": "root", "port": 2222, "hop": None, "term": None}
    assert parse(["host", "run", "run", "true"]) is not None  # a host named run


# --- the fast path against the Typer path ------------------------------------------------


def test_success_and_a_failing_commands_exit_status(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    assert assert_same(["host", "local", "run", "true"], env, tmp_path).returncode == 0
    failed = assert_same(
        ["host", "local", "run", "echo out; echo err >&2; (exit 3)", "echo never"], env, tmp_path
    )
    assert failed.returncode == 3
    assert "local ! exit status 3" in failed.stdout
    assert "never" not in failed.stdout.replace("$ echo never", "")
    timed_out = assert_same(["host", "local", "run", "-t", "0.2", "sleep 5"], env, tmp_path)
    assert timed_out.returncode == 124


def test_an_unknown_host_and_a_bad_lab(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    unknown = assert_same(["host", "nosuch", "run", "true"], env, tmp_path)
    assert unknown.returncode == 2
    assert "no host matches 'nosuch'" in unknown.stderr
    missing = assert_same(["--lab", "./missing.json", "host", "x", "run", "true"], env, tmp_path)
    assert missing.returncode == 2
    bad_env = env_for(tmp_path, OTTO_LOG="loud")
    assert assert_same(["host", "local", "run", "true"], bad_env, tmp_path).returncode == 2
    bad_term = assert_same(["host", "local", "--term", "serial", "run", "true"], env, tmp_path)
    assert bad_term.returncode == 2


def test_json_and_dry_run(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    as_json = assert_same(["--json", "host", "local", "run", "echo hi", "false"], env, tmp_path)
    assert as_json.returncode == 1
    records = json.loads(as_json.stdout)
    assert [r["exit_code"] for r in records] == [0, 1]
    planned = assert_same(["host", "local", "run", "echo hi", "-n"], env, tmp_path)
    assert planned.returncode == 0
    assert planned.stdout


def test_a_lab_file_two_hosts_streaming_and_options_after_the_command(
    tmp_path: Path, two_local: Path
) -> None:
    env = env_for(tmp_path)
    streamed = assert_same(
        ["--lab", str(two_local), "host", "alpha,b", "run", "echo 1; echo 2", "echo x >&2"],
        env,
        tmp_path,
        hosts_interleave=True,
    )
    assert streamed.returncode == 0
    assert "alpha | 1\nalpha | 2\n" in streamed.stdout
    assert "b     ! x" in streamed.stderr
    after = assert_same(
        ["host", ".*", "run", "true", "--lab", str(two_local), "--force", "-v"],
        env,
        tmp_path,
        hosts_interleave=True,
    )
    assert after.returncode == 0
    from_env = env_for(tmp_path, OTTO_LAB=str(two_local))
    assert assert_same(["host", "b", "run", "true"], from_env, tmp_path).returncode == 0


def test_labs_merge_in_the_typer_apps_order(tmp_path: Path) -> None:
    """A --lab after the command is read before those written in front of it."""
    first = write_lab(tmp_path / "first.json", [{"name": "x", "address": "127.0.0.1"}])
    after = write_lab(tmp_path / "after.json", [{"name": "x", "port": 2}])
    env = env_for(tmp_path)
    proc = assert_same(
        ["--lab", str(first), "host", "x", "run", "true", "--lab", str(after)], env, tmp_path
    )
    assert proc.returncode == 2
    assert f"{after}, {first}: host 'x'" in proc.stderr


def interrupted(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """Run ``argv``; once its command has started, Ctrl-C; its status, stdout, stderr."""
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], DEADLINE)
        assert ready, "the command never started"
        first = proc.stdout.readline()
        assert first == b"local $ echo up; sleep 30\n", first
        ready, _, _ = select.select([proc.stdout], [], [], DEADLINE)
        assert ready
        assert proc.stdout.readline() == b"local | up\n"
        proc.send_signal(signal.SIGINT)
        code = proc.wait(DEADLINE)
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return code, (first + b"local | up\n" + out).decode(), err.decode()


def test_ctrl_c(tmp_path: Path) -> None:
    env = env_for(tmp_path)
    args = ["host", "local", "run", "echo up; sleep 30"]
    assert parse(args) is not None
    mine = interrupted([sys.executable, "-m", "otto", *args], env, tmp_path)
    reference = interrupted([sys.executable, "-c", TYPER_MAIN, *args], env, tmp_path)
    assert mine == reference, (mine, reference)
    assert mine[0] == 130
    assert mine[2].endswith("otto: interrupted (SIGINT)\n")


# --- over SSH ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ssh_lab_file(lab: TestLab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    hosts = []
    for record in lab.inventory():
        entry = {k: v for k, v in record.items() if v is not None}
        if entry["term"] == "ssh":
            entry["known_hosts"] = str(lab.known_hosts)
        hosts.append(entry)
    return write_lab(tmp_path_factory.mktemp("otto-lab") / "lab.json", hosts)


def test_over_ssh(ssh_lab_file: Path, tmp_path: Path) -> None:
    env = env_for(tmp_path, OTTO_LAB=str(ssh_lab_file))
    ok = assert_same(["host", "ssh1", "run", "echo $((6 * 7))"], env, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "ssh1 | 42" in ok.stdout
    failed = assert_same(["host", "ssh1", "run", "exit 5", "--json"], env, tmp_path)
    assert failed.returncode == 5
    refused = assert_same(["host", "ssh1", "--port", "1", "run", "true"], env, tmp_path)
    assert refused.returncode == 255


def test_an_ssh_run_imports_asyncssh_and_no_other_transport(
    ssh_lab_file: Path, tmp_path: Path
) -> None:
    """Over SSH: asyncssh, but not the CLI's libraries, other kinds of host, port
    forwards or the reservation store."""
    env = env_for(tmp_path, OTTO_LAB=str(ssh_lab_file))
    modules = local_run_imports(tmp_path, env, host="ssh1")
    # (otto.hosts.ssh is imported by importlib.import_module, which -X importtime does not show)
    assert "asyncssh" in modules and "otto.transports.ssh" in modules
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY and m != "asyncssh") == [
        m for m in sorted(modules) if m.startswith("asyncssh.")
    ]
    unused = ("otto.hosts.forward", "otto.hosts.telnet", "otto.hosts.console", "otto.cli.guard")
    assert sorted(m for m in modules if m in unused or m == "sqlite3") == []


def test_over_ssh_through_hops(ssh_lab_file: Path, tmp_path: Path) -> None:
    env = env_for(tmp_path, OTTO_LAB=str(ssh_lab_file))
    ok = assert_same(["host", "inner2", "run", "echo $((6 * 7)); echo oops >&2"], env, tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "inner2 | 42" in ok.stdout and "inner2 ! oops" in ok.stderr


@pytest.mark.parametrize(
    ("name", "first"), [("ssh1", "ssh1"), ("inner2", "ssh1")], ids=["direct", "behind hops"]
)
def test_the_first_ssh_connection_is_begun_before_asyncssh_is_imported(
    ssh_lab_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    first: str,
) -> None:
    """``run_line`` begins the TCP connect to the host reached directly (the host, or its
    first hop), and that host's link runs SSH on it; the rest connect as usual."""
    import gc

    from otto.cli.fast import run_line
    from otto.lab import load_lab
    from otto.transports import ssh_early

    for key, value in env_for(tmp_path, OTTO_LAB=str(ssh_lab_file), HOME=str(tmp_path)).items():
        monkeypatch.setenv(key, value)
    spec = load_lab([ssh_lab_file]).spec(first)
    direct = (spec.address, spec.port or 22)
    taken: list[tuple[tuple[str, int], bool]] = []
    real_take = ssh_early.take

    async def take(address: str, port: int) -> Any:
        sock = await real_take(address, port)
        taken.append(((address, port), sock is not None))
        return sock

    monkeypatch.setattr(ssh_early, "take", take)
    frozen = gc.get_freeze_count()
    line = parse(["host", name, "run", "echo here"])
    assert line is not None
    assert run_line(line) == 0
    assert f"{name} | here" in capsys.readouterr().out
    assert taken[0] == (direct, True)
    assert all(not took for _, took in taken[1:])
    assert not ssh_early._pending
    assert gc.isenabled() and gc.get_freeze_count() == frozen  # no freeze unless asked
