"""The pytest plugin's host holding, with and without a reservation store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from otto import loop as otto_loop
from otto.lab import Lab
from otto.reservations import ENV_VAR, hand_claim, holder_identity
from otto.reservations.sqlite import SQLiteStore
from otto.testing.hostlock import HostsBusy, hold_hosts


@pytest.fixture
def lab(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Lab]:
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setenv("OTTO_USER", "alice@laptop")
    path = tmp_path / "lab.json"
    hosts = [{"name": "web1", "term": "local"}, {"name": "web2", "term": "local"}]
    url = f"sqlite:///{tmp_path / 'store.db'}"
    path.write_text(json.dumps({"hosts": hosts, "settings": {"reservations": url}}))
    built = Lab.load(path)
    yield built
    otto_loop.run(built.close())


def leases(tmp_path: Path) -> dict[str, tuple[str, str]]:
    store = SQLiteStore(tmp_path / "store.db")
    try:
        return {x.host: (x.holder, x.note) for x in store.leases_now()}
    finally:
        store.close_now()


def reserve_as(tmp_path: Path, host: str, holder: str) -> None:
    async def take() -> None:
        store = SQLiteStore(tmp_path / "store.db")
        async with store:
            await store.reserve([host], holder=holder, claim=hand_claim(holder), duration=600)

    otto_loop.run(take())


def test_without_a_store_only_files_are_used(tmp_path: Path) -> None:
    with hold_hosts(["a", "b"], folder=tmp_path / "locks", count=1, lab=Lab.default()) as held:
        assert held == ["a"]
    assert not (tmp_path / "store.db").exists()


def test_held_hosts_are_reserved_and_released(lab: Lab, tmp_path: Path) -> None:
    with hold_hosts(lab.names, folder=tmp_path / "locks", count=1, lab=lab, note="t::x") as held:
        assert held == ["web1"]
        assert leases(tmp_path) == {"web1": ("alice@laptop", "t::x")}
    assert leases(tmp_path) == {}


def test_hosts_someone_else_holds_are_passed_over(lab: Lab, tmp_path: Path) -> None:
    reserve_as(tmp_path, "web1", "bob@ci")
    with hold_hosts(lab.names, folder=tmp_path / "locks", count=1, lab=lab) as held:
        assert held == ["web2"]
    with (
        pytest.raises(HostsBusy, match="reserved by others"),
        hold_hosts(lab.names, folder=tmp_path / "locks", count=2, lab=lab, timeout=0.2),
    ):
        pytest.fail("held a host bob reserved")


def test_my_own_hand_reservation_is_mine_to_test_on(lab: Lab, tmp_path: Path) -> None:
    reserve_as(tmp_path, "web1", holder_identity())
    with hold_hosts(lab.names, folder=tmp_path / "locks", count=2, lab=lab) as held:
        assert held == ["web1", "web2"]
    # The test's own reservation ended; the one made by hand stays.
    assert leases(tmp_path) == {"web1": ("alice@laptop", "")}


def test_two_holders_in_one_run_never_share(lab: Lab, tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    with (
        hold_hosts(lab.names, folder=locks, count=1, lab=lab) as first,
        hold_hosts(lab.names, folder=locks, count=1, lab=lab) as second,
    ):
        assert first == ["web1"] and second == ["web2"]
        assert set(leases(tmp_path)) == {"web1", "web2"}
