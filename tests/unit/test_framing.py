"""Framing: markers cannot be forged, output survives any split into reads."""

from __future__ import annotations

import subprocess

from hypothesis import given
from hypothesis import strategies as st

from otto import framing


def feed_split(scanner: framing.MarkerScanner, data: bytes, cuts: list[int]) -> bool:
    done = False
    last = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        piece = data[last:cut]
        last = cut
        if not done:
            done = scanner.feed(piece)
        elif piece:
            scanner.rest += piece
    return done


def marker(token: str, seq: int, status: int) -> bytes:
    return framing.marker_prefix(token, seq) + str(status).encode() + framing.US


@given(
    payload=st.binary(max_size=2000),
    after=st.binary(max_size=50),
    status=st.integers(0, 255),
    cuts=st.lists(st.integers(0, 2100), max_size=12),
)
def test_scanner_finds_marker_however_split(
    payload: bytes, after: bytes, status: int, cuts: list[int]
) -> None:
    token = framing.new_token()
    stream = payload + marker(token, 7, status) + after
    cuts = [c for c in cuts if c <= len(stream)]
    scanner = framing.MarkerScanner(token, 7)
    assert feed_split(scanner, stream, cuts)
    assert bytes(scanner.output) == payload
    assert scanner.status == status
    assert scanner.rest == after


@given(payload=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=10))
def test_output_is_exact_after_documented_folding(payload: bytes, cuts: list[int]) -> None:
    token = framing.new_token()
    scanner = framing.MarkerScanner(token, 1)
    assert feed_split(
        scanner, payload + marker(token, 1, 0), [c for c in cuts if c <= len(payload)]
    )
    expected = payload.replace(b"\r\n", b"\n").decode("utf-8", "replace")
    if expected.endswith("\n"):
        expected = expected[:-1]
    assert framing.clean_output(scanner.output) == expected


def test_other_tokens_are_output_and_late_markers_are_dropped() -> None:
    token = framing.new_token()
    forged = marker("0123456789abcdef", 3, 0) + b"text"
    scanner = framing.MarkerScanner(token, 3)
    assert scanner.feed(forged + marker(token, 2, 0) + b" more" + marker(token, 3, 5))
    assert bytes(scanner.output) == forged + b" more"  # the late marker 2 is dropped
    assert scanner.status == 5


def test_prefix_without_status_is_not_a_marker() -> None:
    token = framing.new_token()
    prefix = framing.marker_prefix(token, 1)
    scanner = framing.MarkerScanner(token, 1)
    junk = prefix + b"x" * 40
    assert not scanner.feed(junk)
    assert scanner.feed(marker(token, 1, 0))
    assert bytes(scanner.output) == junk


def test_sent_text_never_holds_marker_bytes() -> None:
    token = framing.new_token()
    for pty in (False, True):
        sent = framing.command_bytes("echo hi", token, 4, pty=pty)
        assert framing.RS not in sent and framing.US not in sent
        assert framing.marker_prefix(token, 4) not in sent
    assert framing.RS not in framing.setup_bytes(token, pty=True)


def test_long_commands_are_sent_in_short_lines() -> None:
    sent = framing.command_bytes("echo " + "x" * 100_000, framing.new_token(), 1)
    assert max(len(line) for line in sent.split(b"\n")) < 1100


def test_nothing_sent_to_a_terminal_holds_a_control_byte() -> None:
    # A terminal in raw mode (stty raw) passes every byte on: none may need its help.
    token = framing.new_token()
    for command in ["printf '\x03\x04'", "x" * 3000 + "\x1b[0m\r", "true"]:
        sent = framing.command_bytes(command, token, 1, pty=True, bash=True)
        assert not any(b < 0x20 and b not in b"\n\t" for b in sent), sent[:200]
    setup = framing.setup_bytes(token, pty=True)
    assert not any(b < 0x20 and b not in b"\n\t" for b in setup)


def test_a_megabyte_of_command_text_is_one_word_in_short_lines() -> None:
    command = "echo '" + "x" * 1_000_000 + "'"
    sent = framing.command_bytes(command, framing.new_token(), 1, pty=True)
    assert sent.count(b"__oc") == 2  # one assignment, read once
    assert max(len(line) for line in sent.split(b"\n")) < 1100


