"""Bad input, as people and files deliver it: never a 500, always a message, nothing half-saved.

Hypothesis throws random strings (any unicode, control characters, very long), huge and negative
numbers, far-off dates (year 1, 9999) and empty values at every form through the test client, as
the persona who fills it, and at the services directly. The properties:

- no response is a server error;
- a refusal tells the person: the form again with its errors shown, or a redirect with a
  messages-framework message; a success says so too;
- a refusal changes nothing (the rows of every model the action touches are counted before and
  after); nothing stored holds a NUL character or overflows its column (PostgreSQL would refuse
  both, SQLite keeps them: the check makes the SQLite run see it too).

The services get values of the types and column lengths their forms enforce, with everything else
as extreme as it comes; they answer a rule with their own error, never with a crash.

Then: garbage files for both CSV imports; a script payload in every free-text field, looked for
unescaped on every page and email that shows it; and every CSV export, looked at for cells that a
spreadsheet would run as a formula.

Each example runs in a savepoint that is rolled back, so the `world` fixture (built once per test)
starts every example the same. Profiles: tests/hypothesis_profiles.py (ci by default,
HYPOTHESIS_PROFILE=thorough for a long hunt).
"""

from __future__ import annotations

import csv
import io
import re
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib import admin as django_admin
from django.contrib import messages
from django.contrib.messages import get_messages
from django.core import mail
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.db import models, transaction
from django.test import Client, RequestFactory
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import escape
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from tablib import Dataset

from dealers import services as dealer_services
from dealers.imports import COLUMNS as DEALER_COLUMNS
from dealers.models import ImprovementPlan, Invitation, Membership, Organisation, OrganisationEvent, User
from deals import conflicts, services
from deals.lookup import protection_lookup
from deals.models import (
    Conflict,
    Customer,
    ExtensionRequest,
    Registration,
    RegistrationEvent,
    RegistrationFlag,
    RegistrationLine,
)
from prm import outbox
from prm.csvexport import FORMULA_STARTS, safe_cell
from prm.models import OutboxEmail
from tests.conftest import client_for
from tests.deal_factories import ProductFactory, ProductLineFactory, approved, make_registration, submit
from tiers import services as tier_services
from tiers.imports import COLUMNS as SALE_COLUMNS
from tiers.imports import SaleImportResource
from tiers.models import DealerStanding, Sale, SatisfactionScore, Tier, TierChange

Status = Registration.Status
TODAY = timezone.localdate()

# The world fixture is built once per test, not per example: each example rolls back its own work.
with_world = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# --- what people type --------------------------------------------------------------------------------

PAYLOADS = ("<script>alert(1)</script>", '"><img src=x onerror=alert(1)>')
CONTROL = st.characters(min_codepoint=0, max_codepoint=0x1F) | st.sampled_from(
    ["\x7f", "\x85", "\u200b", "\u200e", "\u202e", "\u2028", "\ufeff", "\ufffd"]
)
long_text = st.builds(lambda c, n: c * n, st.characters(exclude_categories=("Cs",)), st.integers(256, 20_000))
texts = st.one_of(
    st.text(),  # any unicode but surrogates, which no encoding carries
    st.text(CONTROL, min_size=1),
    long_text,
    st.sampled_from(["", " ", "\t\r\n", "\x00", "NULL", "None", "'; DROP TABLE deals_registration; --", *PAYLOADS]),
)
# What a service gets after its form: no NUL (forms refuse it), at most the column's length.
clean_texts = texts.map(lambda s: s.replace("\x00", ""))


def bounded(limit: int):
    return clean_texts.map(lambda s: s[:limit])


def _days_from_today(days: int) -> str:
    return (TODAY + timedelta(days=days)).isoformat()


dates = st.one_of(
    st.dates().map(date.isoformat),  # year 1 to 9999
    st.integers(-800, 4000).map(_days_from_today),  # near enough that some pass
    st.sampled_from(["0001-01-01", "9999-12-31", "0000-00-00", "2026-02-30", "31-12-2026", "today", "1e10", ""]),
    texts,
)
numbers = st.one_of(
    st.integers().map(str),  # unbounded: huge and negative
    st.integers(1, 1000).map(str),
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.decimals(min_value=Decimal("-1e30"), max_value=Decimal("1e30"), places=8).map(str),
    st.sampled_from(
        ["1e400", "-0", "0", "0.001", "9" * 30, "1,5", "1.234,56", " 7 ", "١٢", "²", "0x10", "Infinity", "sNaN", "NaN"]
    ),
    texts,
)
ids = st.one_of(numbers, st.sampled_from(["", "²", "٣", "0", "-1", "9" * 40]))
LONG_EMAILS = [  # valid addresses longer than an email column's 254 characters
    "a" * 64 + "@" + ".".join(["b" * 63] * 3) + ".com",
    "x" * 60 + "@" + "c" * 63 + "." + "d" * 63 + "." + "e" * 63 + ".example",
]
emails = st.one_of(st.emails().map(str), st.sampled_from(LONG_EMAILS), texts)


def maybe(strategy, *good):
    """One value: garbage, or sometimes a good one, so that the success path runs too."""
    return st.one_of(strategy, st.sampled_from(good))


class Field:
    """A form field: its good values, and the garbage that may replace them."""

    def __init__(self, bad, *good):
        self.bad, self.good = bad, good


def form(fields: dict):
    """A filled-in form with up to three of its fields replaced by garbage (none, now and then):
    each bad value is judged nearly on its own, and the form as a whole is sometimes good."""
    corruptible = sorted(name for name, value in fields.items() if isinstance(value, Field))

    def fill(spoilt):
        return st.fixed_dictionaries(
            {
                name: (value.bad if name in spoilt else st.sampled_from(value.good))
                if isinstance(value, Field)
                else value
                for name, value in fields.items()
            }
        )

    return st.lists(st.sampled_from(corruptible), max_size=3, unique=True).flatmap(fill)


def good(fields: dict, **bad) -> dict:
    """The form filled in well, but for the given fields: for the examples pinned below, each a bug
    Hypothesis found once (a 500, or a value the database would refuse)."""
    return {name: value.good[0] if isinstance(value, Field) else value for name, value in fields.items()} | bad


# --- the properties ------------------------------------------------------------------------------------

WATCHED = [
    Registration,
    RegistrationLine,
    RegistrationEvent,
    RegistrationFlag,
    Customer,
    Conflict,
    ExtensionRequest,
    OutboxEmail,
    SatisfactionScore,
    ImprovementPlan,
    Organisation,
    OrganisationEvent,
    Invitation,
    Membership,
    User,
    DealerStanding,
    TierChange,
    Sale,
]


