"""Trust under fire: every object URL, every persona, one rule — nothing of dealer A reaches dealer B.

The test walks the URL configuration (``get_resolver()``) and the admin's registry, so a view added
later is requested without editing this file:

- **Portal**: every URL pattern with a parameter. The object an id names is inferred from the path
  segment before it (``registrations/<int:pk>/…`` → a registration, ``dealers/<int:pk>/…`` → the
  dealer, see ``SEGMENT_OBJECTS``); other parameters (``<slug:action>``) come from ``PARAM_VALUES``.
  A new URL whose id cannot be inferred, or with an unknown slug, fails with a message saying what
  to add. Each is requested as ten personas and the outcome compared with a rule (``expected``):
  anonymous → the log-in page; someone who may not see the object → exactly 404 (never 403, which
  would confirm it exists); someone who may see it but is not the view's audience → a refusal (404 or
  403); the audience → 200 (a POST-only view answers GET with 405 and is then POSTed, empty: a
  redirect back or the form again). Who a view is for is read from its decorators (``staff_required``)
  or declared with a reason in ``AUDIENCE``. Every request runs in a savepoint that is rolled back,
  so the world is the same for every request and POSTs change nothing.
- **Admin**: the change, history and delete pages and every custom object URL (the conflict decision,
  the password form) of every registered ModelAdmin, for an own-dealer object of that model (found by
  its foreign key to the dealer, its registration, its customer or its people) or, for programme data,
  any object. Anonymous and dealers are sent to the log-in page; staff get 200 only when their role
  has the permission and the object is in their scope, else a refusal (403, 404 or the admin's
  "doesn't exist" redirect) that names nothing of the dealer.
- **Lists and CSV exports**: every portal URL without parameters, with query strings that try to pull
  the own dealer's data (``?dealer=``, ``?organisation=``, ``?format=csv``, every figure's KPI code…),
  and every admin changelist, as outsiders: no identifying string of the own dealer in the body.
- **Protection lookup**: dealers 404; vendor staff see who protects a customer, never the pipeline.
- **Emails**: a full flow (submit, conflict with another dealer, escalation and decision, extension,
  tier override and evaluation, improvement plan, invitation, nightly jobs) through the outbox: no
  email to one dealer's people (or its partner manager and director) names anything of the other.

Size of the matrix (measured; it grows by itself with the URL configuration): 10 personas × 186
object URLs = 1,860 requests. Portal: 49 per persona (7 registration URLs × 5 registrations in
different states, 13 URLs of the dealer, its people, its plan, its 2 extension requests and an
erasure, 1 invitation link). Admin: 137 per persona (change/history/delete of 37 objects — one per
ModelAdmin, but all 5 registrations and both extension requests —, 2 custom object URLs: the
conflict decision and the password form, and "view on site" for the 24 own-dealer objects). Then
822 list and CSV requests (21 list pages × 6 probe queries + 14 figure lists, for 6 personas),
294 admin changelist and autocomplete requests (3 staff personas), the lookup and a flow of 52
emails: about 3,000 requests, ~30 s on SQLite, ~45 s on PostgreSQL.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace
from urllib.parse import quote as urlquote
from urllib.parse import urlencode, urlsplit

import pytest
import time_machine
from allauth.mfa.models import Authenticator
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.contrib.contenttypes.models import ContentType
from django.contrib.messages.storage.cookie import CookieStorage
from django.core import mail
from django.db import transaction
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.converters import IntConverter
from django.utils import timezone

from dealers import services as dealer_services
from dealers.models import Membership, Organisation, Specialisation, User
from deals import conflicts, services
from deals.models import (
    Conflict,
    Customer,
    ErasureLog,
    ExtensionRequest,
    Holiday,
    NamedAccount,
    ProtectionLookup,
    Registration,
)
from prm.models import OutboxEmail
from prm.outbox import outbox_flush
from tests import factories
from tests.conftest import client_for, with_totp
from tests.deal_factories import ProductFactory, ProductLineFactory, approved, customer_data, submit
from tests.tier_factories import certify
from tiers import dashboards
from tiers import services as tier_services
from tiers.models import Sale, Tier

PERSONAS = [
    "anonymous",
    "own_admin",  # the own dealer (dealer A)
    "other_admin",  # another dealer (dealer B)
    "distributor_admin",  # a distributor the own dealer buys through: no access to its resellers' registrations
    "pm_a",  # the own dealer's partner manager
    "rd_north",  # the own dealer's regional director
    "channel_admin",
    "pm_b",  # a partner manager of other dealers
    "rd_south",  # the regional director of another region
    "direct_sales",  # the vendor's direct team
]
DEALERS = {"own_admin", "other_admin", "distributor_admin"}
OWN_STAFF = {"pm_a", "rd_north", "channel_admin"}  # vendor staff who look after the own dealer
OWN_SIDE = {"own_admin"} | OWN_STAFF  # who may see the own dealer's objects at all
STAFF = {"pm_a", "rd_north", "channel_admin", "pm_b", "rd_south", "direct_sales"}

# --- the portal: what an id names, and who a view is for ----------------------------------------

# The path segment before an id says what it is: registrations/<int:pk>/… is a registration. A new
# URL under one of these is covered as it is; a new segment fails until it is added here.
SEGMENT_OBJECTS = {
    "registrations": "registration",
    "dealers": "organisation",
    "organisations": "organisation",
    "people": "membership",
    "improvement-plans": "plan",
    "extensions": "extension",
    "erasures": "erasure",
}
# Where the segment would mislead, name the object by URL name: {"app:url_name": "object key"}.
URL_OBJECTS: dict[str, str] = {}

# Parameters that are not ids: a value the view accepts, so that its audience gets past the
# action lookup (an unknown action answers 404 to everyone, which would prove nothing).
PARAM_VALUES = {
    "deals:registration_dealer_action": {"action": "won"},
    "deals:registration_review_action": {"action": "request_info"},
    "deals:conflict_action": {"action": "escalate"},
    "deals:extension_decide": {"decision": "decline"},
}

# Who a view is for, where its decorators do not say it (staff_required and its variants do).
# Everyone else who may see the object gets a refusal (404, or 403 for someone who sees it).
AUDIENCE = {
    "deals:registration_update": ("dealer", "only the dealer edits its registration; staff review it"),
    "deals:registration_withdraw": ("dealer", "only the dealer withdraws its registration"),
    "deals:registration_dealer_action": ("dealer", "won, lost, resubmit and extend are the dealer's"),
    "tiers:dealer_override": ("channel_admin", "overriding a tier is the channel admin's"),
    "tiers:dealer_override_end": ("channel_admin", "ending an override is the channel admin's"),
    "deals:erasure_detail": ("channel_admin", "erasures on request are the channel admin's"),
}
AUDIENCES = {
    "everyone": OWN_SIDE | STAFF,
    "dealer": DEALERS,
    "staff": STAFF,
    "channel_admin": {"channel_admin"},
}
# URLs that take a token, not an id: the signed link is the capability.
TOKEN_ROUTES = {"dealers:invitation_accept": "the signed invitation link is the capability: anyone holding it"}
# Third-party views with keys of their own (allauth's e-mail confirmation and password reset).
THIRD_PARTY_PREFIXES = ("accounts/",)

# The one redirect an audience may get instead of 200, with why.
INSIDER_REDIRECTS = {
    "deals:registration_update": (
        lambda obj: not obj.is_open,
        "deals:registration_detail",
        "a closed registration can no longer be edited: back to its page",
    ),
}

# --- the admin ------------------------------------------------------------------------------------

# Models registered in the admin whose link to a dealer is not a foreign key.
NON_FK_OWNERS = {
    "prm.outboxemail": lambda w: OutboxEmail.objects.filter(to__in=w.own_emails).first(),
    "axes.accessattempt": lambda w: AccessAttempt.objects.filter(username=w.own_admin.email).first(),
    "axes.accesslog": lambda w: AccessLog.objects.filter(username=w.own_admin.email).first(),
    "axes.accessfailurelog": lambda w: AccessFailureLog.objects.filter(username=w.own_admin.email).first(),
}
# Models with a foreign key to a dealer that are the vendor's programme data, not the dealer's.
VENDOR_MODELS = {
    "deals.namedaccount": "the channel admin's list of reserved customers; the direct team reads it by design",
}


@dataclass(frozen=True)
class Route:
    name: str
    route: str
    callback: object
    params: tuple[str, ...]
    converters: dict = field(default_factory=dict, compare=False, hash=False)


def walk(resolver=None, prefix: str = "", namespace: str | None = None):
    """Every URL pattern under the resolver: (name with namespace, route, callback, parameters)."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            inner = pattern.namespace
            space = f"{namespace}:{inner}" if namespace and inner else inner or namespace
            yield from walk(pattern, prefix + str(pattern.pattern), space)
        elif isinstance(pattern, URLPattern):
            converters = getattr(pattern.pattern, "converters", {}) or {}
            params = tuple(converters) or tuple(pattern.pattern.regex.groupindex)
            name = f"{namespace}:{pattern.name}" if namespace and pattern.name else pattern.name
            yield Route(name or "", prefix + str(pattern.pattern), pattern.callback, params, converters)


