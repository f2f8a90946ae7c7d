#!/usr/bin/env python
"""`make bench`: the portal at a million registrations, measured against its targets.

    make bench                                    # DATABASE_URL defaults to .../prm_bench
    make bench BENCH_ARGS="--skip-load --quick"   # fewer samples, no gunicorn/locust run

Runs on PostgreSQL only (DATABASE_URL). Steps:

1. creates the database if it does not exist, migrates it, collects static files, and generates
   the data (`manage.py generate_scale_data --dealers 10000 --registrations 1000000 --seed 1`)
   unless the same data is already there (`--check`); only a database whose name contains
   "bench" is ever flushed for that (or with --force);
2. measures each target below and its reference in the same run, with production-like settings
   (DEBUG off, MFA required, Redis cache if CACHE_URL is given). Everything a measurement writes
   is rolled back (each submission, review, expiry and recompute runs in a transaction that is
   rolled back afterwards), so a rerun measures the same data;
3. prints one table and writes it to BENCHMARKS.md with the machine it ran on.

The portal's limits stay as they are: every submission comes from a different dealer's user
(PRM_REGISTRATION_SUBMITS_PER_HOUR counts per user), lookups are spread over the vendor's staff
(PRM_LOOKUPS_PER_HOUR), and log-ins in the load test are correct ones.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Production-like settings for the measuring process (and the job subprocesses it starts).
BENCH_ENV = {
    "DJANGO_SETTINGS_MODULE": "prm.settings",
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "bench-only-secret-key-not-for-production",
    "DJANGO_ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
    "DJANGO_SECURE_SSL_REDIRECT": "0",  # the test client speaks plain HTTP
    "DJANGO_SECURE_COOKIES": "0",
    "DJANGO_LOG_LEVEL": "WARNING",
    "PRM_REQUIRE_STAFF_MFA": "1",
}
for _k, _v in BENCH_ENV.items():
    os.environ.setdefault(_k, _v)


def _redis_answers(host: str = "127.0.0.1", port: int = 6379) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# Production keeps the cache (rate-limit counters, log-in limits) in Redis: so does the benchmark
# when a Redis answers on the standard port; otherwise the files under var/ that `make run` uses.
if "CACHE_URL" not in os.environ and _redis_answers():
    os.environ["CACHE_URL"] = "redis://127.0.0.1:6379/5"

DATA = {"dealers": 10_000, "registrations": 1_000_000, "seed": 1}


# --- results ------------------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    target: str
    n: int = 0
    p50: float | None = None  # ms
    p95: float | None = None  # ms
    max: float | None = None  # ms
    total: float | None = None  # s
    reference: str = ""
    ratio: float | None = None
    met: bool | None = None
    queries: str = ""
    note: str = ""
    samples: list[float] = field(default_factory=list, repr=False)


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def timings(row: Row, ms: list[float], limit_ms: float | None = None) -> Row:
    row.samples, row.n = ms, len(ms)
    row.p50, row.p95, row.max = pct(ms, 50), pct(ms, 95), max(ms)
    if limit_ms is not None:
        row.met = row.p95 <= limit_ms
    return row


def say(text: str) -> None:
    print(text, flush=True)


# --- set-up ---------------------------------------------------------------------------------------------


def manage(*args: str, check: bool = True) -> int:
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=ROOT, check=check).returncode


def ensure_data(name: str, force: bool) -> str:
    """Generate the data unless the same data is there; returns what happened, for the report."""
    params = [f"--dealers={DATA['dealers']}", f"--registrations={DATA['registrations']}", f"--seed={DATA['seed']}"]
    if manage("generate_scale_data", *params, "--check", check=False) == 0:
        return "data present (generated earlier with the same parameters)"
    if "bench" not in name and not force:
        sys.exit(f"database {name!r} has no benchmark data; refusing to flush a database not named *bench* (--force)")
    started = time.perf_counter()
    manage("generate_scale_data", *params, "--flush")
    return f"data generated in this run in {time.perf_counter() - started:.0f} s"


def vacuum_dead_rows() -> str:
    """VACUUM (ANALYZE) every table with more dead rows than autovacuum lets stand (50 + 20 % of its
    live rows), as autovacuum would have done before a real day. What this run measures writes and
    rolls back: the expiry alone leaves some 150,000 dead registration rows, the tier evaluation
    600,000 dead standings and evaluations. Where autovacuum is off (as on this machine's
    PostgreSQL) they piled up from run to run, and a page reading the dealers' standings took twice
    as long in the fifth run of a day as in the first. Run before the first part and again before
    each later one."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE n_dead_tup > 50 + 0.2 * n_live_tup ORDER BY relname"
        )
        tables = [name for (name,) in cursor.fetchall()]
        cursor.execute("SHOW autovacuum")
        autovacuum = cursor.fetchone()[0]
        started = time.perf_counter()
        for name in tables:
            cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(name)}")
    if not tables:
        return f"no table needed a vacuum (autovacuum {autovacuum})"
    return (
        f"vacuumed {len(tables)} table{'' if len(tables) == 1 else 's'} with dead rows of earlier runs in "
        f"{time.perf_counter() - started:.0f} s "
        f"(autovacuum {autovacuum}): {', '.join(tables)}"
    )