@given(
    payload=st.binary(max_size=5000),
    limit=st.integers(2, 3000),
    cuts=st.lists(st.integers(0, 5000), max_size=8),
)
def test_output_past_the_limit_keeps_head_and_tail(
    payload: bytes, limit: int, cuts: list[int]
) -> None:
    token = framing.new_token()
    scanner = framing.MarkerScanner(token, 1, limit=limit)
    assert feed_split(
        scanner, payload + marker(token, 1, 0), [c for c in cuts if c <= len(payload)]
    )
    if len(payload) <= limit:
        assert scanner.output == payload and scanner.dropped == 0
    else:
        half = limit // 2
        assert scanner.dropped == len(payload) - limit
        assert scanner.output.startswith(payload[:half])
        assert scanner.output.endswith(payload[len(payload) - (limit - half) :])
        assert b"bytes of output dropped" in scanner.output


def test_exit_trap_and_replaced_shell_markers() -> None:
    token = framing.new_token()
    scanner = framing.MarkerScanner(token, 5)
    trap = framing.RS + token.encode() + b":e4:0" + framing.US
    assert not scanner.feed(b"out" + trap)
    assert scanner.exit == (4, 0) and scanner.output == b"out"
    assert framing.exit_marker(b"x" + trap + b"y", token) == (4, 0)
    assert framing.exit_marker(b"nothing", token) is None
    new_shell = framing.marker_prefix(token, 5) + b"0" + framing.US
    assert scanner.feed(new_shell)
    assert scanner.status == 0 and scanner.replaced
    ours = framing.MarkerScanner(token, 6)
    assert ours.feed(framing.marker_prefix(token, 6) + b"3k" + framing.US)
    assert ours.status == 3 and not ours.replaced


def test_own_echo_is_stripped_under_verbose() -> None:
    token = framing.new_token()
    for command in ["true", "echo $HOME"]:
        sent = framing.command_bytes(command, token, 2, bash=True)
        lines = sent.split(b"\n")
        if len(lines) == 2:  # plain: one line, echoed before the output
            echoed = sent + b"out\n"
        else:
            echoed = b"\n".join(lines[:-2]) + b"\nout\n" + lines[-2] + b"\n"
        assert framing.strip_own_echo(echoed, sent) == (b"out\n", True)
        assert framing.strip_own_echo(b"out\n", sent) == (b"out\n", False)


def test_the_terminals_echo_is_stripped_with_either_line_end() -> None:
    # `stty echo` echoes the text as sent; `stty sane` turns onlcr on: \r\n.
    token = framing.new_token()
    for command in ["true", "printf 'a\\nb'", "x" * 2000]:
        sent = framing.command_bytes(command, token, 3, pty=True)
        for newline in (b"\n", b"\r\n"):
            echo = sent.replace(b"\n", newline)
            assert framing.strip_own_echo(echo + b"out\r\n", sent) == (b"out\r\n", True)
            head, _, marker = echo[: -len(newline)].rpartition(newline)
            if head:  # a slow line: the marker line's echo comes after output began
                late = head + newline + b"ou" + marker + newline + b"t\n"
                assert framing.strip_own_echo(late, sent) == (b"out\n", True)


def test_clean_output_rules() -> None:
    assert framing.clean_output(b"a\r\nb\r\n") == "a\nb"
    assert framing.clean_output(b"a\n\n") == "a\n"
    assert framing.clean_output(b"no newline") == "no newline"
    assert framing.clean_output(b"cr\ronly") == "cr\ronly"
    assert framing.clean_output(b"\xff\xe2\x82") == "\ufffd\ufffd"
    assert framing.clean_output(b"\x00nul") == "\x00nul"


def test_plain_commands_skip_eval_only_when_safe() -> None:
    assert framing.is_plain("true")
    assert framing.is_plain("cat /proc/stat")
    assert framing.is_plain("ls -la /tmp/x_y.z")
    for command in [
        "done",
        "if",
        "echo $HOME",
        "echo 'a'",
        "a;b",
        "sleep 1 &",
        "x # c",
        "echo  two-spaces",
        "",
        "a\nb",
        "cat <<EOF",
        "echo *",
    ]:
        assert not framing.is_plain(command), command
    sent = framing.command_bytes("cat /proc/stat", framing.new_token(), 1)
    assert b"eval" not in sent and b"cat /proc/stat" in sent