def portal_routes() -> list[Route]:
    return [r for r in walk() if not r.route.startswith("admin/") and not r.route.startswith(THIRD_PARTY_PREFIXES)]


def _decorators(view) -> set[str]:
    """The qualified names of the view and every function it wraps (through __wrapped__ and closures)."""
    seen, found, stack = set(), set(), [view]
    while stack:
        fn = stack.pop()
        if id(fn) in seen:
            continue
        seen.add(id(fn))
        found.add(getattr(fn, "__qualname__", ""))
        if hasattr(fn, "__wrapped__"):
            stack.append(fn.__wrapped__)
        for cell in getattr(fn, "__closure__", None) or ():
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            if callable(value):
                stack.append(value)
    return found


def audience_of(route: Route) -> str:
    if route.name in AUDIENCE:
        return AUDIENCE[route.name][0]
    names = _decorators(route.callback)
    if any(n.startswith(("staff_required.", "forecast_viewer_required.")) for n in names):
        return "staff"
    return "everyone"


def _is_id(route: Route, param: str) -> bool:
    return isinstance(route.converters.get(param), IntConverter) or param in ("pk", "id") or param.endswith("_id")


def object_key(route: Route, param: str) -> str:
    if route.name in URL_OBJECTS:
        return URL_OBJECTS[route.name]
    before = route.route.split(f":{param}>")[0].rsplit("<", 1)[0].rstrip("/")
    segment = before.rsplit("/", 1)[-1]
    if segment in SEGMENT_OBJECTS:
        return SEGMENT_OBJECTS[segment]
    pytest.fail(
        f"{route.name or route.route} takes an id ({param}) under “{segment}/”, which this test cannot map to an "
        f"object. Add “{segment}” to SEGMENT_OBJECTS (or the URL name to URL_OBJECTS) in {__name__}, and an "
        "own-dealer instance of it to isolation_world(), so that every persona requests it."
    )