@contextmanager
def rolled_back():
    from django.db import transaction

    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def count_queries(fn) -> int:
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    reset_queries()
    with CaptureQueriesContext(connection) as captured:
        fn()
    return len(captured.captured_queries)


# --- personas ------------------------------------------------------------------------------------------


@dataclass
class People:
    big_dealer: object  # the dealer admin of the organisation with the most registrations
    big_count: int
    small_dealer: object  # a dealer admin of an organisation with few registrations
    small_count: int
    submitters: list  # one dealer user per organisation, for submissions
    pm_big: object  # the partner manager with the most dealers
    pm_small: object  # the partner manager with the fewest dealers
    pms: list
    rd: object
    channel_admin: object
    lookups_by: list  # vendor staff who may use the protection lookup


def people() -> People:
    from django.db.models import Count, Q

    from dealers.models import Membership, Organisation, StaffRole, User
    from deals.models import Registration

    counts = list(
        Registration.objects.order_by()
        .values("organisation")
        .annotate(n=Count("id"))
        .order_by("-n")
        .values_list("organisation", "n")
    )
    big_org, big_count = counts[0]
    small_org, small_count = min(counts, key=lambda c: abs(c[1] - 40))

    def admin_of(org_id):
        return (
            Membership.objects.filter(organisation_id=org_id, deactivated_at__isnull=True, user__is_active=True)
            .order_by("role", "pk")  # "admin" before "user"
            .select_related("user")
            .first()
            .user
        )

    def staff(role):
        return list(User.objects.filter(is_active=True, is_staff=True, groups__name=role).order_by("pk"))

    pms = staff(StaffRole.PARTNER_MANAGER)
    managed = dict(
        Organisation.objects.filter(partner_manager__in=pms)
        .order_by()
        .values("partner_manager")
        .annotate(n=Count("id"))
        .values_list("partner_manager", "n")
    )
    pms = [pm for pm in pms if managed.get(pm.pk)]
    pm_big = max(pms, key=lambda pm: managed[pm.pk])
    pm_small = min(pms, key=lambda pm: managed[pm.pk])
    # submitters: dealers with room under their open-registration cap, one user each
    resellers = list(
        Organisation.objects.filter(kind=Organisation.Kind.RESELLER, status="active")
        .annotate(open=Count("registrations", filter=Q(registrations__status__in=("submitted", "info_requested"))))
        .filter(open__lt=5)
        .order_by("pk")
        .values_list("pk", flat=True)[:2000]
    )
    members = {
        m.organisation_id: m.user
        for m in Membership.objects.filter(organisation_id__in=resellers, deactivated_at__isnull=True)
        .select_related("user")
        .order_by("-pk")
    }
    submitters = [members[pk] for pk in resellers if pk in members and pk != big_org]
    return People(
        big_dealer=admin_of(big_org),
        big_count=big_count,
        small_dealer=admin_of(small_org),
        small_count=small_count,
        submitters=submitters,
        pm_big=pm_big,
        pm_small=pm_small,
        pms=pms,
        rd=staff(StaffRole.REGIONAL_DIRECTOR)[0],
        channel_admin=staff(StaffRole.CHANNEL_ADMIN)[0],
        lookups_by=staff(StaffRole.DIRECT_SALES) + pms,
    )


_CLIENT = None


def client_for(user):
    """One test client (one request handler) for the whole run, logged in as `user`. A new Client
    builds a new handler and loads the middleware again on its first request (WhiteNoise alone scans
    every static file: about 150 ms), which a running server does once per process."""
    global _CLIENT
    from django.test import Client

    if _CLIENT is None:
        _CLIENT = Client()
        _CLIENT.get("/healthz")
        # as a web process does once it has loaded the application (prm/wsgi.py): what is alive now
        # (Django, the apps, this run's personas) out of the garbage collector's passes
        from prm import heap

        heap.freeze()
    _CLIENT.force_login(user)
    return _CLIENT


# --- the conflict check --------------------------------------------------------------------------------


