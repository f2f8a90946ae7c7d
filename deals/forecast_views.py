"""The stage-weighted forecast page and its CSV export, for production planning.

The figures come from deals.forecast; these views scope, filter, link and sort. Partner managers,
regional directors and channel admins see the forecast of the dealers they look after (as in the
registration list: a registration seen through a conflict belongs to another dealer's forecast);
direct sales reps and dealers get the 404 of a page they may not see.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from functools import wraps
from urllib.parse import urlencode

from django.http import Http404
from django.shortcuts import render
from django.utils import timezone

from dealers.views import staff_required
from deals import forecast as selectors
from deals.filters import ForecastFilter
from deals.models import ProgrammeSettings, Registration
from prm.csvexport import csv_response

PAST_CLOSE_SHOWN = 100
CSV_HEADER = [
    "month",
    "product line",
    "SKU",
    "product",
    "region",
    "dealer",
    "decision stage",
    "quantity",
    "value (EUR)",
    "stage weight (%)",
    "weighted quantity",
    "weighted value (EUR)",
]


def forecast_viewer_required(view):
    """Partner managers, regional directors and channel admins; everyone else the usual 404."""

    @wraps(view)
    @staff_required
    def wrapper(request, *args, **kwargs):
        user = request.user
        if not (user.is_partner_manager or user.is_regional_director or user.is_channel_admin):
            raise Http404("Not found")
        return view(request, *args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class Selection:
    """What the user asked for: the filtered registrations, the product line to narrow the lines
    to, and the same filters as query parameters of the registration list."""

    filterset: ForecastFilter
    product_line: object | None
    list_params: dict[str, str]

    @property
    def registrations(self):
        return self.filterset.qs


def _selection(request) -> Selection:
    registrations = Registration.objects.of_dealers_visible_to(request.user)
    filterset = ForecastFilter(request.GET or None, queryset=registrations, user=request.user)
    chosen = {}
    if filterset.is_bound:
        filterset.form.is_valid()  # cleaned_data: the valid filters, those that filterset.qs applies
        chosen = filterset.form.cleaned_data
    params = {name: str(chosen[name].pk) for name in ("region", "organisation", "product_line") if chosen.get(name)}
    return Selection(filterset=filterset, product_line=chosen.get("product_line"), list_params=params)


# --- the page -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    figures: selectors.Figures
    url: str


@dataclass(frozen=True)
class TableRow:
    row: selectors.Row
    months: list[Cell]
    later: Cell
    total: Cell

    @property
    def cells(self) -> list[Cell]:
        """The months, then later: the columns of a row in order."""
        return [*self.months, self.later]


@dataclass(frozen=True)
class Table:
    title: str
    name_heading: str
    rows: list[TableRow]
    totals: TableRow
    units: bool
    empty: str
    hidden: int = 0  # rows beyond ROWS_SHOWN: in the totals and the CSV, not on the page


@dataclass(frozen=True)
class Column:
    label: str
    href: str
    sorted: str  # "ascending", "descending" or ""


# (title, heading of the name column, Forecast attribute, registration-list parameter of a row)
DIMENSIONS = [
    ("Per product line", "Product line", "product_lines", "product_line"),
    ("Per product", "Product", "products", "product"),
    ("Per region", "Region", "regions", "region"),
    ("Per dealer", "Dealer", "dealers", "organisation"),
]
NUMERIC_SORTS = ("weighted", "unweighted", "units", "later")
# Rows shown per table. The channel admin's dealer table has a row for every dealer with a protected
# registration (thousands): rendering them all took seconds. The rest stay in the totals and the CSV.
ROWS_SHOWN = 50


def _table_row(row: selectors.Row, params: dict, result: selectors.Forecast) -> TableRow:
    return TableRow(
        row=row,
        months=[
            Cell(figures, selectors.protected_list_url(params, close_from=month.first, close_to=month.last))
            for month, figures in zip(result.months, row.months, strict=True)
        ],
        later=Cell(row.later, selectors.protected_list_url(params, close_from=result.later_from)),
        total=Cell(row.total, selectors.protected_list_url(params, close_from=result.today)),
    )


def _sort_key(sort: str, months: list[selectors.Month]):
    """The key for ?sort=: name, weighted, unweighted, units, later or a month (2027-01)."""
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


def _valid_sort(sort: str, months: list[selectors.Month]) -> str:
    column = sort.lstrip("-")
    known = column == "name" or column in NUMERIC_SORTS or any(m.iso == column for m in months)
    return sort if known else "name"


def _column(key: str, label: str, sort: str, prefix: str) -> Column:
    """A sortable heading: a first click sorts figures largest first, a second click flips."""
    current, descending = sort.lstrip("-"), sort.startswith("-")
    if key == current:
        following = key if descending else f"-{key}"
        state = "descending" if descending else "ascending"
    else:
        following, state = (key if key == "name" else f"-{key}"), ""
    return Column(label=label, href=f"{prefix}{urlencode({'sort': following})}", sorted=state)


@forecast_viewer_required
def forecast_page(request):
    today = timezone.localdate()
    selection = _selection(request)
    weights = ProgrammeSettings.load().forecast_weights
    result = selectors.forecast(
        selection.registrations, today=today, product_line=selection.product_line, weights=weights
    )
    past = selectors.past_close(
        selection.registrations,
        today=today,
        product_line=selection.product_line,
        weights=weights,
        limit=PAST_CLOSE_SHOWN,
    )
    sort = _valid_sort(request.GET.get("sort", "name"), result.months)
    sort_key, descending = _sort_key(sort, result.months), sort.startswith("-")
    tables = []
    for title, heading, attribute, param in DIMENSIONS:
        # a row with only registrations past their close date has nothing in the forecast proper
        rows = [row for row in getattr(result, attribute) if row.total.registrations]
        rows.sort(key=sort_key, reverse=descending)
        tables.append(
            Table(
                title=title,
                name_heading=heading,
                rows=[
                    _table_row(row, {**selection.list_params, param: str(row.pk)}, result) for row in rows[:ROWS_SHOWN]
                ],
                totals=_table_row(result.totals, selection.list_params, result),
                units=attribute == "products",
                empty="Every protected registration here is past its expected close date (below).",
                hidden=max(0, len(rows) - ROWS_SHOWN),
            )
        )
    query = request.GET.copy()
    query.pop("sort", None)
    filter_query = query.urlencode()
    prefix = f"?{filter_query}&" if filter_query else "?"
    context = {
        "filter": selection.filterset,
        "forecast": result,
        "chart": None if result.is_empty else selectors.forecast_chart(result, selection.list_params),
        "tables": tables,
        "columns": {
            key: _column(key, label, sort, prefix)
            for key, label in [
                ("name", "Name"),
                ("later", "Later"),
                ("weighted", "Weighted"),
                ("unweighted", "Unweighted"),
                ("units", "Units"),
            ]
        },
        "month_columns": [_column(m.iso, m.label, sort, prefix) for m in result.months],
        "weights": [(label, weights[stage]) for stage, label in [*Registration.Stage.choices, ("", "No stage given")]],
        "past": past,
        "past_more": result.totals.past.registrations - len(past),
        "past_url": selectors.protected_list_url(selection.list_params, close_to=today - timedelta(days=1)),
        "total_url": selectors.protected_list_url(selection.list_params, close_from=today),
        "filter_query": filter_query,
        "csv_query": urlencode(selection.list_params),
    }
    return render(request, "deals/forecast.html", context)


@forecast_viewer_required
def forecast_csv(request):
    """One row per month, product line, product, region, dealer and decision stage: what production
    planning loads into its spreadsheet. Past-close rows are included, labelled as such."""
    today = timezone.localdate()
    selection = _selection(request)
    rows = selectors.export_rows(selection.registrations, today=today, product_line=selection.product_line)
    return csv_response(
        f"forecast-{today.isoformat()}.csv",
        CSV_HEADER,
        (
            (
                r.month,
                r.product_line,
                r.sku,
                r.product,
                r.region,
                r.dealer,
                r.stage,
                r.quantity,
                r.value,
                r.weight,
                r.weighted_quantity,
                r.weighted_value,
            )
            for r in rows
        ),
    )
