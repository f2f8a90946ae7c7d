"""Dashboards: the dealer's, the partner manager's and the regional director's, the KPI tables
with their CSV exports, and the lists behind every figure.

Each page runs a fixed number of queries (tests/test_dashboards.py counts them), whatever the
number of dealers and registrations. The figures come from tiers.kpis; charts are server-drawn SVG
(prm.charts), always beside a table with the same numbers.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Q, Sum
from django.db.models.functions import ExtractMonth, ExtractYear
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from dealers.filters import OrganisationFilter
from dealers.models import ImprovementPlan, Organisation, User
from dealers.selectors import plans_due
from dealers.views import staff_required
from deals.forecast import forecast, forecast_chart, protected_list_url
from deals.models import ProgrammeSettings, Registration
from deals.selectors import queue_summary
from prm import charts
from prm.csvexport import csv_response
from tiers.flags import flagged
from tiers.kpis import Kpis, Period, kpis, kpis_with_totals, medians, tier_counts
from tiers.models import Sale, Tier
from tiers.rollup import Basis, forecast_totals, in_period, registration_figures, review_hours_medians
from tiers.selectors import next_tier_gap

Status = Registration.Status
PAGE_SIZE = 25
MAX_PERIOD_DAYS = 5 * 366
EARLIEST = date(1900, 1, 1)  # the comparison with a year before needs a year before (there is none before year 1)


# --- the period ------------------------------------------------------------------------------------


class PeriodForm(forms.Form):
    start = forms.DateField(label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self):
        data = super().clean()
        start, end = data.get("start"), data.get("end")
        if start and end and start > end:
            raise forms.ValidationError("The period starts after it ends: swap the dates.")
        if start and end and (end - start).days > MAX_PERIOD_DAYS:
            raise forms.ValidationError("Choose a period of at most five years.")
        if (start and start < EARLIEST) or (end and end < EARLIEST):
            raise forms.ValidationError(f"Choose dates from {EARLIEST.year} on.")
        return data


def _period(request) -> tuple[Period, PeriodForm]:
    """The period asked for in the query string; the trailing 12 months when none (or a bad one)
    is given, with the form's errors shown."""
    default = Period.trailing_year()
    asked = "start" in request.GET or "end" in request.GET
    form = PeriodForm(request.GET if asked else None, initial={"start": default.start, "end": default.end})
    if asked and form.is_valid():
        start = form.cleaned_data["start"] or default.start
        end = form.cleaned_data["end"] or default.end
        if start > end:
            form.add_error(None, "The period starts after it ends: give both dates.")
        elif (end - start).days > MAX_PERIOD_DAYS:
            form.add_error(None, "Choose a period of at most five years.")
        else:
            return Period(start, end), form
    return default, form


def _presets(today: date) -> list[tuple[str, Period]]:
    return [
        ("Last 12 months", Period.trailing_year(today)),
        ("This year", Period(date(today.year, 1, 1), today)),
        ("Last year", Period(date(today.year - 1, 1, 1), date(today.year - 1, 12, 31))),
        ("Last 90 days", Period(today - timedelta(days=89), today)),
    ]


# --- helpers ---------------------------------------------------------------------------------------


def _months_back(today: date, n: int) -> list[tuple[int, int]]:
    """The n calendar months ending with this one, oldest first."""
    year, month = today.year, today.month
    months = []
    for _ in range(n):
        months.append((year, month))
        month -= 1
        if month == 0:
            year, month = year - 1, 12
    return list(reversed(months))


def _months_ahead(today: date, n: int) -> list[tuple[int, int]]:
    year, month = today.year, today.month
    months = []
    for _ in range(n):
        months.append((year, month))
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return months


def _month_label(year: int, month: int) -> str:
    return date(year, month, 1).strftime("%b %y")


