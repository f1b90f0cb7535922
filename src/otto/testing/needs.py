"""Tests that fit the lab: ``@pytest.mark.needs("usb", ...)`` and the lab hosts' ``features``.

A test marked ``needs`` runs only on lab hosts that list every feature it names
(its ``host``/``hosts`` and a ``hosts`` mark's pool are narrowed to them, see
``otto.testing.marks``). When no host the test may use has them, the test is
skipped at collection's end with the reason ``no lab host has feature usb``
(``... has features usb, wifi``), not failed; with ``--strict-lab`` the test is
an error instead (its setup fails with that reason), so the run's verdict fails.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pytest

from otto.lab import Lab
from otto.lab.schema import FEATURE_PATTERN

__all__ = [
    "NEEDS_MARK_HELP",
    "LabFit",
    "Scope",
    "lacking",
    "needed",
    "unfit",
    "with_features",
]

NEEDS_MARK_HELP = (
    "needs(*features): the test runs only on lab hosts that list every feature (otto: "
    "the host field 'features'); skipped when no lab host has them (--strict-lab: an error)"
)

_FEATURE = re.compile(FEATURE_PATTERN)
_UNFIT = pytest.StashKey[str]()
_STRICT = pytest.StashKey[bool]()


def needed(node: pytest.Item | pytest.Collector) -> tuple[str, ...]:
    """The features a test's ``needs`` marks name (its own, its class's, its module's), in
    order, each once.

    Raises:
        pytest.UsageError: a mark names something that is not a feature name.
    """
    found: dict[str, None] = {}
    for mark in node.iter_markers("needs"):
        for feature in mark.args:
            if not isinstance(feature, str) or not _FEATURE.search(feature):
                raise pytest.UsageError(
                    f"{node.nodeid}: @pytest.mark.needs takes feature names (letters, digits, "
                    f"'_', '.', '+', '-', ':'), not {feature!r}"
                )
            found[feature] = None
        if mark.kwargs:
            raise pytest.UsageError(
                f"{node.nodeid}: @pytest.mark.needs takes feature names only, "
                f"not {', '.join(mark.kwargs)}="
            )
    return tuple(found)


def with_features(lab: Lab, names: Sequence[str], features: Sequence[str]) -> list[str]:
    """Those of ``names`` whose lab host lists every one of ``features``."""
    if not features:
        return list(names)
    wanted = set(features)
    return [n for n in names if n in lab and wanted <= set(lab.spec(n).features)]


def lacking(features: Sequence[str], among: str = "", *, found: Sequence[str] = ()) -> str:
    """The skip reason: ``no lab host has feature usb`` (``features usb, wifi``), with
    ``among`` (what else narrowed the hosts) in brackets; when ``found`` (hosts that have
    them, but fewer than the test needs at once), ``only 1 lab host has feature usb``."""
    word = "feature" if len(features) == 1 else "features"
    if found:
        has = "has" if len(found) == 1 else "have"
        which = f"only {len(found)} lab host{'s' if len(found) != 1 else ''} {has}"
        reason = f"{which} {word} {', '.join(features)} ({', '.join(found)})"
    else:
        reason = f"no lab host has {word} {', '.join(features)}"
    return f"{reason} ({among})" if among else reason


def unfit(item: pytest.Item) -> str | None:
    """Why the test cannot run on this lab (the skip reason), or None when it fits."""
    return item.stash.get(_UNFIT, None)


Scope = Callable[[Lab, pytest.Item], "tuple[list[str], int, str] | None"]
"""``otto.testing.marks.mark_scope``: the hosts a test may use before features, how many
it needs at once, what narrowed them; None when its ``hosts`` mark matches nothing."""


class LabFit:
    """The hooks that skip (or, with ``--strict-lab``, fail) the tests the lab cannot run.

    ``lab()`` is the plugin's lab; ``scope`` says which hosts a test may use (it is
    the one the plugin picks hosts with, so that both agree).
    """

    def __init__(self, config: pytest.Config, lab: Callable[[], Lab], scope: Scope) -> None:
        self.lab = lab
        self.scope = scope
        self.strict = bool(getattr(config.option, "otto_strict_lab", False))

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        lab: Lab | None = None
        for item in items:
            # A mark's name is one of the item's keywords: the cheap look first (a folder
            # named "needs" is one too; then the marks say there are none).
            if "needs" not in item.keywords:
                continue
            features = needed(item)
            if not features:
                continue
            if lab is None:
                lab = self.lab()
            given = self.scope(lab, item)
            if given is None:  # the hosts mark matches nothing: its own error says so
                continue
            names, count, among = given
            found = with_features(lab, names, features)
            if len(found) >= count:
                continue
            reason = lacking(features, among, found=found)
            item.stash[_UNFIT] = reason
            if self.strict:
                item.stash[_STRICT] = True
            else:
                item.add_marker(pytest.mark.skip(reason=reason))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if item.stash.get(_STRICT, False):
            pytest.fail(f"--strict-lab: {item.stash[_UNFIT]}", pytrace=False)
