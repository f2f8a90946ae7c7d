from celery import shared_task

from dealers import notifications


@shared_task(autoretry_for=(OSError,), retry_backoff=True, max_retries=5)
def invitation_send(*, invitation_id: int) -> None:
    notifications.invitation_email_send(invitation_id=invitation_id)
