#!/usr/bin/env python
"""Measure one channel-conflict check against a large customer table on PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/prm_measure DJANGO_DEBUG=1 \
        .venv/bin/python tools/measure_conflict_check.py --customers 200000

What it does (standalone; it changes no application code):

1. creates the database if it does not exist and migrates it;
2. bulk-loads (COPY) --customers customers spread over --orgs dealer organisations, with Dutch,
   Belgian and German business names, ~30 % with a VAT number, ~20 % with a website, the matching
   keys from deals.conflicts.customer_keys, and one active registration (approved/submitted) with one
   line per customer; then VACUUM ANALYZE (which also flushes the GIN pending list). A load made with
   the same --customers/--seed is reused; anything else in the database is truncated first (only
   in a database whose name contains "measure", unless --force);
3. times, over --probes varied probes (existing names with typos, legal-form/word-order variants,
   new names, VAT hits):
   (a) the candidate search alone: deals.conflicts._plausible_candidates(customer) (the similar
       names of the active registrations, matching.names_may_match on them, and the plausible
       customers and key hits loaded);
   (b) a whole deals.conflicts.conflicts_detect(registration) for a probe registration created
       in a transaction that is rolled back afterwards;
4. prints EXPLAIN (ANALYZE, BUFFERS) of the similar-names query, and candidate queries in other shapes;
5. times the naive reference: deals.matching.match against a 10,000-row sample in Python,
   extrapolated to N.

Everything random comes from --seed (timestamps are relative to the time of the load).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/prm_bench DJANGO_DEBUG=1 \
        .venv/bin/python tools/measure_conflict_check.py --recall-only

reads only: the recall check of the trigram threshold (threshold_recall) on the customers already
in the database (the benchmark's, say), for --seed and --seed + 1.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "prm.settings")

from prm.scaledata import (  # noqa: E402  (the project root on sys.path first)
    BRAND_HEADS,
    BRAND_TAILS,
    FAMILIES,
    INITIALS,
    PLACES,
    _pick,
    business_name,
    copy_rows,
    ensure_database,
    postcode,
    typo,
    variant,
    vat_number,
    website,
)

# --- word lists, names and their variants: prm.scaledata --------------------------------------------

COUNTRY_WEIGHTS = (("NL", 0.5), ("BE", 0.25), ("DE", 0.25))
ACTIVE_MIX = (("approved", 0.7), ("submitted", 0.3))


def _country(rng: random.Random) -> str:
    x = rng.random()
    for code, weight in COUNTRY_WEIGHTS:
        if x < weight:
            return code
        x -= weight
    return "NL"


# --- helpers -----------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(label: str, ms: list[float]) -> str:
    return (
        f"{label}: p50 {percentile(ms, 50):.1f} ms, p95 {percentile(ms, 95):.1f} ms, "
        f"max {max(ms):.1f} ms, mean {statistics.fmean(ms):.1f} ms (n={len(ms)})"
    )


# --- database ---------------------------------------------------------------------------------------


MARKER_CODE = "measure"


def load(args, db_name: str) -> float | None:
    """Load the data set; returns the load time in seconds, or None if an equal load was reused."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from dealers.models import Organisation, Region
    from deals.conflicts import customer_keys
    from deals.models import Customer, Product, ProductLine, ProgrammeSettings, Registration, RegistrationLine

    marker = f"Measure load n={args.customers} seed={args.seed} orgs={args.orgs}"
    region = Region.objects.filter(code=MARKER_CODE).first()
    if region and region.name == marker and Customer.objects.count() == args.customers and not args.reload:
        print(f"reusing the existing load ({marker})")
        return None
    if Customer.objects.exists() or Organisation.objects.exists():
        if "measure" not in db_name and not args.force:
            sys.exit(f"Database {db_name} holds data; refusing to truncate it (name lacks 'measure'; --force).")
        print("truncating the earlier data")
        tables = [m._meta.db_table for m in (Customer, Registration, Organisation, Region, ProductLine)]
        with connection.cursor() as cursor:
            cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        get_user_model().objects.filter(email__endswith="@measure.invalid").delete()

    started = time.perf_counter()
    rng = random.Random(args.seed)
    now = timezone.now()
    ProgrammeSettings.load()
    User = get_user_model()
    user = User.objects.create(email="dealer@measure.invalid", first_name="Measure", password="!")
    region = Region.objects.create(name=marker, code=MARKER_CODE)
    line = ProductLine.objects.create(name="Measure line", code="measure-line")
    products = Product.objects.bulk_create(
        Product(line=line, sku=f"MEAS-{i:03d}", name=f"Measure product {i}", list_price=Decimal("1000.00") * (i + 1))
        for i in range(5)
    )
    orgs = Organisation.objects.bulk_create(
        [
            Organisation(
                name=f"Dealer {i:04d} {_pick(rng, BRAND_HEADS)}{_pick(rng, BRAND_TAILS)}",
                region=region,
                status=Organisation.Status.ACTIVE,
                city=_pick(rng, PLACES[c]),
                country=c,
            )
            for i, c in enumerate(_country(rng) for _ in range(args.orgs))
        ],
        batch_size=1000,
    )
    # dealer sizes: a long tail (a few large dealers hold many customers)
    org_weights = [1.0 / (1 + i) ** 0.7 for i in range(len(orgs))]
    rng.shuffle(org_weights)
    cumulative, total = [], 0.0
    for w in org_weights:
        total += w
        cumulative.append(total)
    print(f"  {len(orgs)} organisations, {len(products)} products ({time.perf_counter() - started:.1f} s)")

    with connection.cursor() as cursor:
        cursor.execute("SELECT COALESCE(MAX(id), 0) FROM deals_customer")
        first_id = cursor.fetchone()[0] + 1
        cursor.execute("SET maintenance_work_mem = '256MB'")
    chunk = 50_000
    recent: list[dict] = []
    keys_seconds = 0.0
    copy_seconds = 0.0
    for start in range(0, args.customers, chunk):
        customers, registrations, lines = [], [], []
        for n in range(start, min(start + chunk, args.customers)):
            org = orgs[_bisect(cumulative, rng.random() * total)]
            country = org.country if rng.random() < 0.9 else _country(rng)
            city = _pick(rng, PLACES[country])
            if recent and rng.random() < 0.03:
                # the same business known to another dealer: a variant of an earlier record
                earlier = _pick(rng, recent)
                country, city = earlier["country"], earlier["city"]
                name = variant(rng, earlier["name"], country) if rng.random() < 0.6 else typo(rng, earlier["name"])
            else:
                name = business_name(rng, country)
            vat, company = vat_number(rng, country) if rng.random() < 0.30 else ("", "")
            site = website(rng, name, country, city) if rng.random() < 0.20 else ""
            row = {
                "id": first_id + n,
                "organisation_id": org.pk,
                "name": name[:200],
                "city": city,
                "postcode": postcode(rng, country),
                "country": country,
                "website": site,
                "vat_number": vat.strip()[:20],
                "company_number": company,
                "created_at": now - timedelta(days=rng.randint(0, 700)),
            }
            k0 = time.perf_counter()
            row.update(customer_keys(SimpleNamespace(**row)))
            keys_seconds += time.perf_counter() - k0
            customers.append(row)
            if len(recent) < 5000:
                recent.append(row)
            elif rng.random() < 0.05:
                recent[int(rng.random() * len(recent))] = row
            status = "approved" if rng.random() < ACTIVE_MIX[0][1] else "submitted"
            submitted = now - timedelta(
                days=rng.randint(0 if status == "submitted" else 3, 2 if status == "submitted" else 80),
                minutes=rng.randint(0, 1440),
            )
            product = _pick(rng, products)
            quantity = rng.randint(1, 20)
            value = product.list_price * quantity
            reg = {
                "id": first_id + n,
                "reference": f"REG-M-{first_id + n:08d}",
                "organisation_id": org.pk,
                "registered_by_id": user.pk,
                "customer_id": first_id + n,
                "contact_name": f"{_pick(rng, INITIALS)}. {_pick(rng, FAMILIES[country])}",
                "contact_email": f"contact{n}@example.invalid",
                "expected_value": value,
                "expected_close_date": (now + timedelta(days=rng.randint(10, 200))).date(),
                "status": status,
                "status_changed_at": submitted,
                "first_submitted_at": submitted,
                "review_started_at": submitted,
                "review_remind_at": submitted + timedelta(days=1),
                "review_due_at": submitted + timedelta(days=2),
                "last_activity_at": submitted,
            }
            if status == "approved":
                reg.update(
                    decided_at=submitted + timedelta(hours=rng.randint(1, 40)),
                    decided_in_time=True,
                    protected_until=(submitted + timedelta(days=90)).date(),
                    margin_percent=Decimal("15.00"),
                    status_changed_at=submitted + timedelta(hours=5),
                )
            registrations.append(reg)
            lines.append(
                {
                    "id": first_id + n,
                    "registration_id": first_id + n,
                    "product_id": product.pk,
                    "quantity": quantity,
                    "value": value,
                }
            )
        c0 = time.perf_counter()
        with transaction.atomic():
            copy_rows(Customer, customers)
            copy_rows(Registration, registrations)
            copy_rows(RegistrationLine, lines)
        copy_seconds += time.perf_counter() - c0
        done = start + len(customers)
        print(f"  {done:>9,} customers ({time.perf_counter() - started:.0f} s)", flush=True)
    with connection.cursor() as cursor:
        for model in (Customer, Registration, RegistrationLine):
            table = model._meta.db_table
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))")
    v0 = time.perf_counter()
    with connection.cursor() as cursor:
        for model in (Customer, Registration, RegistrationLine, Organisation):
            cursor.execute(f"VACUUM (ANALYZE) {model._meta.db_table}")
    vacuum_seconds = time.perf_counter() - v0
    elapsed = time.perf_counter() - started
    print(
        f"loaded {args.customers:,} customers/registrations/lines in {elapsed:.1f} s "
        f"(keys in Python {keys_seconds:.1f} s, COPY {copy_seconds:.1f} s, VACUUM ANALYZE {vacuum_seconds:.1f} s)"
    )
    return elapsed


