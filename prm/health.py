"""Readiness of the services the portal depends on, for /healthz and the tests.

Each check answers within a few seconds: a load balancer polling /healthz must get a 503,
not a hung request, when Redis or PostgreSQL stops answering.
"""

import logging
import threading

from django.db import connection

from prm.celery import app as celery_app

# Seconds. Socket timeouts make a silent broker fail fast; the deadline caps the whole check
# even if a client library retries on its own.
BROKER_SOCKET_TIMEOUT = 1.0
BROKER_DEADLINE = 3.0

log = logging.getLogger(__name__)


def _failed(what: str, exc: Exception) -> tuple[bool, str]:
    """/healthz is public: the details (hosts, user names) go to the log, not the response."""
    log.warning("healthz: %s check failed: %s: %s", what, type(exc).__name__, exc)
    return False, f"unreachable ({type(exc).__name__})"


def database_ok() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not reachable"
        return _failed("database", exc)
    return True, "ok"


def _open_broker_channel() -> None:
    """Connect to the configured broker and open a channel (a Redis PING, a usable folder)."""
    timeouts = {
        "socket_timeout": BROKER_SOCKET_TIMEOUT,
        "socket_connect_timeout": BROKER_SOCKET_TIMEOUT,
        "retry_on_timeout": False,
    }
    with celery_app.connection_for_write(connect_timeout=BROKER_SOCKET_TIMEOUT, transport_options=timeouts) as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_DEADLINE)
        _ = conn.default_channel


def broker_ok() -> tuple[bool, str]:
    outcome: list[tuple[bool, str]] = []

    def check() -> None:
        try:
            _open_broker_channel()
        except Exception as exc:
            outcome.append(_failed("broker", exc))
        else:
            outcome.append((True, "ok"))

    # A daemon thread, so that a client stuck beyond its own timeouts cannot hold the request.
    worker = threading.Thread(target=check, name="healthz-broker", daemon=True)
    worker.start()
    worker.join(BROKER_DEADLINE)
    if not outcome:
        return False, f"no answer within {BROKER_DEADLINE:g} s"
    return outcome[0]
