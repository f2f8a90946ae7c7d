"""The forecast with more dealers than the page shows (forecast_views.ROWS_SHOWN): the database
picks the first rows in the requested order, and the totals, the count of the rows left out and
the CSV stay complete; the number of queries and of dealers built in Python does not grow with the
dealers."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models.signals import post_init
from django.template.defaultfilters import floatformat
from django.test.utils import CaptureQueriesContext

from dealers.models import Organisation
from deals import forecast as selectors
from deals import forecast_views
from deals.filters import ForecastFilter
from deals.models import ProgrammeSettings, Registration, RegistrationLine
from tests import factories
from tests.conftest import client_for
from tests.deal_factories import ProductFactory, ProductLineFactory
from tests.test_forecast import CSV, DAY, PAGE, on, protected

S = Registration.Status
DEALERS = 56  # more than ROWS_SHOWN (50)
SORTS = ["name", "-name", "-weighted", "weighted", "-unweighted", "-units", "-later", "-2027-01", "2026-12"]


@pytest.fixture
def catalogue(db):
    pumps = ProductLineFactory(name="Heat pumps", code="hp")
    boilers = ProductLineFactory(name="Boilers", code="boilers")
    return {
        "pump": ProductFactory(line=pumps, name="Pump 8 kW", sku="HP-8", list_price=Decimal("1000.00")),
        "big_pump": ProductFactory(line=pumps, name="Pump 12 kW", sku="HP-12", list_price=Decimal("5000.00")),
        "boiler": ProductFactory(line=boilers, name="Boiler 24", sku="B-24", list_price=Decimal("500.00")),
    }


def grow(world, catalogue, dealers: int = DEALERS, suffix: str = "B.V.") -> list[Organisation]:
    """`dealers` dealers in both regions, names in mixed case, on 15 Nov 2026: figures that differ
    per dealer across the months, later and the stages; three with the same figures (a tie, broken
    by the name); two lines of one product in a registration (counted once); and four with only
    registrations past their expected close date (not in the dealer table, nor in its count)."""
    c = catalogue
    closes = [date(2026, 11, 20), date(2026, 12, 5), date(2027, 1, 10), date(2027, 6, 1), date(2028, 2, 1)]
    stages = ["", "early", "mid", "late"]
    made = []
    for d in range(dealers):
        name = f"{['alpha', 'Beta', 'gamma', 'Delta'][d % 4]} Dealer {d:02d} {suffix}"
        organisation = factories.OrganisationFactory(
            name=name, region=world.north if d % 3 else world.south, partner_manager=world.pm_a
        )
        made.append(organisation)
        if d >= dealers - 4:
            protected(organisation, world.own_user, date(2026, 10, 1), "late", [(c["pump"], 5, "5000.00")])
            continue
        tie = d in (10, 11, 12)
        seed = 7 if tie else d
        protected(
            organisation,
            world.own_user,
            closes[seed % len(closes)],
            stages[seed % 4],
            [(c["pump"], 1 + seed % 5, f"{1000 + (seed * 37 % 23) * 100}.00"), (c["boiler"], 2, "300.00")],
        )
        if not tie and d % 2:
            protected(
                organisation,
                world.own_user,
                closes[(seed + 2) % len(closes)],
                stages[(seed + 1) % 4],
                [(c["big_pump"], 1, f"{500 + d * 10}.00"), (c["big_pump"], 2, "250.00")],
            )
    return made


def reference(today: date, sort: str) -> list[str]:
    """Every dealer with a forecast proper in the page's order, worked out here line by line: by
    name (case-insensitive, then region), then stably by the sort's figure."""
    weights = ProgrammeSettings.load().forecast_weights
    months = selectors.forecast_months(today)
    figures = defaultdict(lambda: defaultdict(Decimal))
    names = {}
    lines = RegistrationLine.objects.filter(
        registration__status=S.APPROVED, registration__protected_until__gte=today
    ).select_related("registration__organisation__region")
    for line in lines:
        registration = line.registration
        close = registration.expected_close_date
        if close < today:
            continue
        organisation = registration.organisation
        names[organisation.pk] = (organisation.name.casefold(), organisation.region.name.casefold(), organisation.pk)
        weight = weights.get(registration.decision_stage, weights[""]) / 100
        f = figures[organisation.pk]
        f["weighted"] += line.value * weight
        f["unweighted"] += line.value
        f["units"] += line.quantity * weight
        if close > months[-1].last:
            f["later"] += line.value * weight
        f[f"{close.year:04d}-{close.month:02d}"] += line.value * weight
    order = sorted(names, key=names.get)
    column = sort.lstrip("-")
    if column == "name":
        order.sort(key=lambda pk: names[pk][:2], reverse=sort.startswith("-"))
    else:
        order.sort(key=lambda pk: figures[pk][column], reverse=sort.startswith("-"))
    labels = dict(Organisation.objects.values_list("pk", "name"))
    return [labels[pk] for pk in order]