def _bisect(cumulative: list[float], x: float) -> int:
    import bisect

    return min(bisect.bisect_left(cumulative, x), len(cumulative) - 1)


# --- measuring ------------------------------------------------------------------------------------


def make_probes(args) -> list[dict]:
    from dealers.models import Organisation
    from deals.models import Customer

    rng = random.Random(args.seed + 1)
    ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True)[:: max(1, args.customers // 20000)])
    orgs = list(Organisation.objects.values_list("pk", "country"))
    share = {"typo": 0.35, "variant": 0.20, "new": 0.30, "vat": 0.15}
    kinds = [k for k, f in share.items() for _ in range(round(f * args.probes))]
    kinds = (kinds + ["new"] * args.probes)[: args.probes]
    rng.shuffle(kinds)
    targets = {c.pk: c for c in Customer.objects.filter(pk__in=rng.sample(ids, min(len(ids), args.probes * 2)))}
    target_list = [targets[k] for k in sorted(targets)]
    rng.shuffle(target_list)
    vat_targets = list(
        Customer.objects.exclude(vat_key="").filter(pk__in=rng.sample(ids, min(len(ids), args.probes * 4)))
    )
    probes = []
    for i in range(args.probes):
        kind = kinds[i]
        org_pk, org_country = _pick(rng, orgs)
        if kind == "new":
            country = org_country
            name = business_name(rng, country)
            probe = {
                "name": name,
                "city": _pick(rng, PLACES[country]),
                "postcode": postcode(rng, country),
                "country": country,
            }
            if rng.random() < 0.3:
                probe["vat_number"], probe["company_number"] = vat_number(rng, country)
            if rng.random() < 0.2:
                probe["website"] = website(rng, name, country, probe["city"])
            target = None
        elif kind == "vat":
            target = _pick(rng, vat_targets)
            vat = target.vat_number
            vat = rng.choice([vat, vat.lower(), " ".join([vat[:2], vat[2:6], vat[6:]])])
            name = business_name(rng, target.country) if rng.random() < 0.5 else typo(rng, target.name)
            probe = {
                "name": name,
                "city": target.city,
                "postcode": target.postcode,
                "country": target.country,
                "vat_number": vat,
            }
        else:
            target = target_list[i % len(target_list)]
            name = typo(rng, target.name) if kind == "typo" else variant(rng, target.name, target.country)
            probe = {
                "name": name,
                "city": target.city if rng.random() < 0.7 else _pick(rng, PLACES[target.country]),
                "postcode": target.postcode if rng.random() < 0.5 else postcode(rng, target.country),
                "country": target.country,
            }
            if target.website and rng.random() < 0.3:
                probe["website"] = target.website
        probe.update(kind=kind, organisation_id=org_pk, target=target.pk if target else None)
        probes.append(probe)
    return probes


def probe_customer(probe: dict):
    from deals.conflicts import customer_keys
    from deals.models import Customer

    customer = Customer(
        organisation_id=probe["organisation_id"],
        name=probe["name"],
        city=probe["city"],
        postcode=probe["postcode"],
        country=probe["country"],
        website=probe.get("website", ""),
        vat_number=probe.get("vat_number", ""),
        company_number=probe.get("company_number", ""),
    )
    for name, value in customer_keys(customer).items():
        setattr(customer, name, value)
    return customer


def set_threshold(threshold: float | None) -> None:
    """The conflict check's trigram threshold for a what-if run (None: back to the application's).
    It sets pg_trgm.similarity_threshold for its own statement, so the module constant is changed."""
    from deals import conflicts

    if not hasattr(conflicts, "_APPLICATION_THRESHOLD"):
        conflicts._APPLICATION_THRESHOLD = conflicts.TRIGRAM_THRESHOLD
    conflicts.TRIGRAM_THRESHOLD = conflicts._APPLICATION_THRESHOLD if threshold is None else threshold


def measure_candidates(probes: list[dict]) -> dict:
    from django.db import connection, transaction

    from deals import matching
    from deals.conflicts import _plausible_candidates, _similar_names

    for probe in probes[:20]:  # warm-up (caches), not counted
        with transaction.atomic():
            _plausible_candidates(probe_customer(probe))
    times, counts, matches, per_kind, match_ms = [], [], [], {}, []
    thresholds = (0.3, 0.4, 0.5, 0.6)
    kept = {t: 0 for t in thresholds}
    lost = {t: [] for t in thresholds}
    found_targets = 0
    for probe in probes:
        customer = probe_customer(probe)
        with transaction.atomic():
            t0 = time.perf_counter()
            candidates = _plausible_candidates(customer)
            ms = (time.perf_counter() - t0) * 1000
            similar = _similar_names(customer) if customer.name_key else []  # untimed: every trigram hit
        times.append(ms)
        counts.append(len(similar))
        per_kind.setdefault(probe["kind"], []).append((ms, len(similar)))
        # untimed: which candidates deals.matching accepts, and how similar their name keys are
        record = customer.as_match_record()
        t0 = time.perf_counter()
        same = [c for c in candidates if matching.match(record, c.as_match_record()).is_same_customer]
        match_ms.append((time.perf_counter() - t0) * 1000)
        matches.append(len(same))
        if probe["target"] and any(c.pk == probe["target"] for c in candidates):
            found_targets += 1
        keys = [c.name_key for c in same] + [key for _, key in similar]
        sims = []
        if keys and customer.name_key:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT similarity(k, %s) FROM unnest(%s::text[]) WITH ORDINALITY AS t(k, n) ORDER BY n",
                    [customer.name_key, keys],
                )
                sims = [row[0] for row in cursor.fetchall()]
        same_sims, similar_sims = sims[: len(same)], sims[len(same) :]
        by_key = {
            c.pk
            for c in candidates
            if any(
                getattr(customer, k) and getattr(customer, k) == getattr(c, k)
                for k in ("vat_key", "register_key", "domain_key")
            )
        }
        for t in thresholds:
            kept[t] += len(by_key) + sum(1 for s in similar_sims if s >= t)
            lost[t] += [
                (customer.name_key, c.name_key, round(s, 2))
                for c, s in zip(same, same_sims, strict=True)
                if c.pk not in by_key and s < t
            ]
    return {
        "times": times,
        "match_ms": match_ms,
        "counts": counts,
        "matches": matches,
        "per_kind": per_kind,
        "kept": kept,
        "lost": lost,
        "found_targets": found_targets,
        "with_target": sum(1 for p in probes if p["target"]),
    }


def measure_full(probes: list[dict]) -> dict:
    from django.contrib.auth import get_user_model
    from django.db import connection, reset_queries, transaction
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from deals.conflicts import conflicts_detect, lock_country
    from deals.models import Product, Registration, RegistrationLine

    user = get_user_model().objects.get(email="dealer@measure.invalid")
    product = Product.objects.filter(sku__startswith="MEAS-").order_by("sku").first()
    times, queries, conflicts, flagged = [], [], [], 0

    def one(i: int, probe: dict, record: bool) -> None:
        nonlocal flagged
        with transaction.atomic():
            now = timezone.now()
            customer = probe_customer(probe)
            customer.save()
            registration = Registration.objects.create(
                reference=f"MEAS-PROBE-{i:05d}",
                organisation_id=probe["organisation_id"],
                registered_by=user,
                customer=customer,
                contact_name="Probe",
                contact_email="probe@example.invalid",
                expected_value=Decimal("2000.00"),
                expected_close_date=(now + timedelta(days=30)).date(),
                status=Registration.Status.SUBMITTED,
                status_changed_at=now,
                first_submitted_at=now,
                review_started_at=now,
                review_remind_at=now + timedelta(days=1),
                review_due_at=now + timedelta(days=2),
                last_activity_at=now,
            )
            RegistrationLine.objects.create(
                registration=registration, product=product, quantity=2, value=Decimal("2000.00")
            )
            lock_country(customer.country)
            reset_queries()  # the query log is a bounded deque: once full, CaptureQueriesContext counts 0
            with CaptureQueriesContext(connection) as captured:
                t0 = time.perf_counter()
                detection = conflicts_detect(registration)
                ms = (time.perf_counter() - t0) * 1000
            if record:
                times.append(ms)
                queries.append(len(captured.captured_queries))
                conflicts.append(len(detection.conflicts))
                flagged += detection.needs_review
            transaction.set_rollback(True)

    for i, probe in enumerate(probes[:20]):
        one(i, probe, record=False)  # warm-up
    for i, probe in enumerate(probes):
        one(i, probe, record=True)
    return {"times": times, "queries": queries, "conflicts": conflicts, "flagged": flagged}


def explain(probes: list[dict], times: list[float] | None = None) -> None:
    from django.db import connection, transaction

    from deals import conflicts

    def pick(pred):
        return next((p for p in probes if pred(p)), probes[0])

    def similar_names_plan(customer, *settings: str) -> str:
        """EXPLAIN of the conflict check's similar-names statement (the second of SIMILAR_NAMES_SQL)."""
        config, query = (part.strip() for part in conflicts.SIMILAR_NAMES_SQL.strip().split(";", 1))
        params = {
            "threshold": str(conflicts.TRIGRAM_THRESHOLD),
            "active": tuple(map(str, conflicts.ACTIVE)),
            "name": customer.name_key,
        }
        with transaction.atomic(), connection.cursor() as cursor:
            for setting in settings:
                cursor.execute(setting)
            cursor.execute(config, params)
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + query, params)
            return "\n".join(row[0] for row in cursor.fetchall())

    name_only = probe_customer(pick(lambda p: p["kind"] == "typo" and not p.get("website")))
    with_vat = probe_customer(pick(lambda p: p["kind"] == "vat"))
    for label, customer in (("typo probe, name only", name_only), ("VAT probe", with_vat)):
        print(f"\n--- EXPLAIN (ANALYZE, BUFFERS) similar names: {label}: {customer.name!r} -> {customer.name_key!r}")
        plan = similar_names_plan(customer)
        print(plan)
        print("uses registration_active_name_trgm:", "registration_active_name_trgm" in plan)

    if times:
        slowest = probe_customer(probes[max(range(len(times)), key=times.__getitem__)])
        print(f"\n--- EXPLAIN (ANALYZE, BUFFERS) of the slowest probe in (a): {slowest.name!r} -> {slowest.name_key!r}")
        print(similar_names_plan(slowest))
        print("\n--- the same with SET LOCAL random_page_cost = 1.1 (data in RAM/SSD)")
        print(similar_names_plan(slowest, "SET LOCAL random_page_cost = 1.1"))

    # other shapes of the same query, for comparison (raw SQL; the application is unchanged)
    c = with_vat
    if not c.vat_key:
        return
    active = "('submitted', 'info_requested', 'approved', 'escalated')"
    shapes = {
        "EXISTS instead of IN (same semantics)": f"""
            SELECT c.id FROM deals_customer c
            WHERE (c.vat_key = %(vat)s OR (c.country = %(country)s AND c.name_key %% %(key)s))
              AND EXISTS (SELECT 1 FROM deals_registration r WHERE r.customer_id = c.id AND r.status IN {active})
            ORDER BY c.name""",
        "UNION of one branch per index": f"""
            SELECT c.id FROM deals_customer c
            WHERE c.id IN (SELECT id FROM deals_customer WHERE vat_key = %(vat)s
                           UNION SELECT id FROM deals_customer WHERE country = %(country)s AND name_key %% %(key)s)
              AND EXISTS (SELECT 1 FROM deals_registration r WHERE r.customer_id = c.id AND r.status IN {active})
            ORDER BY c.name""",
    }
    with connection.cursor() as cursor:
        for label, sql in shapes.items():
            cursor.execute(
                "EXPLAIN (ANALYZE, BUFFERS) " + sql, {"vat": c.vat_key, "country": c.country, "key": c.name_key}
            )
            plan = "\n".join(r[0] for r in cursor.fetchall())
            print(f"\n--- alternative shape: {label}\n{plan}")