@contextmanager
def rolled_back():
    """One example: its rows are rolled back and its rate-limit counters forgotten afterwards."""
    cache.clear()
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def state(*objects) -> dict:
    """How many rows each watched model has, and every field of the given rows."""
    snapshot = {model.__name__: model.objects.count() for model in WATCHED}
    for obj in objects:
        snapshot[f"{type(obj).__name__} {obj.pk}"] = type(obj).objects.filter(pk=obj.pk).values().first()
    return snapshot


def assert_storable() -> None:
    """Every text stored fits its column and holds no NUL: what PostgreSQL would refuse with a
    DataError, SQLite keeps, so the suite looks on both."""
    for model in WATCHED:
        columns = [f for f in model._meta.concrete_fields if isinstance(f, models.CharField | models.TextField)]
        if not columns:
            continue
        for row in model.objects.values_list(*[f.attname for f in columns]):
            for column, value in zip(columns, row, strict=True):
                if isinstance(value, str):
                    assert "\x00" not in value, f"a NUL character stored in {model.__name__}.{column.name}"
                    limit = getattr(column, "max_length", None)
                    assert limit is None or len(value) <= limit, f"{model.__name__}.{column.name} overflows"


def verdict(response) -> str:
    """Whether the request was done or refused; fails on a server error, and on a response that
    tells the person nothing."""
    assert response.status_code < 500, response.status_code
    told = list(get_messages(response.wsgi_request))
    if response.status_code == 302:
        assert told, f"a redirect to {response['Location']} without a message"
        assert all(str(m).strip() for m in told), "an empty message"
        return "refused" if any(m.level >= messages.WARNING for m in told) else "done"
    assert response.status_code in (200, 429), response.status_code
    page = response.content.decode()
    assert 'role="alert"' in page or 'class="error"' in page, "the form came back without saying what is wrong"
    return "refused"


def check(response, before: dict, *objects) -> str:
    outcome = verdict(response)
    event(outcome)  # --hypothesis-show-statistics tells how often each path ran
    if outcome == "refused":
        assert state(*objects) == before, "a refused request changed something"
    assert_storable()
    return outcome


# --- the dealer ---------------------------------------------------------------------------------------


@pytest.fixture
def product(db):
    return ProductFactory(list_price=Decimal("1250.00"))


REGISTRATION_FORM = {
    "customer-existing": Field(ids, ""),
    "customer-name": Field(texts, "Bakkerij Jansen B.V."),
    "customer-city": Field(texts, "Utrecht"),
    "customer-postcode": Field(texts, "3511 AB"),
    "customer-country": Field(texts, "NL"),
    "customer-website": Field(texts, ""),
    "customer-vat_number": Field(texts, ""),
    "customer-company_number": Field(texts, ""),
    "deal-contact_name": Field(texts, "Marleen Jansen"),
    "deal-contact_email": Field(emails, "marleen@jansen.example"),
    "deal-contact_phone": Field(texts, "", "+31 30 123 4567"),
    "deal-expected_close_date": Field(dates, _days_from_today(40)),
    "deal-decision_stage": Field(texts, "", "mid"),
    "deal-competitors": Field(texts, ""),
    "deal-next_steps": Field(texts, ""),
    "lines-TOTAL_FORMS": Field(numbers, "1"),
    "lines-INITIAL_FORMS": Field(numbers, "0"),
    "lines-0-quantity": Field(numbers, "2"),
    "lines-0-value": Field(numbers, ""),
    "lines-0-product": Field(ids, "the product"),
}


@with_world
@given(
    fields=form(REGISTRATION_FORM),
)
@example(fields=good(REGISTRATION_FORM, **{"deal-contact_email": LONG_EMAILS[0]}))  # 255+ characters, yet valid
def test_registering_a_deal(world, product, fields):
    if fields["lines-0-product"] == "the product":
        fields["lines-0-product"] = str(product.pk)
    with rolled_back():
        client = client_for(world.own_user)
        before = state()
        response = client.post(reverse("deals:registration_create"), fields)
        if check(response, before) == "done":
            assert Registration.objects.count() == before["Registration"] + 1


@pytest.fixture
def protected(world):
    return approved(world)


UPDATE_FORM = {
    "expected_close_date": Field(dates, _days_from_today(60)),
    "decision_stage": Field(texts, "late"),
    "competitors": Field(texts, ""),
    "next_steps": Field(texts, "Demo on site"),
    "lines-TOTAL_FORMS": Field(numbers, "1"),
    "lines-INITIAL_FORMS": Field(numbers, "0"),
    "lines-0-quantity": Field(numbers, "3"),
    "lines-0-value": Field(numbers, ""),
}


@with_world
@given(
    fields=form(UPDATE_FORM),
    add_line=st.booleans(),
)
@example(fields=good(UPDATE_FORM, expected_close_date="9999-12-31"), add_line=False)  # now refused, as on creation
# a signalling NaN made Django's has_changed() raise InvalidOperation: a server error (found by this test in CI)
@example(fields=good(UPDATE_FORM, **{"lines-0-value": "SNAN"}), add_line=False)
def test_updating_a_registration(world, protected, fields, add_line):
    fields["lines-0-product"] = str(protected.lines.get().product_id)
    if add_line:
        fields["add_line"] = "1"
    with rolled_back():
        client = client_for(world.own_user)
        before = state(protected)
        response = client.post(reverse("deals:registration_update", args=[protected.pk]), fields)
        if add_line:  # without JavaScript: the form again with one more line, nothing saved
            assert response.status_code == 200 and state(protected) == before
        elif check(response, before, protected) == "done":
            protected.refresh_from_db()
            assert protected.expected_close_date.year <= TODAY.year + 10  # as far ahead as a new one may be


@pytest.fixture
def dealer_cases(world):
    info_requested = submit(world)
    services.registration_request_info(registration=info_requested, actor=world.pm_a, reason="Which site?")
    return {
        "won": approved(world),
        "lost": approved(world),
        "extend": approved(world),
        "withdraw": submit(world),
        "resubmit": info_requested,
    }


DEALER_ACTION_FORM = {
    "won_value": Field(numbers, "2500.00"),
    "won_date": Field(dates, TODAY.isoformat()),
    "lost_reason": Field(texts, "price", "competitor"),
    "lost_competitor": Field(texts, ""),
    "reason": Field(texts, "The customer postponed the decision."),
}


