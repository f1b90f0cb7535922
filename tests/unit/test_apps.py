"""The pure rules of otto.hosts.apps: where a prompt is, what the echo is, what an answer is."""

from __future__ import annotations

import re

import pytest

from otto.expect import ExpectBuffer
from otto.hosts.apps import anchored_prompt, answer_of, echo_lines


@pytest.mark.parametrize(
    ("text", "start"),
    [
        (">>> ", 0),
        ("out\n>>> ", 4),
        ("out\r>>> ", 4),
        ("\x1b[?2004h>>> ", 0),
        (">>> \x1b[K", 0),
        ("x>>> ", 1),  # no newline before it: the program waits there all the same
        ("a >>> b\n>>> ", 8),  # prompt-like text that more output follows is output
        (">>> x\n>>> ", 6),
        ("=> \n=> ", 4),  # two prompts at once: the last is the one waiting
    ],
)
def test_prompt_ends_the_output(text: str, start: int) -> None:
    prompt = "=> " if text.startswith("=") else ">>> "
    match = anchored_prompt(prompt).search(text)
    assert match is not None
    assert match.start() == start
    assert match.end() == len(text)


def test_prompt_like_text_followed_by_more_is_not_a_prompt() -> None:
    assert anchored_prompt(">>> ").search("a >>> b") is None
    assert anchored_prompt(">>> ").search(">>> x\n") is None
    assert anchored_prompt("=> ").search("bootcmd=> x\n") is None


def test_prompt_keeps_its_flags_and_alternatives() -> None:
    assert anchored_prompt("(?i)router# ").search("ROUTER# ") is not None
    compiled = re.compile("switch> ", re.IGNORECASE)
    assert anchored_prompt(compiled).search("x\nSWITCH> ") is not None
    either = anchored_prompt(r">>> |\.\.\. ")
    found = either.search("x\n... ")
    assert found is not None
    assert found.group() == "... "


@pytest.mark.parametrize(
    ("body", "lines"),
    [
        ("", 0),
        ("\n", 1),
        ("\r\n\r\n", 2),
        ("\x1b[?2004l\r\n", 1),
        ("% Incomplete command\n", 0),
        ("\nmessage\n", 1),
    ],
)
def test_echo_lines_counts_the_blank_lines_an_empty_line_brought(body: str, lines: int) -> None:
    assert echo_lines(body) == lines


@pytest.mark.parametrize(
    ("body", "echoes", "answer"),
    [
        ("1\n", 0, "1"),
        ("1\n", 1, ""),
        ("version\nU-Boot\n\nmore\n", 1, "U-Boot\n\nmore"),
        ("echo -n x\nx", 1, "x"),
        ("a\r\r\nb\r\n", 0, "a\nb"),
        ("a\n\n", 0, "a\n"),
        ("x\r", 0, "x"),
        ("no line end", 1, "no line end"),
        ("\x1b[31mred\x1b[0m\n", 0, "\x1b[31mred\x1b[0m"),
    ],
)
def test_answer_drops_the_echo_and_one_line_end(body: str, echoes: int, answer: str) -> None:
    assert answer_of(body, echoes) == answer


def test_a_match_says_how_much_of_its_start_the_buffer_dropped() -> None:
    buffer = ExpectBuffer(max_chars=16, window=4)
    prompt = anchored_prompt("=> ")
    buffer.feed(b"0123456789")
    buffer.feed(b"abcdefghij=> ")
    found = buffer.search_any((prompt,))
    assert found is not None
    assert (found.dropped, found.text) == (7, "789abcdefghij=> ")
    buffer.feed(b"next=> ")
    again = buffer.search_any((prompt,))
    assert again is not None and (again.dropped, again.text) == (0, "next=> ")