def test_the_page_shows_the_first_dealers_of_every_sort(world, catalogue):
    with on(DAY):
        grow(world, catalogue)
        client = client_for(world.channel_admin)
        everything = selectors.forecast(Registration.objects.all())
        for sort in SORTS:
            expected = reference(DAY, sort)
            page = client.get(PAGE, {"sort": sort})
            dealers = page.context["tables"][3]
            assert [line.row.label for line in dealers.rows] == expected[:50], sort
            assert dealers.hidden == len(expected) - 50 == DEALERS - 4 - 50, sort
            # the totals are every dealer's, exactly
            assert dealers.totals.row == everything.totals, sort
            assert f"50 shown; {len(expected) - 50} more count in “All”" in page.content.decode()
        by_weight = [line.row.label for line in client.get(PAGE, {"sort": "-weighted"}).context["tables"][3].rows]
    # the three dealers with the same figures stand together in name order (casefolded, not "D" < "a")
    tied = [label for label in by_weight if any(f"Dealer {d} " in label for d in (10, 11, 12))]
    assert tied == ["alpha Dealer 12 B.V.", "Delta Dealer 11 B.V.", "gamma Dealer 10 B.V."]
    assert by_weight.index(tied[2]) - by_weight.index(tied[0]) == 2


def test_a_limited_forecast_builds_only_its_rows(world, catalogue):
    with on(DAY):
        grow(world, catalogue)
        full = selectors.forecast(Registration.objects.all())
        with CaptureQueriesContext(connection) as queries:
            top = selectors.forecast(Registration.objects.all(), sort="-units", limit=7)
        assert len(queries) == 2  # the weights, the forecast
        assert len(top.dealers) == 7 and top.more["dealers"] == DEALERS - 4 - 7
        assert [r.label for r in top.dealers] == reference(DAY, "-units")[:7]
        assert len(top.products) == 3 and top.more["products"] == 0
        # a limited dealer row is the same row as in the full forecast; the small dimensions and the
        # totals are complete
        dealers = {r.pk: r for r in full.dealers}
        assert all(r == dealers[r.pk] for r in top.dealers)
        assert (top.product_lines, top.regions, top.totals) == (full.product_lines, full.regions, full.totals)
        # the registration with two lines of one product counts once
        assert full.totals.total.registrations == Registration.objects.filter(expected_close_date__gte=DAY).count()


def test_an_unlimited_forecast_reads_the_dealers_when_asked(world, catalogue):
    with on(DAY):
        grow(world, catalogue, dealers=6)
        weights = ProgrammeSettings.load().forecast_weights
        with CaptureQueriesContext(connection) as queries:
            result = selectors.forecast(Registration.objects.all(), weights=weights)
            assert len(queries) == 1  # totals, product lines, products, regions: what the region dashboard needs
            dealers = result.dealers
            assert len(queries) == 2
            assert result.dealers is dealers and len(queries) == 2
    # every dealer with a protected registration, those past their close date only included, by name
    made = Organisation.objects.exclude(pk__in=[world.own.pk, world.other.pk, world.orphan.pk])
    assert [r.label for r in dealers] == sorted(made.values_list("name", flat=True), key=str.casefold)


def test_products_are_limited_too(world, catalogue, monkeypatch):
    monkeypatch.setattr(forecast_views, "ROWS_SHOWN", 2)
    with on(DAY):
        grow(world, catalogue, dealers=8)
        page = client_for(world.channel_admin).get(PAGE, {"sort": "-units"})
        full = selectors.forecast(Registration.objects.all())
    products = page.context["tables"][1]
    expected = sorted(full.products, key=lambda r: r.total.weighted_quantity, reverse=True)
    assert [line.row.label for line in products.rows] == [r.label for r in expected[:2]]
    assert products.hidden == 1
    assert "2 shown; 1 more count in “All”" in page.content.decode()


def test_queries_and_dealers_built_do_not_grow_with_the_dealers(world, catalogue):
    built = []

    def count(sender, instance, **kwargs):
        built.append(instance)

    with on(DAY):
        client = client_for(world.channel_admin)
        grow(world, catalogue, dealers=2, suffix="GmbH")
        client.get(PAGE)
        queries = {}
        for size in ("small", "large"):
            if size == "large":
                grow(world, catalogue, dealers=DEALERS)
            for sort in ("name", "-weighted"):
                built.clear()
                post_init.connect(count, sender=Organisation)
                try:
                    with CaptureQueriesContext(connection) as captured:
                        page = client.get(PAGE, {"sort": sort, "region": world.north.pk})
                finally:
                    post_init.disconnect(count, sender=Organisation)
                queries[size, sort] = len(captured)
                # the dealer filter lists every dealer without making a model instance of each (the
                # registrations past their close date come with theirs)
                past = {p.registration.organisation_id for p in page.context["past"]}
                assert len({o.pk for o in built} - past) <= 1, (size, sort, built)
    assert queries["small", "name"] == queries["large", "name"] == queries["large", "-weighted"]