@with_world
@given(
    action=st.sampled_from(["won", "lost", "extend", "withdraw", "resubmit"]),
    fields=form(DEALER_ACTION_FORM),
)
@example(action="withdraw", fields=good(DEALER_ACTION_FORM, reason="\x00"))  # was stored: PostgreSQL refuses it
@example(action="resubmit", fields=good(DEALER_ACTION_FORM, reason="\x00"))
def test_the_dealers_actions(world, dealer_cases, action, fields):
    registration = dealer_cases[action]
    if action == "withdraw":
        url = reverse("deals:registration_withdraw", args=[registration.pk])
    else:
        url = reverse("deals:registration_dealer_action", args=[registration.pk, action])
    with rolled_back():
        client = client_for(world.own_user)
        before = state(registration)
        outcome = check(client.post(url, fields), before, registration)
        registration.refresh_from_db()
        if outcome == "done" and action != "extend":
            assert registration.status != before[f"Registration {registration.pk}"]["status"]


# --- the partner manager and the regional director --------------------------------------------------


@pytest.fixture
def review_cases(world):
    escalated = submit(world)
    services.registration_escalate(registration=escalated, actor=world.pm_a, internal_note="Check the segment.")
    return {"submitted": submit(world), "escalated": escalated}


REASON_FORM = {"reason": Field(texts, "", "Fits the programme."), "internal_note": Field(texts, "", "Checked the VAT.")}


@with_world
@given(
    action=st.sampled_from(["approve", "reject", "request_info", "escalate", "award", "refuse"]),
    fields=form(REASON_FORM),
)
@example(action="approve", fields=good(REASON_FORM, internal_note="\x00"))  # was approved, the note silently dropped
def test_review_decisions_with_reasons(world, review_cases, action, fields):
    if action in ("award", "refuse"):
        registration, reviewer = review_cases["escalated"], world.rd_north
    else:
        registration, reviewer = review_cases["submitted"], world.pm_a
    with rolled_back():
        client = client_for(reviewer)
        before = state(registration)
        url = reverse("deals:registration_review_action", args=[registration.pk, action])
        if check(client.post(url, fields), before, registration) == "done":
            latest = registration.events.latest("pk")  # what was typed is what was kept
            assert latest.internal_note == fields["internal_note"].strip()
            assert latest.reason == fields["reason"].strip() or not fields["reason"].strip()  # empty: a default


@pytest.fixture
def conflicted(world):
    """The other dealer registered the customer first; the own dealer's later one conflicts."""
    product = ProductFactory()
    submit(world.other_admin, lines=[services.LineData(product=product, quantity=1)])
    later = submit(world, lines=[services.LineData(product=product, quantity=2)])
    conflict = Conflict.objects.get(registration=later)
    assert conflict.is_blocking
    return later, conflict


@with_world
@given(
    action=st.sampled_from(["dismiss", "earliest", "escalate"]),
    note=maybe(texts, "", "Same VAT number."),
    conflict_field=maybe(ids, "the conflict"),
)
@example(action="dismiss", note="", conflict_field="²")  # "²".isdigit(), but int("²") fails
@example(action="escalate", note="\x00", conflict_field="the conflict")
def test_conflict_decisions(world, conflicted, action, note, conflict_field):
    later, conflict = conflicted
    fields = {"note": note, "conflict": str(conflict.pk) if conflict_field == "the conflict" else conflict_field}
    with rolled_back():
        client = client_for(world.pm_a)
        before = state(later, conflict)
        response = client.post(reverse("deals:conflict_action", args=[later.pk, action]), fields)
        if response.status_code == 404:  # a tampered conflict id: the hidden field names none of this one's
            assert action == "dismiss" and fields["conflict"] != str(conflict.pk)
            assert state(later, conflict) == before
        else:
            check(response, before, later, conflict)


@pytest.fixture
def extension(world):
    registration = approved(world)
    return services.extension_request(registration=registration, actor=world.own_user, reason="Tender delayed.")


@with_world
@given(decision=st.sampled_from(["approve", "decline"]), reason=maybe(texts, "", "Fine."))
@example(decision="approve", reason="\x00")
def test_extension_decisions(world, extension, decision, reason):
    with rolled_back():
        client = client_for(world.pm_a)
        before = state(extension, extension.registration)
        url = reverse("deals:extension_decide", args=[extension.pk, decision])
        check(client.post(url, {"reason": reason}), before, extension, extension.registration)


@pytest.fixture
def won(world):
    return make_registration(world.own, world.own_user, Status.WON)


@with_world
@given(score=maybe(numbers, "1", "5"))
def test_recording_satisfaction(world, won, score):
    with rolled_back():
        client = client_for(world.pm_a)
        before = state()
        check(client.post(reverse("tiers:registration_satisfaction", args=[won.pk]), {"score": score}), before)


@pytest.fixture
def queued(world):
    """A customer of its own: a second registration of one customer is flagged, never bulk-approved."""
    return submit(world, customer=services.CustomerData("Bulk Klant B.V.", "Amsterdam", "1011 AA", "NL"))


@with_world
@given(selected=st.lists(maybe(ids, "the registration"), max_size=5))
@example(selected=["the registration"])
@example(selected=["²"])
def test_bulk_approval_of_a_tampered_selection(world, queued, selected):
    registration = queued
    values = [str(registration.pk) if v == "the registration" else v for v in selected]
    with rolled_back():
        client = client_for(world.pm_a)
        before = state(registration)
        response = client.post(reverse("deals:review_bulk_approve"), {"registration": values})
        if check(response, before, registration) == "done":
            assert values and set(values) == {str(registration.pk)}


@with_world
@given(
    fields=form(
        {
            "goals": Field(texts, "Two certified installers by the deadline."),
            "deadline": Field(dates, _days_from_today(90)),
            "notes": Field(texts, ""),
        }
    )
)
def test_opening_an_improvement_plan(world, fields):
    with rolled_back():
        client = client_for(world.pm_a)
        before = state(world.own)
        check(client.post(reverse("dealers:plan_open", args=[world.own.pk]), fields), before, world.own)


@pytest.fixture
def plan(world):
    return dealer_services.improvement_plan_open(
        organisation=world.own, goals="Two installers.", deadline=TODAY + timedelta(days=60), actor=world.pm_a
    )