def object_urls(w) -> list[tuple[Route, str, object]]:
    """(route, url, object) for every portal URL with parameters, for every object it can name."""
    found = []
    for route in portal_routes():
        if not route.params or route.name in TOKEN_ROUTES:
            continue
        assert route.name, f"The URL {route.route} takes parameters but has no name: give it one."
        ids = [p for p in route.params if _is_id(route, p)]
        others = {p: PARAM_VALUES.get(route.name, {}).get(p) for p in route.params if p not in ids}
        missing = [p for p, v in others.items() if v is None]
        if missing:
            pytest.fail(
                f"{route.name} ({route.route}) takes {missing}, which this test does not know a value for. "
                f"Add them to PARAM_VALUES in {__name__}: a value the view accepts for its audience."
            )
        if not ids:
            pytest.fail(f"{route.name} ({route.route}) takes parameters but no id: declare it in TOKEN_ROUTES.")
        assert len(ids) == 1, f"{route.name}: more than one id; extend object_urls() for it."
        key = object_key(route, ids[0])
        for obj in w.objects[key]:
            found.append((route, reverse(route.name, kwargs={ids[0]: obj.pk, **others}), obj))
    return found


# --- the world ------------------------------------------------------------------------------------

VAT = "NL812345678B01"  # one customer, registered by both dealers under different names
CONTESTED_VAT = "NL823456789B01"
# A search for part of an own customer's name: the page echoes it, which names nothing; only the
# whole name (or the contact behind it) would.
SEARCH = "Ownsma"


