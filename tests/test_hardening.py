"""Trust under fire: the log-in lock-out, the rate limits, and the production security settings.

The lock-out and the limits go through the client as a person would; the production settings are
checked in a fresh interpreter started with production's environment (no DJANGO_DEBUG).
"""

import io
import json
import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import time_machine
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value, yield_hotp_counters_from_time
from axes.models import AccessAttempt
from django.core import mail
from django.core.management import call_command
from django.test import Client, override_settings
from django.urls import reverse

from deals.models import ProtectionLookup, Registration
from tests import factories
from tests.conftest import client_for
from tests.deal_factories import ProductFactory

REPO = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Europe/Amsterdam")
EMAIL = "user@own.example"  # world.own_user
WRONG = "not-the-password"
TOTP_SECRET = "JBSWY3DPEHPK3PXP"  # tests.conftest.with_totp


def log_in(client, email=EMAIL, password=factories.PASSWORD):
    return client.post(reverse("account_login"), {"login": email, "password": password})


def fail(client, times, email=EMAIL) -> list[int]:
    return [log_in(client, email, WRONG).status_code for _ in range(times)]


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


# --- the lock-out ----------------------------------------------------------------------------------


def test_the_fifth_failure_locks_that_email_out_from_that_address(world, client):
    assert fail(client, 4) == [200] * 4
    response = log_in(client, password=WRONG)
    assert response.status_code == 429
    page = response.content.decode()
    assert "Log-in paused" in page and "There were 5 failed log-ins" in page and "for 15 minutes" in page
    assert reverse("account_reset_password") in page
    # Now even the right password is refused, before it is checked.
    response = log_in(client)
    assert response.status_code == 429 and not logged_in(client)
    # Another account from the same address, and this account from another address, still log in.
    assert log_in(Client(), "admin@own.example").status_code == 302
    assert log_in(Client(REMOTE_ADDR="203.0.113.7")).status_code == 302


def test_failures_below_the_limit_are_forgotten_after_a_successful_log_in(world, client):
    fail(client, 4)
    assert log_in(client).status_code == 302
    client.post(reverse("account_logout"))
    assert fail(client, 4) == [200] * 4


def test_the_lock_out_ends_by_itself_after_the_cool_off(world, client):
    with time_machine.travel(datetime(2026, 3, 2, 9, 0, tzinfo=TZ), tick=False) as traveller:
        fail(client, 5)
        traveller.shift(timedelta(minutes=14))
        response = log_in(client)
        assert response.status_code == 429
        assert "after 09:29" in response.content.decode()  # 09:14 + 15 minutes: an upper bound
        traveller.shift(timedelta(minutes=2))  # 16 minutes after the last failure; trying did not extend it
        assert log_in(client).status_code == 302 and logged_in(client)


