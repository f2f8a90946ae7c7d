"""Every change to a registration goes through one function here.

Each transition service locks the row, checks the move against TRANSITIONS and the actor's role,
saves with update_fields, writes the history row and queues the emails, all in one transaction.
Nothing else assigns Registration.status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from dealers.models import Membership, Organisation, User
from deals import conflicts, open_customers
from deals.models import (
    Conflict,
    Customer,
    ExtensionRequest,
    Product,
    ProgrammeSettings,
    ReferenceCounter,
    Registration,
    RegistrationEvent,
    RegistrationLine,
    money,
)
from deals.sla import add_working_hours, working_hours_between
from prm.outbox import outbox_enqueue_each

Status = Registration.Status


class RegistrationError(Exception):
    """A rule refused the action; the message is meant for the person who tried."""


class NotAllowed(RegistrationError):
    pass


class Party(StrEnum):
    DEALER = "dealer"  # an active person of the registering organisation
    REVIEWER = "reviewer"  # vendor staff who look after the dealer (partner manager, regional director, channel admin)
    DIRECTOR = "director"  # the dealer's regional director, or a channel admin
    SYSTEM = "system"  # the nightly jobs


@dataclass(frozen=True)
class Transition:
    sources: tuple[str, ...]
    target: str
    party: Party


OPEN = (Status.SUBMITTED, Status.INFO_REQUESTED, Status.APPROVED, Status.ESCALATED)

# The lifecycle, in one place. A service may only make the move its action names here.
TRANSITIONS: dict[str, Transition] = {
    "submit": Transition(("",), Status.SUBMITTED, Party.DEALER),
    "request_info": Transition((Status.SUBMITTED,), Status.INFO_REQUESTED, Party.REVIEWER),
    "resubmit": Transition((Status.INFO_REQUESTED,), Status.SUBMITTED, Party.DEALER),
    "approve": Transition((Status.SUBMITTED,), Status.APPROVED, Party.REVIEWER),
    "reject": Transition((Status.SUBMITTED,), Status.REJECTED, Party.REVIEWER),
    "withdraw": Transition(OPEN, Status.WITHDRAWN, Party.DEALER),
    "escalate": Transition(
        (Status.SUBMITTED, Status.INFO_REQUESTED, Status.APPROVED), Status.ESCALATED, Party.REVIEWER
    ),
    "award": Transition((Status.ESCALATED,), Status.APPROVED, Party.DIRECTOR),
    "decline": Transition((Status.ESCALATED,), Status.REJECTED, Party.DIRECTOR),  # a submission
    "revoke": Transition((Status.ESCALATED,), Status.REVOKED, Party.DIRECTOR),  # a protection
    "extend": Transition((Status.APPROVED,), Status.APPROVED, Party.REVIEWER),
    "report_won": Transition((Status.APPROVED,), Status.WON, Party.DEALER),
    "report_lost": Transition((Status.APPROVED,), Status.LOST, Party.DEALER),
    "expire": Transition((Status.APPROVED,), Status.EXPIRED, Party.SYSTEM),
}


def allowed_actions(registration: Registration) -> set[str]:
    return {name for name, t in TRANSITIONS.items() if registration.status in t.sources}


# --- who is who ------------------------------------------------------------------------------------


def is_dealer_of(user: User | None, organisation_id: int) -> bool:
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    membership = user.membership
    return bool(membership and membership.organisation_id == organisation_id)


def is_reviewer_of(user: User | None, organisation_id: int) -> bool:
    if user is None or not user.is_authenticated or not user.is_vendor_staff:
        return False
    return Organisation.objects.visible_to(user).filter(pk=organisation_id).exists()


def is_director_of(user: User | None, organisation_id: int) -> bool:
    if user is None or not user.is_authenticated or not user.is_vendor_staff:
        return False
    if user.is_channel_admin:
        return True
    return (
        user.is_regional_director
        and Organisation.objects.filter(pk=organisation_id, region__regional_director=user).exists()
    )


def may_act_for_dealer(user: User | None, registration: Registration) -> bool:
    """A dealer user acts on the registrations they registered; a dealer admin on all of the dealer's."""
    if not is_dealer_of(user, registration.organisation_id):
        return False
    return user.is_dealer_admin or registration.registered_by_id == user.pk


def _check_party(party: Party, actor: User | None, registration: Registration) -> None:
    allowed = {
        Party.DEALER: lambda: may_act_for_dealer(actor, registration),
        Party.REVIEWER: lambda: is_reviewer_of(actor, registration.organisation_id),
        Party.DIRECTOR: lambda: is_director_of(actor, registration.organisation_id),
        Party.SYSTEM: lambda: actor is None,
    }[party]()
    if not allowed:
        who = {
            Party.DEALER: "the person who registered it, or a dealer admin,",
            Party.REVIEWER: "the dealer's partner manager or regional director",
            Party.DIRECTOR: "the regional director",
            Party.SYSTEM: "the portal itself",
        }[party]
        raise NotAllowed(f"Only {who} can do this.")


# --- the transition machinery ------------------------------------------------------------------