def probes(count: int, seed: int) -> list[dict]:
    """Varied submissions: typos and variants of existing customers' names (as another dealer would
    type them), VAT numbers typed differently, and new customers."""
    from dealers.models import Organisation
    from deals.models import Customer
    from prm import scaledata

    rng = random.Random(seed)
    high = Customer.objects.order_by("-pk").values_list("pk", flat=True).first()
    orgs = list(
        Organisation.objects.filter(kind=Organisation.Kind.RESELLER).order_by("pk").values_list("pk", "country")
    )
    picked = list(Customer.objects.filter(pk__in=[rng.randint(1, high) for _ in range(count * 3)]).order_by("pk"))
    rng.shuffle(picked)
    with_vat = [c for c in picked if c.vat_number]
    out = []
    for i in range(count):
        kind = rng.choices(["typo", "variant", "new", "vat"], weights=[35, 20, 30, 15])[0]
        org_pk, org_country = rng.choice(orgs)
        target = picked[i % len(picked)]
        if kind == "vat" and with_vat:
            target = rng.choice(with_vat)
            vat = rng.choice([target.vat_number, target.vat_number.lower(), " ".join(target.vat_number.split())])
            probe = {"name": scaledata.typo(rng, target.name), "vat_number": vat}
        elif kind == "typo":
            probe = {"name": scaledata.typo(rng, target.name)}
        elif kind == "variant":
            probe = {"name": scaledata.variant(rng, target.name, target.country)}
        else:
            kind, country = "new", org_country
            probe = {"name": scaledata.business_name(rng, country), "country": country, "city": "Utrecht"}
            probe.setdefault("postcode", scaledata.postcode(rng, country))
            target = None
        if target is not None:
            probe.update(country=target.country, city=target.city, postcode=target.postcode)
            if target.website and rng.random() < 0.3:
                probe["website"] = target.website
        probe.update(kind=kind, organisation_id=org_pk)
        out.append(probe)
    return out


def probe_customer(probe: dict):
    from deals.conflicts import customer_keys
    from deals.models import Customer

    customer = Customer(
        organisation_id=probe["organisation_id"],
        name=probe["name"],
        city=probe.get("city", ""),
        postcode=probe.get("postcode", ""),
        country=probe["country"],
        website=probe.get("website", ""),
        vat_number=probe.get("vat_number", ""),
    )
    for key, value in customer_keys(customer).items():
        setattr(customer, key, value)
    return customer


def bench_conflict_check(count: int, naive_probes: int) -> Row:
    from decimal import Decimal

    from django.utils import timezone

    from dealers.models import Membership
    from deals.conflicts import conflicts_detect, lock_country
    from deals.models import Customer, Product, Registration, RegistrationLine

    product = Product.objects.order_by("pk").first()
    users = dict(
        Membership.objects.filter(deactivated_at__isnull=True).order_by("pk").values_list("organisation_id", "user_id")
    )
    items = probes(count + 20, seed=DATA["seed"] + 100)
    ms, queries, conflicts, flagged = [], [], 0, 0
    for i, probe in enumerate(items):
        with rolled_back():
            now = timezone.now()
            customer = probe_customer(probe)
            customer.save()
            registration = Registration.objects.create(
                reference=f"BENCH-{i:05d}",
                organisation_id=probe["organisation_id"],
                registered_by_id=users[probe["organisation_id"]],
                customer=customer,
                contact_name="Bench",
                contact_email="bench@example.invalid",
                expected_value=Decimal("2000.00"),
                expected_close_date=(now + dt.timedelta(days=30)).date(),
                status=Registration.Status.SUBMITTED,
                status_changed_at=now,
                first_submitted_at=now,
                review_started_at=now,
                review_remind_at=now + dt.timedelta(days=1),
                review_due_at=now + dt.timedelta(days=2),
                last_activity_at=now,
            )
            RegistrationLine.objects.create(registration=registration, product=product, quantity=2, value=2000)
            lock_country(customer.country)
            t0 = time.perf_counter()
            detection = conflicts_detect(registration)
            elapsed = (time.perf_counter() - t0) * 1000
            if i >= 20:  # the first 20 warm the caches
                ms.append(elapsed)
                conflicts += bool(detection.conflicts)
                flagged += detection.needs_review
            if i == 20:
                queries.append(count_queries(lambda r=registration: conflicts_detect(r)))
    row = timings(Row("conflict check, one new registration (service call)", "p95 ≤ 25 ms"), ms, 25)
    # the naive reference: every customer compared in Python, on a sample, extrapolated
    from deals import matching

    rng = random.Random(DATA["seed"] + 101)
    high = Customer.objects.order_by("-pk").values_list("pk", flat=True).first()
    total = Customer.objects.count()
    sample = [
        c.as_match_record() for c in Customer.objects.filter(pk__in=rng.sample(range(1, high + 1), min(10_000, high)))
    ]
    per_probe = []
    for probe in items[20 : 20 + naive_probes]:
        record = probe_customer(probe).as_match_record()
        t0 = time.perf_counter()
        for other in sample:
            matching.match(record, other)
        per_probe.append(time.perf_counter() - t0)
    naive_ms = statistics.fmean(per_probe) * 1000 * total / len(sample)
    row.reference = (
        f"naive: match() over every customer in Python, {naive_ms / 1000:.1f} s "
        f"({len(sample):,}-row sample × {total / len(sample):.0f})"
    )
    row.ratio = row.p95 / naive_ms
    row.queries = str(queries[0]) if queries else ""
    row.note = f"{len(ms)} probes; {conflicts} found another dealer's registration, {flagged} need review"
    return row