def threshold_recall(args) -> None:
    """How similar (pg_trgm similarity) are name pairs that deals.matching accepts on the name
    alone? Variants of sampled names: a typo, other spacing, another word order, another legal form.
    A candidate whose similarity is below pg_trgm.similarity_threshold is never found."""
    from django.db import connection

    from deals import matching
    from deals.models import Customer

    rng = random.Random(args.seed + 3)
    ids = list(Customer.objects.values_list("pk", flat=True))
    sample = list(Customer.objects.filter(pk__in=rng.sample(ids, min(3000, len(ids)))).only("name", "country"))
    pairs = []
    for c in sample:
        words = c.name.split()
        variants = {"typo": typo(rng, c.name), "form": variant(rng, c.name, c.country)}
        if len(words) >= 2:
            i = rng.randrange(len(words) - 1)
            j = min(len(words), i + rng.choice((2, 2, 3)))
            variants["spacing"] = " ".join(words[:i] + ["".join(words[i:j])] + words[j:])
            variants["order"] = " ".join(words[1:] + words[:1])
        for kind, name in variants.items():
            a, b = {"name": c.name, "country": c.country}, {"name": name, "country": c.country}
            x, y = matching.name_key(c.name), matching.name_key(name)
            if x != y and matching.match(a, b).is_same_customer:
                pairs.append((kind, x, y))
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT similarity(a, b) FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(a, b, n) ORDER BY n",
            [[p[1] for p in pairs], [p[2] for p in pairs]],
        )
        sims = [r[0] for r in cursor.fetchall()]
    print(f"\nrecall check: {len(pairs)} name pairs that deals.matching accepts (no keys), by pg_trgm similarity:")
    for kind in ("typo", "spacing", "order", "form"):
        values = [s for p, s in zip(pairs, sims, strict=True) if p[0] == kind]
        if not values:
            continue
        worst = min(zip(sims, pairs, strict=True), key=lambda t: t[0] if t[1][0] == kind else 9)
        print(
            f"    {kind:8s} n={len(values):5d} min {min(values):.2f}  <0.3 {sum(v < 0.3 for v in values):4d}  "
            f"<0.4 {sum(v < 0.4 for v in values):4d}  <0.5 {sum(v < 0.5 for v in values):4d}  "
            f"<0.6 {sum(v < 0.6 for v in values):4d}   worst {worst[1][1]!r} / {worst[1][2]!r}"
        )