def isolation_world(world) -> SimpleNamespace:
    """The conftest world plus an object of every kind belonging to the own dealer, the other
    dealer's earlier registration of the same customer, a distributor and the direct team."""
    w = SimpleNamespace(**vars(world))
    today = timezone.localdate()
    pumps = ProductFactory(
        line=ProductLineFactory(name="Iso heat pumps"), name="Iso AeroTherm", list_price=Decimal(6450)
    )
    line = [services.LineData(product=pumps, quantity=2)]

    w.distributor = factories.OrganisationFactory(
        name="Iso Distribution B.V.", kind=Organisation.Kind.DISTRIBUTOR, region=w.north, partner_manager=w.pm_a
    )
    w.distributor_admin = factories.dealer_admin(w.distributor, user__email="admin@distributor.example")
    w.own.distributors.add(w.distributor)
    w.direct_sales = with_totp(factories.direct_sales(email="direct@vendor.example"))

    # The other dealer registers the customer first; the own dealer's later registration conflicts.
    w.reg_other = submit(
        w.other_admin,
        customer=customer_data(name="Broodfabriek Zuidkamp", vat_number=VAT, city="Breda"),
        contact_name="Gerrit Zuidkamp",
        contact_email="gerrit@zuidkamp-other.example",
        next_steps="Other dealer next steps",
        lines=line,
    )
    w.reg_conflict = submit(
        w.own_user,
        customer=customer_data(name="Jansen Ownholding", vat_number=VAT),
        contact_name="Marleen Ownkamp",
        contact_email="marleen@ownholding.example",
        next_steps="Own dealer next steps",
        lines=line,
    )
    assert Conflict.objects.filter(registration=w.reg_conflict, other=w.reg_other).exists()
    w.reg_approved = approved(
        w.own_user,
        customer=customer_data(name="Windmolen Ownsma", website="https://ownsma.example"),
        contact_name="Pieter Ownsma",
        contact_email="pieter@ownsma.example",
    )
    w.extension = services.extension_request(
        registration=w.reg_approved, actor=w.own_user, reason="Own customer postponed the order"
    )
    w.reg_won = approved(
        w.own_user,
        customer=customer_data(name="Kaasboerderij Ownhof"),
        contact_name="Anke Ownhof",
        contact_email="anke@ownhof.example",
    )
    services.registration_report_won(registration=w.reg_won, actor=w.own_user, value=Decimal(7500), won_on=today)
    w.reg_won.refresh_from_db()
    tier_services.satisfaction_record(registration=w.reg_won, score=4, actor=w.pm_a)
    # An own protection that the other dealer registers again later: the later registration's
    # reviewers (pm_b, rd_south) see the own one read-only, by design; its dealer never does.
    w.reg_contested = approved(
        w.own_user,
        customer=customer_data(name="Bakkerij Ownveld", vat_number=CONTESTED_VAT),
        contact_name="Sanne Ownveld",
        contact_email="sanne@ownveld.example",
        lines=line,
    )
    w.reg_other_later = submit(
        w.other_admin,
        customer=customer_data(name="Broodbakkerij Zuidveld", vat_number=CONTESTED_VAT),
        contact_name="Kees Zuidveld",
        contact_email="kees@zuidveld-other.example",
        lines=line,
    )
    assert Conflict.objects.filter(registration=w.reg_other_later, other=w.reg_contested).exists()
    w.contested_extension = services.extension_request(
        registration=w.reg_contested, actor=w.own_user, reason="Own contested customer wants more time"
    )
    w.reg_rejected = submit(
        w.own_user,
        customer=customer_data(name="Garage Ownstra"),
        contact_name="Bram Ownstra",
        contact_email="bram@ownstra.example",
    )
    services.registration_reject(
        registration=w.reg_rejected, actor=w.pm_a, reason="Not eligible", internal_note="Own internal note"
    )
    for name in (
        "reg_conflict",
        "reg_approved",
        "reg_won",
        "reg_rejected",
        "reg_contested",
        "reg_other",
        "reg_other_later",
    ):
        getattr(w, name).refresh_from_db()
    w.sale = Sale.objects.create(
        erp_line_id="ERP-ISO-1",
        sold_on=today,
        reseller=w.own,
        distributor=w.distributor,
        customer_name="Kaasboerderij Ownhof",
        customer_country="NL",
        product_line=pumps.line,
        amount=Decimal("7500.00"),
        registration=w.reg_won,
        registration_reference=w.reg_won.reference,
        registered_before_sale=True,
    )
    certify(w.own, "iso-installer", today + timedelta(days=300))
    tier_services.tiers_recompute(day=today)
    tier_services.tier_override(
        organisation=w.own,
        tier=Tier.objects.order_by("-rank").first(),
        until=today + timedelta(days=60),
        reason="Own launch partner",
        actor=w.channel_admin,
    )
    w.invitation = dealer_services.invitation_create(
        organisation=w.own, email="invitee@own.example", role=Membership.Role.DEALER_USER, invited_by=w.own_admin
    )
    w.plan = dealer_services.improvement_plan_open(
        organisation=w.own,
        goals="Own goals: twelve registrations",
        deadline=today + timedelta(days=60),
        notes="Own plan notes for staff",
        actor=w.pm_a,
    )
    w.own_membership = Membership.objects.get(user=w.own_user)
    w.erasure = ErasureLog.objects.create(
        actor=w.channel_admin, email_hash="0" * 64, reason="Request by email", counts={}, total=0
    )
    # programme data and log rows of the kinds the admin shows
    NamedAccount.objects.create(name="Direct Team Account B.V.", country="NL")
    Holiday.objects.create(date=today + timedelta(days=100), name="Iso holiday")
    Specialisation.objects.create(name="Iso specialisation")
    ProtectionLookup.objects.create(user=w.direct_sales, query="Iso lookup", result_count=0)
    Authenticator.objects.create(user=w.own_admin, type=Authenticator.Type.TOTP, data={"secret": "JBSWY3DPEHPK3PXP"})
    log = {"ip_address": "192.0.2.1", "user_agent": "iso", "http_accept": "*/*", "path_info": "/accounts/login/"}
    AccessAttempt.objects.create(username=w.own_admin.email, get_data="", post_data="", failures_since_start=1, **log)
    AccessLog.objects.create(username=w.own_admin.email, **log)
    AccessFailureLog.objects.create(username=w.own_admin.email, **log)

    w.objects = {
        "registration": [w.reg_conflict, w.reg_approved, w.reg_won, w.reg_rejected, w.reg_contested],
        "organisation": [w.own],
        "membership": [w.own_membership],
        "plan": [w.plan],
        "extension": [w.extension, w.contested_extension],
        "erasure": [w.erasure],
    }
    own_registrations = [w.reg_conflict, w.reg_approved, w.reg_won, w.reg_rejected, w.reg_contested]
    w.own_emails = sorted(
        set(Membership.objects.filter(organisation=w.own).values_list("user__email", flat=True))
        | {"invitee@own.example"}
    )
    # What identifies the own dealer and its pipeline; the dealer's name apart, as some pages show
    # it to others by design (see below).
    w.own_name = w.own.name
    w.own_pipeline = [
        *(r.reference for r in own_registrations),
        *(r.customer.name for r in own_registrations),
        *(r.contact_name for r in own_registrations),
        *(r.contact_email for r in own_registrations),
        "Own dealer next steps",
        "Own customer postponed the order",
        "Own contested customer wants more time",
        "Own goals: twelve registrations",
        "Own plan notes for staff",
        "Own internal note",
        "Own launch partner",
        *w.own_emails,
    ]
    w.own_strings = [w.own_name, *w.own_pipeline]
    w.other_strings = [
        w.other.name,
        *(r.reference for r in (w.reg_other, w.reg_other_later)),
        *(r.customer.name for r in (w.reg_other, w.reg_other_later)),
        *(r.contact_name for r in (w.reg_other, w.reg_other_later)),
        *(r.contact_email for r in (w.reg_other, w.reg_other_later)),
        "Other dealer next steps",
        w.other_admin.email,
    ]
    # Read-only through a conflict (RegistrationQuerySet.visible_to): who, and what they may read.
    w.through_conflict = {w.reg_contested.pk: {"pm_b", "rd_south"}}
    w.contested_strings = [
        w.own_name,
        w.reg_contested.reference,
        w.reg_contested.customer.name,
        w.reg_contested.contact_name,
        w.reg_contested.contact_email,
    ]
    # Never in any email or page a dealer gets, its own included.
    w.internal = ["Own plan notes for staff", "Own internal note"]
    return w


@pytest.fixture
def iso(world):
    return isolation_world(world)


def user_of(w, persona: str):
    return None if persona == "anonymous" else getattr(w, persona)


def client_of(w, persona: str) -> Client:
    user = user_of(w, persona)
    return Client() if user is None else client_for(user)


def forbidden_for(w, persona: str, obj=None) -> list[str]:
    """What a persona must never read: everything of the dealer it is not, and for a dealer the
    vendor's internal notes about it (staff who look after the own dealer see both sides of a
    conflict by design). On a registration it sees through a conflict, the staff of the other side
    may read that registration, and nothing else of the dealer."""
    if persona == "own_admin":
        return [*w.other_strings, *w.internal]
    if persona in OWN_STAFF or persona == "anonymous":
        return []
    if persona in through_conflict(w, obj):
        return [s for s in w.own_strings if s not in w.contested_strings]
    return w.own_strings


def through_conflict(w, obj) -> set[str]:
    """The staff of the other side who may read a registration (and its extension requests)
    because a later registration of their dealer conflicts with it."""
    if isinstance(obj, ExtensionRequest):
        obj = obj.registration
    return w.through_conflict.get(obj.pk, set()) if isinstance(obj, Registration) else set()


