"""The email outbox: written in the transaction of the change, sent after commit, retried until
sent, never sent twice — with the mail server or the broker down."""

from __future__ import annotations

import smtplib
from datetime import timedelta

import kombu.exceptions
import pytest
import time_machine
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.db import transaction
from django.utils import timezone

import prm.tasks
from deals.models import Registration
from prm import outbox
from prm.models import OutboxEmail
from tests.deal_factories import submit

LOCMEM = "django.core.mail.backends.locmem.EmailBackend"


class DisconnectedBackend(BaseEmailBackend):
    """A mail server that hangs up."""

    def send_messages(self, email_messages):
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")


class UnreachableBackend(BaseEmailBackend):
    """A mail server that cannot be reached at all."""

    def send_messages(self, email_messages):
        raise OSError(111, "Connection refused")


def expected_recipients(world):
    return sorted([world.own_user.email, world.pm_a.email])  # the dealer's receipt, the reviewer's task


def sent_to():
    return sorted(address for message in mail.outbox for address in message.to)


def test_rolled_back_change_leaves_no_email(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            submit(world)
            assert OutboxEmail.objects.count() == 2  # written in the same transaction
            raise RuntimeError("a later step of the same transaction failed")
    assert callbacks == []
    assert not Registration.objects.exists()
    assert not OutboxEmail.objects.exists()
    assert mail.outbox == []


def test_nothing_is_sent_before_commit(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        submit(world)
    assert len(callbacks) == 2
    assert mail.outbox == []
    assert OutboxEmail.objects.filter(sent_at__isnull=True).count() == 2


def test_after_commit_each_email_is_sent_once(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        registration = submit(world)
    assert sent_to() == expected_recipients(world)
    rows = OutboxEmail.objects.all()
    assert all(row.sent_at and row.attempts == 1 and row.last_error == "" for row in rows)
    assert {row.topic for row in rows} == {registration.reference}
    assert {m.subject for m in mail.outbox} == {row.subject for row in rows}
    assert outbox.outbox_flush() == 0
    assert len(mail.outbox) == 2


@pytest.mark.parametrize(
    ("backend", "error"),
    [(DisconnectedBackend, "SMTPServerDisconnected"), (UnreachableBackend, "ConnectionRefusedError")],
)
def test_mail_server_down_then_flush_sends_exactly_once(
    world, settings, django_capture_on_commit_callbacks, backend, error
):
    settings.EMAIL_BACKEND = f"{__name__}.{backend.__name__}"
    with django_capture_on_commit_callbacks(execute=True):
        registration = submit(world)
    assert Registration.objects.filter(pk=registration.pk).exists()
    assert mail.outbox == []
    rows = list(OutboxEmail.objects.all())
    assert len(rows) == 2
    for row in rows:
        assert row.sent_at is None
        assert row.claimed_at is None  # released for the next try
        assert row.attempts == 1
        assert row.last_error.startswith(f"{error}: ")

    assert outbox.outbox_flush() == 0  # not due again yet: the retry waits (backoff)
    assert set(OutboxEmail.objects.values_list("attempts", flat=True)) == {1}
    with time_machine.travel(timezone.now() + timedelta(minutes=3)):
        assert outbox.outbox_flush() == 0  # still down: another attempt, nothing lost
    assert set(OutboxEmail.objects.values_list("attempts", flat=True)) == {2}

    settings.EMAIL_BACKEND = LOCMEM
    with time_machine.travel(timezone.now() + timedelta(minutes=10)):
        assert outbox.outbox_flush() == 2
    assert sent_to() == expected_recipients(world)
    for row in OutboxEmail.objects.all():
        assert row.sent_at is not None and row.last_error == "" and row.attempts == 3
    assert outbox.outbox_flush() == 0
    assert len(mail.outbox) == 2


def test_broker_down_the_change_still_commits_and_flush_sends_later(
    world, monkeypatch, django_capture_on_commit_callbacks, caplog
):
    def broker_down(*args, **kwargs):
        raise kombu.exceptions.OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(prm.tasks.outbox_send, "delay", broker_down)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        registration = submit(world)
    assert len(callbacks) == 2
    assert Registration.objects.filter(pk=registration.pk, status=Registration.Status.SUBMITTED).exists()
    assert mail.outbox == []
    assert OutboxEmail.objects.filter(sent_at__isnull=True, attempts=0).count() == 2
    assert "on_commit" in caplog.text

    monkeypatch.undo()
    assert outbox.outbox_flush() == 2
    assert sent_to() == expected_recipients(world)
    assert outbox.outbox_flush() == 0
    assert len(mail.outbox) == 2


@pytest.mark.django_db(transaction=True)  # staff groups come back after the flush (dealers.roles, post_migrate)
def test_broker_down_with_a_real_commit(world, monkeypatch):
    """The same, with no test transaction around it: the service's own commit runs the kick."""

    def broker_down(*args, **kwargs):
        raise kombu.exceptions.OperationalError("Connection refused")

    monkeypatch.setattr(prm.tasks.outbox_send, "delay", broker_down)
    registration = submit(world)
    assert Registration.objects.filter(pk=registration.pk).exists()
    assert OutboxEmail.objects.filter(sent_at__isnull=True).count() == 2
    monkeypatch.undo()
    assert outbox.outbox_flush() == 2
    assert outbox.outbox_flush() == 0
    assert sent_to() == expected_recipients(world)


@pytest.mark.django_db(transaction=True)  # staff groups come back after the flush (dealers.roles, post_migrate)
def test_real_commit_sends_through_the_task(world):
    submit(world)
    assert sent_to() == expected_recipients(world)
    assert not OutboxEmail.objects.filter(sent_at__isnull=True).exists()


def queued(**kwargs) -> OutboxEmail:
    values = {"to": "someone@example.com", "subject": "Hello", "body": "Body"}
    values.update(kwargs)
    if "created_at" in kwargs:  # a message is due when it is written
        values.setdefault("next_attempt_at", kwargs["created_at"])
    return OutboxEmail.objects.create(**values)


def test_two_sends_of_one_email_send_it_once(db):
    email = queued()
    assert outbox.outbox_send(email_id=email.pk) is True
    assert outbox.outbox_send(email_id=email.pk) is False
    assert len(mail.outbox) == 1
    email.refresh_from_db()
    assert email.attempts == 1 and email.sent_at is not None


def test_an_email_claimed_by_another_worker_is_left_alone_until_the_claim_times_out(db):
    email = queued()
    OutboxEmail.objects.filter(pk=email.pk).update(claimed_at=timezone.now())  # a worker is sending it
    assert outbox.outbox_send(email_id=email.pk) is False
    assert outbox.outbox_flush() == 0
    assert mail.outbox == []
    with time_machine.travel(timezone.now() + outbox.CLAIM_TIMEOUT + timedelta(seconds=1)):
        assert outbox.outbox_flush() == 1  # that worker died: retried
    assert len(mail.outbox) == 1


def test_flush_sends_oldest_first_and_respects_the_limit(db):
    now = timezone.now()
    newer = queued(subject="newer", created_at=now)
    older = queued(subject="older", created_at=now - timedelta(hours=1))
    queued(subject="already sent", sent_at=now)
    assert outbox.outbox_flush(limit=1) == 1
    assert [m.subject for m in mail.outbox] == ["older"]
    older.refresh_from_db()
    newer.refresh_from_db()
    assert older.sent_at is not None and newer.sent_at is None
    assert outbox.outbox_flush() == 1
    assert [m.subject for m in mail.outbox] == ["older", "newer"]


def test_enqueue_renders_the_template(world):
    email = outbox.outbox_enqueue(
        to="dealer@example.com",
        template="registration_stale",
        context={"registration": submit(world), "days": 45, "url": "http://x/1"},
        topic="REG-X",
    )
    assert "no update for 45 days" in email.subject
    assert "\n" not in email.subject
    assert "http://x/1" in email.body


def test_a_refused_email_is_retried_later_and_less_often(db, settings):
    settings.EMAIL_BACKEND = "tests.test_outbox.UnreachableBackend"
    email = OutboxEmail.objects.create(to="a@b.example", subject="s", body="b")
    assert outbox.outbox_send(email_id=email.pk) is False
    email.refresh_from_db()
    assert email.attempts == 1 and email.next_attempt_at > timezone.now()
    assert outbox.outbox_flush() == 0  # not due yet: nothing retried
    email.refresh_from_db()
    assert email.attempts == 1
    with time_machine.travel(timezone.now() + timedelta(minutes=3)):
        outbox.outbox_flush()
    email.refresh_from_db()
    assert email.attempts == 2
    assert outbox.backoff(30) == outbox.MAX_BACKOFF


def test_many_emails_at_once_are_rendered_once_each_and_sent_by_one_task(world, django_capture_on_commit_callbacks):
    context = {"name": "Own Dealer"}
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        count = outbox.outbox_enqueue_many(
            [
                (["a@own.example", "b@own.example"], "invitation", {"invitation": None, **context}, "t1"),
                ([], "invitation", context, "nobody"),
                (["c@other.example"], "invitation", {"invitation": None, **context}, "t2"),
            ]
        )
    assert count == 3
    assert len(callbacks) == 1  # one flush, not a task per email
    assert sorted(m.to[0] for m in mail.outbox) == ["a@own.example", "b@own.example", "c@other.example"]
    assert OutboxEmail.objects.filter(sent_at__isnull=True).count() == 0
    assert outbox.outbox_flush() == 0  # nothing twice
