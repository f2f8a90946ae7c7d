"""The stage-weighted forecast page and its CSV export, for production planning.

The figures come from deals.forecast; these views scope, filter, link and sort. Partner managers,
regional directors and channel admins see the forecast of the dealers they look after (as in the
registration list: a registration seen through a conflict belongs to another dealer's forecast);
direct sales reps and dealers get the 404 of a page they may not see.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import wraps
from urllib.parse import urlencode

from django import forms
from django.forms.utils import flatatt
from django.http import Http404
from django.shortcuts import render
from django.template.defaultfilters import floatformat, timesince_filter
from django.urls import reverse
from django.utils import formats, numberformat, timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe

from dealers.models import Organisation
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


class DealerSelect(forms.Select):
    """The dealer filter, from the (pk, name) pairs of ForecastFilter.dealer_choices: Django's Select
    makes a model instance and renders a template per option (over a second for 10,000 dealers)."""

    def __init__(self, choices, empty_label, attrs=None):
        super().__init__(attrs)
        self.pairs, self.empty_label = choices, empty_label

    def render(self, name, value, attrs=None, renderer=None):
        chosen = set(self.format_value(value))
        options = []
        if self.empty_label is not None:
            options.append(
                f'<option value=""{" selected" if "" in chosen else ""}>{html.escape(self.empty_label)}</option>'
            )
        options += [
            f'<option value="{pk}"{" selected" if str(pk) in chosen else ""}>{html.escape(label)}</option>'
            for pk, label in self.pairs
        ]
        attributes = flatatt(self.build_attrs(self.attrs, attrs))
        return mark_safe(f'<select name="{html.escape(name)}"{attributes}>\n' + "\n".join(options) + "\n</select>")


def _selection(request) -> Selection:
    registrations = Registration.objects.of_dealers_visible_to(request.user)
    filterset = ForecastFilter(request.GET or None, queryset=registrations, user=request.user)
    chosen = {}
    if filterset.is_bound:
        filterset.form.is_valid()  # cleaned_data: the valid filters, those that filterset.qs applies
        chosen = filterset.form.cleaned_data
    params = {name: str(chosen[name].pk) for name in ("region", "organisation", "product_line") if chosen.get(name)}
    return Selection(filterset=filterset, product_line=chosen.get("product_line"), list_params=params)


def _dealer_picker(filterset: ForecastFilter) -> None:
    """Every dealer to choose from, or (for a viewer with thousands) a search by name and its
    matches: see ForecastFilter."""
    form = filterset.form
    choices, searching = filterset.dealer_choices()
    dealer = form.fields["organisation"]
    empty_label = "All dealers" if searching else dealer.empty_label
    dealer.widget = DealerSelect(choices, empty_label, attrs=dealer.widget.attrs)
    dealer.widget.is_required = dealer.required
    if not searching:
        del form.fields["dealer_search"]


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
    html: str = ""  # the row's figure cells (<td>s), see _cells_html

    @property
    def cells(self) -> list[Cell]:
        """The months, then later: the columns of a row in order."""
        return [*self.months, self.later]


class Numbers:
    """floatformat:"0g" and floatformat:"-2g" of Decimals, with the separators of the language read
    once: a page of four tables has some 1,500 figures, and through the template each cost a
    filter call and the lookup of the format settings."""

    def __init__(self):
        self.decimal_separator = formats.get_format("DECIMAL_SEPARATOR")
        self.thousand_separator = formats.get_format("THOUSAND_SEPARATOR")
        self.grouping = formats.get_format("NUMBER_GROUPING")

    def __call__(self, value, places: int) -> str:
        """places=0 as floatformat:"0g" (whole euros); places=-2 as floatformat:"-2g" (two decimals
        unless whole): rounded half up, grouped in thousands."""
        d = Decimal(value)
        if places <= 0 and d == int(d):
            number, decimals = str(int(d)), 0
        else:
            rounded = d.quantize(Decimal(1).scaleb(-abs(places)), ROUND_HALF_UP)
            if not rounded:
                rounded = abs(rounded)  # floatformat writes -0.4 as 0, not -0
            number, decimals = f"{rounded:f}", abs(places)
        return numberformat.format(
            number,
            self.decimal_separator,
            decimals,
            self.grouping,
            self.thousand_separator,
            force_grouping=True,
            use_l10n=True,
        )


def _cells_html(line: TableRow, units: bool, number: Numbers) -> str:
    """The figure cells of a table row, as the template wrote them: per month and later the
    weighted value (and for products the weighted units above it) linking to the registrations
    behind it, or a dash; then the total's weighted units and units (products), weighted value
    and value. Written here, not in the template: 1,500 cells of template tags took a third of
    the page's time."""
    cells = []
    for cell in line.cells:
        figures = cell.figures
        if not figures.registrations:
            cells.append('<td class="num"><span class="muted">—</span></td>')
        elif units:
            cells.append(
                f'<td class="num"><a href="{escape(cell.url)}">{number(figures.weighted_quantity, -2)}</a><br>'
                f'<span class="muted small">€{number(figures.weighted_value, 0)}</span></td>'
            )
        else:
            cells.append(f'<td class="num"><a href="{escape(cell.url)}">€{number(figures.weighted_value, 0)}</a></td>')
    total, url = line.total.figures, escape(line.total.url)
    if units:
        cells.append(f'<td class="num"><a href="{url}">{number(total.weighted_quantity, -2)}</a></td>')
        cells.append(f'<td class="num">{total.quantity}</td>')
    cells.append(f'<td class="num"><a href="{url}">€{number(total.weighted_value, 0)}</a></td>')
    cells.append(f'<td class="num">€{number(total.value, 0)}</td>')
    return mark_safe("".join(cells))  # numbers and escaped URLs only


