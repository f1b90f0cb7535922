"""otto reserve / release / reservations and the check before actions, as users run them.

Each test has its own SQLite store (``$OTTO_RESERVATIONS``) and a lab of
local hosts; two people are told apart by ``$OTTO_USER``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lab.reservations import ROOT

pytestmark = pytest.mark.integration

Otto = Callable[..., subprocess.CompletedProcess[str]]
UNTIL = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ"


def _env(tmp_path: Path) -> dict[str, str]:
    lab = tmp_path / "lab.json"
    hosts = [
        {"name": "web1", "term": "local", "tags": ["web"]},
        {"name": "web2", "term": "local", "tags": ["web"]},
        {"name": "db1", "term": "local"},
    ]
    lab.write_text(json.dumps({"hosts": hosts, "settings": {"instructions": ["tasks"]}}))
    (tmp_path / "tasks.py").write_text(
        "import otto\n\n\n"
        "@otto.instruction()\n"
        "async def touch_web1() -> None:\n"
        '    """Run a command on web1."""\n'
        '    await otto.get_host("web1").run("echo touched")\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTO_")}
    env.update(
        OTTO_LAB=str(lab),
        OTTO_RESERVATIONS=f"sqlite:///{tmp_path / 'store' / 'reservations.db'}",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
    )
    return env


@pytest.fixture
def otto(tmp_path: Path) -> Otto:
    """``otto(*args, user=...)``: the command as that user, in a folder of its own."""
    env = _env(tmp_path)
    work = tmp_path / "work"
    work.mkdir()

    def run(
        *args: str, user: str = "alice@laptop", **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "otto", *args],
            env={**env, "OTTO_USER": user, **extra},
            cwd=work,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


def test_a_host_held_by_someone_else_stops_the_command(otto: Otto) -> None:
    taken = otto("reserve", "web1", "--for", "2h", "--note", "flashing", user="bob@ci")
    assert taken.returncode == 0, taken.stderr
    assert re.fullmatch(rf"web1: reserved by you until {UNTIL}\n", taken.stdout)

    refused = otto("host", "web1", "run", "echo touched")
    assert refused.returncode == 3
    assert "touched" not in refused.stdout
    assert re.fullmatch(
        rf"otto: error: web1: reserved by bob@ci until {UNTIL} \(flashing\) "
        r"\(--force acts anyway\)\n",
        refused.stderr,
    )
    for args in (
        ("host", "web.*", "put", str(ROOT / "pyproject.toml"), "/tmp"),
        ("host", "web1", "get", "/etc/hostname", "x"),
    ):
        blocked = otto(*args)
        assert blocked.returncode == 3, blocked.stderr
        assert "web1: reserved by bob@ci" in blocked.stderr
    # The holder acts as usual.
    own = otto("host", "web1", "run", "echo mine", user="bob@ci")
    assert own.returncode == 0
    assert "web1 | mine" in own.stdout


def test_force_overrides_and_says_whose_reservation(otto: Otto) -> None:
    assert otto("reserve", "web1", user="bob@ci").returncode == 0
    forced = otto("--force", "host", "web1", "run", "echo touched")
    assert forced.returncode == 0, forced.stderr
    assert "web1 | touched" in forced.stdout
    assert re.search(
        rf"otto: web1: --force overrides the reservation of bob@ci until {UNTIL}", forced.stderr
    )
    # --force with reserve takes the host; bob is told it is gone by the listing.
    taken = otto("--force", "reserve", "web1")
    assert taken.returncode == 0
    assert "web1: --force takes it from bob@ci" in taken.stderr
    assert "alice@laptop (you)" in otto("reservations").stdout


def test_all_or_nothing_and_tags(otto: Otto) -> None:
    assert otto("reserve", "web2", user="bob@ci").returncode == 0
    refused = otto("reserve", "--tags", "web", "db1")
    assert refused.returncode == 3
    assert "web2: reserved by bob@ci" in refused.stderr
    listed = otto("reservations").stdout
    assert "db1" not in listed and "web1" not in listed  # nothing was taken
    # bob's hand reservations extend each other: he gets web1 and keeps web2.
    both = otto("reserve", "--tags", "web", user="bob@ci")
    assert both.returncode == 0
    assert [line.split(":")[0] for line in both.stdout.splitlines()] == ["web1", "web2"]


def test_reservations_lists_holder_since_until_note(otto: Otto) -> None:
    assert otto("reservations").stdout.startswith("no reservations in sqlite:///")
    assert otto("reserve", "web1", "db1", "--for", "90m", "--note", "soak test").returncode == 0
    assert otto("reserve", "web2", "--for", "30m", user="bob@ci").returncode == 0
    lines = otto("reservations").stdout.splitlines()
    assert lines[0].split() == ["HOST", "HOLDER", "SINCE", "UNTIL", "NOTE"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert sorted(rows) == ["db1", "web1", "web2"]
    assert re.search(
        rf"web1 +alice@laptop \(you\) +{UNTIL} +{UNTIL} \(in 1h(29|30)m\) +soak test", rows["web1"]
    )
    assert re.search(rf"web2 +bob@ci +{UNTIL} +{UNTIL} \(in (29|30)m\) +-", rows["web2"])
    only = otto("reservations", "web2").stdout.splitlines()
    assert [line.split()[0] for line in only] == ["HOST", "web2"]


def test_release(otto: Otto) -> None:
    assert otto("reserve", "web1", "web2").returncode == 0
    assert otto("reserve", "db1", user="bob@ci").returncode == 0
    assert otto("release", "web1").stdout == "web1: released\n"
    refused = otto("release", "db1")
    assert refused.returncode == 3
    assert "db1: reserved by bob@ci" in refused.stderr
    assert otto("release").stdout == "web2: released\n"  # every one of mine
    assert otto("release").stdout == "you held no reservation\n"
    assert otto("release", "web1").stdout == "web1: was not reserved\n"
    forced = otto("--force", "release", "db1")
    assert forced.stdout == "db1: released\n"
    assert "db1: --force ends the reservation of bob@ci" in forced.stderr
    assert otto("reservations").stdout.startswith("no reservations")


def test_dry_run_reserve_and_release_read_the_store_and_change_nothing(otto: Otto) -> None:
    assert otto("reserve", "db1", user="bob@ci").returncode == 0
    planned = otto("-n", "reserve", "web1", "--for", "2h")
    assert planned.returncode == 0, planned.stderr
    assert "web1: would reserve for 2h (not reserved)" in planned.stdout
    assert "web1" not in otto("reservations").stdout  # nothing was written
    held = otto("-n", "reserve", "web1", "db1")
    assert held.returncode == 3  # the real command would be refused too
    assert "db1: reserved by bob@ci" in held.stderr
    assert otto("reserve", "web1").returncode == 0
    assert "web1: would release (reserved by you until" in otto("-n", "release", "web1").stdout
    assert otto("-n", "release").stdout == "web1: would release\n"
    listed = otto("reservations").stdout
    assert "web1" in listed and "db1" in listed  # both still held


def test_run_instruction_refuses_a_held_host_when_it_uses_it(otto: Otto) -> None:
    assert otto("reserve", "web1", user="bob@ci").returncode == 0
    refused = otto("run", "touch-web1")
    assert refused.returncode == 3, refused.stderr
    assert "touched" not in refused.stdout
    assert re.search(rf"otto: error: web1: reserved by bob@ci until {UNTIL}", refused.stderr)
    forced = otto("--force", "run", "touch-web1")
    assert forced.returncode == 0, forced.stderr
    assert "web1: --force overrides the reservation of bob@ci" in forced.stderr
    # A host nobody else holds is used as usual.
    assert otto("release", user="bob@ci").returncode == 0
    assert otto("run", "touch-web1").returncode == 0


def test_otto_test_checks_the_hosts_its_tests_use_before_they_run(
    otto: Otto, tmp_path: Path
) -> None:
    tests = tmp_path / "work" / "test_db.py"
    tests.write_text(
        "import pytest\n\n@pytest.mark.hosts('db1')\ndef test_db(host):\n    pass\n\n"
        "@pytest.mark.hosts('web1')\ndef test_web(host):\n    pass\n"
    )
    assert otto("reserve", "db1", user="bob@ci").returncode == 0
    refused = otto("test", "--output", "run1", str(tests))
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "db1: reserved by bob@ci" in refused.stderr
    assert not (tmp_path / "work" / "run1").exists()
    # Only the selected tests' hosts are checked: web1 is free.
    ran = otto("test", "--output", "run2", "-k", "web", str(tests))
    assert ran.returncode == 0, ran.stdout + ran.stderr


def test_bad_input(otto: Otto) -> None:
    assert "--for: '10x' is not a duration" in otto("reserve", "web1", "--for", "10x").stderr
    assert otto("reserve", "nope").returncode == 2
    assert otto("reserve").stderr.endswith("name the hosts to reserve (NAMES or --tags)\n")
    assert "no host has the tag 'gpu'" in otto("reserve", "--tags", "gpu").stderr


def test_a_corrupt_store_is_named_and_left_alone(otto: Otto, tmp_path: Path) -> None:
    path = tmp_path / "store" / "reservations.db"
    path.parent.mkdir()
    path.write_bytes(b"\x00garbage" * 100)
    for args in (("reserve", "web1"), ("host", "web1", "run", "echo touched"), ("reservations",)):
        result = otto(*args)
        assert result.returncode == 1
        assert "touched" not in result.stdout
        assert result.stderr == (
            f"otto: error: reservation store {path}: not a readable SQLite database "
            "(file is not a database); the file is left as it is: move it away to start afresh\n"
        )
    assert path.read_bytes() == b"\x00garbage" * 100


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="needs root and unshare"
)
def test_a_read_only_data_dir(otto: Otto, tmp_path: Path) -> None:
    """The default store in a data dir on a read-only filesystem (a mount of its own)."""
    data = tmp_path / "xdg"
    data.mkdir()
    script = (
        'mount -t tmpfs tmpfs "$1" && mkdir "$1/otto" && mount -o remount,ro "$1" '
        '&& shift && exec "$@"'
    )

    def in_read_only(*args: str) -> subprocess.CompletedProcess[str]:
        env = _env(tmp_path)
        del env["OTTO_RESERVATIONS"]
        return subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
                "sh",
                str(data),
                sys.executable,
                "-m",
                "otto",
                *args,
            ],
            env={**env, "XDG_DATA_HOME": str(data), "OTTO_USER": "alice@laptop"},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    store = data / "otto" / "reservations.db"
    taken = in_read_only("reserve", "web1")
    assert taken.returncode == 1
    assert taken.stderr.startswith(
        f"otto: error: reservation store {store}: cannot open it: its folder {store.parent} "
        "is read-only ("
    )
    # Checking needs no write: with no store file, nothing is reserved.
    ran = in_read_only("host", "web1", "run", "echo fine")
    assert ran.returncode == 0, ran.stderr
    assert "web1 | fine" in ran.stdout
