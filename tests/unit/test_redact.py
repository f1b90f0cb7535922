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


URL_TEXT = (
    "connecting to postgresql://otto:hunter2@db.lab:5432/otto ok\n"
    "GET https://api/v1?user=a&password=tiger77&x=1 and ;token=t0k3nXYZ#frag then "
    "ftp://me:p@ss@files/ and an ending mysql://root:zebra99@"
)
URL_SECRETS = ("hunter2", "tiger77", "t0k3nXYZ", "p@ss", "zebra99")


def _pieces(text: str, sizes: list[int]) -> Iterator[str]:
    pos, turn = 0, 0
    while pos < len(text):
        size = sizes[turn % len(sizes)]
        yield text[pos : pos + size]
        pos, turn = pos + size, turn + 1


@given(st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=40))
def test_url_and_query_passwords_split_across_pieces_are_still_masked(sizes: list[int]) -> None:
    stream = redact.StreamRedactor()
    out = "".join(stream.feed(piece) for piece in _pieces(URL_TEXT, sizes)) + stream.flush()
    assert not [word for word in URL_SECRETS if word in out], out
    assert out == redact.redact(URL_TEXT)


@pytest.mark.parametrize("registered", [True, False], ids=["secrets", "no-secrets"])
@given(sizes=st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=40))
def test_a_transcript_stream_masks_url_passwords_split_anywhere(
    registered: bool, sizes: list[int]
) -> None:
    from otto.testing.evidence import BytesRedactor

    if not registered:
        redact.forget(SECRET, "aXa")
    try:
        stream = BytesRedactor()
        data = URL_TEXT.encode()
        pieces = [piece.encode() for piece in _pieces(URL_TEXT, sizes)]
        out = b"".join(stream.feed(piece) for piece in pieces) + stream.flush()
        assert not [w for w in URL_SECRETS if w.encode() in out], out
        assert out == redact.redact_bytes(data)
    finally:
        if not registered:
            redact.register(SECRET, "aXa")


def test_a_url_at_the_end_of_a_piece_is_held_only_until_it_ends() -> None:
    stream = redact.StreamRedactor()
    # (Each piece ends a line: no secret another test registered begins with one.)
    assert stream.feed("see\nhttp://host") == "see\n"
    assert stream.feed("/path done\n") == "http://host/path done\n"
    assert stream.feed("plain words\n") == "plain words\n"
