"""Thin Celery tasks over deals.services; each is also a management command."""

from celery import shared_task

from deals import privacy, services


@shared_task(ignore_result=True)
def review_reminders_send() -> None:
    services.review_reminders_send()


@shared_task(ignore_result=True)
def protections_expire() -> None:
    services.protections_expire()


@shared_task(ignore_result=True)
def expiry_warnings_send() -> None:
    services.expiry_warnings_send()


@shared_task(ignore_result=True)
def stale_registrations_flag() -> None:
    services.stale_registrations_flag()


@shared_task(ignore_result=True)
def contacts_anonymise() -> None:
    privacy.contacts_anonymise()
