"""A skip whose reason is not on tests/skips.py's allowlist fails a strict run."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(ROOT))


def _run(pytester: pytest.Pytester, body: str) -> pytest.RunResult:
    pytester.makepyfile(test_it=body)
    return pytester.runpytest_subprocess("-p", "tests.conftest", "--strict-skips", "-q")


def test_a_missing_program_skip_fails_the_run(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        "import pytest\ndef test_x():\n    pytest.skip('frobnicate is not installed')\n",
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*NOT ALLOWED*frobnicate is not installed*"])


def test_an_allowlisted_skip_passes(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester,
        "import pytest\ndef test_x():\n"
        "    pytest.skip('console host: one stream, one shell (two sessions)')\n",
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*skips: 1, 0 not allowlisted*"])


def test_an_importorskip_at_module_level_fails_the_run(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "import pytest\npytest.importorskip('no_such_module_here')\n")
    assert result.ret != pytest.ExitCode.OK
