"""The stage-weighted forecast, for production planning.

What counts: the open protected registrations (approved, protection running today), with their
lines. A registration counts at the weight of its decision stage (ProgrammeSettings: a late-stage
deal is likelier to close than one just found), by the month of its expected close date: the 12
months starting with this one, then one "later" bucket. A registration past its expected close
date is kept apart: the deal slipped, and counting it in this month would plan production for a
sale that did not happen when the dealer said it would.

"Today" is timezone.localdate(), the date in settings.TIME_ZONE, so at 00:30 on 1 January in
Amsterdam the forecast starts with January even though it is still 31 December in UTC.

The sums run in the database, in one statement (see _statement), grouped by the dimension, the
month bucket and the decision stage, so the number of queries does not grow with the registrations
or the dealers; a page asks for the first rows of the long dimensions (products, dealers) in its
order, and the database picks them, so neither do the rows built here. The weights are applied to
those sums here, in Decimal, so the weighted figures are exact on SQLite (which sums decimals as
floats) as well as on PostgreSQL. The CSV (export_rows) is the finest grain, in full.

Where the roll-up has been built, the dashboards' totals and the unfiltered forecast page of whole
regions come without the statement: tiers.rollup keeps what each dealer has per build and day and
hands over the sums (forecast(totals=…), forecast(sums=…)); the rows are then made here as the
statement's would be (_rows_of).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import Case, Count, DecimalField, F, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce
from django.urls import reverse
from django.utils import timezone

from deals.models import MONEY, ProgrammeSettings, Registration, RegistrationLine, money

Status = Registration.Status
ZERO = Decimal("0")
HUNDRED = Decimal("100")
HORIZON_MONTHS = 12

# Bucket keys: a month is year * 100 + month (202701); these two sort after every month, so that
# an ordered export lists the months, then later, then what is past its close date.
LATER = 999_998
PAST = 999_999


@dataclass(frozen=True)
class Month:
    year: int
    month: int
    first: date  # the first close date counted in it: today, for the current month
    last: date

    @property
    def key(self) -> int:
        return self.year * 100 + self.month

    @property
    def label(self) -> str:
        return date(self.year, self.month, 1).strftime("%b %Y")

    @property
    def iso(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass
class Figures:
    """One cell of the forecast: value and units, as registered and weighted by decision stage."""

    value: Decimal = ZERO
    weighted_value: Decimal = ZERO
    quantity: int = 0
    weighted_quantity: Decimal = ZERO
    registrations: int = 0

    def add(self, other: Figures) -> None:
        self.value += other.value
        self.weighted_value += other.weighted_value
        self.quantity += other.quantity
        self.weighted_quantity += other.weighted_quantity
        self.registrations += other.registrations

    @classmethod
    def weighed(cls, *, value, quantity, registrations: int, weight: Decimal) -> Figures:
        value = money(value or 0)
        quantity = int(quantity or 0)
        return cls(
            value=value,
            weighted_value=value * weight / HUNDRED,
            quantity=quantity,
            weighted_quantity=quantity * weight / HUNDRED,
            registrations=registrations,
        )


@dataclass
class Row:
    """One product line, product, region or dealer: a cell per month, later, and past close apart.

    `total` is the forecast proper (the months and later); `past` is not in it."""

    pk: int | None
    label: str
    detail: str = ""
    months: list[Figures] = field(default_factory=list)
    later: Figures = field(default_factory=Figures)
    past: Figures = field(default_factory=Figures)
    total: Figures = field(default_factory=Figures)


@dataclass
class Forecast:
    today: date
    months: list[Month]
    weights: dict[str, Decimal]
    product_lines: list[Row]
    products: list[Row]
    regions: list[Row]
    totals: Row  # every line once
    # rows left out of a limited dimension (forecast(limit=...)): products, dealers
    more: dict[str, int] = field(default_factory=dict)
    _dealers: list[Row] | None = field(default=None, repr=False)
    _load_dealers: Callable[[], list[Row]] | None = field(default=None, repr=False)

    @property
    def dealers(self) -> list[Row]:
        if self._dealers is None:
            self._dealers = self._load_dealers() if self._load_dealers else []
        return self._dealers

    @property
    def later_from(self) -> date:
        return self.months[-1].last + timedelta(days=1)

    @property
    def is_empty(self) -> bool:
        return not self.totals.total.registrations and not self.totals.past.registrations


@dataclass(frozen=True)
class PastClose:
    """A protected registration past its expected close date, with its (weighted) value."""

    registration: Registration
    value: Decimal
    quantity: int
    weight: Decimal
    weighted_value: Decimal


@dataclass(frozen=True)
class ExportRow:
    """One row of the CSV: a month bucket, product, dealer and decision stage."""

    month: str  # 2027-01, "later" or "past expected close"
    product_line: str
    sku: str
    product: str
    region: str
    dealer: str
    stage: str
    quantity: int
    value: Decimal
    weight: Decimal
    weighted_quantity: Decimal
    weighted_value: Decimal


# --- the months -----------------------------------------------------------------------------------


def forecast_months(today: date, n: int = HORIZON_MONTHS) -> list[Month]:
    """The n calendar months starting with today's; the current one counts from today."""
    months = []
    year, month = today.year, today.month
    for i in range(n):
        following = date(year + month // 12, month % 12 + 1, 1)
        months.append(Month(year, month, today if i == 0 else date(year, month, 1), following - timedelta(days=1)))
        year, month = following.year, following.month
    return months


def _bucket(today: date, months: list[Month], close: str) -> Case:
    """The bucket of the expected close date `close` (a field path): PAST, a month's key or LATER.
    Date comparisons only: cheaper than extracting the year and month of every date (on PostgreSQL
    EXTRACT computes in numeric)."""
    return Case(
        When(**{f"{close}__lt": today}, then=Value(PAST)),
        *(When(**{f"{close}__lte": month.last}, then=Value(month.key)) for month in months),
        default=Value(LATER),
        output_field=IntegerField(),
    )


def _bucket_label(key: int) -> str:
    if key == PAST:
        return "past expected close"
    if key == LATER:
        return "later"
    return f"{key // 100:04d}-{key % 100:02d}"


# --- what counts ----------------------------------------------------------------------------------


def protected_registrations(registrations: QuerySet, today: date) -> QuerySet:
    """The open protected registrations among `registrations`."""
    return registrations.filter(status=Status.APPROVED, protected_until__gte=today)


def forecast_lines(registrations: QuerySet, today: date, product_line=None) -> QuerySet:
    """The lines the forecast sums: those of the open protected registrations, of one product line
    when given (a registration with lines in two product lines counts in both, each with its own)."""
    lines = RegistrationLine.objects.filter(registration__in=protected_registrations(registrations, today).values("pk"))
    if product_line is not None:
        lines = lines.filter(product__line=product_line)
    return lines


def _grouped(lines: QuerySet, today: date, months: list[Month], *fields: str):
    return (
        lines.annotate(
            bucket=_bucket(today, months, "registration__expected_close_date"), stage=F("registration__decision_stage")
        )
        .values(*fields, "bucket", "stage")
        .order_by()
        .annotate(
            quantity_sum=Sum("quantity"),
            value_sum=Sum("value"),
            registration_count=Count("registration_id", distinct=True),
        )
    )


def _weight(weights: dict[str, Decimal], stage: str | None) -> Decimal:
    return weights.get(stage or "", weights[""])


# --- the figures, in one statement -----------------------------------------------------------------
#
# At a million registrations the channel admin's forecast sums some 50,000 lines of 32,000 open
# protected registrations of 6,500 dealers. One statement reads them once and returns only what a
# page shows (it was four grouped queries over the lines, each planned as a semi-join, and a Python
# row per dealer: seconds):
#
#   r    the open protected registrations of the (scoped, filtered) queryset, compiled by the ORM,
#        with their dealer, region, month bucket and decision stage;
#   f    their lines (of one product line, when given) in the order of registration, product line
#        and product, each with those of the line before it: a line whose registration (product
#        line, product) differs from the one before is the first of it, so adding up those marks
#        counts each registration once per cell without a COUNT(DISTINCT) (a sort per dimension);
#   g    the sums per product line, product, region, bucket and stage (a few thousand rows), from
#        which the product lines, products, regions and totals add up;
#   top_products / top_dealers (with a limit only): the first `limit` keys in the requested order,
#        and how many there are in all;
#   then the groups per dimension, key, bucket and stage (of the top keys only, where limited), with
#   their names joined on, and the totals per bucket and stage.
#
# The weights are applied to the sums in Python, in Decimal (SQLite sums decimals as floats); only
# the ordering of the limited dimensions weighs in SQL.

_CODES = {"product_lines": 0, "products": 1, "regions": 2, "dealers": 3}
_TOTALS, _COUNT = 4, 5
# The dimensions that can have many rows: a page asks for the first `limit` of them in its order.
LIMITED = ("products", "dealers")
SORT_COLUMNS = ("name", "weighted", "unweighted", "units", "later")  # and each month, as 2027-01


def valid_sort(sort: str, months: list[Month]) -> str:
    """`sort` if it names a column (name, weighted, unweighted, units, later or a month as
    2027-01, with "-" for descending), else "name"."""
    column = sort.lstrip("-")
    known = column in SORT_COLUMNS or any(m.iso == column for m in months)
    return sort if known else "name"


def sort_key(sort: str, months: list[Month]):
    """The key of a valid sort, to sort rows in Python (reverse for a "-" sort): the same order as
    the SQL of a limited dimension."""
    column = sort.lstrip("-")
    month_index = {m.iso: i for i, m in enumerate(months)}
    if column in month_index:
        i = month_index[column]
        return lambda r: r.months[i].weighted_value
    return {
        "weighted": lambda r: r.total.weighted_value,
        "unweighted": lambda r: r.total.value,
        "units": lambda r: r.total.weighted_quantity,
        "later": lambda r: r.later.weighted_value,
    }.get(column, lambda r: (r.label.casefold(), r.detail.casefold()))


def _by_name(rows) -> list[Row]:
    return sorted(rows, key=lambda r: (r.label.casefold(), r.detail.casefold(), r.pk or 0))


class _Sql:
    """Table and column names, quoted for the connection."""

    def __init__(self, connection):
        from dealers.models import Organisation, Region
        from deals.models import Product, ProductLine

        q = connection.ops.quote_name
        self.table = {
            "line": q(RegistrationLine._meta.db_table),
            "product": q(Product._meta.db_table),
            "product_line": q(ProductLine._meta.db_table),
            "organisation": q(Organisation._meta.db_table),
            "region": q(Region._meta.db_table),
        }

        def column(model, name):
            return q(model._meta.get_field(name).column)

        self.line = {n: column(RegistrationLine, n) for n in ("registration", "product", "quantity", "value")}
        self.product = {n: column(Product, n) for n in ("id", "line", "name", "sku")}
        self.product_line = {n: column(ProductLine, n) for n in ("id", "name")}
        self.organisation = {n: column(Organisation, n) for n in ("id", "name", "region")}
        self.region = {n: column(Region, n) for n in ("id", "name")}


def _weighed_sql(measure: str, weights: dict[str, Decimal], alias: str) -> tuple[str, list]:
    """`measure` times its stage's weight (the ordering of a limited dimension)."""
    stages = [stage for stage in weights if stage]
    whens = " ".join("WHEN %s THEN %s" for _ in stages)
    params = [p for stage in stages for p in (stage, weights[stage])]
    return f"{measure} * CASE {alias}.stage {whens} ELSE %s END", [*params, weights[""]]


def _sort_figure(sort: str, months: list[Month], weights: dict[str, Decimal], alias: str):
    """The figure a numeric sort orders by, summed over the rows of `alias` (with their qty, val,
    bucket and stage), and its parameters; (None, []) for the sort by name."""
    column = sort.lstrip("-")
    if column == "name":
        return None, []
    month_keys = {m.iso: m.key for m in months}
    if column == "unweighted":
        figure, params = f"{alias}.val", []
    elif column == "units":
        figure, params = _weighed_sql(f"{alias}.qty", weights, alias)
    else:
        figure, params = _weighed_sql(f"{alias}.val", weights, alias)
    if column == "later" or column in month_keys:
        figure = f"CASE WHEN {alias}.bucket = %s THEN {figure} ELSE 0 END"
        params = [LATER if column == "later" else month_keys[column], *params]
    return f"SUM({figure})", params


def _statement(
    registrations, today, months, product_line, weights, *, dimensions, sort, limit, connection, per_dealer=False
):
    """The SQL and its parameters: one row per dimension, key, bucket and stage (dimension code, key,
    bucket, stage, quantity, value, registrations, label, detail, detail), the totals per bucket and
    stage (code _TOTALS) and, per limited dimension, how many rows it has (code _COUNT, the number
    as registrations and the dimension's code as key). per_dealer (without dimensions): the totals
    per dealer, bucket and stage instead, the dealer's pk as key; with the dimensions
    ["products"], the rows of g per dealer (LINES_BY_DEALER)."""
    s = _Sql(connection)
    t, ln, p, pl, o, g = s.table, s.line, s.product, s.product_line, s.organisation, s.region
    regs = (
        protected_registrations(registrations, today)
        .order_by()
        .values(
            rid=F("pk"),
            org=F("organisation_id"),
            region=F("organisation__region_id"),
            bucket=_bucket(today, months, "expected_close_date"),
            stage=F("decision_stage"),
        )
    )
    r_sql, r_params = regs.query.get_compiler(connection=connection).as_sql()
    params = list(r_params)
    product, line = f"l.{ln['product']}", f"p.{p['line']}"
    line_filter = ""
    if product_line is not None:
        line_filter = f"WHERE {line} = %s"
        params.append(getattr(product_line, "pk", product_line))
    if not dimensions:
        # the totals alone: per registration, then per bucket and stage (no order of the lines to
        # mark the first of each, which is most of the statement's time)
        dealer = "f.org" if per_dealer else "NULL"
        sql = (
            f"WITH r AS ({r_sql}), f AS (SELECT r.rid, r.org, r.bucket, r.stage, SUM(l.{ln['quantity']}) AS qty, "
            f"SUM(l.{ln['value']}) AS val FROM r INNER JOIN {t['line']} l ON l.{ln['registration']} = r.rid "
            f"INNER JOIN {t['product']} p ON p.{p['id']} = {product} {line_filter} "
            "GROUP BY r.rid, r.org, r.bucket, r.stage) "
            f"SELECT {_TOTALS}, {dealer}, f.bucket, f.stage, SUM(f.qty), SUM(f.val), COUNT(*), NULL, NULL, NULL "
            f"FROM f GROUP BY {'f.org, ' if per_dealer else ''}f.bucket, f.stage"
        )
        return sql, params
    group = "org" if per_dealer else "region"  # what g is per, besides the product and the month
    # A line is the first of its registration, of its registration and product line, of its
    # registration and product when the line before it (in that order) is not of the same.
    new_registration = "f.prev_rid IS NULL OR f.prev_rid <> f.rid"
    new_line = f"{new_registration} OR f.prev_line <> f.pline"
    new_product = f"{new_line} OR f.prev_product <> f.product"

    def mark(condition):
        return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"

    ctes = [
        f"r AS ({r_sql})",
        # the lines, each with the registration, product line and product of the line before it
        f"f AS (SELECT r.rid, r.org, r.region, r.bucket, r.stage, {product} AS product, {line} AS pline, "
        f"l.{ln['quantity']} AS qty, l.{ln['value']} AS val, LAG(r.rid) OVER w AS prev_rid, "
        f"LAG({line}) OVER w AS prev_line, LAG({product}) OVER w AS prev_product "
        f"FROM r INNER JOIN {t['line']} l ON l.{ln['registration']} = r.rid "
        f"INNER JOIN {t['product']} p ON p.{p['id']} = {product} {line_filter} "
        f"WINDOW w AS (ORDER BY r.rid, {line}, {product}))",
        # per product (and its line), region, bucket and stage: the product lines, products, regions
        # and totals add up from these few thousand rows
        f"g AS (SELECT f.pline, f.product, f.{group}, f.bucket, f.stage, SUM(f.qty) AS qty, SUM(f.val) AS val, "
        f"{mark(new_registration)} AS n_registration, {mark(new_line)} AS n_line, {mark(new_product)} AS n_product "
        f"FROM f GROUP BY f.pline, f.product, f.{group}, f.bucket, f.stage)",
    ]
    if per_dealer:
        sql = f"WITH {', '.join(ctes)} SELECT {', '.join(f'g.{c}' for c in LINES_BY_DEALER)} FROM g"
        return sql, params
    # per dimension: the rows it adds up from (the dealers, thousands, straight from the lines), its
    # key column there, its count of registrations, the joins of its names and the names (label,
    # detail, detail)
    sources = {
        "product_lines": (
            "g",
            "pline",
            "SUM(g.n_line)",
            f"LEFT JOIN {t['product_line']} n ON n.{pl['id']} = a.k",
            [f"n.{pl['name']}"],
        ),
        "products": (
            "g",
            "product",
            "SUM(g.n_product)",
            f"LEFT JOIN {t['product']} n ON n.{p['id']} = a.k "
            f"LEFT JOIN {t['product_line']} n2 ON n2.{pl['id']} = n.{p['line']}",
            [f"n.{p['name']}", f"n.{p['sku']}", f"n2.{pl['name']}"],
        ),
        "regions": (
            "g",
            "region",
            "SUM(g.n_registration)",
            f"LEFT JOIN {t['region']} n ON n.{g['id']} = a.k",
            [f"n.{g['name']}"],
        ),
        "dealers": (
            "f",
            "org",
            mark(new_registration),
            f"LEFT JOIN {t['organisation']} n ON n.{o['id']} = a.k "
            f"LEFT JOIN {t['region']} n2 ON n2.{g['id']} = n.{o['region']}",
            [f"n.{o['name']}", f"n2.{g['name']}"],
        ),
    }
    selects, counts = [], []
    limited = [name for name in LIMITED if name in dimensions and limit is not None]
    descending = sort.startswith("-")
    for name in limited:
        source, column, _, join, names = sources[name]
        figure, figure_params = _sort_figure(sort, months, weights, source)
        lower = [f"LOWER({n})" for n in names]
        if figure is None:
            order = [f"{n} {'DESC' if descending else 'ASC'}" for n in lower]
        else:
            order = [f"a.s {'DESC' if descending else 'ASC'}", *(f"{n} ASC" for n in lower)]
        ctes.append(
            f"top_{name} AS (SELECT a.k, COUNT(*) OVER () AS n FROM (SELECT {source}.{column} AS k"
            f"{f', {figure} AS s' if figure else ''} FROM {source} WHERE {source}.bucket <> {PAST} "
            f"GROUP BY {source}.{column}) a {join} ORDER BY {', '.join([*order, 'a.k ASC'])} LIMIT %s)"
        )
        params += [*figure_params, limit]
        counts.append(
            f"SELECT {_COUNT}, {_CODES[name]}, NULL, NULL, NULL, NULL, MAX(n), NULL, NULL, NULL FROM top_{name}"
        )
    for name in dimensions:
        source, column, count, join, names = sources[name]
        where = f"WHERE {source}.{column} IN (SELECT k FROM top_{name})" if name in limited else ""
        labels = ", ".join([*names, *["NULL"] * (3 - len(names))])
        selects.append(
            f"SELECT {_CODES[name]}, a.k, a.bucket, a.stage, a.qty, a.val, a.n, {labels} FROM "
            f"(SELECT {source}.{column} AS k, {source}.bucket, {source}.stage, SUM({source}.qty) AS qty, "
            f"SUM({source}.val) AS val, {count} AS n FROM {source} {where} "
            f"GROUP BY {source}.{column}, {source}.bucket, {source}.stage) a {join}"
        )
    selects.append(
        f"SELECT {_TOTALS}, NULL, g.bucket, g.stage, SUM(g.qty), SUM(g.val), SUM(g.n_registration), NULL, NULL, NULL "
        "FROM g GROUP BY g.bucket, g.stage"
    )
    # the counts come last: a UNION takes a column's type from its first branches, and a NULL has none
    sql = f"WITH {', '.join(ctes)} {' UNION ALL '.join(selects + counts)}"
    return sql, params


def _figures(months, weights, rows_in, dimensions):
    """Rows per dimension, the totals and the row counts from the statement's result."""
    index = {m.key: i for i, m in enumerate(months)}
    names = {code: name for name, code in _CODES.items()}
    rows: dict[str, dict] = {name: {} for name in dimensions}
    totals = Row(pk=None, label="All", months=[Figures() for _ in months])
    counts: dict[str, int] = {}
    for code, key, bucket, stage, quantity, value, registrations, label, detail, detail2 in rows_in:
        if code == _COUNT:
            counts[names[key]] = int(registrations or 0)
            continue
        if code == _TOTALS:
            row = totals
        else:
            found = rows[names[code]]
            row = found.get(key)
            if row is None:
                detail = " · ".join(str(d) for d in (detail, detail2) if d)
                row = found[key] = Row(pk=key, label=label or "", detail=detail, months=[Figures() for _ in months])
        figures = Figures.weighed(
            value=value, quantity=quantity, registrations=int(registrations), weight=_weight(weights, stage)
        )
        bucket = int(bucket)
        if bucket == PAST:
            row.past.add(figures)
        else:
            (row.later if bucket == LATER else row.months[index[bucket]]).add(figures)
            row.total.add(figures)
    return rows, totals, counts


def _execute(registrations, today, months, product_line, weights, **options) -> list[tuple]:
    connection = connections[registrations.db]
    try:
        sql, params = _statement(registrations, today, months, product_line, weights, connection=connection, **options)
    except EmptyResultSet:  # registrations.none(), or a filter no registration can match
        return []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def totals_by_dealer(registrations: QuerySet, *, today: date) -> list[tuple]:
    """(dealer pk, bucket, stage, quantity, value, registrations) of the open protected
    registrations of `registrations`: what the forecast's totals add up from, per dealer (one
    query). tiers.rollup keeps them for a day's build (forecast_totals)."""
    found = _execute(
        registrations, today, forecast_months(today), None, {}, dimensions=[], sort="name", limit=None, per_dealer=True
    )
    return [row[1:7] for row in found]


# the columns of lines_by_dealer
LINES_BY_DEALER = ("org", "pline", "product", "bucket", "stage", "qty", "val", "n_line", "n_product")


def lines_by_dealer(registrations: QuerySet, *, today: date) -> list[tuple]:
    """(dealer pk, product line pk, product pk, bucket, stage, quantity, value, registrations first
    of their product line here, registrations of the product) of the lines of the open protected
    registrations of `registrations`: what the product lines and products add up from, per dealer
    (one query; tiers.rollup keeps them for a day's build). The registrations of a product line are
    the sum of its products' first column, those of a product its second."""
    return _execute(
        registrations,
        today,
        forecast_months(today),
        None,
        {},
        dimensions=["products"],
        sort="name",
        limit=None,
        per_dealer=True,
    )


@dataclass
class Sums:
    """What a forecast is built from without its statement (tiers.rollup keeps them): per dimension
    {key: {(bucket, stage): [quantity, value in cents, registrations]}}, the totals the same way,
    and the names per dimension {key: (label, detail, detail)}."""

    dimensions: dict[str, Mapping]
    totals: dict
    names: dict[str, dict]
    # per limited dimension, where the caller has them: the keys with any cell in the forecast
    # proper (not past), and every key in the statement's order by name
    ahead: dict[str, set] = field(default_factory=dict)
    order: dict[str, list] = field(default_factory=dict)


@dataclass(frozen=True)
class SortFigure:
    """What a numeric sort orders by (as _sort_figure sums it in SQL): the cells outside the past,
    of one bucket only where given, their value (in cents: the same order) or quantity (`measure`
    0: quantity, 1: cents), weighted by stage or not."""

    only: int | None
    measure: int
    weights: dict[str, Decimal] | None

    @classmethod
    def of(cls, sort: str, months: list[Month], weights: dict[str, Decimal]) -> SortFigure:
        column = sort.lstrip("-")
        only = LATER if column == "later" else {m.iso: m.key for m in months}.get(column)
        return cls(
            only=only,
            measure=0 if column == "units" else 1,
            weights=None if column == "unweighted" else weights,
        )

    def counts(self, bucket) -> bool:
        return bucket != PAST and (self.only is None or bucket == self.only)

    def total(self, per_stage: dict) -> Decimal:
        """The figure from {stage: summed measure} (whole numbers: the weights apply once a stage)."""
        if self.weights is None:
            return Decimal(sum(per_stage.values()))
        return sum((measure * _weight(self.weights, stage) for stage, measure in per_stage.items()), Decimal(0))

    def __call__(self, cells: dict) -> Decimal:
        per_stage: dict = {}
        for (bucket, stage), figures in cells.items():
            if self.counts(bucket):
                per_stage[stage] = per_stage.get(stage, 0) + figures[self.measure]
        return self.total(per_stage)


def _rows_of(sums: Sums, months, weights, *, dimensions, sort, limit) -> list[tuple]:
    """The rows the statement would give (see _statement) for `sums`: the first `limit` keys of the
    limited dimensions in the order of `sort` (its figure, then the names, then the key, as the
    statement orders them), and their counts."""
    result = []
    descending = sort.startswith("-")
    for name in dimensions:
        keyed, names = sums.dimensions[name], sums.names[name]
        keys = list(keyed)
        if name in LIMITED and limit is not None and name in sums.order and sort == "name":
            ahead_keys = sums.ahead[name]
            ahead = [k for k in sums.order[name] if k in ahead_keys]
            result.append((_COUNT, _CODES[name], None, None, None, None, len(ahead), None, None, None))
            keys = ahead[:limit]
        elif name in LIMITED and limit is not None:
            if name in sums.ahead:
                ahead = [k for k in keys if k in sums.ahead[name]]
            else:
                ahead = [k for k in keys if any(bucket != PAST for bucket, _stage in keyed[k])]

            def label(k, names=names):
                return tuple((n or "").lower() for n in names.get(k, ()))

            if sort.lstrip("-") == "name":
                ahead.sort(key=lambda k: k)
                ahead.sort(key=label, reverse=descending)
            else:
                ahead.sort(key=lambda k: (label(k), k))
                figure = SortFigure.of(sort, months, weights)
                # a Mapping of many keys may give every key's figure at once (tiers.rollup)
                if hasattr(keyed, "figures"):
                    values = keyed.figures(figure)
                else:
                    values = {k: figure(keyed[k]) for k in ahead}
                ahead.sort(key=values.__getitem__, reverse=descending)
            result.append((_COUNT, _CODES[name], None, None, None, None, len(ahead), None, None, None))
            keys = ahead[:limit]
        for k in keys:
            label_, detail, detail2 = (*names.get(k, ()), None, None, None)[:3]
            for (bucket, stage), (quantity, cents, n) in keyed[k].items():
                value = Decimal(cents).scaleb(-2)
                result.append((_CODES[name], k, bucket, stage, quantity, value, n, label_, detail, detail2))
    for (bucket, stage), (quantity, cents, n) in sums.totals.items():
        result.append((_TOTALS, None, bucket, stage, quantity, Decimal(cents).scaleb(-2), n, None, None, None))
    return result


def totals_of(registrations: QuerySet, *, today: date) -> list[tuple]:
    """(bucket, stage, quantity, value, registrations) of the open protected registrations of
    `registrations`, as forecast(totals=…) takes them (one query)."""
    found = _execute(registrations, today, forecast_months(today), None, {}, dimensions=[], sort="name", limit=None)
    return [row[2:7] for row in found]


def _compute(registrations, today, months, product_line, weights, *, dimensions, sort, limit, given=None, sums=None):
    if given is not None:
        result = [(_TOTALS, None, *row, None, None, None) for row in given]
    elif sums is not None:
        result = _rows_of(sums, months, weights, dimensions=dimensions, sort=sort, limit=limit)
    else:
        result = _execute(
            registrations, today, months, product_line, weights, dimensions=dimensions, sort=sort, limit=limit
        )
    rows, totals, counts = _figures(months, weights, result, dimensions)
    ordered = {}
    for name, found in rows.items():
        ordered[name] = _by_name(found.values())
        if name in counts:  # limited: in the requested order, as the SQL chose them
            ordered[name].sort(key=sort_key(sort, months), reverse=sort.startswith("-"))
    more = {name: max(0, count - len(ordered[name])) for name, count in counts.items()}
    return ordered, totals, more


def forecast(
    registrations: QuerySet,
    *,
    today: date | None = None,
    product_line=None,
    weights: dict[str, Decimal] | None = None,
    sort: str = "name",
    limit: int | None = None,
    totals_only: bool = False,
    totals: list[tuple] | None = None,
    sums: Sums | None = None,
) -> Forecast:
    """The forecast of `registrations` (already scoped to the user and filtered): one query, and one
    for the weights unless given.

    Without a limit every row of every dimension is there, in name order; the dealers (thousands
    for a channel admin at scale) are read on first use of `.dealers`, with one query more, so a
    caller that needs only the totals (the region dashboard) does not pay for them. With a limit,
    the products and the dealers hold only their first `limit` rows with a forecast proper (months
    or later) in the order of `sort` (see valid_sort), and `more` says how many more there are;
    the product lines, the regions and the totals are always complete. totals_only: the totals
    alone (every dimension empty), for a page that shows nothing else: a cheaper statement, or
    none where the caller has them (`totals`, as deals.forecast.totals_of gives them: the dashboards
    read them from what is kept for the roll-up's build, tiers.rollup.forecast_totals). sums: every
    dimension's figures, where the caller has them (the forecast page: tiers.rollup.forecast_sums),
    for a limited forecast of every product line: no statement either."""
    if totals is not None and not (totals_only and product_line is None):
        raise ValueError("totals= stand for the totals of every product line alone (totals_only)")
    if sums is not None and (totals_only or limit is None or product_line is not None):
        raise ValueError("sums= stand for every dimension of every product line, limited (the forecast page)")
    today = today or timezone.localdate()
    weights = weights if weights is not None else ProgrammeSettings.load().forecast_weights
    months = forecast_months(today)
    sort = valid_sort(sort, months)
    if totals_only:
        dimensions = []
    else:
        dimensions = list(_CODES) if limit is not None else ["product_lines", "products", "regions"]
    rows, summed, more = _compute(
        registrations,
        today,
        months,
        product_line,
        weights,
        dimensions=dimensions,
        sort=sort,
        limit=limit,
        given=totals,
        sums=sums,
    )

    def dealers() -> list[Row]:
        if totals_only:
            return []
        return _compute(
            registrations, today, months, product_line, weights, dimensions=["dealers"], sort=sort, limit=None
        )[0]["dealers"]

    return Forecast(
        today=today,
        months=months,
        weights=weights,
        totals=summed,
        more=more,
        _dealers=rows.get("dealers"),
        _load_dealers=dealers,
        **{name: rows.get(name, []) for name in ("product_lines", "products", "regions")},
    )


def past_close(
    registrations: QuerySet,
    *,
    today: date | None = None,
    product_line=None,
    weights: dict[str, Decimal] | None = None,
    limit: int = 100,
) -> list[PastClose]:
    """The protected registrations past their expected close date, the longest overdue first (one
    query). Their value is that of their lines (of one product line, when given)."""
    today = today or timezone.localdate()
    weights = weights if weights is not None else ProgrammeSettings.load().forecast_weights
    lines = RegistrationLine.objects.filter(registration=OuterRef("pk"))
    if product_line is not None:
        lines = lines.filter(product__line=product_line)

    def line_sum(name, output_field):
        sums = lines.order_by().values("registration").annotate(s=Sum(name)).values("s")
        return Coalesce(Subquery(sums, output_field=output_field), Value(0), output_field=output_field)

    overdue = (
        protected_registrations(registrations, today)
        .filter(expected_close_date__lt=today)
        .select_related("organisation", "customer")
        .annotate(
            line_value=line_sum("value", DecimalField(**MONEY)),
            line_quantity=line_sum("quantity", IntegerField()),
        )
        .order_by("expected_close_date", "pk")[:limit]
    )
    result = []
    for registration in overdue:
        weight = _weight(weights, registration.decision_stage)
        value = money(registration.line_value)
        result.append(
            PastClose(
                registration=registration,
                value=value,
                quantity=int(registration.line_quantity),
                weight=weight,
                weighted_value=money(value * weight / HUNDRED),
            )
        )
    return result


def export_rows(
    registrations: QuerySet,
    *,
    today: date | None = None,
    product_line=None,
    weights: dict[str, Decimal] | None = None,
) -> list[ExportRow]:
    """The forecast at its finest grain, for the CSV: one row per month bucket, product line,
    product, region, dealer and decision stage (one query, ordered by month then names)."""
    today = today or timezone.localdate()
    weights = weights if weights is not None else ProgrammeSettings.load().forecast_weights
    months = forecast_months(today)
    names = (
        "product__line__name",
        "product__sku",
        "product__name",
        "registration__organisation__region__name",
        "registration__organisation__name",
    )
    grouped = _grouped(
        forecast_lines(registrations, today, product_line), today, months, "product_id", *names
    ).order_by("bucket", *names, "stage")
    stages = dict(Registration.Stage.choices)
    rows = []
    for group in grouped:
        weight = _weight(weights, group["stage"])
        figures = Figures.weighed(
            value=group["value_sum"], quantity=group["quantity_sum"], registrations=0, weight=weight
        )
        rows.append(
            ExportRow(
                month=_bucket_label(int(group["bucket"])),
                product_line=group["product__line__name"],
                sku=group["product__sku"],
                product=group["product__name"],
                region=group["registration__organisation__region__name"],
                dealer=group["registration__organisation__name"],
                stage=stages.get(group["stage"], "not given"),
                quantity=figures.quantity,
                value=figures.value,
                weight=weight,
                weighted_quantity=money(figures.weighted_quantity),
                weighted_value=money(figures.weighted_value),
            )
        )
    return rows


def protected_list_url(params: dict, *, close_from: date | None = None, close_to: date | None = None) -> str:
    """The registration list behind a figure: protected today, closing in the given dates."""
    return protected_list_urls(params)(close_from, close_to)


def protected_list_urls(params: dict):
    """protected_list_url for many figures with the same `params` (a table row has 14): the path
    and the query are built once, the dates appended."""
    base = f"{reverse('deals:registration_list')}?" + urlencode(
        {**params, "status": Registration.Status.APPROVED, "protected": "true"}
    )

    def url(close_from: date | None = None, close_to: date | None = None) -> str:
        # an ISO date needs no quoting
        return (
            base
            + (f"&close_from={close_from.isoformat()}" if close_from else "")
            + (f"&close_to={close_to.isoformat()}" if close_to else "")
        )

    return url


def forecast_chart(result: Forecast, params: dict | None = None):
    """Weighted and unweighted value per month, as a server-drawn SVG (prm.charts); each month's
    bars link to the registrations behind them."""
    from prm import charts

    url = protected_list_urls(params or {})
    return charts.bar_chart(
        [
            charts.Bar(
                month.label.replace(" 20", " "),
                (figures.weighted_value, figures.value),
                url(month.first, month.last),
            )
            for month, figures in zip(result.months, result.totals.months, strict=True)
        ],
        series=("Weighted by decision stage", "Unweighted"),
        title="Forecast by expected close month: weighted by decision stage, and unweighted",
    )
