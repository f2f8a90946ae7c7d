"""Channel conflicts: detection at submission, the channel-rule flags, and the decisions.

Detection runs inside the submission's transaction, after a per-country lock, so two
registrations of one customer submitted at the same moment always see each other: on
PostgreSQL a transaction-scoped advisory lock serialises the check-and-insert per country
(a fuzzy match has no single key to lock); SQLite serialises all writes anyway.

Candidates come through indexes: equal VAT, register number or website domain anywhere, or on
PostgreSQL a trigram-similar normalised name in the same country. deals.matching then decides.

What the dealer learns is only that its registration needs review because of a possible
overlap: conflict rows, flags and internal notes are for vendor staff; every reason written to
a dealer-visible place is neutral.
"""

from __future__ import annotations

import operator
import re
from collections import namedtuple
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache, reduce

from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from dealers.models import Organisation, Territory, User
from deals import matching
from deals.models import (
    Conflict,
    Customer,
    NamedAccount,
    NotSameCustomer,
    OpenCustomer,
    ProgrammeSettings,
    Registration,
    RegistrationFlag,
    RegistrationLine,
)

Status = Registration.Status
ACTIVE = (Status.SUBMITTED, Status.INFO_REQUESTED, Status.APPROVED, Status.ESCALATED)
TRIGRAM_THRESHOLD = 0.4

# Said to a dealer whose registration touches another's, or loses a conflict. Nothing more.
NEUTRAL_REVIEW = "Your registration needs a further review because of a possible overlap. We will let you know."
NEUTRAL_REJECTION = (
    "After review, this opportunity cannot be protected for you under the programme's rules. "
    "Your partner manager can explain what this means for you."
)


# --- keys and locking ------------------------------------------------------------------------------


def customer_keys(customer: Customer) -> dict[str, str]:
    """The matching keys stored on a customer (see Customer.name_key and friends)."""
    vat = matching.normalize_vat(customer.vat_number, customer.country)
    digits = matching.company_digits(customer.vat_number, customer.country) or matching.company_digits(
        customer.company_number, customer.country
    )
    number = re.sub(r"[\s.\-/]", "", customer.company_number or "").upper()
    register = f"{customer.country}:{digits or number}" if (digits or number) else ""
    return {
        "name_key": matching.name_key(customer.name)[:200],
        "vat_key": vat[:24],
        "register_key": register[:30],
        "domain_key": matching.normalize_domain(customer.website)[:200],
    }


def lock_country(country: str) -> None:
    """Serialise conflict checks per country until the transaction ends (PostgreSQL). (Today the
    reference counter's row lock serialises all submissions too; this lock keeps the guarantee
    when numbering changes.)"""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"deals.conflicts:{country}"])


# --- detection ---------------------------------------------------------------------------------------


@dataclass
class Detection:
    conflicts: list[Conflict] = field(default_factory=list)
    flags: list[RegistrationFlag] = field(default_factory=list)

    @property
    def needs_review(self) -> bool:
        """Anything the dealer should hear about (only as a neutral sentence)."""
        return any(c.kind == Conflict.Kind.CONFLICT for c in self.conflicts) or any(
            f.kind != RegistrationFlag.Kind.OWN_DUPLICATE for f in self.flags
        )


KEYS = ("vat_key", "register_key", "domain_key")

# One round trip: pg_trgm's threshold (for the rest of the submission's transaction, as SET LOCAL)
# and the similar names. pg_trgm's default threshold (0.3) lets a shared trade word
# ("installatiebedrijf …") bring in thousands of names at a million registrations; at 0.4 no pair
# that match() accepts was lost in a 5,500-pair sample (tools/measure_conflict_check.py).
SIMILAR_NAMES_SQL = """
SELECT set_config('pg_trgm.similarity_threshold', %(threshold)s, true);
SELECT customer_id, name_key FROM deals_opencustomer
WHERE country = %(country)s AND name_key %% %(name)s
"""


