"""Hypothesis profiles for the suite, loaded by tests/conftest.py.

ci (the default of `make test`): a handful of examples per property, so the whole suite stays fast,
and the same examples on every run (derandomize), so that CI's verdict depends on the change, not on
the draw: a random draw once failed CI on a bug older than the change (sNaN in a line's value);
thorough: HYPOTHESIS_PROFILE=thorough make test, 300 random examples each, for a long hunt before a
release — what it finds is pinned with @example. Neither has a deadline: a request through the test
client takes as long as the machine makes it take.
"""

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=15, deadline=None, print_blob=True, derandomize=True)
settings.register_profile("thorough", max_examples=300, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
