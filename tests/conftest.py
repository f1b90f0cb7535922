"""Settings for the whole suite."""

from __future__ import annotations

import os

from hypothesis import settings

# No per-example deadline: a shared 2-core machine stalls now and then, and a
# stall is not a failure of the code under test. In CI the examples are
# derived from the test (derandomized), so a run there is repeatable.
settings.register_profile("otto", deadline=None, derandomize=bool(os.environ.get("CI")))
settings.load_profile("otto")
