"""The one redaction every writer goes through."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otto import redact

SECRET = "Sup3r-s3cret"


@pytest.fixture(autouse=True)
def _registered() -> Iterator[None]:
    redact.register(SECRET, "aXa")
    yield
    redact.forget(SECRET, "aXa")


def test_registered_secrets_are_masked() -> None:
    assert redact.redact(f"pw={SECRET}!") == "pw=***!"


def test_short_values_are_not_secrets() -> None:
    redact.register("ab")
    try:
        assert redact.redact("abc ab") == "abc ab"
    finally:
        redact.forget("ab")


def test_url_passwords_are_masked_even_when_holding_at_signs() -> None:
    text = (
        "postgresql://otto:p@ss@db.lab:5432/otto and postgresql://db/otto?user=a&password=hunter2"
    )
    out = redact.redact(text)
    assert "p@ss" not in out and "hunter2" not in out
    assert "postgresql://otto:***@db.lab:5432/otto" in out
    assert "password=***" in out


def test_forget_keeps_a_secret_other_owners_still_hold() -> None:
    redact.register(SECRET)
    redact.forget(SECRET)
    assert redact.redact(SECRET) == "***"


@given(st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=40))
def test_a_secret_split_across_pieces_is_still_masked(sizes: list[int]) -> None:
    text = f"login ok {SECRET} then aXaXa and {SECRET[:5]} alone, {SECRET}{SECRET}"
    stream = redact.StreamRedactor()
    out, pos, turn = "", 0, 0
    while pos < len(text):
        size = sizes[turn % len(sizes)]
        out += stream.feed(text[pos : pos + size])
        pos, turn = pos + size, turn + 1
    out += stream.flush()
    assert SECRET not in out
    assert out == redact.redact(text)


def test_bytes_keep_undecodable_bytes() -> None:
    data = b"\xff" + SECRET.encode() + b"\xfe"
    assert redact.redact_bytes(data) == b"\xff***\xfe"