def sees(w, obj) -> set[str]:
    """Who may see the object at all: the own dealer and its staff; for the vendor's own records
    every member of staff; a registration also the reviewers of a later one that conflicts with it."""
    if isinstance(obj, ErasureLog):
        return set(STAFF)
    return OWN_SIDE | through_conflict(w, obj)


# --- requests -----------------------------------------------------------------------------------


@dataclass
class Answer:
    method: str
    status: int
    location: str
    body: str


def fetch(client: Client, url: str, *, data: dict | None = None, follow: bool = False) -> Answer:
    """GET the URL (POST `data`, empty by default, if the view only takes POST) in a savepoint that
    is rolled back, so that every request meets the same world."""
    with transaction.atomic():
        response = client.get(url, follow=follow)
        method = "GET"
        if response.status_code == 405:
            response = client.post(url, data or {}, follow=follow)
            method = "POST"
        transaction.set_rollback(True)
    # The messages of one request would otherwise show on the next page, whatever it is.
    # (the session, where long ones go, is rolled back with the rest)
    client.cookies.pop(CookieStorage.cookie_name, None)
    if getattr(response, "streaming", False):
        content = b"".join(response.streaming_content)
    else:
        content = response.content
    location = urlsplit(response.get("Location", "")).path if response.status_code in (301, 302, 303) else ""
    return Answer(method, response.status_code, location, content.decode("utf-8", "replace"))


def leaked(body: str, strings: list[str]) -> list[str]:
    return [s for s in strings if re.search(re.escape(s) + r"(?![0-9])", body)]


# --- the rules --------------------------------------------------------------------------------------


def expected(w, persona: str, route: Route, obj) -> str:
    """LOGIN, NOT_FOUND (exactly 404), REFUSED (404 or 403) or OK."""
    if persona == "anonymous":
        return "LOGIN"
    if persona not in sees(w, obj):
        return "NOT_FOUND"
    if persona in AUDIENCES[audience_of(route)]:
        return "OK"
    return "REFUSED"


def portal_problem(w, persona: str, route: Route, obj, answer: Answer) -> str | None:
    rule = expected(w, persona, route, obj)
    login = reverse("account_login")
    if rule == "LOGIN":
        ok = answer.status == 302 and answer.location == login
    elif rule == "NOT_FOUND":
        ok = answer.status == 404
    elif rule == "REFUSED":
        ok = answer.status in (403, 404)
    elif answer.method == "POST":
        ok = answer.status == 200 or (answer.status == 302 and answer.location != login)
    else:
        redirect = INSIDER_REDIRECTS.get(route.name)
        if redirect and redirect[0](obj):
            ok = answer.status == 302 and answer.location == reverse(redirect[1], args=[obj.pk])
        else:
            ok = answer.status == 200
    if not ok:
        where = f" → {answer.location}" if answer.location else ""
        return f"expected {rule}, got {answer.status}{where}"
    return None


# --- the portal matrix ---------------------------------------------------------------------------


@pytest.mark.parametrize("persona", PERSONAS)
def test_every_object_url_answers_each_persona_by_the_rule(iso, persona, capsys):
    client = client_of(iso, persona)
    forbidden = forbidden_for(iso, persona)
    problems, statuses = [], Counter()
    urls = object_urls(iso)
    for route, url, obj in urls:
        answer = fetch(client, url)
        statuses[answer.status] += 1
        label = f"{answer.method} {url} ({route.name}, {type(obj).__name__} {getattr(obj, 'status', '')})"
        problem = portal_problem(iso, persona, route, obj, answer)
        if problem:
            problems.append(f"{label}: {problem}")
        if leak := leaked(answer.body, forbidden_for(iso, persona, obj)):
            problems.append(f"{label}: the body names {leak}")
    # the links that take a token instead of an id
    for name in TOKEN_ROUTES:
        url = reverse(name, args=[dealer_services.invitation_token(iso.invitation)])
        answer = fetch(client, url)
        statuses[answer.status] += 1
        want = 200 if persona == "anonymous" else 409  # logged-in people are asked to log out first
        if answer.status != want:
            problems.append(f"GET {url} ({name}): expected {want}, got {answer.status}")
        if persona != "anonymous" and (leak := leaked(answer.body, forbidden)):
            problems.append(f"GET {url} ({name}): the body names {leak}")
    with capsys.disabled():
        print(f"\n[isolation] portal {persona}: {len(urls) + len(TOKEN_ROUTES)} object URLs, {dict(statuses)}")
    assert not problems, f"{persona}: {len(problems)} wrong answers\n" + "\n".join(problems)


def test_the_walk_finds_every_object_url(iso):
    """Guards the walk itself: the URLs known today are all found, each with its objects."""
    names = {route.name for route, _, _ in object_urls(iso)}
    assert {
        "deals:registration_detail",
        "deals:registration_review_action",
        "deals:extension_decide",
        "dealers:dealer_detail",
        "dealers:membership_deactivate",
        "dealers:plan_review",
        "tiers:dealer_tier",
        "tiers:registration_satisfaction",
        "deals:erasure_detail",
    } <= names
    with_params = {r.name for r in portal_routes() if r.params} - set(TOKEN_ROUTES)
    assert names == with_params


# --- the admin matrix -----------------------------------------------------------------------------

# How a model reaches a dealer, and how many of its objects to request: one of each kind, but
# every registration (and what hangs on it), since their scopes differ (conflicts, states).
ORGANISATION_LINKS = (
    (Organisation, "{}", 1),
    (Registration, "{}__organisation", None),
    (Customer, "{}__organisation", 1),
)


