"""Settings read from the environment: the secret key guard and EMAIL_URL."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from prm.settings import _email_settings

REPO = Path(__file__).resolve().parent.parent
SETUP = "import django; import os; os.environ['DJANGO_SETTINGS_MODULE']='prm.settings'; django.setup()"


def run_setup(tmp_path, **env):
    """Start Django with the production settings in a fresh interpreter and the given environment."""
    clean = {
        k: v for k, v in os.environ.items() if k not in ("DJANGO_SECRET_KEY", "DJANGO_DEBUG", "DJANGO_SETTINGS_MODULE")
    }
    clean["PRM_VAR_DIR"] = str(tmp_path / "var")
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-c", SETUP], cwd=REPO, env=clean, capture_output=True, text=True, timeout=60
    )


def test_production_settings_refuse_to_start_without_a_secret_key(tmp_path):
    result = run_setup(tmp_path, DJANGO_DEBUG="0")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_production_settings_start_with_a_secret_key(tmp_path):
    result = run_setup(tmp_path, DJANGO_DEBUG="0", DJANGO_SECRET_KEY="a-long-random-string-for-this-test-only")

    assert result.returncode == 0, result.stderr


def test_debug_settings_start_without_a_secret_key(tmp_path):
    result = run_setup(tmp_path, DJANGO_DEBUG="1")

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("url", ["", "console://"])
def test_email_url_console(url):
    assert _email_settings(url) == {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}


def test_email_url_smtp_with_user_password_and_port():
    settings = _email_settings("smtp://mailer%40vendor.example:p%40ss%3Aword@mail.vendor.example:2525")

    assert settings["EMAIL_BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert settings["EMAIL_HOST"] == "mail.vendor.example"
    assert settings["EMAIL_PORT"] == 2525
    assert settings["EMAIL_HOST_USER"] == "mailer@vendor.example"
    assert settings["EMAIL_HOST_PASSWORD"] == "p@ss:word"
    assert settings["EMAIL_USE_SSL"] is False
    assert settings["EMAIL_USE_TLS"] is False


def test_email_url_smtp_defaults_and_starttls_flag():
    plain = _email_settings("smtp://mail.vendor.example")
    starttls = _email_settings("smtp://mail.vendor.example?tls=1")

    assert plain["EMAIL_PORT"] == 25
    assert plain["EMAIL_HOST_USER"] == plain["EMAIL_HOST_PASSWORD"] == ""
    assert starttls["EMAIL_USE_TLS"] is True


def test_email_url_smtps_uses_implicit_tls_on_465():
    settings = _email_settings("smtps://user:secret@mail.vendor.example")

    assert settings["EMAIL_PORT"] == 465
    assert settings["EMAIL_USE_SSL"] is True
    assert settings["EMAIL_USE_TLS"] is False


def test_email_url_submission_uses_starttls_on_587():
    settings = _email_settings("submission://user:secret@mail.vendor.example")

    assert settings["EMAIL_PORT"] == 587
    assert settings["EMAIL_USE_TLS"] is True
    assert settings["EMAIL_USE_SSL"] is False


def test_email_url_with_an_unknown_scheme_is_refused():
    with pytest.raises(ImproperlyConfigured, match="imap"):
        _email_settings("imap://mail.vendor.example")
