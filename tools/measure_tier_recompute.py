#!/usr/bin/env python
"""Measure the nightly tier recompute (tiers.services.tiers_recompute) over many dealers on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/prm_measure_tiers DJANGO_DEBUG=1 \
        .venv/bin/python tools/measure_tier_recompute.py --dealers 10000 --seed 1

What it does (standalone; it changes no application code):

1. creates the database if it does not exist and migrates it;
2. bulk-loads (COPY), in a child process so that the load does not count in the measuring process's
   peak memory: --dealers resellers plus ~2 % distributors over seven regions, with regional
   directors and partner managers (some of whom left), one dealer admin and 0-3 more people per
   dealer; per reseller 0-40 sales (--max-sales) over the two years up to day D (and the few nights
   measured after it): ~10 % of the resellers without any sale, a long tail in count and size (many
   small dealers, a few big ones), ~30 % of the sales registered before the sale, ~25 % through a
   distributor; 0-5 certification holdings per dealer (about a third expired); customer satisfaction
   scores for ~40 % of the dealers. Then VACUUM ANALYZE. A load made with the same --dealers, --seed
   and --max-sales (and --day, if given) is reused; anything else in the database is truncated first
   (only in a database whose name contains "measure", unless --force). Sales are not linked to
   registrations (registered_before_sale is set directly; the recompute only reads the flag);
3. empties the evaluation state (runs, evaluations, standings, tier changes, outbox emails) and times,
   each with wall clock, SQL statements (connection.execute_wrapper: count and time, by statement and
   table), and the process's peak RSS (ru_maxrss):
   A1  absolute mode, day D: the first run (every dealer gets a standing, a START change, emails);
   A2  absolute mode, D+1: the steady-state nightly run;
   A3  absolute mode, D+1 again: idempotence (no changes);
   B1  distribution mode, D+2: the night after a channel admin switched the mode;
   B2  distribution mode, D+3: steady state in distribution mode;  B3  D+3 again;
   also timed apart: criteria_as_of, _notify, outbox_enqueue_many (template rendering once per
   change and the bulk INSERT), the on-commit Celery "kick" (one flush per run), and the cyclic
   garbage collector. The script uses
   Celery's in-memory broker (CELERY_BROKER_URL=memory://), made to drop what is published, so that no
   message reaches the project's var/broker queue (where a dev worker would act on it) and none piles
   up in this process: the kick time is serialising and publishing only, no broker round trip;
4. times the reference: one hand-written SQL statement computing the same raw criteria (revenue of
   the trailing 12 months and of the 12 before, compliant revenue, distinct certifications held,
   average satisfaction) for every evaluated dealer, checks that it agrees with
   tiers.services.criteria_as_of, and prints the ratio recompute / reference;
5. (unless --no-tracemalloc) the Python heap peak (tracemalloc) of a first run and a steady-state run,
   each in a transaction that is rolled back; with --profile a cProfile of both, with --explain
   EXPLAIN (ANALYZE, BUFFERS) of the recompute's criteria queries;
6. prints a compact table.

Everything random comes from --seed; dates are relative to day D (--day, default: the day of the load).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prm.settings")
# Outbox emails kick a Celery task on commit. Keep those messages in this process: with the default
# filesystem broker they would land in the project's var/broker queue, where a running dev worker
# would try to send "email N" of its own database.
os.environ["CELERY_BROKER_URL"] = "memory://localhost/"

from prm.scaledata import (  # noqa: E402  (the project root on sys.path first)
    CERTIFICATIONS,
    _next_id,
    _pick,
    _setval,
    _weighted,
    copy_rows,
    ensure_database,
    reseller_tier_activity,
)
from prm.scaledata import SALE_CITIES as CITIES  # noqa: E402

REGIONS = [  # name, code, country, share of the dealers
    ("Measure NL Randstad", "m-nl-randstad", "NL", 0.22),
    ("Measure NL Noord-Oost", "m-nl-noordoost", "NL", 0.14),
    ("Measure NL Zuid", "m-nl-zuid", "NL", 0.14),
    ("Measure Vlaanderen", "m-be-vl", "BE", 0.14),
    ("Measure Wallonie-Lux", "m-be-wl", "BE", 0.08),
    ("Measure DE West", "m-de-west", "DE", 0.16),
    ("Measure DE Nord", "m-de-nord", "DE", 0.12),
]
HEADS = """Techno Euro Prima Nova Multi Inter Flex Pro Top Duo Mega Eco Bio Smart Total Quick Alpha Delta
    Omega Solid Green Blue Star Noord Zuid Oost West Rhein Ems Maas Kempen Twente Brabant Veluwe""".split()
TAILS = """tech bouw service logistics solutions systems groep care vision line point net works plan
    team partners projects montage support consult trade data print clean energy""".split()
STATUS_MIX = (("active", 0.80), ("onboarding", 0.06), ("improvement_plan", 0.05), ("phasing_out", 0.04))
# the rest (5 %) terminated: not evaluated
MARKER_CODE = "measure-tiers"
MARKER_RE = re.compile(r"tiers dealers=(\d+) seed=(-?\d+) max_sales=(\d+) day=(\d{4}-\d\d-\d\d)")


# --- database ---------------------------------------------------------------------------------------


def existing_load(args) -> date | None:
    """Day D of an equal earlier load, or None."""
    from dealers.models import Region

    region = Region.objects.filter(code=MARKER_CODE).first()
    m = MARKER_RE.search(region.name) if region else None
    if not m:
        return None
    dealers, seed, max_sales, day = int(m[1]), int(m[2]), int(m[3]), date.fromisoformat(m[4])
    if (dealers, seed, max_sales) != (args.dealers, args.seed, args.max_sales):
        return None
    if args.day and date.fromisoformat(args.day) != day:
        return None
    return day


def load(args, db_name: str) -> None:
    """Load the data set (run in a child process)."""
    from django.contrib.auth.models import Group
    from django.db import connection, transaction
    from django.utils import timezone

    from dealers.models import Membership, Organisation, Region, StaffRole, User
    from deals.models import ProductLine
    from prm.models import OutboxEmail
    from tiers.models import Certification, CertificationHolding, DealerStanding, Sale, SatisfactionScore

    if Organisation.objects.exists() or User.objects.exists() or Sale.objects.exists():
        if "measure" not in db_name and not args.force:
            sys.exit(f"Database {db_name} holds data; refusing to truncate it (name lacks 'measure'; --force).")
        print("truncating the earlier data")
        tables = [
            m._meta.db_table
            for m in (Sale, CertificationHolding, Certification, SatisfactionScore, DealerStanding, OutboxEmail)
        ] + [m._meta.db_table for m in (Membership, Organisation, Region, ProductLine, User)]
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")

    started = time.perf_counter()
    rng = random.Random(args.seed)
    day = date.fromisoformat(args.day) if args.day else timezone.localdate()
    now = timezone.now()

    groups = dict(Group.objects.filter(name__in=StaffRole.values).values_list("name", "pk"))
    n_resellers = args.dealers
    n_distributors = max(1, round(args.dealers * 0.02))
    n_managers = max(2, args.dealers // 120)

    # --- vendor staff and regions --------------------------------------------------------------
    user_id = _next_id(User)
    users, user_groups = [], []

    def new_user(email, *, staff=False, active=True, first="", last="", region=None) -> int:
        nonlocal user_id
        pk = user_id
        user_id += 1
        users.append(
            {
                "id": pk,
                "password": "!",
                "email": email,
                "first_name": first,
                "last_name": last,
                "is_staff": staff,
                "is_active": active,
                "is_superuser": False,
                "date_joined": now - timedelta(days=rng.randint(30, 1500)),
                "home_region_id": region,
            }
        )
        return pk

    region_id = _next_id(Region)
    regions = []
    for i, (name, code, _country, _share) in enumerate(REGIONS):
        director = new_user(f"director{i}@measure.invalid", staff=True, first="Director", last=str(i))
        user_groups.append((director, groups.get(StaffRole.REGIONAL_DIRECTOR)))
        regions.append({"id": region_id + i, "name": name, "code": code, "regional_director_id": director})
    managers_by_region: dict[int, list[int]] = defaultdict(list)
    for i in range(n_managers):
        r = _weighted(rng, [(k, REGIONS[k][3]) for k in range(len(REGIONS))], 0)
        active = rng.random() >= 0.05  # some partner managers left: their dealers fall back to the director
        pk = new_user(
            f"pm{i}@measure.invalid",
            staff=True,
            active=active,
            first="Partner",
            last=f"Manager {i}",
            region=region_id + r,
        )
        user_groups.append((pk, groups.get(StaffRole.PARTNER_MANAGER)))
        managers_by_region[r].append(pk)

    # --- organisations ----------------------------------------------------------------------------
    org_id = _next_id(Organisation)
    orgs, memberships, people_of = [], [], {}
    distributors_by_country: dict[str, list[int]] = defaultdict(list)
    resellers = []  # (pk, size factor, country)
    membership_id = _next_id(Membership)
    for i in range(n_resellers + n_distributors):
        distributor = i >= n_resellers
        r = _weighted(rng, [(k, REGIONS[k][3]) for k in range(len(REGIONS))], 0)
        country = REGIONS[r][2]
        pk = org_id + i
        status = "active" if distributor else _weighted(rng, STATUS_MIX, "terminated")
        manager = (
            _pick(rng, managers_by_region[r]) if managers_by_region[r] and rng.random() < 0.85 else None
        )  # without one, the regional director looks after the dealer
        kind = "distributor" if distributor else "reseller"
        orgs.append(
            {
                "id": pk,
                "name": f"{'Distributor' if distributor else 'Dealer'} {i:06d} {_pick(rng, HEADS)}{_pick(rng, TAILS)}",
                "kind": kind,
                "status": status,
                "region_id": region_id + r,
                "partner_manager_id": manager,
                "city": _pick(rng, CITIES[country]),
                "country": country,
                "joined_on": day - timedelta(days=rng.randint(30, 3000)),
                "created_at": now - timedelta(days=rng.randint(30, 3000)),
            }
        )
        if distributor:
            distributors_by_country[country].append(pk)
        else:
            resellers.append((pk, rng.lognormvariate(0, 1.0), country))
        people = []
        for j in range(1 + (0 if distributor else _weighted(rng, ((0, 0.35), (1, 0.3), (2, 0.2)), 3))):
            u = new_user(f"p{i}.{j}@measure.invalid", first=f"Person {j}", last=f"of {i}", active=rng.random() > 0.02)
            role = "admin" if j == 0 or rng.random() < 0.1 else "user"
            memberships.append(
                {
                    "id": membership_id,
                    "user_id": u,
                    "organisation_id": pk,
                    "role": role,
                    "created_at": now - timedelta(days=rng.randint(1, 1000)),
                    "deactivated_at": now - timedelta(days=rng.randint(1, 100)) if rng.random() < 0.03 else None,
                }
            )
            membership_id += 1
            people.append(u)
        people_of[pk] = people
    all_distributors = [pk for pks in distributors_by_country.values() for pk in pks]
    for country in CITIES:  # a country without a distributor of its own buys through any
        if not distributors_by_country[country]:
            distributors_by_country[country] = all_distributors

    # --- product lines, certifications ----------------------------------------------------------
    lines = ProductLine.objects.bulk_create(
        ProductLine(name=f"Measure line {i}", code=f"measure-line-{i}") for i in range(6)
    )
    line_ids = [p.pk for p in lines]
    cert_ids = [
        p.pk for p in Certification.objects.bulk_create(Certification(name=n, code=c) for n, c in CERTIFICATIONS)
    ]

    # --- sales, holdings, scores ------------------------------------------------------------------
    sales, holdings, scores, links = [], [], [], set()
    ids = {"sale": _next_id(Sale), "holding": _next_id(CertificationHolding), "score": _next_id(SatisfactionScore)}
    for pk, size, country in resellers:
        reseller_tier_activity(
            rng,
            pk,
            size,
            country,
            people_of[pk],
            day=day,
            max_sales=args.max_sales,
            line_ids=line_ids,
            cert_ids=cert_ids,
            distributors=distributors_by_country[country],
            ids=ids,
            sales=sales,
            holdings=holdings,
            scores=scores,
            links=links,
        )
    print(
        f"  generated {len(orgs):,} organisations, {len(users):,} people, {len(sales):,} sales, "
        f"{len(holdings):,} certification holdings, {len(scores):,} satisfaction scores "
        f"({time.perf_counter() - started:.1f} s)",
        flush=True,
    )

    c0 = time.perf_counter()
    through_orgs = Organisation.distributors.through
    through_groups = User.groups.through
    with transaction.atomic():
        copy_rows(User, users)
        copy_rows(
            through_groups,
            [{"id": n + 1, "user_id": u, "group_id": g} for n, (u, g) in enumerate(user_groups) if g],
        )
        copy_rows(Region, regions)
        copy_rows(Organisation, orgs)
        copy_rows(
            through_orgs,
            [
                {"id": n + 1, "from_organisation_id": r, "to_organisation_id": d}
                for n, (r, d) in enumerate(sorted(links))
            ],
        )
        copy_rows(Membership, memberships)
        for start in range(0, len(sales), 100_000):
            copy_rows(Sale, sales[start : start + 100_000])
        copy_rows(CertificationHolding, holdings)
        copy_rows(SatisfactionScore, scores)
        _setval(User, through_groups, Region, Organisation, through_orgs, Membership, Sale)
        _setval(CertificationHolding, SatisfactionScore)
    copy_seconds = time.perf_counter() - c0
    v0 = time.perf_counter()
    with connection.cursor() as cursor:
        for model in (User, Organisation, Membership, Sale, CertificationHolding, SatisfactionScore):
            cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")
    vacuum_seconds = time.perf_counter() - v0
    # the marker last: its presence means a complete load
    Region.objects.create(
        name=f"Measure marker: tiers dealers={args.dealers} seed={args.seed} max_sales={args.max_sales} day={day}",
        code=MARKER_CODE,
    )
    print(
        f"loaded in {time.perf_counter() - started:.1f} s (COPY {copy_seconds:.1f} s, "
        f"VACUUM ANALYZE {vacuum_seconds:.1f} s); day D = {day}",
        flush=True,
    )


# --- measuring ----------------------------------------------------------------------------------------

TABLE_RE = re.compile(r'\b(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', re.I)


class SQLCounter:
    """connection.execute_wrapper: counts and times every statement, by verb and first table.
    (CaptureQueriesContext keeps at most 9,000 queries, fewer than a first run makes.)"""

    def __init__(self):
        self.count = 0
        self.seconds = 0.0
        self.by_kind: Counter = Counter()
        self.time_by_kind: dict[str, float] = defaultdict(float)
        self.statements: list[tuple[str, object]] = []
        self.keep = False

    def __call__(self, execute, sql, params, many, context):
        t0 = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            dt = time.perf_counter() - t0
            verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
            m = TABLE_RE.search(sql)
            key = f"{verb} {m[1] if m else ''}".strip()
            self.count += 1
            self.seconds += dt
            self.by_kind[key] += 1
            self.time_by_kind[key] += dt
            if self.keep:
                self.statements.append((sql, params))


class Timed:
    """Wraps a module attribute (a function) to count its calls and sum their time."""

    def __init__(self, module, name):
        self.module, self.name = module, name
        self.original = getattr(module, name)
        self.calls = 0
        self.seconds = 0.0

        def wrapper(*a, **kw):
            t0 = time.perf_counter()
            try:
                return self.original(*a, **kw)
            finally:
                self.calls += 1
                self.seconds += time.perf_counter() - t0

        setattr(module, name, wrapper)

    def reset(self):
        self.calls, self.seconds = 0, 0.0


class GCTime:
    """gc.callbacks: the time spent in the cyclic garbage collector (it grows with the live heap)."""

    def __init__(self):
        import gc

        self.seconds, self.collections, self._t0 = 0.0, Counter(), None
        gc.callbacks.append(self)

    def __call__(self, phase, info):
        if phase == "start":
            self._t0 = time.perf_counter()
        elif self._t0 is not None:
            self.seconds += time.perf_counter() - self._t0
            self.collections[info["generation"]] += 1
            self._t0 = None

    def reset(self):
        self.seconds, self.collections = 0.0, Counter()


GC = GCTime()


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def reset_state() -> None:
    from django.db import connection

    from prm.models import OutboxEmail
    from tiers.models import DealerStanding, Evaluation, EvaluationRun, TierChange, TierProgramme

    tables = [m._meta.db_table for m in (Evaluation, EvaluationRun, TierChange, DealerStanding, OutboxEmail)]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY")
        for table in tables:
            cursor.execute(f"ANALYZE {table}")
    programme = TierProgramme.load()
    programme.mode = TierProgramme.Mode.ABSOLUTE
    programme.save()


def set_mode(mode: str) -> None:
    from tiers.models import TierProgramme

    programme = TierProgramme.load()
    programme.mode = mode
    programme.save(update_fields=["mode"])


def timed_run(label: str, day: date, hooks: dict) -> dict:
    import gc

    from django.db import connection
    from django.db.models import Max

    from prm.models import OutboxEmail
    from tiers import services
    from tiers.models import TierChange, TierProgramme

    mode = TierProgramme.load().mode
    emails_before = OutboxEmail.objects.count()
    changes_before = TierChange.objects.count()
    last_change = TierChange.objects.aggregate(m=Max("pk"))["m"] or 0
    for h in hooks.values():
        h.reset()
    counter = SQLCounter()
    gc.collect()
    GC.reset()
    rss_before = rss_mb()
    with connection.execute_wrapper(counter):
        t0 = time.perf_counter()
        result = services.tiers_recompute(day=day)
        wall = time.perf_counter() - t0
    kinds = Counter(TierChange.objects.filter(pk__gt=last_change).values_list("kind", flat=True))
    row = {
        "label": label,
        "day": day,
        "mode": mode,
        "wall": wall,
        "queries": counter.count,
        "sql": counter.seconds,
        "changes": result.changes,
        "created": result.created,
        "changes_db": TierChange.objects.count() - changes_before,
        "emails": OutboxEmail.objects.count() - emails_before,
        "rss_before": rss_before,
        "rss": rss_mb(),
        "kinds": kinds,
        "by_kind": counter.by_kind,
        "time_by_kind": counter.time_by_kind,
        "criteria": hooks["criteria"].seconds,
        "notify": hooks["notify"].seconds,
        "enqueue": hooks["enqueue"].seconds,
        "enqueue_calls": hooks["enqueue"].calls,
        "kick": hooks["kick"].seconds,
        "kicks": hooks["kick"].calls,
        "gc": GC.seconds,
        "gc_full": GC.collections[2],
    }
    print_run(row)
    return row


def print_run(row: dict) -> None:
    print(
        f"\n{row['label']}: day {row['day']} ({row['mode']}): {row['wall']:.2f} s wall, "
        f"{row['queries']:,} SQL statements ({row['sql']:.2f} s in the database driver), "
        f"{row['changes']:,} tier changes, {row['emails']:,} outbox emails, peak RSS {row['rss']:.0f} MB"
        + ("" if row["created"] else "  [run existed: nothing done]")
    )
    if row["kinds"]:
        print("    changes: " + ", ".join(f"{k} {n:,}" for k, n in sorted(row["kinds"].items())))
    if row["created"]:
        sql_outbox = row["time_by_kind"].get("INSERT prm_outboxemail", 0.0)
        print(
            f"    criteria_as_of {row['criteria']:.2f} s; _notify {row['notify']:.2f} s, of which "
            f"outbox_enqueue x{row['enqueue_calls']:,} {row['enqueue']:.2f} s (its INSERTs {sql_outbox:.2f} s, "
            f"template rendering etc. {row['enqueue'] - sql_outbox:.2f} s); on-commit kicks x{row['kicks']:,} "
            f"{row['kick']:.2f} s (memory broker); cyclic GC {row['gc']:.2f} s ({row['gc_full']} full collections)"
        )
        top = sorted(row["time_by_kind"].items(), key=lambda kv: -kv[1])[:7]
        print("    SQL by statement: " + "; ".join(f"{k} x{row['by_kind'][k]:,} {t:.2f} s" for k, t in top))


REFERENCE_SQL = """
SELECT o.id, s.revenue, s.previous, s.compliant, c.n, sc.avg
FROM dealers_organisation o
LEFT JOIN (
    SELECT reseller_id,
           SUM(amount) FILTER (WHERE sold_on > %(y1)s) AS revenue,
           SUM(amount) FILTER (WHERE sold_on <= %(y1)s) AS previous,
           SUM(amount) FILTER (WHERE sold_on > %(y1)s AND registered_before_sale) AS compliant
    FROM tiers_sale
    WHERE sold_on > %(y2)s AND sold_on <= %(day)s
    GROUP BY reseller_id
) s ON s.reseller_id = o.id
LEFT JOIN (
    SELECT organisation_id, COUNT(DISTINCT certification_id) AS n
    FROM tiers_certificationholding
    WHERE valid_until >= %(day)s
    GROUP BY organisation_id
) c ON c.organisation_id = o.id
LEFT JOIN (
    SELECT organisation_id, ROUND(AVG(score), 2) AS avg
    FROM tiers_satisfactionscore
    WHERE recorded_on > %(y1)s AND recorded_on <= %(day)s
    GROUP BY organisation_id
) sc ON sc.organisation_id = o.id
WHERE o.kind = 'reseller' AND o.status <> 'terminated'
"""


def reference_params(day: date) -> dict:
    from tiers.services import YEAR

    return {"day": day, "y1": day - YEAR, "y2": day - 2 * YEAR}


def measure_reference(day: date, repeat: int = 5) -> dict:
    from django.db import connection

    from tiers.services import Raw, criteria_as_of, evaluated_organisations

    times, rows = [], []
    with connection.cursor() as cursor:
        for _ in range(repeat):
            t0 = time.perf_counter()
            cursor.execute(REFERENCE_SQL, reference_params(day))
            rows = cursor.fetchall()
            times.append(time.perf_counter() - t0)
    # the same criteria through the application, for the check and for its time alone
    ctimes = []
    for _ in range(3):
        t0 = time.perf_counter()
        raws = criteria_as_of(day)
        ctimes.append(time.perf_counter() - t0)
    evaluated = set(evaluated_organisations().values_list("pk", flat=True))
    zero = Decimal("0")
    mismatches = []
    for pk, revenue, previous, compliant, n, avg in rows:
        raw = raws.get(pk, Raw())
        mine = (revenue or zero, previous or zero, compliant or zero, n or 0, avg)
        theirs = (raw.revenue, raw.revenue_previous, raw.compliant_revenue, raw.certifications, raw.satisfaction)
        if mine != theirs:
            mismatches.append((pk, mine, theirs))
    return {
        "seconds": statistics.median(times),
        "rows": len(rows),
        "evaluated": len(evaluated),
        "criteria_seconds": statistics.median(ctimes),
        "mismatches": mismatches,
    }


@contextmanager
def rolled_back():
    from django.db import transaction

    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def _wipe_in_transaction() -> None:
    from prm.models import OutboxEmail
    from tiers.models import DealerStanding, Evaluation, EvaluationRun, TierChange

    for model in (Evaluation, EvaluationRun, TierChange, DealerStanding, OutboxEmail):
        model.objects.all()._raw_delete(model.objects.db)


def heap_peaks(day: date, *, trace: bool, profile: bool) -> dict:
    """tracemalloc peak (and optionally a cProfile) of a first run and a steady-state run, each in a
    transaction rolled back afterwards (so their on-commit kicks never happen)."""
    import cProfile
    import gc
    import pstats
    import tracemalloc

    from tiers import services
    from tiers.models import TierProgramme

    @contextmanager
    def prepared(days):
        with rolled_back():
            _wipe_in_transaction()
            set_mode(TierProgramme.Mode.ABSOLUTE)
            for d in days[:-1]:
                services.tiers_recompute(day=d)
            gc.collect()
            yield

    out = {}
    for label, days in (("first run", [day]), ("steady run", [day, day + timedelta(days=1)])):
        if trace:
            with prepared(days):
                tracemalloc.start()
                t0 = time.perf_counter()
                services.tiers_recompute(day=days[-1])
                traced_wall = time.perf_counter() - t0
                _current, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
            out[label] = {"peak": peak / 2**20, "wall": traced_wall}
            print(
                f"tracemalloc: {label} (day {days[-1]}): Python heap peak {peak / 2**20:.1f} MB "
                f"(traced run {traced_wall:.1f} s)"
            )
        if profile:
            with prepared(days):
                profiler = cProfile.Profile()
                profiler.enable()
                services.tiers_recompute(day=days[-1])
                profiler.disable()
            print(f"\n--- cProfile of a {label} (day {days[-1]}), top 22 by cumulative time")
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(22)
            print("--- the same, top 15 by own time")
            stats.sort_stats("tottime").print_stats(15)
    return out


def explain_criteria(day: date) -> None:
    from django.db import connection

    from tiers.services import criteria_as_of

    counter = SQLCounter()
    counter.keep = True
    with connection.execute_wrapper(counter):
        criteria_as_of(day)
    with connection.cursor() as cursor:
        for sql, params in counter.statements:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
            print("\n--- EXPLAIN (ANALYZE, BUFFERS) " + sql[:300] + ("…" if len(sql) > 300 else ""))
            print("\n".join(r[0] for r in cursor.fetchall()))
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + REFERENCE_SQL, reference_params(day))
        print("\n--- EXPLAIN (ANALYZE, BUFFERS) of the reference statement")
        print("\n".join(r[0] for r in cursor.fetchall()))


def describe_data(day: date) -> None:
    from django.db.models import Count, Sum

    from dealers.models import Organisation
    from tiers.models import CertificationHolding, Sale, SatisfactionScore

    orgs = dict(Organisation.objects.values_list("kind").annotate(n=Count("pk")).values_list("kind", "n"))
    statuses = dict(
        Organisation.objects.filter(kind="reseller")
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    per_dealer = sorted(
        Sale.objects.values("reseller_id").annotate(n=Count("pk")).values_list("n", flat=True), reverse=True
    )
    revenue = sorted(
        (
            r or 0
            for r in Sale.objects.filter(sold_on__gt=day - timedelta(days=365), sold_on__lte=day)
            .values("reseller_id")
            .annotate(r=Sum("amount"))
            .values_list("r", flat=True)
        ),
        reverse=True,
    )
    sales = Sale.objects.count()
    registered = Sale.objects.filter(registered_before_sale=True).count()
    via = Sale.objects.filter(distributor__isnull=False).count()
    holdings = CertificationHolding.objects.count()
    expired = CertificationHolding.objects.filter(valid_until__lt=day).count()
    status_text = ", ".join(f"{k} {v:,}" for k, v in sorted(statuses.items()))
    print(
        f"\ndata: {orgs.get('reseller', 0):,} resellers ({status_text}), {orgs.get('distributor', 0):,} distributors; "
        f"{sales:,} sales ({registered / max(1, sales):.0%} registered before the sale, "
        f"{via / max(1, sales):.0%} via a distributor); resellers with sales {len(per_dealer):,} "
        f"(sales per dealer: median {statistics.median(per_dealer or [0]):.0f}, max {max(per_dealer or [0])}); "
        f"12-month revenue per dealer: median EUR {statistics.median(revenue or [0]):,.0f}, "
        f"p90 {revenue[len(revenue) // 10] if revenue else 0:,.0f}, max {revenue[0] if revenue else 0:,.0f}; "
        f"{holdings:,} certification holdings ({expired / max(1, holdings):.0%} expired on D); "
        f"{SatisfactionScore.objects.count():,} satisfaction scores"
    )


def tier_spread() -> str:
    from django.db.models import Count

    from tiers.models import DealerStanding

    rows = DealerStanding.objects.values_list("tier__name").annotate(n=Count("pk")).order_by("tier__rank")
    grace = DealerStanding.objects.filter(grace_started_on__isnull=False).count()
    return ", ".join(f"{name} {n:,}" for name, n in rows.values_list("tier__name", "n")) + f"; in grace {grace:,}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dealers", type=int, default=10_000, help="resellers (plus ~2 %% distributors)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-sales", type=int, default=40, help="sales lines per dealer over two years, at most")
    parser.add_argument("--day", help="day D (YYYY-MM-DD) of the first run; default: the day of the load")
    parser.add_argument("--reload", action="store_true", help="load again even if an equal load exists")
    parser.add_argument("--force", action="store_true", help="truncate even in a database not named *measure*")
    parser.add_argument("--no-distribution", action="store_true", help="skip the runs in distribution mode")
    parser.add_argument("--no-tracemalloc", action="store_true", help="skip the Python heap peaks")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of a first and a steady run")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the criteria queries")
    parser.add_argument("--load-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    db_name = ensure_database()
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    if not args.load_only:
        call_command("migrate", interactive=False, verbosity=0)
    settings.DEBUG = False  # no query log (it would grow the memory measured); the wrapper counts

    if args.load_only:
        load(args, db_name)
        return

    day = None if args.reload else existing_load(args)
    if day:
        print(
            f"reusing the existing load (dealers={args.dealers} seed={args.seed} max_sales={args.max_sales}, D={day})"
        )
    else:
        connection.close()
        t0 = time.perf_counter()
        child = [a for a in sys.argv[1:] if a != "--reload"] + ["--load-only"]
        subprocess.run([sys.executable, str(Path(__file__).resolve()), *child], check=True)
        print(f"load (child process): {time.perf_counter() - t0:.1f} s")
        day = existing_load(args)
        if day is None:
            sys.exit("the load did not finish")
    describe_data(day)

    from prm import outbox
    from tiers import services

    hooks = {
        "criteria": Timed(services, "_evaluated_criteria"),  # the run's one criteria statement
        "notify": Timed(services, "_notify"),
        "enqueue": Timed(services, "outbox_enqueue_many"),
        "kick": Timed(outbox, "_kick_flush"),
    }
    reset_state()
    # warm up the templates and the Celery producer (not measured)
    from django.template.loader import get_template

    get_template("emails/tier_change_subject.txt"), get_template("emails/tier_change_body.txt")
    # The in-memory broker would keep every message in this process (tens of MB after a first run,
    # and more work for the garbage collector in the runs after it): drop them once published.
    from kombu.transport import memory

    memory.Channel._put = lambda self, queue, message, **kwargs: None
    outbox._kick_flush(0)  # the Celery producer (a flush of nothing, to the in-memory broker)
    print(
        f"\nmeasuring; process peak RSS before the runs: {rss_mb():.0f} MB; load average "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
        + f" on {os.cpu_count()} CPUs (other work on the machine and the database skews the times)"
    )

    runs = []
    D1, D2, D3 = (day + timedelta(days=k) for k in (1, 2, 3))
    runs.append(timed_run("A1 first run", day, hooks))
    print(f"    tiers after A1: {tier_spread()}")
    runs.append(timed_run("A2 steady (next night)", D1, hooks))
    runs.append(timed_run("A3 same day again", D1, hooks))
    if not args.no_distribution:
        set_mode("distribution")
        runs.append(timed_run("B1 mode switched", D2, hooks))
        print(f"    tiers after B1: {tier_spread()}")
        runs.append(timed_run("B2 steady (distribution)", D3, hooks))
        runs.append(timed_run("B3 same day again", D3, hooks))
        set_mode("absolute")

    ref = {d: measure_reference(d) for d in sorted({day, D1} | {r["day"] for r in runs})}
    for d, r in ref.items():
        bad = r["mismatches"]
        agrees = "yes" if not bad else f"NO, {len(bad)} differ, e.g. {bad[:2]}"
        print(
            f"\nreference statement for {d}: {r['seconds'] * 1000:.0f} ms (median of 5; {r['rows']:,} rows for "
            f"{r['evaluated']:,} evaluated dealers); criteria_as_of alone: {r['criteria_seconds'] * 1000:.0f} ms; "
            f"agrees with criteria_as_of: {agrees}"
        )

    heaps = {}
    if not args.no_tracemalloc or args.profile:
        print()
        heaps = heap_peaks(day, trace=not args.no_tracemalloc, profile=args.profile)
    if args.explain:
        explain_criteria(day)

    # --- the table -----------------------------------------------------------------------------
    print(
        f"\nN = {args.dealers:,} dealers, seed {args.seed}, D = {day}; load average now "
        + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    header = (
        f"{'run':26s} {'day':>10s} {'mode':>12s} {'wall s':>8s} {'queries':>8s} {'SQL s':>7s} {'changes':>8s} "
        f"{'emails':>7s} {'notify s':>8s} {'kicks s':>7s} {'RSS MB':>7s} {'heap MB':>8s} {'x ref':>8s}"
    )
    print(header)
    print("-" * len(header))
    for r in runs:
        heap = ""
        if r["label"].startswith("A1") and "first run" in heaps:
            heap = f"{heaps['first run']['peak']:.1f}"
        elif r["label"].startswith("A2") and "steady run" in heaps:
            heap = f"{heaps['steady run']['peak']:.1f}"
        ref_s = ref[r["day"]]["seconds"]
        print(
            f"{r['label']:26s} {r['day'].isoformat():>10s} {r['mode']:>12s} {r['wall']:8.2f} {r['queries']:8,d} "
            f"{r['sql']:7.2f} {r['changes']:8,d} {r['emails']:7,d} {r['notify']:8.2f} {r['kick']:7.2f} "
            f"{r['rss']:7.0f} {heap:>8s} "
            f"{r['wall'] / ref_s:8.1f}"
        )
    for d in (day, D1):
        print(
            f"{'reference SQL':26s} {d.isoformat():>10s} {'':>12s} {ref[d]['seconds']:8.3f} {1:8,d} "
            f"{'':>7s} {'':>8s} {'':>7s} {'':>8s} {'':>7s} {'':>7s} {'':>8s} {1:8.1f}"
        )
        print(
            f"{'criteria_as_of only':26s} {d.isoformat():>10s} {'':>12s} {ref[d]['criteria_seconds']:8.3f} "
            f"{3:8,d} {'':>7s} {'':>8s} {'':>7s} {'':>8s} {'':>7s} {'':>7s} {'':>8s} "
            f"{ref[d]['criteria_seconds'] / ref[d]['seconds']:8.1f}"
        )
    print(
        "SQL s: time in the database driver. notify s: tiers.services._notify (rendering and INSERTing the outbox "
        "emails). kicks s: the on-commit Celery publish per email (in-memory broker), part of wall s.\n"
        "RSS MB: the process's peak resident size after the run (ru_maxrss, monotonic; the load ran in a child "
        "process). heap MB: tracemalloc peak of the same kind of run, rolled back. x ref: wall / reference SQL."
    )


if __name__ == "__main__":
    main()