def test_the_dealer_filter_lists_every_dealer(world, catalogue):
    with on(DAY):
        made = grow(world, catalogue, dealers=4)
        chosen = made[1]
        html = client_for(world.channel_admin).get(PAGE, {"organisation": chosen.pk}).content.decode()
    start = html.index('<select name="organisation"')
    select = html[start : html.index("</select>", start)]
    assert 'id="id_organisation"' in select and '<option value="">---------</option>' in select
    assert f'<option value="{chosen.pk}" selected>{chosen.name}</option>' in select
    options = re.findall(r'<option value="(\d+)"(?: selected)?>([^<]*)</option>', select)
    assert options == [(str(pk), name) for pk, name in Organisation.objects.values_list("pk", "name")]  # by name
    assert "dealer_search" not in html  # nothing to find: every dealer is there to choose


@pytest.fixture
def searching(monkeypatch):
    """Fewer dealers listed than the channel admin sees (11): the picker finds them by name."""
    monkeypatch.setattr(ForecastFilter, "DEALERS_LISTED", 5)
    monkeypatch.setattr(ForecastFilter, "MATCHES_LISTED", 3)


def picker(html: str) -> list[tuple[str, bool, str]]:
    """The dealer picker's options: value, selected, label."""
    start = html.index('<select name="organisation"')
    select = html[start : html.index("</select>", start)]
    return [
        (v, bool(s), label) for v, s, label in re.findall(r'<option value="(\d*)"( selected)?>([^<]*)</option>', select)
    ]


def test_a_viewer_with_many_dealers_finds_them_by_name(world, catalogue, searching):
    with on(DAY):
        made = grow(world, catalogue, dealers=8)
        client = client_for(world.channel_admin)
        everything = selectors.forecast(Registration.objects.all())
        # nothing searched: a labelled search, and a picker of no dealer but the choice of all
        html = client.get(PAGE).content.decode()
        assert '<label for="id_dealer_search">Find a dealer:</label> <input type="search" name="dealer_search"' in html
        assert '<label for="id_organisation">Dealer:</label>' in html
        assert picker(html) == [("", True, "All dealers")]
        assert "Find a dealer by name to choose one." in html
        # two dealers match (anywhere in the name, in any case): listed to choose from, and the forecast is
        # still every dealer's
        page = client.get(PAGE, {"dealer_search": " BETA "})
        html = page.content.decode()
        beta = [(str(o.pk), False, o.name) for o in made if o.name.startswith("Beta")]
        assert sorted(picker(html)[1:]) == sorted(beta) and picker(html)[0] == ("", True, "All dealers")
        assert "2 dealers' names contain “BETA”: choose one and press Filter." in html
        assert 'name="dealer_search" value=" BETA "' in html
        assert page.context["forecast"].totals == everything.totals
        # more than MATCHES_LISTED: the first of them, by name, and how to narrow them
        html = client.get(PAGE, {"dealer_search": "dealer 0"}).content.decode()
        first = Organisation.objects.filter(name__icontains="dealer 0").values_list("pk", "name")[:3]
        assert picker(html)[1:] == [(str(pk), False, name) for pk, name in first]
        assert "More than 3 dealers' names contain “dealer 0”: the first 3 are listed." in html
        # one match: that dealer is chosen, and the search is done
        chosen = made[2]
        page = client.get(PAGE, {"dealer_search": "gamma dealer 02", "sort": "-weighted"})
        html = page.content.decode()
        alone = selectors.forecast(Registration.objects.filter(organisation=chosen))
        assert page.context["forecast"].totals == alone.totals and alone.totals.total.registrations
        assert picker(html) == [("", False, "All dealers"), (str(chosen.pk), True, chosen.name)]
        assert 'name="dealer_search" aria-describedby' in html  # no value: empty
        assert f"?organisation={chosen.pk}&amp;sort=name" in html  # the sorts keep the dealer, not the search
        assert f'{CSV}?organisation={chosen.pk}"' in html
        # the link of another page: the dealer chosen by its pk
        page = client.get(PAGE, {"organisation": chosen.pk})
        assert page.context["forecast"].totals == alone.totals
        assert picker(page.content.decode()) == [("", False, "All dealers"), (str(chosen.pk), True, chosen.name)]
        # nothing matches
        page = client.get(PAGE, {"dealer_search": "zzz"})
        assert "No dealer&#x27;s name contains “zzz”." in page.content.decode()
        assert page.context["forecast"].totals == everything.totals