def _similar_names(customer: Customer) -> list[tuple[int, str]]:
    """(customer id, name key) of the customers with an active registration in this customer's
    country whose name may be this one's, from deals.models.OpenCustomer (one narrow row per such
    customer, kept by deals.open_customers). PostgreSQL: the trigram-similar names, through that
    table's trigram index (migration 0011): a common trade word brings in hundreds of names, whose
    recheck reads a few hundred short rows of a small table instead of as many registration rows.
    Elsewhere (SQLite, small data): every open customer in the country."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                SIMILAR_NAMES_SQL,
                {"threshold": str(TRIGRAM_THRESHOLD), "country": customer.country, "name": customer.name_key},
            )
            return cursor.fetchall()
    return list(OpenCustomer.objects.filter(country=customer.country).order_by().values_list("customer_id", "name_key"))


def _plausible_candidates(customer: Customer) -> list[Customer]:
    """The customers with an active registration that deals.matching.match may call this one:
    every key hit (equal VAT, register number or website domain, in any country), and the similar
    names in the same country that pass matching.names_may_match on the stored name keys. Only the
    similar names' keys are read; the few plausible customers are loaded whole, in one query with
    the key hits (an OR of indexed conditions: the partial key indexes and the primary key), less
    the pairs a reviewer ruled "not the same customer"."""
    conditions = [Q(**{key: getattr(customer, key)}) for key in KEYS if getattr(customer, key)]
    if customer.name_key:
        similar = {
            customer_id
            for customer_id, name_key in _similar_names(customer)
            if matching.names_may_match(customer.name_key, name_key)
        }
        if similar:
            conditions.append(Q(pk__in=sorted(similar), country=customer.country))
    if not conditions:
        return []
    active_customers = Registration.objects.filter(status__in=ACTIVE).values("customer_id")
    apart = NotSameCustomer.objects.filter(customer_low_id=customer.pk).values("customer_high")
    apart_low = NotSameCustomer.objects.filter(customer_high_id=customer.pk).values("customer_low")
    return list(
        Customer.objects.filter(reduce(operator.or_, conditions), pk__in=active_customers)
        .exclude(pk=customer.pk)
        .exclude(pk__in=apart)
        .exclude(pk__in=apart_low)
        .order_by("pk")
    )


@dataclass(frozen=True)
class _Line:
    line_id: int
    name: str
    direct_only: bool


def conflicts_detect(registration: Registration) -> Detection:
    """Find what the new (or resubmitted) registration touches, and store it. Call inside the
    submission's transaction, after lock_country(); idempotent for a registration."""
    customer = registration.customer
    record = customer.as_match_record()
    # One query for the registration's product lines (the overlap, the direct-only flag) and the
    # same dealer's other active registrations of this customer record (told to the dealer).
    lines: list[_Line] = []
    duplicates = []
    own = RegistrationLine.objects.filter(
        registration__in=Registration.objects.filter(
            Q(pk=registration.pk)
            | Q(customer=customer, organisation_id=registration.organisation_id, status__in=ACTIVE)
        ).values("pk")
    ).values_list(
        "registration_id",
        "registration__reference",
        "product__line_id",
        "product__line__name",
        "product__line__direct_only",
    )
    for registration_id, reference, *line in own.order_by():
        if registration_id == registration.pk:
            lines.append(_Line(*line))
        else:
            duplicates.append(reference)
    own_lines = {line.line_id for line in lines}
    result = Detection()
    matches = {}
    for candidate in _plausible_candidates(customer):
        found = matching.match(record, candidate.as_match_record())
        if found.is_same_customer:
            matches[candidate.pk] = found
    # the matching customers' active registrations, and (other dealers') their product lines
    others = (
        list(Registration.objects.filter(customer_id__in=list(matches), status__in=ACTIVE).exclude(pk=registration.pk))
        if matches
        else []
    )
    other_lines: dict[int, set[int]] = {}
    if any(other.organisation_id != registration.organisation_id for other in others):
        for registration_id, line_id in RegistrationLine.objects.filter(
            registration__in=[other.pk for other in others if other.organisation_id != registration.organisation_id]
        ).values_list("registration_id", "product__line_id"):
            other_lines.setdefault(registration_id, set()).add(line_id)
    # A resubmission finds its earlier rows again: updated in place, the new ones written together
    # (a customer that several dealers registered gave one SELECT and one INSERT per dealer).
    existing = {c.other_id: c for c in Conflict.objects.filter(registration=registration)} if others else {}
    new, changed = [], []
    for other in others:
        found = matches[other.customer_id]
        if other.organisation_id == registration.organisation_id:
            duplicates.append(other.reference)
            continue
        overlap = own_lines & other_lines.get(other.pk, set())
        values = {
            "kind": Conflict.Kind.CONFLICT if overlap else Conflict.Kind.RELATED,
            "score": Decimal(str(round(found.score, 3))),
            "reasons": found.reasons + ([] if overlap else ["Different product lines: related, not conflicting."]),
        }
        conflict = existing.get(other.pk)
        if conflict is None:
            new.append(Conflict(registration=registration, other=other, **values))
        else:
            for name, value in values.items():
                setattr(conflict, name, value)
            changed.append(conflict)
    if changed:
        Conflict.objects.bulk_update(changed, ["kind", "score", "reasons"])
    result.conflicts = changed + Conflict.objects.bulk_create(new)
    registration.flags.all().delete()
    flags = _channel_rule_flags(registration, customer, lines)
    if duplicates:
        flags.append(
            RegistrationFlag(
                registration=registration,
                kind=RegistrationFlag.Kind.OWN_DUPLICATE,
                explanation="You registered this customer before: " + ", ".join(sorted(set(duplicates))) + ".",
            )
        )
    result.flags = RegistrationFlag.objects.bulk_create(flags)
    return result


