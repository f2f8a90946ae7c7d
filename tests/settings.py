"""Settings for the test suite: the real settings, with a throwaway key and a fast hasher.

DATABASE_URL still decides the database, so `make test` runs on PostgreSQL when it points there.
"""

import os
import tempfile

os.environ.setdefault("DJANGO_SECRET_KEY", "test-suite-only-secret-key-not-for-production")
os.environ.setdefault("PRM_VAR_DIR", os.path.join(tempfile.gettempdir(), "prm-test-var"))
# The test client and the live server speak plain HTTP; tests/test_hardening.py checks the redirect.
os.environ.setdefault("DJANGO_SECURE_SSL_REDIRECT", "0")

from prm.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
CELERY_TASK_ALWAYS_EAGER = True
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES["staticfiles"]["BACKEND"] = "django.contrib.staticfiles.storage.StaticFilesStorage"  # noqa: F405
# One cache per test process, emptied before every test (tests/conftest.py): rate-limit counters
# and allauth's log-in limits never leak from one test into the next.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
