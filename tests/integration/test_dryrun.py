"""``otto -n`` (``--dry-run``) through the real entry point: plans printed, no host contacted.

Every host of the dry-run lab points at a TCP listener this test owns; after
each command, the connections waiting on it are counted (a client that
connected is in its accept queue, even once it is gone). A control test shows
the count does see a real attempt. The real SSH lab checks the plan against
what a real run of the same command does.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.lab import Lab as TestLab

DEADLINE = 60.0
SECRET = "s3cret-Pw-dry"


class Listener:
    """A TCP port that counts every connection made to it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.setblocking(False)
        self.port: int = self.sock.getsockname()[1]

    def accepted(self) -> int:
        """Connections made since the last call (each taken off the queue and closed)."""
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1


@pytest.fixture
def listener() -> Iterator[Listener]:
    owned = Listener()
    try:
        yield owned
    finally:
        owned.sock.close()


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "NO_COLOR", "FORCE_COLOR"}}
    env["COLUMNS"] = "200"
    env["OTTO_RESERVATIONS"] = f"sqlite:///{tmp / 'reservations.db'}"
    env["OTTO_USER"] = "dry-tester"
    env.update(extra)
    return env


def otto(
    *args: str, env: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
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


@pytest.fixture
def dry_lab(tmp_path: Path, listener: Listener) -> Path:
    """SSH (behind two hops), Telnet and console hosts, every one of them the listener."""
    port = listener.port
    hosts = [
        {"name": "bastion", "address": "127.0.0.1", "port": port, "user": "ops"},
        {"name": "gw", "address": "127.0.0.1", "port": port, "user": "ops", "hop": "bastion"},
        {
            "name": "target",
            "address": "127.0.0.1",
            "port": port,
            "user": "deploy",
            "password": SECRET,
            "hop": "gw",
            "tags": ["web"],
        },
        {
            "name": "switch",
            "term": "telnet",
            "address": "127.0.0.1",
            "port": port,
            "user": "admin",
            "password": SECRET,
            "tags": ["web"],
        },
        {
            "name": "board",
            "term": "console",
            "address": f"127.0.0.1:{port}",
            "console_protocol": "raw",
            "power": {"on": "pdu on 3", "off": "pdu off 3", "via": "bastion"},
        },
    ]
    path = tmp_path / "lab.json"
    path.write_text(json.dumps({"hosts": hosts, "settings": {"instructions": ["dry_tasks"]}}))
    (tmp_path / "dry_tasks.py").write_text(INSTRUCTIONS)
    return path


INSTRUCTIONS = textwrap.dedent(
    """
    import otto
    from otto.result import Status


    @otto.instruction()
    async def deploy(version: str = "1.0", payload: str = "") -> None:
        \"\"\"Deploy a version everywhere.\"\"\"
        for host in otto.all_hosts("^(target|switch)$"):
            result = await host.run([f"echo deploying {version}", "systemctl restart app"])
            assert result.status is Status.NotRun, result
        if payload:
            sent = await otto.get_host("target").put(payload, "/srv/app")
            assert not sent.is_ok and sent.files == []
        async with otto.get_host("gw").open_session("build") as session:
            await session.run("make -j4")
        status = await otto.get_host("bastion").oneshot("uptime")
        assert status.retcode == -1 and status.output == ""
        await otto.get_host("board").power("cycle")


    @otto.instruction()
    async def wait_login() -> None:
        \"\"\"Wait for a login prompt.\"\"\"
        target = otto.get_host("target")
        await target.send("reboot\\n")
        await target.expect("login: ")
        await target.run("never reached")


    @otto.instruction()
    async def strict() -> None:
        \"\"\"Insist that a command succeeded.\"\"\"
        result = await otto.get_host("gw").run("true")
        assert result.is_ok, "true did not succeed"


    @otto.instruction()
    async def stray() -> None:
        \"\"\"Ask for a host the lab does not have.\"\"\"
        otto.get_host("nope")
    """
)


def no_secret(proc: subprocess.CompletedProcess[str]) -> None:
    assert SECRET not in proc.stdout + proc.stderr


# --- host NAMES run / put / get -----------------------------------------------------------


def test_run_prints_the_plan_and_contacts_no_host(
    dry_lab: Path, listener: Listener, tmp_path: Path
) -> None:
    env = clean_env(tmp_path)
    proc = otto(
        "-n",
        "--lab",
        str(dry_lab),
        "host",
        "target,switch,board",
        "run",
        "cd /srv && ls",
        "printf 'a\\nb'",
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    port = listener.port
    assert f"[target] would connect: ssh deploy@127.0.0.1:{port} via bastion -> gw\n" in out
    assert f"[switch] would connect: telnet admin@127.0.0.1:{port}\n" in out
    assert f"[board] would connect: console 127.0.0.1:{port} (raw)\n" in out
    for name in ("target", "switch", "board"):
        assert f"[{name}] would run: cd /srv && ls  (timeout 30s)\n" in out
        assert f"[{name}] would run: printf 'a\\nb'  (timeout 30s)\n" in out
    no_secret(proc)
    assert listener.accepted() == 0


def test_timeout_zero_means_none_in_the_plan(
    dry_lab: Path, listener: Listener, tmp_path: Path
) -> None:
    env = clean_env(tmp_path)
    proc = otto("--dry-run", "--lab", str(dry_lab), "host", "gw", "run", "-t", "0", "id", env=env)
    assert proc.returncode == 0, proc.stderr
    assert "[gw] would run: id  (no timeout)\n" in proc.stdout
    assert listener.accepted() == 0


def test_a_real_run_is_seen_by_the_listener(tmp_path: Path, listener: Listener) -> None:
    """Control: the same lab without -n does connect (so zero above means something)."""
    lab = tmp_path / "control.json"
    lab.write_text(
        json.dumps(
            {
                "hosts": [
                    {
                        "name": "gw",
                        "address": "127.0.0.1",
                        "port": listener.port,
                        "user": "ops",
                        "connect_timeout": 2,
                        "known_hosts": None,
                    }
                ]
            }
        )
    )
    proc = otto("--lab", str(lab), "host", "gw", "run", "true", env=clean_env(tmp_path))
    assert proc.returncode != 0
    assert listener.accepted() >= 1


def test_put_and_get_plans(dry_lab: Path, listener: Listener, tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    payload = tmp_path / "fw image.bin"
    payload.write_bytes(b"firmware")
    proc = otto(
        "-n", "--lab", str(dry_lab), "host", "target", "put", str(payload), "/srv/fw", env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1:] == [
        f"[target] would connect: ssh deploy@127.0.0.1:{listener.port} via bastion -> gw",
        "[target] reservation: not reserved",
        f"[target] would put: {payload} -> target:/srv/fw",
    ]
    out = tmp_path / "back"
    proc = otto(
        "-n",
        "--lab",
        str(dry_lab),
        "host",
        "target,switch",
        "get",
        "/var/log/app.log",
        str(out),
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"[target] would get: target:/var/log/app.log -> {out / 'target'}\n" in proc.stdout
    assert f"[switch] would get: switch:/var/log/app.log -> {out / 'switch'}\n" in proc.stdout
    assert not out.exists()  # nothing made, not even the folder
    assert listener.accepted() == 0


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["host", "nope", "run", "true"], "no host matches 'nope'"),
        (["host", "target", "put", "/no/such/file", "/tmp"], "does not exist"),
        (["host", "gw", "--hop", "nowhere", "run", "true"], "no host named 'nowhere'"),
        (["host", "gw", "--port", "70000", "run", "true"], "port number 1-65535"),
        (["host", "board", "power", "sideways"], "power takes on, off or cycle"),
        (["host", "target", "login"], "host login has no dry run"),
        (["monitor", "target"], "monitor has no dry run"),
    ],
)
def test_an_invalid_plan_says_why(
    dry_lab: Path, listener: Listener, tmp_path: Path, args: list[str], reason: str
) -> None:
    proc = otto("-n", "--lab", str(dry_lab), *args, env=clean_env(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert reason in proc.stderr
    assert listener.accepted() == 0


def test_get_into_a_file_is_refused(dry_lab: Path, listener: Listener, tmp_path: Path) -> None:
    occupied = tmp_path / "occupied"
    occupied.write_text("")
    proc = otto(
        "-n",
        "--lab",
        str(dry_lab),
        "host",
        "gw",
        "get",
        "/etc/hostname",
        str(occupied),
        env=clean_env(tmp_path),
    )
    assert proc.returncode == 2
    assert f"{occupied} exists and is not a folder" in proc.stderr


def test_a_bad_lab_fails_the_dry_run(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hosts": [{"name": "x", "address": "h", "user": "u", "port": 0}]}))
    proc = otto("-n", "--lab", str(bad), "host", "x", "run", "true", env=clean_env(tmp_path))
    assert proc.returncode == 2
    assert f"{bad}: host 'x': field 'port'" in proc.stderr


def test_power_plan_names_the_controller(dry_lab: Path, listener: Listener, tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    proc = otto("-n", "--lab", str(dry_lab), "host", "board", "power", "cycle", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1:] == [
        "[board] reservation: not reserved",
        "[board] would switch power cycle: run on bastion: pdu off 3",
        "[board] would switch power cycle: run on bastion: pdu on 3",
    ]
    proc = otto("-n", "--lab", str(dry_lab), "host", "gw", "power", "on", env=env)
    assert proc.returncode == 2
    assert "gw: no power commands" in proc.stderr
    assert listener.accepted() == 0


# --- run INSTRUCTION ----------------------------------------------------------------------


def test_an_instruction_runs_on_hosts_that_only_print(
    dry_lab: Path, listener: Listener, tmp_path: Path
) -> None:
    payload = tmp_path / "app.tar"
    payload.write_bytes(b"app")
    env = clean_env(tmp_path)
    proc = otto(
        "-n",
        "--lab",
        str(dry_lab),
        "run",
        "deploy",
        "--version",
        "2.1",
        "--payload",
        str(payload),
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    port = listener.port
    assert f"[target] would connect: ssh deploy@127.0.0.1:{port} via bastion -> gw\n" in out
    for name in ("target", "switch"):
        assert f"[{name}] would run: echo deploying 2.1\n" in out
        assert f"[{name}] would run: systemctl restart app\n" in out
    assert f"[target] would put: {payload} -> target:/srv/app\n" in out
    assert "[gw] would open session build\n" in out
    assert "[gw] would run (session build): make -j4\n" in out
    assert "[bastion] would run (one-shot): uptime\n" in out
    assert "[board] would switch power cycle: run on bastion: pdu off 3\n" in out
    assert "hosts used: target, switch, gw, bastion, board" in out
    for name in ("target", "switch", "gw", "bastion", "board"):
        assert f"[{name}] reservation: not reserved\n" in out
    no_secret(proc)
    assert listener.accepted() == 0


def test_an_instruction_that_waits_for_output_stops_there(
    dry_lab: Path, listener: Listener, tmp_path: Path
) -> None:
    proc = otto(
        "-n", "--lab", str(dry_lab), "run", "wait-login", env=clean_env(tmp_path), cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[target] would send: 'reboot\\n'\n" in proc.stdout
    assert "[target] would wait for: 'login: '\n" in proc.stdout
    assert "dry run stopped here: target/default: expect('login: ')" in proc.stdout
    assert "never reached" not in proc.stdout
    assert listener.accepted() == 0


def test_an_instruction_asking_for_an_unknown_host_fails(
    dry_lab: Path, listener: Listener, tmp_path: Path
) -> None:
    proc = otto("-n", "--lab", str(dry_lab), "run", "stray", env=clean_env(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "no host named 'nope'" in proc.stderr
    assert listener.accepted() == 0


def test_an_instruction_that_insists_on_success_is_told_nothing_ran(
    dry_lab: Path, listener: Listener, tmp_path: Path
) -> None:
    proc = otto("-n", "--lab", str(dry_lab), "run", "strict", env=clean_env(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "[gw] would run: true\n" in proc.stdout
    assert (
        "instruction 'strict' raised AssertionError: true did not succeed (in a dry run every "
        "command's result is Status.NotRun"
    ) in proc.stderr
    assert listener.accepted() == 0


# --- test ----------------------------------------------------------------------------------


SUITE = textwrap.dedent(
    """
    import pytest


    @pytest.mark.hosts("target|switch")
    def test_each(host):
        raise AssertionError("a dry run must not run tests")


    @pytest.mark.hosts(tags=["web"], count=1)
    def test_any_web(hosts):
        raise AssertionError("a dry run must not run tests")


    def test_all(hosts):
        raise AssertionError("a dry run must not run tests")


    def test_plain():
        raise AssertionError("a dry run must not run tests")
    """
)


def test_test_collects_and_lists_hosts(dry_lab: Path, listener: Listener, tmp_path: Path) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_fleet.py").write_text(SUITE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # node ids from here
    proc = otto(
        "-n",
        "--lab",
        str(dry_lab),
        "test",
        "--iterations",
        "3",
        "suite",
        env=clean_env(tmp_path),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {
        line.split()[0]: line.split(None, 1)[1]
        for line in proc.stdout.splitlines()
        if line.startswith("suite/")
    }
    assert rows == {
        "suite/test_fleet.py::test_each[target]": "target",
        "suite/test_fleet.py::test_each[switch]": "switch",
        "suite/test_fleet.py::test_any_web": "any 1 free of: target, switch",
        "suite/test_fleet.py::test_all": "bastion, gw, target, switch, board",
        "suite/test_fleet.py::test_plain": "(no lab host)",
    }
    assert "5 tests would run, each 3 times" in proc.stdout
    assert f"[target] would connect: ssh deploy@127.0.0.1:{listener.port} via bastion -> gw" in (
        proc.stdout
    )
    # Nothing written: no run folder, no pytest cache.
    assert not (tmp_path / "otto-runs").exists()
    assert not (tmp_path / ".pytest_cache").exists()
    assert listener.accepted() == 0


def test_test_with_a_collection_error_fails(
    dry_lab: Path, listener: Listener, tmp_path: Path
) -> None:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_broken.py").write_text("import no_such_module_anywhere\n")
    (suite / "test_marked.py").write_text(
        "import pytest\n\n@pytest.mark.hosts('db.*')\ndef test_db(host):\n    pass\n"
    )
    proc = otto("-n", "--lab", str(dry_lab), "test", "suite", env=clean_env(tmp_path), cwd=tmp_path)
    assert proc.returncode not in (0, 5), proc.stdout + proc.stderr
    assert "no_such_module_anywhere" in proc.stdout
    assert "pytest could not collect the tests" in proc.stderr
    assert listener.accepted() == 0


# --- reservations -------------------------------------------------------------------------


def test_a_host_reserved_by_someone_else_makes_the_plan_invalid(
    dry_lab: Path, listener: Listener, tmp_path: Path
) -> None:
    lab = ("--lab", str(dry_lab))
    alice = clean_env(tmp_path, OTTO_USER="alice")
    held = otto(*lab, "reserve", "gw", "--for", "1h", "--note", "flashing", env=alice)
    assert held.returncode == 0, held.stdout + held.stderr
    me = clean_env(tmp_path)
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "test_gw.py").write_text("def test_gw(hosts):\n    pass\n")
    for args in (
        ["host", "gw,bastion", "run", "reflash"],
        ["host", "gw", "put", str(dry_lab), "/tmp"],
        ["run", "deploy"],
        ["test", "suite"],
    ):
        proc = otto("-n", *lab, *args, env=me, cwd=tmp_path)
        assert proc.returncode == 3, (args, proc.stdout + proc.stderr)
        assert "gw: reserved by alice" in proc.stderr, args
        assert "would run: reflash" not in proc.stdout
    # Alice's own dry run is fine and says the host is hers.
    proc = otto("-n", *lab, "host", "gw", "run", "reflash", env=alice)
    assert proc.returncode == 0, proc.stderr
    assert "[gw] reservation: reserved by you until" in proc.stdout
    # --force: the plan is valid, and says whose reservation it would override.
    proc = otto("-n", "--force", *lab, "host", "gw,bastion", "run", "reflash", env=me)
    assert proc.returncode == 0, proc.stderr
    assert "gw: --force would override the reservation of alice" in proc.stderr
    assert "[bastion] reservation: not reserved\n" in proc.stdout
    assert "[gw] reservation: reserved by alice until" in proc.stdout
    assert "[gw] would run: reflash  (timeout 30s)\n" in proc.stdout
    assert listener.accepted() == 0


# --- the real SSH lab: the plan matches what a real run does ---------------------------------


@pytest.fixture(scope="module")
def ssh_lab_file(lab: TestLab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    hosts = []
    for record in lab.inventory():
        entry = {k: v for k, v in record.items() if v is not None}
        if entry["term"] == "ssh":
            entry["known_hosts"] = str(lab.known_hosts)
        hosts.append(entry)
    path = tmp_path_factory.mktemp("dry-lab") / "lab.json"
    path.write_text(json.dumps({"hosts": hosts}))
    return path


def test_plan_and_real_run_on_the_ssh_lab(lab: TestLab, ssh_lab_file: Path, tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    args = ("--lab", str(ssh_lab_file), "host", "inner2", "run", "echo $((6*7)) $USER")
    dry = otto("-n", *args, env=env)
    assert dry.returncode == 0, dry.stderr
    inner2 = lab.hosts["inner2"]
    assert (
        f"[inner2] would connect: ssh {inner2.user}@{inner2.address}:{inner2.port} "
        "via ssh1 -> inner\n"
    ) in dry.stdout
    assert "[inner2] would run: echo $((6*7)) $USER  (timeout 30s)\n" in dry.stdout
    assert "42" not in dry.stdout
    real = otto(*args, env=env)
    assert real.returncode == 0, real.stdout + real.stderr
    assert re.search(rf"^inner2 \| 42 {inner2.user}$", real.stdout, re.MULTILINE), real.stdout
