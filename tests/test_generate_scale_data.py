"""generate_scale_data at a tiny size: the invariants of what it writes (prm.scaledata).

Runs on SQLite (bulk_create) and on PostgreSQL (COPY in batches, indexes and foreign keys
suspended during the load); the marker and --check are PostgreSQL only.
"""

import hashlib
import re
from collections import Counter, defaultdict
from datetime import datetime, timedelta
from io import StringIO
from types import SimpleNamespace

import pytest
from allauth.account.models import EmailAddress
from allauth.mfa.models import Authenticator
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Count, Sum
from django.utils import timezone

from dealers.models import Membership, Organisation, Region, Territory, User
from deals import conflicts, sla
from deals.models import (
    Conflict,
    Customer,
    ExtensionRequest,
    NamedAccount,
    ProgrammeSettings,
    ReferenceCounter,
    Registration,
    RegistrationEvent,
    RegistrationFlag,
    RegistrationLine,
)
from prm import scaledata
from tiers.models import CertificationHolding, DealerStanding, Sale, SatisfactionScore

DEALERS, REGISTRATIONS = 20, 600
pytestmark = pytest.mark.django_db
on_postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the marker (a table comment) and --check need PostgreSQL"
)


def today():
    return timezone.localdate()


def generate(*extra, dealers=DEALERS, registrations=REGISTRATIONS, seed=1, day=None):
    out = StringIO()
    call_command(
        "generate_scale_data",
        "--dealers",
        str(dealers),
        "--registrations",
        str(registrations),
        "--seed",
        str(seed),
        "--today",
        (day or today()).isoformat(),
        *extra,
        stdout=out,
    )
    return out.getvalue()


@pytest.fixture
def data():
    output = generate()
    return SimpleNamespace(output=output, today=today(), now=_now(today()))


def _now(day):
    return timezone.make_aware(datetime(day.year, day.month, day.day, scaledata.NOW_HOUR))


def test_counts_people_and_organisations(data):
    assert Registration.objects.count() == REGISTRATIONS
    assert Organisation.objects.filter(kind="reseller").count() == DEALERS
    assert Organisation.objects.filter(kind="distributor").exists()
    assert Region.objects.count() == len(scaledata.SCALE_REGIONS)
    assert all(r.regional_director_id for r in Region.objects.all())
    for org in Organisation.objects.filter(kind="reseller").annotate(n=Count("memberships")):
        assert 1 <= org.n <= 3
        roles = Counter(Membership.objects.filter(organisation=org).values_list("role", flat=True))
        assert roles["admin"] == 1
        admin = Membership.objects.get(organisation=org, role="admin").user
        assert admin.email == f"dealer{org.pk}.1@scale.example"
    assert set(User.objects.filter(email__startswith="dealer1.").values_list("email", flat=True)) == {
        "dealer1.1@scale.example",
        "dealer1.2@scale.example",
        "dealer1.3@scale.example",
    }
    # vendor staff: predictable addresses, their roles, a TOTP authenticator like tests/conftest.py's with_totp
    staff = User.objects.filter(is_staff=True)
    emails = set(staff.values_list("email", flat=True))
    assert "admin@vendor-scale.example" in emails and "rd1@vendor-scale.example" in emails
    assert "pm1@vendor-scale.example" in emails and "direct1@vendor-scale.example" in emails
    assert User.objects.get(email="admin@vendor-scale.example").is_channel_admin
    assert User.objects.get(email="rd1@vendor-scale.example").is_regional_director
    assert User.objects.get(email="pm1@vendor-scale.example").is_partner_manager
    assert User.objects.get(email="direct1@vendor-scale.example").is_direct_sales
    for user in staff:
        totp = Authenticator.objects.get(user=user)
        assert totp.type == Authenticator.Type.TOTP and totp.data == {"secret": "JBSWY3DPEHPK3PXP"}
    assert not Authenticator.objects.filter(user__is_staff=False).exists()
    # every organisation of a partner manager belongs to that manager's region
    for org in Organisation.objects.exclude(partner_manager=None).select_related("partner_manager"):
        assert org.partner_manager.home_region_id == org.region_id


def test_everyone_can_log_in_with_the_one_password(data, client):
    hashes = set(User.objects.values_list("password", flat=True))
    assert len(hashes) == 1, "hashed once, the same hash for everybody"
    user = User.objects.get(email="dealer1.1@scale.example")
    assert user.check_password(scaledata.PASSWORD)
    # allauth (mandatory e-mail verification) needs a verified primary address
    assert EmailAddress.objects.filter(verified=True, primary=True).count() == User.objects.count()
    response = client.post(
        "/accounts/login/", {"login": "dealer1.1@scale.example", "password": scaledata.PASSWORD}, follow=True
    )
    assert response.wsgi_request.user.is_authenticated


def test_the_big_dealer(data):
    big = scaledata.default_big(REGISTRATIONS)
    counts = list(
        Organisation.objects.annotate(n=Count("registrations")).order_by("-n").values_list("pk", "name", "n")[:2]
    )
    assert counts[0][0] == 1 and counts[0][2] == big
    assert counts[1][2] < big
    assert counts[0][1] in data.output


