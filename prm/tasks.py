from celery import shared_task
from django.core import management


@shared_task
def sessions_clear_expired() -> None:
    """Nightly: drop expired sessions (Django's own clearsessions, one DELETE)."""
    management.call_command("clearsessions")