def _lock(registration: Registration, action: str | None = None, actor: User | None = None) -> Registration:
    """Re-read the row under a lock; with an action, also check the move and the actor first,
    so that an outsider hears "not allowed" before any remark about their input.

    FOR NO KEY UPDATE (what an UPDATE of the row takes anyway): transitions still wait for each
    other, but a submission that inserts a conflict row referring to this registration (a foreign
    key's KEY SHARE) does not wait for it. A closing transition waits for a submission of its
    customer in progress (deals.open_customers); that submission must never wait for it in turn."""
    locked = (
        Registration.objects.select_for_update(of=("self",), no_key=True)
        .select_related("organisation__region", "organisation__partner_manager", "customer", "registered_by")
        .get(pk=registration.pk)
    )
    if action is not None:
        _check_move(locked, action, actor)
    return locked


def _check_move(
    registration: Registration, action: str, actor: User | None, *, authorised_by_conflict: bool = False
) -> Transition:
    """Refuse a move that TRANSITIONS does not allow from this state, or by this actor. A conflict
    decision (deals.conflicts) has checked its own authority over both registrations, and says so."""
    move = TRANSITIONS[action]
    if registration.status not in move.sources:
        raise RegistrationError(
            f"{registration.reference} is {registration.get_status_display().lower()}; "
            f"it cannot be {ACTION_WORDS[action]} now."
        )
    if not authorised_by_conflict:
        _check_party(move.party, actor, registration)
    return move


def _transition(
    registration: Registration,
    action: str,
    actor: User | None,
    *,
    now: datetime,
    reason: str = "",
    internal_note: str = "",
    fields: dict | None = None,
    authorised_by_conflict: bool = False,
) -> Registration:
    """Check and make one move of TRANSITIONS on a locked row, with its history row."""
    move = _check_move(registration, action, actor, authorised_by_conflict=authorised_by_conflict)
    old = registration.status
    registration.status = move.target
    registration.last_activity_at = now
    registration.stale_flagged_at = None  # activity ends a quiet spell (see stale_registrations_flag)
    changed = ["status", "last_activity_at", "stale_flagged_at"]
    if move.target != old:
        registration.status_changed_at = now
        changed.append("status_changed_at")
        if old == Status.APPROVED:  # the protection ends: an open extension request goes with it
            registration.extension_requests.filter(status=ExtensionRequest.Status.PENDING).update(
                status=ExtensionRequest.Status.CANCELLED, decided_at=now, decision_reason="The protection ended."
            )
        if move.target not in OPEN:  # a closed registration no longer competes for its customer
            conflicts.conflicts_close_for(registration, now=now)
    for name, value in (fields or {}).items():
        setattr(registration, name, value)
        changed.append(name)
    registration.save(update_fields=changed)
    RegistrationEvent.objects.create(
        registration=registration,
        actor=actor,
        created_at=now,
        action=action,
        from_status=old,
        to_status=move.target,
        reason=reason.strip(),
        internal_note=internal_note.strip(),
    )
    return registration


ACTION_WORDS = {
    "submit": "submitted",
    "request_info": "sent back for more information",
    "resubmit": "resubmitted",
    "approve": "approved",
    "reject": "rejected",
    "withdraw": "withdrawn",
    "escalate": "escalated",
    "award": "awarded",
    "decline": "declined",
    "revoke": "revoked",
    "extend": "extended",
    "report_won": "reported as won",
    "report_lost": "reported as lost",
    "expire": "expired",
}


def _tz() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def _review_clock(now: datetime, programme: ProgrammeSettings) -> dict:
    holidays = programme.holiday_dates()
    return {
        "review_started_at": now,
        "review_remind_at": add_working_hours(now, programme.reminder_hours, holidays=holidays, tz=_tz()),
        "review_due_at": add_working_hours(now, programme.review_sla_hours, holidays=holidays, tz=_tz()),
        "reminded_at": None,
        "overdue_at": None,
    }


def _next_reference(now: datetime) -> str:
    """The year's next number. One statement where the database can return what it updated
    (PostgreSQL; SQLite from 3.35, when it can return inserted rows too): the UPDATE takes the row
    lock and returns the new number; the year's first registration creates the row first."""
    year = timezone.localtime(now).year
    if connection.vendor in ("postgresql", "sqlite") and connection.features.can_return_columns_from_insert:
        qn = connection.ops.quote_name
        table, last, key = _table(ReferenceCounter), qn("last"), qn("year")
        with connection.cursor() as cursor:
            for _ in range(2):
                cursor.execute(f"UPDATE {table} SET {last} = {last} + 1 WHERE {key} = %s RETURNING {last}", [year])
                row = cursor.fetchone()
                if row is not None:
                    return f"REG-{year}-{row[0]:06d}"
                ReferenceCounter.objects.get_or_create(year=year)
    ReferenceCounter.objects.get_or_create(year=year)
    ReferenceCounter.objects.filter(year=year).update(last=F("last") + 1)  # takes the row lock
    number = ReferenceCounter.objects.get(year=year).last
    return f"REG-{year}-{number:06d}"


# --- notifications -------------------------------------------------------------------------------


def _url(name: str, *args) -> str:
    return settings.PRM_SITE_URL.rstrip("/") + reverse(name, args=args)


def dealer_recipients(registration: Registration) -> list[str]:
    """The person who registered it; if they left, the dealer's admins."""
    if registration.registered_by.is_active:
        return [registration.registered_by.email]
    return list(
        Membership.objects.active()
        .filter(organisation_id=registration.organisation_id, role=Membership.Role.DEALER_ADMIN, user__is_active=True)
        .values_list("user__email", flat=True)
    )