def test_staff_lift_a_lock_out_in_the_admin(world, client):
    fail(client, 5)
    admin = client_for(world.channel_admin)
    listing = admin.get(reverse("admin:axes_accessattempt_changelist"))
    assert listing.status_code == 200 and EMAIL in listing.content.decode()
    attempt = AccessAttempt.objects.get(username=EMAIL)
    response = admin.post(reverse("admin:axes_accessattempt_delete", args=[attempt.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert log_in(client).status_code == 302 and logged_in(client)


def test_a_partner_manager_cannot_see_the_lock_outs(world):
    assert client_for(world.pm_a).get(reverse("admin:axes_accessattempt_changelist")).status_code == 403


def test_staff_lift_a_lock_out_with_the_command(world, client):
    fail(client, 5)
    call_command("axes_reset_username", EMAIL, stdout=io.StringIO())
    assert log_in(client).status_code == 302


def test_a_password_reset_lifts_the_lock_out(world, client):
    fail(client, 5)
    client.post(reverse("account_reset_password"), {"email": EMAIL})
    link = re.search(r"https?://\S+/accounts/password/reset/key/\S+/", mail.outbox[-1].body).group(0)
    set_password = client.get(urlsplit(link).path)["Location"]
    new = "a-brand-new-long-password"
    assert client.post(set_password, {"password1": new, "password2": new}).status_code == 302
    assert log_in(client, password=new).status_code == 302 and logged_in(client)


def totp_codes() -> set[str]:
    return {format_hotp_value(hotp_value(TOTP_SECRET, counter)) for counter in yield_hotp_counters_from_time()}


def test_wrong_two_factor_codes_count_towards_the_lock_out(world, client):
    assert log_in(client, world.pm_a.email)["Location"] == reverse("mfa_authenticate")
    wrong = next(code for code in ("123456", "654321", "111111") if code not in totp_codes())
    statuses = [client.post(reverse("mfa_authenticate"), {"code": wrong}).status_code for _ in range(5)]
    assert statuses == [200] * 4 + [429]
    # Knowing the password gives no more guesses: the right code is refused now, and so is the password step.
    right = sorted(totp_codes())[0]
    response = client.post(reverse("mfa_authenticate"), {"code": right})
    assert response.status_code == 429 and "Log-in paused" in response.content.decode()
    assert not logged_in(client)
    assert log_in(Client(), world.pm_a.email).status_code == 429


def test_the_right_code_logs_in_and_clears_the_failures(world, client):
    log_in(client, world.pm_a.email)
    wrong = next(code for code in ("123456", "654321", "111111") if code not in totp_codes())
    assert client.post(reverse("mfa_authenticate"), {"code": wrong}).status_code == 200
    assert AccessAttempt.objects.filter(username=world.pm_a.email).exists()
    response = client.post(reverse("mfa_authenticate"), {"code": sorted(totp_codes())[0]})
    assert response.status_code == 302 and logged_in(client)
    assert not AccessAttempt.objects.filter(username=world.pm_a.email).exists()


def test_the_code_of_the_period_before_still_logs_in(world, client):
    """A code typed as its period ends reaches the server in the next one (or queues behind other
    requests): one period of drift is accepted, two are not."""
    counter = int(time.time()) // 30
    with time_machine.travel(time.time() + 30, tick=False):  # the server is one period further
        log_in(client, world.pm_a.email)
        two_before = format_hotp_value(hotp_value(TOTP_SECRET, counter - 1))
        assert client.post(reverse("mfa_authenticate"), {"code": two_before}).status_code == 200
        assert not logged_in(client)
        one_before = format_hotp_value(hotp_value(TOTP_SECRET, counter))
        response = client.post(reverse("mfa_authenticate"), {"code": one_before})
        assert response.status_code == 302 and logged_in(client)


# --- rate limits ----------------------------------------------------------------------------------


@pytest.fixture
def product(db):
    return ProductFactory(name="Pump 8 kW", list_price="6450.00")


def registration_data(product, **overrides):
    data = {
        "customer-existing": "",
        "customer-name": "Bakkerij Jansen B.V.",
        "customer-city": "Utrecht",
        "customer-postcode": "3511 AB",
        "customer-country": "NL",
        "customer-website": "jansen.example",
        "customer-vat_number": "",
        "customer-company_number": "",
        "deal-contact_name": "Marleen Jansen",
        "deal-contact_email": "marleen@jansen.example",
        "deal-contact_phone": "+31 30 123 4567",
        "deal-expected_close_date": (datetime.now(TZ).date() + timedelta(days=45)).isoformat(),
        "deal-decision_stage": "mid",
        "deal-competitors": "Rival Klimaat",
        "deal-next_steps": "Site visit in two weeks",
        "lines-TOTAL_FORMS": "2",
        "lines-INITIAL_FORMS": "0",
        "lines-MIN_NUM_FORMS": "1",
        "lines-MAX_NUM_FORMS": "50",
        "lines-0-product": str(product.pk),
        "lines-0-quantity": "2",
        "lines-0-value": "",
        "lines-1-product": str(product.pk),
        "lines-1-quantity": "3",
        "lines-1-value": "17500.00",
    }
    data.update(overrides)
    return data


@override_settings(PRM_REGISTRATION_SUBMITS_PER_HOUR=2)
def test_a_refused_registration_keeps_everything_typed(world, product):
    url = reverse("deals:registration_create")
    dealer = client_for(world.own_user)
    with time_machine.travel(datetime(2026, 3, 2, 10, 20, tzinfo=TZ), tick=False) as traveller:
        assert dealer.post(url, registration_data(product, **{"customer-name": ""})).status_code == 200  # invalid
        assert dealer.post(url, registration_data(product)).status_code == 302
        response = dealer.post(url, registration_data(product, **{"customer-name": "Slagerij de Vries"}))
        assert response.status_code == 429
        page = response.content.decode()
        assert "not sent" in page and "after 11:00" in page
        for typed in ("Slagerij de Vries", "Marleen Jansen", "+31 30 123 4567", "Rival Klimaat", "17500.00"):
            assert typed in page
        assert "Site visit in two weeks" in page
        assert Registration.objects.count() == 1
        # Adding a line without JavaScript is not a submit: it is never refused.
        assert dealer.post(url, registration_data(product, add_line="1")).status_code == 200
        # A colleague has a limit of their own; the next hour the dealer may send again.
        colleague = client_for(world.own_admin)
        assert colleague.post(url, registration_data(product, **{"customer-name": "X"})).status_code != 429
        traveller.move_to(datetime(2026, 3, 2, 11, 0, tzinfo=TZ))
        response = dealer.post(url, registration_data(product, **{"customer-name": "Slagerij de Vries"}))
        assert response.status_code == 302
    assert Registration.objects.filter(customer__name="Slagerij de Vries").exists()


@override_settings(PRM_LOOKUPS_PER_HOUR=2)
def test_the_lookup_is_limited_per_staff_member(world):
    url = reverse("deals:protection_lookup")
    pm = client_for(world.pm_a)
    with time_machine.travel(datetime(2026, 3, 2, 10, 20, tzinfo=TZ), tick=False) as traveller:
        assert pm.get(url).status_code == 200  # the empty page is no lookup
        assert [pm.get(url, {"q": f"bakkerij {n}"}).status_code for n in range(2)] == [200, 200]
        response = pm.get(url, {"q": "slagerij de vries"})
        assert response.status_code == 429
        page = response.content.decode()
        assert "Not looked up" in page and "after 11:00" in page and 'value="slagerij de vries"' in page
        assert ProtectionLookup.objects.count() == 2  # the refused one was not searched, so not logged
        assert client_for(world.pm_b).get(url, {"q": "slagerij de vries"}).status_code == 200
        traveller.move_to(datetime(2026, 3, 2, 11, 0, 1, tzinfo=TZ))
        assert pm.get(url, {"q": "slagerij de vries"}).status_code == 200


@override_settings(PRM_LOOKUPS_PER_HOUR=0)
def test_zero_turns_a_limit_off(world):
    pm = client_for(world.pm_a)
    assert all(pm.get(reverse("deals:protection_lookup"), {"q": "jansen"}).status_code == 200 for _ in range(5))


# --- production settings ----------------------------------------------------------------------------


def run_with_production_settings(tmp_path, args, **env):
    """A fresh interpreter with production's environment: no DJANGO_DEBUG, a long random key, a host."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "PRM_", "CELERY_", "SECURE_"))
        and name not in ("DATABASE_URL", "CACHE_URL", "EMAIL_URL")
    }
    clean.update(
        DJANGO_SETTINGS_MODULE="prm.settings",
        DJANGO_SECRET_KEY="Zq3v-8Kp_2mWx7RtLc9Yh4Nf6Bd1Gs5Ja0Ue-iOyTkPlMnVbXcQwErTyUiOpAsDfGh",
        DJANGO_ALLOWED_HOSTS="portal.example.com",
        PRM_VAR_DIR=str(tmp_path / "var"),
    )
    clean.update(env)
    return subprocess.run([sys.executable, *args], cwd=REPO, env=clean, capture_output=True, text=True, timeout=120)


def test_check_deploy_reports_nothing_with_production_settings(tmp_path):
    result = run_with_production_settings(tmp_path, ["manage.py", "check", "--deploy", "--fail-level", "WARNING"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


RESPONSES = """
import json

import django

django.setup()
from allauth.account.models import EmailAddress
from django.core.management import call_command
from django.test import Client

from dealers.models import User

call_command("migrate", verbosity=0)
call_command("collectstatic", interactive=False, verbosity=0)  # as the image does; pages need the manifest
user = User.objects.create_user("person@dealer.example", "a-long-enough-password")
EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
client = Client(HTTP_HOST="portal.example.com")


def seen(response):
    cookies = {n: {"secure": bool(m["secure"]), "httponly": bool(m["httponly"])} for n, m in response.cookies.items()}
    return {"status": response.status_code, "headers": dict(response.headers), "cookies": cookies}


print(json.dumps({
    "plain": seen(client.get("/accounts/login/")),
    "healthz": seen(client.get("/healthz")),
    "page": seen(client.get("/accounts/login/", secure=True)),
    "log_in": seen(
        client.post("/accounts/login/", {"login": user.email, "password": "a-long-enough-password"}, secure=True)
    ),
}))
"""


@pytest.fixture(scope="module")
def production_responses(tmp_path_factory):
    result = run_with_production_settings(tmp_path_factory.mktemp("production"), ["-c", RESPONSES])
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def csp_directives(header: str) -> dict[str, list[str]]:
    parts = (part.split() for part in header.split(";") if part.strip())
    return {words[0]: words[1:] for words in parts}


def test_production_redirects_to_https_except_the_health_check(production_responses):
    plain = production_responses["plain"]
    assert plain["status"] == 301 and plain["headers"]["Location"] == "https://portal.example.com/accounts/login/"
    assert production_responses["healthz"]["status"] in (200, 503)  # answered, not redirected


def test_production_security_headers(production_responses):
    headers = production_responses["page"]["headers"]
    assert production_responses["page"]["status"] == 200
    assert headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains; preload"
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "same-origin"
    csp = csp_directives(headers["Content-Security-Policy"])
    assert csp["script-src"] == ["'self'"] and csp["style-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in headers["Content-Security-Policy"]


def test_production_cookies_are_secure_and_http_only(production_responses):
    log_in_response = production_responses["log_in"]
    assert log_in_response["status"] == 302
    cookies = log_in_response["cookies"]
    assert {"sessionid", "csrftoken"} <= set(cookies)
    for name, flags in cookies.items():
        assert flags == {"secure": True, "httponly": True}, name


SETTINGS = """
import json

import django

django.setup()
from django.conf import settings

names = ["DEBUG", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SESSION_COOKIE_AGE", "CACHES"]
print(json.dumps({name: getattr(settings, name) for name in names}, default=str))
"""


def test_development_mode_neither_redirects_nor_sends_hsts(tmp_path):
    """`make run`: DJANGO_DEBUG=1, plain http://127.0.0.1:8000, and the file cache its processes share."""
    result = run_with_production_settings(tmp_path, ["-c", SETTINGS], DJANGO_DEBUG="1", DJANGO_SECRET_KEY="")
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["DEBUG"] is True and values["SECURE_SSL_REDIRECT"] is False and values["SECURE_HSTS_SECONDS"] == 0
    assert values["SESSION_COOKIE_AGE"] == 8 * 60 * 60
    assert values["CACHES"]["default"]["BACKEND"] == "django.core.cache.backends.filebased.FileBasedCache"


def test_redis_cache_from_cache_url(tmp_path):
    result = run_with_production_settings(tmp_path, ["-c", SETTINGS], CACHE_URL="redis://redis:6379/1")
    assert result.returncode == 0, result.stderr
    cache = json.loads(result.stdout.strip().splitlines()[-1])["CACHES"]["default"]
    assert (
        cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
        and cache["LOCATION"] == "redis://redis:6379/1"
    )


def test_the_content_security_policy_is_on_in_the_test_settings_too(world):
    """The browser journeys run under the same policy, so a page it would break fails there."""
    response = client_for(world.own_user).get(reverse("deals:registration_create"))
    assert "script-src 'self'" in response["Content-Security-Policy"]
    page = response.content.decode()
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert " style=" not in page and "<style" not in page
