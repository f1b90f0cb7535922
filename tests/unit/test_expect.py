"""The expect buffer: earliest match wins, splits never matter, memory is bounded."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otto.expect import ExpectBuffer

# Text a program can print: any character UTF-8 can carry (no lone surrogates).
PRINTABLE = st.characters(blacklist_categories=["Cs"])


def feed_in_pieces(buf: ExpectBuffer, data: bytes, cuts: list[int]) -> None:
    last = 0
    for cut in [*sorted(set(c for c in cuts if c <= len(data))), len(data)]:
        buf.feed(data[last:cut])
        last = cut


@given(
    before=st.text(
        alphabet=st.characters(blacklist_characters="#\r", blacklist_categories=["Cs"]),
        max_size=300,
    ),
    after=st.text(alphabet=PRINTABLE, max_size=50),
    cuts=st.lists(st.integers(0, 1200), max_size=15),
)
def test_match_returns_text_up_to_match_however_split(
    before: str, after: str, cuts: list[int]
) -> None:
    data = (before + "#PROMPT> " + after).encode()
    buf = ExpectBuffer(window=64)
    pattern = re.compile(r"#PROMPT> ")
    found = None
    last = 0
    for cut in [*sorted(set(c for c in cuts if c <= len(data))), len(data)]:
        buf.feed(data[last:cut])
        last = cut
        if found is None:
            found = buf.search(pattern)
    expected = (before + "#PROMPT> ").replace("\r\n", "\n")
    assert found == expected


@given(
    text=st.text(alphabet=PRINTABLE, max_size=500),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
)
def test_decoding_is_independent_of_splits(text: str, cuts: list[int]) -> None:
    data = text.encode()
    buf = ExpectBuffer()
    feed_in_pieces(buf, data, cuts)
    assert buf.take() == text.replace("\r\n", "\n")


def test_crlf_split_across_reads_is_folded() -> None:
    buf = ExpectBuffer()
    buf.feed(b"line\r")
    buf.feed(b"\nnext")
    assert buf.take() == "line\nnext"


def test_earliest_match_wins_and_consumes() -> None:
    buf = ExpectBuffer()
    buf.feed(b"a1 b2 a3")
    assert buf.search(re.compile(r"a\d")) == "a1"
    assert buf.search(re.compile(r"a\d")) == " b2 a3"
    assert buf.search(re.compile(r"a\d")) is None


def test_anchor_does_not_match_at_window_start() -> None:
    buf = ExpectBuffer(window=4)
    pattern = re.compile(r"^start")
    buf.feed(b"xxxxxxxxxxxxxxx")
    assert buf.search(pattern) is None
    buf.feed(b"start")
    assert buf.search(pattern) is None


def test_invalid_utf8_is_replaced() -> None:
    buf = ExpectBuffer()
    buf.feed(b"\xff ok \xe2\x82")
    buf.feed(b"\xac end")
    assert buf.take() == "\ufffd ok \u20ac end"


def test_buffer_is_bounded_while_nothing_matches() -> None:
    buf = ExpectBuffer(max_chars=10_000, window=100)
    for _ in range(1000):
        buf.feed(b"y\n" * 500)
        assert buf.search(re.compile("never")) is None
    assert len(buf) <= 10_000
    assert buf.dropped == 1000 * 1000 - len(buf)


def test_already_searched_text_is_not_searched_again() -> None:
    """Each feed searches at most the new text plus the window."""

    class CountingPattern:
        def __init__(self) -> None:
            self.inner = re.compile("never")
            self.searched = 0

        def search(self, string: str, pos: int = 0) -> re.Match[str] | None:
            self.searched += len(string) - pos
            return self.inner.search(string, pos)

    buf = ExpectBuffer(window=16)
    pattern = CountingPattern()
    for _ in range(100):
        buf.feed(b"x" * 1000)
        buf.search(pattern)  # type: ignore[arg-type]
    assert pattern.searched <= 100 * (1000 + 16)


@given(
    parts=st.lists(
        st.one_of(
            st.text(
                alphabet=st.characters(blacklist_characters="#$\r", blacklist_categories=["Cs"]),
                max_size=40,
            ),
            st.sampled_from(["#P> ", "$E1\n", "$E7\n"]),
        ),
        max_size=30,
    ),
    cuts=st.lists(st.integers(0, 1500), max_size=20),
)
def test_several_patterns_searched_after_each_read_find_what_the_whole_text_holds(
    parts: list[str], cuts: list[int]
) -> None:
    # As an App searches: after every read, its prompt and its end marker at once.
    text = "".join(parts)
    patterns = (re.compile(r"#P> "), re.compile(r"\$E(\d)\n"))
    expected = []
    rest = text
    while True:
        found = [(m.start(), i, m) for i, p in enumerate(patterns) if (m := p.search(rest))]
        if not found:
            break
        _, index, match = min(found, key=lambda f: (f[0], f[1]))
        expected.append((index, rest[: match.end()], match.group()))
        rest = rest[match.end() :]
    buf = ExpectBuffer(window=16)
    got = []
    data = text.encode()
    last = 0
    for cut in [*sorted(set(c for c in cuts if c <= len(data))), len(data)]:
        buf.feed(data[last:cut])
        last = cut
        while (match := buf.search_any(patterns)) is not None:
            got.append((match.index, match.text, match.matched))
    assert got == expected
    assert buf.take() == rest


def test_window_must_fit_the_bound() -> None:
    with pytest.raises(ValueError, match="window"):
        ExpectBuffer(max_chars=10, window=100)