def _dealer_emails(registration: Registration, template: str, **context) -> list[tuple]:
    """The (to, template, context, topic) of the dealer's emails (see outbox_enqueue_each)."""
    context.update(registration=registration, url=_url("deals:registration_detail", registration.pk))
    return [(address, template, context, registration.reference) for address in dealer_recipients(registration)]


def _reviewer_emails(registration: Registration, template: str, *, director: bool = False, **context) -> list[tuple]:
    """The reviewer's email, if there is an active reviewer (see outbox_enqueue_each)."""
    organisation = registration.organisation
    person = organisation.region.regional_director if director else organisation.account_manager
    if person is None or not person.is_active:
        return []
    if context.get("detection") is not None:
        _other_dealers_loaded(context["detection"].conflicts)
    context.update(registration=registration, url=_url("deals:registration_detail", registration.pk), person=person)
    return [(person.email, template, context, registration.reference)]


def _notify_dealer(registration: Registration, template: str, **context) -> None:
    outbox_enqueue_each(_dealer_emails(registration, template, **context))


def _notify_reviewer(registration: Registration, template: str, *, director: bool = False, **context) -> None:
    outbox_enqueue_each(_reviewer_emails(registration, template, director=director, **context))


def _other_dealers_loaded(found: list[Conflict]) -> None:
    """The other registration of each conflict, and its dealer, as the reviewer's email names them:
    read together (two queries at most, none when the check left them loaded), not one per conflict."""
    missing = [c for c in found if not Conflict.other.is_cached(c)]
    if missing:
        others = Registration.objects.select_related("organisation").in_bulk({c.other_id for c in missing})
        for c in missing:
            c.other = others[c.other_id]
    others = [c.other for c in found if not Registration.organisation.is_cached(c.other)]
    if others:
        dealers = Organisation.objects.in_bulk({other.organisation_id for other in others})
        for other in others:
            other.organisation = dealers[other.organisation_id]


# --- submitting ----------------------------------------------------------------------------------


@dataclass
class CustomerData:
    name: str
    city: str
    postcode: str
    country: str
    website: str = ""
    vat_number: str = ""
    company_number: str = ""


@dataclass
class LineData:
    product: Product
    quantity: int
    value: Decimal | None = None  # None: list price × quantity


def open_registration_cap(organisation: Organisation) -> int:
    """The cap follows the dealer's tier (the programme default only if no tier exists at all): the
    tier of tiers.selectors.tier_for — an active override, else the tier it holds, the lowest tier
    if never evaluated — read as its cap alone (each submission asks; three whole rows cost twice)."""
    from tiers.models import DealerStanding
    from tiers.selectors import lowest_tier

    standing = (
        DealerStanding.objects.filter(organisation=organisation)
        .values_list(
            "override_tier_id", "override_until", "override_tier__open_registration_cap", "tier__open_registration_cap"
        )
        .first()
    )
    if standing is None:
        tier = lowest_tier()
        return tier.open_registration_cap if tier else ProgrammeSettings.load().default_open_registration_cap
    override_tier_id, override_until, override_cap, held_cap = standing
    override = DealerStanding(override_tier_id=override_tier_id, override_until=override_until)
    return override_cap if override.override_active(timezone.localdate()) else held_cap


def open_registration_count(organisation: Organisation) -> int:
    return Registration.objects.filter(organisation=organisation).open().count()


MAX_VALUE = Decimal("1000000000")  # per line and per registration: far above any real deal, far below the column
MAX_QUANTITY = 1_000_000  # per line, as the form allows


def _check_lines(lines: list[LineData]) -> list[LineData]:
    if not lines:
        raise RegistrationError("Add at least one product line.")
    checked = []
    for line in lines:
        if line.quantity is None or line.quantity <= 0:
            raise RegistrationError("Quantities must be positive.")
        if line.quantity > MAX_QUANTITY:
            raise RegistrationError(f"A line holds at most {MAX_QUANTITY:,} pieces; check the quantity.")
        if not line.product.active:
            raise RegistrationError(f"{line.product} is no longer sold.")
        value = line.value if line.value is not None else line.product.list_price * line.quantity
        if value >= MAX_VALUE:  # checked before rounding: a number of a thousand digits has no cents
            raise RegistrationError("A line's value is more than the portal can hold; check the quantity.")
        if value <= 0 or money(value) <= 0:
            raise RegistrationError("Line values must be positive.")
        value = money(value)
        checked.append(LineData(product=line.product, quantity=line.quantity, value=value))
    if sum(line.value for line in checked) >= MAX_VALUE:
        raise RegistrationError("The expected value is more than the portal can hold; check the quantities.")
    return checked


def _check_close_date(expected_close_date: date, now: datetime) -> None:
    if expected_close_date < timezone.localtime(now).date():
        raise RegistrationError("The expected close date lies in the past.")