@given(
    before=st.binary(max_size=300),
    between=st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 700), max_size=8),
)
def test_late_markers_never_reach_the_output_however_split(
    before: bytes, between: bytes, cuts: list[int]
) -> None:
    token = framing.new_token()
    stream = before + marker(token, 4, 130) + between + marker(token, 6, 0) + b"after"
    scanner = framing.MarkerScanner(token, 6)
    assert feed_split(scanner, stream, [c for c in cuts if c <= len(stream)])
    assert scanner.output == before + between
    assert scanner.status == 0
    assert scanner.rest == b"after"


def test_own_trace_is_stripped_only_under_xtrace() -> None:
    traced = (
        "+ __oc='echo a; echo b'\n+ for __oi in 1\n+ eval 'echo a; echo b'\n"
        "++ echo a\na\n++ echo b\nb\n+ printf $'\\036otto:0123456789abcdef:2:0\\037'"
    )
    assert framing.strip_own_trace(traced) == "++ echo a\na\n++ echo b\nb"
    plain = "+ this line is the user's\nlast line"
    assert framing.strip_own_trace(plain) == plain
    assert framing.strip_own_trace("") == ""


def own_marker(token: str, seq: int, status: int) -> bytes:
    """A marker as otto's own shell prints it (status then ``k``)."""
    return framing.marker_prefix(token, seq) + b"%dk" % status + framing.US


@given(
    before=st.binary(max_size=300),
    after=st.binary(max_size=50),
    status=st.integers(0, 255),
    late=st.booleans(),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_own_shells_marker_however_split_and_after_late_ones(
    before: bytes, after: bytes, status: int, late: bool, cuts: list[int]
) -> None:
    token = framing.new_token()
    head = before + (own_marker(token, 6, 130) + b"x" if late else b"")
    stream = head + own_marker(token, 7, status) + after
    scanner = framing.MarkerScanner(token, 7)
    assert feed_split(scanner, stream, [c for c in cuts if c <= len(stream)])
    assert scanner.output == head.replace(own_marker(token, 6, 130), b"")
    assert scanner.status == status
    assert not scanner.replaced
    assert scanner.rest == after


def test_a_marker_whose_number_only_starts_like_ours_is_not_ours() -> None:
    token = framing.new_token()
    scanner = framing.MarkerScanner(token, 1)
    assert not scanner.feed(b"out" + own_marker(token, 12, 0))  # 12 is not 1
    assert scanner.feed(own_marker(token, 1, 3) + b"rest")
    assert scanner.output == b"out" and scanner.status == 3 and scanner.rest == b"rest"


def test_own_marker_without_digits_or_k_is_not_taken_at_once() -> None:
    token = framing.new_token()
    prefix = framing.marker_prefix(token, 2)
    scanner = framing.MarkerScanner(token, 2)
    assert not scanner.feed(prefix + b"k" + framing.US)  # no status digits
    assert scanner.feed(prefix + b"4" + framing.US)  # a new shell's: no k
    assert scanner.status == 4 and scanner.replaced


def test_plain_command_on_bash_is_one_short_line() -> None:
    token = framing.new_token()
    for command in ("true", "cat /proc/stat", "ls -la /tmp/x_y.z"):
        for seq in (1, 98765):
            sent = framing.command_bytes(command, token, seq, bash=True)
            assert sent == f"__os={seq};{command};__om\n".encode()
            assert sent == framing.PLAIN_LINE % (seq, command.encode())
            assert framing.US not in sent and framing.RS not in sent


def test_plain_lines_on_a_real_bash_end_with_the_markers_the_scanner_takes() -> None:
    token = framing.new_token()
    script = (
        framing.setup_bytes(token, pty=False)
        + framing.command_bytes("false", token, 1, bash=True)
        + b"set -x\n"
        + framing.command_bytes("echo hi", token, 2, bash=True)
    )
    out = subprocess.run(
        ["bash", "--noprofile", "--norc"], input=script, capture_output=True, check=False
    ).stdout
    setup = framing.MarkerScanner(token, 0)
    assert setup.feed(out)
    first = framing.MarkerScanner(token, 1)
    assert first.feed(setup.rest)
    assert (first.output, first.status, first.replaced) == (b"", 1, False)  # `$?` of `false`
    second = framing.MarkerScanner(token, 2)
    assert second.feed(first.rest)
    assert second.status == 0
    # Under xtrace only the user's own command is left of the trace.
    assert framing.strip_own_trace(framing.clean_output(second.output)) == "+ echo hi\nhi"