def _month_end(year: int, month: int) -> date:
    return (date(year + month // 12, month % 12 + 1, 1)) - timedelta(days=1)


def figures_url(kind: str, period: Period | None = None, **params) -> str:
    """The list behind a figure: kind "sales" or a registration KPI code (see FIGURES)."""
    query = {k: v for k, v in params.items() if v not in (None, "")}
    if period is not None:
        query.update(start=period.start.isoformat(), end=period.end.isoformat())
    name = "tiers:figures_sales" if kind == "sales" else "tiers:figures_registrations"
    if kind != "sales":
        query["kpi"] = kind
    return f"{reverse(name)}?{urlencode(query)}"


def revenue_by_month(sales, today: date, months: int = 12) -> tuple[list[tuple[int, int]], dict, dict]:
    """Sales per calendar month for the last `months` months and the same months a year before."""
    span = _months_back(today, months)
    first = date(span[0][0] - 1, span[0][1], 1)
    totals = {
        (r["y"], r["m"]): r["total"]
        for r in sales.filter(sold_on__gte=first, sold_on__lte=today)
        .annotate(y=ExtractYear("sold_on"), m=ExtractMonth("sold_on"))
        .values("y", "m")
        .order_by()
        .annotate(total=Sum("amount"))
    }
    this = {ym: totals.get(ym, Decimal(0)) for ym in span}
    before = {ym: totals.get((ym[0] - 1, ym[1]), Decimal(0)) for ym in span}
    return span, this, before


def pipeline_by_month(registrations, today: date, months: int = 12) -> tuple[list, dict, Decimal, int]:
    """The protected pipeline (expected value) by expected close month; what is past its expected
    close date is returned apart."""
    span = _months_ahead(today, months)
    protected = registrations.filter(status=Status.APPROVED, protected_until__gte=today)
    rows = (
        protected.filter(expected_close_date__gte=today)
        .annotate(y=ExtractYear("expected_close_date"), m=ExtractMonth("expected_close_date"))
        .values("y", "m")
        .order_by()
        .annotate(total=Sum("expected_value"), n=Count("pk"))
    )
    by_month = {(r["y"], r["m"]): (r["total"], r["n"]) for r in rows}
    overdue = protected.filter(expected_close_date__lt=today).aggregate(total=Sum("expected_value"), n=Count("pk"))
    return span, by_month, overdue["total"] or Decimal(0), overdue["n"]


def _kpi_comparison(now: Kpis, before: Kpis) -> list[dict]:
    """Rows of a this-period / last-year table."""

    def row(label, a, b, unit="", lower_is_better=False):
        change = None
        if a is not None and b is not None:
            change = Decimal(a) - Decimal(b)
        return {"label": label, "now": a, "before": b, "unit": unit, "change": change, "lower": lower_is_better}

    return [
        row("Revenue", now.revenue, before.revenue, "€"),
        row("Registrations submitted", now.registrations, before.registrations),
        row("Registration-to-close ratio", now.close_ratio, before.close_ratio, "%"),
        row("Average deal size", now.average_deal, before.average_deal, "€"),
        row("Average cycle time (days)", now.cycle_days, before.cycle_days, "", lower_is_better=True),
        # holdings have an end date but no start date: last year's coverage cannot be told apart
        row("Certification coverage (now)", now.certification_coverage, None, "%"),
        row("Portal log-ins", now.logins, before.logins),
        row("Customer satisfaction (1–5)", now.satisfaction, before.satisfaction),
    ]


def _own_organisation(request) -> Organisation:
    membership = request.user.membership
    if membership is None or request.user.is_vendor_staff:
        raise Http404("Not found")
    return membership.organisation


# --- entry ---------------------------------------------------------------------------------------


@login_required
def dashboard(request):
    """/dashboard/: each person's own dashboard."""
    user = request.user
    if not user.is_vendor_staff:
        return redirect("tiers:dealer_dashboard")
    if user.is_regional_director or user.is_channel_admin:
        return redirect("tiers:region_dashboard")
    if user.is_partner_manager:
        return redirect("tiers:team_dashboard")
    raise Http404("Not found")  # the direct team has no dealers: its page is the protection lookup


# --- the dealer --------------------------------------------------------------------------------------


@login_required
def dealer_dashboard(request):
    organisation = _own_organisation(request)
    today = timezone.localdate()
    period, period_form = _period(request)
    own = Organisation.objects.filter(pk=organisation.pk)
    registrations = Registration.objects.filter(organisation=organisation)
    now = kpis(own, period, "dealer", today).get(organisation.pk) or Kpis(key=organisation.pk)
    before = kpis(own, period.previous_year(), "dealer", today).get(organisation.pk) or Kpis(key=organisation.pk)
    if request.GET.get("format") == "csv":
        return csv_response(
            f"figures-{period.start}-{period.end}.csv",
            [
                "figure",
                "unit",
                f"{period.start}..{period.end}",
                f"{period.previous_year().start}..{period.previous_year().end}",
            ],
            ((row["label"], row["unit"], row["now"], row["before"]) for row in _kpi_comparison(now, before)),
        )
    by_status = dict(registrations.values_list("status").order_by().annotate(n=Count("pk")))
    span, by_month, overdue_value, overdue_count = pipeline_by_month(registrations, today)
    months, this, last = revenue_by_month(Sale.objects.filter(reseller=organisation), today)
    expiring = (
        registrations.filter(
            status=Status.APPROVED, protected_until__gte=today, protected_until__lte=today + timedelta(days=14)
        )
        .select_related("customer")
        .order_by("protected_until")[:10]
    )
    context = {
        "organisation": organisation,
        "period": period,
        "period_form": period_form,
        "presets": _presets(today),
        "kpi": now,
        "comparison": _kpi_comparison(now, before),
        "previous": period.previous_year(),
        "by_status": [(s.value, s.label, by_status.get(s.value, 0)) for s in Status],
        "registration_total": sum(by_status.values()),
        "protection_days": ProgrammeSettings.load().default_protection_days,
        "expiring": expiring,
        "pipeline_rows": [(ym, _month_label(*ym), *by_month.get(ym, (Decimal(0), 0))) for ym in span],
        "overdue_value": overdue_value,
        "overdue_count": overdue_count,
        "pipeline_chart": charts.bar_chart(
            [
                charts.Bar(
                    _month_label(*ym),
                    (by_month.get(ym, (Decimal(0), 0))[0],),
                    protected_list_url({}, close_from=max(today, date(*ym, 1)), close_to=_month_end(*ym)),
                )
                for ym in span
            ],
            series=("Protected pipeline",),
            title="Protected pipeline by expected close month, next 12 months",
        ),
        "revenue_chart": charts.bar_chart(
            [charts.Bar(_month_label(*ym), (this[ym], last[ym])) for ym in months],
            series=("Last 12 months", "The year before"),
            title="Revenue per month against the same month a year earlier",
        ),
        "revenue_rows": [(_month_label(*ym), this[ym], last[ym]) for ym in months],
        "mix_chart": charts.share_chart(
            [(name, amount, share, "") for name, amount, share in now.product_mix],
            title="Product mix of the revenue in the period",
        )
        if now.product_mix
        else None,
        "tier_gap": next_tier_gap(organisation) if organisation.kind == Organisation.Kind.RESELLER else None,
        "plan": ImprovementPlan.objects.visible_to(request.user).open().filter(organisation=organisation).first(),
    }
    context["links"] = {
        code: figures_url(code, period) for code in ("submitted", "closed", "won", "won_in", "pipeline", "sales")
    }
    return render(request, "dashboards/dealer.html", context)


# --- the partner manager -------------------------------------------------------------------------------

SORTS = {
    "name": lambda k: k.label.lower(),
    "revenue": lambda k: k.revenue,
    "growth": lambda k: k.growth if k.growth is not None else Decimal("-1e9"),
    "registrations": lambda k: k.registrations,
    "close": lambda k: k.close_ratio if k.close_ratio is not None else Decimal(-1),
    "pipeline": lambda k: k.pipeline,
    "deal": lambda k: k.average_deal or Decimal(0),
    "cycle": lambda k: k.cycle_days if k.cycle_days is not None else Decimal("1e9"),
    "sla": lambda k: k.sla_compliance if k.sla_compliance is not None else Decimal(-1),
    "certifications": lambda k: k.certification_coverage if k.certification_coverage is not None else Decimal(-1),
    "logins": lambda k: k.logins,
    "satisfaction": lambda k: k.satisfaction or Decimal(0),
}
ASCENDING_FIRST = {"name", "cycle"}


def _sorted_rows(rows: list[Kpis], sort: str) -> tuple[list[Kpis], str]:
    key = sort.lstrip("-")
    if key not in SORTS:
        sort, key = "-revenue", "revenue"
    descending = sort.startswith("-")
    return sorted(rows, key=lambda k: (SORTS[key](k), k.label.lower()), reverse=descending), sort


KPI_COLUMNS = [  # sort key, header, CSV header
    ("name", "Dealer", "dealer"),
    ("revenue", "Revenue", "revenue_eur"),
    ("growth", "Growth", "growth_percent"),
    ("registrations", "Registrations", "registrations"),
    ("close", "Close ratio", "close_ratio_percent"),
    ("pipeline", "Open pipeline", "open_pipeline_eur"),
    ("deal", "Average deal", "average_deal_eur"),
    ("cycle", "Cycle (days)", "cycle_days"),
    ("sla", "Review SLA", "review_sla_percent"),
    ("certifications", "Certifications", "certification_coverage_percent"),
    ("logins", "Log-ins", "logins"),
    ("satisfaction", "Satisfaction", "satisfaction"),
]


def _kpi_csv_row(k: Kpis, extra=()) -> list:
    return [
        k.label,
        *extra,
        k.revenue,
        k.growth,
        k.registrations,
        k.close_ratio,
        k.pipeline,
        k.average_deal,
        k.cycle_days,
        k.sla_compliance,
        k.certification_coverage,
        k.logins,
        k.satisfaction,
    ]


@staff_required
def team_dashboard(request):
    """The partner manager's dashboard: the queue, their dealers ranked by the KPIs (sortable,
    filterable, exportable), and the dealers flagged for attention. A regional director or a
    channel admin sees the same page over every dealer they look after."""
    user = request.user
    if not (user.is_partner_manager or user.is_regional_director or user.is_channel_admin):
        raise Http404("Not found")
    today = timezone.localdate()
    period, period_form = _period(request)
    visible = Organisation.objects.visible_to(user).filter(kind=Organisation.Kind.RESELLER)
    dealer_filter = OrganisationFilter(request.GET or None, queryset=visible)
    for name in ("kind", "ordering"):
        dealer_filter.filters.pop(name, None)
    organisations = dealer_filter.qs
    rows, totals = kpis_with_totals(organisations, period, "dealer", today)
    ranked, sort = _sorted_rows(list(rows.values()), request.GET.get("sort", "-revenue"))
    if request.GET.get("format") == "csv":
        return csv_response(
            f"dealer-kpis-{period.start}-{period.end}.csv",
            ["dealer", "region", *[c[2] for c in KPI_COLUMNS[1:]]],
            (_kpi_csv_row(k, extra=(k.region,)) for k in ranked),
        )
    page = Paginator(ranked, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    sort_query = query.copy()
    sort_query.pop("sort", None)
    now = timezone.now()
    context = {
        "period": period,
        "period_form": period_form,
        "presets": _presets(today),
        "filter": dealer_filter,
        "page": page,
        "query": query.urlencode(),
        "sort_query": sort_query.urlencode(),
        "sort": sort,
        "columns": [(key, label, _next_sort(sort, key)) for key, label, _ in KPI_COLUMNS],
        "queue": queue_summary(user),
        "due_today": Registration.objects.review_queue_for(user)
        .filter(status=Status.SUBMITTED, review_due_at__gt=now, review_due_at__date=today)
        .count(),
        **_flagged_shown(request, flagged(organisations, period, rows)),
        "plans_due": plans_due(user)[:10],
        "open_plans": set(ImprovementPlan.objects.visible_to(user).open().values_list("organisation_id", flat=True)),
        "totals": totals,
        "period_query": period.query(),
        "filter_query": _filter_query(request),
        # the lists behind each row's figures (reversed once, not in each of the rows)
        "sales_url": reverse("tiers:figures_sales"),
        "registrations_url": reverse("tiers:figures_registrations"),
    }
    return render(request, "dashboards/team.html", context)


FLAGGED_SHOWN = 10  # the most flagged dealers first; "show all" lists every one


def _flagged_shown(request, dealers: list) -> dict:
    """The flagged dealers a team page lists: the first FLAGGED_SHOWN, or all with ?flagged=all."""
    everyone = request.GET.get("flagged") == "all"
    query = request.GET.copy()
    query.pop("flagged", None)
    return {
        "flagged": dealers if everyone else dealers[:FLAGGED_SHOWN],
        "flagged_count": len(dealers),
        "flagged_all": everyone,
        "flagged_shown": FLAGGED_SHOWN,
        "flagged_query": query.urlencode(),
    }


def _filter_query(request) -> str:
    """The dealer filter of the team dashboard, for the links behind its totals."""
    query = request.GET.copy()
    for name in list(query):
        if name not in (*DEALER_FILTERS, "region"):
            query.pop(name)
    return query.urlencode()


def _next_sort(current: str, key: str) -> str:
    if current.lstrip("-") == key:
        return key if current.startswith("-") else f"-{key}"
    return key if key in ASCENDING_FIRST else f"-{key}"


# --- the regional director --------------------------------------------------------------------------


@staff_required
def region_dashboard(request):
    """The regional director's dashboard (a channel admin's covers every region): the forecast of
    the region, escalations waiting, the review SLA of its partner managers, dealers by tier and
    the KPIs per region."""
    user = request.user
    if not (user.is_regional_director or user.is_channel_admin):
        raise Http404("Not found")
    today = timezone.localdate()
    period, period_form = _period(request)
    visible = Organisation.objects.visible_to(user).filter(kind=Organisation.Kind.RESELLER)
    registrations = Registration.objects.filter(organisation__in=visible)
    # the page shows the totals only: kept for the roll-up's build and the day where it can
    outlook = forecast(registrations, today=today, totals_only=True, totals=forecast_totals(visible, today))
    escalated = (
        registrations.filter(status=Status.ESCALATED)
        .select_related("organisation", "customer")
        .order_by("status_changed_at")[:20]
    )
    sla_rows = _sla_by_partner_manager(visible, period)
    # counted in the database: reading the tier of 10,000 dealers to count them took 30 ms
    counted = tier_counts(visible, today)
    by_tier = [(t, *counted.get(t.pk, (0, 0))) for t in Tier.objects.order_by("rank")]
    # the region table and its totals show no median review time (the partner managers' table does)
    regions, totals = kpis_with_totals(visible, period, "region", today, with_medians=False)
    if request.GET.get("format") == "sla-csv":
        return csv_response(
            f"review-sla-{period.start}-{period.end}.csv",
            ["partner_manager", "decided", "in_time", "share_in_time_percent", "median_working_hours"],
            ((r["name"], r["decided"], r["in_time"], r["share"], r["median"]) for r in sla_rows),
        )
    if request.GET.get("format") == "csv":
        return csv_response(
            f"region-kpis-{period.start}-{period.end}.csv",
            ["region", "dealers", *[c[2] for c in KPI_COLUMNS[1:]]],
            (_kpi_csv_row(k, extra=(k.dealers,)) for k in sorted(regions.values(), key=lambda k: k.label)),
        )
    context = {
        "period": period,
        "period_form": period_form,
        "presets": _presets(today),
        "forecast": outlook,
        "forecast_rows": list(zip(outlook.months, outlook.totals.months, strict=True)),
        "forecast_chart": forecast_chart(outlook),
        "escalated": escalated,
        "escalated_count": registrations.filter(status=Status.ESCALATED).count(),
        "sla_rows": sla_rows,
        "by_tier": by_tier,
        "regions": sorted(regions.values(), key=lambda k: k.label),
        "totals": totals,
        "forecast_url": reverse("deals:forecast"),
        "period_query": period.query(),
    }
    return render(request, "dashboards/region.html", context)


def _sla_by_partner_manager(organisations, period: Period) -> list[dict]:
    """The review SLA per partner manager (of the dealer, at the time of asking): decided, in
    time, the share and the median working hours; the worst first. The counts come with the
    roll-up (tiers.rollup), the medians from what is kept for the build where the dealers are whole
    regions (tiers.rollup.review_hours_medians), else live."""
    key = "organisation__partner_manager_id"
    decided = Registration.objects.filter(organisation__in=organisations).filter(
        in_period(Basis.DECIDED, period.start, period.end)
    )
    hours = review_hours_medians(organisations, period.start, period.end)  # kept for the build: whole regions
    if hours is None:
        hours = medians(decided, key, "review_working_hours")
    # only the figures by decision date: the counts by submission and won date are not shown here
    counted = registration_figures(organisations, period.start, period.end, key, fields=("decided", "in_time"))
    figures = {k: f for k, f in counted.items() if f.decided}
    people = {
        u.pk: u
        for u in User.objects.filter(pk__in=[k for k in figures if k is not None]).only(
            "email", "first_name", "last_name"
        )
    }
    rows = []
    for pk, f in figures.items():
        person = people.get(pk)
        name = (" ".join(p for p in (person.first_name, person.last_name) if p) or person.email) if person else ""
        rows.append(
            {
                "name": name or "No partner manager (the regional director reviews)",
                "pk": pk,
                "decided": f.decided,
                "in_time": f.in_time,
                "share": (Decimal(f.in_time) / f.decided * 100).quantize(Decimal("0.1")),
                "median": hours.get(pk),
            }
        )
    rows.sort(key=lambda r: (r["share"], r["name"]))
    return rows


# --- the lists behind the figures -----------------------------------------------------------------------

ENDED = (Status.WON, Status.LOST, Status.EXPIRED)
FIGURES = {  # code: what the list holds (the filters are in _figure_filter)
    "submitted": "Registrations submitted in the period",
    "closed": "Registrations submitted in the period that were approved and have ended (won, lost or expired)",
    "won": "Registrations submitted in the period and won",
    "won_in": "Registrations won in the period (average deal size and cycle time)",
    "pipeline": "Registrations protected now (the open pipeline; not bound to the period)",
    "decided": "Registrations decided in the period (review SLA)",
    "late": "Registrations decided late in the period",
}


REGISTRATION_SORTS = {"submitted": "first_submitted_at", "value": "expected_value", "close": "expected_close_date"}
SALE_SORTS = {"date": "sold_on", "amount": "amount"}


def _sort_links(request, sort: str, options: dict) -> dict[str, str]:
    """For each sortable column, the query string that sorts by it (a second click reverses)."""
    links = {}
    for key in options:
        query = request.GET.copy()
        query.pop("page", None)
        query["sort"] = key if sort == f"-{key}" else f"-{key}"
        links[key] = query.urlencode()
    return links


def _figure_filter(code: str, period: Period, today: date) -> Q:
    submitted = in_period(Basis.SUBMITTED, period.start, period.end)
    decided = in_period(Basis.DECIDED, period.start, period.end)
    return {
        "submitted": submitted,
        "closed": submitted & Q(status__in=ENDED),
        "won": submitted & Q(status=Status.WON),
        "won_in": in_period(Basis.WON, period.start, period.end),
        "pipeline": Q(status=Status.APPROVED, protected_until__gte=today),
        "decided": decided,
        "late": decided & Q(decided_in_time=False),
    }[code]


def _scope(request):
    """The dealers whose figures the person may open: a dealer only its own."""
    user = request.user
    if user.is_vendor_staff:
        if not (user.is_partner_manager or user.is_regional_director or user.is_channel_admin):
            raise Http404("Not found")
        return Organisation.objects.visible_to(user).filter(kind=Organisation.Kind.RESELLER)
    return Organisation.objects.filter(pk=_own_organisation(request).pk)


DEALER_FILTERS = ("q", "status", "partner_manager", "tier", "in_grace")


def _narrow(request, organisations):
    """Narrow to ?dealer=, ?region= or ?pm= (partner manager); anything else is ignored."""
    get = request.GET
    described = []
    for param, field_name in (("dealer", "pk"), ("region", "region_id"), ("pm", "partner_manager_id")):
        value = get.get(param, "")
        if value.isdecimal() and len(value) < 18:
            organisations = organisations.filter(**{field_name: int(value)})
            described.append(param)
        elif param == "pm" and value == "none":  # dealers without a partner manager
            organisations = organisations.filter(partner_manager__isnull=True)
            described.append(param)
    if request.user.is_vendor_staff and any(get.get(name) for name in DEALER_FILTERS):
        # the team dashboard's dealer filter, carried along by its totals
        dealer_filter = OrganisationFilter(get, queryset=organisations)
        if dealer_filter.is_valid():
            organisations = dealer_filter.qs
    return organisations, described


@login_required
def figures_registrations(request):
    code = request.GET.get("kpi", "")
    if code not in FIGURES:
        raise Http404("Not found")
    today = timezone.localdate()
    period, _form = _period(request)
    organisations, _described = _narrow(request, _scope(request))
    sort = request.GET.get("sort", "-submitted")
    if sort.lstrip("-") not in REGISTRATION_SORTS:
        sort = "-submitted"
    field_name = REGISTRATION_SORTS[sort.lstrip("-")]
    registrations = (
        Registration.objects.filter(organisation__in=organisations)
        .filter(_figure_filter(code, period, today))
        .select_related("organisation", "customer")
        .order_by(f"-{field_name}" if sort.startswith("-") else field_name, "-pk")
    )
    if request.GET.get("format") == "csv":
        return csv_response(
            f"registrations-{code}-{period.start}-{period.end}.csv",
            [
                "reference",
                "dealer",
                "customer",
                "status",
                "submitted",
                "expected_value_eur",
                "expected_close",
                "protected_until",
                "won_value_eur",
                "won_date",
                "decided_in_time",
                "review_working_hours",
            ],
            (
                (
                    r.reference,
                    r.organisation.name,
                    r.customer.name,
                    r.get_status_display(),
                    timezone.localdate(r.first_submitted_at),
                    r.expected_value,
                    r.expected_close_date,
                    r.protected_until,
                    r.won_value,
                    r.won_date,
                    r.decided_in_time,
                    r.review_working_hours,
                )
                for r in registrations.iterator(chunk_size=2000)
            ),
        )
    summary = registrations.aggregate(n=Count("pk"), value=Sum("expected_value"), won=Sum("won_value"))
    page = Paginator(registrations, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "dashboards/figures_registrations.html",
        {
            "title": FIGURES[code],
            "code": code,
            "sort": sort,
            "sort_links": _sort_links(request, sort, REGISTRATION_SORTS),
            "period": period,
            "page": page,
            "query": query.urlencode(),
            "summary": summary,
            "staff": request.user.is_vendor_staff,
            "dealer": organisations.first() if "dealer" in _described else None,
        },
    )


@login_required
def figures_sales(request):
    period, _form = _period(request)
    organisations, _described = _narrow(request, _scope(request))
    sales = Sale.objects.visible_to(request.user).filter(
        reseller__in=organisations, sold_on__gte=period.start, sold_on__lte=period.end
    )
    line = request.GET.get("line", "")
    if line.isdecimal() and len(line) < 18:
        sales = sales.filter(product_line_id=int(line))
    sort = request.GET.get("sort", "-date")
    if sort.lstrip("-") not in SALE_SORTS:
        sort = "-date"
    field_name = SALE_SORTS[sort.lstrip("-")]
    sales = sales.select_related("reseller", "distributor", "product_line").order_by(
        f"-{field_name}" if sort.startswith("-") else field_name, "erp_line_id"
    )
    if request.GET.get("format") == "csv":
        return csv_response(
            f"sales-{period.start}-{period.end}.csv",
            [
                "erp_line_id",
                "date",
                "reseller",
                "distributor",
                "customer",
                "city",
                "country",
                "product_line",
                "amount_eur",
                "registration_reference",
                "registered_before_sale",
            ],
            (
                (
                    s.erp_line_id,
                    s.sold_on,
                    s.reseller.name,
                    s.distributor.name if s.distributor else "",
                    s.customer_name,
                    s.customer_city,
                    s.customer_country,
                    s.product_line.name,
                    s.amount,
                    s.registration_reference,
                    s.registered_before_sale,
                )
                for s in sales.iterator(chunk_size=2000)
            ),
        )
    summary = sales.aggregate(n=Count("pk"), total=Sum("amount"))
    page = Paginator(sales, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "dashboards/figures_sales.html",
        {
            "sort": sort,
            "sort_links": _sort_links(request, sort, SALE_SORTS),
            "period": period,
            "page": page,
            "query": query.urlencode(),
            "summary": summary,
            "staff": request.user.is_vendor_staff,
            "dealer": organisations.first() if "dealer" in _described else None,
        },
    )