TERRITORY_FIELDS = ("country", "postcode_from", "postcode_to", "exclusive")
_Where = namedtuple("_Where", TERRITORY_FIELDS)


def _postcode_in(postcode: str, territory) -> bool:
    if not territory.postcode_from:
        return True
    code = re.sub(r"\s", "", postcode).upper()
    low = territory.postcode_from.replace(" ", "").upper()
    high = (territory.postcode_to or territory.postcode_from).replace(" ", "").upper()
    return low <= code[: len(low)] and code[: len(high)] <= high


@lru_cache(maxsize=4096)
def _named_account_keys(name, city, country, website, vat, number) -> matching.Keys:
    """A named account's matching keys (a pure function of its fields, so cached: the same few hundred
    accounts are compared at every check)."""
    return matching.keys(
        {"name": name, "city": city, "country": country, "website": website, "vat": vat, "company_number": number}
    )


def _channel_rule_flags(registration: Registration, customer: Customer, lines: list[_Line]) -> list[RegistrationFlag]:
    flags: list[RegistrationFlag] = []

    def flag(kind, text):
        flags.append(RegistrationFlag(registration=registration, kind=kind, explanation=text))

    record = customer.as_match_record()
    keys = matching.keys(record)
    # Read as values, not models: some 25 named accounts and 40 territories at every check, of which
    # nearly none flags anything.
    named = (
        NamedAccount.objects.active()
        .filter(Q(country=customer.country) | Q(vat_number__gt="") | Q(website__gt=""))
        .exclude(reserved_for_id=registration.organisation_id)
        .values_list("name", "city", "country", "website", "vat_number", "company_number", "reserved_for__name")
    )
    for name, city, country, website, vat, number, holder in named:
        other = {
            "name": name,
            "city": city,
            "country": country,
            "website": website,
            "vat": vat,
            "company_number": number,
        }
        if not matching.may_match(keys, _named_account_keys(name, city, country, website, vat, number)):
            continue  # most of them: no match() needed
        found = matching.match(record, other)
        if found.is_same_customer:
            holder = holder or "the vendor's direct team"
            flag(
                RegistrationFlag.Kind.NAMED_ACCOUNT,
                f"{name} is a named account reserved for {holder} ({'; '.join(found.reasons)}).",
            )
    # Only two kinds of territory matter, read in one query: other dealers' exclusive ones in the
    # customer's country, and the dealer's own (thousands of non-exclusive territories of other
    # dealers never flag anything).
    territories = Territory.objects.filter(
        Q(organisation_id=registration.organisation_id)
        | Q(country=customer.country, exclusive=True) & ~Q(organisation__status=Organisation.Status.TERMINATED)
    ).values_list("organisation_id", "organisation__name", "country", "postcode_from", "postcode_to", "exclusive")
    own_territories = []
    for organisation_id, organisation_name, *where in territories:
        territory = _Where(*where)  # a model instance only for the few that flag (its str)
        if organisation_id == registration.organisation_id:
            own_territories.append(territory)
        elif _postcode_in(customer.postcode, territory):
            shown = Territory(organisation_id=organisation_id, **territory._asdict())
            flag(
                RegistrationFlag.Kind.TERRITORY,
                f"Postcode {customer.postcode} lies in the exclusive territory of {organisation_name} ({shown}).",
            )
    own = [t for t in own_territories if t.country == customer.country]
    if own_territories and not any(_postcode_in(customer.postcode, t) for t in own):
        flag(
            RegistrationFlag.Kind.TERRITORY,
            f"{customer.postcode} {customer.city} ({customer.country}) lies outside the dealer's own territories.",
        )
    threshold = ProgrammeSettings.load().enterprise_value_threshold
    if registration.expected_value > threshold:
        flag(
            RegistrationFlag.Kind.SEGMENT,
            f"Expected value € {registration.expected_value:,} is above the enterprise threshold of € {threshold:,}: "
            "enterprise deals are normally the direct team's.",
        )
    direct = sorted({line.name for line in lines if line.direct_only})
    if direct:
        flag(
            RegistrationFlag.Kind.DIRECT_ONLY,
            f"{', '.join(direct)} is sold by the vendor's direct team only.",
        )
    return flags