@with_world
@given(
    fields=form(
        {
            "decision": Field(texts, "met", "extend", "not_met"),
            "outcome": Field(texts, "The goals were reached."),
            "deadline": Field(dates, "", _days_from_today(120)),
            "confirm": st.just("yes"),
        }
    )
)
def test_reviewing_an_improvement_plan(world, plan, fields):
    with rolled_back():
        client = client_for(world.pm_a)
        before = state(plan, world.own)
        check(client.post(reverse("dealers:plan_review", args=[plan.pk]), fields), before, plan, world.own)


# --- the channel admin, the lookup, the dealer admin ---------------------------------------------------


@pytest.fixture
def running_override(world):
    return tier_services.tier_override(
        organisation=world.other,
        tier=Tier.objects.order_by("rank").first(),
        until=TODAY + timedelta(days=30),
        reason="Launch.",
        actor=world.channel_admin,
    )


@with_world
@given(
    fields=form(
        {
            "tier": Field(ids, "gold"),
            "until": Field(dates, _days_from_today(100)),
            "reason": Field(texts, "Launch partner."),
        }
    ),
    end_reason=maybe(texts, ""),
)
def test_overriding_a_tier(world, running_override, fields, end_reason):
    if fields["tier"] == "gold":
        fields["tier"] = str(Tier.objects.order_by("rank").first().pk)
    running = running_override
    with rolled_back():
        client = client_for(world.channel_admin)
        before = state(running)
        check(client.post(reverse("tiers:dealer_override", args=[world.own.pk]), fields), before, running)
        before = state(running)
        url = reverse("tiers:dealer_override_end", args=[world.other.pk])
        check(client.post(url, {"reason": end_reason}), before, running)


@with_world
@given(query=texts)
def test_the_protection_lookup(world, review_cases, query):
    with rolled_back():
        response = client_for(world.pm_a).get(reverse("deals:protection_lookup"), {"q": query})
        assert response.status_code in (200, 429)
        protection_lookup(query=query.replace("\x00", ""), user=world.pm_a)  # the service reads anything


@with_world
@given(email=maybe(emails, "new.colleague@own.example"), role=maybe(texts, "user", "admin"))
@example(email=LONG_EMAILS[0], role="user")
def test_inviting_a_colleague(world, email, role):
    with rolled_back():
        client = client_for(world.own_admin)
        before = state()
        response = client.post(
            reverse("dealers:organisation_invite", args=[world.own.pk]), {"email": email, "role": role}
        )
        if check(response, before) == "done":
            assert Invitation.objects.count() == before["Invitation"] + 1


@pytest.fixture
def invitation(world):
    return dealer_services.invitation_create(
        organisation=world.own, email="lotte@own.example", role="user", invited_by=world.own_admin
    )


@with_world
@given(
    token=maybe(texts, "the token"),
    fields=form(
        {
            "first_name": Field(texts, "Lotte"),
            "last_name": Field(texts, "de Boer"),
            "password1": Field(texts, "a long passphrase of sorts"),
            "password2": Field(texts, "a long passphrase of sorts"),
        }
    ),
)
def test_accepting_an_invitation(world, invitation, token, fields):
    if token == "the token":
        token = dealer_services.invitation_token(invitation)
    with rolled_back():
        before = state(invitation)
        try:
            url = reverse("dealers:invitation_accept", args=[token])
        except NoReverseMatch:  # a token the URL pattern cannot carry (a slash, nothing): no page to reach
            return
        response = Client().post(url, fields)
        if response.status_code == 410:  # a link that is not an invitation: the page says why
            assert "invitation" in response.content.decode().lower() and state(invitation) == before
        else:
            check(response, before, invitation)


# --- what is read from the query string ------------------------------------------------------------------


PAGES = {
    "dealer": ["deals:registration_list", "tiers:dealer_dashboard", "tiers:my_tier", "tiers:figures_sales"],
    "staff": [
        "deals:registration_list",
        "deals:review_queue",
        "deals:forecast",
        "deals:forecast_csv",
        "dealers:dealer_list",
        "tiers:team_dashboard",
        "tiers:region_dashboard",
        "tiers:figures_registrations",
        "tiers:figures_sales",
    ],
}
PARAMETERS = [
    "q", "status", "decision_stage", "organisation", "ordering", "expiring", "page", "overdue", "region",
    "product_line", "product", "protected", "close_from", "close_to", "start", "end", "sort", "format",
    "kpi", "dealer", "pm", "line", "tier", "in_grace", "partner_manager", "kind",
]  # fmt: skip


@with_world
@given(
    who=st.sampled_from(["dealer", "staff"]),
    page=st.integers(0, 100),
    query=st.dictionaries(
        st.sampled_from(PARAMETERS),
        st.one_of(texts, dates, ids, st.sampled_from(["csv", "sla-csv", "submitted", "-revenue", "won_in"])),
        max_size=6,
    ),
)
@example(who="staff", page=PAGES["staff"].index("tiers:figures_sales"), query={"dealer": "²", "line": "٣²"})
@example(who="staff", page=PAGES["staff"].index("tiers:team_dashboard"), query={"start": "0001-01-01"})
def test_filters_periods_and_sorting(world, who, page, query):
    user = world.own_user if who == "dealer" else world.channel_admin
    names = PAGES[who]
    with rolled_back():
        response = client_for(user).get(reverse(names[page % len(names)]), query)
        assert response.status_code < 500


@pytest.mark.parametrize(
    "start, end",
    [("0001-01-01", "0001-12-31"), ("0001-03-01", "0002-02-28"), ("9999-01-01", "9999-12-31"), ("0001-01-01", "")],
)
def test_dashboards_take_periods_at_the_ends_of_the_calendar(world, start, end):
    for user, name in [
        (world.own_user, "tiers:dealer_dashboard"),
        (world.pm_a, "tiers:team_dashboard"),
        (world.rd_north, "tiers:region_dashboard"),
        (world.pm_a, "tiers:figures_sales"),
    ]:
        for extra in ({}, {"format": "csv"}):
            response = client_for(user).get(reverse(name), {"start": start, "end": end, **extra})
            assert response.status_code == 200, (name, start, end, extra)
            if start < "1900" and not extra and "dashboard" in name:  # the last 12 months, and why
                assert "Choose dates from 1900 on." in response.content.decode()


# --- the services directly -----------------------------------------------------------------------------


def refused_or_done(call, before: dict, *objects, error=services.RegistrationError):
    """Run one service call: it succeeds, or refuses with its own error and a message, changing nothing."""
    try:
        with transaction.atomic():
            call()
    except error as exc:
        assert str(exc).strip(), "an error without a message"
        assert state(*objects) == before
        event("refused")
        return "refused"
    assert_storable()
    event("done")
    return "done"


