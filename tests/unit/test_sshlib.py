"""otto.transports.sshlib: asyncssh imported without a compiler run, and with the
post-quantum library found exactly where asyncssh's own search finds it."""

from __future__ import annotations

import ctypes.util
import subprocess
import sys
from pathlib import Path

import pytest

from otto.transports.sshlib import library_may_exist

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's search")


def test_a_library_nowhere_to_be_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    monkeypatch.delenv("LIBRARY_PATH", raising=False)
    assert not library_may_exist("otto-no-such-library")


def test_a_library_in_the_loaders_cache() -> None:
    assert library_may_exist("c")  # libc.so.6, in every loader cache


@pytest.mark.parametrize("variable", ["LD_LIBRARY_PATH", "LIBRARY_PATH"])
def test_a_library_in_a_folder_the_environment_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    (tmp_path / "libotto-made-up.so.7").write_bytes(b"")
    monkeypatch.setenv(variable, f"/nonexistent:{tmp_path}")
    assert library_may_exist("otto-made-up")
    assert not library_may_exist("otto-made")  # the name up to its dot, not a prefix


_IMPORT = """if True:
    import ctypes.util, os, sys
    real = ctypes.util.find_library
    runs = []
    def hook(event, args):
        if event == "subprocess.Popen":
            runs.append(os.path.basename(args[0]))
    sys.addaudithook(hook)
    import otto.transports.sshlib
    from asyncssh.crypto import pq
    assert ctypes.util.find_library is real, "the quick search outlived the import"
    print(" ".join(runs), "|", pq.sntrup_available, pq._oqs_lib)
"""


def test_importing_asyncssh_runs_no_compiler_for_a_library_that_is_absent() -> None:
    if library_may_exist("oqs") or library_may_exist("liboqs"):
        pytest.skip("liboqs may be installed here: its full search runs, as it should")
    proc = subprocess.run(
        [sys.executable, "-c", _IMPORT], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    runs, found = proc.stdout.split("|")
    # Before: find_library ran ldconfig, gcc and ld, for 'oqs' and again for 'liboqs'.
    # A library that is here (nettle, in the loader's cache) is still searched for in full.
    assert set(runs.split()) <= {"ldconfig"}
    # What the full search says too.
    assert ctypes.util.find_library("oqs") is None
    assert ctypes.util.find_library("liboqs") is None
    assert found.split() == ["False", "None"]


def test_a_library_that_is_here_is_found_as_before() -> None:
    code = (
        "import ctypes.util, otto.transports.sshlib as s, asyncssh.crypto.umac as u;"
        "print(u._nettle_lib, ctypes.util.find_library('nettle'))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    seen, full = proc.stdout.split()
    if full == "None":
        pytest.skip("no nettle here")
    assert seen == full
