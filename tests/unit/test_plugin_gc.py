"""An otto run moves what pytest, its plugins and collection built out of the garbage
collector's sight (``gc.freeze``) and gives it back when the run ends (``gc.unfreeze``),
only when the freeze is its own."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

pytest_plugins = ["pytester"]

SUITE = """
import gc

def test_frozen(host):
    assert gc.get_freeze_count() > 0, "collection's objects are frozen"

def test_plain():
    assert gc.get_freeze_count() > 0
"""


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """This process with nothing frozen (the suite's own run may have frozen its
    collection); frozen again afterwards if it was."""
    before = gc.get_freeze_count()
    gc.unfreeze()
    try:
        yield
    finally:
        if before:
            gc.freeze()


def test_an_otto_run_freezes_after_collection_and_thaws_at_its_end(
    pytester: pytest.Pytester, unfrozen: None
) -> None:
    pytester.makepyfile(SUITE)
    result = pytester.runpytest_inprocess("--otto", "--output", "run", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert gc.get_freeze_count() == 0


def test_a_run_that_uses_no_otto_fixture_freezes_nothing(
    pytester: pytest.Pytester, unfrozen: None
) -> None:
    pytester.makepyfile(
        """
        import gc

        def test_plain():
            assert gc.get_freeze_count() == 0
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_a_process_that_froze_objects_itself_keeps_them_frozen(
    pytester: pytest.Pytester, unfrozen: None
) -> None:
    gc.freeze()
    try:
        pytester.makepyfile(SUITE)
        result = pytester.runpytest_inprocess("--otto", "--output", "run", "-p", "no:cacheprovider")
        result.assert_outcomes(passed=2)
        assert gc.get_freeze_count() > 0  # not thawed by the run
    finally:
        gc.unfreeze()