def measure_naive(args, probes: list[dict]) -> dict:
    from deals import matching
    from deals.models import Customer

    rng = random.Random(args.seed + 2)
    ids = list(Customer.objects.values_list("pk", flat=True))
    sample = [c.as_match_record() for c in Customer.objects.filter(pk__in=rng.sample(ids, min(10_000, len(ids))))]
    per_probe = []
    for probe in probes[: args.naive_probes]:
        record = probe_customer(probe).as_match_record()
        t0 = time.perf_counter()
        for other in sample:
            matching.match(record, other)
        per_probe.append(time.perf_counter() - t0)
    mean = statistics.fmean(per_probe)
    return {
        "sample": len(sample),
        "probes": len(per_probe),
        "mean_s": mean,
        "extrapolated_s": mean * len(ids) / len(sample),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=200_000)
    parser.add_argument("--orgs", type=int, default=2000)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--naive-probes", type=int, default=10, help="probes timed against the 10,000-row sample")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--reload", action="store_true", help="load again even if an equal load exists")
    parser.add_argument("--force", action="store_true", help="truncate even in a database not named *measure*")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument(
        "--recall-only", action="store_true", help="only the recall check, reading the customers already there"
    )
    parser.add_argument(
        "--what-if-threshold",
        type=float,
        default=0.4,
        help="also time (a) and (b) with this trigram threshold (deals.conflicts.TRIGRAM_THRESHOLD; 0 to skip)",
    )
    args = parser.parse_args()

    if args.recall_only:
        import django

        django.setup()
        for seed in (args.seed, args.seed + 1):
            threshold_recall(argparse.Namespace(seed=seed))
        return

    db_name = ensure_database()
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    settings.DEBUG = False  # no query log while timing (CaptureQueriesContext still counts)

    load_seconds = load(args, db_name)
    probes = make_probes(args)
    kinds = {}
    for p in probes:
        kinds[p["kind"]] = kinds.get(p["kind"], 0) + 1
    print(f"\n{len(probes)} probes: {kinds}")

    cand = measure_candidates(probes)
    print("\n" + summary("(a) candidate query", cand["times"]))
    print(
        f"    similar names (trigram hits) per probe: mean {statistics.fmean(cand['counts']):.1f}, "
        f"median {percentile(cand['counts'], 50):.0f}, "
        f"p95 {percentile(cand['counts'], 95):.0f}, max {max(cand['counts'])}; same customer per deals.matching: "
        f"mean {statistics.fmean(cand['matches']):.2f}; "
        f"intended target among candidates {cand['found_targets']}/{cand['with_target']}"
    )
    for kind, rows in sorted(cand["per_kind"].items()):
        ms = [r[0] for r in rows]
        print(
            f"    {kind:8s} n={len(rows):3d} p50 {percentile(ms, 50):6.1f} ms  max {max(ms):6.1f} ms  "
            f"candidates mean {statistics.fmean(r[1] for r in rows):7.1f}"
        )
    print("    if pg_trgm.similarity_threshold were higher (key hits always kept):")
    for t, n in cand["kept"].items():
        lost = cand["lost"][t]
        print(
            f"      {t:.1f}: candidates mean {n / len(probes):7.1f}; name-only matches lost {len(lost)}"
            + (f" e.g. {lost[:3]}" if lost else "")
        )

    full = measure_full(probes)
    print("\n" + summary("(b) conflicts_detect", full["times"]))
    print(
        f"    queries per check: median {percentile(full['queries'], 50):.0f}, max {max(full['queries'])}; "
        f"conflict rows per check: mean {statistics.fmean(full['conflicts']):.2f}; "
        f"needs review {full['flagged']}/{len(probes)}"
    )
    print(
        "    "
        + summary("of which deals.matching.match over the candidates (Python, measured in (a))", cand["match_ms"])
    )

    if args.what_if_threshold:
        t = args.what_if_threshold
        set_threshold(t)
        try:
            cand_t = measure_candidates(probes)
            full_t = measure_full(probes)
        finally:
            set_threshold(None)
        print(f"\nwhat if the trigram threshold were {t} (deals.conflicts.TRIGRAM_THRESHOLD):")
        print("    " + summary("(a) candidate query", cand_t["times"]))
        print(
            f"    candidates per probe: mean {statistics.fmean(cand_t['counts']):.1f}; same customer mean "
            f"{statistics.fmean(cand_t['matches']):.2f}; "
            f"intended target found {cand_t['found_targets']}/{cand_t['with_target']}"
        )
        print("    " + summary("(b) conflicts_detect", full_t["times"]))
        print(
            f"    conflict rows per check: mean {statistics.fmean(full_t['conflicts']):.2f} (default: "
            f"{statistics.fmean(full['conflicts']):.2f}); needs review {full_t['flagged']}/{len(probes)}"
        )

    threshold_recall(args)

    explain(probes, cand["times"])

    if not args.skip_naive:
        naive = measure_naive(args, probes)
        n = args.customers
        print(
            f"\nnaive reference: deals.matching.match against {naive['sample']:,} rows in Python: "
            f"{naive['mean_s'] * 1000:.0f} ms per probe (mean of {naive['probes']}); extrapolated to {n:,}: "
            f"{naive['extrapolated_s']:.1f} s per check"
        )
    print(
        f"\nN = {args.customers:,}; load time: "
        + (f"{load_seconds:.1f} s" if load_seconds else "reused an earlier load")
    )


if __name__ == "__main__":
    main()
