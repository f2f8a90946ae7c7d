"""Personal data: how long the portal keeps a customer's contact person, and erasing one person's
details on request.

- `contacts_anonymise` (nightly, 03:45): the contact person of a registration that closed (won,
  lost, expired, rejected, withdrawn or revoked) at least `ProgrammeSettings.contact_retention_months`
  ago is anonymised — name "(anonymised)", email a placeholder that can never be delivered, phone
  blank — and that name and address are redacted in the registration's own free text, its
  history, extension requests, conflict notes and stored emails. Per batch, in one transaction:
  the batch is claimed with FOR UPDATE SKIP LOCKED and stamped `anonymised_at`, so two runs at
  once share the work instead of doing it twice, and a rerun finds nothing left.
- `person_erase` (a channel admin, on request): every occurrence of one email address, and of a
  name when given, in the portal's records is replaced by "[erased]". Every row stays, with its
  who, when, from and to; only the text that names the person changes. An ErasureLog row records
  who erased, when, why and how many records of each kind — and a keyed hash, never the address.

Matching: an address matches case-insensitively as a whole address; a name case-insensitively as
whole words ("Jan de Vries" matches "jan de vries," but not "Jan de Vriesland"). The database
finds the candidates (LIKE), Python decides and rewrites them, so both backends behave alike.

Portal accounts are not erased here: a person with an account is deactivated by their dealer
admin or partner manager, and their account stays as the actor of what they did. An address that
belongs to an account is refused, so an erasure never leaves the person half-erased.
"""

from __future__ import annotations

import calendar
import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models, transaction
from django.db.models import F, OuterRef, Q, Subquery
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.crypto import salted_hmac

from dealers.models import ImprovementPlan, Invitation, OrganisationEvent, User
from deals.models import (
    Conflict,
    ErasureLog,
    ExtensionRequest,
    ProgrammeSettings,
    ProtectionLookup,
    Registration,
    RegistrationEvent,
    RegistrationFlag,
)
from prm.models import OutboxEmail
from prm.outbox import MAX_ATTEMPTS

log = logging.getLogger(__name__)

ANONYMISED = "(anonymised)"
ANONYMISED_EMAIL = "anonymised@anonymised.invalid"  # .invalid is reserved (RFC 2606): never delivered
ERASED = "[erased]"
ERASED_EMAIL = "erased@erased.invalid"
NOT_SENT = "Not sent: the recipient's details were erased on request."

BATCH_SIZE = 500
REGISTRATION_TEXT = ("next_steps", "competitors", "lost_competitor")
CONTACT_FIELDS = ("contact_name", "contact_email", "contact_phone")


class ErasureError(Exception):
    """The erasure was refused; the message is meant for the person who tried."""


class NotAllowed(ErasureError):
    pass


# --- finding and replacing ---------------------------------------------------------------------


class Redactor:
    """Replaces the given addresses and names in text, or in JSON made of text."""

    def __init__(self, *, replacement: str, emails: Iterable[str] = (), names: Iterable[str] = ()):
        parts = []
        for email in sorted({e.strip() for e in emails if e and e.strip()}, key=len, reverse=True):
            # a whole address: not the tail of a longer one, not the head of a longer domain
            parts.append(rf"(?<![\w.%+-]){re.escape(email)}(?![\w-]|\.\w)")
        for name in sorted({" ".join(n.split()) for n in names if n and n.strip()}, key=len, reverse=True):
            parts.append(r"(?<!\w)" + r"\s+".join(re.escape(word) for word in name.split()) + r"(?!\w)")
        self.pattern = re.compile("|".join(parts), re.IGNORECASE) if parts else None
        self.replacement = replacement

    def __call__(self, value):
        if self.pattern is None:
            return value
        if isinstance(value, str):
            return self.pattern.sub(lambda _: self.replacement, value)
        if isinstance(value, list):
            return [self(item) for item in value]
        if isinstance(value, dict):
            return {key: self(item) for key, item in value.items()}
        return value

    def finds(self, value) -> bool:
        return self(value) != value


def _rewrite(row, fields: Iterable[str], redactor: Redactor) -> bool:
    """Redact the row's fields in place; True when anything changed."""
    changed = False
    for name in fields:
        old = getattr(row, name)
        new = redactor(old)
        if new != old:
            setattr(row, name, new)
            changed = True
    return changed


