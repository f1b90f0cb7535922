"""The lab's login accounts: a fast one, one whose shell start-up is slow, one
whose login profile prints text that looks like a refused login, one whose
profile prints lines that end like prompts, and one whose ~/.bashrc sets
``set -e`` and ``set -x``.

The accounts are system-wide and shared by every lab on the machine (they are
created once and kept), so their password is fixed.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import subprocess
from pathlib import Path

from .netns import LabError

LAB_USER = "ottotest"
SLOW_USER = "ottoslow"
DENIED_PROFILE_USER = "ottodenied"
"""Logs in fine, but its profile prints text that looks like a refused login."""
MOTD_USER = "ottomotd"
"""Logs in fine, but its profile prints lines that end like login and password prompts."""
ERREXIT_USER = "ottoerrexit"
"""Its ~/.bashrc turns on ``set -e`` and ``set -x`` for every shell, interactive or not."""
LAB_PASSWORD = "otto-Lab-pw1"
SLOW_STARTUP_SECONDS = 1

_SHELL = "/bin/bash"

# A small, stock-style .bashrc: nothing here may take time at start-up.
_BASHRC = r"""# ~/.bashrc written by otto's test lab.
case $- in
    *i*) ;;
      *) return;;
esac
HISTCONTROL=ignoreboth
HISTSIZE=1000
HISTFILESIZE=2000
shopt -s histappend checkwinsize
PS1='\u@\h:\w\$ '
alias ls='ls --color=auto'
"""

# bash runs ~/.bashrc for every ssh session (exec channels too) and reads it
# from ~/.profile in login shells, so a sleep at the top slows them all.
_SLOW_BASHRC = f"sleep {SLOW_STARTUP_SECONDS}\n" + _BASHRC

_PROFILE = """# ~/.profile written by otto's test lab.
if [ -n "$BASH_VERSION" ] && [ -f "$HOME/.bashrc" ]; then
    . "$HOME/.bashrc"
fi
"""


# A login profile that says what a refusing server would say, then goes on.
_DENIED_PROFILE = """# ~/.profile written by otto's test lab.
echo "Access denied: this is only the profile talking"
echo "Permission denied (but the login worked)"
"""


# A message of the day whose lines end as prompts do (each line ends, though).
_MOTD_PROFILE = (
    _PROFILE
    + """echo "Last login:"
echo "Your password expires in 3 days. To change your password:"
echo "User name:"
echo "Username:"
"""
)

# Before the interactive-only part: every shell bash starts for this user gets these.
_ERREXIT_BASHRC = "set -e\nset -x\n" + _BASHRC


def _write_owned(path: Path, text: str, uid: int, gid: int) -> None:
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.chown(tmp, uid, gid)
    tmp.chmod(0o644)
    tmp.replace(path)


def _ensure_account(name: str, bashrc: str, profile: str = _PROFILE) -> None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--create-home", "--user-group", "--shell", _SHELL, name],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(name)
    if entry.pw_shell != _SHELL:
        subprocess.run(["usermod", "--shell", _SHELL, name], check=True, capture_output=True)
    home = Path(entry.pw_dir)
    if not home.is_dir():
        home.mkdir(mode=0o755, parents=True)
        os.chown(home, entry.pw_uid, entry.pw_gid)
    _write_owned(home / ".bashrc", bashrc, entry.pw_uid, entry.pw_gid)
    _write_owned(home / ".profile", profile, entry.pw_uid, entry.pw_gid)
    # A .bash_profile would shadow .profile; the lab's start-up must be the one above.
    (home / ".bash_profile").unlink(missing_ok=True)


def ensure_users(lock_dir: Path) -> None:
    """Create or repair both accounts and set their password (needs root)."""
    lock_dir.mkdir(parents=True, exist_ok=True)
    with open(lock_dir / "users.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _ensure_account(LAB_USER, _BASHRC)
            _ensure_account(SLOW_USER, _SLOW_BASHRC)
            _ensure_account(DENIED_PROFILE_USER, _BASHRC, _DENIED_PROFILE)
            _ensure_account(MOTD_USER, _BASHRC, _MOTD_PROFILE)
            _ensure_account(ERREXIT_USER, _ERREXIT_BASHRC)
            subprocess.run(
                ["chpasswd"],
                input="".join(
                    f"{user}:{LAB_PASSWORD}\n"
                    for user in (LAB_USER, SLOW_USER, DENIED_PROFILE_USER, MOTD_USER, ERREXIT_USER)
                ),
                text=True,
                check=True,
                capture_output=True,
            )
        except subprocess.CalledProcessError as exc:
            raise LabError(f"{' '.join(exc.cmd)} failed: {exc.stderr}") from exc