# --- pages through the test client -------------------------------------------------------------------


def time_requests(
    client, urls: list[str], *, method="get", data=None, expect=(200,), budget_s: float | None = None
) -> list[float]:
    """Each url once, in order; with budget_s, stop after that many seconds (at least 5 requests),
    so that a page far over its target does not hold the run up for many minutes."""
    ms = []
    started = time.perf_counter()
    for url in urls:
        if budget_s is not None and len(ms) >= 5 and time.perf_counter() - started > budget_s:
            break
        t0 = time.perf_counter()
        response = getattr(client, method)(url, data) if data is not None else getattr(client, method)(url)
        ms.append((time.perf_counter() - t0) * 1000)
        if response.status_code not in expect:
            raise RuntimeError(f"{method.upper()} {url}: {response.status_code}")
    return ms


def bench_page(label: str, target_ms: float, big, small, urls_big: list[str], url_small: str, warm: int = 3) -> Row:
    """p95 over urls_big as the `big` persona; queries for the first url as `big` and `url_small`
    as `small` (the same page over few rows): equal counts show the count does not grow with rows."""
    client = client_for(big)
    time_requests(client, urls_big[:warm], budget_s=0)
    ms = time_requests(client, urls_big, budget_s=30)
    row = timings(Row(label, f"p95 ≤ {target_ms:.0f} ms"), ms, target_ms)
    big_q = count_queries(lambda: client.get(urls_big[0]))
    client = client_for(small)
    client.get(url_small)
    small_q = count_queries(lambda: client.get(url_small))
    row.queries = f"{small_q} / {big_q}" + ("" if small_q == big_q else " (differs)")
    return row


def dashboards_rollup() -> str:
    """The dashboards read the nightly roll-up (tiers.rollup): as on a morning after the nightly job,
    it is built here when missing or when registrations changed since (not rolled back)."""
    from tiers.models import RollupChange, RollupState
    from tiers.rollup import rollup_build, rollup_warm

    if not RollupState.objects.exists() or RollupChange.objects.exists():
        say("building the dashboards' roll-up, as the nightly job does…")
        rollup_build()
    rollup_warm()  # what the nightly job keeps for the day (at once when it is kept already)
    state = RollupState.objects.get()
    return f"the nightly roll-up: {state.rows:,} dealer-month rows, built in {state.seconds} s"


