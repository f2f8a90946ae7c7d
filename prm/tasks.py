from celery import shared_task
from django.core import management

from prm import outbox


@shared_task
def sessions_clear_expired() -> None:
    """Nightly: drop expired sessions (Django's own clearsessions, one DELETE)."""
    management.call_command("clearsessions")


@shared_task(ignore_result=True)
def outbox_send(*, email_id: int) -> None:
    outbox.outbox_send(email_id=email_id)


@shared_task(ignore_result=True)
def outbox_flush(limit: int = 500) -> None:
    outbox.outbox_flush(limit=limit)
