"""Channel KPIs per dealer, per region and for the whole programme, over a chosen period.

Every figure comes from a fixed number of aggregate queries grouped by the level asked for (the
dealer, its region, or nothing), so a page costs the same number of queries for 10 dealers as for
10,000. Where SQLite lacks an aggregate (a median), the rows are fetched sorted and the median is
taken in Python: the same answer as PostgreSQL's percentile_cont(0.5).

The definitions, in one place (the dashboards print them beside the figures):

- revenue: the vendor's sales to the dealer (sold_on in the period); growth: against the same
  period a year earlier, None when that was zero;
- product mix: each product line's share of that revenue;
- average deal size: the mean won value of the registrations won in the period;
- registrations: registrations submitted in the period (local dates);
- registration-to-close ratio: of the registrations submitted in the period that were approved and
  have since ended (won, lost or expired), the share won;
- open pipeline: the expected value of the registrations protected now (not period-bound);
- cycle time: mean days from first submission to the won date, of those won in the period;
- review SLA: of the registrations decided in the period, the share decided within the review
  window, and the median working hours to the decision;
- certification coverage: certifications held at the end of the period against those the dealer's
  tier asks for (its minimum, else the programme's target), capped at 100 %;
- portal log-ins: log-ins of the dealer's people in the period, and how many people;
- customer satisfaction: the mean score (1–5) recorded in the period.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import (
    Aggregate,
    BigIntegerField,
    Case,
    Count,
    DecimalField,
    F,
    IntegerField,
    Q,
    Sum,
    Value,
    When,
)
from django.utils import timezone

from dealers.models import Organisation
from deals.models import Registration
from tiers.models import CertificationHolding, SatisfactionScore, Tier, TierProgramme
from tiers.rollup import (
    Basis,
    Figures,
    in_period,
    pipeline_figures,
    registration_figures,
    sales_figures,
    whole_regions_kept,
    within,
)

ZERO = Decimal("0")
HUNDRED = Decimal("100")
CENT = Decimal("0.01")
Status = Registration.Status
ENDED_AFTER_APPROVAL = (Status.WON, Status.LOST, Status.EXPIRED)

LEVELS = ("dealer", "region", "programme")


def _q(value, unit=CENT) -> Decimal:
    return Decimal(value).quantize(unit, rounding=ROUND_HALF_UP)


def _share(part, whole) -> Decimal | None:
    return _q(Decimal(part) / Decimal(whole) * HUNDRED) if whole else None


@dataclass(frozen=True)
class Period:
    """A span of local dates, both ends included."""

    start: date
    end: date

    @classmethod
    def trailing_year(cls, today: date | None = None) -> Period:
        today = today or timezone.localdate()
        return cls(today - timedelta(days=364), today)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous_year(self) -> Period:
        """The same span one year earlier (29 February falls back to the 28th)."""

        def back(day: date) -> date:
            try:
                return day.replace(year=day.year - 1)
            except ValueError:
                return day.replace(year=day.year - 1, day=28)

        return Period(back(self.start), back(self.end))

    def query(self) -> str:
        return f"start={self.start.isoformat()}&end={self.end.isoformat()}"


@dataclass
class Kpis:
    key: int | None
    label: str = ""
    region: str = ""
    revenue: Decimal = ZERO
    revenue_previous: Decimal = ZERO
    product_mix: list[tuple[str, Decimal, Decimal]] = field(default_factory=list)  # line, amount, share %
    average_deal: Decimal | None = None
    registrations: int = 0
    closed: int = 0
    won: int = 0
    pipeline: Decimal = ZERO
    pipeline_count: int = 0
    cycle_days: Decimal | None = None
    decided: int = 0
    decided_in_time: int = 0
    median_review_hours: Decimal | None = None
    certifications_held: int = 0
    certifications_asked: int = 0
    logins: int = 0
    login_people: int = 0
    satisfaction: Decimal | None = None
    satisfaction_count: int = 0
    dealers: int = 0

    @property
    def growth(self) -> Decimal | None:
        if self.revenue_previous <= 0:
            return None
        return _q((self.revenue - self.revenue_previous) / self.revenue_previous * HUNDRED)

    @property
    def close_ratio(self) -> Decimal | None:
        return _share(self.won, self.closed)

    @property
    def sla_compliance(self) -> Decimal | None:
        return _share(self.decided_in_time, self.decided)

    @property
    def certification_coverage(self) -> Decimal | None:
        return _share(min(self.certifications_held, self.certifications_asked), self.certifications_asked)


# --- grouping ------------------------------------------------------------------------------------


def _group(queryset, key: str | None, **aggregates) -> dict:
    """{group key: {aggregate: value}} in one query; key None is the whole programme."""
    if key is None:
        return {None: queryset.aggregate(**aggregates)}
    return {row.pop("_key"): row for row in queryset.values(_key=F(key)).order_by().annotate(**aggregates)}


class _Median(Aggregate):
    function = "PERCENTILE_CONT"
    template = "%(function)s(0.5) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = DecimalField()


def medians(queryset, key: str | None, field_name: str) -> dict:
    """The median of `field_name` per group: percentile_cont on PostgreSQL, sorted rows elsewhere."""
    queryset = queryset.exclude(**{f"{field_name}__isnull": True})
    if connection.vendor == "postgresql":
        return {k: _q(v["m"]) for k, v in _group(queryset, key, m=_Median(field_name)).items() if v["m"] is not None}
    values: dict = defaultdict(list)
    group = F(key) if key else None
    rows = (
        queryset.annotate(_key=group).values_list("_key", field_name)
        if group is not None
        else ((None, v) for v in queryset.values_list(field_name, flat=True))
    )
    for k, value in rows:
        values[k].append(Decimal(value))
    return {k: _q(statistics.median(v)) for k, v in values.items()}


# --- the KPIs -------------------------------------------------------------------------------------


KEY_PATHS = {  # level → (path from an organisation-owned row, path from a sale)
    "dealer": ("organisation_id", "reseller_id"),
    "region": ("organisation__region_id", "reseller__region_id"),
    "programme": (None, None),
}


def kpis(
    organisations, period: Period, level: str = "dealer", today: date | None = None, *, with_medians: bool = True
) -> dict:
    """The KPIs of the given organisations (a queryset, already scoped to the viewer) over
    `period`, grouped by `level`: {dealer or region pk (None for the programme): Kpis}. Dealers
    or regions without any data are included with zeros. with_medians=False leaves the median review
    time out (None): a page that does not show it need not sort a year of decisions for it."""
    return _kpis(organisations, period, level, today, with_medians=with_medians, totals=False)[0]


def kpis_with_totals(
    organisations,
    period: Period,
    level: str = "dealer",
    today: date | None = None,
    *,
    with_medians: bool = True,
) -> tuple[dict, Kpis]:
    """kpis() at `level` and, with them, the totals of all the organisations: the same Kpis as
    kpis(organisations, period, "programme", ...)[None], added up from the groups' own sums (the
    median review time and the people logging in, which do not add up, asked apart), so a page
    with a table and its totals does not count everything twice."""
    return _kpis(organisations, period, level, today, with_medians=with_medians, totals=True)


def _kpis(
    organisations,
    period: Period,
    level: str,
    today: date | None,
    *,
    with_medians: bool,
    totals: bool,
):
    if level not in LEVELS:
        raise ValueError(level)
    today = today or timezone.localdate()
    org_key, sale_key = KEY_PATHS[level]
    organisations = whole_regions_kept(organisations, organisations.filter(kind=Organisation.Kind.RESELLER))
    result: dict = {}
    if level == "dealer":
        for pk, name, region in organisations.values_list("pk", "name", "region__name"):
            result[pk] = Kpis(key=pk, label=name, region=region or "", dealers=1)
    elif level == "region":
        for row in organisations.values("region_id", "region__name").order_by().annotate(n=Count("pk")):
            result[row["region_id"]] = Kpis(key=row["region_id"], label=row["region__name"], dealers=row["n"])
    else:
        result[None] = Kpis(key=None, label="Programme", dealers=organisations.count())
    # the totals, when asked and not the one row already: every group adds to them
    total = Kpis(key=None, label="Programme", dealers=sum(r.dealers for r in result.values()))
    adding = totals and level != "programme"

    def row(k) -> Kpis | None:
        return result.get(k)

    # revenue, this period and the year before, and the product mix (tiers.rollup)
    previous = period.previous_year()
    # (to the cent: SQLite adds decimals up as floats)
    by_line: dict = defaultdict(Decimal)
    for (k, line), amount in sales_figures(organisations, period.start, period.end, sale_key, by_line=True).items():
        if r := row(k):
            r.revenue += _q(amount)
            r.product_mix.append((line, _q(amount), ZERO))
            by_line[line] += Decimal(amount)
    revenue_previous = None
    for k, amount in sales_figures(organisations, previous.start, previous.end, sale_key).items():
        if r := row(k):
            r.revenue_previous = _q(amount)
            revenue_previous = (revenue_previous or ZERO) + Decimal(amount)
    if adding:
        for line, amount in by_line.items():
            total.revenue += _q(amount)
            total.product_mix.append((line, _q(amount), ZERO))
        if revenue_previous is not None:
            total.revenue_previous = _q(revenue_previous)
    for r in [*result.values(), total]:
        r.product_mix.sort(key=lambda item: (-item[1], item[0]))
        r.product_mix = [(name, amount, _share(amount, r.revenue) or ZERO) for name, amount, _ in r.product_mix]

    # registrations: the additive figures (tiers.rollup), the pipeline now, the median review time
    registrations = Registration.objects.filter(organisation__in=organisations)
    all_figures = Figures()

    def set_figures(r: Kpis, f: Figures) -> None:
        r.registrations, r.closed, r.won = f.submitted, f.closed, f.won
        r.average_deal = _q(f.average_deal) if f.average_deal is not None else None
        r.cycle_days = _q(f.cycle_days, Decimal("0.1")) if f.cycle_days is not None else None
        r.decided, r.decided_in_time = f.decided, f.in_time

    for k, f in registration_figures(organisations, period.start, period.end, org_key).items():
        if r := row(k):
            set_figures(r, f)
            if adding:
                all_figures.add(vars(f))
    if adding:
        set_figures(total, all_figures)
    # whole regions: from what is kept for the roll-up's build and the day (tiers.rollup), else live
    pipeline = pipeline_figures(organisations, today, org_key) if level != "dealer" else None
    if pipeline is None:
        protected = Q(status=Status.APPROVED, protected_until__gte=today)
        pipeline = {
            k: (v["pipeline"], v["pipeline_count"])
            for k, v in _group(
                # COUNT(*), not of the pk: the pipeline index (protected_until, with the dealer and the
                # value) then answers alone, without reading 30,000 rows of the table (50 → 25 ms for a
                # region)
                registrations.filter(protected),
                org_key,
                pipeline=Sum("expected_value"),
                pipeline_count=Count("*"),
            ).items()
        }
    for k, (value, count) in pipeline.items():
        if r := row(k):
            r.pipeline, r.pipeline_count = value or ZERO, count
            total.pipeline += r.pipeline
            total.pipeline_count += r.pipeline_count
    for r in [*result.values(), total]:  # to the cent, however summed (SQLite: '7000'; kept: '7000.00')
        r.pipeline = _q(r.pipeline)
    decided_in = in_period(Basis.DECIDED, period.start, period.end)
    if with_medians:
        for k, m in medians(registrations.filter(decided_in), org_key, "review_working_hours").items():
            if r := row(k):
                r.median_review_hours = m
        if adding:
            total.median_review_hours = medians(registrations.filter(decided_in), None, "review_working_hours").get(
                None
            )

    # certifications held at the end of the period, against what each dealer's tier asks
    programme = TierProgramme.load()
    if level != "dealer":  # per region or for the programme: added up in the database
        for k, (held_, asks) in certification_coverage(organisations, period.end, today, programme, level).items():
            if r := row(k):
                r.certifications_held, r.certifications_asked = held_, asks
                total.certifications_held += held_
                total.certifications_asked += asks
    else:
        held, asked = _certifications_per_dealer(organisations, period.end, today, programme)
        for pk in organisations.values_list("pk", flat=True):
            if r := row(pk):
                # (a dealer added since the tiers were read asks the programme's target)
                asks = asked.get(pk, programme.certifications_target)
                r.certifications_held = min(held.get(pk, 0), asks)
                r.certifications_asked = asks
                total.certifications_held += r.certifications_held
                total.certifications_asked += asks

    # portal log-ins and customer satisfaction (a mean of the scores: their sum over their number)
    for k, (count, people) in _logins(organisations, period, org_key).items():
        if r := row(k):
            r.logins, r.login_people = count, people
            total.logins += count
    if adding:  # a person can log in for two dealers: the people are counted again, once
        total.login_people = _logins(organisations, period, None).get(None, (0, 0))[1]
    scores = SatisfactionScore.objects.filter(
        organisation__in=organisations, recorded_on__gte=period.start, recorded_on__lte=period.end
    )
    score_sum = 0
    for k, v in _group(scores, org_key, total=Sum("score"), n=Count("pk")).items():
        if (r := row(k)) and v["n"]:
            r.satisfaction, r.satisfaction_count = _q(Decimal(v["total"]) / v["n"]), v["n"]
            score_sum += v["total"]
            total.satisfaction_count += v["n"]
    if adding and total.satisfaction_count:
        total.satisfaction = _q(Decimal(score_sum) / total.satisfaction_count)
    return result, (total if adding else result[None] if level == "programme" else None)


def applied_tiers(organisations, today: date) -> dict[int, Tier]:
    """The tier that applies to each dealer now (an override included; never evaluated: the
    lowest tier), in two queries."""
    return {pk: tier for pk, _status, tier in applied_tiers_with_status(organisations, today)}


def applied_tiers_with_status(organisations, today: date) -> list[tuple[int, str, Tier]]:
    """(pk, status, the tier that applies now) of each organisation, read together with its
    standing in one query; none without any tier."""
    tiers = {t.pk: t for t in Tier.objects.all()}
    if not tiers:
        return []
    lowest = max(tiers.values(), key=lambda t: t.rank)
    result = []
    rows = organisations.values_list(
        "pk", "status", "standing__tier_id", "standing__override_tier_id", "standing__override_until"
    )
    for pk, status, tier_id, override_tier_id, override_until in rows:  # as DealerStanding.override_active
        active = override_tier_id and override_until and override_until >= today
        result.append((pk, status, tiers[override_tier_id] if active else tiers[tier_id] if tier_id else lowest))
    return result


def _certifications_per_dealer(organisations, end: date, today: date, programme) -> tuple[dict, dict]:
    """({dealer pk: certifications held on `end`}, {dealer pk: what its tier asks})."""
    held = {
        row_["organisation_id"]: row_["n"]
        for row_ in CertificationHolding.objects.filter(organisation__in=organisations, valid_until__gte=end)
        .values("organisation_id")
        .order_by()
        .annotate(n=Count("certification", distinct=True))
    }
    return held, _certifications_asked(organisations, programme, today)


def applied_tier(tiers: dict[int, Tier], today: date) -> Case:
    """The pk of the tier that applies now to an organisation, as an expression of its standing: as
    applied_tiers_with_status has it (an active override, else the tier held, else the lowest)."""
    lowest = max(tiers.values(), key=lambda t: t.rank)
    return Case(
        When(
            standing__override_tier__isnull=False,
            standing__override_until__gte=today,
            then=F("standing__override_tier_id"),
        ),
        When(standing__tier__isnull=False, then=F("standing__tier_id")),
        default=Value(lowest.pk),
        output_field=BigIntegerField(),
    )


def applied_tier_pks(organisations, today: date) -> tuple[dict[int, Tier], list[tuple[int, str, int]]]:
    """({tier pk: tier}, [(pk, status, the pk of the tier that applies now)] of each organisation):
    applied_tiers_with_status with the choice made in the database (applied_tier), for thousands
    of organisations; none without any tier."""
    tiers = {t.pk: t for t in Tier.objects.all()}
    if not tiers:
        return tiers, []
    return tiers, list(organisations.order_by().values_list("pk", "status", applied_tier(tiers, today)))


def certification_coverage(organisations, end: date, today: date, programme, level: str) -> dict:
    """{region pk (level "region") or None ("programme"): (certifications held, asked)} of the
    dealers of `organisations`: each dealer's distinct certifications held on `end`, up to what its
    tier asks (the tier's minimum, else the programme's target), added up. One query: the same as
    adding up _certifications_per_dealer per dealer, without reading 10,000 dealers for it."""
    target = programme.certifications_target
    tiers = {t.pk: t for t in Tier.objects.all()}
    if tiers:
        dealers = organisations.annotate(_tier=applied_tier(tiers, today)).annotate(
            _asks=Case(
                *(When(_tier=pk, then=Value(tier.min_certifications or target)) for pk, tier in tiers.items()),
                default=Value(target),
                output_field=IntegerField(),
            )
        )
    else:
        dealers = organisations.annotate(_asks=Value(target, output_field=IntegerField()))
    # the dealers (compiled by the ORM: the scope, their tier's ask) joined to their holdings counted
    # per organisation; a correlated count per dealer took 47 ms for 10,000 of them, this 15
    try:
        dealers_sql, params = (
            dealers.order_by()
            .values("_asks", _id=F("pk"), _region=F("region_id"))
            .query.get_compiler(connection=connection)
            .as_sql()
        )
    except EmptyResultSet:  # organisations.none()
        return {}
    holding = connection.ops.quote_name(CertificationHolding._meta.db_table)
    held = "COALESCE(h.n, 0)"
    group, group_by = ("d._region", "GROUP BY d._region") if level == "region" else ("NULL", "")
    sql = (
        f"SELECT {group}, SUM(CASE WHEN {held} < d._asks THEN {held} ELSE d._asks END), SUM(d._asks) "
        f"FROM ({dealers_sql}) d LEFT JOIN (SELECT organisation_id, COUNT(DISTINCT certification_id) AS n "
        f"FROM {holding} WHERE valid_until >= %s GROUP BY organisation_id) h ON h.organisation_id = d._id "
        f"{group_by}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, connection.ops.adapt_datefield_value(end)])
        found = cursor.fetchall()
    return {key: (int(held_), int(asked)) for key, held_, asked in found if asked is not None}


def tier_counts(organisations, today: date) -> dict[int, tuple[int, int]]:
    """{tier pk: (dealers it applies to now, those of them in a grace period)} (one query)."""
    tiers = {t.pk: t for t in Tier.objects.all()}
    if not tiers:
        return {}
    rows = (
        organisations.annotate(_tier=applied_tier(tiers, today))
        .order_by()
        .values("_tier")
        .annotate(n=Count("pk"), grace=Count("pk", filter=Q(standing__grace_started_on__isnull=False)))
    )
    return {row["_tier"]: (row["n"], row["grace"]) for row in rows}


def _certifications_asked(organisations, programme: TierProgramme, today: date) -> dict[int, int]:
    """What each dealer's tier asks: the tier's minimum number of certifications, else the
    programme's target (also without any tier)."""
    tiers = applied_tiers(organisations, today)
    if tiers:  # every organisation has one
        return {pk: tier.min_certifications or programme.certifications_target for pk, tier in tiers.items()}
    return {pk: programme.certifications_target for pk in organisations.values_list("pk", flat=True)}


def _logins(organisations, period: Period, key: str | None) -> dict:
    from dealers.models import LoginRecord

    records = LoginRecord.objects.filter(organisation__in=organisations).filter(
        within("at", period.start, period.end, timestamp=True)
    )
    return {
        k: (v["n"], v["people"])
        for k, v in _group(records, key, n=Count("pk"), people=Count("user", distinct=True)).items()
    }