PK = 987_654_321  # stands for the pk in a path reversed once


def _past_rows_html(past: list[selectors.PastClose], today, number: Numbers) -> str:
    """The rows of the table of registrations past their expected close date, as the template
    wrote them (tests/test_forecast.py renders both). 100 rows of a dozen tags and filters took
    23 ms of the page's 31 ms of template at a million registrations; here each date, its time
    since and each stage weight is formatted once (many of the 100 share them), the detail path
    is built once: about 5 ms."""
    before, after = (escape(part) for part in reverse("deals:registration_detail", args=[PK]).split(str(PK)))
    dates, since, weights = {None: ""}, {}, {}

    def date(value) -> str:  # {{ value|date:"j M Y" }}
        if value not in dates:
            dates[value] = escape(formats.date_format(value, "j M Y"))
        return dates[value]

    def ago(value) -> str:  # {{ value|timesince:today }}
        if value not in since:
            since[value] = escape(timesince_filter(value, today))
        return since[value]

    def weight(value) -> str:  # {{ value|floatformat:"-2" }}
        if value not in weights:
            weights[value] = floatformat(value, "-2")
        return weights[value]

    rows = []
    for item in past:
        r = item.registration
        close = r.expected_close_date
        rows.append(
            "\n      <tr>\n"
            f'        <td class="ref"><a href="{before}{r.pk}{after}">{escape(r.reference)}</a></td>\n'
            f'        <td>{escape(r.customer.name)} <span class="muted">{escape(r.customer.city)}</span></td>\n'
            f"        <td>{escape(r.organisation.name)}</td>\n"
            f"        <td>{escape(r.get_decision_stage_display() or '—')}</td>\n"
            f'        <td>{date(close)} <span class="muted">({ago(close)} ago)</span></td>\n'
            f'        <td class="hide-small">{date(r.protected_until)}</td>\n'
            f'        <td class="num">{item.quantity}</td>\n'
            f'        <td class="num">€{number(item.value, 0)}</td>\n'
            f'        <td class="num">{weight(item.weight)}%</td>\n'
            f'        <td class="num">€{number(item.weighted_value, 0)}</td>\n'
            "      </tr>\n    "
        )
    return mark_safe("".join(rows))  # escaped text, numbers and dates


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
# Rows shown per table. The channel admin's dealer table has a row for every dealer with a protected
# registration (thousands): the database picks the first rows in the requested order
# (selectors.forecast(limit=...)); the rest stay in the totals and the CSV.
ROWS_SHOWN = 50


def _table_row(row: selectors.Row, params: dict, result: selectors.Forecast, units: bool, number: Numbers) -> TableRow:
    url = selectors.protected_list_urls(params)
    line = TableRow(
        row=row,
        months=[
            Cell(figures, url(month.first, month.last))
            for month, figures in zip(result.months, row.months, strict=True)
        ],
        later=Cell(row.later, url(result.later_from)),
        total=Cell(row.total, url(result.today)),
    )
    return replace(line, html=_cells_html(line, units, number))


def _column(key: str, label: str, sort: str, prefix: str) -> Column:
    """A sortable heading: a first click sorts figures largest first, a second click flips."""
    current, descending = sort.lstrip("-"), sort.startswith("-")
    if key == current:
        following = key if descending else f"-{key}"
        state = "descending" if descending else "ascending"
    else:
        following, state = (key if key == "name" else f"-{key}"), ""
    return Column(label=label, href=f"{prefix}{urlencode({'sort': following})}", sorted=state)


def _kept_sums(request, today):
    """The figures of the whole forecast the user sees (no filter chosen) from what is kept for the
    roll-up's build and the day (tiers.rollup.forecast_sums), where it can tell; else None: the
    page's statement counts them."""
    from tiers.rollup import forecast_sums  # tiers reads deals: not at import

    if set(request.GET) - {"sort"}:
        return None
    return forecast_sums(Organisation.objects.visible_to(request.user), today)


@forecast_viewer_required
def forecast_page(request):
    today = timezone.localdate()
    selection = _selection(request)
    _dealer_picker(selection.filterset)
    weights = ProgrammeSettings.load().forecast_weights
    sort = selectors.valid_sort(request.GET.get("sort", "name"), selectors.forecast_months(today))
    result = selectors.forecast(
        selection.registrations,
        today=today,
        product_line=selection.product_line,
        weights=weights,
        sort=sort,
        limit=ROWS_SHOWN,
        sums=_kept_sums(request, today),
    )
    past = selectors.past_close(
        selection.registrations,
        today=today,
        product_line=selection.product_line,
        weights=weights,
        limit=PAST_CLOSE_SHOWN,
    )
    sort_key, descending = selectors.sort_key(sort, result.months), sort.startswith("-")
    tables, number = [], Numbers()
    for title, heading, attribute, param in DIMENSIONS:
        units = attribute == "products"
        # a row with only registrations past their close date has nothing in the forecast proper
        rows = [row for row in getattr(result, attribute) if row.total.registrations]
        rows.sort(key=sort_key, reverse=descending)
        tables.append(
            Table(
                title=title,
                name_heading=heading,
                rows=[
                    _table_row(row, {**selection.list_params, param: str(row.pk)}, result, units, number)
                    for row in rows[:ROWS_SHOWN]
                ],
                totals=_table_row(result.totals, selection.list_params, result, units, number),
                units=units,
                empty="Every protected registration here is past its expected close date (below).",
                hidden=max(0, len(rows) - ROWS_SHOWN) + result.more.get(attribute, 0),
            )
        )
    # the filters as applied: a search that found one dealer is that dealer (ForecastFilter)
    query = selection.filterset.data.copy()
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
        "past_rows": _past_rows_html(past, today, number),
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
