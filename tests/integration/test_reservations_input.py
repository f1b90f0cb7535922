"""What people and programs write into the reservation store, and a store on a full disk.

Holders and notes come from ``$OTTO_USER`` and ``--note``, and from anyone
else who writes to a shared store: control characters are refused when a
reservation is made and escaped whenever one is printed. A store on a disk
that fills up reports the disk, never advice that would throw it away.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import otto
from otto.lab import Lab
from otto.reservations import open_store
from tests.lab.reservations import ROOT

pytestmark = pytest.mark.integration

Otto = Callable[..., subprocess.CompletedProcess[str]]

TITLE = "bob\x1b]0;pwned\x07"
CLEAR = "\x1b[2Jnothing to see"
FORGED = "flash\nweb2  mallory@evil  2026-01-01 00:00:00Z"
ESC = "\x1b"


def _env(tmp_path: Path, store: Path) -> dict[str, str]:
    lab = tmp_path / "lab.json"
    hosts = [{"name": name, "term": "local"} for name in ("web1", "web2", "db1")]
    lab.write_text(json.dumps({"hosts": hosts}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTTO_")}
    env.update(
        OTTO_LAB=str(lab),
        OTTO_RESERVATIONS=f"sqlite:///{store}",
        PYTHONPATH=os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]),
    )
    return env


def _runner(env: dict[str, str], cwd: Path) -> Otto:
    def run(
        *args: str, user: str = "alice@laptop", **extra: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "otto", *args],
            env={**env, "OTTO_USER": user, **extra},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    return run


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store" / "reservations.db"


@pytest.fixture
def otto_cli(tmp_path: Path, store_path: Path) -> Otto:
    """``otto_cli(*args, user=...)``: the real command, as that user."""
    return _runner(_env(tmp_path, store_path), tmp_path)


# --- control characters -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "note"),
    [(TITLE, ""), ("alice@laptop", CLEAR), ("alice@laptop", FORGED), ("al\u202eice", "")],
)
def test_control_characters_are_refused_at_reserve_time(
    otto_cli: Otto, user: str, note: str
) -> None:
    result = otto_cli("reserve", "web1", "--note", note, user=user)
    assert result.returncode == 2, result
    assert "holds a control character" in result.stderr
    assert ESC not in result.stderr and "\u202e" not in result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert otto_cli("reservations").stdout.startswith("no reservations in ")


async def test_the_python_api_refuses_them_too(tmp_path: Path, store_path: Path) -> None:
    lab = Lab.load(_write_lab(tmp_path))
    with pytest.raises(ValueError, match="note 'a\\\\nb' holds a control character"):
        async with otto.reserve(["web1"], lab=lab, store=f"sqlite:///{store_path}", note="a\nb"):
            pytest.fail("reserved with a newline in the note")
    await lab.close()


def _write_lab(tmp_path: Path) -> Path:
    path = tmp_path / "api-lab.json"
    path.write_text(json.dumps({"hosts": [{"name": "web1", "term": "local"}]}))
    return path


async def _forge(store_path: Path) -> None:
    """Rows as another program (or an older otto) could have written them."""
    async with open_store(f"sqlite:///{store_path}") as store:
        await store.reserve(["db1"], holder="carol", claim="hand:carol", duration=600)
    until = (datetime.now(UTC) + timedelta(hours=1)).timestamp()
    since = datetime.now(UTC).timestamp()
    with sqlite3.connect(store_path) as conn:
        conn.execute(
            "INSERT INTO leases (host, holder, claim, run, note, since, until) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("web1", TITLE, "hand:x", "r", FORGED, since, until),
        )
        conn.execute(
            "INSERT INTO leases (host, holder, claim, run, note, since, until) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("web2", "dave", "hand:dave", "r", CLEAR, since, until),
        )
    conn.close()


async def test_forged_rows_are_escaped_when_listed_and_in_refusals(
    otto_cli: Otto, store_path: Path
) -> None:
    await _forge(store_path)
    listed = otto_cli("reservations")
    assert listed.returncode == 0, listed.stderr
    assert ESC not in listed.stdout and "\x07" not in listed.stdout
    rows = listed.stdout.splitlines()
    assert [row.split()[0] for row in rows] == ["HOST", "db1", "web1", "web2"], rows
    assert "bob\\x1b]0;pwned\\x07" in rows[2]
    assert "flash\\nweb2  mallory@evil" in rows[2]
    assert "\\x1b[2Jnothing to see" in rows[3]

    refused = otto_cli("host", "web1,web2", "run", "echo touched")
    assert refused.returncode == 3
    assert "touched" not in refused.stdout
    assert ESC not in refused.stderr and "\x07" not in refused.stderr
    lines = refused.stderr.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("otto: error: web1: reserved by bob\\x1b]0;pwned\\x07 until ")
    assert lines[1].startswith("web2: reserved by dave until ")

    # As JSON the values are the stored ones, escaped by JSON itself.
    rows_json = json.loads(otto_cli("reservations", "--json").stdout)
    assert [r["host"] for r in rows_json] == ["db1", "web1", "web2"]
    assert rows_json[1]["holder"] == TITLE and rows_json[1]["note"] == FORGED


# --- reserving again, and --json ----------------------------------------------------------


def test_reserving_again_never_shortens_and_for_keeps_its_fixed_end(otto_cli: Otto) -> None:
    # A heartbeat configured for otto.reserve does not touch a reservation made by hand.
    first = otto_cli("reserve", "web1", "--for", "2h", OTTO_HEARTBEAT="1")
    assert first.returncode == 0, first.stderr
    (lease,) = json.loads(otto_cli("reservations", "--json").stdout)
    since = datetime.fromisoformat(lease["since"])
    until = datetime.fromisoformat(lease["until"])
    assert abs((until - since).total_seconds() - 7200) < 0.01
    again = otto_cli("reserve", "web1", "--for", "10m")
    assert again.returncode == 0, again.stderr
    (after,) = json.loads(otto_cli("reservations", "--json").stdout)
    assert after["until"] == lease["until"] and after["since"] == lease["since"]
    assert after["holder"] == "alice@laptop" and after["mine"] is True
    assert json.loads(otto_cli("reservations", "--json", user="bob@ci").stdout)[0]["mine"] is False


def test_reservations_json_when_there_are_none(otto_cli: Otto) -> None:
    result = otto_cli("reservations", "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == []


# --- a full disk ----------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs of its own, unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


def _fill(disk: Path) -> Path:
    """Write to ``disk`` until it is full (unbuffered: the last write is the one refused)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_is_reported_as_full_and_the_store_kept(
    tmp_path: Path, small_disk: Path
) -> None:
    store = small_disk / "reservations.db"
    run = _runner(_env(tmp_path, store), tmp_path)
    assert run("reserve", "web1", "--note", "before").returncode == 0
    filler = _fill(small_disk)
    for args in (("reserve", "web2"), ("reservations",), ("host", "db1", "run", "echo touched")):
        result = run(*args)
        assert result.returncode == 1, (args, result)
        assert "touched" not in result.stdout
        message = result.stderr
        assert len(message.splitlines()) == 1, message
        assert message.startswith(f"otto: error: reservation store {store}: "), message
        assert f"the disk holding {small_disk} is full" in message, message
        assert "move it away" not in message and "not a readable" not in message, message
    filler.unlink()
    listed = json.loads(run("reservations", "--json").stdout)
    assert [(x["host"], x["note"]) for x in listed] == [("web1", "before")]
    assert run("reserve", "web2").returncode == 0


def test_real_corruption_keeps_its_advice(otto_cli: Otto, store_path: Path) -> None:
    store_path.parent.mkdir()
    store_path.write_bytes(b"\x00garbage" * 100)
    result = otto_cli("reservations")
    assert result.returncode == 1
    assert "not a readable SQLite database" in result.stderr
    assert "move it away to start afresh" in result.stderr
