"""The registration KPIs of the dashboards, counted from a nightly roll-up plus what it cannot know.

A channel admin's dashboard adds up a year of a million registrations; done live per request that
is seconds of work. So every night (after the protections expire, before the tiers are evaluated)
`rollup_build` writes one DealerMonth row per dealer, month and basis: the registrations counted
by their first submission, by their won date and by their decision. A dashboard then reads

- the roll-up rows of the whole months inside its period, for the dealers that did not change
  since the build, and
- live, from the registrations: the days of the period outside those whole months (a period runs
  from any date to any date), and every registration of a dealer that changed since the build.
  The days outside, of the dealers that did not change, are the same all day: they are counted
  once per build and period for every organisation and kept in the cache (_kept_edges; the
  nightly job keeps the default period's at once), as are the attention flags' programme-wide
  counts (submitted_by_dealer) and, per day, the forecast's totals and the forecast page's figures
  (forecast_totals, forecast_sums).

The two never overlap and together cover the period, so the figures are the same as counting
everything live: tests/test_rollup.py compares both on generated histories. What "changed" means:
a registration of the dealer was saved (every transition of deals.services saves its row), deleted
or expired by the nightly job (which writes its own change rows). Whoever changes a counted field
(TRACKED) past Registration.save() — an UPDATE through a queryset — must call `dealers_changed`.

Without any build yet (a new portal; the test suite) everything is counted live.

The medians (review working hours) cannot be added up from months. For whole regions (a regional
director's, a channel admin's dashboard) the hours of the period's decisions are kept per build
and period like the days outside (review_hours_medians); elsewhere they stay live, over the
decision timestamps of the period (indexed).

What is kept for a build lives in Django's cache (Redis in production, files under `make run`):
losing it costs the next request the counting, never a wrong figure.
"""

from __future__ import annotations

import hashlib
import time
from array import array
from bisect import bisect_left
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as clock
from decimal import ROUND_HALF_UP, Decimal

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.db.models.functions import Lower, TruncDate, TruncMonth
from django.utils import timezone

from dealers.models import Organisation, Region
from deals.models import Product, Registration
from tiers.models import DealerMonth, RegionMonth, RegionSaleMonth, RollupChange, RollupState, Sale, SaleMonth

Status = Registration.Status
ENDED_AFTER_APPROVAL = (Status.WON, Status.LOST, Status.EXPIRED)


class Basis:
    """The date a figure is counted by."""

    SUBMITTED = "submitted"  # the first submission
    WON = "won"  # the won date
    DECIDED = "decided"  # the review decision


# the fields a roll-up row is computed from: a save that writes none of them changes no figure
TRACKED = frozenset(
    {
        "organisation",
        "status",
        "first_submitted_at",
        "won_date",
        "won_value",
        "decided_at",
        "decided_in_time",
        "review_working_hours",  # kept per build for the medians (review_hours_medians)
        # kept per build and day for the forecast's totals (forecast_totals); its lines change only
        # with a save of the registration that writes expected_close_date (deals.services)
        "protected_until",
        "expected_close_date",
        "decision_stage",
        "expected_value",  # the open pipeline, kept per build and day (pipeline_figures)
    }
)


def cycle_time():
    """Days from the first submission (local date) to the won date, as a duration."""
    return ExpressionWrapper(F("won_date") - TruncDate("first_submitted_at"), output_field=DurationField())


# --- the build -------------------------------------------------------------------------------------


DEALER = ("organisation_id", "kind", "region_id", "partner_manager_id", "month")
DEALER_KEYS = {
    "kind": F("organisation__kind"),
    "region_id": F("organisation__region_id"),
    "partner_manager_id": F("organisation__partner_manager_id"),
}


def _basis_rows():
    """Per date: the grouped query over every registration, and the roll-up columns it fills."""
    registrations = Registration.objects.order_by().annotate(**DEALER_KEYS)
    cycle = cycle_time()
    return [
        registrations.annotate(month=TruncMonth(TruncDate("first_submitted_at")))
        .values(*DEALER)
        .annotate(
            submitted=Count("pk"),
            closed=Count("pk", filter=Q(status__in=ENDED_AFTER_APPROVAL)),
            won=Count("pk", filter=Q(status=Status.WON)),
        ),
        registrations.filter(status=Status.WON, won_date__isnull=False)
        .annotate(month=TruncMonth("won_date"))
        .values(*DEALER)
        .annotate(
            won_in=Count("pk"),
            won_value_sum=Sum("won_value"),
            won_value_count=Count("won_value"),
            cycle_sum=Sum(cycle),
            cycle_count=Count(cycle),
        ),
        registrations.filter(decided_at__isnull=False, decided_in_time__isnull=False)
        .annotate(month=TruncMonth(TruncDate("decided_at")))
        .values(*DEALER)
        .annotate(decided=Count("pk"), in_time=Count("pk", filter=Q(decided_in_time=True))),
    ]


def rollup_build() -> int:
    """Rebuild every DealerMonth row from the registrations, in one transaction (a dashboard sees
    the old roll-up or the new one, never half). Returns the number of rows.

    The change rows are deleted first, then the registrations are read: under READ COMMITTED a
    change committed before the delete is in the figures read after it, and one committed later
    keeps its change row (the delete never saw it), so its dealer is counted live until the next
    build. Never the other way round, which would lose a change for a day."""
    started = time.perf_counter()
    quote = connection.ops.quote_name
    table = quote(DealerMonth._meta.db_table)
    with transaction.atomic():
        RollupChange.objects.all().delete()
        for model in (DealerMonth, RegionMonth, SaleMonth, RegionSaleMonth):
            model.objects.all().delete()
        with connection.cursor() as cursor:
            # the three dates' grouped rows side by side (a date's missing columns: 0 or NULL),
            # added up per dealer and month in one INSERT … SELECT
            parts, params = [], []
            for queryset in _basis_rows():
                sql, part_params = queryset.query.sql_with_params()
                counted = set(queryset.query.annotation_select)
                values = [
                    f"{f'sub.{quote(c)}' if c in counted else ('NULL' if c in NULLABLE else '0')} AS {c}"
                    for c in ADDITIVE
                ]
                parts.append(f"SELECT {', '.join(f'sub.{c}' for c in DEALER)}, {', '.join(values)} FROM ({sql}) sub")
                params += part_params
            sums = ", ".join(f"SUM({c})" for c in ADDITIVE)
            cursor.execute(
                f"INSERT INTO {table} ({', '.join(DEALER)}, {', '.join(ADDITIVE)}) "
                f"SELECT {', '.join(DEALER)}, {sums} FROM ({' UNION ALL '.join(parts)}) dates "
                f"GROUP BY {', '.join(DEALER)}",
                params,
            )
            regions = quote(RegionMonth._meta.db_table)
            cursor.execute(
                f"INSERT INTO {regions} (region_id, partner_manager_id, month, {', '.join(ADDITIVE)}) "
                f"SELECT region_id, partner_manager_id, month, {', '.join(f'SUM({c})' for c in ADDITIVE)} "
                f"FROM {table} WHERE kind = %s GROUP BY region_id, partner_manager_id, month",
                [Organisation.Kind.RESELLER],
            )
            _build_sales(cursor)
        rows = DealerMonth.objects.count()
        RollupState.objects.all().delete()
        RollupState.objects.create(
            built_at=timezone.now(),
            rows=rows,
            seconds=Decimal(time.perf_counter() - started).quantize(Decimal("0.01")),
        )
    return rows