def admin_instances(model, w) -> list[tuple[object, str]]:
    """[(instance, "own" or "vendor")]: own-dealer objects of the model when it belongs to dealers,
    else one object of the programme's."""
    label = model._meta.label_lower
    manager = model._default_manager
    if label in NON_FK_OWNERS:
        return [(NON_FK_OWNERS[label](w), "own")]
    if model is Organisation:
        return [(w.own, "own")]
    if model is Registration:
        return [(r, "own") for r in w.objects["registration"]]
    if model is User:
        return [(w.own_admin, "own")]
    relations = [
        f for f in model._meta.get_fields() if f.concrete and f.is_relation and (f.many_to_one or f.one_to_one)
    ]
    if label not in VENDOR_MODELS:
        dealer_link = False
        for target, path, limit in ORGANISATION_LINKS:
            for f in relations:
                if f.related_model is target:
                    dealer_link = True
                    found = list(manager.filter(**{path.format(f.name): w.own}).order_by("pk")[:limit])
                    if found:
                        return [(obj, "own") for obj in found]
        if dealer_link:
            pytest.fail(f"{label} belongs to dealers: add an own-dealer one to isolation_world().")
        for f in relations:
            if f.related_model is User:
                obj = manager.filter(**{f"{f.name}__email__in": w.own_emails}).order_by("pk").first()
                if obj is not None:
                    return [(obj, "own")]
    obj = manager.order_by("pk").first()
    if obj is None:
        pytest.fail(f"The admin shows {label}, but the world has none: add one to isolation_world().")
    return [(obj, "vendor")]


def admin_urls(w) -> list[tuple[str, str, object, str, object]]:
    """(kind, url, model_admin, owner, obj) for every object URL of every registered ModelAdmin,
    and the admin's "view on site" link of every own-dealer object."""
    found = []
    for model, model_admin in admin.site._registry.items():
        patterns = []
        for pattern in model_admin.get_urls():
            params = tuple(getattr(pattern.pattern, "converters", {}) or {})
            if not params or not pattern.name:
                continue  # lists, add and import pages; the bare <object_id>/ only redirects
            unknown = set(params) - {"object_id", "id"}
            assert not unknown, f"admin:{pattern.name} takes {unknown}: teach admin_urls() what they are."
            kind = next((k for k in ("change", "history", "delete") if pattern.name.endswith(f"_{k}")), "custom")
            patterns.append((kind, pattern.name, params))
        for obj, owner in admin_instances(model, w):
            for kind, name, params in patterns:
                url = reverse(f"admin:{name}", kwargs={p: quote(obj.pk) for p in params})
                found.append((kind, url, model_admin, owner, obj))
            if owner == "own":
                content_type = ContentType.objects.get_for_model(model)
                url = reverse("admin:view_on_site", args=[content_type.pk, urlquote(str(obj.pk))])
                found.append(("view_on_site", url, model_admin, owner, obj))
    return found


def admin_permitted(model_admin, kind: str, user) -> bool:
    """What the role may do with this kind of object (the ModelAdmin's own permission methods; the
    scope is checked apart, from the world)."""
    request = RequestFactory().get("/admin/")
    request.user = User.objects.get(pk=user.pk)
    if kind in ("change", "history"):
        return model_admin.has_view_or_change_permission(request)
    if kind == "delete":
        return model_admin.has_delete_permission(request)
    return model_admin.has_change_permission(request)


@pytest.mark.parametrize("persona", PERSONAS)
def test_every_admin_object_url_answers_each_persona_by_the_rule(iso, persona, capsys):
    client = client_of(iso, persona)
    user = user_of(iso, persona)
    forbidden = forbidden_for(iso, persona)
    admin_login, admin_index = reverse("admin:login"), reverse("admin:index")
    problems, outcomes = [], Counter()
    urls = admin_urls(iso)
    for kind, url, model_admin, owner, obj in urls:
        answer = fetch(client, url)
        label = f"{answer.method} {url} ({kind}, {owner} {type(obj).__name__})"
        refusal = answer.status in (403, 404) or (
            answer.status == 302 and answer.location in (admin_index, admin_login)
        )
        if persona == "anonymous" or persona in DEALERS:
            rule, ok = "LOGIN", answer.status == 302 and answer.location == admin_login
        elif kind == "view_on_site":
            # no model here has get_absolute_url; a redirect would go to the portal, which scopes
            rule, ok = "NO_PAGE", answer.status in (302, 404) and answer.location != admin_index
        else:
            in_scope = owner == "vendor" or persona in OWN_STAFF
            if admin_permitted(model_admin, kind, user) and in_scope:
                rule = "OK"
                ok = answer.status == 200 if answer.method == "GET" else answer.status == 200 or not refusal
            else:
                rule, ok = "REFUSED", refusal
        outcomes[(rule, answer.status)] += 1
        if not ok:
            problems.append(f"{label}: expected {rule}, got {answer.status} {answer.location}")
        if leak := leaked(answer.body, forbidden):  # a refusal, or programme data another side may read
            problems.append(f"{label}: the body names {leak}")
    with capsys.disabled():
        print(f"\n[isolation] admin {persona}: {len(urls)} object URLs, (rule, status): {dict(outcomes)}")
    assert not problems, f"{persona}: {len(problems)} wrong answers in the admin\n" + "\n".join(problems)


# --- lists and CSV exports ------------------------------------------------------------------------

LIST_PERSONAS = ["own_admin", "other_admin", "distributor_admin", "pm_b", "rd_south", "direct_sales"]

