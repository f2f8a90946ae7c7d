"""Readiness of the services the portal depends on, for /healthz and the tests."""

from django.db import connection

from prm.celery import app as celery_app


def database_ok() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "not reachable"
        return False, f"{type(exc).__name__}: {exc}"
    return True, "ok"


def broker_ok() -> tuple[bool, str]:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
            _ = conn.default_channel  # opens a channel: a filesystem folder must be usable, a Redis must answer
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, "ok"
