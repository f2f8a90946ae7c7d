"""Settings for the PRM portal.

Everything that differs between a laptop and production comes from the environment
(see the table in README.md). The defaults are safe for development only: without
DJANGO_DEBUG the portal refuses to start unless DJANGO_SECRET_KEY is set.
"""

from datetime import timedelta
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from prm.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("PRM_VAR_DIR", str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env_bool("DJANGO_DEBUG", False)

SECRET_KEY = env_str("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set. Set it to a long random string, or set DJANGO_DEBUG=1 for a development run."
        )
    SECRET_KEY = "django-insecure-development-only-key-never-use-in-production"

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django.contrib.postgres",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "axes",
    "csp",
    "django_filters",
    "import_export",
    "prm",
    "dealers",
    "deals",
    "tiers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "dealers.middleware.StaffMFARequiredMiddleware",
    # Last, as django-axes asks: turns a log-in that tripped the lock-out into its 429 page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "prm.urls"
WSGI_APPLICATION = "prm.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "dealers.context_processors.portal",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
# SQLite is the zero-setup default. WAL lets the web server read while the worker writes;
# IMMEDIATE transactions take the write lock up front so that concurrent writers queue on the
# busy timeout instead of failing with "database is locked" halfway through a transaction.
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{VAR_DIR / 'prm.sqlite3'}"),
        conn_max_age=int(env_str("DATABASE_CONN_MAX_AGE", "60")),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
    }

elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # No JIT compilation: the portal's queries take milliseconds, and PostgreSQL's cost estimate
    # for an aggregate over many rows switches it on; compiling then took 300-400 ms of a 540 ms
    # dashboard query at a million registrations (BENCHMARKS.md).
    DATABASES["default"].setdefault("OPTIONS", {})["options"] = "-c jit=off"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "dealers.User"

AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out email and address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- accounts (django-allauth) ----------------------------------------------------------------
ACCOUNT_ADAPTER = "dealers.adapters.InvitationOnlyAccountAdapter"
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_EMAIL_VERIFICATION = "mandatory"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_LOGIN_ON_PASSWORD_RESET = False
ACCOUNT_SESSION_REMEMBER = None
ACCOUNT_EMAIL_SUBJECT_PREFIX = "[Partner portal] "
ACCOUNT_PREVENT_ENUMERATION = True
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
ACCOUNT_LOGOUT_REDIRECT_URL = "account_login"

MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
MFA_TOTP_ISSUER = "Partner portal"
# The code of the previous and next 30-second period is accepted too (RFC 6238 §5.2: one step of
# drift). With allauth's default of none, a right code typed late in its period, or a request that
# queued a few seconds on a busy server, came back "Incorrect code" and counted towards the lock-out.
MFA_TOTP_TOLERANCE = 1
MFA_FORMS = {"authenticate": "dealers.lockout.LockoutAwareAuthenticateForm"}
# Vendor staff decide on other companies' pipelines: they must use a second factor. Off only
# under `make run`'s development defaults, so that the demo log-ins work without an app.
PRM_REQUIRE_STAFF_MFA = env_bool("PRM_REQUIRE_STAFF_MFA", True)

# The number of reverse proxies in front of the portal that append to X-Forwarded-For: 0 trusts
# nothing but the connection's address. allauth's rate limits and the lock-out below both use it.
ALLAUTH_TRUSTED_PROXY_COUNT = env_int("PRM_TRUSTED_PROXY_COUNT", 0)