def _own_customer(organisation: Organisation, data: CustomerData, existing: Customer | None) -> Customer:
    if existing is not None:
        if existing.organisation_id != organisation.pk:
            raise NotAllowed("That customer is not one of yours.")
        return existing
    customer = Customer.objects.filter(
        organisation=organisation,
        name__iexact=data.name.strip(),
        postcode__iexact=data.postcode.strip(),
        country=data.country,
    ).first()
    if customer is None:
        customer = Customer(organisation=organisation)
    for name, value in vars(data).items():
        value = value.strip() if isinstance(value, str) else value
        if value or not getattr(customer, name):
            setattr(customer, name, value)
    for name, value in conflicts.customer_keys(customer).items():
        setattr(customer, name, value)
    customer.save()
    return customer


def _save_lines(registration: Registration, lines: list[LineData], *, new: bool = False) -> None:
    if not new:  # a registration just created has no lines to replace
        registration.lines.all().delete()
    RegistrationLine.objects.bulk_create(
        RegistrationLine(registration=registration, product=line.product, quantity=line.quantity, value=line.value)
        for line in lines
    )


@transaction.atomic
def registration_submit(
    *,
    actor: User,
    customer: CustomerData | None = None,
    existing_customer: Customer | None = None,
    contact_name: str,
    contact_email: str,
    contact_phone: str = "",
    lines: list[LineData],
    expected_close_date: date,
    competitors: str = "",
    decision_stage: str = "",
    next_steps: str = "",
    cap: int | None = None,
) -> Registration:
    """`cap`: the organisation's open_registration_cap when the caller has just read it (the form
    shows it); the open registrations are counted here in any case, under the organisation's lock."""
    membership = actor.membership if actor.is_authenticated and actor.is_active else None
    if membership is None:
        raise NotAllowed("Only people of a dealer organisation can register deals.")
    # the row locked; its partner manager read with it, for the reviewer's email
    organisation = (
        Organisation.objects.select_for_update(of=("self",))
        .select_related("partner_manager")
        .get(pk=membership.organisation_id)
    )
    if organisation.status == Organisation.Status.TERMINATED:
        raise NotAllowed("Your organisation no longer takes part in the programme.")
    if cap is None:
        cap = open_registration_cap(organisation)
    if open_registration_count(organisation) >= cap:
        raise RegistrationError(
            f"Your organisation has {cap} open registrations, the most your tier allows. "
            "Close some (report won or lost, or withdraw) before registering another."
        )
    if customer is None and existing_customer is None:
        raise RegistrationError("Say who the customer is.")
    # Before the clock is read: submissions in one country are checked for conflicts one at a time.
    conflicts.lock_country(existing_customer.country if existing_customer else customer.country)
    now = timezone.now()
    checked = _check_lines(lines)
    _check_close_date(expected_close_date, now)
    programme = ProgrammeSettings.load()
    registration = Registration.objects.create(
        reference=_next_reference(now),
        organisation=organisation,
        registered_by=actor,
        customer=_own_customer(organisation, customer, existing_customer),
        contact_name=contact_name.strip(),
        contact_email=contact_email.strip(),
        contact_phone=contact_phone.strip(),
        expected_value=sum((line.value for line in checked), Decimal("0.00")),
        expected_close_date=expected_close_date,
        competitors=competitors.strip(),
        decision_stage=decision_stage,
        next_steps=next_steps.strip(),
        status=Status.SUBMITTED,
        status_changed_at=now,
        first_submitted_at=now,
        last_activity_at=now,
        **{k: v for k, v in _review_clock(now, programme).items() if v is not None},
    )
    _save_lines(registration, checked, new=True)
    RegistrationEvent.objects.create(
        registration=registration,
        actor=actor,
        created_at=now,
        action="submit",
        from_status="",
        to_status=Status.SUBMITTED,
    )
    detection = conflicts.conflicts_detect(registration)
    # the dealer's email and the reviewer's, in one INSERT
    outbox_enqueue_each(
        _dealer_emails(registration, "registration_submitted", needs_review=detection.needs_review)
        + _reviewer_emails(registration, "registration_to_review", resubmitted=False, detection=detection)
    )
    return registration


@transaction.atomic
def registration_update(
    *,
    registration: Registration,
    actor: User,
    expected_close_date: date,
    decision_stage: str,
    next_steps: str,
    competitors: str,
    lines: list[LineData] | None = None,
) -> Registration:
    """The dealer keeps an open registration up to date (stage, date, lines). Not a transition."""
    registration = _lock(registration)
    _check_party(Party.DEALER, actor, registration)
    if registration.status not in OPEN:
        raise RegistrationError(f"{registration.reference} is closed; it can no longer be changed.")
    now = timezone.now()
    if expected_close_date != registration.expected_close_date:
        _check_close_date(expected_close_date, now)
    registration.expected_close_date = expected_close_date
    registration.decision_stage = decision_stage
    registration.next_steps = next_steps.strip()
    registration.competitors = competitors.strip()
    registration.last_activity_at = now
    registration.stale_flagged_at = None
    changed = ["expected_close_date", "decision_stage", "next_steps", "competitors", "last_activity_at"]
    changed.append("stale_flagged_at")
    if lines is not None:
        checked = _check_lines(lines)
        if registration.status in (Status.APPROVED, Status.ESCALATED):
            held = set(registration.lines.values_list("product__line_id", flat=True))
            added = {line.product.line for line in checked if line.product.line_id not in held}
            if added:
                raise RegistrationError(
                    f"{', '.join(sorted(str(line) for line in added))} is not part of this protected registration. "
                    "Register a new deal for it, so that it is reviewed."
                )
        _save_lines(registration, checked)
        registration.expected_value = sum((line.value for line in checked), Decimal("0.00"))
        changed.append("expected_value")
    registration.save(update_fields=changed)
    if lines is not None and registration.status in (Status.SUBMITTED, Status.INFO_REQUESTED):
        # Other product lines, or a bigger deal, may touch other dealers and channel rules.
        conflicts.lock_country(registration.customer.country)
        conflicts.conflicts_detect(registration)
    RegistrationEvent.objects.create(
        registration=registration,
        actor=actor,
        created_at=now,
        action="update",
        from_status=registration.status,
        to_status=registration.status,
        reason="Details updated by the dealer.",
    )
    return registration


