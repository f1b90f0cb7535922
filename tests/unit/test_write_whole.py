"""Files otto writes for the user (exports, the lab schema) are whole or untouched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from otto.transfer import write_whole


def test_writes_the_text(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    write_whole(target, '{"a": 1}')
    assert target.read_text() == '{"a": 1}'
    write_whole(target, "second")
    assert target.read_text() == "second"
    assert os.listdir(tmp_path) == ["out.json"]


def test_a_failed_write_leaves_the_old_file_and_no_part(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    target.write_text("the old export")
    with pytest.raises(UnicodeEncodeError):
        write_whole(target, "half \udcff written")  # cannot be encoded: fails mid-way
    assert target.read_text() == "the old export"
    assert os.listdir(tmp_path) == ["out.json"]


def test_a_folder_that_cannot_be_written_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        write_whole(tmp_path / "missing" / "out.json", "x")