def test_the_search_finds_only_the_viewers_dealers(world, catalogue, searching):
    with on(DAY):
        grow(world, catalogue, dealers=8)  # pm_a's, as is the own dealer: 9, more than listed
        client = client_for(world.pm_a)
        page = client.get(PAGE, {"dealer_search": "Other Dealer"})
        assert "No dealer&#x27;s name contains “Other Dealer”." in page.content.decode()
        assert "Other Dealer" not in "".join(label for _, _, label in picker(page.content.decode()))
        page = client.get(PAGE, {"dealer_search": "Own Dealer"})
        assert picker(page.content.decode())[1:] == [(str(world.own.pk), True, "Own Dealer B.V.")]
        assert page.context["filter"].form.cleaned_data["organisation"] == world.own
        page = client.get(PAGE, {"organisation": world.other.pk})
        assert "Other Dealer" not in page.content.decode()


def test_the_search_takes_the_same_queries_for_any_number_of_dealers(world, catalogue, searching):
    with on(DAY):
        client = client_for(world.channel_admin)
        grow(world, catalogue, dealers=6, suffix="GmbH")
        client.get(PAGE)
        counts = []
        for size in ("small", "large"):
            if size == "large":
                grow(world, catalogue, dealers=DEALERS)
            for params in ({}, {"dealer_search": "beta"}, {"dealer_search": "gamma dealer 02 gmbh"}):
                with CaptureQueriesContext(connection) as captured:
                    assert client.get(PAGE, params).status_code == 200
                counts.append((size, tuple(params.values()), len(captured)))
    small = [n for size, _, n in counts if size == "small"]
    large = [n for size, _, n in counts if size == "large"]
    assert small == large, counts


def test_the_csv_has_every_dealer(world, catalogue):
    with on(DAY):
        grow(world, catalogue)
        text = client_for(world.channel_admin).get(CSV).content.decode("utf-8-sig")
        full = selectors.forecast(Registration.objects.all())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len({row["dealer"] for row in rows}) == DEALERS
    forecast_rows = [row for row in rows if row["month"] != "past expected close"]
    assert sum(Decimal(row["value (EUR)"]) for row in forecast_rows) == full.totals.total.value
    assert sum(Decimal(row["weighted value (EUR)"]) for row in forecast_rows) == full.totals.total.weighted_value


@pytest.mark.parametrize(
    "value",
    ["0", "0.00", "0.4", "0.5", "1.5", "2.5", "999.5", "1000", "1000.00", "1234567.891", "0.005", "1.005", "12.345",
     "1.10", "75", "2.675", "100000.49", "-1.5", "-0.4"],
)  # fmt: skip
def test_numbers_are_written_as_floatformat_writes_them(value):
    number = forecast_views.Numbers()
    assert number(Decimal(value), 0) == floatformat(Decimal(value), "0g")
    assert number(Decimal(value), -2) == floatformat(Decimal(value), "-2g")


def test_a_product_line_filter_with_a_limit(world, catalogue):
    boilers = catalogue["boiler"].line
    with on(DAY):
        grow(world, catalogue, dealers=10)
        page = client_for(world.channel_admin).get(PAGE, {"product_line": boilers.pk, "sort": "-weighted"})
        full = selectors.forecast(Registration.objects.all(), product_line=boilers)
    dealers = page.context["tables"][3]
    expected = sorted(
        (r for r in full.dealers if r.total.registrations), key=lambda r: r.total.weighted_value, reverse=True
    )
    assert [line.row.label for line in dealers.rows] == [r.label for r in expected]
    assert page.context["forecast"].totals == full.totals
    assert [r.label for r in full.product_lines] == ["Boilers"]
    # every dealer's boiler line, 2 units at €300, once per registration
    assert full.totals.total.value == 300 * (10 - 4)
    assert full.totals.total.registrations == 10 - 4


def test_past_close_reads_the_longest_overdue_first(world, catalogue):
    c = catalogue
    with on(DAY):
        for days in (3, 40, 1, 12):
            protected(world.own, world.own_user, DAY - timedelta(days=days), "mid", [(c["pump"], 1, "100.00")])
        protected(world.own, world.own_user, DAY - timedelta(days=90), "mid", [(c["pump"], 1, "100.00")],
                  protected_until=DAY - timedelta(days=1))  # fmt: skip
        past = selectors.past_close(Registration.objects.all(), limit=3)
    assert [p.registration.expected_close_date for p in past] == [DAY - timedelta(days=d) for d in (40, 12, 3)]