def _build_sales(cursor) -> None:
    quote = connection.ops.quote_name
    sales = (
        Sale.objects.order_by()
        .annotate(
            month=TruncMonth("sold_on"), **{k: F(f"reseller__{k}") for k in ("kind", "region_id", "partner_manager_id")}
        )
        .values("reseller_id", "kind", "region_id", "partner_manager_id", "month", "product_line_id")
        .annotate(total=Sum("amount"), lines=Count("pk"))
    )
    sql, params = sales.query.sql_with_params()
    columns = "reseller_id, kind, region_id, partner_manager_id, month, product_line_id"
    cursor.execute(
        f"INSERT INTO {quote(SaleMonth._meta.db_table)} ({columns}, amount, lines) "
        f"SELECT {', '.join(f'sub.{c}' for c in columns.split(', '))}, sub.total, sub.lines FROM ({sql}) sub",
        params,
    )
    cursor.execute(
        f"INSERT INTO {quote(RegionSaleMonth._meta.db_table)} (region_id, partner_manager_id, month, product_line_id, "
        f"amount, lines) SELECT region_id, partner_manager_id, month, product_line_id, SUM(amount), SUM(lines) "
        f"FROM {quote(SaleMonth._meta.db_table)} WHERE kind = %s "
        f"GROUP BY region_id, partner_manager_id, month, product_line_id",
        [Organisation.Kind.RESELLER],
    )


def dealers_changed(organisation_ids) -> None:
    """Count these dealers live until the next build (their registrations changed)."""
    RollupChange.objects.bulk_create([RollupChange(organisation_id=pk) for pk in set(organisation_ids) if pk])


def on_registration_init(sender, instance, **kwargs):
    instance._rollup_organisation_id = instance.__dict__.get("organisation_id")


def on_registration_saved(sender, instance, created, update_fields=None, raw=False, **kwargs):
    if raw:  # a fixture load: the build counts it
        return
    if created or update_fields is None or TRACKED.intersection(update_fields):
        dealers_changed({instance.organisation_id, getattr(instance, "_rollup_organisation_id", None)})
    instance._rollup_organisation_id = instance.organisation_id


def on_registration_deleted(sender, instance, **kwargs):
    dealers_changed({instance.organisation_id})


ORGANISATION_TRACKED = ("kind", "region_id", "partner_manager_id")


def on_organisation_init(sender, instance, **kwargs):
    instance._rollup_keys = tuple(instance.__dict__.get(name) for name in ORGANISATION_TRACKED)


def on_organisation_saved(sender, instance, created, raw=False, **kwargs):
    """A dealer that moves to another region or partner manager (or changes kind) is counted live
    until the next build: RegionMonth holds it under its old keys."""
    keys = tuple(getattr(instance, name) for name in ORGANISATION_TRACKED)
    if not raw and not created and keys != getattr(instance, "_rollup_keys", keys):
        dealers_changed({instance.pk})
    instance._rollup_keys = keys


def on_sale_saved(sender, instance, raw=False, **kwargs):
    if not raw:
        dealers_changed({instance.reseller_id, getattr(instance, "_rollup_reseller_id", None)})


def on_sale_init(sender, instance, **kwargs):
    instance._rollup_reseller_id = instance.__dict__.get("reseller_id")


def on_sale_deleted(sender, instance, **kwargs):
    dealers_changed({instance.reseller_id})


# --- reading ---------------------------------------------------------------------------------------


NULLABLE = {"won_value_sum", "cycle_sum"}  # sums: NULL, not 0, where a date has none
ADDITIVE = (
    "submitted",
    "closed",
    "won",
    "won_in",
    "won_value_sum",
    "won_value_count",
    "cycle_sum",
    "cycle_count",
    "decided",
    "in_time",
)


@dataclass
class Figures:
    """The additive registration figures of one group (a dealer, a region, the programme)."""

    submitted: int = 0
    closed: int = 0
    won: int = 0
    won_in: int = 0
    won_value_sum: Decimal = Decimal(0)
    won_value_count: int = 0
    cycle_sum: timedelta = timedelta(0)
    cycle_count: int = 0
    decided: int = 0
    in_time: int = 0

    def add(self, values: dict, sign: int = 1) -> None:
        for name, value in values.items():
            if not value:  # None (nothing summed) or zero: nothing to add
                continue
            if name == "cycle_sum" and not isinstance(value, timedelta):
                value = timedelta(microseconds=int(value))  # SQLite sums durations as microseconds
            elif name == "won_value_sum":
                value = Decimal(value)
            setattr(self, name, getattr(self, name) + sign * value)

    @property
    def is_empty(self) -> bool:
        return self == _NOTHING

    @property
    def average_deal(self) -> Decimal | None:
        return self.won_value_sum / self.won_value_count if self.won_value_count else None

    @property
    def cycle_days(self) -> Decimal | None:
        if not self.cycle_count:
            return None
        return Decimal(self.cycle_sum.total_seconds()) / Decimal(86400) / self.cycle_count


_NOTHING = Figures()


def local_midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, clock.min))


def within(field: str, start: date, end: date, *, timestamp: bool) -> Q:
    """`field` on a local date from start to end, both included: a range on the column itself (an
    index serves it), not a cast of every row to a date."""
    if timestamp:
        if end == date.max:  # no day after it to stop before
            return Q(**{f"{field}__gte": local_midnight(start)})
        return Q(**{f"{field}__gte": local_midnight(start), f"{field}__lt": local_midnight(end + timedelta(days=1))})
    return Q(**{f"{field}__gte": start, f"{field}__lte": end})


def whole_months(start: date, end: date) -> tuple[date, date] | None:
    """The first days of the first and the last whole month from start to end, or None."""
    if start.day == 1:
        first = start
    elif (start.year, start.month) == (9999, 12):
        return None  # no month after the last one
    else:
        first = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    last = (
        end.replace(day=1)
        if end == _month_end(end.replace(day=1))
        else (end.replace(day=1) - timedelta(days=1)).replace(day=1)
    )
    return (first, last) if first <= last else None


def _month_end(first: date) -> date:
    if (first.year, first.month) == (9999, 12):
        return date.max
    return (first.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)


BASES = {  # basis: (registration field, is it a timestamp)
    Basis.SUBMITTED: ("first_submitted_at", True),
    Basis.WON: ("won_date", False),
    Basis.DECIDED: ("decided_at", True),
}


def in_period(basis: str, start: date, end: date) -> Q:
    field, timestamp = BASES[basis]
    q = within(field, start, end, timestamp=timestamp)
    if basis == Basis.WON:
        return q & Q(status=Status.WON)
    if basis == Basis.DECIDED:
        return q & Q(decided_in_time__isnull=False)
    return q


# the date each figure is counted by
BASIS_OF = {
    "submitted": Basis.SUBMITTED,
    "closed": Basis.SUBMITTED,
    "won": Basis.SUBMITTED,
    "won_in": Basis.WON,
    "won_value_sum": Basis.WON,
    "won_value_count": Basis.WON,
    "cycle_sum": Basis.WON,
    "cycle_count": Basis.WON,
    "decided": Basis.DECIDED,
    "in_time": Basis.DECIDED,
}


def _live(registrations, key: str | None, filters: dict[str, Q], fields) -> dict:
    submitted, won, decided = filters[Basis.SUBMITTED], filters[Basis.WON], filters[Basis.DECIDED]
    cycle = cycle_time()
    where = Q()
    for basis in {BASIS_OF[name] for name in fields}:
        where |= filters[basis]
    queryset = registrations.filter(where)
    aggregates = {
        "submitted": Count("pk", filter=submitted),
        "closed": Count("pk", filter=submitted & Q(status__in=ENDED_AFTER_APPROVAL)),
        "won": Count("pk", filter=submitted & Q(status=Status.WON)),
        "won_in": Count("pk", filter=won),
        "won_value_sum": Sum("won_value", filter=won),
        "won_value_count": Count("won_value", filter=won),
        "cycle_sum": Sum(cycle, filter=won),
        "cycle_count": Count(cycle, filter=won),
        "decided": Count("pk", filter=decided),
        "in_time": Count("pk", filter=decided & Q(decided_in_time=True)),
    }
    aggregates = {name: aggregates[name] for name in fields}
    if key is None:
        return {None: queryset.aggregate(**aggregates)}
    return {row.pop("_key"): row for row in queryset.values(_key=F(key)).order_by().annotate(**aggregates)}