def bench_pages(p: People, samples: int) -> list[Row]:
    rollup = dashboards_rollup()
    rows = []
    n = samples
    big_pages = max(1, p.big_count // 25)
    rng = random.Random(7)
    statuses = ["", "submitted", "approved", "won", "lost", "expired"]
    my_urls = []
    for _ in range(n):
        status = rng.choice(statuses)
        page = rng.randint(1, min(big_pages, 200))
        my_urls.append(f"/registrations/?page={page}" + (f"&status={status}" if status else ""))
    my_urls[0] = "/registrations/"
    rows.append(
        bench_page(
            f"dealer “my registrations”, {p.big_count:,} registrations",
            100,
            p.big_dealer,
            p.small_dealer,
            my_urls,
            "/registrations/",
        )
    )
    rows[-1].note = (
        f"pages 1–{min(big_pages, 200)}, with and without a status filter; "
        f"queries: {p.small_count} rows / {p.big_count:,} rows"
    )
    rows.append(bench_page("partner manager review queue", 100, p.pm_big, p.pm_small, ["/review/"] * n, "/review/"))
    rows[-1].note = "the partner manager with the most dealers; queries: fewest / most dealers"
    dashboards = [
        ("dealer dashboard", p.big_dealer, p.small_dealer, "/dashboard/dealer/"),
        ("team dashboard (partner manager)", p.pm_big, p.pm_small, "/dashboard/team/"),
        ("region dashboard (regional director)", p.rd, p.rd, "/dashboard/region/"),
        ("programme dashboard (channel admin)", p.channel_admin, p.channel_admin, "/dashboard/region/"),
        # (queries against a regional director's: both read what is kept for whole regions, where a
        # partner manager's few dealers run the statement, in fewer queries)
        ("forecast (channel admin)", p.channel_admin, p.rd, "/forecast/"),
        (
            "figures: registrations submitted (partner manager)",
            p.pm_big,
            p.pm_small,
            "/dashboard/figures/registrations/?kpi=submitted",
        ),
        ("figures: sales (partner manager)", p.pm_big, p.pm_small, "/dashboard/figures/sales/"),
        ("tier page (dealer)", p.big_dealer, p.small_dealer, "/tier/"),
    ]
    for label, big, small, url in dashboards:
        rows.append(bench_page(label, 250, big, small, [url] * n, url))
        if "dashboard" in label:
            rows[-1].note = f"the default period (the last 12 months); {rollup}"
        say(f"    {label}: p95 {rows[-1].p95:.0f} ms over {rows[-1].n}")
    return rows


def bench_lookup(p: People, samples: int) -> Row:
    from deals.models import Customer

    rng = random.Random(11)
    high = Customer.objects.order_by("-pk").values_list("pk", flat=True).first()
    customers = list(Customer.objects.filter(pk__in=[rng.randint(1, high) for _ in range(samples * 2)])[:samples])
    queries = []
    for c in customers:
        queries.append(rng.choice([c.name, c.name.lower(), c.vat_number or c.name, c.website or c.name]))
    staff = p.lookups_by
    ms = []
    for i, q in enumerate(queries):
        client = client_for(staff[i % len(staff)])  # PRM_LOOKUPS_PER_HOUR counts per person: spread them
        ms += time_requests(client, ["/lookup/"], data={"q": q})
    row = timings(Row("protection lookup", "p95 ≤ 50 ms"), ms, 50)
    with rolled_back():
        one = count_queries(lambda: client_for(staff[0]).get("/lookup/", {"q": queries[0]}))
    row.queries = str(one)
    row.note = f"{len(ms)} lookups of names, VAT numbers and websites by {len(staff)} staff"
    return row


def submit_data(product_ids: list[int], rng: random.Random, i: int) -> dict:
    from prm import scaledata

    country = rng.choice(["NL", "NL", "BE", "DE"])
    return {
        "customer-existing": "",
        "customer-name": scaledata.business_name(rng, country),
        "customer-city": "Utrecht",
        "customer-postcode": scaledata.postcode(rng, country),
        "customer-country": country,
        "customer-website": "",
        "customer-vat_number": "",
        "customer-company_number": "",
        "deal-contact_name": "Bench Contact",
        "deal-contact_email": f"contact{i}@bench.example",
        "deal-contact_phone": "+31 30 123 4567",
        "deal-expected_close_date": (dt.date.today() + dt.timedelta(days=45)).isoformat(),
        "deal-decision_stage": "mid",
        "deal-competitors": "",
        "deal-next_steps": "",
        "lines-TOTAL_FORMS": "2",
        "lines-INITIAL_FORMS": "0",
        "lines-MIN_NUM_FORMS": "1",
        "lines-MAX_NUM_FORMS": "50",
        "lines-0-product": str(rng.choice(product_ids)),
        "lines-0-quantity": str(rng.randint(1, 5)),
        "lines-0-value": "",
        "lines-1-product": str(rng.choice(product_ids)),
        "lines-1-quantity": "1",
        "lines-1-value": "2500.00",
    }


def bench_submit(p: People, count: int) -> Row:
    from deals.models import Product

    product_ids = list(Product.objects.filter(active=True).values_list("pk", flat=True))
    rng = random.Random(13)
    ms = []
    users = p.submitters[: count + 5]
    if len(users) < count + 5:
        raise RuntimeError(f"only {len(users)} dealers with room under their cap for {count} submissions")
    for i, user in enumerate(users):
        client = client_for(user)
        data = submit_data(product_ids, rng, i)
        with rolled_back():  # the registration, its history and outbox rows go again
            t0 = time.perf_counter()
            response = client.post("/registrations/new/", data)
            elapsed = (time.perf_counter() - t0) * 1000
        if response.status_code != 302:
            raise RuntimeError(f"submit as {user.email}: {response.status_code} (form errors?)")
        if i >= 5:
            ms.append(elapsed)
    row = timings(Row("registration submit through the test client", "p95 ≤ 100 ms"), ms, 100)
    row.note = f"{len(ms)} submits, each by another dealer (rate limit per user untouched), 2 lines each"
    return row


def bench_review(p: People, count: int) -> Row:
    """Not a target of its own: a partner manager approving a submitted registration (POST)."""
    from deals.models import Registration

    waiting = list(
        Registration.objects.filter(status="submitted", organisation__partner_manager=p.pm_big)
        .order_by("pk")
        .values_list("pk", flat=True)[: count + 3]
    )
    client = client_for(p.pm_big)
    ms = []
    for i, pk in enumerate(waiting):
        with rolled_back():
            t0 = time.perf_counter()
            response = client.post(f"/registrations/{pk}/review/approve/", {"reason": "", "internal_note": ""})
            elapsed = (time.perf_counter() - t0) * 1000
        if response.status_code != 302:
            raise RuntimeError(f"approve {pk}: {response.status_code}")
        if i >= 3:
            ms.append(elapsed)
    row = timings(Row("partner manager approves a registration (POST)", "(no target)"), ms)
    row.note = f"{len(ms)} approvals of the team's submitted registrations"
    return row


# --- nightly jobs ------------------------------------------------------------------------------------------

EXPIRY_SQL = """
WITH expired AS (
    UPDATE deals_registration SET status = 'expired', status_changed_at = %(now)s
    WHERE status = 'approved' AND protected_until < %(day)s
    RETURNING id
)
INSERT INTO deals_registrationevent (registration_id, actor_id, created_at, action, from_status, to_status,
                                     reason, internal_note)
SELECT id, NULL, %(now)s, 'expire', 'approved', 'expired', 'The protection window ended.', '' FROM expired
"""


def bench_expiry(repeat: int) -> Row:
    """The expiry as of a day 100 days ahead, so that every protection now running ends."""
    from django.db import connection
    from django.utils import timezone

    from deals import services
    from deals.models import Registration

    day = timezone.localdate() + dt.timedelta(days=100)
    due = Registration.objects.filter(status="approved", protected_until__lt=day).count()
    app, ref = [], []
    for _ in range(repeat):
        with rolled_back():
            t0 = time.perf_counter()
            expired = services.protections_expire(today=day)
            app.append(time.perf_counter() - t0)
        with rolled_back():
            with connection.cursor() as cursor:
                t0 = time.perf_counter()
                cursor.execute(EXPIRY_SQL, {"now": timezone.now(), "day": day})
                ref.append(time.perf_counter() - t0)
                ref_rows = cursor.rowcount
    total = Registration.objects.count()
    row = Row("nightly protection expiry", "≤ 1.5 × hand-written SQL")
    row.n, row.total = repeat, statistics.median(app)
    ref_s = statistics.median(ref)
    row.reference = f"UPDATE … RETURNING + INSERT of the history: {ref_s:.2f} s"
    row.ratio = row.total / ref_s
    row.met = row.ratio <= 1.5 and expired == ref_rows == due
    row.note = f"{expired:,} of {total:,} registrations expired, with their history rows (medians of {repeat})"
    return row


def bench_tiers(repeat: int) -> Row:
    from django.db import connection
    from django.utils import timezone

    from tiers import services
    from tools import measure_tier_recompute as mtr

    day = timezone.localdate()
    first, steady = [], []
    for _ in range(repeat):
        with rolled_back():
            mtr._wipe_in_transaction()
            t0 = time.perf_counter()
            result = services.tiers_recompute(day=day)
            first.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            services.tiers_recompute(day=day + dt.timedelta(days=1))
            steady.append(time.perf_counter() - t0)
    ref = []
    with connection.cursor() as cursor:
        for _ in range(5):
            t0 = time.perf_counter()
            cursor.execute(mtr.REFERENCE_SQL, mtr.reference_params(day))
            rows = cursor.fetchall()
            ref.append(time.perf_counter() - t0)
    ref_s = statistics.median(ref)
    row = Row("nightly tier recompute, all dealers", "≤ 2 × SQL aggregate; ≤ 30 s")
    row.n, row.total = repeat, statistics.median(steady)
    row.reference = f"one SQL aggregate of the same criteria: {ref_s:.2f} s ({len(rows):,} dealers)"
    row.ratio = row.total / ref_s
    row.met = row.ratio <= 2 and max(first) <= 30
    row.note = (
        f"a night after a night: {row.total:.2f} s; a first run (every standing created): "
        f"{statistics.median(first):.2f} s, {result.changes:,} changes"
    )
    return row


NIGHTLY_JOBS = [
    "protections_expire",
    "expiry_warnings_send",
    "stale_registrations_flag",
    "review_reminders_send",
    "contacts_anonymise",
    "recompute_tiers",
    "rollup_dashboards",
]


def job_child(command: str) -> None:
    """In a child process: run one nightly job's management command in a transaction that is
    rolled back, and print the process's peak RSS as JSON."""
    import django

    django.setup()
    from django.core.management import call_command

    t0 = time.perf_counter()
    with rolled_back():
        call_command(command, verbosity=0)
    seconds = time.perf_counter() - t0
    # VmHWM, the peak resident set of this process image: getrusage's ru_maxrss survives exec and
    # would report the parent benchmark's size, from which this child was forked.
    status = Path("/proc/self/status").read_text().splitlines()
    rss = next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmHWM:"))
    print(json.dumps({"command": command, "seconds": seconds, "rss_mb": rss}))


def bench_job_memory() -> Row:
    results = []
    for command in NIGHTLY_JOBS:
        out = subprocess.run(
            [sys.executable, __file__, "--job-child", command], cwd=ROOT, check=True, capture_output=True, text=True
        )
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    worst = max(results, key=lambda r: r["rss_mb"])
    row = Row("peak memory of a nightly job process", "≤ 300 MB")
    row.n = len(results)
    row.max = worst["rss_mb"]
    row.met = worst["rss_mb"] <= 300
    row.note = "; ".join(f"{r['command']} {r['rss_mb']:.0f} MB / {r['seconds']:.1f} s" for r in results)
    return row


# --- report ----------------------------------------------------------------------------------------------


def fmt_ms(value: float | None) -> str:
    return "" if value is None else (f"{value:.0f}" if value >= 10 else f"{value:.1f}")


def table(rows: list[Row]) -> str:
    head = "| measurement | n | p50 ms | p95 ms | max ms | total | target | met | reference | ratio | queries |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---|---|---|---:|---|"]
    for r in rows:
        total = "" if r.total is None else f"{r.total:.2f} s"
        if r.name.startswith("peak memory"):
            peak, total = "", f"{r.max:.0f} MB"
        else:
            peak = fmt_ms(r.max)
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        ratio = "" if r.ratio is None else (f"{r.ratio:.2g}" if r.ratio < 0.01 else f"{r.ratio:.2f}")
        lines.append(
            f"| {r.name} | {r.n or ''} | {fmt_ms(r.p50)} | {fmt_ms(r.p95)} | {peak} | {total} | {r.target} | {met} "
            f"| {r.reference} | {ratio} | {r.queries} |"
        )
    return "\n".join(lines)


