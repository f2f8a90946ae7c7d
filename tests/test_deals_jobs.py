"""The periodic jobs: review reminders and breaches, expiry of protections, expiry warnings and
stale registrations. Time moves only with time_machine."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core import mail
from django.db import connection
from django.utils import timezone

from deals import services
from deals.models import ProgrammeSettings, Registration, RegistrationEvent
from prm.models import OutboxEmail
from tests.concurrency import at_once
from tests.deal_factories import approved, make_registration, submit

AMS = ZoneInfo("Europe/Amsterdam")
Status = Registration.Status


def at(*args) -> datetime:
    return datetime(*args, tzinfo=AMS)


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Run a job (or anything) and deliver the emails it queued, as a real commit would."""

    def run(job, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return job(**kwargs)

    return run


# --- review reminders and breaches ----------------------------------------------------------------


def test_reminder_at_24_working_hours_then_breach_at_48(world, run):
    with time_machine.travel(at(2026, 11, 16, 9, 0), tick=False):  # Monday
        registration = submit(world)
    mail.outbox.clear()

    with time_machine.travel(at(2026, 11, 17, 8, 59), tick=False):
        assert run(services.review_reminders_send) == (0, 0)
    assert mail.outbox == []

    with time_machine.travel(at(2026, 11, 17, 9, 0), tick=False):
        assert run(services.review_reminders_send) == (1, 0)
    registration.refresh_from_db()
    assert registration.reminded_at == at(2026, 11, 17, 9, 0)
    assert registration.overdue_at is None
    assert [(m.to, m.subject.split(":")[0]) for m in mail.outbox] == [([world.pm_a.email], "Reminder")]

    with time_machine.travel(at(2026, 11, 17, 15, 0), tick=False):
        assert run(services.review_reminders_send) == (0, 0)
    with time_machine.travel(at(2026, 11, 18, 8, 59), tick=False):
        assert run(services.review_reminders_send) == (0, 0)
    assert len(mail.outbox) == 1

    with time_machine.travel(at(2026, 11, 18, 9, 0), tick=False):
        assert run(services.review_reminders_send) == (0, 1)
        registration.refresh_from_db()
        assert registration.is_overdue()
    assert registration.overdue_at == at(2026, 11, 18, 9, 0)
    assert len(mail.outbox) == 2
    breach = mail.outbox[1]
    assert breach.to == [world.rd_north.email]
    assert breach.subject == f"Overdue: {registration.reference} from Own Dealer B.V."

    with time_machine.travel(at(2026, 11, 18, 9, 15), tick=False):
        assert run(services.review_reminders_send) == (0, 0)
    with time_machine.travel(at(2026, 11, 25, 9, 0), tick=False):
        assert run(services.review_reminders_send) == (0, 0)
    assert len(mail.outbox) == 2
    chasers = OutboxEmail.objects.filter(topic=registration.reference, subject__regex=r"^(Reminder|Overdue):")
    assert sorted(chasers.values_list("to", "attempts")) == [(world.pm_a.email, 1), (world.rd_north.email, 1)]
    assert not chasers.filter(sent_at__isnull=True).exists()


def test_the_weekend_does_not_count_towards_the_reminder(world, run):
    with time_machine.travel(at(2026, 11, 20, 16, 0), tick=False):  # Friday
        submit(world)
    with time_machine.travel(at(2026, 11, 22, 23, 0), tick=False):  # Sunday night: 8 working hours
        assert run(services.review_reminders_send) == (0, 0)
    with time_machine.travel(at(2026, 11, 23, 16, 0), tick=False):
        assert run(services.review_reminders_send) == (1, 0)


def test_a_dealer_without_partner_manager_reminds_the_regional_director(world, run):
    from tests import factories

    with time_machine.travel(at(2026, 11, 16, 9, 0), tick=False):
        submit(factories.dealer_user(world.orphan))
    mail.outbox.clear()
    with time_machine.travel(at(2026, 11, 17, 9, 0), tick=False):
        assert run(services.review_reminders_send) == (1, 0)
    assert mail.outbox[0].to == [world.rd_north.email]


def test_decided_or_waiting_registrations_are_not_chased(world, run):
    with time_machine.travel(at(2026, 11, 16, 9, 0), tick=False):
        decided = submit(world)
        asked = submit(world)
        services.registration_approve(registration=decided, actor=world.pm_a)
        services.registration_request_info(registration=asked, actor=world.pm_a, reason="Which site?")
    with time_machine.travel(at(2026, 11, 30, 9, 0), tick=False):
        assert run(services.review_reminders_send) == (0, 0)


def test_a_missed_reminder_is_skipped_once_the_deadline_passed(world, run):
    with time_machine.travel(at(2026, 11, 16, 9, 0), tick=False):
        registration = submit(world)
    mail.outbox.clear()
    with time_machine.travel(at(2026, 11, 19, 9, 0), tick=False):  # the job did not run for days
        assert run(services.review_reminders_send) == (0, 1)
    registration.refresh_from_db()
    assert registration.reminded_at is None and registration.overdue_at is not None
    assert [m.to for m in mail.outbox] == [[world.rd_north.email]]


# --- expiry --------------------------------------------------------------------------------------


def approved_until(world, until, status=Status.APPROVED):
    return make_registration(world.own, world.own_user, status, protected=True, protected_until=until)


def expiry_events():
    return RegistrationEvent.objects.filter(action="expire")


def test_protections_expire_exactly_the_past_ones(world):
    moment = at(2026, 6, 1, 0, 30)  # 22:30 UTC on 31 May: "today" is 1 June in Amsterdam
    with time_machine.travel(moment, tick=False):
        today = timezone.localdate()
        assert str(today) == "2026-06-01"
        past = [approved_until(world, today - timedelta(days=1)), approved_until(world, today - timedelta(days=40))]
        last_day = approved_until(world, today)
        future = approved_until(world, today + timedelta(days=1))
        won = approved_until(world, today - timedelta(days=1), status=Status.WON)
        escalated = approved_until(world, today - timedelta(days=1), status=Status.ESCALATED)
        submitted = make_registration(world.own, world.own_user)
        assert services.protections_expire() == 2

    for registration in past:
        registration.refresh_from_db()
        assert registration.status == Status.EXPIRED
        assert registration.status_changed_at == moment
        event = registration.events.get()
        assert (event.action, event.actor, event.from_status, event.to_status) == (
            "expire",
            None,
            Status.APPROVED,
            Status.EXPIRED,
        )
        assert event.created_at == moment
        assert event.reason and event.internal_note == ""
    for registration, status in (
        (last_day, Status.APPROVED),
        (future, Status.APPROVED),
        (won, Status.WON),
        (escalated, Status.ESCALATED),
        (submitted, Status.SUBMITTED),
    ):
        registration.refresh_from_db()
        assert registration.status == status
        assert not registration.events.exists()

    with time_machine.travel(moment + timedelta(minutes=5), tick=False):
        assert services.protections_expire() == 0
    assert expiry_events().count() == 2


def test_the_due_bounds_are_the_first_and_last_due_registration(world):
    """The batches of the expiry run from the lowest to the highest due id (read through the
    status and protection index, not by walking the table): none when nothing is due."""
    today = timezone.localdate()
    table = connection.ops.quote_name(Registration._meta.db_table)
    approved_until(world, today)  # its last day: not due
    assert services._due_bounds(table, today) == (None, None)
    first = approved_until(world, today - timedelta(days=3))
    approved_until(world, today + timedelta(days=2))
    approved_until(world, today - timedelta(days=1), status=Status.WON)
    last = approved_until(world, today - timedelta(days=1))
    approved_until(world, today)
    assert services._due_bounds(table, today) == (first.pk, last.pk)


def test_protections_expire_with_an_explicit_today(world):
    registration = approved_until(world, timezone.localdate() + timedelta(days=5))
    assert services.protections_expire(today=registration.protected_until) == 0
    assert services.protections_expire(today=registration.protected_until + timedelta(days=1)) == 1
    registration.refresh_from_db()
    assert registration.status == Status.EXPIRED


@pytest.mark.parametrize("batch_size", [1, 2, 3, 20_000])
def test_small_batches_give_the_same_result(world, batch_size):
    yesterday = timezone.localdate() - timedelta(days=1)
    eligible, others = [], []
    for i in range(14):  # seven eligible rows, spread among the ids
        if i % 2:
            eligible.append(approved_until(world, yesterday))
        else:
            others.append(approved_until(world, yesterday + timedelta(days=2)))
    # and a gap in the ids
    make_registration(world.own, world.own_user).delete()
    eligible.append(approved_until(world, yesterday))
    assert services.protections_expire(batch_size=batch_size) == 8
    assert services.protections_expire(batch_size=batch_size) == 0
    assert set(Registration.objects.filter(status=Status.EXPIRED).values_list("pk", flat=True)) == {
        r.pk for r in eligible
    }
    assert sorted(expiry_events().values_list("registration_id", flat=True)) == sorted(r.pk for r in eligible)
    assert not Registration.objects.filter(pk__in=[r.pk for r in others]).exclude(status=Status.APPROVED).exists()


def test_a_registration_reported_won_before_the_job_is_not_touched(world):
    with time_machine.travel(at(2026, 3, 2, 10, 0), tick=False):
        registration = approved(world)
        keep = approved(world)
    end = registration.protected_until
    with time_machine.travel(at(2026, 3, 2, 10, 0) + timedelta(days=91), tick=False):
        assert timezone.localdate() > end
        services.registration_report_won(
            registration=registration, actor=world.own_user, value=Decimal("1000"), won_on=end
        )
        assert services.protections_expire() == 1
    registration.refresh_from_db()
    keep.refresh_from_db()
    assert registration.status == Status.WON
    assert [e.action for e in registration.events.all()] == ["submit", "approve", "report_won"]
    assert keep.status == Status.EXPIRED


def test_a_rerun_at_the_same_instant_writes_no_second_history_row(world):
    """With the clock frozen (as in these tests), two runs stamp the same moment; the second must
    still only write history for the rows it expired itself, also for rows with higher ids."""
    today = timezone.localdate()
    with time_machine.travel(timezone.now(), tick=False):
        later = approved_until(world, today)  # the lower id: not yet due
        first = approved_until(world, today - timedelta(days=1))
        assert services.protections_expire() == 1
        Registration.objects.filter(pk=later.pk).update(protected_until=today - timedelta(days=1))
        assert services.protections_expire() == 1
    assert first.events.count() == 1
    assert later.events.count() == 1


@pytest.mark.django_db(transaction=True)  # staff groups come back after the flush (dealers.roles, post_migrate)
def test_two_workers_at_once_expire_each_row_once(world):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite has no row locks, and one writer at a time serialises the workers")
    yesterday = timezone.localdate() - timedelta(days=1)
    registrations = [approved_until(world, yesterday) for _ in range(40)]
    for _ in range(3):
        approved_until(world, yesterday + timedelta(days=3))
    counts, errors = at_once(lambda: services.protections_expire(batch_size=4))
    assert errors == []
    assert sum(counts) == len(registrations)
    assert Registration.objects.filter(status=Status.EXPIRED).count() == len(registrations)
    per_row = {r.pk: 0 for r in registrations}
    for registration_id in expiry_events().values_list("registration_id", flat=True):
        per_row[registration_id] += 1
    assert set(per_row.values()) == {1}


# --- expiry warnings -----------------------------------------------------------------------------


def warnings_for(registration):
    return list(
        OutboxEmail.objects.filter(topic=registration.reference, subject__contains="protection ends").values_list(
            "subject", flat=True
        )
    )


@pytest.fixture
def protected(world):
    """Approved on 2 March 2026: protected until 31 May 2026."""
    with time_machine.travel(at(2026, 3, 2, 10, 0), tick=False):
        registration = approved(world)
    assert registration.protected_until == at(2026, 5, 31).date()
    return registration


def on(day, func, **kwargs):
    """Call func at 02:00 (the nightly run) on that day of 2026."""
    with time_machine.travel(at(2026, *day, 2, 0), tick=False):
        return func(**kwargs)


def test_warnings_at_14_and_3_days_each_once(world, protected, run):
    ref = protected.reference
    assert on((5, 16), services.expiry_warnings_send) == 0  # 15 days left
    assert on((5, 17), run, job=services.expiry_warnings_send) == 1  # 14 days left
    assert on((5, 17), services.expiry_warnings_send) == 0
    assert on((5, 18), services.expiry_warnings_send) == 0
    assert on((5, 27), services.expiry_warnings_send) == 0  # 4 days left
    assert on((5, 28), run, job=services.expiry_warnings_send) == 1  # 3 days left
    for day in ((5, 28), (5, 29), (5, 30), (5, 31)):
        assert on(day, services.expiry_warnings_send) == 0
    assert warnings_for(protected) == [f"{ref}: protection ends in 14 days", f"{ref}: protection ends in 3 days"]
    assert [m.to for m in mail.outbox if "protection ends" in m.subject] == [[world.own_user.email]] * 2
    protected.refresh_from_db()
    assert protected.expiry_warnings_sent == 2


def test_after_missed_nights_one_warning_that_fits(world, protected):
    assert on((5, 29), services.expiry_warnings_send) == 1  # straight to 2 days left
    assert on((5, 30), services.expiry_warnings_send) == 0
    assert warnings_for(protected) == [f"{protected.reference}: protection ends in 2 days"]


def test_a_first_warning_late_then_the_second_on_time(world, protected):
    assert on((5, 21), services.expiry_warnings_send) == 1  # 10 days left
    assert on((5, 27), services.expiry_warnings_send) == 0
    assert on((5, 28), services.expiry_warnings_send) == 1
    assert len(warnings_for(protected)) == 2


def test_configured_warning_days(world, protected):
    programme = ProgrammeSettings.load()
    programme.first_expiry_warning_days, programme.second_expiry_warning_days = 7, 1
    programme.save()
    assert on((5, 17), services.expiry_warnings_send) == 0
    assert on((5, 24), services.expiry_warnings_send) == 1
    assert on((5, 30), services.expiry_warnings_send) == 1
    assert on((5, 31), services.expiry_warnings_send) == 0


def test_an_extension_starts_the_warnings_again(world, protected):
    assert on((5, 17), services.expiry_warnings_send) == 1
    assert on((5, 28), services.expiry_warnings_send) == 1
    with time_machine.travel(at(2026, 5, 28, 10, 0), tick=False):
        request = services.extension_request(registration=protected, actor=world.own_user, reason="Board meets.")
        services.extension_approve(request=request, actor=world.pm_a)
    protected.refresh_from_db()
    assert protected.protected_until == at(2026, 6, 30).date()
    assert on((5, 29), services.expiry_warnings_send) == 0
    assert on((6, 16), services.expiry_warnings_send) == 1
    assert on((6, 27), services.expiry_warnings_send) == 1
    assert len(warnings_for(protected)) == 4


def test_no_warnings_for_closed_or_expired_registrations(world, protected):
    with time_machine.travel(at(2026, 5, 10, 10, 0), tick=False):
        services.registration_report_lost(registration=protected, actor=world.own_user, reason="price")
    assert on((5, 17), services.expiry_warnings_send) == 0
    assert on((5, 28), services.expiry_warnings_send) == 0
    stale_end = make_registration(
        world.own, world.own_user, Status.APPROVED, protected_until=at(2026, 5, 27).date(), expiry_warnings_sent=0
    )
    assert on((5, 28), services.expiry_warnings_send) == 0  # past its end: the expiry job's business
    stale_end.refresh_from_db()
    assert stale_end.expiry_warnings_sent == 0


# --- stale registrations -------------------------------------------------------------------------


def test_stale_after_45_days_flagged_once_and_an_update_clears_it(world, protected, run):
    approved_at = at(2026, 3, 2, 10, 0).astimezone(UTC)  # elapsed days: summer time starts in between
    with time_machine.travel(approved_at + timedelta(days=45) - timedelta(minutes=1), tick=False):
        assert run(services.stale_registrations_flag) == 0
    with time_machine.travel(approved_at + timedelta(days=45, minutes=1), tick=False):
        assert run(services.stale_registrations_flag) == 1
        assert run(services.stale_registrations_flag) == 0
    with time_machine.travel(approved_at + timedelta(days=46), tick=False):
        assert run(services.stale_registrations_flag) == 0
    protected.refresh_from_db()
    assert protected.stale_flagged_at == approved_at + timedelta(days=45, minutes=1)
    stale_mail = [m for m in mail.outbox if "no update for 45 days" in m.subject]
    assert [m.to for m in stale_mail] == [[world.own_user.email]]

    with time_machine.travel(approved_at + timedelta(days=47), tick=False):
        services.registration_update(
            registration=protected,
            actor=world.own_user,
            expected_close_date=protected.expected_close_date,
            decision_stage="late",
            next_steps="Contract with the lawyers.",
            competitors="",
        )
    protected.refresh_from_db()
    assert protected.stale_flagged_at is None
    assert protected.last_activity_at == approved_at + timedelta(days=47)
    with time_machine.travel(approved_at + timedelta(days=47 + 44), tick=False):
        assert services.stale_registrations_flag() == 0


def test_an_extension_request_also_counts_as_activity(world, protected):
    with time_machine.travel(at(2026, 3, 2, 10, 0) + timedelta(days=50), tick=False):
        assert services.stale_registrations_flag() == 1
        services.extension_request(registration=protected, actor=world.own_user, reason="Board meets.")
    protected.refresh_from_db()
    assert protected.stale_flagged_at is None


def test_only_protected_registrations_go_stale(world):
    long_ago = timezone.now() - timedelta(days=100)
    for status in Status:
        make_registration(world.own, world.own_user, status, last_activity_at=long_ago)
    assert services.stale_registrations_flag() == 1
    assert Registration.objects.get(stale_flagged_at__isnull=False).status == Status.APPROVED


def test_a_transition_after_a_stale_flag_clears_it_so_a_new_quiet_spell_is_flagged_again(world, protected):
    """Every transition counts as activity (it moves last_activity_at); it must clear the flag too,
    or the registration can never be flagged again."""
    approved_at = at(2026, 3, 2, 10, 0).astimezone(UTC)
    with time_machine.travel(approved_at + timedelta(days=46), tick=False):
        assert services.stale_registrations_flag() == 1
    with time_machine.travel(approved_at + timedelta(days=50), tick=False):
        services.registration_escalate(registration=protected, actor=world.pm_a, internal_note="Overlap.")
        services.registration_escalation_decide(
            registration=protected, actor=world.rd_north, award=True, reason="Yours."
        )
    protected.refresh_from_db()
    assert protected.status == Status.APPROVED
    assert protected.stale_flagged_at is None
    with time_machine.travel(approved_at + timedelta(days=50 + 46), tick=False):
        assert services.stale_registrations_flag() == 1