# --- retention: the nightly job ------------------------------------------------------------------


def months_before(moment: datetime, months: int) -> datetime:
    """The same local wall-clock time `months` calendar months earlier; a day the month does not
    have becomes its last day (31 May minus 3 months is 28 or 29 February). As a cut-off it never
    comes early: a registration closed on 31 August is six months old on 1 March."""
    local = timezone.localtime(moment)
    year, month = divmod(local.year * 12 + local.month - 1 - months, 12)
    day = min(local.day, calendar.monthrange(year, month + 1)[1])
    return local.replace(year=year, month=month + 1, day=day)


def contacts_due(now: datetime) -> models.QuerySet:
    """The registrations whose contact person is kept past the retention period."""
    cutoff = months_before(now, ProgrammeSettings.load().contact_retention_months)
    return Registration.objects.filter(
        status__in=Registration.CLOSED_STATUSES, status_changed_at__lte=cutoff, anonymised_at__isnull=True
    )


def contacts_anonymise(*, now: datetime | None = None, batch_size: int = BATCH_SIZE) -> int:
    """Nightly: anonymise the contact person of registrations closed longer ago than the retention.

    Returns how many registrations this run anonymised. Each batch claims its rows with FOR
    UPDATE SKIP LOCKED (PostgreSQL; SQLite has one writer at a time anyway), so a second run at
    the same moment takes other rows or none, and the UPDATE's own condition keeps a rerun from
    counting a row twice."""
    now = now or timezone.now()
    due = contacts_due(now).order_by("pk")
    done = 0
    while True:
        with transaction.atomic():
            ids = list(due.select_for_update(skip_locked=True).values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            _redact_contact_text(ids)
            done += Registration.objects.filter(pk__in=ids, anonymised_at__isnull=True).update(
                contact_name=ANONYMISED, contact_email=ANONYMISED_EMAIL, contact_phone="", anonymised_at=now
            )
    return done


def _mentions_contact(fields: Iterable[str], prefix: str = "") -> Q:
    """Rows whose text contains the contact's name or address (of the registration at `prefix`)."""
    condition = Q(pk__in=[])
    for name in fields:
        condition |= Q(**{f"{name}__icontains": F(f"{prefix}contact_name")})
        condition |= Q(**{f"{name}__icontains": F(f"{prefix}contact_email")})
    return condition


def _redact_contact_text(ids: list[int]) -> None:
    """Before the contact fields go: redact each registration's contact in its related free text."""
    contacts = Registration.objects.filter(pk__in=ids).values_list("pk", "reference", "contact_name", "contact_email")
    redactors, by_reference = {}, {}
    for pk, reference, contact_name, contact_email in contacts:
        redactors[pk] = by_reference[reference] = Redactor(
            replacement=ANONYMISED, emails=[contact_email], names=[contact_name]
        )

    def redact(queryset, fields, key: Callable, extra: tuple[str, ...] = ()) -> None:
        changed = [row for row in queryset.only("pk", *fields, *extra) if _rewrite(row, fields, key(row))]
        if changed:
            queryset.model.objects.bulk_update(changed, fields, batch_size=BATCH_SIZE)

    own = Registration.objects.filter(pk__in=ids).filter(_mentions_contact(REGISTRATION_TEXT))
    redact(own, REGISTRATION_TEXT, lambda r: redactors[r.pk])
    for model, fields in (
        (RegistrationEvent, ("reason", "internal_note")),
        (ExtensionRequest, ("reason", "decision_reason")),
    ):
        rows = model.objects.filter(registration_id__in=ids).filter(_mentions_contact(fields, "registration__"))
        redact(rows, fields, lambda r: redactors[r.registration_id], ("registration_id",))
    for side in ("registration", "other"):  # a conflict note may name either registration's contact
        rows = Conflict.objects.filter(**{f"{side}_id__in": ids}).filter(_mentions_contact(["note"], f"{side}__"))
        redact(rows, ("note",), lambda r, side=side: redactors[getattr(r, f"{side}_id")], (f"{side}_id",))
    # stored emails about a registration carry its reference as their topic
    contact = Registration.objects.filter(reference=OuterRef("topic"))
    emails = (
        OutboxEmail.objects.filter(topic__in=list(by_reference))
        .annotate(
            contact_name=Subquery(contact.values("contact_name")[:1]),
            contact_email=Subquery(contact.values("contact_email")[:1]),
        )
        .filter(_mentions_contact(("subject", "body")) | Q(to__iexact=F("contact_email")))
    )
    changed = []
    for email in emails.only("pk", "topic", "to", "subject", "body"):
        redactor = by_reference[email.topic]
        touched = _rewrite(email, ("subject", "body"), redactor)
        if redactor.finds(email.to):
            email.to, touched = ANONYMISED_EMAIL, True
        if touched:
            changed.append(email)
    OutboxEmail.objects.bulk_update(changed, ["to", "subject", "body"], batch_size=BATCH_SIZE)


# --- erasure on request --------------------------------------------------------------------------


def email_hash(email: str) -> str:
    """A keyed hash (HMAC-SHA256 with the SECRET_KEY) of the normalised address: the same address
    always gives the same hash, so "did we erase this address?" can be answered, while a copy of
    the database alone cannot be used to test guessed addresses."""
    return salted_hmac("deals.privacy.erasure", email.strip().lower(), algorithm="sha256").hexdigest()


@dataclass(frozen=True)
class Kind:
    """One kind of record the erasure searches: free-text fields, JSON fields (of text), and fields
    that hold a whole email address (replaced by a placeholder address, not by text)."""

    label: str
    model: type[models.Model]
    text: tuple[str, ...] = ()
    json: tuple[str, ...] = ()
    addresses: tuple[str, ...] = ()
    contact: bool = False  # Registration: a contact that is the person is erased as a whole


def _kinds() -> list[Kind]:
    from django.contrib.admin.models import LogEntry

    from tiers.models import DealerStanding, TierChange

    return [
        Kind("Registrations (contact person and notes)", Registration, REGISTRATION_TEXT, contact=True),
        Kind("Registration history", RegistrationEvent, ("reason", "internal_note")),
        Kind("Extension requests", ExtensionRequest, ("reason", "decision_reason")),
        Kind("Conflicts", Conflict, ("note",), json=("reasons",)),
        Kind("Channel-rule flags", RegistrationFlag, ("explanation",)),
        Kind("Protection look-ups", ProtectionLookup, ("query",)),
        Kind("Organisation history", OrganisationEvent, ("description",), json=("data",)),
        Kind("Invitations", Invitation, addresses=("email",)),
        Kind("Improvement plans", ImprovementPlan, ("goals", "notes", "outcome")),
        Kind("Tier history", TierChange, ("reason",)),
        Kind("Tier overrides", DealerStanding, ("override_reason",)),
        Kind("Stored emails", OutboxEmail, ("subject", "body", "last_error"), addresses=("to",)),
        Kind("Admin log", LogEntry, ("object_repr", "change_message")),
    ]


def counts_in_order(counts: dict[str, int]) -> list[tuple[str, int]]:
    """A log's counts in the order of the kinds (PostgreSQL's JSON keeps no key order)."""
    labels = [kind.label for kind in _kinds()]
    return [(label, counts.get(label, 0)) for label in labels] + [
        (label, count) for label, count in counts.items() if label not in labels
    ]


@dataclass
class Found:
    """What an erasure finds: per kind, the rows it changes (already redacted in memory)."""

    rows: dict[str, list] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {label: len(rows) for label, rows in self.rows.items()}

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _clean(email: str, name: str) -> tuple[str, str]:
    email = (email or "").strip()
    try:
        validate_email(email)
    except ValidationError:
        raise ErasureError("Enter the person's email address.") from None
    name = " ".join((name or "").split())
    if name and len(name.split()) < 2:
        # a lone first name ("Jan") would also redact "10 Jan 2026" and every other Jan
        raise ErasureError("Give the full name as written (first and last name), or leave it empty.")
    if User.objects.filter(email__iexact=email).exists() or _has_account_address(email):
        raise ErasureError(
            f"{email} belongs to a portal account. People with an account are deactivated by their "
            "dealer admin or partner manager, not erased here: their account stays as the author of "
            "what they did."
        )
    return email, name


def _has_account_address(email: str) -> bool:
    from allauth.account.models import EmailAddress

    return EmailAddress.objects.filter(email__iexact=email).exists()


def _check_actor(actor) -> None:
    if actor is None or not actor.is_authenticated or not actor.is_channel_admin:
        raise NotAllowed("Only a channel admin can erase a person's details.")


def _candidates(kind: Kind, email: str, name: str, *, lock: bool) -> models.QuerySet:
    terms = [email, name] if name else [email]
    condition = Q(pk__in=[])
    queryset = kind.model.objects.all()
    for text_field in kind.text:
        for term in terms:
            condition |= Q(**{f"{text_field}__icontains": term})
    for json_field in kind.json:
        as_text = f"{json_field}_as_text"
        queryset = queryset.annotate(**{as_text: Cast(json_field, models.TextField())})
        # SQLite keeps JSON with non-ASCII characters escaped (\u00e9): look for that spelling too
        for spelling in {spelling for term in terms for spelling in (term, json.dumps(term)[1:-1])}:
            condition |= Q(**{f"{as_text}__icontains": spelling})
    for address in kind.addresses:
        condition |= Q(**{f"{address}__iexact": email})
    if kind.contact:
        condition |= Q(contact_email__icontains=email)
        if name:
            condition |= Q(contact_name__icontains=name)
    queryset = queryset.filter(condition).order_by("pk")
    return queryset.select_for_update() if lock else queryset


def _find(email: str, name: str, *, now: datetime, lock: bool = False) -> Found:
    redactor = Redactor(replacement=ERASED, emails=[email], names=[name] if name else [])
    found = Found()
    for kind in _kinds():
        changed = []
        for row in _candidates(kind, email, name, lock=lock).iterator(chunk_size=BATCH_SIZE):
            touched = _rewrite(row, kind.text + kind.json, redactor)
            for address in kind.addresses:
                if redactor.finds(getattr(row, address)):
                    setattr(row, address, ERASED_EMAIL)
                    touched = True
                    _after_address_erased(row, now)
            if kind.contact and (redactor.finds(row.contact_name) or redactor.finds(row.contact_email)):
                row.contact_name, row.contact_email, row.contact_phone = ERASED, ERASED_EMAIL, ""
                row.anonymised_at = row.anonymised_at or now
                touched = True
            if touched:
                changed.append(row)
        found.rows[kind.label] = changed
    return found


def _after_address_erased(row, now: datetime) -> None:
    """An invitation to an erased address can no longer be used; an email to it is never sent."""
    if isinstance(row, Invitation) and row.accepted_at is None and row.expires_at > now:
        row.expires_at = now
    if isinstance(row, OutboxEmail) and row.sent_at is None:
        row.attempts, row.last_error = max(row.attempts, MAX_ATTEMPTS), NOT_SENT


def _fields_written(kind: Kind) -> list[str]:
    fields = [*kind.text, *kind.json, *kind.addresses]
    if kind.contact:
        fields += [*CONTACT_FIELDS, "anonymised_at"]
    if kind.model is Invitation:
        fields.append("expires_at")
    if kind.model is OutboxEmail:
        fields.append("attempts")
    return fields


def person_erase_preview(*, email: str, name: str = "", actor) -> dict[str, int]:
    """How many records of each kind an erasure would redact. Changes nothing."""
    _check_actor(actor)
    email, name = _clean(email, name)
    return _find(email, name, now=timezone.now()).counts


@transaction.atomic
def person_erase(*, email: str, name: str = "", actor, reason: str) -> ErasureLog:
    """Erase one person's details everywhere they occur, keeping every record, and log it."""
    _check_actor(actor)
    email, name = _clean(email, name)
    if not (reason or "").strip():
        raise ErasureError("Say why: the request this erasure answers.")
    now = timezone.now()
    found = _find(email, name, now=now, lock=True)
    kinds = {kind.label: kind for kind in _kinds()}
    for label, rows in found.rows.items():
        if rows:
            kinds[label].model.objects.bulk_update(rows, _fields_written(kinds[label]), batch_size=BATCH_SIZE)
    redactor = Redactor(replacement=ERASED, emails=[email], names=[name] if name else [])
    entry = ErasureLog.objects.create(
        actor=actor,
        created_at=now,
        email_hash=email_hash(email),
        name_given=bool(name),
        reason=redactor(reason.strip()),
        counts=found.counts,
        total=found.total,
    )
    log.info("erasure %s by user %s: %s records redacted", entry.pk, actor.pk, entry.total)
    return entry
