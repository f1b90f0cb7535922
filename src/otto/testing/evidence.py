"""The one way files of a run folder are written: redacted, and whatever the text holds.

Every writer of the run folder goes through here: the records (``records*.jsonl``),
``report.html``, ``junit.xml`` and ``otto.log``; each test's transcripts
(:mod:`otto.testing.transcript`, :mod:`otto.testing.sessionlog`) buffer their bytes
in memory, redacted the same way (:class:`BytesRedactor`, :func:`otto.redact.redact`)
before they are buffered. Text passes through :mod:`otto.redact` on its way to the
file, so a secret the lab registered (:func:`register_lab`) never reaches the folder, whether it is
in a command's output, an assertion's repr, a failure message or a log line.

Secrets are registered with the forms they take once a writer has escaped them
(HTML, XML, JSON, a Python repr, shell quoting), since the mask is applied to
the text that is written, after escaping.

Text that cannot be encoded (a lone surrogate from a non-UTF-8 file name) is
written with backslash escapes instead of failing the run.
"""

from __future__ import annotations

import html
import json
import logging
import os
import re
import shlex
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TextIO

from otto import redact
from otto.redact import MIN_LENGTH

if TYPE_CHECKING:
    from otto.lab import Lab

__all__ = [
    "ENCODING_ERRORS",
    "RUNS_FOLDER",
    "BytesRedactor",
    "LineFile",
    "LogHandler",
    "lab_secrets",
    "new_run_dir",
    "register_lab",
    "register_secrets",
    "write_text",
]

RUNS_FOLDER = "otto-runs"
"""Where run folders go by default, in the folder pytest or ``otto test`` started in."""

ENCODING_ERRORS = "backslashreplace"
"""What a character UTF-8 cannot hold becomes (``\\udcff``): never an error."""


def _xml_attribute(text: str) -> str:
    return (
        html.escape(text, quote=False)
        .replace('"', "&quot;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
        .replace("\t", "&#09;")
    )


_ESCAPES: tuple[Callable[[str], str], ...] = (
    html.escape,
    lambda text: html.escape(text, quote=False),
    _xml_attribute,
    lambda text: json.dumps(text)[1:-1],
    lambda text: json.dumps(text, ensure_ascii=False)[1:-1],
    lambda text: repr(text)[1:-1],
    lambda text: repr(text.encode("utf-8", "surrogateescape"))[2:-1],
    shlex.quote,
    lambda text: text.replace("'", "'\\''"),  # inside a single-quoted shell word
)


def _forms(secret: str) -> set[str]:
    """``secret`` as it reads once writers have escaped it, up to twice (an assertion's
    repr of it in the HTML report, or in a JSON record)."""
    forms = {secret}
    for _ in range(2):
        forms |= {escape(form) for form in forms for escape in _ESCAPES}
    return forms


def register_secrets(secrets: Iterable[str | None]) -> list[str]:
    """Register ``secrets`` and their escaped forms with :mod:`otto.redact`; return what was
    registered (give it to :func:`otto.redact.forget` to drop them again)."""
    values = sorted({form for secret in secrets if secret for form in _forms(secret)})
    if values:
        redact.register(*values)
    return values


_SECRET_NAME = re.compile(r"PASS|SECRET|TOKEN|KEY|COMMUNITY|CREDENTIAL", re.IGNORECASE)
"""Environment variables whose names say they hold a secret."""


def lab_secrets(lab: Lab, environ: Mapping[str, str] | None = None) -> list[str]:
    """Every secret a lab holds: passwords, ``become_password``, SNMP communities and keys,
    and the values of secret-named environment variables (``$PDU_PASSWORD``) that its
    power commands hold."""
    env = os.environ if environ is None else environ
    from_env = [v for k, v in env.items() if _SECRET_NAME.search(k) and len(v) >= MIN_LENGTH]
    found: list[str] = []
    for spec in lab.specs:
        found += [s for s in (spec.password, spec.become_password) if s]
        snmp = spec.snmp
        if snmp is not None:
            keys = (snmp.community, snmp.auth_key, snmp.priv_key)
            found += [s for s in keys if isinstance(s, str) and s]
        for _, command in spec.power or ():
            found += [value for value in from_env if value in str(command)]
    return found


def register_lab(lab: Lab) -> list[str]:
    """Register the lab's secrets (:func:`lab_secrets`) for every writer of the run folder."""
    return register_secrets(lab_secrets(lab))


def new_run_dir(base: Path, now: float | None = None) -> Path:
    """A run folder's path that does not exist yet: ``base/otto-runs/<UTC time>``
    (``2024-06-01T120000Z``), with ``-2``, ``-3``... for runs started in the same second.
    The one format of both ``pytest`` and ``otto test``."""
    stamp = time.strftime("%Y-%m-%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    path = Path(base, RUNS_FOLDER, stamp)
    n = 1
    while path.exists():
        n += 1
        path = Path(base, RUNS_FOLDER, f"{stamp}-{n}")
    return path


def write_text(path: Path, text: str) -> Path:
    """Write ``text``, redacted, to ``path`` whole: a temporary file renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    with partial.open("w", encoding="utf-8", errors=ENCODING_ERRORS) as f:
        f.write(redact.redact(text))
    partial.replace(path)
    return path


class LineFile:
    """A file of the run folder written piece by piece (the records): each piece
    redacted, written at once (line-buffered), so a reader, or a run killed mid-way,
    finds whole lines."""

    def __init__(self, path: Path, *, mode: Literal["a", "w"] = "a") -> None:
        self.path = Path(path)
        self._file: TextIO = self.path.open(
            mode, encoding="utf-8", errors=ENCODING_ERRORS, buffering=1
        )

    def write(self, text: str) -> None:
        """Write ``text`` (whole lines), redacted."""
        self._file.write(redact.redact(text))

    def write_line(self, line: str) -> bool:
        """Write ``line``, redacted, and a newline; True when nothing was redacted."""
        line = line.rstrip("\n")
        shown = redact.redact(line)
        self._file.write(shown + "\n")
        return shown == line

    def close(self) -> None:
        self._file.close()


class LogHandler(logging.FileHandler):
    """``otto.log``: a log file whose every record is redacted."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8", errors=ENCODING_ERRORS)

    def format(self, record: logging.LogRecord) -> str:
        return redact.redact(super().format(record))


class BytesRedactor:
    """:class:`otto.redact.StreamRedactor` for bytes: a secret split between two pieces is
    masked all the same (a transcript's stream, cut at its longest line), and so is a URL
    or query password split between them."""

    def __init__(self) -> None:
        self._text = redact.StreamRedactor()

    def feed(self, data: bytes) -> bytes:
        text = self._text.feed(data.decode("utf-8", "surrogateescape"))
        return text.encode("utf-8", "surrogateescape")

    def flush(self) -> bytes:
        return self._text.flush().encode("utf-8", "surrogateescape")

    def finish(self, data: bytes) -> bytes:
        """``feed(data) + flush()``: the stream's last piece."""
        return self.feed(data) + self.flush()
