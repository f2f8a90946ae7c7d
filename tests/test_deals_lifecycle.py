"""The registration lifecycle: every move of services.TRANSITIONS, allowed and refused, by state
and by party; then what each transition records."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.utils import timezone

from deals import services
from deals.models import (
    ExtensionRequest,
    Holiday,
    ProgrammeSettings,
    ReferenceCounter,
    Registration,
    RegistrationEvent,
)
from deals.services import NotAllowed, Party, RegistrationError
from prm.models import OutboxEmail
from tests import factories
from tests.deal_factories import (
    CustomerFactory,
    ProductFactory,
    ProductLineFactory,
    approved,
    make_registration,
    submit,
)

AMS = ZoneInfo("Europe/Amsterdam")
Status = Registration.Status
ALL_STATUSES = list(Status)


def at(*args) -> datetime:
    return datetime(*args, tzinfo=AMS)


def set_programme(**values) -> ProgrammeSettings:
    programme = ProgrammeSettings.load()
    for name, value in values.items():
        setattr(programme, name, value)
    programme.save()
    return programme


# --- the transition matrix ---------------------------------------------------------------------

# Who each party is, in the `world` of conftest (the registrations belong to `own`, region north).
ACTORS = ["own_admin", "own_user", "other_admin", "pm_a", "pm_b", "rd_north", "rd_south", "channel_admin"]
ALLOWED = {
    Party.DEALER: {"own_admin", "own_user"},
    Party.REVIEWER: {"pm_a", "rd_north", "channel_admin"},
    Party.DIRECTOR: {"rd_north", "channel_admin"},
}

# The narrowest allowed person of each party (the channel admin may do anything a reviewer may).
NARROWEST = {Party.DEALER: "own_user", Party.REVIEWER: "pm_a", Party.DIRECTOR: "rd_north"}


def _extension(registration, actor):
    request = registration.extension_requests.get(status=ExtensionRequest.Status.PENDING)
    return services.extension_approve(request=request, actor=actor)


# One call per action of TRANSITIONS (except submit, which has no source row, and expire, which
# is the nightly job), with valid arguments: only the state and the actor decide the outcome.
CALLS = {
    "request_info": lambda r, a: services.registration_request_info(
        registration=r, actor=a, reason="Which site is it for?", internal_note="Check the territory."
    ),
    "resubmit": lambda r, a: services.registration_resubmit(registration=r, actor=a, reason="Site added."),
    "approve": lambda r, a: services.registration_approve(registration=r, actor=a),
    "reject": lambda r, a: services.registration_reject(registration=r, actor=a, reason="Not a new project."),
    "withdraw": lambda r, a: services.registration_withdraw(registration=r, actor=a),
    "escalate": lambda r, a: services.registration_escalate(registration=r, actor=a, internal_note="Overlap."),
    "award": lambda r, a: services.registration_escalation_decide(
        registration=r, actor=a, award=True, reason="You registered first."
    ),
    "decline": lambda r, a: services.registration_escalation_decide(
        registration=r, actor=a, award=False, reason="Another dealer registered first."
    ),
    "revoke": lambda r, a: services.registration_escalation_decide(
        registration=r, actor=a, award=False, reason="The customer chose another partner."
    ),
    "extend": _extension,
    "report_won": lambda r, a: services.registration_report_won(
        registration=r, actor=a, value=Decimal("2500.00"), won_on=timezone.localdate()
    ),
    "report_lost": lambda r, a: services.registration_report_lost(registration=r, actor=a, reason="price"),
}
MATRIX_ACTIONS = [name for name in services.TRANSITIONS if name not in ("submit", "expire")]


def test_every_transition_has_a_call_in_the_matrix():
    assert set(CALLS) == set(MATRIX_ACTIONS)


def build(world, status, action):
    """A registration of `own` in `status`. For "revoke" it held a protection (escalated after
    approval), for "decline" it did not (escalated as a submission), where the status allows."""
    protected = None
    if action == "revoke" and status in (Status.ESCALATED, Status.WITHDRAWN):
        protected = True
    if action == "decline" and status in (Status.ESCALATED, Status.WITHDRAWN):
        protected = False
    registration = make_registration(world.own, world.own_user, status, protected=protected)
    if action == "extend":  # a pending request, whatever became of the registration since
        ExtensionRequest.objects.create(
            registration=registration, requested_by=world.own_user, reason="The customer needs a month."
        )
    return registration


def snapshot(registration):
    registration.refresh_from_db()
    return (
        registration.status,
        registration.status_changed_at,
        registration.protected_until,
        registration.extension_count,
        list(registration.events.values_list("pk", flat=True)),
        list(registration.extension_requests.values_list("status", flat=True)),
    )


def assert_one_event(registration, action, actor, before_status):
    registration.refresh_from_db()
    events = list(registration.events.all())
    assert len(events) == 1, events
    event = events[0]
    move = services.TRANSITIONS[action]
    assert (event.action, event.actor, event.from_status, event.to_status) == (
        action,
        actor,
        before_status,
        move.target,
    )
    assert registration.status == move.target
    return event


@pytest.mark.parametrize("status", ALL_STATUSES)
@pytest.mark.parametrize("action", MATRIX_ACTIONS)
def test_transition_only_from_its_sources(world, action, status):
    """With a party that may make the move, only the source states allow it; from any other
    state it is refused with a plain RegistrationError and nothing changes."""
    move = services.TRANSITIONS[action]
    actor = getattr(world, NARROWEST[move.party])
    registration = build(world, status, action)
    before = snapshot(registration)
    if status in move.sources:
        CALLS[action](registration, actor)
        assert_one_event(registration, action, actor, status)
    else:
        with pytest.raises(RegistrationError) as refused:
            CALLS[action](registration, actor)
        assert not isinstance(refused.value, NotAllowed)
        assert registration.reference in str(refused.value) or "extension" in str(refused.value)
        assert snapshot(registration) == before


PARTY_CASES = [
    (action, source, actor)
    for action in MATRIX_ACTIONS
    for source in services.TRANSITIONS[action].sources
    for actor in ACTORS
]


@pytest.mark.parametrize(("action", "source", "actor_name"), PARTY_CASES)
def test_transition_only_by_its_party(world, action, source, actor_name):
    """From each source state: the right party succeeds (one history row), everyone else gets
    NotAllowed and nothing changes."""
    move = services.TRANSITIONS[action]
    actor = getattr(world, actor_name)
    registration = build(world, source, action)
    before = snapshot(registration)
    if actor_name in ALLOWED[move.party]:
        CALLS[action](registration, actor)
        assert_one_event(registration, action, actor, source)
    else:
        with pytest.raises(NotAllowed):
            CALLS[action](registration, actor)
        assert snapshot(registration) == before


@pytest.mark.parametrize(
    ("actor_name", "allowed"),
    [("rd_north", True), ("channel_admin", True), ("pm_a", False), ("pm_b", False), ("rd_south", False)],
)
def test_dealer_without_partner_manager_is_reviewed_by_its_regional_director(world, actor_name, allowed):
    registration = make_registration(world.orphan, factories.dealer_user(world.orphan))
    actor = getattr(world, actor_name)
    if allowed:
        services.registration_approve(registration=registration, actor=actor)
        assert_one_event(registration, "approve", actor, Status.SUBMITTED)
    else:
        with pytest.raises(NotAllowed):
            services.registration_approve(registration=registration, actor=actor)
        registration.refresh_from_db()
        assert registration.status == Status.SUBMITTED


def test_a_person_who_left_the_dealer_can_no_longer_act(world):
    registration = make_registration(world.own, world.own_user, Status.APPROVED)
    membership = world.own_user.membership
    membership.deactivated_at = timezone.now()
    membership.save()
    leaver = type(world.own_user).objects.get(pk=world.own_user.pk)  # fresh: no cached membership
    with pytest.raises(NotAllowed):
        services.registration_withdraw(registration=registration, actor=leaver)
    with pytest.raises(NotAllowed):
        submit(leaver)


@pytest.mark.parametrize("status", ALL_STATUSES)
def test_expire_only_from_approved(world, status):
    yesterday = timezone.localdate() - timedelta(days=1)
    registration = make_registration(world.own, world.own_user, status, protected=True, protected_until=yesterday)
    assert services.protections_expire() == (1 if status == Status.APPROVED else 0)
    registration.refresh_from_db()
    if status == Status.APPROVED:
        assert_one_event(registration, "expire", None, Status.APPROVED)
    else:
        assert registration.status == status
        assert not registration.events.exists()


@pytest.mark.parametrize("actor_name", ["pm_a", "rd_north", "channel_admin"])
def test_vendor_staff_cannot_submit(world, actor_name):
    with pytest.raises(NotAllowed):
        submit(getattr(world, actor_name))
    assert not Registration.objects.exists()


@pytest.mark.parametrize("actor_name", ["own_admin", "own_user", "other_admin"])
def test_dealer_people_submit_for_their_own_organisation(world, actor_name):
    actor = getattr(world, actor_name)
    registration = submit(actor)
    assert registration.organisation == actor.membership.organisation
    assert registration.registered_by == actor
    event = registration.events.get()
    assert (event.action, event.actor, event.from_status, event.to_status) == ("submit", actor, "", Status.SUBMITTED)


# --- submitting ----------------------------------------------------------------------------------


def test_submit_numbers_references_per_year(world):
    with time_machine.travel(at(2026, 3, 2, 10, 0), tick=False):
        first, second = submit(world), submit(world.other_admin)
    with time_machine.travel(at(2027, 1, 1, 0, 30), tick=False):  # 31 Dec 23:30 UTC: 2027 in Amsterdam
        third = submit(world)
    assert [first.reference, second.reference, third.reference] == [
        "REG-2026-000001",
        "REG-2026-000002",
        "REG-2027-000001",
    ]
    assert ReferenceCounter.objects.get(year=2026).last == 2


def test_submit_records_lines_value_and_notifies(world):
    product = ProductFactory(list_price=Decimal("1250.00"))
    registration = submit(
        world,
        lines=[
            services.LineData(product=product, quantity=2),
            services.LineData(product=ProductFactory(), quantity=1, value=Decimal("99.995")),
        ],
    )
    assert [line.value for line in registration.lines.all()] == [Decimal("2500.00"), Decimal("100.00")]
    assert registration.expected_value == Decimal("2600.00")
    assert registration.customer.organisation == world.own
    assert set(OutboxEmail.objects.values_list("to", flat=True)) == {world.own_user.email, world.pm_a.email}


def test_submit_review_due_48_working_hours_friday_to_tuesday(world):
    with time_machine.travel(at(2026, 11, 20, 16, 0), tick=False):  # a Friday
        registration = submit(world)
    assert registration.first_submitted_at == at(2026, 11, 20, 16, 0)
    assert registration.review_started_at == at(2026, 11, 20, 16, 0)
    assert registration.review_remind_at == at(2026, 11, 23, 16, 0)  # 24 working hours: Monday
    assert registration.review_due_at == at(2026, 11, 24, 16, 0)  # Tuesday
    assert registration.reminded_at is None and registration.overdue_at is None


def test_a_holiday_in_the_admin_moves_the_deadline(world):
    Holiday.objects.create(date=at(2026, 11, 23).date(), name="A Monday off")
    with time_machine.travel(at(2026, 11, 20, 16, 0), tick=False):
        registration = submit(world)
    assert registration.review_due_at == at(2026, 11, 25, 16, 0)


def test_configured_sla_hours_apply(world):
    set_programme(review_sla_hours=24, reminder_hours=8)
    with time_machine.travel(at(2026, 11, 23, 9, 0), tick=False):
        registration = submit(world)
    assert registration.review_due_at == at(2026, 11, 24, 9, 0)
    assert registration.review_remind_at == at(2026, 11, 23, 17, 0)


def lowest_tier(**fields):
    from tiers.selectors import lowest_tier as lowest

    tier = lowest()
    for name, value in fields.items():
        setattr(tier, name, value)
    tier.save()
    return tier


def test_open_registration_cap_refuses_the_next_submit(world):
    lowest_tier(open_registration_cap=2)  # the cap follows the tier; never-evaluated dealers are in the lowest
    first = submit(world)
    submit(world.own_admin)
    make_registration(world.own, world.own_user, Status.WON)  # closed ones do not count
    with pytest.raises(RegistrationError, match="2 open registrations"):
        submit(world)
    assert Registration.objects.filter(organisation=world.own).count() == 3
    submit(world.other_admin)  # another dealer has its own cap
    services.registration_withdraw(registration=first, actor=world.own_user)
    submit(world)


def test_a_customer_of_another_dealer_is_refused(world):
    theirs = CustomerFactory(organisation=world.other)
    with pytest.raises(NotAllowed):
        submit(world, existing_customer=theirs)
    assert not Registration.objects.exists()
    assert not ReferenceCounter.objects.filter(last__gt=0).exists()


def test_an_existing_own_customer_is_reused(world):
    ours = CustomerFactory(organisation=world.own)
    registration = submit(world, existing_customer=ours)
    assert registration.customer == ours


def test_a_direct_only_product_line_is_flagged_not_refused(world):
    product = ProductFactory(line=ProductLineFactory(direct_only=True, name="Industrial"))
    registration = submit(world, lines=[services.LineData(product=product, quantity=2)])
    flag = registration.flags.get()
    assert flag.kind == "direct_only" and "Industrial is sold by the vendor's direct team only" in flag.explanation


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"lines": []}, "at least one"),
        ({"customer": None}, "customer"),
        ({"expected_close_date": timezone.localdate() - timedelta(days=1)}, "past"),
    ],
)
def test_submit_refuses_incomplete_registrations(world, overrides, message):
    with pytest.raises(RegistrationError, match=message):
        submit(world, **overrides)
    assert not Registration.objects.exists()


def test_submit_refuses_zero_quantity_and_inactive_products(world):
    with pytest.raises(RegistrationError, match="positive"):
        submit(world, lines=[services.LineData(product=ProductFactory(), quantity=0)])
    with pytest.raises(RegistrationError, match="no longer sold"):
        submit(world, lines=[services.LineData(product=ProductFactory(active=False), quantity=1)])


# --- info requested and resubmitted --------------------------------------------------------------


def test_resubmit_restarts_the_clock_but_not_the_first_submission(world):
    with time_machine.travel(at(2026, 11, 16, 9, 0), tick=False):  # Monday
        registration = submit(world)
    with time_machine.travel(at(2026, 11, 17, 10, 0), tick=False):  # past the reminder mark
        services.review_reminders_send()
    with time_machine.travel(at(2026, 11, 18, 10, 0), tick=False):  # past the deadline
        services.review_reminders_send()
        registration.refresh_from_db()
        assert registration.reminded_at and registration.overdue_at
        services.registration_request_info(
            registration=registration, actor=world.pm_a, reason="Which site?", internal_note="Looks like X."
        )
    with time_machine.travel(at(2026, 11, 19, 14, 0), tick=False):  # Thursday
        services.registration_resubmit(registration=registration, actor=world.own_user, reason="Site B.")
    registration.refresh_from_db()
    assert registration.status == Status.SUBMITTED
    assert registration.first_submitted_at == at(2026, 11, 16, 9, 0)
    assert registration.review_started_at == at(2026, 11, 19, 14, 0)
    assert registration.review_remind_at == at(2026, 11, 20, 14, 0)
    assert registration.review_due_at == at(2026, 11, 23, 14, 0)  # Friday + the weekend → Monday
    assert registration.reminded_at is None and registration.overdue_at is None
    request_info = registration.events.get(action="request_info")
    assert (request_info.reason, request_info.internal_note) == ("Which site?", "Looks like X.")


@pytest.mark.parametrize("reason", ["", "   "])
def test_request_info_and_reject_need_a_reason_the_dealer_sees(world, reason):
    registration = submit(world)
    for call in (services.registration_request_info, services.registration_reject):
        with pytest.raises(RegistrationError, match="Give"):
            call(registration=registration, actor=world.pm_a, reason=reason, internal_note="internal only")
    registration.refresh_from_db()
    assert registration.status == Status.SUBMITTED
    assert registration.events.count() == 1


def test_reject_keeps_the_internal_note_apart_from_the_reason(world):
    registration = submit(world)
    with time_machine.travel(timezone.now() + timedelta(hours=1)):
        services.registration_reject(
            registration=registration,
            actor=world.pm_a,
            reason="  This customer already buys direct.  ",
            internal_note="Named account of the direct team.",
        )
    registration.refresh_from_db()
    event = registration.events.get(action="reject")
    assert event.reason == "This customer already buys direct."
    assert event.internal_note == "Named account of the direct team."
    assert registration.decided_by == world.pm_a and registration.decided_at is not None
    assert registration.protected_until is None
    email = OutboxEmail.objects.filter(to=world.own_user.email).latest("pk")
    assert "This customer already buys direct." in email.body
    assert "Named account" not in email.body


# --- approval ------------------------------------------------------------------------------------


def test_approve_fixes_protection_margin_and_review_time(world):
    lowest_tier(base_margin_percent=Decimal("12.00"), registered_extra_margin_percent=Decimal("4.50"))
    with time_machine.travel(at(2026, 11, 20, 16, 0), tick=False):  # Friday
        registration = submit(world)
    with time_machine.travel(at(2026, 11, 23, 10, 30), tick=False):  # Monday: 18.5 working hours later
        services.registration_approve(registration=registration, actor=world.pm_a, internal_note="Fine.")
    registration.refresh_from_db()
    assert registration.status == Status.APPROVED
    assert registration.protected_until == at(2026, 11, 23).date() + timedelta(days=90)
    assert registration.margin_percent == Decimal("16.50")
    assert registration.decided_at == at(2026, 11, 23, 10, 30)
    assert registration.decided_by == world.pm_a
    assert registration.review_working_hours == Decimal("18.50")
    assert registration.decided_in_time is True
    # The margin is fixed at approval: a later change to the tier does not touch it.
    lowest_tier(base_margin_percent=Decimal("20.00"))
    registration.refresh_from_db()
    assert registration.margin_percent == Decimal("16.50")


def test_a_late_approval_is_not_in_time(world):
    with time_machine.travel(at(2026, 11, 20, 16, 0), tick=False):
        registration = submit(world)
    with time_machine.travel(at(2026, 11, 24, 16, 0), tick=False):  # exactly at the deadline: in time
        on_time = submit(world)
    with time_machine.travel(at(2026, 11, 24, 16, 1), tick=False):
        services.registration_approve(registration=registration, actor=world.rd_north)
    registration.refresh_from_db()
    assert registration.decided_in_time is False
    assert registration.review_working_hours == Decimal("48.02")
    with time_machine.travel(on_time.review_due_at, tick=False):
        services.registration_approve(registration=on_time, actor=world.pm_a)
    on_time.refresh_from_db()
    assert on_time.decided_in_time is True


@pytest.mark.parametrize(
    ("line_days", "expected_days"),
    [
        ([None], 90),
        ([180], 180),
        ([180, None], 180),
        ([None, 180], 180),
        ([30], 30),
        ([30, None], 90),
        ([120, 180, None], 180),
    ],
)
def test_protection_is_the_longest_of_the_lines(world, line_days, expected_days):
    products = [ProductFactory(line=ProductLineFactory(protection_days=days)) for days in line_days]
    registration = approved(world, lines=[services.LineData(product=p, quantity=2) for p in products])
    assert registration.protected_until == timezone.localdate() + timedelta(days=expected_days)


def test_configured_default_protection_days(world):
    set_programme(default_protection_days=60)
    registration = approved(world)
    assert registration.protected_until == timezone.localdate() + timedelta(days=60)


# --- bulk approval -------------------------------------------------------------------------------


def test_bulk_approve_refuses_the_whole_batch_when_one_is_outside_the_queue(world):
    ours = [submit(world) for _ in range(3)]
    theirs = submit(world.other_admin)
    ids = [r.pk for r in ours] + [theirs.pk]
    with pytest.raises(NotAllowed, match="Nothing was approved"):
        services.registrations_bulk_approve(registration_ids=ids, actor=world.pm_a)
    assert not Registration.objects.filter(status=Status.APPROVED).exists()
    assert not RegistrationEvent.objects.filter(action="approve").exists()


def test_bulk_approve_refuses_an_unknown_id(world):
    ours = submit(world)
    with pytest.raises(NotAllowed):
        services.registrations_bulk_approve(registration_ids=[ours.pk, ours.pk + 1000], actor=world.pm_a)
    ours.refresh_from_db()
    assert ours.status == Status.SUBMITTED


def test_bulk_approve_approves_the_rest(world):
    ours = [submit(world) for _ in range(3)]
    waiting = submit(world)
    services.registration_request_info(registration=waiting, actor=world.pm_a, reason="Which site?")
    ids = [r.pk for r in ours] + [waiting.pk, ours[0].pk]
    result = services.registrations_bulk_approve(registration_ids=ids, actor=world.pm_a)
    assert sorted(result.approved) == sorted(r.reference for r in ours)
    assert list(result.refused) == [waiting.reference]
    for registration in ours:
        registration.refresh_from_db()
        assert registration.status == Status.APPROVED and registration.protected_until is not None
        assert registration.events.filter(action="approve", actor=world.pm_a).count() == 1
    waiting.refresh_from_db()
    assert waiting.status == Status.INFO_REQUESTED


def test_bulk_approve_by_a_dealer_is_refused(world):
    ours = submit(world)
    with pytest.raises(NotAllowed):
        services.registrations_bulk_approve(registration_ids=[ours.pk], actor=world.own_admin)


# --- escalation ----------------------------------------------------------------------------------


def test_escalate_needs_an_internal_note(world):
    registration = submit(world)
    with pytest.raises(RegistrationError, match="note"):
        services.registration_escalate(registration=registration, actor=world.pm_a, internal_note=" ")
    registration.refresh_from_db()
    assert registration.status == Status.SUBMITTED and registration.events.count() == 1


def test_escalate_tells_the_director_the_note_and_the_dealer_only_a_neutral_reason(world):
    registration = submit(world)
    OutboxEmail.objects.all().delete()
    services.registration_escalate(
        registration=registration, actor=world.pm_a, internal_note="Other Dealer registered it too."
    )
    event = registration.events.get(action="escalate")
    assert event.internal_note == "Other Dealer registered it too."
    assert "Other Dealer" not in event.reason
    to_director = OutboxEmail.objects.get(to=world.rd_north.email)
    assert "Other Dealer registered it too." in to_director.body
    to_dealer = OutboxEmail.objects.get(to=world.own_user.email)
    assert "Other Dealer" not in to_dealer.body


def test_escalation_award_protects_a_submission(world):
    line = ProductLineFactory(protection_days=180)
    registration = submit(world, lines=[services.LineData(product=ProductFactory(line=line), quantity=1)])
    services.registration_escalate(registration=registration, actor=world.pm_a, internal_note="Overlap.")
    services.registration_escalation_decide(
        registration=registration, actor=world.rd_north, award=True, reason="You registered first."
    )
    registration.refresh_from_db()
    assert registration.status == Status.APPROVED
    assert registration.protected_until == timezone.localdate() + timedelta(days=180)
    assert registration.margin_percent == ProgrammeSettings.load().registered_margin_percent
    assert registration.decided_by == world.rd_north
    assert registration.decided_in_time is not None


def test_escalation_award_keeps_an_existing_protection(world):
    registration = approved(world)
    protected_until = registration.protected_until
    with time_machine.travel(timezone.now() + timedelta(days=5)):
        services.registration_escalate(registration=registration, actor=world.pm_a, internal_note="Overlap.")
        services.registration_escalation_decide(
            registration=registration, actor=world.channel_admin, award=True, reason="Yours."
        )
    registration.refresh_from_db()
    assert registration.status == Status.APPROVED
    assert registration.protected_until == protected_until


def test_escalation_refusal_rejects_a_submission_and_revokes_a_protection(world):
    submission = submit(world)
    protection = approved(world)
    for registration in (submission, protection):
        services.registration_escalate(registration=registration, actor=world.pm_a, internal_note="Overlap.")
        services.registration_escalation_decide(
            registration=registration, actor=world.rd_north, award=False, reason="The customer chose."
        )
        registration.refresh_from_db()
    assert submission.status == Status.REJECTED
    assert protection.status == Status.REVOKED
    assert submission.events.latest("pk").action == "decline"
    assert protection.events.latest("pk").action == "revoke"


def test_escalation_decision_needs_a_reason(world):
    registration = make_registration(world.own, world.own_user, Status.ESCALATED)
    with pytest.raises(RegistrationError, match="reason"):
        services.registration_escalation_decide(registration=registration, actor=world.rd_north, award=False, reason="")
    registration.refresh_from_db()
    assert registration.status == Status.ESCALATED


# --- won and lost --------------------------------------------------------------------------------


def test_report_won_records_value_and_date(world):
    registration = approved(world)
    services.registration_report_won(
        registration=registration, actor=world.own_admin, value=Decimal("2345.675"), won_on=timezone.localdate()
    )
    registration.refresh_from_db()
    assert (registration.status, registration.won_value, registration.won_date) == (
        Status.WON,
        Decimal("2345.68"),
        timezone.localdate(),
    )


@pytest.mark.parametrize(
    ("value", "days", "message"),
    [
        (Decimal("0"), 0, "positive"),
        (Decimal("-1"), 0, "positive"),
        (None, 0, "positive"),
        (Decimal("100"), -3, "before it was registered"),
        (Decimal("100"), 1, "future"),
    ],
)
def test_report_won_refuses_impossible_values_and_dates(world, value, days, message):
    with time_machine.travel(at(2026, 5, 12, 10, 0), tick=False):
        registration = approved(world)
    with time_machine.travel(at(2026, 5, 14, 10, 0), tick=False):
        won_on = timezone.localdate() + timedelta(days=days) if days >= 0 else at(2026, 5, 11).date()
        with pytest.raises(RegistrationError, match=message):
            services.registration_report_won(
                registration=registration, actor=world.own_user, value=value, won_on=won_on
            )
    registration.refresh_from_db()
    assert registration.status == Status.APPROVED
    assert registration.events.count() == 2


def test_won_on_the_day_of_submission_is_fine(world):
    with time_machine.travel(at(2026, 5, 12, 0, 30), tick=False):  # 22:30 UTC the day before
        registration = approved(world)
        services.registration_report_won(
            registration=registration, actor=world.own_user, value=Decimal("10"), won_on=at(2026, 5, 12).date()
        )
    registration.refresh_from_db()
    assert registration.status == Status.WON


@pytest.mark.parametrize("reason", ["", "bored", None])
def test_report_lost_needs_a_valid_reason(world, reason):
    registration = approved(world)
    with pytest.raises(RegistrationError, match="lost"):
        services.registration_report_lost(registration=registration, actor=world.own_user, reason=reason)
    registration.refresh_from_db()
    assert registration.status == Status.APPROVED


def test_report_lost_records_reason_and_competitor(world):
    registration = approved(world)
    services.registration_report_lost(
        registration=registration, actor=world.own_user, reason="competitor", competitor=" Rival Inc "
    )
    registration.refresh_from_db()
    assert (registration.status, registration.lost_reason, registration.lost_competitor) == (
        Status.LOST,
        "competitor",
        "Rival Inc",
    )
    assert registration.events.latest("pk").reason == "Lost: Chose a competitor"


# --- extensions ----------------------------------------------------------------------------------


def request_extension(registration, actor, reason="The customer's board meets next month."):
    return services.extension_request(registration=registration, actor=actor, reason=reason)


def test_extension_approve_moves_the_end_and_resets_warnings(world):
    registration = approved(world)
    Registration.objects.filter(pk=registration.pk).update(expiry_warnings_sent=1)
    end = registration.protected_until
    request = request_extension(registration, world.own_user)
    services.extension_approve(request=request, actor=world.pm_a)
    registration.refresh_from_db()
    request.refresh_from_db()
    assert registration.protected_until == end + timedelta(days=30)
    assert (registration.extension_count, registration.expiry_warnings_sent) == (1, 0)
    assert (request.status, request.decided_by) == (ExtensionRequest.Status.APPROVED, world.pm_a)
    event = registration.events.latest("pk")
    assert (event.action, event.from_status, event.to_status, event.actor) == (
        "extend",
        Status.APPROVED,
        Status.APPROVED,
        world.pm_a,
    )


def test_extension_only_for_a_protected_registration(world):
    registration = submit(world)
    with pytest.raises(RegistrationError, match="protected"):
        request_extension(registration, world.own_user)
    assert not ExtensionRequest.objects.exists()


def test_extension_only_by_the_dealer(world):
    registration = approved(world)
    for actor in (world.other_admin, world.pm_a, world.channel_admin):
        with pytest.raises(NotAllowed):
            request_extension(registration, actor)
    request_extension(registration, world.own_admin)


def test_extension_needs_a_reason(world):
    registration = approved(world)
    with pytest.raises(RegistrationError, match="reason"):
        request_extension(registration, world.own_user, reason="  ")


def test_extension_before_expiry_only(world):
    with time_machine.travel(at(2026, 3, 2, 10, 0), tick=False):
        registration = approved(world)
    assert registration.protected_until == at(2026, 5, 31).date()
    with time_machine.travel(at(2026, 5, 31, 23, 0), tick=False):  # the last protected day
        request = request_extension(registration, world.own_user)
        services.extension_decline(request=request, actor=world.pm_a, reason="No.")
    with time_machine.travel(at(2026, 6, 1, 0, 5), tick=False):  # the job has not run yet
        with pytest.raises(RegistrationError, match="ended"):
            request_extension(registration, world.own_user)


def test_one_pending_extension_at_a_time(world):
    registration = approved(world)
    request_extension(registration, world.own_user)
    with pytest.raises(RegistrationError, match="already waiting"):
        request_extension(registration, world.own_admin)
    assert ExtensionRequest.objects.count() == 1


@pytest.mark.parametrize("maximum", [2, 3, 0])
def test_at_most_the_configured_number_of_extensions(world, maximum):
    set_programme(max_extensions=maximum)
    registration = approved(world)
    start = registration.protected_until
    for _ in range(maximum):
        services.extension_approve(request=request_extension(registration, world.own_user), actor=world.pm_a)
    with pytest.raises(RegistrationError, match="maximum"):
        request_extension(registration, world.own_user)
    registration.refresh_from_db()
    assert registration.extension_count == maximum
    assert registration.protected_until == start + timedelta(days=30 * maximum)


def test_declined_extensions_do_not_count(world):
    registration = approved(world)
    for _ in range(3):
        services.extension_decline(
            request=request_extension(registration, world.own_user), actor=world.pm_a, reason="No"
        )
    services.extension_approve(request=request_extension(registration, world.own_user), actor=world.pm_a)
    registration.refresh_from_db()
    assert registration.extension_count == 1


def test_extension_approve_rechecks_the_maximum(world):
    set_programme(max_extensions=1)
    registration = approved(world)
    request = request_extension(registration, world.own_user)
    Registration.objects.filter(pk=registration.pk).update(extension_count=1)
    with pytest.raises(RegistrationError, match="maximum"):
        services.extension_approve(request=request, actor=world.pm_a)
    request.refresh_from_db()
    assert request.status == ExtensionRequest.Status.PENDING


def test_extension_decline_needs_a_reason_and_changes_nothing_else(world):
    registration = approved(world)
    end = registration.protected_until
    request = request_extension(registration, world.own_user)
    with pytest.raises(RegistrationError, match="reason"):
        services.extension_decline(request=request, actor=world.pm_a, reason="")
    request.refresh_from_db()
    assert request.status == ExtensionRequest.Status.PENDING
    services.extension_decline(request=request, actor=world.pm_a, reason="The customer has gone quiet.")
    registration.refresh_from_db()
    request.refresh_from_db()
    assert (registration.status, registration.protected_until, registration.extension_count) == (
        Status.APPROVED,
        end,
        0,
    )
    assert (request.status, request.decision_reason) == (
        ExtensionRequest.Status.DECLINED,
        "The customer has gone quiet.",
    )
    event = registration.events.latest("pk")
    assert (event.action, event.actor, event.reason) == (
        "extension_declined",
        world.pm_a,
        "The customer has gone quiet.",
    )


@pytest.mark.parametrize("actor_name", ["own_user", "other_admin", "pm_b", "rd_south"])
def test_extension_decisions_only_by_the_reviewer(world, actor_name):
    registration = approved(world)
    request = request_extension(registration, world.own_user)
    for decide in (services.extension_approve, services.extension_decline):
        with pytest.raises(NotAllowed):
            decide(request=request, actor=getattr(world, actor_name), reason="x")
    request.refresh_from_db()
    assert request.status == ExtensionRequest.Status.PENDING


def test_an_extension_request_is_decided_once(world):
    registration = approved(world)
    request = request_extension(registration, world.own_user)
    services.extension_approve(request=request, actor=world.pm_a)
    with pytest.raises(RegistrationError, match="already been decided"):
        services.extension_decline(request=request, actor=world.pm_a, reason="Changed my mind.")
    with pytest.raises(RegistrationError, match="already been decided"):
        services.extension_approve(request=request, actor=world.pm_a)
    registration.refresh_from_db()
    assert registration.extension_count == 1


# --- updates -------------------------------------------------------------------------------------


def test_update_is_not_a_transition_but_is_in_the_history(world):
    registration = approved(world)
    services.registration_update(
        registration=registration,
        actor=world.own_user,
        expected_close_date=registration.expected_close_date,
        decision_stage="late",
        next_steps="Sign on Friday.",
        competitors="",
        lines=[
            services.LineData(
                product=ProductFactory(line=registration.lines.first().product.line, list_price=Decimal("10")),
                quantity=3,
            )
        ],
    )
    registration.refresh_from_db()
    assert registration.status == Status.APPROVED
    assert registration.expected_value == Decimal("30.00")
    event = registration.events.latest("pk")
    assert (event.action, event.from_status, event.to_status) == ("update", Status.APPROVED, Status.APPROVED)


def test_protected_registration_cannot_gain_a_product_line_without_review(world):
    registration = approved(world)
    with pytest.raises(RegistrationError, match="Register a new deal for it"):
        services.registration_update(
            registration=registration,
            actor=world.own_user,
            expected_close_date=registration.expected_close_date,
            decision_stage="late",
            next_steps="",
            competitors="",
            lines=[services.LineData(product=ProductFactory(list_price=Decimal("10")), quantity=3)],
        )
    assert registration.lines.count() == 1


def test_award_after_escalation_resumes_the_protection_with_the_days_it_had(world):
    registration = approved(world)
    until = Registration.objects.get(pk=registration.pk).protected_until
    services.registration_escalate(registration=registration, actor=world.pm_a, internal_note="Conflict")
    with time_machine.travel(timezone.now() + timedelta(days=10)):
        services.registration_escalation_decide(
            registration=registration, actor=world.rd_north, award=True, reason="Yours."
        )
    registration.refresh_from_db()
    assert registration.status == Status.APPROVED
    assert registration.protected_until == until + timedelta(days=10)


def test_pending_extension_is_cancelled_when_the_protection_ends(world):
    registration = approved(world)
    request = services.extension_request(registration=registration, actor=world.own_user, reason="Tender late")
    services.registration_withdraw(registration=registration, actor=world.own_user)
    request.refresh_from_db()
    assert request.status == ExtensionRequest.Status.CANCELLED


@pytest.mark.parametrize("actor_name", ["other_admin", "pm_a"])
def test_update_only_by_the_dealer(world, actor_name):
    registration = submit(world)
    with pytest.raises(NotAllowed):
        services.registration_update(
            registration=registration,
            actor=getattr(world, actor_name),
            expected_close_date=registration.expected_close_date,
            decision_stage="",
            next_steps="",
            competitors="",
        )


# --- one history row per transition --------------------------------------------------------------


def test_a_whole_life_writes_one_history_row_per_step(world):
    with time_machine.travel(at(2026, 6, 1, 9, 0), tick=False):
        registration = submit(world)
    steps = [
        (at(2026, 6, 1, 11, 0), "request_info", world.pm_a),
        (at(2026, 6, 2, 9, 0), "resubmit", world.own_user),
        (at(2026, 6, 2, 12, 0), "escalate", world.pm_a),
        (at(2026, 6, 3, 12, 0), "award", world.rd_north),
        (at(2026, 6, 10, 12, 0), "report_won", world.own_admin),
    ]
    for moment, action, actor in steps:
        with time_machine.travel(moment, tick=False):
            CALLS[action](registration, actor)
    events = list(registration.events.all())
    assert [(e.action, e.from_status, e.to_status, e.actor) for e in events] == [
        ("submit", "", Status.SUBMITTED, world.own_user),
        ("request_info", Status.SUBMITTED, Status.INFO_REQUESTED, world.pm_a),
        ("resubmit", Status.INFO_REQUESTED, Status.SUBMITTED, world.own_user),
        ("escalate", Status.SUBMITTED, Status.ESCALATED, world.pm_a),
        ("award", Status.ESCALATED, Status.APPROVED, world.rd_north),
        ("report_won", Status.APPROVED, Status.WON, world.own_admin),
    ]
    assert [e.created_at for e in events[1:]] == [moment for moment, _, _ in steps]
    assert all(e.reason for e in events[1:])
    registration.refresh_from_db()
    assert registration.status_changed_at == at(2026, 6, 10, 12, 0)
    assert registration.first_submitted_at == at(2026, 6, 1, 9, 0)