# Pages that show an outsider something of the own dealer by design: (URL name, persona) → what
# may appear, and why.
LIST_BY_DESIGN = {
    # README, Tiers: "Revenue through a distributor is counted for the distributor as well, shown to
    # it and its staff": the resellers' names and totals, never their customers or registrations.
    ("home", "distributor_admin"): "own_name",
}
# Pages that search every dealer for vendor staff by design (README, Protection lookup); tested apart.
LIST_SKIP_FOR_STAFF = {"deals:protection_lookup": "the lookup shows vendor staff who protects a customer"}


def probes(w, route: Route) -> list[str]:
    """Query strings that try to pull the own dealer's data through a list or an export."""
    own, customer = w.own.pk, SEARCH
    start = (timezone.localdate() - timedelta(days=4 * 365)).isoformat()
    end = (timezone.localdate() + timedelta(days=365)).isoformat()
    narrow = f"dealer={own}&organisation={own}&region={w.north.pk}&pm={w.pm_a.pk}&partner_manager={w.pm_a.pk}"
    queries = [
        "",
        "?format=csv",
        "?format=sla-csv",
        f"?{narrow}&start={start}&end={end}",
        f"?{narrow}&start={start}&end={end}&format=csv",
        f"?q={customer}&search={customer}",
    ]
    if route.name == "tiers:figures_registrations":
        for code in dashboards.FIGURES:
            queries += [f"?kpi={code}&{narrow}&start={start}&end={end}", f"?kpi={code}&dealer={own}&format=csv"]
    return queries


def posted_ids(w) -> dict:
    """A form body naming the own dealer's objects by id, for the views that only take POST (bulk
    approval, …): whatever they answer must not show what those ids are."""
    registrations = [str(pk) for pk in w.own.registrations.values_list("pk", flat=True)]
    return {
        "registration": registrations,
        "registrations": registrations,
        "organisation": w.own.pk,
        "conflict": Conflict.objects.filter(registration__organisation=w.own).values_list("pk", flat=True).first(),
        "customer-existing": w.reg_approved.customer_id,
    }


@pytest.mark.parametrize("persona", LIST_PERSONAS)
def test_lists_and_csv_exports_never_show_the_other_dealer(iso, persona, capsys):
    client = client_of(iso, persona)
    problems, count = [], 0
    for route in portal_routes():
        if route.params or (persona in STAFF and route.name in LIST_SKIP_FOR_STAFF):
            continue
        allowed = LIST_BY_DESIGN.get((route.name, persona))
        forbidden = iso.own_pipeline if allowed == "own_name" else forbidden_for(iso, persona)
        for query in probes(iso, route):
            url = reverse(route.name) + query
            answer = fetch(client, url, data=posted_ids(iso), follow=True)
            count += 1
            assert answer.status < 500, f"{persona} GET {url}: {answer.status}"
            if leak := leaked(answer.body, forbidden):
                problems.append(f"GET {url} ({route.name}) → {answer.status}: names {leak}")
    with capsys.disabled():
        print(f"\n[isolation] lists {persona}: {count} list/CSV requests")
    assert not problems, f"{persona}: {len(problems)} leaks\n" + "\n".join(problems)


@pytest.mark.parametrize("persona", ["pm_b", "rd_south", "direct_sales"])
def test_admin_changelists_never_show_the_own_dealer_to_other_staff(iso, persona):
    """Every changelist (and every autocomplete behind an admin form) as staff of the other side.
    The conflicts list shows a conflict to the reviewers of its later registration, with the
    earlier one beside it: there they may read the contested registration, nothing else."""
    client = client_of(iso, persona)
    problems = []
    for model, model_admin in admin.site._registry.items():
        base = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        forbidden = forbidden_for(iso, persona, iso.reg_contested) if model is Conflict else iso.own_strings
        for query in ("", f"?q={SEARCH}", "?status=all"):
            answer = fetch(client, base + query, follow=True)
            if leak := leaked(answer.body, forbidden):
                problems.append(f"GET {base}{query} → {answer.status}: names {leak}")
        for field_name in model_admin.autocomplete_fields:
            query = {"app_label": model._meta.app_label, "model_name": model._meta.model_name, "field_name": field_name}
            for term in ("Own", ""):
                url = f"{reverse('admin:autocomplete')}?{urlencode({**query, 'term': term})}"
                answer = fetch(client, url)
                if leak := leaked(answer.body, iso.own_strings):
                    problems.append(f"GET {url} → {answer.status}: names {leak}")
    assert not problems, "\n".join(problems)


def test_a_dealers_own_pages_never_show_the_other_side_of_a_conflict(iso):
    """The other dealer's earlier registration is the conflict's other side: its dealer hears nothing
    of the own dealer. (Its partner manager sees the later registration beside it by design, on the
    registration's page only — deals.conflicts.side_by_side — but never the contact or the notes.)"""
    url = reverse("deals:registration_detail", args=[iso.reg_other.pk])
    answer = fetch(client_for(iso.other_admin), url)
    assert answer.status == 200
    assert not leaked(answer.body, iso.own_strings)
    staff_page = fetch(client_for(iso.pm_b), url)
    assert staff_page.status == 200
    unrelated = [s for s in iso.own_pipeline if s not in (iso.reg_conflict.reference, iso.reg_conflict.customer.name)]
    assert not leaked(staff_page.body, unrelated)


# --- the protection lookup ------------------------------------------------------------------------