def machine() -> str:
    from django.db import connection

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem = next((int(line.split()[1]) / 2**20 for line in meminfo if line.startswith("MemTotal")), 0)
    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
        cursor.execute("SELECT pg_size_pretty(pg_database_size(current_database()))")
        size = cursor.fetchone()[0]
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; PostgreSQL {pg} (database {size}, on the same machine)"
    )


def write_report(rows: list[Row], load: dict | None, context: dict, *, to_file: bool = True) -> str:
    met = [r for r in rows if r.met is not None]
    missed = [r.name for r in met if not r.met]
    parts = [
        "# Benchmarks",
        "",
        f"Written by `make bench` (tools/bench.py) on {context['when']}. Rerun it to replace this file.",
        "",
        f"- **Machine:** {context['machine']}",
        f"- **Data:** `generate_scale_data --dealers {DATA['dealers']} --registrations {DATA['registrations']} "
        f"--seed {DATA['seed']}`: {context['data']}; {context['counts']}",
        f"- **Settings:** {context['settings']}",
        f"- **Targets met:** {len(met) - len(missed)} of {len(met)}"
        + (f"; not met: {', '.join(missed)}" if missed else ""),
        "",
        table(rows),
        "",
        "Queries: the SQL statements of one request over few rows / over many rows (the same page for a "
        "persona with few and with many registrations or dealers); equal counts mean the count does not grow "
        "with the data.",
        "",
        "Notes per measurement:",
        "",
    ]
    parts += [f"- {r.name}: {r.note}" for r in rows if r.note]
    if load:
        parts += ["", "## Load", "", load["markdown"]]
    parts.append("")
    text = "\n".join(parts)
    if to_file:
        (ROOT / "BENCHMARKS.md").write_text(text)
    return text