decimals = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(min_value=Decimal("-1e20"), max_value=Decimal("1e20"), places=6),
    st.sampled_from([Decimal("0.01"), Decimal("999999999.99"), Decimal("1e9"), Decimal("1E+400")]),
)
any_dates = st.one_of(st.dates(), st.integers(-800, 4000).map(lambda d: TODAY + timedelta(days=d)))


@with_world
@given(
    customer=st.builds(
        services.CustomerData,
        name=bounded(200),
        city=bounded(100),
        postcode=bounded(12),
        country=st.sampled_from(["NL", "BE", "DE", "LU"]),
        website=bounded(200),
        vat_number=bounded(20),
        company_number=bounded(20),
    ),
    contact_name=bounded(200),
    quantity=st.one_of(st.integers(), st.integers(1, 50)),
    value=st.one_of(st.none(), decimals),
    close=any_dates,
    competitors=bounded(300),
    next_steps=clean_texts,
)
@example(  # a value of 400 digits could not be rounded; a quantity past the form's limit was saved
    customer=services.CustomerData("Klant", "Utrecht", "3511 AB", "NL"),
    contact_name="Jan",
    quantity=1,
    value=Decimal("1E+400"),
    close=TODAY,
    competitors="",
    next_steps="",
)
@example(
    customer=services.CustomerData("Klant", "Utrecht", "3511 AB", "NL"),
    contact_name="Jan",
    quantity=10**30,
    value=Decimal("1.00"),
    close=TODAY,
    competitors="",
    next_steps="",
)
def test_submitting_through_the_service(world, product, customer, contact_name, quantity, value, close, **text):
    with rolled_back():
        before = state()
        refused_or_done(
            lambda: services.registration_submit(
                actor=world.own_user,
                customer=customer,
                contact_name=contact_name,
                contact_email="jan@example.com",
                lines=[services.LineData(product=product, quantity=quantity, value=value)],
                expected_close_date=close,
                **text,
            ),
            before,
        )


@with_world
@given(
    action=st.sampled_from(["won", "lost", "extend", "withdraw", "resubmit", "update"]),
    value=decimals,
    day=any_dates,
    reason=clean_texts,
    short=bounded(200),
    quantity=st.integers(),
)
def test_the_dealers_services(world, dealer_cases, action, value, day, reason, short, quantity):
    registration = dealer_cases.get(action, dealer_cases["won"])
    actor = world.own_user
    calls = {
        "won": lambda: services.registration_report_won(
            registration=registration, actor=actor, value=value, won_on=day
        ),
        "lost": lambda: services.registration_report_lost(
            registration=registration, actor=actor, reason=short[:20], competitor=short
        ),
        "extend": lambda: services.extension_request(registration=registration, actor=actor, reason=reason),
        "withdraw": lambda: services.registration_withdraw(registration=registration, actor=actor, reason=reason),
        "resubmit": lambda: services.registration_resubmit(registration=registration, actor=actor, reason=reason),
        "update": lambda: services.registration_update(
            registration=registration,
            actor=actor,
            expected_close_date=day,
            decision_stage="",
            next_steps=reason,
            competitors=short,
            lines=[services.LineData(product=registration.lines.get().product, quantity=quantity, value=value)],
        ),
    }
    with rolled_back():
        before = state(registration)
        refused_or_done(calls[action], before, registration)


@with_world
@given(
    action=st.sampled_from(["approve", "reject", "request_info", "escalate", "earliest", "conflict_escalate"]),
    reason=clean_texts,
    note=clean_texts,
)
def test_the_reviewers_services(world, conflicted, review_cases, action, reason, note):
    later, _conflict = conflicted
    registration = review_cases["submitted"] if action in ("approve", "reject", "request_info", "escalate") else later
    pm = world.pm_a
    calls = {
        "approve": lambda: services.registration_approve(
            registration=registration, actor=pm, reason=reason, internal_note=note
        ),
        "reject": lambda: services.registration_reject(registration=registration, actor=pm, reason=reason),
        "request_info": lambda: services.registration_request_info(registration=registration, actor=pm, reason=reason),
        "escalate": lambda: services.registration_escalate(registration=registration, actor=pm, internal_note=note),
        "earliest": lambda: conflicts.conflict_award_earliest(registration=registration, actor=pm, note=note),
        "conflict_escalate": lambda: conflicts.conflict_escalate(registration=registration, actor=pm, note=note),
    }
    with rolled_back():
        before = state(registration)
        refused_or_done(calls[action], before, registration)


@with_world
@given(
    action=st.sampled_from(["plan", "override", "satisfaction", "invite"]),
    text=clean_texts,
    day=any_dates,
    number=st.integers(),
    email=st.emails().map(str).filter(lambda e: len(e) <= 254),
)
def test_the_other_services(world, won, action, text, day, number, email):
    calls = {
        "plan": (
            lambda: dealer_services.improvement_plan_open(
                organisation=world.own, goals=text, deadline=day, notes=text, actor=world.pm_a
            ),
            dealer_services.ServiceError,
        ),
        "override": (
            lambda: tier_services.tier_override(
                organisation=world.own,
                tier=Tier.objects.order_by("rank").first(),
                until=day,
                reason=text[:300],
                actor=world.channel_admin,
            ),
            tier_services.TierError,
        ),
        "satisfaction": (
            lambda: tier_services.satisfaction_record(registration=won, score=number, actor=world.pm_a),
            tier_services.TierError,
        ),
        "invite": (
            lambda: dealer_services.invitation_create(
                organisation=world.own, email=email, role="user", invited_by=world.own_admin
            ),
            dealer_services.ServiceError,
        ),
    }
    call, error = calls[action]
    with rolled_back():
        before = state(world.own)
        refused_or_done(call, before, world.own, error=error)


# --- garbage files --------------------------------------------------------------------------------------

SALE_HEADER = ",".join(SALE_COLUMNS)
DEALER_HEADER = ",".join(DEALER_COLUMNS)