def test_protection_lookup_is_staff_only_and_shows_protection_not_pipeline(iso):
    url = reverse("deals:protection_lookup")
    for persona in ("own_admin", "other_admin", "distributor_admin"):
        answer = fetch(client_of(iso, persona), f"{url}?q={VAT}")
        assert answer.status == 404, f"{persona}: {answer.status}"
    assert fetch(Client(), f"{url}?q={VAT}").location == reverse("account_login")

    direct = client_for(iso.direct_sales)
    not_shown = [
        *(r.reference for r in (iso.reg_conflict, iso.reg_approved, iso.reg_won, iso.reg_rejected)),
        *(r.contact_name for r in (iso.reg_conflict, iso.reg_approved, iso.reg_won, iso.reg_rejected)),
        *(r.contact_email for r in (iso.reg_conflict, iso.reg_approved, iso.reg_won, iso.reg_rejected)),
        "Own dealer next steps",
        "Own internal note",
        "Own customer postponed the order",
        *iso.own_emails,
        iso.reg_other.reference,
        iso.reg_other.contact_email,
    ]
    # an active protection: who and until when, and nothing of the deal
    page = fetch(direct, f"{url}?q=Windmolen Ownsma").body
    assert f"Protected for {iso.own.name} until" in page
    assert not leaked(page, not_shown)
    # both dealers' active registrations of one customer (found by VAT), nothing more
    page = fetch(direct, f"{url}?q={VAT}").body
    assert iso.own.name in page and iso.other.name in page
    assert not leaked(page, not_shown)
    # won and rejected registrations protect nothing: the dealer is not named
    for closed in (iso.reg_won, iso.reg_rejected):
        page = fetch(direct, f"{url}?q={closed.customer.name}").body
        assert "Not protected" in page, closed.status
        assert iso.own.name not in page, closed.status
    # fetch() rolls back; a lookup on its own is logged
    direct.get(url, {"q": VAT})
    assert ProtectionLookup.objects.filter(user=iso.direct_sales, query=VAT, result_count=1).exists()


# --- emails -----------------------------------------------------------------------------------------


def test_no_email_to_one_dealer_names_anything_of_the_other(iso, capsys):
    w = iso
    today = timezone.localdate()
    # the conflict: escalated by the own dealer's partner manager, the later (own) registration wins
    conflicts.conflict_escalate(registration=w.reg_conflict, actor=w.pm_a, note="Own escalation note")
    conflicts.conflict_decide(registration=w.reg_conflict, winner=w.reg_conflict, actor=w.rd_north, customer_chose=True)
    services.extension_approve(request=ExtensionRequest.objects.get(pk=w.extension.pk), actor=w.pm_a)
    dealer_services.improvement_plan_extend(
        plan=w.plan, deadline=today + timedelta(days=90), outcome="Own outcome so far", actor=w.pm_a
    )
    # the other dealer's own flow, reviewed by its partner manager
    other_deal = approved(
        w.other_admin, customer=customer_data(name="Slagerij Otherbeek"), contact_email="info@otherbeek.example"
    )
    services.extension_request(registration=other_deal, actor=w.other_admin, reason="Other reason")
    invitation = dealer_services.invitation_create(
        organisation=w.other, email="invitee@other.example", role=Membership.Role.DEALER_USER, invited_by=w.pm_b
    )
    assert invitation.pk
    # the nightly jobs, later: reminders, expiry warnings, stale registrations, a new evaluation
    with time_machine.travel(timezone.now() + timedelta(days=80), tick=False):
        services.review_reminders_send()
        services.expiry_warnings_send()
        services.stale_registrations_flag()
        tier_services.tiers_recompute()
        mail.outbox.clear()
        outbox_flush(limit=100_000)
    rows = list(OutboxEmail.objects.all())
    assert len(mail.outbox) == len(rows), "every queued email is sent"

    other_side = set(Membership.objects.filter(organisation=w.other).values_list("user__email", flat=True))
    other_side |= {"invitee@other.example", w.pm_b.email, w.rd_south.email, w.distributor_admin.email}
    own_dealer = set(w.own_emails)
    dealers = set(Membership.objects.values_list("user__email", flat=True))
    dealers |= {"invitee@own.example", "invitee@other.example"}
    problems, to_other, to_own = [], 0, 0
    # The reviewers of the other dealer's later registration are told which registration it
    # conflicts with (templates/emails/registration_to_review_body.txt), by design.
    reviewers_of_later = {getattr(w, p).email: forbidden_for(w, p, w.reg_contested) for p in ("pm_b", "rd_south")}
    for message in mail.outbox:
        text = f"{message.subject}\n{message.body}"
        for to in message.to:
            if to in other_side:
                to_other += 1
                if leak := leaked(text, reviewers_of_later.get(to, w.own_strings)):
                    problems.append(f"to {to}: “{message.subject}” names {leak}")
            if to in own_dealer:
                to_own += 1
                if leak := leaked(text, w.other_strings):
                    problems.append(f"to {to}: “{message.subject}” names {leak}")
            if to in dealers and (leak := leaked(text, [*w.internal, "Own escalation note"])):
                problems.append(f"to dealer {to}: “{message.subject}” shows internal notes {leak}")
    with capsys.disabled():
        print(
            f"\n[isolation] emails: {len(mail.outbox)} sent, {to_other} to the other side, {to_own} to the own dealer"
        )
        for subject, count in sorted(Counter(re.sub(r"REG-\d+-\d+", "REG-…", m.subject) for m in mail.outbox).items()):
            print(f"[isolation]   {count} × {subject}")
    # the flow reached both sides: the other dealer heard it lost the customer
    assert to_other >= 3 and to_own >= 8, (to_other, to_own)
    assert any(w.other_admin.email in m.to and w.reg_other.reference in m.body for m in mail.outbox), (
        "the other dealer is told about its own registration"
    )
    assert not problems, "\n".join(problems)
