"""``BootSpec``: what a host's console shows on the way up, from the lab field ``boot``."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["BOOT_KEYS", "DEFAULT_SHELL_TIMEOUT", "BootSpec", "control_keys"]

DEFAULT_SHELL_TIMEOUT = 300.0
"""Seconds a system may take from its boot to a login prompt, unless the lab says."""

BOOT_KEYS = ("bootloader_prompt", "autoboot", "interrupt", "boot_command", "shell_timeout")

_CARET = re.compile(r"\^([@-_?])")


def control_keys(text: str) -> str:
    """``^C``-style notation in ``text`` as the control characters it names (``^C`` is
    ``\\x03``, ``^?`` DEL); other text is kept."""
    return _CARET.sub(lambda m: chr(ord(m.group(1)) ^ 0x40), text)


@dataclass(frozen=True)
class BootSpec:
    """How a board's bootloader shows itself on the console, and how to get past it.

    Args:
        bootloader_prompt: a regex for the bootloader's prompt (``=> `` for U-Boot).
        autoboot: a regex for its countdown text (``Hit any key to stop autoboot``).
        interrupt: what stops the countdown (Ctrl-C by default; ``^C`` notation is read
            as control characters).
        boot_command: what the bootloader boots with.
        shell_timeout: seconds from the boot to a login prompt.
    """

    bootloader_prompt: str | None = None
    autoboot: str | None = None
    interrupt: str = "\x03"
    boot_command: str = "boot"
    shell_timeout: float = DEFAULT_SHELL_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("bootloader_prompt", "autoboot"):
            value = getattr(self, name)
            if value is not None:
                try:
                    re.compile(value)
                except re.error as exc:
                    raise ValueError(f"boot {name!r}: not a valid regex: {exc}") from None
        if not self.interrupt:
            raise ValueError("boot 'interrupt' must not be empty (an empty line is never sent)")
        if not self.boot_command.strip() or "\n" in self.boot_command:
            raise ValueError("boot 'boot_command' must be one non-empty line")
        if self.shell_timeout <= 0:
            raise ValueError("boot 'shell_timeout' must be a positive number of seconds")

    @classmethod
    def from_lab(cls, given: Mapping[str, object]) -> BootSpec:
        """The spec from the lab field's object (already checked against the lab schema)."""
        unknown = [k for k in given if k not in BOOT_KEYS]
        if unknown:
            raise ValueError(f"boot: unknown key(s) {', '.join(map(repr, unknown))}")
        interrupt = given.get("interrupt")
        return cls(
            bootloader_prompt=_text(given.get("bootloader_prompt")),
            autoboot=_text(given.get("autoboot")),
            interrupt=control_keys(interrupt) if isinstance(interrupt, str) else "\x03",
            boot_command=_text(given.get("boot_command")) or "boot",
            shell_timeout=float(_number(given.get("shell_timeout"), DEFAULT_SHELL_TIMEOUT)),
        )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: object, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return default