def _encoded(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace")


def _files(header: str):
    return st.one_of(
        st.binary(max_size=3000),  # random bytes
        st.builds(_encoded, st.text(), st.sampled_from(["utf-16", "utf-32", "latin-1", "cp1252", "shift_jis"])),
        st.builds(  # the right header in another encoding, with a row of non-ASCII text
            lambda rows, encoding: _encoded(header + "\n" + rows, encoding),
            st.text(min_size=1),
            st.sampled_from(["utf-16", "latin-1", "cp1252"]),
        ),
        st.builds(  # the right header and a huge, or ragged, or NUL-ridden row
            lambda row: (header + "\n" + row).encode(),
            st.one_of(
                long_text.map(lambda s: ",".join([s] * 3)),
                st.lists(texts.map(lambda s: s.replace("\n", " ")), max_size=15).map(",".join),
                st.just("\x00" * 50),
            ),
        ),
        st.sampled_from([b"", b"\xef\xbb\xbf", header.encode(), b"\n\n\n", b'"unterminated,quote\n1,2']),
    )


@pytest.mark.parametrize(
    "url_name, resource, header",
    [("admin:tiers_sale_import", None, SALE_HEADER), ("admin:dealers_organisation_import", "0", DEALER_HEADER)],
    ids=["sales", "dealers"],
)
def test_garbage_files_are_refused_and_nothing_is_imported(world, url_name, resource, header):
    @with_world
    @given(content=_files(header), name=st.sampled_from(["upload.csv", "upload.txt", "a" * 200 + ".csv"]))
    @example(content=(header + "\n ").encode(), name="upload.csv")  # a header and a blank line: nothing to import
    def upload(content, name):
        with rolled_back():
            client = client_for(world.channel_admin)
            before = state()
            fields = {"format": "0", "import_file": SimpleUploadedFile(name, content, content_type="text/csv")}
            if resource is not None:
                fields["resource"] = resource
            response = client.post(reverse(url_name), fields)
            assert response.status_code == 200
            page = response.content.decode()
            told = [str(m) for m in get_messages(response.wsgi_request)]
            assert told or "errorlist" in page or "Errors" in page or "failed" in page, "refused without a reason"
            if "confirm_form" in response.context:  # only a file without data rows: there is nothing to import
                assert response.context["result"].totals["new"] == 0, "a garbage file was offered for import"
            assert state() == before

    upload()


def test_the_sales_command_refuses_garbage_files(world, tmp_path):
    for number, content in enumerate(
        [
            bytes(range(256)),
            "erp_line_id,date\n1,2".encode("utf-16"),
            (SALE_HEADER + "\n" + ",".join(["é" * 50_000] * len(SALE_COLUMNS))).encode("latin-1"),
            (SALE_HEADER + "\n" + ",".join(["x" * 100_000] * len(SALE_COLUMNS))).encode(),
            b"",
        ]
    ):
        path = tmp_path / f"sales-{number}.csv"
        path.write_bytes(content)
        with pytest.raises(CommandError) as refused:
            call_command("import_sales", str(path), stdout=io.StringIO(), stderr=io.StringIO())
        assert str(refused.value).strip()
    assert not Sale.objects.exists()


# --- escaping ----------------------------------------------------------------------------------------------

RAW = ("<script>alert(1)</script>", "<img src=x onerror=alert(1)>")


def _sale_file(payload: str, erp_line_id: str) -> bytes:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=SALE_COLUMNS)
    writer.writeheader()
    writer.writerow(
        {
            "erp_line_id": erp_line_id,
            "date": (TODAY - timedelta(days=5)).isoformat(),
            "reseller": "NL823456789B01",
            "customer_name": payload,
            "customer_city": payload,
            "customer_country": "NL",
            "product_line": "tier-line",
            "amount": "12900.00",
        }
    )
    return out.getvalue().encode()


def _fill_every_free_text_field(world, payload: str) -> dict:
    """Everything a dealer or vendor staff can type, set to the payload through the pages (the
    services where a page only passes it on); returns what the pages to look at need."""
    pm, dealer_admin = client_for(world.pm_a), client_for(world.own_admin)

    def done(response):
        assert verdict(response) == "done", response.wsgi_request.path

    # The organisation's name, as a channel admin types it in the admin; its VAT number for the sales file.
    Organisation.objects.filter(pk=world.own.pk).update(name=payload, vat_number="NL823456789B01")
    # A new colleague joins with the payload as their name and registers the deals.
    done(
        dealer_admin.post(
            reverse("dealers:organisation_invite", args=[world.own.pk]), {"email": "new@own.example", "role": "user"}
        )
    )
    token = dealer_services.invitation_token(Invitation.objects.get(email="new@own.example"))
    accepted = Client().post(
        reverse("dealers:invitation_accept", args=[token]),
        {
            "first_name": payload,
            "last_name": payload,
            "password1": "pass phrase 4 tests",
            "password2": "pass phrase 4 tests",
        },
    )
    assert accepted.status_code == 302
    person = User.objects.get(email="new@own.example")
    dealer = client_for(person)

    line = ProductLineFactory(code="tier-line", name="Tier line")
    product = ProductFactory(line=line, name=payload[:200])
    earlier_customer = services.CustomerData(payload, payload, "3511 AB", "NL")
    submit(world.other_admin, customer=earlier_customer, lines=[services.LineData(product=product, quantity=1)])
    created = dealer.post(
        reverse("deals:registration_create"),
        {
            "customer-name": payload,
            "customer-city": payload,
            "customer-postcode": "3511 AB",
            "customer-country": "NL",
            "customer-website": payload,
            "deal-contact_name": payload,
            "deal-contact_email": "contact@customer.example",
            "deal-expected_close_date": (TODAY + timedelta(days=40)).isoformat(),
            "deal-competitors": payload,
            "deal-next_steps": payload,
            "lines-TOTAL_FORMS": "1",
            "lines-INITIAL_FORMS": "0",
            "lines-0-product": str(product.pk),
            "lines-0-quantity": "2",
        },
    )
    done(created)
    conflicted = Registration.objects.filter(registered_by=person).latest("pk")
    assert conflicted.conflicts.exists()
    done(pm.post(reverse("deals:conflict_action", args=[conflicted.pk, "escalate"]), {"note": payload}))

    def register(**extra):
        return submit(
            person,
            customer=services.CustomerData(payload + " II", payload, "3512 CD", "NL"),
            contact_name=payload,
            competitors=payload,
            next_steps=payload,
            **extra,
        )

    def review(registration, action, **fields):
        done(pm.post(reverse("deals:registration_review_action", args=[registration.pk, action]), fields))

    def act(registration, action, **fields):
        done(dealer.post(reverse("deals:registration_dealer_action", args=[registration.pk, action]), fields))

    won = register()
    review(won, "approve", reason=payload, internal_note=payload)
    act(won, "extend", reason=payload)
    extension = ExtensionRequest.objects.get(registration=won)
    done(pm.post(reverse("deals:extension_decide", args=[extension.pk, "decline"]), {"reason": payload}))
    act(won, "won", won_value="2500.00", won_date=TODAY.isoformat())
    done(pm.post(reverse("tiers:registration_satisfaction", args=[won.pk]), {"score": "4"}))
    lost = register()
    review(lost, "approve")
    act(lost, "lost", lost_reason="competitor", lost_competitor=payload)
    rejected = register()
    review(rejected, "request_info", reason=payload, internal_note=payload)
    act(rejected, "resubmit", reason=payload)
    review(rejected, "reject", reason=payload, internal_note=payload)
    withdrawn = register()
    done(dealer.post(reverse("deals:registration_withdraw", args=[withdrawn.pk]), {"reason": payload}))
    open_one = register()
    review(open_one, "escalate", internal_note=payload)

    # The improvement plan: goals, internal notes, the review's outcome.
    done(
        pm.post(
            reverse("dealers:plan_open", args=[world.own.pk]),
            {"goals": payload, "deadline": _days_from_today(60), "notes": payload},
        )
    )
    plan = ImprovementPlan.objects.get(organisation=world.own)
    done(
        pm.post(
            reverse("dealers:plan_review", args=[plan.pk]),
            {"decision": "extend", "outcome": payload, "deadline": _days_from_today(90)},
        )
    )
    # Sales from the ERP file, with the payload as customer name and city (previewed in the admin first).
    channel_admin = client_for(world.channel_admin)
    preview = channel_admin.post(
        reverse("admin:tiers_sale_import"),
        {"format": "0", "import_file": SimpleUploadedFile("sales.csv", _sale_file(payload, "ERP-PREVIEW"))},
    )
    assert "confirm_form" in preview.context, preview.content.decode()[:3000]
    result = SaleImportResource().import_data(
        Dataset().load(_sale_file(payload, payload[:64]).decode(), format="csv"), command=True
    )
    assert not result.has_errors() and not result.has_validation_errors()
    tier_services.tiers_recompute(day=TODAY)
    done(
        channel_admin.post(
            reverse("tiers:dealer_override", args=[world.own.pk]),
            {"tier": Tier.objects.order_by("rank").first().pk, "until": _days_from_today(30), "reason": payload},
        )
    )
    lookup = pm.get(reverse("deals:protection_lookup"), {"q": payload})
    return {
        "person": person,
        "registrations": {
            "conflicted": conflicted,
            "won": won,
            "lost": lost,
            "rejected": rejected,
            "withdrawn": withdrawn,
            "escalated": open_one,
        },
        "plan": plan,
        "pages": {"sales preview": preview, "lookup": lookup},
    }


