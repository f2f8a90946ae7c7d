"""The stage-weighted forecast, for production planning.

What counts: the open protected registrations (approved, protection running today), with their
lines. A registration counts at the weight of its decision stage (ProgrammeSettings: a late-stage
deal is likelier to close than one just found), by the month of its expected close date: the 12
months starting with this one, then one "later" bucket. A registration past its expected close
date is kept apart: the deal slipped, and counting it in this month would plan production for a
sale that did not happen when the dealer said it would.

"Today" is timezone.localdate(), the date in settings.TIME_ZONE, so at 00:30 on 1 January in
Amsterdam the forecast starts with January even though it is still 31 December in UTC.

The sums run in the database: one query per dimension, grouped by the dimension, the month bucket
and the decision stage, so the number of queries does not grow with the registrations or the
dealers. The weights are applied to those sums here, in Decimal, so the weighted figures are
exact on SQLite (which sums decimals as floats) as well as on PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.db.models import Case, Count, DecimalField, F, IntegerField, OuterRef, QuerySet, Subquery, Sum, Value, When
from django.db.models.functions import Coalesce, ExtractMonth, ExtractYear
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
    dealers: list[Row]
    totals: Row  # every line once (the sum of the regions)

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


def _bucket(today: date, horizon_end: date) -> Case:
    """A line's bucket, by its registration's expected close date: its month, LATER or PAST."""
    close = "registration__expected_close_date"
    return Case(
        When(registration__expected_close_date__lt=today, then=Value(PAST)),
        When(registration__expected_close_date__gt=horizon_end, then=Value(LATER)),
        default=ExtractYear(close) * 100 + ExtractMonth(close),
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


def _grouped(lines: QuerySet, today: date, horizon_end: date, *fields: str):
    return (
        lines.annotate(bucket=_bucket(today, horizon_end), stage=F("registration__decision_stage"))
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


# Per dimension: the key, the label and the details shown beside it (read by values(), so a row
# costs no query of its own).
DIMENSIONS = {
    "product_lines": ("product__line_id", "product__line__name", ()),
    "products": ("product_id", "product__name", ("product__sku", "product__line__name")),
    "regions": ("registration__organisation__region_id", "registration__organisation__region__name", ()),
    "dealers": (
        "registration__organisation_id",
        "registration__organisation__name",
        ("registration__organisation__region__name",),
    ),
}


def _rows(grouped, months: list[Month], weights: dict[str, Decimal], key: str, label: str, details: tuple) -> list[Row]:
    index = {m.key: i for i, m in enumerate(months)}
    rows: dict[int | None, Row] = {}
    for group in grouped:
        row = rows.get(group[key])
        if row is None:
            detail = " · ".join(str(group[d]) for d in details if group[d])
            row = rows[group[key]] = Row(
                pk=group[key], label=group[label] or "", detail=detail, months=[Figures() for _ in months]
            )
        figures = Figures.weighed(
            value=group["value_sum"],
            quantity=group["quantity_sum"],
            registrations=group["registration_count"],
            weight=_weight(weights, group["stage"]),
        )
        bucket = int(group["bucket"])  # PostgreSQL's EXTRACT gives a numeric
        if bucket == PAST:
            row.past.add(figures)
        else:
            (row.later if bucket == LATER else row.months[index[bucket]]).add(figures)
            row.total.add(figures)
    return sorted(rows.values(), key=lambda r: (r.label.casefold(), r.detail.casefold(), r.pk or 0))


def _sum_rows(rows: list[Row], months: list[Month], label: str) -> Row:
    totals = Row(pk=None, label=label, months=[Figures() for _ in months])
    for row in rows:
        for cell, figures in zip(totals.months, row.months, strict=True):
            cell.add(figures)
        totals.later.add(row.later)
        totals.past.add(row.past)
        totals.total.add(row.total)
    return totals


def forecast(
    registrations: QuerySet,
    *,
    today: date | None = None,
    product_line=None,
    weights: dict[str, Decimal] | None = None,
) -> Forecast:
    """The forecast of `registrations` (already scoped to the user and filtered): four grouped
    queries, and one for the weights unless given."""
    today = today or timezone.localdate()
    weights = weights if weights is not None else ProgrammeSettings.load().forecast_weights
    months = forecast_months(today)
    lines = forecast_lines(registrations, today, product_line)
    dimensions = {}
    for name, (key, label, details) in DIMENSIONS.items():
        grouped = _grouped(lines, today, months[-1].last, key, label, *details)
        dimensions[name] = _rows(grouped, months, weights, key, label, details)
    # Every line lies in exactly one region (a registration has one dealer), so the regions add
    # up to the whole, registrations counted once.
    totals = _sum_rows(dimensions["regions"], months, "All")
    return Forecast(today=today, months=months, weights=weights, totals=totals, **dimensions)


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
    horizon_end = forecast_months(today)[-1].last
    names = (
        "product__line__name",
        "product__sku",
        "product__name",
        "registration__organisation__region__name",
        "registration__organisation__name",
    )
    grouped = _grouped(
        forecast_lines(registrations, today, product_line), today, horizon_end, "product_id", *names
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
    query = {**params, "status": Registration.Status.APPROVED, "protected": "true"}
    if close_from:
        query["close_from"] = close_from.isoformat()
    if close_to:
        query["close_to"] = close_to.isoformat()
    return f"{reverse('deals:registration_list')}?{urlencode(query)}"


def forecast_chart(result: Forecast, params: dict | None = None):
    """Weighted and unweighted value per month, as a server-drawn SVG (prm.charts); each month's
    bars link to the registrations behind them."""
    from prm import charts

    return charts.bar_chart(
        [
            charts.Bar(
                month.label.replace(" 20", " "),
                (figures.weighted_value, figures.value),
                protected_list_url(params or {}, close_from=month.first, close_to=month.last),
            )
            for month, figures in zip(result.months, result.totals.months, strict=True)
        ],
        series=("Weighted by decision stage", "Unweighted"),
        title="Forecast by expected close month: weighted by decision stage, and unweighted",
    )
