"""The run folder's one write path: the lab's secrets, in every form a writer gives them."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pytest

from otto import redact
from otto.lab import Lab
from otto.testing.evidence import (
    BytesRedactor,
    LineFile,
    lab_secrets,
    register_secrets,
    write_text,
)


def test_the_secrets_of_a_lab_include_snmp_keys_and_power_passwords_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PDU_PASSWORD", "pdu-pass-123")
    monkeypatch.setenv("PDU_OUTLET", "outlet-7")  # not a secret by its name
    path = tmp_path / "lab.json"
    hosts = [
        {
            "name": "box",
            "term": "local",
            "become_password": "sudo-pw",
            "power": {"on": "pdu --password ${PDU_PASSWORD} on ${PDU_OUTLET}"},
        },
        {
            "name": "switch",
            "term": "none",
            "address": "192.0.2.1",
            "snmp": {
                "version": "3",
                "user": "mon",
                "auth_key": "auth-key-1",
                "priv_key": "priv-key-2",
            },
        },
    ]
    path.write_text(json.dumps({"hosts": hosts}))
    found = set(lab_secrets(Lab.load(path)))
    assert {"sudo-pw", "pdu-pass-123", "auth-key-1", "priv-key-2"} <= found
    assert "outlet-7" not in found


def test_escaped_forms_are_masked_in_what_is_written(tmp_path: Path) -> None:
    secret = "p&ss<w'rd\""
    values = register_secrets([secret])
    try:
        page = f"<pre>{html.escape(repr(secret))}</pre>{json.dumps({'x': secret})}"
        write_text(tmp_path / "page.html", page)
        lines = LineFile(tmp_path / "lines.jsonl")
        lines.write_line(json.dumps({"longrepr": f"assert {secret!r} == 'x'"}))
        lines.close()
        for name in ("page.html", "lines.jsonl"):
            text = (tmp_path / name).read_text()
            assert "ss<w" not in text and "ss&lt;w" not in text and "&amp;ss" not in text, text
            assert redact.MASK in text
    finally:
        redact.forget(*values)


def test_text_utf8_cannot_hold_is_written_escaped(tmp_path: Path) -> None:
    name = b"report-\xff.txt".decode("utf-8", "surrogateescape")
    write_text(tmp_path / "a.txt", name)
    assert (tmp_path / "a.txt").read_text() == "report-\\udcff.txt"


def test_a_stream_fed_before_any_secret_masks_one_registered_later_across_pieces() -> None:
    secret = "s3cret-registered-late"
    stream = BytesRedactor()
    # No secret yet: the bytes pass as they are (URL passwords masked all the same).
    assert stream.feed(b"plain line\n") == b"plain line\n"
    assert stream.feed(b"db://u:pw@h\n") == b"db://u:***@h\n"
    forms = register_secrets([secret])
    try:
        first = stream.feed(b"echo " + secret[:6].encode())
        rest = stream.feed(secret[6:].encode() + b" done\n") + stream.flush()
    finally:
        redact.forget(*forms)
    text = first + rest
    assert secret.encode() not in text and secret[6:].encode() not in text
    assert text == b"echo *** done\n"


def test_a_stream_holds_nothing_back_without_secrets() -> None:
    stream = BytesRedactor()
    assert stream.feed(b"half a li") == b"half a li"
    assert stream.flush() == b""
