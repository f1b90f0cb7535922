"""A dry run contacts nothing: ``--collect-only`` (what ``otto -n test`` runs) starts no
monitor, whatever the ini's ``addopts`` say."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


def test_collect_only_starts_no_monitor(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x(host):\n    pass\n")
    result = pytester.runpytest_inprocess(
        "--collect-only", "--otto-monitor", "--otto-output", "run", "-p", "no:cacheprovider"
    )
    assert result.ret == pytest.ExitCode.OK
    assert not (pytester.path / "run" / "monitor.db").exists()


def test_otto_dry_run_connects_to_no_host_when_the_ini_asks_for_the_monitor(
    tmp_path: Path,
) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        port = server.getsockname()[1]
        lab = tmp_path / "lab.json"
        lab.write_text(
            json.dumps(
                {"hosts": [{"name": "board", "address": "127.0.0.1", "port": port, "user": "u"}]}
            )
        )
        (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = --otto-monitor\n")
        (tmp_path / "test_board.py").write_text("def test_x(host):\n    pass\n")
        env = {k: v for k, v in os.environ.items() if k not in {"OTTO_LAB", "PYTEST_ADDOPTS"}}
        proc = subprocess.run(
            [sys.executable, "-m", "otto", "--lab", str(lab), "-n", "test", "test_board.py"],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "1 test would run" in proc.stdout
        with pytest.raises(BlockingIOError):
            server.accept()
    assert not (tmp_path / "otto-runs").exists()