# --- closing -------------------------------------------------------------------------------------


def conflicts_close_for(registration: Registration, *, now) -> int:
    """A registration that closed (withdrawn, rejected, won, lost, expired, revoked) no longer
    competes: its undecided conflicts end, so the other side is not blocked by it any more. An
    escalated conflict whose earlier side closed stays with the regional director, who still has
    to decide the escalated later registration (and can now simply award it)."""
    return Conflict.objects.filter(_closing(Q(registration=registration), Q(other=registration))).update(
        status=Conflict.Status.RESOLVED, decided_at=now, note=f"{registration.reference} closed."
    )


def _closing(as_later: Q, as_other: Q) -> Q:
    undecided = Q(status__in=(Conflict.Status.OPEN, Conflict.Status.ESCALATED))
    return undecided & (as_later | (as_other & Q(status=Conflict.Status.OPEN)))


def conflicts_close_for_status(status: str) -> int:
    """The same for a bulk transition (the nightly expiry): one statement."""
    # joined from the few undecided conflicts to their registrations; "registration in (every
    # expired registration)" read some 65,000 ids a night at a million registrations
    return Conflict.objects.filter(_closing(Q(registration__status=status), Q(other__status=status))).update(
        status=Conflict.Status.RESOLVED, decided_at=timezone.now(), note="Closed by the nightly expiry."
    )


# --- who decides -----------------------------------------------------------------------------------


def blocking_conflicts(registration: Registration):
    return registration.conflicts.filter(
        kind=Conflict.Kind.CONFLICT, status__in=(Conflict.Status.OPEN, Conflict.Status.ESCALATED)
    )


def is_flagged(registration: Registration) -> bool:
    return (
        blocking_conflicts(registration).exists()
        or registration.flags.exclude(kind=RegistrationFlag.Kind.OWN_DUPLICATE).exists()
    )


def _check_reviewer(actor: User, registration: Registration) -> None:
    from deals.services import NotAllowed, is_reviewer_of

    if not is_reviewer_of(actor, registration.organisation_id):
        raise NotAllowed("Only the partner manager or regional director of the later registration decides this.")


def _check_director(actor: User, registration: Registration) -> None:
    from deals.services import NotAllowed, is_director_of

    if not is_director_of(actor, registration.organisation_id):
        raise NotAllowed("Only the regional director of the later registration decides an escalated conflict.")


# --- what people see -------------------------------------------------------------------------------