def _whole_regions(organisations) -> list | None:
    """The regions (None: without one) of which `organisations` holds every dealer (reseller), or
    None when it holds only some: RegionMonth then cannot be used. Asked of one queryset by three
    readers on a dashboard (5–10 ms each time at scale): the answer is kept on it, as a queryset
    keeps its rows once read."""
    if _WHOLE_REGIONS in organisations.__dict__:
        return organisations.__dict__[_WHOLE_REGIONS]
    regions = organisations.__dict__[_WHOLE_REGIONS] = _regions_whole(organisations)
    return regions


_WHOLE_REGIONS = "_rollup_whole_regions"


def whole_regions_kept(organisations, resellers):
    """`resellers` (organisations narrowed to the dealers), with what _whole_regions found for
    `organisations` when it found whole regions: those hold dealers only, so narrowing changes
    nothing (the dashboards' KPIs narrow the queryset they are given, which lost the answer)."""
    if organisations.__dict__.get(_WHOLE_REGIONS) is not None:
        resellers.__dict__[_WHOLE_REGIONS] = organisations.__dict__[_WHOLE_REGIONS]
    return resellers


def _regions_whole(organisations) -> list | None:
    # two queries: per region, the organisations given and how many are not dealers; then every
    # dealer of those regions
    given = {
        row["region_id"]: (row["n"], row["others"])
        for row in organisations.order_by()
        .values("region_id")
        .annotate(n=Count("pk"), others=Count("pk", filter=~Q(kind=Organisation.Kind.RESELLER)))
    }
    if any(others for _n, others in given.values()):
        return None
    regions = list(given)
    every = dict(
        Organisation.objects.filter(_in_regions(regions), kind=Organisation.Kind.RESELLER)
        .values_list("region_id")
        .order_by()
        .annotate(n=Count("pk"))
    )
    if any(every.get(region, 0) != n for region, (n, _others) in given.items()):
        return None
    return regions


def _in_regions(regions: list) -> Q:
    q = Q(region_id__in=[r for r in regions if r is not None])
    return q | Q(region_id__isnull=True) if None in regions else q


REGION_KEYS = {
    "organisation__region_id": "region_id",
    "organisation__partner_manager_id": "partner_manager_id",
    None: None,
}


def _from_rollup(rows, key: str | None, fields) -> dict:
    aggregates = {name: Sum(name) for name in fields}
    if key is None:
        return {None: rows.aggregate(**aggregates)}
    return {row.pop("_key"): row for row in rows.values(_key=F(key)).order_by().annotate(**aggregates)}


# A scope of at most this many dealers counts the days outside its whole months live: a few short
# index ranges (a dealer's own dashboard: 2 ms each) cost less than reading back what is kept for
# every dealer (5–10 ms a time).
KEPT_MIN_DEALERS = 100


# How long what is kept for a build (per period) stays: past the next night's build it is never asked.
BUILD_CACHE_SECONDS = 36 * 3600


def _build_state() -> tuple | None:
    """(pk, built_at) of the roll-up's build; None before the first."""
    return RollupState.objects.order_by().values_list("pk", "built_at").first()


def _changed_dealers() -> list[int]:
    """The organisations changed since the build (RollupChange), in pk order."""
    return sorted(RollupChange.objects.values_list("organisation_id", flat=True).distinct())


def _organisations_keyed():
    """(pk, kind, region pk, partner manager pk) of every organisation: what is kept is grouped by them."""
    return Organisation.objects.values_list("pk", "kind", "region_id", "partner_manager_id")


def _of_regions(kind, region, regions: list) -> bool:
    """Whether an organisation kept as (kind, region) is one of the dealers of `regions` (_whole_regions)."""
    return kind == Organisation.Kind.RESELLER and region in regions


KEPT_FORMAT = 1  # one more when what is kept changes shape: the entries of the old code are not read


def _kept_prefix(state) -> str:
    """The cache keys of what is kept for one build (state: its pk and built_at)."""
    return f"rollup:{KEPT_FORMAT}:{state[0]}:{state[1].timestamp()}"


def _packed(figures: Figures) -> tuple:
    """Figures as plain values in ADDITIVE order, quick to keep and read back (10,000 dataclasses
    with Decimals and timedeltas took 50 ms to unpickle): the sum of won values as text, the cycle
    time in microseconds, as Figures.add reads them."""
    return tuple(
        str(value) if name == "won_value_sum" else value // timedelta(microseconds=1) if name == "cycle_sum" else value
        for name, value in ((name, getattr(figures, name)) for name in ADDITIVE)
    )


class _KeptDealers:
    """The kept figures of each organisation: (kind, region pk, partner manager pk, _packed figures)
    by pk. Kept column by column: 10,000 tuples took 60–80 ms to read back (the garbage collector
    passes over that many new containers), a few lists of plain values 6 ms."""

    def __init__(self, index: dict[int, int], columns: list[list]):
        self.index, self.columns = index, columns

    def get(self, pk: int) -> tuple | None:
        i = self.index.get(pk)
        if i is None:
            return None
        kind, region, pm, *values = (column[i] for column in self.columns)
        return kind, region, pm, tuple(values)

    def keys(self):
        return self.index.keys()


def _kept_edges(
    state, start: date, end: date, edges: list[tuple[date, date]], *, compute: bool = True
) -> tuple[_KeptDealers, dict] | None:
    """The figures of `edges`, the days from start to end outside its whole months, of every
    organisation, as ({organisation pk: (kind, region pk, partner manager pk, figures)},
    {(kind, region pk, partner manager pk): figures added up}), the figures _packed, counted once
    per build and period and kept in the cache (BUILD_CACHE_SECONDS).

    Counted live on every dashboard they cost one query per date, 15–35 ms each at a million
    registrations. An organisation not changed since the build has the same figures all day (a
    change of a counted field, of its region or partner manager, marks it: RollupChange), so the
    figures kept serve every later request of the build; a dealer changed when they were kept or
    since is left out of them by registration_figures (taken out of the sums under the key it was
    kept with) and counted live there. The next build has another key."""
    cache_key = f"{_kept_prefix(state)}:edges:{start.isoformat()}:{end.isoformat()}"
    stored = cache.get(cache_key)
    if stored is not None:
        return _KeptDealers(*stored[0]), stored[1]
    if not compute:
        return None
    everything = Registration.objects.all()
    counted: dict[int, Figures] = {}
    # for every organisation one query per edge and date: a plain range scan of the date's index
    # (with an OR of the two edges PostgreSQL read the whole index in organisation order, ten times
    # slower; an OR of the dates made it read every registration)
    for a, b in edges:
        outside = {basis: in_period(basis, a, b) for basis in BASES}
        for basis in BASES:
            names = [name for name in ADDITIVE if BASIS_OF[name] == basis]
            for pk, values in _live(everything, "organisation_id", outside, names).items():
                counted.setdefault(pk, Figures()).add(values)
    index: dict[int, int] = {}
    columns: list[list] = [[] for _ in range(3 + len(ADDITIVE))]
    sums: dict = {}
    for pk, kind, region, pm in _organisations_keyed():
        figures = counted.get(pk)
        if figures is not None and not figures.is_empty:
            index[pk] = len(index)
            for column, value in zip(columns, (kind, region, pm, *_packed(figures)), strict=True):
                column.append(value)
            sums.setdefault((kind, region, pm), Figures()).add(vars(figures))
    stored = ((index, columns), {group: _packed(figures) for group, figures in sums.items()})
    cache.set(cache_key, stored, BUILD_CACHE_SECONDS)
    return _KeptDealers(*stored[0]), stored[1]