# --- reviewing -----------------------------------------------------------------------------------


def _require(text: str, what: str) -> None:
    if not text or not text.strip():
        raise RegistrationError(f"Give {what}.")


def _decision_fields(registration: Registration, actor: User, now: datetime) -> dict:
    programme = ProgrammeSettings.load()
    hours = working_hours_between(registration.review_started_at, now, holidays=programme.holiday_dates(), tz=_tz())
    return {
        "decided_at": now,
        "decided_by": actor,
        "review_working_hours": hours,
        "decided_in_time": now <= registration.review_due_at,
    }


def _margin_for(organisation: Organisation, programme: ProgrammeSettings) -> Decimal:
    """Fixed at approval: the tier's base margin plus its extra on registered deals."""
    from tiers.selectors import tier_for

    tier = tier_for(organisation)
    return tier.registered_margin_percent if tier else programme.registered_margin_percent


def _protection_fields(registration: Registration, now: datetime) -> dict:
    """The longest protection of the registration's product lines (a line without its own
    protection days has the programme's default); the margin is fixed now."""
    programme = ProgrammeSettings.load()
    lines = registration.lines.select_related("product__line")
    days = max(line.product.line.protection_days or programme.default_protection_days for line in lines)
    return {
        "protected_until": timezone.localtime(now).date() + timedelta(days=days),
        "margin_percent": _margin_for(registration.organisation, programme),
        "expiry_warnings_sent": 0,
    }


@transaction.atomic
def registration_request_info(*, registration: Registration, actor: User, reason: str, internal_note: str = ""):
    registration = _lock(registration, "request_info", actor)
    _require(reason, "the question for the dealer")
    now = timezone.now()
    _transition(registration, "request_info", actor, now=now, reason=reason, internal_note=internal_note)
    _notify_dealer(registration, "registration_decision", reason=reason)
    return registration


@transaction.atomic
def registration_resubmit(*, registration: Registration, actor: User, reason: str = ""):
    registration = _lock(registration, "resubmit", actor)
    conflicts.lock_country(registration.customer.country)
    now = timezone.now()
    clock = _review_clock(now, ProgrammeSettings.load())
    _transition(registration, "resubmit", actor, now=now, reason=reason, fields=clock)
    detection = conflicts.conflicts_detect(registration)
    _notify_reviewer(registration, "registration_to_review", resubmitted=True, detection=detection)
    return registration


@transaction.atomic
def registration_approve(*, registration: Registration, actor: User, reason: str = "", internal_note: str = ""):
    registration = _lock(registration, "approve", actor)
    if conflicts.blocking_conflicts(registration).exists():
        raise RegistrationError(
            f"{registration.reference} conflicts with another dealer's registration: decide the conflict first."
        )
    now = timezone.now()
    fields = {**_decision_fields(registration, actor, now), **_protection_fields(registration, now)}
    _transition(registration, "approve", actor, now=now, reason=reason, internal_note=internal_note, fields=fields)
    _notify_dealer(registration, "registration_decision", reason=reason)
    return registration


@transaction.atomic
def registration_reject(*, registration: Registration, actor: User, reason: str, internal_note: str = ""):
    registration = _lock(registration, "reject", actor)
    _require(reason, "the reason the dealer will see")
    now = timezone.now()
    fields = _decision_fields(registration, actor, now)
    _transition(registration, "reject", actor, now=now, reason=reason, internal_note=internal_note, fields=fields)
    _notify_dealer(registration, "registration_decision", reason=reason)
    return registration


def registration_reject_for_conflict(*, registration: Registration, actor: User, internal_note: str, now) -> None:
    """Reject the later registration of a conflict the earlier one keeps (deals.conflicts). The
    dealer hears a neutral reason; the caller holds the row lock and has checked its authority."""
    if registration.status != Status.SUBMITTED:
        raise RegistrationError(
            f"{registration.reference} is {registration.get_status_display().lower()}: decide it once the dealer "
            "has answered, or escalate it."
        )
    reason = conflicts.NEUTRAL_REJECTION
    fields = _decision_fields(registration, actor, now)
    _transition(registration, "reject", actor, now=now, reason=reason, internal_note=internal_note, fields=fields)
    _notify_dealer(registration, "registration_decision", reason=reason)


@dataclass
class BulkResult:
    approved: list[str]
    refused: dict[str, str]