def dealer_notice(registration: Registration) -> dict:
    """What the dealer may learn: that review is needed because of a possible overlap (nothing
    about whom or what), and its own earlier registrations of the same customer."""
    open_status = registration.status in (Status.SUBMITTED, Status.INFO_REQUESTED, Status.ESCALATED)
    flagged = open_status and is_flagged(registration)
    own = registration.flags.filter(kind=RegistrationFlag.Kind.OWN_DUPLICATE).values_list("explanation", flat=True)
    return {"needs_review": flagged, "message": NEUTRAL_REVIEW if flagged else "", "own_duplicates": list(own)}


@dataclass
class SideBySide:
    conflict: Conflict
    this: Registration
    other: Registration
    suggested: Registration


def side_by_side(registration: Registration) -> list[SideBySide]:
    """For vendor staff: each conflict or related registration, both sides, newest decisions last.
    Includes conflicts where this registration is the earlier side."""
    rows = []
    related = Conflict.objects.filter(Q(registration=registration) | Q(other=registration)).select_related(
        "registration__organisation", "registration__customer", "other__organisation", "other__customer"
    )
    for conflict in related.order_by("status", "-score"):
        mine_later = conflict.registration_id == registration.pk
        other = conflict.other if mine_later else conflict.registration
        rows.append(
            SideBySide(
                conflict=conflict,
                this=registration,
                other=other,
                suggested=conflict.suggested_winner,
            )
        )
    return rows


def annotate_flagged(queryset):
    """Mark each registration of a list as flagged (in the same query: no query per row)."""
    from django.db.models import Exists, OuterRef

    blocking = Conflict.objects.filter(
        registration=OuterRef("pk"),
        kind=Conflict.Kind.CONFLICT,
        status__in=(Conflict.Status.OPEN, Conflict.Status.ESCALATED),
    )
    flagged = RegistrationFlag.objects.filter(registration=OuterRef("pk")).exclude(
        kind=RegistrationFlag.Kind.OWN_DUPLICATE
    )
    return queryset.annotate(has_conflict=Exists(blocking), has_flag=Exists(flagged))


# --- decisions -----------------------------------------------------------------------------------


@transaction.atomic
def conflict_dismiss(*, conflict: Conflict, actor: User, note: str = "") -> Conflict:
    """Not the same customer: the pair is never flagged again."""
    from deals.services import RegistrationError

    conflict = Conflict.objects.select_for_update().select_related("registration", "other").get(pk=conflict.pk)
    _check_reviewer(actor, conflict.registration)
    if conflict.status not in (Conflict.Status.OPEN,):
        raise RegistrationError("This conflict has already been decided.")
    low, high = sorted([conflict.registration.customer_id, conflict.other.customer_id])
    if low != high:
        NotSameCustomer.objects.get_or_create(
            customer_low_id=low, customer_high_id=high, defaults={"decided_by": actor}
        )
    now = timezone.now()
    Conflict.objects.filter(
        Q(registration__customer_id=low, other__customer_id=high)
        | Q(registration__customer_id=high, other__customer_id=low),
        status=Conflict.Status.OPEN,
    ).update(status=Conflict.Status.DISMISSED, decided_by=actor, decided_at=now, note=note.strip())
    conflict.refresh_from_db()
    return conflict


@transaction.atomic
def conflict_award_earliest(*, registration: Registration, actor: User, note: str = "") -> Registration:
    """The partner manager's decision by the default rule: the earlier registration keeps the
    customer, so this (later) registration is rejected with a neutral reason. Awarding the later
    one takes something from another dealer, which is the regional director's call (escalate)."""
    from deals import services

    registration = services._lock(registration)
    _check_reviewer(actor, registration)
    conflicts = list(blocking_conflicts(registration).filter(status=Conflict.Status.OPEN).select_related("other"))
    if not conflicts:
        raise services.RegistrationError("There is no open conflict to decide.")
    earlier = [c for c in conflicts if c.suggested_winner.pk == c.other_id]
    if len(earlier) != len(conflicts):
        raise services.RegistrationError(
            "This registration was submitted first; to take the customer from the other dealer, escalate it."
        )
    now = timezone.now()
    services.registration_reject_for_conflict(registration=registration, actor=actor, internal_note=note, now=now)
    Conflict.objects.filter(pk__in=[c.pk for c in conflicts]).update(
        status=Conflict.Status.RESOLVED, decided_by=actor, decided_at=now, note=note.strip(), winner=conflicts[0].other
    )
    return registration