def test_every_registration_has_lines_and_a_history_that_ends_in_its_status(data):
    events = defaultdict(list)
    for e in RegistrationEvent.objects.order_by("registration_id", "created_at", "pk").values(
        "registration_id", "action", "from_status", "to_status", "created_at", "actor_id"
    ):
        events[e["registration_id"]].append(e)
    values = dict(RegistrationLine.objects.values_list("registration").annotate(v=Sum("value")))
    for r in Registration.objects.all():
        history = events[r.pk]
        assert history, r.reference
        assert history[0]["action"] == "submit" and history[0]["from_status"] == ""
        assert history[0]["created_at"] == r.first_submitted_at
        for before, after in zip(history, history[1:], strict=False):
            assert after["from_status"] == before["to_status"], (r.reference, history)
            assert after["created_at"] >= before["created_at"]
        assert history[-1]["to_status"] == r.status, r.reference
        assert history[-1]["created_at"] <= data.now
        assert r.status_changed_at == max(e["created_at"] for e in history if e["from_status"] != e["to_status"])
        assert values[r.pk] == r.expected_value
        if r.status != Registration.Status.EXPIRED:  # the nightly expiry is not the dealer's activity
            assert r.last_activity_at >= history[-1]["created_at"]
        for e in history:
            system = e["action"] == "expire"
            assert (e["actor_id"] is None) == system


def test_statuses_dates_and_protection_follow_the_lifecycle(data):
    day = data.today
    statuses = Counter(Registration.objects.values_list("status", flat=True))
    assert statuses["won"] and statuses["lost"] and statuses["approved"]
    approved_ever = set(
        RegistrationEvent.objects.filter(action__in=["approve", "award"]).values_list("registration_id", flat=True)
    )
    programme = ProgrammeSettings.load()
    holidays = programme.holiday_dates()
    tz = timezone.get_current_timezone()
    for r in Registration.objects.all():
        if r.status == "approved":
            assert r.protected_until >= day, "an approved registration is protected today"
            assert r.margin_percent is not None and r.decided_at is not None
        elif r.status == "expired":
            assert r.protected_until < day
        if r.pk in approved_ever:
            assert r.protected_until is not None and r.decided_at is not None
            assert timezone.localtime(r.decided_at).date() < r.protected_until
        else:
            assert r.protected_until is None and r.margin_percent is None
        if r.status in ("won", "lost"):
            assert r.protected_until >= timezone.localtime(r.status_changed_at).date()
        if r.status == "won":
            assert r.won_value > 0 and r.won_date >= timezone.localtime(r.first_submitted_at).date()
        else:
            assert r.won_value is None and r.won_date is None
        assert bool(r.lost_reason) == (r.status == "lost")
        # the review clock is deals.sla's
        assert r.review_due_at == sla.add_working_hours(
            r.review_started_at, programme.review_sla_hours, holidays=holidays, tz=tz
        )
        assert r.review_remind_at == sla.add_working_hours(
            r.review_started_at, programme.reminder_hours, holidays=holidays, tz=tz
        )
        if r.review_working_hours is not None and r.status != "revoked":  # a revocation is decided later
            assert r.review_working_hours == sla.working_hours_between(
                r.review_started_at, r.decided_at, holidays=holidays, tz=tz
            )
            assert r.decided_in_time == (r.decided_at <= r.review_due_at)
        assert r.expected_close_date > timezone.localtime(r.first_submitted_at).date()
        assert r.first_submitted_at <= r.review_started_at <= data.now
        assert r.first_submitted_at >= data.now - timedelta(days=5 * 366)
        if r.anonymised_at:
            assert r.status in Registration.CLOSED_STATUSES and r.contact_email == "anonymised@anonymised.invalid"
    # an extension request per extension, one pending at most
    for r in Registration.objects.filter(extension_count__gt=0):
        assert r.extension_requests.filter(status="approved").count() == r.extension_count
    pending = ExtensionRequest.objects.filter(status="pending")
    assert all(e.registration.status == "approved" for e in pending)


def test_references_and_the_counter(data):
    numbers = defaultdict(list)
    tz = timezone.get_current_timezone()
    for r in Registration.objects.order_by("pk"):
        m = re.fullmatch(r"REG-(\d{4})-(\d{6})", r.reference)
        assert m, r.reference
        assert int(m[1]) == r.first_submitted_at.astimezone(tz).year
        numbers[int(m[1])].append(int(m[2]))
    for year, got in numbers.items():
        assert got == list(range(1, len(got) + 1)), "numbered in submission order, without gaps"
        assert ReferenceCounter.objects.get(year=year).last == len(got)
    # ids follow the submission order too
    submitted = list(Registration.objects.order_by("pk").values_list("first_submitted_at", flat=True))
    assert submitted == sorted(submitted)