def registration_figures(organisations, start: date, end: date, key: str | None, fields=ADDITIVE) -> dict:
    """{group key: Figures} of the registrations of `organisations` from start to end (local
    dates), grouped by `key` ("organisation_id", "organisation__region_id" or None); only
    `fields` (of ADDITIVE) are counted, the others stay 0. Without a roll-up one query; with
    one, up to seven: its state, the dealers changed since it was built, its rows, the days
    outside its whole months (one per date), and everything of the changed dealers; for whole
    regions two more, to tell that they are whole and to take the changed dealers out.

    organisations=None counts every organisation's registrations without naming them (no
    `IN (…)` over the dealers: a programme-wide count per dealer, such as the attention flags'
    peers, reads its rows by date alone)."""
    everyone = organisations is None
    registrations = (
        Registration.objects.all() if everyone else Registration.objects.filter(organisation__in=organisations)
    )
    filters = {basis: in_period(basis, start, end) for basis in BASES}
    state = _build_state()
    months = whole_months(start, end) if state is not None else None
    result: dict = {}

    def add(found: dict) -> None:
        for k, values in found.items():
            figures = result.get(k)
            if figures is None:
                figures = result[k] = Figures()
            figures.add(values)

    if months is None:
        add(_live(registrations, key, filters, fields))
        return {k: figures for k, figures in result.items() if not figures.is_empty}
    first, last = months
    # read once: few (the dealers active since last night), and none skips a query below
    changed = _changed_dealers()
    regions = _whole_regions(organisations) if key in REGION_KEYS and not everyone else None
    if regions is not None:
        # whole regions: their per-region rows, less what the changed dealers had in them
        coarse = REGION_KEYS[key]
        add(
            _from_rollup(
                RegionMonth.objects.filter(_in_regions(regions), month__gte=first, month__lte=last), coarse, fields
            )
        )
        if changed:
            taken = _from_rollup(
                DealerMonth.objects.filter(
                    _in_regions(regions),
                    organisation_id__in=changed,
                    kind=Organisation.Kind.RESELLER,
                    month__gte=first,
                    month__lte=last,
                ),
                coarse,
                fields,
            )
            for k, values in taken.items():
                result.setdefault(k, Figures()).add(values, sign=-1)
    else:
        rows = DealerMonth.objects.filter(month__gte=first, month__lte=last)
        if not everyone:
            rows = rows.filter(organisation__in=organisations)
        add(_from_rollup(rows.exclude(organisation_id__in=changed), key, fields))
    # the days outside the whole months, of the unchanged dealers: counted once per build and
    # period for every organisation and kept (_kept_edges)
    edges = []
    if start < first:
        edges.append((start, first - timedelta(days=1)))
    if _month_end(last) < end:
        edges.append((_month_end(last) + timedelta(days=1), end))
    # Computing them for every organisation takes some 150 ms at a million registrations: a few
    # dealers' period not kept yet (a dealer's own dashboard, a period of its choice) is counted
    # live for them alone instead.
    # some dealers (not everyone, not whole regions): which, and whether few
    asked = set(organisations.values_list("pk", flat=True)) if edges and not everyone and regions is None else None
    few = asked is not None and len(asked) <= KEPT_MIN_DEALERS
    kept = _kept_edges(state, start, end, edges, compute=asked is None) if edges and not few else None
    if edges and kept is None:
        unchanged = registrations.exclude(organisation_id__in=changed)
        outside = {basis: Q() for basis in BASES}
        for a, b in edges:
            for basis in BASES:
                outside[basis] |= in_period(basis, a, b)
        for basis in BASES:  # one query per date: an OR of the three read every registration
            counted = [name for name in fields if BASIS_OF[name] == basis]
            if counted:
                add(_live(unchanged, key, outside, counted))
    elif edges:
        dealers, groups = kept
        # where a kept (kind, region, partner manager) counts: key's column of it, or None
        column = {None: None, "organisation__region_id": 1, "organisation__partner_manager_id": 2}.get(key)

        where = [ADDITIVE.index(name) for name in fields]

        def take(group_key, packed: tuple, sign: int = 1) -> None:
            values = {name: packed[i] for name, i in zip(fields, where, strict=True)}
            result.setdefault(group_key, Figures()).add(values, sign=sign)

        if key != "organisation_id" and (everyone or regions is not None):
            # everything, or whole regions: the kept sums, less what the dealers changed since had
            # in them (under the region and partner manager they were kept with)
            def inside(kind, region) -> bool:
                return everyone or _of_regions(kind, region, regions)

            for group, figures in groups.items():
                if inside(group[0], group[1]):
                    take(None if column is None else group[column], figures)
            for pk in changed:
                if (kept := dealers.get(pk)) and inside(kept[0], kept[1]):
                    take(None if column is None else kept[column], kept[3], sign=-1)
        else:  # some dealers: each unchanged one's own kept figures
            scope = dealers.keys() if everyone else asked & dealers.keys()
            for pk in scope - set(changed):
                kept = dealers.get(pk)
                take(pk if key == "organisation_id" else None if column is None else kept[column], kept[3])
    # everything of the dealers changed since the build
    if changed:
        add(_live(registrations.filter(organisation_id__in=changed), key, filters, fields))
    # a group with nothing counted is left out either way (one whose every registration the
    # roll-up's rows had was taken out, the programme's aggregate over no rows)
    return {k: figures for k, figures in result.items() if not figures.is_empty}


def submitted_by_dealer(start: date, end: date) -> dict[int, int]:
    """{organisation pk: its registrations first submitted from start to end (local dates)} for
    every organisation with any: the programme-wide counts the attention flags compare each dealer
    with (its tier's median dealer), the same as registration_figures(None, …)'s submitted.

    Reading them for 10,000 dealers on every team page cost about 200 ms at a million registrations
    (70,000 roll-up rows, the period's edges, a Figures per dealer). A dealer that has not changed
    since the build (no RollupChange row) has the same count all day, so the counts of a build and
    period are computed once and kept in the cache under the build's key; each request counts only
    the dealers changed since the build live (one query over their registrations). A dealer that
    was changed when the counts were kept stays changed until the next build (only a build deletes
    change rows), so its kept count is never used; the next build has another key. Without a
    build, everything is live."""
    state = _build_state()

    def counted(organisations) -> dict[int, int]:
        return {
            pk: figures.submitted
            for pk, figures in registration_figures(
                organisations, start, end, "organisation_id", fields=("submitted",)
            ).items()
        }

    if state is None:
        return counted(None)
    key = f"{_kept_prefix(state)}:submitted:{start.isoformat()}:{end.isoformat()}"
    kept = cache.get(key)
    if kept is None:
        kept = counted(None)  # the unchanged dealers from the roll-up, the changed ones live
        cache.set(key, kept, BUILD_CACHE_SECONDS)
        return kept
    changed = set(_changed_dealers())
    if not changed:
        return kept
    filters = {basis: in_period(basis, start, end) for basis in BASES}
    live = _live(Registration.objects.filter(organisation_id__in=changed), "organisation_id", filters, ("submitted",))
    result = {pk: n for pk, n in kept.items() if pk not in changed}
    result.update((pk, row["submitted"]) for pk, row in live.items() if row["submitted"])
    return result