@transaction.atomic
def conflict_escalate(*, registration: Registration, actor: User, note: str) -> Registration:
    from deals import services

    services._require(note, "a note for the regional director")
    registration = services._lock(registration)
    _check_reviewer(actor, registration)
    conflicts = blocking_conflicts(registration).filter(status=Conflict.Status.OPEN)
    if not conflicts.exists():
        raise services.RegistrationError("There is no open conflict to escalate.")
    services.registration_escalate(registration=registration, actor=actor, internal_note=note, reason=NEUTRAL_REVIEW)
    conflicts.update(status=Conflict.Status.ESCALATED, note=note.strip())
    return registration


@transaction.atomic
def conflict_decide(
    *, registration: Registration, winner: Registration, actor: User, customer_chose: bool = False, note: str = ""
) -> Registration:
    """The regional director decides an escalated conflict (in the admin): `winner` keeps the
    customer — the later registration, or one of those it conflicts with. If the later one wins,
    the others lose: a submission is rejected, a protection is revoked. Every dealer is told in
    neutral words; every step is in the history."""
    from deals import services

    registration = services._lock(registration)
    _check_director(actor, registration)
    conflicts = list(blocking_conflicts(registration).filter(status=Conflict.Status.ESCALATED).select_related("other"))
    if not conflicts:
        raise services.RegistrationError("There is no escalated conflict to decide.")
    contenders = {registration.pk} | {c.other_id for c in conflicts}
    if winner.pk not in contenders:
        raise services.RegistrationError("The winner must be one of the competing registrations.")
    winner = registration if winner.pk == registration.pk else services._lock(winner)
    if winner.status not in ACTIVE:
        raise services.RegistrationError(
            f"{winner.reference} is {winner.get_status_display().lower()}; it can no longer keep the customer."
        )
    now = timezone.now()
    why = "The customer chose." if customer_chose else "Decided by the regional director."
    internal = f"{why} {note}".strip()
    if winner.pk == registration.pk:
        services._transition(
            registration,
            "award",
            actor,
            now=now,
            reason="Approved after review.",
            internal_note=internal,
            fields={"decided_at": now, "decided_by": actor, **_award_fields(registration, actor, now)},
        )
        services._notify_dealer(registration, "registration_decision", reason="Approved after review.")
        for conflict in conflicts:
            _take_from(conflict.other, actor, now, internal)
    else:
        services._transition(
            registration,
            "decline",
            actor,
            now=now,
            reason=NEUTRAL_REJECTION,
            internal_note=internal,
            fields={"decided_at": now, "decided_by": actor},
        )
        services._notify_dealer(registration, "registration_decision", reason=NEUTRAL_REJECTION)
    Conflict.objects.filter(pk__in=[c.pk for c in conflicts]).update(
        status=Conflict.Status.RESOLVED,
        decided_by=actor,
        decided_at=now,
        winner=winner,
        customer_chose=customer_chose,
        note=note.strip(),
    )
    return registration


def _award_fields(registration: Registration, actor: User, now) -> dict:
    from deals import services

    if registration.protected_until is None:
        return {**services._decision_fields(registration, actor, now), **services._protection_fields(registration, now)}
    return {}


def _take_from(other: Registration, actor: User, now, internal: str) -> None:
    """The losing side of a conflict the later registration won."""
    from deals import services

    other = services._lock(other)
    if other.status not in ACTIVE:
        return  # withdrawn, won or otherwise closed meanwhile: nothing to take
    step = {"now": now, "internal_note": internal, "authorised_by_conflict": True}
    if other.status != Status.ESCALATED:  # the ladder: an open registration goes through escalated
        services._transition(other, "escalate", actor, reason=NEUTRAL_REVIEW, **step)
    action = "revoke" if other.protected_until else "decline"
    fields = {"decided_at": now, "decided_by": actor}
    services._transition(other, action, actor, reason=NEUTRAL_REJECTION, fields=fields, **step)
    services._notify_dealer(other, "registration_decision", reason=NEUTRAL_REJECTION)