def _admin_pages(user, payload):
    """Every admin list (plain and searched for the payload) and every object's change page."""
    client, request = client_for(user), RequestFactory().get("/")
    request.user = user
    for model, model_admin in django_admin.site._registry.items():
        info = model._meta.app_label, model._meta.model_name
        for query in ("", "?q=" + payload):
            yield f"admin list {info}{query}", client.get(reverse(f"admin:{info[0]}_{info[1]}_changelist") + query)
        for pk in model_admin.get_queryset(request).values_list("pk", flat=True)[:40]:
            yield f"admin change {info} {pk}", client.get(reverse(f"admin:{info[0]}_{info[1]}_change", args=[pk]))


@pytest.mark.parametrize("payload", PAYLOADS, ids=["script", "attribute"])
def test_nothing_typed_reaches_a_page_or_an_email_unescaped(world, payload, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        made = _fill_every_free_text_field(world, payload)
    person, plan = made["person"], made["plan"]
    dealer, dealer_admin, pm, rd = (client_for(u) for u in (person, world.own_admin, world.pm_a, world.rd_north))
    channel_admin = client_for(world.channel_admin)
    other = client_for(world.other_admin)
    pages = dict(made["pages"])
    for name, registration in made["registrations"].items():
        detail = reverse("deals:registration_detail", args=[registration.pk])
        pages[f"dealer {name}"] = dealer.get(detail)
        pages[f"dealer admin {name}"] = dealer_admin.get(detail)
        pages[f"partner manager {name}"] = pm.get(detail)
        pages[f"regional director {name}"] = rd.get(detail)
        pages[f"edit {name}"] = dealer.get(reverse("deals:registration_update", args=[registration.pk]))
    earlier = Registration.objects.filter(organisation=world.other).latest("pk")
    pages["the other dealer's registration"] = other.get(reverse("deals:registration_detail", args=[earlier.pk]))
    for label, client in [("dealer", dealer), ("dealer admin", dealer_admin), ("other dealer", other)]:
        for name in ("home", "deals:registration_list", "tiers:dealer_dashboard", "tiers:my_tier", "tiers:my_badge"):
            pages[f"{label} {name}"] = client.get(reverse(name))
        pages[f"{label} figures sales"] = client.get(reverse("tiers:figures_sales"))
        pages[f"{label} figures won"] = client.get(reverse("tiers:figures_registrations"), {"kpi": "submitted"})
    pages["my organisation"] = dealer_admin.get(reverse("dealers:my_organisation"))
    for label, client in [("partner manager", pm), ("regional director", rd), ("channel admin", channel_admin)]:
        for name in (
            "home",
            "deals:registration_list",
            "deals:review_queue",
            "deals:forecast",
            "dealers:dealer_list",
            "tiers:team_dashboard",
            "tiers:figures_sales",
        ):
            pages[f"{label} {name}"] = client.get(reverse(name))
        for kpi in ("submitted", "pipeline", "won_in", "decided"):
            pages[f"{label} figures {kpi}"] = client.get(reverse("tiers:figures_registrations"), {"kpi": kpi})
        for name in ("dealers:dealer_detail", "tiers:dealer_tier", "tiers:dealer_badge", "dealers:plan_open"):
            pages[f"{label} {name}"] = client.get(reverse(name, args=[world.own.pk]))
        pages[f"{label} registrations searched"] = client.get(reverse("deals:registration_list"), {"q": payload})
        pages[f"{label} dealers searched"] = client.get(reverse("dealers:dealer_list"), {"q": payload})
    pages["region dashboard"] = rd.get(reverse("tiers:region_dashboard"))
    pages["plan review"] = pm.get(reverse("dealers:plan_review", args=[plan.pk]))
    pages["override"] = channel_admin.get(reverse("tiers:dealer_override", args=[world.own.pk]))
    pages["invite"] = dealer_admin.get(reverse("dealers:organisation_invite", args=[world.own.pk]))
    conflict = Conflict.objects.filter(registration__registered_by=person).first()
    pages["escalation desk"] = rd.get(reverse("admin:deals_conflict_change", args=[conflict.pk]))
    pages.update(_admin_pages(world.channel_admin, payload))
    pages.update((f"partner manager's {label}", page) for label, page in _admin_pages(world.pm_a, payload))

    shown_escaped = set()
    for label, response in pages.items():
        allowed = (200, 302, 403) if "admin " in label else (200, 302)  # 403: an admin page the role may not see
        assert response.status_code in allowed, (label, response.status_code)
        body = response.content.decode()
        for raw in RAW:
            assert raw not in body, f"{label} shows the payload unescaped"
        text_node = payload.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")  # quotes may stay
        if escape(payload) in body or text_node in body:
            shown_escaped.add(label)
    for must_show in (
        "dealer conflicted",
        "regional director escalated",
        "partner manager rejected",
        "dealer rejected",
        "partner manager withdrawn",
        "dealer lost",
        "partner manager won",
        "channel admin dealers:dealer_detail",
        "my organisation",
        "dealer tiers:my_tier",
        "escalation desk",
        "sales preview",
        "lookup",
    ):
        assert must_show in shown_escaped, f"the payload never reached {must_show}: the test looks at nothing there"

    outbox.outbox_flush(limit=10_000)
    assert len(mail.outbox) > 10
    assert any(payload in message.body for message in mail.outbox)  # as typed: it is plain text
    for message in mail.outbox:
        assert message.content_subtype == "plain"
        assert not getattr(message, "alternatives", None), f"an HTML part in {message.subject}"
        assert not message.attachments


# --- CSV exports -------------------------------------------------------------------------------------------

FORMULAS = {
    "dealer": '=HYPERLINK("http://evil.example","click")',
    "region": "+North",
    "partner manager": "-Anna @Bee",
    "product line": "=1+1",
    "product": "+Pump",
    "sku": "@SKU-1",
    "customer": "-Klant B.V.",
    "sale customer": "=cmd|' /C calc'!A0",
    "sale city": "@Utrecht",
    "erp line": "-ERP-1",
    "reference": "=REF",
}
NUMBER = re.compile(r"-?\d+(\.\d+)?")


def _csv_exports(world) -> dict[str, tuple]:
    pm, rd, dealer = client_for(world.pm_a), client_for(world.rd_north), client_for(world.own_user)
    return {
        "forecast": (pm, reverse("deals:forecast_csv"), {}),
        "dealer figures": (dealer, reverse("tiers:dealer_dashboard"), {"format": "csv"}),
        "dealer KPIs": (pm, reverse("tiers:team_dashboard"), {"format": "csv"}),
        "region KPIs": (rd, reverse("tiers:region_dashboard"), {"format": "csv"}),
        "review SLA": (rd, reverse("tiers:region_dashboard"), {"format": "sla-csv"}),
        "registrations": (pm, reverse("tiers:figures_registrations"), {"kpi": "submitted", "format": "csv"}),
        "sales": (pm, reverse("tiers:figures_sales"), {"format": "csv"}),
    }


def test_every_csv_export_writes_text_a_spreadsheet_would_run_as_text(world):
    f = FORMULAS
    Organisation.objects.filter(pk=world.own.pk).update(name=f["dealer"])
    type(world.north).objects.filter(pk=world.north.pk).update(name=f["region"])
    first_name, last_name = f["partner manager"].split()
    User.objects.filter(pk=world.pm_a.pk).update(first_name=first_name, last_name=last_name)
    world.own.refresh_from_db()
    line = ProductLineFactory(name=f["product line"], code="tier-line")
    product = ProductFactory(line=line, name=f["product"], sku=f["sku"])
    registration = approved(
        world,
        customer=services.CustomerData(f["customer"], "Utrecht", "3511 AB", "NL"),
        lines=[services.LineData(product=product, quantity=3)],
        decision_stage="late",
    )
    Sale.objects.create(
        erp_line_id=f["erp line"],
        sold_on=TODAY - timedelta(days=3),
        reseller=world.own,
        customer_name=f["sale customer"],
        customer_city=f["sale city"],
        customer_country="NL",
        product_line=line,
        amount=Decimal("-189.50"),  # a credit note: a negative number stays a number
        registration_reference=f["reference"],
        registration=registration,
    )
    exports = _csv_exports(world)
    quoted_somewhere = set()
    for label, (client, url, query) in exports.items():
        response = client.get(url, query)
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv"), label
        rows = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
        assert len(rows) > 1, f"{label}: no data rows, so nothing was checked"
        for row in rows:
            for cell in row:
                if cell.startswith(FORMULA_STARTS):
                    assert NUMBER.fullmatch(cell), f"{label}: {cell!r} would run as a formula"
                if cell.startswith("'") and cell[1:] in f.values():
                    quoted_somewhere.add(cell[1:])
        if label != "dealer figures":  # its cells are the portal's own labels and numbers
            assert any(cell[1:] in f.values() for row in rows for cell in row if cell.startswith("'")), label
    assert quoted_somewhere == set(f.values()), set(f.values()) - quoted_somewhere


def test_every_csv_export_is_in_the_test_above(world):
    """A new export must be added to _csv_exports: this counts the places that write CSV."""
    root = Path(__file__).resolve().parents[1]
    found = {}
    for path in sorted(root.glob("[!.]*/**/*.py")):
        if ".venv" in path.parts or "tests" in path.parts or "migrations" in path.parts:
            continue
        text = path.read_text()
        calls = len(re.findall(r"\bcsv_response\(", text)) - len(re.findall(r"def csv_response\(", text))
        raw = text.count("text/csv") if path.name != "csvexport.py" else 0
        if calls or raw:
            found[str(path.relative_to(root))] = calls + raw
    assert found == {"deals/forecast_views.py": 1, "tiers/dashboards.py": 6}, found
    assert len(_csv_exports(world)) == sum(found.values())


@given(text=st.text())
def test_safe_cell_quotes_exactly_what_starts_like_a_formula(text):
    cell = safe_cell(text)
    assert cell == ("'" + text if text.startswith(FORMULA_STARTS) else text)
    out = io.StringIO()
    csv.writer(out).writerow([cell])
    assert next(csv.reader(io.StringIO(out.getvalue()), strict=True)) == [cell] or "\r" in text or "\n" in text