def registrations_bulk_approve(*, registration_ids: list[int], actor: User) -> BulkResult:
    """Approve several registrations from the queue, each in its own transaction. Ids outside
    the reviewer's queue are refused as a whole: a tampered form changes nothing."""
    queue = Registration.objects.review_queue_for(actor)
    registrations = list(queue.filter(pk__in=registration_ids).order_by("review_due_at"))
    if len(registrations) != len(set(registration_ids)):
        raise NotAllowed("Some of the selected registrations are not in your review queue. Nothing was approved.")
    result = BulkResult(approved=[], refused={})
    for registration in registrations:
        if conflicts.is_flagged(registration):
            result.refused[registration.reference] = "it is flagged; open it and decide it on its own."
            continue
        try:
            registration_approve(registration=registration, actor=actor)
        except RegistrationError as exc:
            result.refused[registration.reference] = str(exc)
        else:
            result.approved.append(registration.reference)
    return result


@transaction.atomic
def registration_escalate(*, registration: Registration, actor: User, internal_note: str, reason: str = ""):
    registration = _lock(registration, "escalate", actor)
    _require(internal_note, "a note for the regional director")
    now = timezone.now()
    reason = reason or "Your registration needs a further review. We will let you know the outcome."
    _transition(registration, "escalate", actor, now=now, reason=reason, internal_note=internal_note)
    _notify_reviewer(registration, "registration_escalated", director=True, note=internal_note)
    _notify_dealer(registration, "registration_decision", reason=reason)
    return registration


@transaction.atomic
def registration_escalation_decide(
    *, registration: Registration, actor: User, award: bool, reason: str, internal_note: str = ""
):
    """The regional director's decision out of `escalated`: award it (approved, protected), or
    refuse it — rejected if it was a submission, revoked if it held a protection."""
    registration = _lock(registration)
    action = "award" if award else ("revoke" if registration.protected_until else "decline")
    _check_move(registration, action, actor)
    if conflicts.blocking_conflicts(registration).exists():
        raise RegistrationError(
            f"{registration.reference} is escalated over a conflict with another dealer: decide it in the admin's "
            "escalations, where both registrations are weighed together."
        )
    _require(reason, "the reason the dealer will see")
    now = timezone.now()
    fields = {"decided_at": now, "decided_by": actor}
    if award and registration.protected_until is None:
        fields.update(_decision_fields(registration, actor, now), **_protection_fields(registration, now))
    elif award:
        # The protection stood still while the conflict was decided: it resumes with the days it had.
        paused = (timezone.localtime(now).date() - timezone.localtime(registration.status_changed_at).date()).days
        fields["protected_until"] = registration.protected_until + timedelta(days=max(paused, 0))
    _transition(registration, action, actor, now=now, reason=reason, internal_note=internal_note, fields=fields)
    _notify_dealer(registration, "registration_decision", reason=reason)
    return registration


# --- the dealer's side after approval -------------------------------------------------------------


@transaction.atomic
def registration_withdraw(*, registration: Registration, actor: User, reason: str = ""):
    registration = _lock(registration, "withdraw", actor)
    _transition(registration, "withdraw", actor, now=timezone.now(), reason=reason or "Withdrawn by the dealer.")
    return registration


@transaction.atomic
def registration_report_won(*, registration: Registration, actor: User, value: Decimal, won_on: date):
    registration = _lock(registration, "report_won", actor)
    now = timezone.now()
    if value is None or value <= 0:
        raise RegistrationError("The won value must be positive.")
    if value >= MAX_VALUE:
        raise RegistrationError("The won value is more than the portal can hold; check the amount.")
    if won_on < timezone.localtime(registration.first_submitted_at).date():
        raise RegistrationError("A deal cannot be won before it was registered.")
    if won_on > timezone.localtime(now).date():
        raise RegistrationError("The won date lies in the future.")
    fields = {"won_value": money(value), "won_date": won_on}
    _transition(registration, "report_won", actor, now=now, reason=f"Won: € {money(value):,}", fields=fields)
    return registration


@transaction.atomic
def registration_report_lost(*, registration: Registration, actor: User, reason: str, competitor: str = ""):
    registration = _lock(registration, "report_lost", actor)
    if reason not in Registration.LostReason.values:
        raise RegistrationError("Choose why the deal was lost.")
    label = Registration.LostReason(reason).label
    fields = {"lost_reason": reason, "lost_competitor": competitor.strip()}
    _transition(registration, "report_lost", actor, now=timezone.now(), reason=f"Lost: {label}", fields=fields)
    return registration


@transaction.atomic
def extension_request(*, registration: Registration, actor: User, reason: str) -> ExtensionRequest:
    _require(reason, "a reason for the extension")
    registration = _lock(registration)
    _check_party(Party.DEALER, actor, registration)
    programme = ProgrammeSettings.load()
    now = timezone.now()
    if registration.status != Status.APPROVED:
        raise RegistrationError("Only a protected registration can be extended.")
    if registration.protected_until < timezone.localtime(now).date():
        raise RegistrationError("The protection has already ended.")
    if registration.extension_count >= programme.max_extensions:
        raise RegistrationError(f"This registration has had the maximum of {programme.max_extensions} extensions.")
    if registration.extension_requests.filter(status=ExtensionRequest.Status.PENDING).exists():
        raise RegistrationError("An extension request is already waiting for a decision.")
    request = ExtensionRequest.objects.create(
        registration=registration, requested_by=actor, requested_at=now, reason=reason.strip()
    )
    Registration.objects.filter(pk=registration.pk).update(last_activity_at=now, stale_flagged_at=None)
    _notify_reviewer(registration, "extension_requested", request=request)
    return request