def review_hours_medians(organisations, start: date, end: date) -> dict | None:
    """The median working hours to the decision of the registrations decided from start to end, per
    partner manager of the dealer: what tiers.kpis.medians gives for them, to the cent, or None
    where it cannot tell (no build; `organisations` not whole regions): the caller asks medians.

    Sorting a year's 270,000 decisions of a channel admin's scope per partner manager took about
    200 ms on every page. The decisions of a dealer not changed since the build are the same all
    day, so their hours are read once per build and period, for every organisation, and kept
    sorted per (kind, region, partner manager), with each dealer's own apart; a request takes the
    groups of its regions, takes out the hours kept for the dealers changed since, and adds theirs
    live. A median is then the middle of a sorted list, worked out as the database would
    (PostgreSQL's percentile_cont in double precision, elsewhere Decimal)."""
    state = _build_state()
    regions = _whole_regions(organisations) if state is not None else None
    if regions is None:
        return None
    decided = in_period(Basis.DECIDED, start, end) & Q(review_working_hours__isnull=False)
    index, hours, groups = _kept(
        f"{_kept_prefix(state)}:hours:{start.isoformat()}:{end.isoformat()}", _kept_hours, decided
    )

    per_pm: dict = {}
    for (kind, region, pm), values in groups.items():
        if _of_regions(kind, region, regions):
            per_pm.setdefault(pm, []).append(values)
    changed = set(_changed_dealers())
    taken: dict = {}  # partner manager: the kept hours of its changed dealers, to take out
    for pk in changed:
        if (kept := index.get(pk)) and _of_regions(kept[0], kept[1], regions):
            taken.setdefault(kept[2], []).extend(hours[kept[3] : kept[4]])
    added: dict = {}  # partner manager (now): the changed dealers' hours, live
    live = Registration.objects.filter(decided, organisation_id__in=changed, organisation__in=organisations)
    for pm, value in live.values_list("organisation__partner_manager_id", "review_working_hours") if changed else ():
        added.setdefault(pm, []).append(int(value * 100))
    result = {}
    for pm in per_pm.keys() | added.keys():
        parts = per_pm.get(pm, [])
        if len(parts) == 1 and pm not in taken and pm not in added:
            values = parts[0]  # sorted as kept
        else:
            values = sorted([v for part in parts for v in part] + added.get(pm, []))
            for value in taken.get(pm, ()):
                del values[bisect_left(values, value)]
        if values:
            result[pm] = _median_of_sorted(values)
    return result


def _kept_hours(decided: Q) -> tuple[dict, array, dict]:
    """({organisation pk: (kind, region pk, partner manager pk, start, stop)}, its hours (in
    hundredths, sorted) at [start:stop] of one array, {(kind, region pk, partner manager pk):
    sorted array}) of every organisation's decisions matching `decided`."""
    per_dealer: dict[int, list[int]] = {}
    for pk, value in Registration.objects.filter(decided).values_list("organisation_id", "review_working_hours"):
        per_dealer.setdefault(pk, []).append(int(value * 100))
    index: dict = {}
    hours = array("i")
    per_group: dict = {}
    for pk, kind, region, pm in _organisations_keyed():
        values = per_dealer.get(pk)
        if values:
            values.sort()
            index[pk] = (kind, region, pm, len(hours), len(hours) + len(values))
            hours.extend(values)
            per_group.setdefault((kind, region, pm), []).extend(values)
    return index, hours, {group: array("i", sorted(values)) for group, values in per_group.items()}