def test_customers_keys_and_variants(data):
    for customer in Customer.objects.all():
        assert {k: getattr(customer, k) for k in ("name_key", "vat_key", "register_key", "domain_key")} == (
            conflicts.customer_keys(customer)
        ), customer.name
    # each dealer keeps its own customers: every registration's customer is its dealer's
    assert not Registration.objects.exclude(customer__organisation=models_f("organisation")).exists()
    assert Customer.objects.filter(vat_number__gt="").exists() and Customer.objects.filter(website__gt="").exists()


def test_the_customers_with_an_open_registration_are_filled(data):
    from deals import open_customers

    assert open_customers.open_customers_stored() == open_customers.open_customers_live() != set()


def models_f(name):
    from django.db.models import F

    return F(name)


def test_conflicts_flags_and_the_rest(data):
    for c in Conflict.objects.select_related("registration", "other"):
        assert c.registration.organisation_id != c.other.organisation_id
        assert c.registration.first_submitted_at >= c.other.first_submitted_at
        assert c.reasons and 0.7 <= c.score <= 1
        if c.status in ("resolved", "dismissed"):
            assert c.decided_at is not None
    kinds = set(RegistrationFlag.objects.values_list("kind", flat=True))
    assert kinds <= set(RegistrationFlag.Kind.values)
    assert Territory.objects.filter(exclusive=True).exists() or DEALERS < 10
    assert NamedAccount.objects.exists()
    assert Sale.objects.filter(registration__isnull=False).exists() and Sale.objects.filter(registration=None).exists()
    for sale in Sale.objects.exclude(registration=None).select_related("registration"):
        assert sale.registration.status == "won" and sale.registration_reference == sale.registration.reference
        assert sale.reseller_id == sale.registration.organisation_id and sale.registered_before_sale
        assert sale.sold_on < data.today
    assert CertificationHolding.objects.exists() and SatisfactionScore.objects.exists()
    assert DealerStanding.objects.exists()


def test_sequences_and_counters_continue_after_the_data(data):
    """New rows made by the portal get fresh ids and the next reference number."""
    from deals.services import _next_reference

    org = Organisation.objects.get(pk=1)
    customer = Customer.objects.create(organisation=org, name="Nieuwe Klant B.V.", city="Utrecht", postcode="3511")
    assert customer.pk > Customer.objects.exclude(pk=customer.pk).order_by("-pk").first().pk
    year = timezone.localdate().year
    last = ReferenceCounter.objects.get(year=year).last
    assert _next_reference(timezone.now()) == f"REG-{year}-{last + 1:06d}"


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for model in (
        User,
        Organisation,
        Customer,
        Registration,
        RegistrationLine,
        RegistrationEvent,
        RegistrationFlag,
        Conflict,
        ExtensionRequest,
        Sale,
        SatisfactionScore,
        CertificationHolding,
        Territory,
    ):
        for row in model.objects.order_by("pk").values_list():
            digest.update(repr(row).encode())
    return digest.hexdigest()


def test_the_same_seed_gives_the_same_data(data):
    first = _fingerprint()
    generate("--flush")
    assert _fingerprint() == first
    generate("--flush", seed=2)
    assert _fingerprint() != first


def test_refuses_a_database_with_data_unless_flushed(data):
    with pytest.raises(CommandError, match="not empty"):
        generate()
    generate("--flush", registrations=300)
    assert Registration.objects.count() == 300


@pytest.mark.skipif(connection.vendor == "postgresql", reason="SQLite only")
def test_sqlite_takes_small_sizes_only(db):
    with pytest.raises(CommandError, match="PostgreSQL"):
        generate(registrations=scaledata_limit() + 1)


def scaledata_limit():
    from prm.management.commands.generate_scale_data import SQLITE_MAX_REGISTRATIONS

    return SQLITE_MAX_REGISTRATIONS


@on_postgresql
def test_marker_and_check(data):
    marker = scaledata.read_marker(connection)
    assert marker["seed"] == 1 and marker["dealers"] == DEALERS and marker["registrations"] == REGISTRATIONS
    assert marker["today"] == data.today
    args = ["generate_scale_data", "--check", "--dealers", str(DEALERS), "--registrations", str(REGISTRATIONS)]
    call_command(*args, "--seed", "1", stdout=StringIO())  # exits 0: returns
    with pytest.raises(SystemExit) as exit_:
        call_command(*args, "--seed", "2", stdout=StringIO())
    assert exit_.value.code == 1
    with pytest.raises(SystemExit):
        call_command(*args[:-1], str(REGISTRATIONS + 1), "--seed", "1", stdout=StringIO())


@on_postgresql
def test_indexes_and_foreign_keys_are_back(data):
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'deals_customer'")
        indexes = {row[0] for row in cursor.fetchall()}
        cursor.execute(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = 'deals_registration'::regclass"
        )
        foreign_keys = cursor.fetchone()[0]
    assert "customer_name_key_trgm" in indexes and "customer_vat_key_idx" in indexes
    assert foreign_keys == 4  # organisation, registered_by, customer, decided_by