# --- log-in lock-out (django-axes; dealers/lockout.py) ------------------------------------------
# PRM_LOGIN_FAILURE_LIMIT failed log-ins for one email address from one client address lock that
# pair out for PRM_LOGIN_LOCKOUT_MINUTES after the last failure; wrong codes at the two-factor
# step count too. Staff unlock earlier in the admin ("Access attempts": delete the row) or with
# `manage.py axes_reset_username EMAIL`; a password reset also unlocks.
AXES_FAILURE_LIMIT = env_int("PRM_LOGIN_FAILURE_LIMIT", 5)
PRM_LOGIN_LOCKOUT_MINUTES = env_int("PRM_LOGIN_LOCKOUT_MINUTES", 15)
AXES_COOLOFF_TIME = timedelta(minutes=PRM_LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_USERNAME_CALLABLE = "dealers.lockout.username_of"
AXES_CLIENT_IP_CALLABLE = "dealers.lockout.client_ip"
AXES_LOCKOUT_CALLABLE = "dealers.lockout.lockout_response"
AXES_RESET_ON_SUCCESS = True
# The page promises a time: trying again while locked out does not push it further away.
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
# Successful log-ins are already recorded (dealers.LoginRecord); axes keeps only the failures.
AXES_DISABLE_ACCESS_LOG = True
AXES_VERBOSE = False  # no banner in every manage.py command; lock-outs are still logged as warnings
# allauth's own limits stay on underneath, set so that the lock-out answers first (with its page
# and its staff unlock): log-in posts per client address per minute; failed log-ins per address
# per minute whichever accounts they try, and per account from all addresses together twice the
# lock-out's limit in its time, against guessing spread over many addresses. allauth's other
# limits (password reset, email confirmation) keep its defaults.
ACCOUNT_RATE_LIMITS = {
    "login": f"{env_int('PRM_LOGINS_PER_MINUTE', 30)}/m/ip",
    "login_failed": f"10/m/ip,{2 * AXES_FAILURE_LIMIT}/{PRM_LOGIN_LOCKOUT_MINUTES}m/key",
}

# --- rate limits (prm/ratelimit.py, counted in the cache below); 0 turns one off ---------------
PRM_REGISTRATION_SUBMITS_PER_HOUR = env_int("PRM_REGISTRATION_SUBMITS_PER_HOUR", 30)
PRM_LOOKUPS_PER_HOUR = env_int("PRM_LOOKUPS_PER_HOUR", 120)

PRM_INVITATION_DAYS = 7
# Where links in emails point to.
PRM_SITE_URL = env_str("PRM_SITE_URL", "http://127.0.0.1:8000")

# --- cache -----------------------------------------------------------------------------------------
# Rate limits (ours and allauth's) count in the cache, so every web process must share it:
# Redis in production (CACHE_URL=redis://…); without CACHE_URL, files under var/cache, which the
# processes of `make run` share with no server to run.


def _cache_settings(url: str, var_dir: Path) -> dict:
    """CACHE_URL: empty for files under var/cache, redis://host:6379/1 (or rediss://), locmem://."""
    if not url:
        return {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(var_dir / "cache"),
            # Culling deletes a third of the entries, counters included: keep it rare.
            "OPTIONS": {"MAX_ENTRIES": 20_000},
        }
    scheme = urlparse(url).scheme
    if scheme in ("redis", "rediss"):
        return {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": "prm",
            # A stalled Redis fails a request within seconds instead of hanging a worker.
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    if scheme == "locmem":
        return {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    raise ImproperlyConfigured(f"CACHE_URL scheme {scheme!r} is not one of redis, rediss, locmem")


CACHES = {"default": _cache_settings(env_str("CACHE_URL", ""), VAR_DIR)}

# --- i18n / time ----------------------------------------------------------------------------
LANGUAGE_CODE = "en"
TIME_ZONE = env_str("TIME_ZONE", "Europe/Amsterdam")
USE_I18N = True
USE_TZ = True

# --- static files ------------------------------------------------------------------------------
STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- email ---------------------------------------------------------------------------------------
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Partner portal <portal@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL


def _email_settings(url: str) -> dict:
    """EMAIL_URL: empty or console:// for the console, smtp://user:pass@host:port, smtps://… for TLS."""
    if not url or url.startswith("console:"):
        return {"EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend"}
    parts = urlparse(url)
    if parts.scheme not in ("smtp", "smtps", "submission"):
        raise ImproperlyConfigured(f"EMAIL_URL scheme {parts.scheme!r} is not one of smtp, smtps, submission")
    query = parse_qs(parts.query)
    return {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": parts.hostname or "localhost",
        "EMAIL_PORT": parts.port or {"smtp": 25, "smtps": 465, "submission": 587}[parts.scheme],
        "EMAIL_HOST_USER": unquote(parts.username or ""),
        "EMAIL_HOST_PASSWORD": unquote(parts.password or ""),
        "EMAIL_USE_SSL": parts.scheme == "smtps",
        "EMAIL_USE_TLS": parts.scheme == "submission" or query.get("tls", ["0"])[0] in ("1", "true"),
        "EMAIL_TIMEOUT": 20,
    }


globals().update(_email_settings(env_str("EMAIL_URL", "")))

# --- Celery ------------------------------------------------------------------------------------
# Without a broker URL the portal uses kombu's filesystem transport under var/: no server needed,
# and the worker started by `make run` picks the messages up. Production sets redis://…
BROKER_DIR = VAR_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "control_folder": str(BROKER_DIR / "control"),
        # How often an idle worker, or one at its prefetch limit, lists the folder. kombu's 1 s
        # caps a `make run` worker at about two tasks a second when the outbox has a backlog.
        "polling_interval": 0.2,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

from celery.schedules import crontab  # noqa: E402

# Times are in TIME_ZONE. Every job is idempotent, so a missed or doubled run does no harm.
CELERY_BEAT_SCHEDULE = {
    "review-reminders": {"task": "deals.tasks.review_reminders_send", "schedule": crontab(minute="*/15")},
    "outbox-flush": {"task": "prm.tasks.outbox_flush", "schedule": crontab(minute="*")},
    "protections-expire": {"task": "deals.tasks.protections_expire", "schedule": crontab(hour=1, minute=0)},
    "expiry-warnings": {"task": "deals.tasks.expiry_warnings_send", "schedule": crontab(hour=6, minute=30)},
    "stale-registrations": {"task": "deals.tasks.stale_registrations_flag", "schedule": crontab(hour=6, minute=45)},
    "dashboards-rollup": {"task": "tiers.tasks.dashboards_rollup", "schedule": crontab(hour=1, minute=30)},
    "tiers-recompute": {"task": "tiers.tasks.tiers_recompute", "schedule": crontab(hour=2, minute=0)},
    "clear-expired-sessions": {"task": "prm.tasks.sessions_clear_expired", "schedule": crontab(hour=3, minute=15)},
    "contacts-anonymise": {"task": "deals.tasks.contacts_anonymise", "schedule": crontab(hour=3, minute=45)},
}

# --- security (production) ------------------------------------------------------------------
# `manage.py check --deploy` passes with these defaults once debug is off; README lists the knobs.
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_AGE = env_int("DJANGO_SESSION_COOKIE_AGE", 8 * 60 * 60)  # a working day, then log in again
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# HTTPS only, except the health check, which the container probe calls over plain HTTP inside.
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# Browsers honour HSTS only over HTTPS, and remember it: set 0 before the first HTTPS visit to try
# the portal on a host name that will not stay on HTTPS.
SECURE_HSTS_SECONDS = env_int("DJANGO_SECURE_HSTS_SECONDS", 0 if DEBUG else 365 * 24 * 60 * 60)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_SECURE_HSTS_PRELOAD", True)
if not DEBUG:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", True)
    CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# Content-Security-Policy (django-csp), in development too so that a page that breaks under it
# breaks on a laptop first: no inline script, no inline style (not even style attributes), nothing
# from another host. data: images are the favicon placeholder and the authenticator QR code.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
        "base-uri": [NONE],
        "object-src": [NONE],
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("DJANGO_LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
FORMS_URLFIELD_ASSUME_HTTPS = True  # Django 6 default, opted into now