def _median_of_sorted(values) -> Decimal:
    """The median of sorted hundredths, to the cent, as tiers.kpis.medians has it from the
    database: PostgreSQL's percentile_cont(0.5) interpolates in double precision, SQLite's rows are
    taken as Decimals (statistics.median)."""
    n = len(values)
    low, high = values[(n - 1) // 2], values[n // 2]
    if connection.vendor == "postgresql":
        first, second = float(Decimal(low) / 100), float(Decimal(high) / 100)
        middle = Decimal(first + (second - first) * 0.5) if low != high else Decimal(first)
    else:
        middle = (Decimal(low) + Decimal(high)) / 200
    return middle.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def forecast_totals(organisations, today: date) -> list[tuple] | None:
    """The forecast's totals (as deals.forecast.totals_of gives them: bucket, stage, quantity,
    value, registrations) of the registrations of `organisations` on `today`, or None where it
    cannot tell (no build; `organisations` not whole regions): the caller counts them live.

    A channel admin's totals sum the lines of some 31,000 open protected registrations: 90–160 ms
    on every programme dashboard at a million registrations. A dealer not changed since the build
    has the same protected registrations, close dates, stages and lines all day (an approval, an
    expiry, an extension, the dealer's update each save a TRACKED field), so every dealer's totals
    per bucket and stage are counted once per build and day (the buckets start with today) and
    kept; a request adds up the sums kept for its regions, takes out what is kept for the dealers
    changed since and counts theirs live (one query)."""
    from deals.forecast import totals_of  # deals.forecast does not read the roll-up

    state = _build_state()
    regions = _whole_regions(organisations) if state is not None else None
    if regions is None:
        return None
    index, columns, groups = _kept(f"{_kept_prefix(state)}:forecast:{today.isoformat()}", _kept_forecast, today)
    sums: dict[tuple, list[int]] = {}

    def add(bucket, stage, quantity: int, cents: int, registrations: int, sign: int = 1) -> None:
        found = sums.setdefault((bucket, stage), [0, 0, 0])
        found[0] += sign * quantity
        found[1] += sign * cents
        found[2] += sign * registrations

    for (kind, region, bucket, stage), figures in groups.items():
        if _of_regions(kind, region, regions):
            add(bucket, stage, *figures)
    changed = _changed_dealers()
    for pk in changed:
        if (kept := index.get(pk)) and _of_regions(kept[0], kept[1], regions):
            for i in range(kept[2], kept[3]):
                add(*(column[i] for column in columns), sign=-1)
    if changed:
        live = Registration.objects.filter(organisation_id__in=changed, organisation__in=organisations)
        for bucket, stage, quantity, value, registrations in totals_of(live, today=today):
            add(bucket, stage, int(quantity or 0), _cents(value), registrations)
    return [
        (bucket, stage, quantity, Decimal(cents).scaleb(-2), registrations)
        for (bucket, stage), (quantity, cents, registrations) in sums.items()
        if registrations
    ]


def pipeline_figures(organisations, today: date, key: str | None) -> dict | None:
    """{region pk ("organisation__region_id") or None (key None): (expected value, registrations)}
    of the registrations protected on `today` of `organisations`, or None where it cannot tell (no
    build; `organisations` not whole regions): the caller counts them live.

    Summing a channel admin's 31,000 protected registrations took 15–30 ms of every programme
    dashboard at a million registrations. As for forecast_totals, an unchanged dealer's pipeline is
    the same all day: every dealer's is counted once per build and day and kept, with its sums per
    region; a request adds up its regions', takes out the changed dealers' kept and counts theirs
    live (one query)."""
    if key not in ("organisation__region_id", None):
        return None
    state = _build_state()
    regions = _whole_regions(organisations) if state is not None else None
    if regions is None:
        return None
    dealers, groups = _kept(f"{_kept_prefix(state)}:pipeline:{today.isoformat()}", _kept_pipeline, today)
    sums: dict = {}

    def add(region, cents: int, registrations: int, sign: int = 1) -> None:
        found = sums.setdefault(None if key is None else region, [0, 0])
        found[0] += sign * cents
        found[1] += sign * registrations

    for (kind, region), (cents, registrations) in groups.items():
        if _of_regions(kind, region, regions):
            add(region, cents, registrations)
    changed = _changed_dealers()
    for pk in changed:
        if (kept := dealers.get(pk)) and _of_regions(kept[0], kept[1], regions):
            add(kept[1], kept[2], kept[3], sign=-1)
    if changed:
        live = Registration.objects.filter(
            organisation_id__in=changed,
            organisation__in=organisations,
            status=Status.APPROVED,
            protected_until__gte=today,
        )
        for region, value, registrations in (
            live.values_list("organisation__region_id").order_by().annotate(v=Sum("expected_value"), n=Count("*"))
        ):
            add(region, _cents(value), registrations)
    return {k: (Decimal(cents).scaleb(-2), n) for k, (cents, n) in sums.items() if n}


def _kept_pipeline(today: date) -> tuple[dict, dict]:
    """({organisation pk: (kind, region pk, cents, registrations)}, {(kind, region pk): (cents,
    registrations)}) of every organisation's registrations protected on `today`."""
    per_dealer = dict(
        (pk, (_cents(value), n))
        for pk, value, n in Registration.objects.filter(status=Status.APPROVED, protected_until__gte=today)
        .values_list("organisation_id")
        .order_by()
        .annotate(v=Sum("expected_value"), n=Count("*"))
    )
    dealers: dict = {}
    groups: dict = {}
    for pk, kind, region, _pm in _organisations_keyed():
        if (found := per_dealer.get(pk)) is not None:
            dealers[pk] = (kind, region, *found)
            summed = groups.setdefault((kind, region), [0, 0])
            summed[0] += found[0]
            summed[1] += found[1]
    return dealers, {group: tuple(figures) for group, figures in groups.items()}


def _cents(value) -> int:
    """A sum of money as whole cents (SQLite sums decimals as floats: rounded to the cent first)."""
    return int((Decimal(str(value or 0)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)).scaleb(2))


def _kept_forecast(today: date) -> tuple[dict, list, dict]:
    """({organisation pk: (kind, region pk, start, stop, whether any is in the forecast proper, not
    past its close date)}, columns (bucket, stage, quantity, cents, registrations) whose rows
    [start:stop] are the organisation's, {(kind, region pk, bucket, stage): (quantity, cents,
    registrations)}) of every organisation's open protected registrations on `today`; column by
    column, as _KeptDealers explains."""
    from deals.forecast import PAST, totals_by_dealer

    per_dealer: dict[int, list[tuple]] = {}
    for pk, bucket, stage, quantity, value, registrations in totals_by_dealer(Registration.objects.all(), today=today):
        per_dealer.setdefault(pk, []).append((bucket, stage, int(quantity or 0), _cents(value), registrations))
    index: dict = {}
    columns: list = [array("q"), [], array("q"), array("q"), array("q")]
    groups: dict = {}
    for pk, kind, region, _pm in _organisations_keyed():
        rows = per_dealer.get(pk)
        if not rows:
            continue
        ahead = any(row[0] != PAST for row in rows)
        index[pk] = (kind, region, len(columns[0]), len(columns[0]) + len(rows), ahead)
        for bucket, stage, quantity, cents, registrations in rows:
            for column, value in zip(columns, (bucket, stage, quantity, cents, registrations), strict=True):
                column.append(value)
            summed = groups.setdefault((kind, region, bucket, stage), [0, 0, 0])
            summed[0] += quantity
            summed[1] += cents
            summed[2] += registrations
    return index, columns, {group: tuple(figures) for group, figures in groups.items()}


def _kept(cache_key: str, compute, *args):
    """What is kept under cache_key, computed (compute(*args)) and kept first if it is not."""
    stored = cache.get(cache_key)
    if stored is None:
        stored = compute(*args)
        cache.set(cache_key, stored, BUILD_CACHE_SECONDS)
    return stored


def _complete_regions(organisations) -> list | None:
    """The regions (None: without one) of which `organisations` holds every organisation, of any
    kind (the forecast's scope: a channel admin's, a regional director's), or None when it holds
    only some. Kept on the queryset, as _whole_regions."""
    if _COMPLETE_REGIONS in organisations.__dict__:
        return organisations.__dict__[_COMPLETE_REGIONS]
    given = dict(organisations.order_by().values_list("region_id").annotate(n=Count("pk")))
    every = dict(
        Organisation.objects.filter(_in_regions(list(given)))
        .order_by()
        .values_list("region_id")
        .annotate(n=Count("pk"))
    )
    complete = list(given) if all(every.get(region) == n for region, n in given.items()) else None
    organisations.__dict__[_COMPLETE_REGIONS] = complete
    return complete


_COMPLETE_REGIONS = "_rollup_complete_regions"


def _catalogue() -> str:
    """Which product line each product is in, as a short digest: what is kept per product line
    holds for this catalogue only."""
    pairs = Product.objects.order_by("pk").values_list("pk", "line_id")
    return hashlib.blake2b(repr(list(pairs)).encode(), digest_size=8).hexdigest()


def forecast_sums(organisations, today: date):
    """The forecast page's figures (deals.forecast.Sums: per product line, product, region and
    dealer, and the totals) of the registrations of `organisations` on `today`, every product line,
    or None where it cannot tell (no build; `organisations` not every organisation of its regions):
    the page runs its statement.

    The statement reads the 50,000 lines of a channel admin's 31,000 protected registrations: about
    200 ms of every page at a million registrations. As for forecast_totals, what an unchanged
    dealer has is the same all day: its totals per bucket and stage (kept for forecast_totals) and
    its lines per product line and product (_kept_forecast_lines) are counted once per build and
    day and kept, with their sums per region; a request adds up the sums of its regions, takes out
    what is kept for the dealers changed since and counts theirs live (three queries)."""
    from deals.forecast import Sums, lines_by_dealer, totals_by_dealer

    state = _build_state()
    regions = _complete_regions(organisations) if state is not None else None
    if regions is None:
        return None
    inside = set(regions)
    prefix = f"{_kept_prefix(state)}:{{}}:{today.isoformat()}"
    index, columns, groups = _kept(prefix.format("forecast"), _kept_forecast, today)
    catalogue = _catalogue()
    lines_index, lines_columns, lines_groups = _kept(
        f"{prefix.format('forecast-lines')}:{catalogue}", _kept_forecast_lines, today
    )
    cells = {name: {} for name in ("product_lines", "products", "regions", "dealers")}
    totals: dict = {}

    def add(found: dict, bucket, stage, quantity: int, cents: int, registrations: int, sign: int = 1) -> None:
        cell = found.get((bucket, stage))
        if cell is None:
            cell = found[(bucket, stage)] = [0, 0, 0]
        cell[0] += sign * quantity
        cell[1] += sign * cents
        cell[2] += sign * registrations

    def of(name: str, key) -> dict:
        found = cells[name].get(key)
        if found is None:
            found = cells[name][key] = {}
        return found

    # the sums kept per region: the totals, the regions, the product lines and products
    for (_kind, region, bucket, stage), figures in groups.items():
        if region in inside:
            add(totals, bucket, stage, *figures)
            add(of("regions", region), bucket, stage, *figures)
    dimension = ("products", "product_lines")
    for _kind, region, code, key, bucket, stage, quantity, cents, n in zip(*lines_groups, strict=True):
        if region in inside:
            add(of(dimension[code], key), bucket, stage, quantity, cents, n)
    changed = set(_changed_dealers())
    # the dealers: each unchanged one's own kept totals, read when asked (the page shows 50 of
    # thousands), and the changed ones' live, below
    dealers = _DealerCells(index, columns, inside, changed, cells["dealers"])
    # the dealers changed since: what is kept for them out, theirs now in
    for pk in changed:
        if (kept := index.get(pk)) and kept[1] in inside:
            for i in range(kept[2], kept[3]):
                row = [column[i] for column in columns]
                add(totals, *row, sign=-1)
                add(of("regions", kept[1]), *row, sign=-1)
        if (kept := lines_index.get(pk)) and kept[1] in inside:
            for i in range(kept[2], kept[3]):
                code, key, *row = (column[i] for column in lines_columns)
                add(of(dimension[code], key), *row, sign=-1)
    if changed:
        live = Registration.objects.filter(organisation_id__in=changed, organisation__in=organisations)
        now_in = dict(Organisation.objects.filter(pk__in=changed).values_list("pk", "region_id"))
        for pk, bucket, stage, quantity, value, registrations in totals_by_dealer(live, today=today):
            row = (bucket, stage, int(quantity or 0), _cents(value), registrations)
            add(totals, *row)
            add(of("regions", now_in.get(pk)), *row)
            add(of("dealers", pk), *row)
        for _pk, pline, product, bucket, stage, quantity, value, n_line, n_product in lines_by_dealer(
            live, today=today
        ):
            quantity, cents = int(quantity or 0), _cents(value)
            add(of("products", product), bucket, stage, quantity, cents, n_product)
            add(of("product_lines", pline), bucket, stage, quantity, cents, n_line)
    # what no registration is left in is not there (as the statement has no row for it)
    for keyed in cells.values():
        for key in list(keyed):
            figures = {cell: values for cell, values in keyed[key].items() if values[2]}
            if figures:
                keyed[key] = figures
            else:
                del keyed[key]
    totals = {cell: values for cell, values in totals.items() if values[2]}
    names, order = _forecast_names(organisations, cells)
    return Sums(
        dimensions={**cells, "dealers": dealers},
        totals=totals,
        names=names,
        ahead={"dealers": dealers.ahead()},
        order=order,
    )


class _DealerCells(Mapping):
    """The dealers' cells of forecast_sums, {dealer pk: {(bucket, stage): [quantity, cents,
    registrations]}}: the changed dealers' counted live (`live`), the others' read from what is kept
    for them when asked: the page needs the cells of 50 of thousands (and, sorted by a figure, that
    figure of every one)."""

    def __init__(self, index: dict, columns: list, inside: set, changed: set, live: dict):
        self.index, self.columns, self.live = index, columns, live
        self.kept = [pk for pk, kept in index.items() if kept[1] in inside and pk not in changed]

    def __getitem__(self, pk):
        if pk in self.live:
            return self.live[pk]
        _kind, _region, start, stop, _ahead = self.index[pk]
        bucket, stage, quantity, cents, n = self.columns
        return {(bucket[i], stage[i]): [quantity[i], cents[i], n[i]] for i in range(start, stop)}

    def __iter__(self):
        yield from self.kept
        yield from self.live

    def __len__(self) -> int:
        return len(self.kept) + len(self.live)

    def figures(self, figure) -> dict:
        """{dealer pk: its figure (a deals.forecast.SortFigure)}, the kept ones in one pass over
        what is kept (whole numbers per stage, weighted once a dealer)."""
        bucket, stage, *measures = self.columns
        measure = measures[figure.measure]
        found = {pk: figure(cells) for pk, cells in self.live.items()}
        for pk in self.kept:
            _kind, _region, start, stop, _ahead = self.index[pk]
            per_stage: dict = {}
            for i in range(start, stop):
                if figure.counts(bucket[i]):
                    per_stage[stage[i]] = per_stage.get(stage[i], 0) + measure[i]
            found[pk] = figure.total(per_stage)
        return found

    def ahead(self) -> set:
        """The dealers with any registration in the forecast proper (not past its close date)."""
        from deals.forecast import PAST

        ahead = {pk for pk in self.kept if self.index[pk][4]}
        ahead.update(pk for pk, cells in self.live.items() if any(bucket != PAST for bucket, _stage in cells))
        return ahead


def _forecast_names(organisations, cells: dict) -> tuple[dict, dict]:
    """The names the forecast's rows show and sort by, per dimension, as its statement joins them;
    and the scope's dealers in the statement's order by name (LOWER(name), LOWER(region name), pk:
    the database sorts thousands of names quicker than Python)."""
    from deals.models import ProductLine

    lines = dict(ProductLine.objects.values_list("pk", "name"))
    regions = dict(Region.objects.values_list("pk", "name"))
    products = {
        pk: (name, sku, lines.get(line))
        for pk, name, sku, line in Product.objects.filter(pk__in=list(cells["products"])).values_list(
            "pk", "name", "sku", "line_id"
        )
    }
    dealers, order = {}, []
    for pk, name, region in organisations.order_by(Lower("name"), Lower("region__name"), "pk").values_list(
        "pk", "name", "region_id"
    ):
        dealers[pk] = (name, regions.get(region))
        order.append(pk)
    names = {
        "product_lines": {pk: (name,) for pk, name in lines.items()},
        "products": products,
        "regions": {pk: (name,) for pk, name in regions.items()},
        "dealers": dealers,
    }
    return names, {"dealers": order}


def _kept_forecast_lines(today: date) -> tuple[dict, list, list]:
    """({organisation pk: (kind, region pk, start, stop)}, columns (0 for a product or 1 for a product
    line, its pk, bucket, stage, quantity, cents, registrations) whose rows [start:stop] are the
    organisation's, and the same columns summed per kind and region, with those two in front) of
    every organisation's lines of its open protected registrations on `today`
    (deals.forecast.lines_by_dealer), column by column."""
    from deals.forecast import lines_by_dealer

    per_dealer: dict[int, dict] = {}
    for pk, pline, product, bucket, stage, quantity, value, n_line, n_product in lines_by_dealer(
        Registration.objects.all(), today=today
    ):
        quantity, cents = int(quantity or 0), _cents(value)
        found = per_dealer.setdefault(pk, {})
        for key, n in (((0, product), n_product), ((1, pline), n_line)):
            cell = found.setdefault((*key, bucket, stage), [0, 0, 0])
            cell[0] += quantity
            cell[1] += cents
            cell[2] += n
    index: dict = {}
    columns: list = [array("b"), array("q"), array("q"), [], array("q"), array("q"), array("q")]
    summed: dict = {}
    for pk, kind, region, _pm in _organisations_keyed():
        found = per_dealer.get(pk)
        if not found:
            continue
        index[pk] = (kind, region, len(columns[0]), len(columns[0]) + len(found))
        for (code, key, bucket, stage), figures in found.items():
            for column, value in zip(columns, (code, key, bucket, stage, *figures), strict=True):
                column.append(value)
            cell = summed.setdefault((kind, region, code, key, bucket, stage), [0, 0, 0])
            for i in range(3):
                cell[i] += figures[i]
    groups: list = [[], [], array("b"), array("q"), array("q"), [], array("q"), array("q"), array("q")]
    for group, figures in summed.items():
        for column, value in zip(groups, (*group, *figures), strict=True):
            column.append(value)
    return index, columns, groups


def rollup_warm(today: date | None = None) -> None:
    """After a build (the nightly job): keep what is kept per period (the programme-wide counts, the
    days outside whole months, the review hours, the sales) for the dashboards' default period, the
    trailing 12 months, and the year before it, so that the morning's first dashboards do not pay
    for it."""
    from tiers.kpis import Period  # tiers.kpis reads this module

    period = Period.trailing_year(today)
    resellers = Organisation.objects.filter(kind=Organisation.Kind.RESELLER)
    submitted_by_dealer(period.start, period.end)  # and the days outside its whole months
    review_hours_medians(resellers, period.start, period.end)
    sales_figures(resellers, period.start, period.end, None)
    forecast_totals(resellers, today or timezone.localdate())  # the dashboards' forecast
    pipeline_figures(resellers, today or timezone.localdate(), None)  # and open pipeline
    forecast_sums(Organisation.objects.all(), today or timezone.localdate())  # the forecast page
    # the year before, which the dashboards compare with
    before = period.previous_year()
    registration_figures(None, before.start, before.end, None)
    sales_figures(resellers, before.start, before.end, None)


SALE_KEYS = {"reseller__region_id": "region_id", "reseller__partner_manager_id": "partner_manager_id", None: None}


def _sum_sales(rows, key: str | None, by_line: bool, *, live: bool) -> dict:
    """{key: (amount, sales lines)}, or keyed (key, product line name), in one query; `live`: rows
    are sales (else roll-up rows, which count their lines)."""
    fields = ([F(key)] if key else []) + ([F("product_line__name")] if by_line else [])
    sums = {"total": Sum("amount"), "n": Count("pk") if live else Sum("lines")}
    if not fields:
        found = rows.aggregate(**sums)
        return {None: (found["total"], found["n"] or 0)}
    names = {f"_k{i}": f for i, f in enumerate(fields)}
    found = {}
    for row in rows.values(**names).order_by().annotate(**sums):
        parts = [row[f"_k{i}"] for i in range(len(fields))]
        if not key:
            parts.insert(0, None)
        found[tuple(parts) if by_line else parts[0]] = (row["total"], row["n"])
    return found


def sales_figures(organisations, start: date, end: date, key: str | None, *, by_line: bool = False) -> dict:
    """The vendor's sales to `organisations` from start to end: {group key: amount}, or with
    by_line {(group key, product line name): amount}; key "reseller_id", "reseller__region_id" or
    None. Counted as registration_figures counts: the roll-up's whole months for unchanged dealers
    (per region when the scope is whole regions), the days outside them and the changed dealers
    live (a dealer changes when a sale of it is saved or deleted, e.g. by an import)."""
    sales = Sale.objects.filter(reseller__in=organisations)
    period = Q(sold_on__gte=start, sold_on__lte=end)
    state = _build_state()
    months = whole_months(start, end) if state is not None else None
    result: dict = {}  # key: [amount, sales lines]

    def add(found: dict, sign: int = 1) -> None:
        for k, (amount, lines) in found.items():
            total = result.setdefault(k, [Decimal(0), 0])
            total[0] += sign * Decimal(amount or 0)
            total[1] += sign * lines

    def answer() -> dict:  # a key whose every line was taken out is gone, as it is counted live
        return {k: amount for k, (amount, lines) in result.items() if lines}

    if months is None:
        add(_sum_sales(sales.filter(period), key, by_line, live=True))
        return answer()
    first, last = months
    changed = _changed_dealers()
    regions = _whole_regions(organisations) if key in SALE_KEYS else None
    if regions is not None:
        coarse = SALE_KEYS[key]
        add(
            _sum_sales(
                RegionSaleMonth.objects.filter(_in_regions(regions), month__gte=first, month__lte=last),
                coarse,
                by_line,
                live=False,
            )
        )
        if changed:
            taken = SaleMonth.objects.filter(
                _in_regions(regions),
                reseller_id__in=changed,
                kind=Organisation.Kind.RESELLER,
                month__gte=first,
                month__lte=last,
            )
            add(_sum_sales(taken, coarse, by_line, live=False), sign=-1)
    else:
        add(
            _sum_sales(
                SaleMonth.objects.filter(reseller__in=organisations, month__gte=first, month__lte=last).exclude(
                    reseller_id__in=changed
                ),
                key,
                by_line,
                live=False,
            )
        )
    outside = Q()
    if start < first:
        outside |= Q(sold_on__gte=start, sold_on__lt=first)
    if _month_end(last) < end:
        outside |= Q(sold_on__gt=_month_end(last), sold_on__lte=end)
    # the days outside, of the unchanged dealers: kept per build and period as the registrations'
    # (_kept_edges); a few dealers' period not kept yet is counted live for them alone
    asked = set(organisations.values_list("pk", flat=True)) if outside and regions is None else None
    few = asked is not None and len(asked) <= KEPT_MIN_DEALERS
    kept = _kept_sale_edges(state, start, end, outside, compute=asked is None) if outside and not few else None
    if outside and kept is None:
        add(_sum_sales(sales.exclude(reseller_id__in=changed).filter(outside), key, by_line, live=True))
    elif outside:
        dealers, (lines_of, amounts, counts), groups = kept
        index, dealer_columns = dealers
        column = {None: None, "reseller__region_id": 1, "reseller__partner_manager_id": 2}.get(key)

        def put(group_key, line: str, amount, lines: int, sign: int = 1) -> None:
            add({(group_key, line) if by_line else group_key: (amount, lines)}, sign)

        def dealer(pk) -> tuple:  # kind, region, partner manager, its first row, the row after its last
            return tuple(values[index[pk]] for values in dealer_columns)

        def rows_of(found: tuple):
            first_row, stop = found[3], found[4]
            return zip(lines_of[first_row:stop], amounts[first_row:stop], counts[first_row:stop], strict=True)

        if regions is not None:
            for (kind, region, pm, line), (amount, lines) in groups.items():
                if _of_regions(kind, region, regions):
                    put(None if column is None else (kind, region, pm)[column], line, amount, lines)
            for pk in changed:
                if pk in index and _of_regions(*dealer(pk)[:2], regions):
                    found = dealer(pk)
                    for line, amount, lines in rows_of(found):
                        put(None if column is None else found[column], line, amount, lines, sign=-1)
        else:
            scope = asked & index.keys()
            for pk in scope - set(changed):
                found = dealer(pk)
                group_key = pk if key == "reseller_id" else None if column is None else found[column]
                for line, amount, lines in rows_of(found):
                    put(group_key, line, amount, lines)
    if changed:
        add(_sum_sales(sales.filter(period, reseller_id__in=changed), key, by_line, live=True))
    return answer()


def _kept_sale_edges(state, start: date, end: date, outside: Q, *, compute: bool) -> tuple | None:
    """The sales of the days from start to end outside its whole months (`outside`), of every
    organisation, per product line, kept per build and period as _kept_edges keeps the
    registrations': (({pk: position}, the dealers' kind, region pk, partner manager pk, first row
    and the row after their last, column by column), the rows column by column (product line
    name, amount as text, sales lines), {(kind, region pk, partner manager pk, product line name):
    (amount as text, sales lines)}). None when not kept and not to be computed."""
    cache_key = f"{_kept_prefix(state)}:sales:{start.isoformat()}:{end.isoformat()}"
    stored = cache.get(cache_key)
    if stored is not None or not compute:
        return stored
    found: dict[int, list] = {}
    for (pk, line), (amount, lines) in _sum_sales(Sale.objects.filter(outside), "reseller_id", True, live=True).items():
        found.setdefault(pk, []).append((line, Decimal(amount or 0), lines))
    # column by column (as _KeptDealers: 10,000 tuples are slow to read back)
    index: dict = {}
    dealer_columns: tuple[list, ...] = ([], [], [], [], [])  # kind, region, partner manager, first row, stop
    columns: tuple[list, list, list] = ([], [], [])  # product line name, amount as text, sales lines
    sums: dict = {}
    for pk, kind, region, pm in _organisations_keyed():
        first_row = len(columns[0])
        for line, amount, lines in found.get(pk, ()):
            for column, value in zip(columns, (line, str(amount), lines), strict=True):
                column.append(value)
            total = sums.setdefault((kind, region, pm, line), [Decimal(0), 0])
            total[0] += amount
            total[1] += lines
        if len(columns[0]) > first_row:
            index[pk] = len(index)
            for column, value in zip(dealer_columns, (kind, region, pm, first_row, len(columns[0])), strict=True):
                column.append(value)
    groups = {group: (str(amount), lines) for group, (amount, lines) in sums.items()}
    stored = ((index, dealer_columns), columns, groups)
    cache.set(cache_key, stored, BUILD_CACHE_SECONDS)
    return stored
