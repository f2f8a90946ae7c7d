"""The email outbox: write in the transaction, send after commit, retry until sent, never twice."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.template.loader import render_to_string
from django.utils import timezone

from prm.models import OutboxEmail

log = logging.getLogger(__name__)

# A claim older than this belongs to a worker that died mid-send; the message may be retried.
CLAIM_TIMEOUT = timedelta(minutes=10)
# A message the mail server keeps refusing is retried less and less often, and after MAX_ATTEMPTS
# left for a person to look at (in the admin), so it cannot crowd out the mail behind it.
MAX_ATTEMPTS = 20
MAX_BACKOFF = timedelta(hours=6)


def backoff(attempts: int) -> timedelta:
    return min(timedelta(minutes=2 ** min(attempts, 10)), MAX_BACKOFF)


def outbox_enqueue(*, to: str, template: str, context: dict, topic: str = "") -> OutboxEmail:
    """Render templates/emails/<template>_subject.txt and _body.txt and queue the email.

    Call inside the transaction of the change the email reports: if that rolls back, so does
    the email. After commit a task tries to send it at once; if the broker is down, the periodic
    flush sends it later."""
    subject, body = _render(template, context)
    email = OutboxEmail.objects.create(to=to, subject=subject, body=body, topic=topic)
    email_id = email.pk
    transaction.on_commit(lambda: _kick(email_id), robust=True)
    return email


def outbox_enqueue_each(messages) -> list[OutboxEmail]:
    """outbox_enqueue() for a few emails of one change at once: each message is (to, template,
    context, topic). The same rows and, after commit, the same task per email as one
    outbox_enqueue() call each, in this order; written in one INSERT where the database returns
    the new ids from it (PostgreSQL, SQLite 3.35+), else one INSERT each."""
    rows = []
    for to, template, context, topic in messages:
        subject, body = _render(template, context)
        rows.append(OutboxEmail(to=to, subject=subject, body=body, topic=topic))
    if len(rows) > 1 and transaction.get_connection().features.can_return_rows_from_bulk_insert:
        OutboxEmail.objects.bulk_create(rows)
    else:
        for email in rows:
            email.save(force_insert=True)
    for email in rows:
        email_id = email.pk
        transaction.on_commit(lambda email_id=email_id: _kick(email_id), robust=True)
    return rows


def outbox_enqueue_many(messages) -> int:
    """Queue many emails at once (a nightly job's notifications): each message is (recipients,
    template, context, topic), rendered once for all its recipients; one INSERT per thousand
    emails, and after commit one task that sends them all instead of one task per email."""
    rows = []
    for recipients, template, context, topic in messages:
        if not recipients:
            continue
        subject, body = _render(template, context)
        rows.extend(OutboxEmail(to=to, subject=subject, body=body, topic=topic) for to in recipients)
    OutboxEmail.objects.bulk_create(rows, batch_size=1000)
    if rows:
        count = len(rows)
        transaction.on_commit(lambda: _kick_flush(count), robust=True)
    return len(rows)


def _render(template: str, context: dict) -> tuple[str, str]:
    subject = " ".join(render_to_string(f"emails/{template}_subject.txt", context).split())
    return subject[:300], render_to_string(f"emails/{template}_body.txt", context)


def _kick(email_id: int) -> None:
    from prm.tasks import outbox_send

    outbox_send.delay(email_id=email_id)


def _kick_flush(count: int) -> None:
    from prm.tasks import outbox_flush

    outbox_flush.delay(limit=count)


def outbox_send(*, email_id: int) -> bool:
    """Send one queued email. True when this call sent it."""
    now = timezone.now()
    claimed = (
        OutboxEmail.objects.filter(pk=email_id, sent_at__isnull=True)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - CLAIM_TIMEOUT))
        .update(claimed_at=now, attempts=F("attempts") + 1)
    )
    if claimed != 1:
        return False  # already sent, or another worker is sending it right now
    email = OutboxEmail.objects.get(pk=email_id)
    try:
        send_mail(email.subject, email.body, None, [email.to])
    except Exception as exc:  # the mail server is down or refused: leave it for the next flush
        log.warning("outbox email %s not sent: %s", email_id, exc)
        OutboxEmail.objects.filter(pk=email_id).update(
            claimed_at=None,
            last_error=f"{type(exc).__name__}: {exc}",
            next_attempt_at=timezone.now() + backoff(email.attempts),
        )
        return False
    OutboxEmail.objects.filter(pk=email_id).update(sent_at=timezone.now(), last_error="")
    return True


def outbox_flush(*, limit: int = 500) -> int:
    """Send what is left (the periodic job). Returns how many went out."""
    now = timezone.now()
    pending = (
        OutboxEmail.objects.filter(sent_at__isnull=True, next_attempt_at__lte=now, attempts__lt=MAX_ATTEMPTS)
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=now - CLAIM_TIMEOUT))
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    return sum(outbox_send(email_id=pk) for pk in list(pending))