def _lock_extension(request: ExtensionRequest) -> tuple[ExtensionRequest, Registration]:
    request = ExtensionRequest.objects.select_for_update().get(pk=request.pk)
    if request.status != ExtensionRequest.Status.PENDING:
        raise RegistrationError("This extension request has already been decided.")
    return request, _lock(request.registration)


@transaction.atomic
def extension_approve(*, request: ExtensionRequest, actor: User, reason: str = "") -> Registration:
    request, registration = _lock_extension(request)
    _check_move(registration, "extend", actor)
    programme = ProgrammeSettings.load()
    if registration.extension_count >= programme.max_extensions:
        raise RegistrationError(f"This registration has had the maximum of {programme.max_extensions} extensions.")
    now = timezone.now()
    new_end = registration.protected_until + timedelta(days=programme.extension_days)
    fields = {
        "protected_until": new_end,
        "extension_count": registration.extension_count + 1,
        "expiry_warnings_sent": 0,
    }
    reason = reason or f"Protection extended by {programme.extension_days} days, until {new_end:%d %B %Y}."
    _transition(registration, "extend", actor, now=now, reason=reason, fields=fields)
    request.status = ExtensionRequest.Status.APPROVED
    request.decided_by, request.decided_at, request.decision_reason = actor, now, reason
    request.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
    _notify_dealer(registration, "extension_decision", approved=True, reason=reason)
    return registration


@transaction.atomic
def extension_decline(*, request: ExtensionRequest, actor: User, reason: str) -> Registration:
    _require(reason, "the reason the dealer will see")
    request, registration = _lock_extension(request)
    _check_move(registration, "extend", actor)
    now = timezone.now()
    request.status = ExtensionRequest.Status.DECLINED
    request.decided_by, request.decided_at, request.decision_reason = actor, now, reason.strip()
    request.save(update_fields=["status", "decided_by", "decided_at", "decision_reason"])
    RegistrationEvent.objects.create(
        registration=registration,
        actor=actor,
        created_at=now,
        action="extension_declined",
        from_status=registration.status,
        to_status=registration.status,
        reason=reason.strip(),
    )
    _notify_dealer(registration, "extension_decision", approved=False, reason=reason)
    return registration


# --- jobs ----------------------------------------------------------------------------------------


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def protections_expire(*, today: date | None = None, batch_size: int = 100_000) -> int:
    """Nightly: every approved registration whose protection ended before today becomes expired.

    Per batch of ids, in one transaction: one UPDATE of the statuses, stamping the job's moment,
    then one INSERT … SELECT of the history rows for exactly the rows stamped with that moment.
    No ids pass through Python, and a row another transaction changed first is skipped by the
    UPDATE's own condition, so two workers, a rerun or a missed night give the same result.
    Batches span 100,000 ids: each one reads the due rows through the (status, protected_until)
    index, so at a million registrations 20,000-id batches read that index 50 times a night."""
    today = today or timezone.localdate()
    from tiers.models import RollupChange

    registrations, events, changes = _table(Registration), _table(RegistrationEvent), _table(RollupChange)
    low, high = _due_bounds(registrations, today)
    if low is None:
        _after_expiry()
        return 0
    expired = 0
    reason = "The protection window ended."
    for start in range(low, high + 1, batch_size):
        now = timezone.now()
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {registrations} SET status = %s, status_changed_at = %s "
                    f"WHERE status = %s AND protected_until < %s AND id >= %s AND id < %s",
                    [Status.EXPIRED, now, Status.APPROVED, today, start, start + batch_size],
                )
                count = cursor.rowcount
                if count:
                    # the rows this batch stamped (what follows reads them by it)
                    stamped = "r.status = %s AND r.status_changed_at = %s AND r.id >= %s AND r.id < %s"
                    stamped_params = [Status.EXPIRED, now, start, start + batch_size]
                    cursor.execute(
                        f"INSERT INTO {events} (registration_id, actor_id, created_at, action, from_status, "
                        f"to_status, reason, internal_note) "
                        f"SELECT r.id, NULL, %s, %s, %s, %s, %s, '' FROM {registrations} r WHERE {stamped} "
                        # expired is final: a row that already has its expire event (stamped by an
                        # earlier run at the same clock reading) gets no second one
                        f"AND NOT EXISTS (SELECT 1 FROM {events} e WHERE e.registration_id = r.id AND e.action = %s)",
                        [now, "expire", Status.APPROVED, Status.EXPIRED, reason, *stamped_params, "expire"],
                    )
                    # the dashboards count these dealers live until the next roll-up (tiers.rollup)
                    cursor.execute(
                        f"INSERT INTO {changes} (organisation_id) SELECT DISTINCT r.organisation_id "
                        f"FROM {registrations} r WHERE {stamped}",
                        stamped_params,
                    )
                    # their customers leave the open customers unless still open elsewhere (deals.open_customers)
                    customers = f"SELECT r.customer_id FROM {registrations} r WHERE {stamped}"
                    for statement in open_customers.expired_batch_sql(customers):
                        cursor.execute(statement, stamped_params)
        expired += count
    _after_expiry()
    return expired


