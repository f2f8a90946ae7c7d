"""Hypothesis profiles for the suite, loaded by tests/conftest.py.

ci (the default of `make test`): a handful of examples per property, so the whole suite stays fast;
thorough: HYPOTHESIS_PROFILE=thorough make test, for a long hunt before a release. Neither has a
deadline: a request through the test client takes as long as the machine makes it take.
"""

import os

from hypothesis import settings

settings.register_profile("ci", max_examples=15, deadline=None, print_blob=True)
settings.register_profile("thorough", max_examples=300, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
