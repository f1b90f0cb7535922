"""The lab's sudo accounts and its sudoers drop-in.

Two accounts log in like the lab user and may run anything as anyone through
sudo: ``ottosudo`` after typing its password, ``ottonopw`` without one
(``NOPASSWD``). The accounts are kept, like the other lab users; the sudoers
drop-in is written by every lab that starts and removed by the last one to
close (each lab's state file in the shared state directory says it is running).
"""

from __future__ import annotations

import fcntl
import subprocess
from pathlib import Path

from .netns import LabError
from .users import _BASHRC, LAB_PASSWORD, _ensure_account

SUDO_USER = "ottosudo"
"""May sudo to anyone after typing its password (``LAB_PASSWORD``)."""
NOPASSWD_USER = "ottonopw"
"""May sudo to anyone without a password."""
SUDOERS_DROPIN = Path("/etc/sudoers.d/otto-lab")

_SUDOERS = f"""# Written by otto's test lab (tests/lab/privilege.py); the last lab removes it.
{SUDO_USER} ALL=(ALL:ALL) ALL
{NOPASSWD_USER} ALL=(ALL:ALL) NOPASSWD: ALL
"""


def _write_sudoers() -> None:
    if SUDOERS_DROPIN.exists() and SUDOERS_DROPIN.read_text() == _SUDOERS:
        return
    tmp = SUDOERS_DROPIN.with_name(".otto-lab.tmp")  # sudo skips names with a dot
    tmp.write_text(_SUDOERS)
    tmp.chmod(0o440)
    check = subprocess.run(
        ["visudo", "-cqf", str(tmp)], check=False, capture_output=True, text=True
    )
    if check.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise LabError(f"visudo rejects the lab's sudoers drop-in: {check.stdout}{check.stderr}")
    tmp.replace(SUDOERS_DROPIN)


def ensure_sudo_users(lock_dir: Path) -> None:
    """Create or repair both sudo accounts and write the sudoers drop-in (needs root)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "users.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            for user in (SUDO_USER, NOPASSWD_USER):
                _ensure_account(user, _BASHRC)
            subprocess.run(
                ["chpasswd"],
                input="".join(f"{u}:{LAB_PASSWORD}\n" for u in (SUDO_USER, NOPASSWD_USER)),
                text=True,
                check=True,
                capture_output=True,
            )
        except subprocess.CalledProcessError as exc:
            raise LabError(f"{' '.join(exc.cmd)} failed: {exc.stderr}") from exc
        _write_sudoers()


def release_sudoers(lock_dir: Path, own_state: Path) -> None:
    """Remove the drop-in unless another lab's state file says it still runs."""
    with open(lock_dir / "users.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        others = [p for p in lock_dir.glob("slot*.json") if p != own_state]
        if not others:
            SUDOERS_DROPIN.unlink(missing_ok=True)