def _due_bounds(registrations: str, today: date) -> tuple[int | None, int | None]:
    """The lowest and highest id of the approved registrations whose protection ended before today,
    read through the (status, protected_until) index. Asked as ORDER BY id LIMIT 1, PostgreSQL
    walked the primary key and tested each row: 300–370 ms at a million registrations, the whole
    table on a night with nothing due. On PostgreSQL OFFSET 0 keeps the planner from doing so."""
    fence = " OFFSET 0" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT MIN(id), MAX(id) FROM (SELECT id FROM {registrations} "
            f"WHERE status = %s AND protected_until < %s{fence}) due",
            [Status.APPROVED, connection.ops.adapt_datefield_value(today)],
        )
        return cursor.fetchone()


def _after_expiry() -> None:
    """What follows an expiry: its conflicts close, its pending extension requests are cancelled.
    Run on every night, not only when rows expired now, so that a run killed after its batches is
    completed by the next one."""
    conflicts.conflicts_close_for_status(Status.EXPIRED)
    ExtensionRequest.objects.filter(status=ExtensionRequest.Status.PENDING, registration__status=Status.EXPIRED).update(
        status=ExtensionRequest.Status.CANCELLED, decided_at=timezone.now(), decision_reason="The protection ended."
    )


def _claim(queryset, **values) -> bool:
    """Set values on one row only if it still matches: the caller that gets True does the work."""
    return queryset.update(**values) == 1


def review_reminders_send(*, now: datetime | None = None) -> tuple[int, int]:
    """Every 15 minutes: remind the reviewer at the reminder mark; at the deadline mark the
    registration overdue and tell the regional director. Returns (reminded, overdue)."""
    now = now or timezone.now()
    reminded = overdue = 0
    due_reminders = Registration.objects.filter(
        status=Status.SUBMITTED, reminded_at__isnull=True, review_remind_at__lte=now, review_due_at__gt=now
    ).values_list("pk", flat=True)
    for pk in list(due_reminders):
        with transaction.atomic():
            if _claim(
                Registration.objects.filter(pk=pk, status=Status.SUBMITTED, reminded_at__isnull=True), reminded_at=now
            ):
                registration = Registration.objects.select_related("organisation__region").get(pk=pk)
                _notify_reviewer(registration, "registration_review_reminder")
                reminded += 1
    breached = Registration.objects.filter(
        status=Status.SUBMITTED, overdue_at__isnull=True, review_due_at__lte=now
    ).values_list("pk", flat=True)
    for pk in list(breached):
        with transaction.atomic():
            if _claim(
                Registration.objects.filter(pk=pk, status=Status.SUBMITTED, overdue_at__isnull=True), overdue_at=now
            ):
                registration = Registration.objects.select_related("organisation__region").get(pk=pk)
                _notify_reviewer(registration, "registration_review_overdue", director=True)
                overdue += 1
    return reminded, overdue


def expiry_warnings_send(*, today: date | None = None) -> int:
    """Nightly: warn the dealer 14 and 3 days (configurable) before its protection ends. Each
    warning goes out once, even when the job runs twice; after a missed night the dealer gets the
    warning that fits the days left, not two at once."""
    today = today or timezone.localdate()
    programme = ProgrammeSettings.load()
    first, second = programme.first_expiry_warning_days, programme.second_expiry_warning_days
    candidates = (
        Registration.objects.filter(status=Status.APPROVED, protected_until__gte=today)
        .filter(
            Q(expiry_warnings_sent=0, protected_until__lte=today + timedelta(days=first))
            | Q(expiry_warnings_sent=1, protected_until__lte=today + timedelta(days=second))
        )
        .values_list("pk", "protected_until")
    )
    sent = 0
    for pk, protected_until in list(candidates):
        level = 2 if (protected_until - today).days <= second else 1
        with transaction.atomic():
            claim = Registration.objects.filter(pk=pk, status=Status.APPROVED, expiry_warnings_sent__lt=level)
            if _claim(claim, expiry_warnings_sent=level):
                registration = Registration.objects.select_related("registered_by").get(pk=pk)
                _notify_dealer(registration, "protection_expiry_warning", days_left=registration.days_left(today))
                sent += 1
    return sent


def stale_registrations_flag(*, now: datetime | None = None) -> int:
    """Nightly: a protected registration without an update for the stale-after days is flagged
    and its dealer reminded (once per quiet spell: any update clears the flag)."""
    now = now or timezone.now()
    programme = ProgrammeSettings.load()
    cutoff = now - timedelta(days=programme.stale_after_days)
    candidates = Registration.objects.filter(
        status=Status.APPROVED, stale_flagged_at__isnull=True, last_activity_at__lt=cutoff
    ).values_list("pk", flat=True)
    flagged = 0
    for pk in list(candidates):
        with transaction.atomic():
            claim = Registration.objects.filter(
                pk=pk, status=Status.APPROVED, stale_flagged_at__isnull=True, last_activity_at__lt=cutoff
            )
            if _claim(claim, stale_flagged_at=now):
                registration = Registration.objects.select_related("registered_by").get(pk=pk)
                _notify_dealer(registration, "registration_stale", days=programme.stale_after_days)
                flagged += 1
    return flagged