# --- main -------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples (a check that it all runs)")
    parser.add_argument("--skip-load", action="store_true", help="no gunicorn/locust load test")
    parser.add_argument("--force", action="store_true", help="flush a database not named *bench* for the data")
    parser.add_argument(
        "--only", default="", help="comma-separated: conflicts,submit,pages,lookup,review,expiry,tiers,memory,load"
    )
    parser.add_argument("--job-child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.job_child:
        job_child(args.job_child)
        return

    from prm.scaledata import ensure_database

    name = ensure_database()
    manage("migrate", "--no-input", "-v", "0")
    manage("collectstatic", "--no-input", "-v", "0")
    data = ensure_data(name, args.force)

    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from deals.models import Customer, Registration, RegistrationEvent

    only = set(filter(None, args.only.split(",")))

    def wanted(part):
        return not only or part in only

    samples = 15 if args.quick else 60
    started = time.perf_counter()
    vacuumed = vacuum_dead_rows()
    say(vacuumed)
    p = people()
    say(
        f"personas: big dealer {p.big_dealer.email} ({p.big_count:,} registrations), small dealer "
        f"{p.small_dealer.email} ({p.small_count}), partner managers {p.pm_big.email} / {p.pm_small.email}"
    )
    rows: list[Row] = []
    steps = [
        ("conflicts", lambda: [bench_conflict_check(100 if args.quick else 1000, 3 if args.quick else 10)]),
        ("submit", lambda: [bench_submit(p, 30 if args.quick else 300)]),
        ("pages", lambda: bench_pages(p, samples)),
        ("lookup", lambda: [bench_lookup(p, 40 if args.quick else 200)]),
        ("review", lambda: [bench_review(p, 20 if args.quick else 100)]),
        ("expiry", lambda: [bench_expiry(1 if args.quick else 3)]),
        ("tiers", lambda: [bench_tiers(1 if args.quick else 3)]),
        ("memory", lambda: [bench_job_memory()]),
    ]
    for part, step in steps:
        if not wanted(part):
            continue
        if part != steps[0][0]:  # what the parts before left dead (the expiry, the tiers) goes first
            say(f"before {part}: {vacuum_dead_rows()}")
        t0 = time.perf_counter()
        for row in step():
            rows.append(row)
            say(
                f"  {row.name}: p50 {fmt_ms(row.p50)} ms, p95 {fmt_ms(row.p95)} ms, "
                f"total {row.total if row.total is None else round(row.total, 2)}, met {row.met}  ({row.note})"
            )
        say(f"[{part}: {time.perf_counter() - t0:.0f} s]")
    load = None
    if wanted("load") and not args.skip_load:
        from tools import load_test

        say(f"before load: {vacuum_dead_rows()}")
        connection.close()
        users, duration = (20, 20) if args.quick else (50, 60)
        try:
            # on a copy: its submits, approvals and requests for information are real writes, and
            # the next run must measure the same data
            from prm.scaledata import scratch_copy

            with scratch_copy("_load") as url:
                load = load_test.run(users=users, duration=duration, database_url=url)
        except Exception as exc:  # the table is still written, with the reason
            load = {"markdown": f"The load test could not run: {exc}", "requests": 0, "failures": None}
        row = Row(f"load: {users} dealers and partner managers, {duration} s, gunicorn", "zero errors")
        if load.get("requests"):
            row.n, row.p50, row.p95, row.max = load["requests"], load["p50_ms"], load["p95_ms"], load["max_ms"]
            row.met = load["failures"] == 0 and load.get("ok", False)
            row.note = f"{load['rps']:.1f} requests/s, {load['failures']} failed; details under Load below"
        else:
            row.met, row.note = False, load["markdown"]
        rows.append(row)
    counts = (
        f"{Registration.objects.count():,} registrations, {Customer.objects.count():,} customers, "
        f"{RegistrationEvent.objects.count():,} history rows"
    )
    cache = settings.CACHES["default"]["BACKEND"].rsplit(".", 1)[-1]
    context = {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "data": f"{data}; {vacuumed}",
        "counts": counts,
        "settings": f"DEBUG off, staff MFA on, cache {cache}; limits unchanged "
        f"(submits {settings.PRM_REGISTRATION_SUBMITS_PER_HOUR}/h and lookups {settings.PRM_LOOKUPS_PER_HOUR}/h "
        f"per person, log-in lock-out after {settings.AXES_FAILURE_LIMIT} failures); "
        + ("quick run (fewer samples)" if args.quick else f"{samples} requests per page after 3 warm-up requests"),
    }
    # BENCHMARKS.md holds the latest full table: a partial or quick run only prints its own
    full = not only and not args.quick and not args.skip_load
    text = write_report(rows, load, context, to_file=full)
    say("\n" + text)
    written = "table written to BENCHMARKS.md" if full else "a partial run: BENCHMARKS.md left as it was"
    say(f"bench took {time.perf_counter() - started:.0f} s; {written}")


if __name__ == "__main__":
    main()
