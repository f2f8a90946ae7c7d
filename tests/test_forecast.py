"""The stage-weighted forecast: weighting and month buckets (across a year boundary and time
zones), the CSV for production planning, who sees which dealers, the lists behind the figures,
and a number of queries that does not grow with the registrations and dealers."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection
from django.db.models import Count, Sum
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from dealers.models import StaffRole
from deals import forecast as selectors
from deals.models import Conflict, ProgrammeSettings, Registration, RegistrationLine
from tests import factories
from tests.conftest import client_for, with_totp
from tests.deal_factories import ProductFactory, ProductLineFactory, make_registration

S = Registration.Status
AMS = ZoneInfo("Europe/Amsterdam")
UTC = ZoneInfo("UTC")
DAY = date(2026, 11, 15)
PAGE = reverse("deals:forecast")
CSV = reverse("deals:forecast_csv")


def on(day: date):
    """Noon in Amsterdam on `day`, frozen."""
    return time_machine.travel(datetime(day.year, day.month, day.day, 12, tzinfo=AMS), tick=False)


def protected(organisation, person, close: date, stage: str = "", lines=(), **fields) -> Registration:
    """An approved registration closing on `close`, with `lines` as (product, quantity, value)."""
    if lines:  # (no new product for make_registration's default line)
        fields.setdefault("products", [lines[0][0]])
    registration = make_registration(
        organisation,
        person,
        S.APPROVED,
        expected_close_date=close,
        decision_stage=stage,
        protected_until=fields.pop("protected_until", date(2027, 12, 31)),
        **fields,
    )
    registration.lines.all().delete()  # make_registration's default line
    for product, quantity, value in lines:
        RegistrationLine.objects.create(
            registration=registration, product=product, quantity=quantity, value=Decimal(value)
        )
    return registration


def direct_sales(**kwargs):
    return with_totp(factories.StaffFactory(roles=[StaffRole.DIRECT_SALES], **kwargs))


def csv_rows(response) -> list[dict]:
    assert response["Content-Type"].startswith("text/csv")
    text = response.content.decode("utf-8").lstrip("\ufeff")
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def catalogue(db):
    pumps = ProductLineFactory(name="Heat pumps", code="hp")
    boilers = ProductLineFactory(name="Boilers", code="boilers")
    return {
        "pump": ProductFactory(line=pumps, name="Pump 8 kW", sku="HP-8", list_price=Decimal("1000.00")),
        "big_pump": ProductFactory(line=pumps, name="Pump 12 kW", sku="HP-12", list_price=Decimal("5000.00")),
        "boiler": ProductFactory(line=boilers, name="Boiler 24", sku="B-24", list_price=Decimal("500.00")),
    }


@pytest.fixture
def book(world, catalogue):
    """On 15 Nov 2026: protected registrations of the own dealer (north) in every bucket, one of the
    other dealer (south) and one of the orphan dealer (north), and some that do not count."""
    c, own, person = catalogue, world.own, world.own_user
    with on(DAY):
        regs = {
            # late, this month: 75% of €2,000 and of 2 units
            "late_now": protected(own, person, date(2026, 11, 20), "late", [(c["pump"], 2, "2000.00")]),
            # early, across the year boundary, two product lines
            "early_jan": protected(
                own,
                person,
                date(2027, 1, 10),
                "early",
                [(c["pump"], 10, "10000.00"), (c["boiler"], 4, "2000.00")],
            ),
            # no stage, in the 12th month (Oct 2027): 5%
            "blank_oct": protected(own, person, date(2027, 10, 31), "", [(c["big_pump"], 1, "500.00")]),
            # mid, just beyond the 12 months: later
            "mid_later": protected(own, person, date(2027, 11, 1), "mid", [(c["big_pump"], 5, "5000.00")]),
            # mid, earlier this month and so past its expected close date: apart
            "mid_past": protected(own, person, date(2026, 11, 14), "mid", [(c["pump"], 3, "3000.00")]),
            "other": protected(world.other, world.other_admin, date(2026, 12, 5), "late", [(c["pump"], 1, "1000.00")]),
            "orphan": protected(world.orphan, person, date(2026, 12, 6), "mid", [(c["boiler"], 2, "1000.00")]),
        }
        # not counted: waiting for review, won, and approved with a protection that ended yesterday
        make_registration(own, person, S.SUBMITTED, expected_close_date=date(2026, 12, 1))
        make_registration(own, person, S.WON, expected_close_date=date(2026, 12, 1))
        protected(
            own, person, date(2026, 12, 1), "late", [(c["pump"], 9, "9000.00")], protected_until=DAY - timedelta(1)
        )
    return regs


def row(rows, label) -> selectors.Row:
    (found,) = [r for r in rows if r.label == label]
    return found


# --- the programme settings ------------------------------------------------------------------------


def test_weights_are_configurable_percentages(db):
    programme = ProgrammeSettings.load()
    assert programme.forecast_weights == {
        "early": Decimal("10.00"),
        "mid": Decimal("40.00"),
        "late": Decimal("75.00"),
        "": Decimal("5.00"),
    }
    programme.forecast_weight_late = Decimal("100.01")
    with pytest.raises(ValidationError) as refused:
        programme.full_clean()
    assert "forecast_weight_late" in refused.value.message_dict


def test_weights_in_the_programme_settings_admin(db):
    admin = factories.StaffFactory(is_superuser=True, email="root@vendor.example")
    page = client_for(with_totp(admin)).get(
        reverse("admin:deals_programmesettings_change", args=[ProgrammeSettings.load().pk])
    )
    assert page.status_code == 200
    for name in ("forecast_weight_early", "forecast_weight_mid", "forecast_weight_late", "forecast_weight_blank"):
        assert f'name="{name}"' in page.content.decode()


# --- weighting and buckets -----------------------------------------------------------------------


def test_weighting_and_month_buckets_across_the_year(world, book):
    with on(DAY):
        result = selectors.forecast(Registration.objects.all())
    assert [m.iso for m in result.months] == [f"2026-{m}" for m in ("11", "12")] + [
        f"2027-{m:02d}" for m in range(1, 11)
    ]
    assert result.months[0].first == DAY  # the current month counts from today
    assert result.later_from == date(2027, 11, 1)
    totals = result.totals
    nov, dec, jan, oct_ = totals.months[0], totals.months[1], totals.months[2], totals.months[11]
    assert (nov.value, nov.weighted_value, nov.weighted_quantity) == (2000, 1500, Decimal("1.5"))
    assert (dec.value, dec.weighted_value, dec.registrations) == (2000, 750 + 400, 2)
    assert (jan.value, jan.weighted_value, jan.quantity, jan.weighted_quantity) == (12000, 1200, 14, Decimal("1.4"))
    assert (oct_.value, oct_.weighted_value) == (500, 25)
    assert (totals.later.value, totals.later.weighted_value, totals.later.weighted_quantity) == (5000, 2000, 2)
    assert (totals.past.value, totals.past.weighted_value, totals.past.registrations) == (3000, 1200, 1)
    # the forecast proper: months and later, not what is past its close date
    assert totals.total.value == 2000 + 2000 + 12000 + 500 + 5000
    assert totals.total.weighted_value == 1500 + 1150 + 1200 + 25 + 2000
    assert totals.total.registrations == 6

    pumps = row(result.product_lines, "Heat pumps")
    assert pumps.total.value == 2000 + 1000 + 10000 + 500 + 5000
    assert pumps.months[2].value == 10000  # only the pump line of the registration in two lines
    pump = row(result.products, "Pump 8 kW")
    assert pump.detail == "HP-8 · Heat pumps"
    assert (pump.total.quantity, pump.total.weighted_quantity) == (2 + 1 + 10, Decimal("1.5") + Decimal("0.75") + 1)
    assert (pump.past.quantity, pump.past.weighted_quantity) == (3, Decimal("1.2"))
    north, south = row(result.regions, "North"), row(result.regions, "South")
    assert (north.total.registrations, south.total.registrations) == (5, 1)
    dealer = row(result.dealers, "Own Dealer B.V.")
    assert dealer.detail == "North"
    assert dealer.total.registrations == 4 and dealer.past.registrations == 1


def test_weights_follow_the_programme_settings(world, book):
    ProgrammeSettings.objects.filter(pk=1).update(forecast_weight_late=Decimal("100"), forecast_weight_blank=0)
    with on(DAY):
        result = selectors.forecast(Registration.objects.all())
    assert result.totals.months[0].weighted_value == 2000
    assert result.totals.months[11].weighted_value == 0


def test_today_is_the_date_in_amsterdam_at_the_turn_of_the_year(world, catalogue):
    """31 Dec 23:30 UTC is already 1 Jan in Amsterdam: the forecast starts with January, the deal
    that was to close on 31 Dec is past its close date and a protection until 31 Dec has ended."""
    c, own, person = catalogue, world.own, world.own_user
    new_years_eve = protected(own, person, date(2026, 12, 31), "late", [(c["pump"], 4, "4000.00")])
    protected(own, person, date(2027, 1, 1), "mid", [(c["pump"], 1, "1000.00")])
    protected(own, person, date(2027, 1, 5), "late", [(c["boiler"], 1, "800.00")], protected_until=date(2026, 12, 31))
    protected(own, person, date(2027, 12, 1), "early", [(c["boiler"], 1, "900.00")])

    with time_machine.travel(datetime(2026, 12, 31, 22, 30, tzinfo=UTC), tick=False):  # 23:30 in Amsterdam
        before = selectors.forecast(Registration.objects.all())
    with time_machine.travel(datetime(2026, 12, 31, 23, 30, tzinfo=UTC), tick=False):  # 00:30 on 1 Jan
        after = selectors.forecast(Registration.objects.all())
        exported = csv_rows(client_for(world.pm_a).get(CSV))

    assert before.today == date(2026, 12, 31) and after.today == date(2027, 1, 1)
    assert (before.months[0].iso, before.months[-1].iso) == ("2026-12", "2027-11")
    assert (after.months[0].iso, after.months[-1].iso) == ("2027-01", "2027-12")
    # 31 Dec: the eve deal closes this month, the new-year deals next month, December 2027 is later
    assert before.totals.months[0].value == new_years_eve.lines.get().value
    assert before.totals.months[1].value == 1000 + 800
    assert before.totals.later.value == 900 and before.totals.past.value == 0
    # 1 Jan: the eve deal is past its date, the protection ending on the eve no longer counts
    assert after.totals.past.value == 4000
    assert after.totals.months[0].value == 1000
    assert after.totals.months[-1].value == 900 and after.totals.later.value == 0
    # the page and its CSV take the same date
    assert [(r["month"], r["value (EUR)"]) for r in exported] == [
        ("2027-01", "1000.00"),
        ("2027-12", "900.00"),
        ("past expected close", "4000.00"),
    ]


# --- the page ------------------------------------------------------------------------------------


def test_page_shows_the_tables_and_past_close_apart(world, book):
    with on(DAY):
        page = client_for(world.channel_admin).get(PAGE)
    assert page.status_code == 200
    html = page.content.decode()
    for text in ("Per product line", "Per product", "Per region", "Per dealer", "Nov 2026", "Oct 2027", "Later"):
        assert text in html
    assert "HP-8" in html and "Units weighted" in html
    assert "early 10%, mid 40%, late 75%, no stage given 5%" in html
    # the registration past its close date: listed apart, with a link to it
    past = book["mid_past"]
    assert reverse("deals:registration_detail", args=[past.pk]) in html
    assert [p.registration for p in page.context["past"]] == [past]
    # a figure opens the registrations behind it
    assert "close_from=2027-01-01&amp;close_to=2027-01-31" in html
    assert f"{reverse('deals:registration_list')}?product_line=" in html


# The rows of the past-close table as the template wrote them before forecast_views wrote them.
PAST_ROWS_TEMPLATE = """{% for item in past %}{% with r=item.registration %}
      <tr>
        <td class="ref"><a href="{% url 'deals:registration_detail' r.pk %}">{{ r.reference }}</a></td>
        <td>{{ r.customer.name }} <span class="muted">{{ r.customer.city }}</span></td>
        <td>{{ r.organisation.name }}</td>
        <td>{{ r.get_decision_stage_display|default:"—" }}</td>
        <td>{{ r.expected_close_date|date:"j M Y" }} <span class="muted">({{ r.expected_close_date|timesince:forecast.today }} ago)</span></td>
        <td class="hide-small">{{ r.protected_until|date:"j M Y" }}</td>
        <td class="num">{{ item.quantity }}</td>
        <td class="num">€{{ item.value|floatformat:"0g" }}</td>
        <td class="num">{{ item.weight|floatformat:"-2" }}%</td>
        <td class="num">€{{ item.weighted_value|floatformat:"0g" }}</td>
      </tr>
    {% endwith %}{% endfor %}"""  # noqa: E501


def test_past_close_rows_are_written_as_the_template_wrote_them(world, catalogue):
    from django.template import Context, Template

    from deals import forecast_views
    from tests.deal_factories import CustomerFactory

    c = catalogue
    with on(DAY):
        programme = ProgrammeSettings.load()
        programme.forecast_weight_mid = Decimal("37.50")
        programme.save()
        odd = factories.OrganisationFactory(name='Smit & <Zonen> "Klimaat"', region=world.north)
        customers = [
            CustomerFactory(organisation=odd, name="O'Brien & Co <b>", city="'s-Hertogenbosch"),
            CustomerFactory(organisation=odd, name="Müller GmbH", city=""),
        ]
        cases = [  # days overdue, stage, lines, protected until
            (1, "mid", [(c["pump"], 3, "1234.56")], date(2027, 1, 1)),
            (1, "", [(c["pump"], 1, "0.40"), (c["boiler"], 2, "1000000.50")], date(2026, 12, 24)),
            (9, "late", [], date(2027, 3, 3)),
            (40, "early", [(c["big_pump"], 7, "99999.99")], DAY),
            (400, "mid", [(c["boiler"], 1, "12.50"), (c["boiler"], 1, "12.50")], date(2028, 2, 29)),
        ]
        for i, (days, stage, lines, until) in enumerate(cases):
            protected(
                odd if i % 2 else world.own,
                world.own_user,
                DAY - timedelta(days=days),
                stage,
                lines,
                protected_until=until,
                customer=customers[i % 2],
            )
        page = client_for(world.channel_admin).get(PAGE)
    past = page.context["past"]
    assert len(past) == len(cases)
    expected = Template(PAST_ROWS_TEMPLATE).render(Context({"past": past, "forecast": page.context["forecast"]}))
    written = forecast_views._past_rows_html(past, DAY, forecast_views.Numbers())
    assert written == expected
    assert f"<tbody>\n    {written}\n    </tbody>" in page.content.decode()
    assert "<td>Smit &amp; &lt;Zonen&gt; &quot;Klimaat&quot;</td>" in written
    assert "<td>—</td>" in written and '<td class="num">37.50%</td>' in written


def test_the_list_behind_a_figure(world, book, catalogue):
    pumps = catalogue["pump"].line
    with on(DAY):
        client = client_for(world.channel_admin)
        page = client.get(PAGE)
        table = page.context["tables"][0]
        line = next(r for r in table.rows if r.row.label == "Heat pumps")
        january = line.months[2].url
        listed = client.get(january).context["page"].object_list
        assert [r.pk for r in listed] == [book["early_jan"].pk]
        assert f"product_line={pumps.pk}" in january
        # the total of a dealer: every protected registration closing from today
        dealers = page.context["tables"][3]
        own = next(r for r in dealers.rows if r.row.label == "Own Dealer B.V.")
        listed = client.get(own.total.url).context["page"].object_list
        assert {r.pk for r in listed} == {book[k].pk for k in ("late_now", "early_jan", "blank_oct", "mid_later")}
        # past close: apart, up to yesterday
        listed = client.get(page.context["past_url"]).context["page"].object_list
        assert [r.pk for r in listed] == [book["mid_past"].pk]
        # the hidden filters carried by the links: region and product
        listed = (
            client.get(reverse("deals:registration_list"), {"region": world.south.pk, "product": catalogue["pump"].pk})
            .context["page"]
            .object_list
        )
        assert [r.pk for r in listed] == [book["other"].pk]


def test_filters_narrow_the_lines_to_a_product_line(world, book, catalogue):
    boilers = catalogue["boiler"].line
    with on(DAY):
        client = client_for(world.channel_admin)
        result = client.get(PAGE, {"product_line": boilers.pk}).context["forecast"]
        assert [r.label for r in result.product_lines] == ["Boilers"]
        # the registration in two lines counts with its boiler line only
        assert result.totals.months[2].value == 2000
        assert result.totals.total.value == 2000 + 1000
        result = client.get(PAGE, {"region": world.south.pk}).context["forecast"]
        assert [r.label for r in result.dealers] == ["Other Dealer B.V."]
        result = client.get(PAGE, {"organisation": world.orphan.pk}).context["forecast"]
        assert result.totals.total.value == 1000


def _cells(totals: selectors.Row) -> list:
    return [vars(f) for f in (*totals.months, totals.later, totals.total, totals.past)]


@pytest.mark.parametrize("line", [None, "boiler", "pump"])
def test_totals_only_are_the_totals_of_the_whole_forecast(world, book, catalogue, line):
    """The region dashboard asks for the totals alone (another statement): the same figures, with
    and without a product line narrowing the lines, and nothing else."""
    product_line = catalogue[line].line if line else None
    with on(DAY):
        scopes = [Registration.objects.all(), Registration.objects.filter(organisation=world.own)]
        for registrations in scopes:
            whole = selectors.forecast(registrations, product_line=product_line)
            alone = selectors.forecast(registrations, product_line=product_line, totals_only=True)
            assert _cells(alone.totals) == _cells(whole.totals)
            assert alone.totals.total.registrations > 0
            assert (alone.product_lines, alone.products, alone.regions, alone.dealers) == ([], [], [], [])
        nothing = selectors.forecast(Registration.objects.none(), totals_only=True)
        assert nothing.is_empty and nothing.totals.total.registrations == 0


def test_sort_by_a_column(world, book):
    with on(DAY):
        client = client_for(world.channel_admin)
        by_name = client.get(PAGE).context["tables"][3]
        by_weight = client.get(PAGE, {"sort": "-weighted"}).context["tables"][3]
        by_december = client.get(PAGE, {"sort": "-2026-12"}).context["tables"][3]
    assert [r.row.label for r in by_name.rows] == ["Orphan Dealer B.V.", "Other Dealer B.V.", "Own Dealer B.V."]
    assert [r.row.label for r in by_weight.rows] == ["Own Dealer B.V.", "Other Dealer B.V.", "Orphan Dealer B.V."]
    assert [r.row.label for r in by_december.rows][:2] == ["Other Dealer B.V.", "Orphan Dealer B.V."]


def test_empty_forecast(world):
    page = client_for(world.pm_a).get(PAGE)
    assert page.status_code == 200
    assert "No protected registrations yet" in page.content.decode()


# --- the CSV -------------------------------------------------------------------------------------


def test_csv_for_production_planning(world, book, catalogue):
    with on(DAY):
        response = client_for(world.rd_north).get(CSV)
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="forecast-2026-11-15.csv"'
    rows = csv_rows(response)
    assert list(rows[0]) == [
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
    # the regional director of the north: the own and the orphan dealer, not the south
    assert {r["dealer"] for r in rows} == {"Own Dealer B.V.", "Orphan Dealer B.V."}
    # months in order, then later, then past close
    assert [r["month"] for r in rows] == [
        "2026-11",
        "2026-12",
        "2027-01",
        "2027-01",
        "2027-10",
        "later",
        "past expected close",
    ]
    january_pumps = next(r for r in rows if r["month"] == "2027-01" and r["SKU"] == "HP-8")
    assert january_pumps == {
        "month": "2027-01",
        "product line": "Heat pumps",
        "SKU": "HP-8",
        "product": "Pump 8 kW",
        "region": "North",
        "dealer": "Own Dealer B.V.",
        "decision stage": "Early",
        "quantity": "10",
        "value (EUR)": "10000.00",
        "stage weight (%)": "10.00",
        "weighted quantity": "1.00",
        "weighted value (EUR)": "1000.00",
    }
    blank = next(r for r in rows if r["month"] == "2027-10")
    assert (blank["decision stage"], blank["stage weight (%)"], blank["weighted value (EUR)"]) == (
        "not given",
        "5.00",
        "25.00",
    )


def test_csv_guards_against_formulas(world, catalogue):
    world.own.name = '=HYPERLINK("http://evil.example","Own")'
    world.own.save()
    ProductFactory(line=catalogue["pump"].line, name="+SUM(A1:A9)", sku="@X")
    evil = ProductFactory(line=catalogue["pump"].line, name="-2+3", sku="EVIL")
    with on(DAY):
        protected(world.own, world.own_user, date(2026, 12, 1), "late", [(evil, 1, "100.00")])
        rows = csv_rows(client_for(world.pm_a).get(CSV))
    (row_,) = rows
    assert row_["dealer"] == '\'=HYPERLINK("http://evil.example","Own")'
    assert row_["product"] == "'-2+3"
    assert row_["weighted value (EUR)"] == "75.00"


def test_csv_filters(world, book, catalogue):
    with on(DAY):
        rows = csv_rows(client_for(world.channel_admin).get(CSV, {"product_line": catalogue["boiler"].line.pk}))
    assert {r["product line"] for r in rows} == {"Boilers"}
    assert sum(Decimal(r["value (EUR)"]) for r in rows) == 2000 + 1000


# --- who sees what -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "dealers"),
    [
        ("pm_a", {"Own Dealer B.V."}),
        ("pm_b", {"Other Dealer B.V."}),
        ("rd_north", {"Own Dealer B.V.", "Orphan Dealer B.V."}),
        ("rd_south", {"Other Dealer B.V."}),
        ("channel_admin", {"Own Dealer B.V.", "Other Dealer B.V.", "Orphan Dealer B.V."}),
    ],
)
def test_each_sees_the_forecast_of_their_dealers(world, book, persona, dealers):
    with on(DAY):
        client = client_for(getattr(world, persona))
        result = client.get(PAGE).context["forecast"]
        exported = {r["dealer"] for r in csv_rows(client.get(CSV))}
    assert {r.label for r in result.dealers} == dealers
    assert exported == dealers


def test_a_registration_seen_through_a_conflict_is_not_in_the_forecast(world, book):
    """pm_a may open the other dealer's registration from a conflict, but it is not pm_a's pipeline."""
    Conflict.objects.create(registration=book["late_now"], other=book["other"], kind="conflict", score="0.9")
    assert Registration.objects.visible_to(world.pm_a).filter(pk=book["other"].pk).exists()
    with on(DAY):
        result = client_for(world.pm_a).get(PAGE).context["forecast"]
    assert [r.label for r in result.dealers] == ["Own Dealer B.V."]


def test_a_filter_cannot_reach_another_dealer(world, book):
    with on(DAY):
        page = client_for(world.pm_a).get(PAGE, {"organisation": world.other.pk})
        rows = csv_rows(client_for(world.pm_a).get(CSV, {"organisation": world.other.pk}))
    assert page.status_code == 200
    assert "Other Dealer" not in page.content.decode()
    assert {r["dealer"] for r in rows} == {"Own Dealer B.V."}


def test_dealers_direct_sales_and_outsiders_get_404(world):
    rep = direct_sales(email="rep@vendor.example")
    for person in (world.own_admin, world.own_user, world.other_admin, rep):
        client = client_for(person)
        assert client.get(PAGE).status_code == 404
        assert client.get(CSV).status_code == 404
    for url in (PAGE, CSV):
        response = Client().get(url)
        assert response.status_code == 302 and "login" in response["Location"]


# --- queries -------------------------------------------------------------------------------------


def _grow(world, catalogue, dealers: int, per_dealer: int):
    """`dealers` more dealers in both regions, each with registrations in every bucket."""
    closes = [date(2026, 11, 20), date(2027, 1, 10), date(2027, 6, 1), date(2028, 2, 1), date(2026, 10, 1)]
    for d in range(dealers):
        organisation = factories.OrganisationFactory(
            name=f"Dealer {d}/{dealers} B.V.", region=world.north if d % 2 else world.south, partner_manager=world.pm_a
        )
        for i in range(per_dealer):
            protected(
                organisation,
                world.own_user,
                closes[i % len(closes)],
                ["", "early", "mid", "late"][i % 4],
                [(catalogue["pump"], 1 + i, "1000.00"), (catalogue["boiler"], 2, "300.00")],
            )


def _count(client, url, **params) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize("url", [PAGE, CSV])
def test_queries_do_not_grow_with_registrations_and_dealers(world, catalogue, url):
    with on(DAY):
        client = client_for(world.channel_admin)
        _grow(world, catalogue, dealers=1, per_dealer=2)
        client.get(url)  # warm up: the programme settings row, the session
        small = _count(client, url)
        small_filtered = _count(client, url, region=world.north.pk, product_line=catalogue["pump"].line.pk)
        _grow(world, catalogue, dealers=8, per_dealer=7)
        large = _count(client, url)
        large_filtered = _count(client, url, region=world.north.pk, product_line=catalogue["pump"].line.pk)
    assert small == large
    assert small_filtered == large_filtered
    if url == PAGE:
        assert large <= 15, large


def test_a_long_dealer_table_shows_the_first_rows_and_counts_the_rest(world, catalogue, monkeypatch):
    from deals import forecast_views

    monkeypatch.setattr(forecast_views, "ROWS_SHOWN", 3)
    with on(DAY):
        _grow(world, catalogue, dealers=5, per_dealer=1)
        page = client_for(world.channel_admin).get(PAGE, {"sort": "-weighted"})
        csv_rows = list(csv.reader(io.StringIO(client_for(world.channel_admin).get(CSV).content.decode())))
    dealers = page.context["tables"][3]
    assert len(dealers.rows) == 3 and dealers.hidden == 2
    assert [r.row.total.weighted_value for r in dealers.rows] == sorted(
        (r.row.total.weighted_value for r in dealers.rows), reverse=True
    )
    # the totals still count every dealer, and the page says where the rest are
    assert dealers.totals.row.total.registrations == 5
    assert "3 shown; 2 more count in “All”" in page.content.decode()
    assert sum(1 for row in csv_rows if any("Dealer " in cell and "/5 B.V." in cell for cell in row)) >= 5


def test_the_totals_kept_for_a_build_and_day_stay_the_live_totals(world, book, catalogue):
    """The dashboards read the totals (and the open pipeline) from what is kept per roll-up build
    and day (tiers.rollup.forecast_totals, pipeline_figures). Kept right after a build, they equal
    the live figures after each kind of change alone (an approval, the dealer's update of its close
    date, its stage, its lines or its value, a withdrawal, a deletion, a protection cut short, a
    dealer moving region), for every whole-region scope; the next day counts its own buckets."""
    from dealers.models import Organisation
    from deals import services
    from tiers import rollup
    from tiers.models import RollupChange

    resellers = Organisation.objects.filter(kind=Organisation.Kind.RESELLER)
    scopes = [resellers, resellers.filter(region=world.north), resellers.filter(region=world.south)]

    def check(day):
        for scope in scopes:
            registrations = Registration.objects.filter(organisation__in=scope)
            kept = rollup.forecast_totals(scope, day)
            assert kept is not None
            got = selectors.forecast(registrations, today=day, totals_only=True, totals=kept)
            expected = selectors.forecast(registrations, today=day, totals_only=True)
            assert _cells(got.totals) == _cells(expected.totals), scope.query
            # and the open pipeline the same way (tiers.rollup.pipeline_figures)
            protected_now = registrations.filter(status=S.APPROVED, protected_until__gte=day).order_by()
            for key in ("organisation__region_id", None):
                live = {
                    k: (v, n)
                    for k, v, n in (
                        protected_now.values_list(key).annotate(v=Sum("expected_value"), n=Count("*"))
                        if key
                        else [(None, *protected_now.aggregate(v=Sum("expected_value"), n=Count("*")).values())]
                    )
                    if n
                }
                assert rollup.pipeline_figures(scope, day, key) == live, (scope.query, key)

    def update(registration, **changed):
        fields = {
            "expected_close_date": registration.expected_close_date,
            "decision_stage": registration.decision_stage,
            "next_steps": "",
            "competitors": "",
            **changed,
        }
        services.registration_update(registration=registration, actor=world.own_user, **fields)

    def value(registration, amount):  # (saved alone: the pipeline's figure)
        registration.expected_value = Decimal(amount)
        registration.save(update_fields=["expected_value"])

    def cut_short(registration):
        registration.protected_until = DAY - timedelta(days=1)
        registration.save(update_fields=["protected_until"])

    def move(organisation):
        organisation.region = world.south
        organisation.save()

    with on(DAY):
        waiting = protected(
            world.other, world.other_admin, date(2027, 2, 1), "early", [(catalogue["boiler"], 3, "1500.00")]
        )
        waiting.status, waiting.protected_until = S.SUBMITTED, None
        waiting.save()
        assert rollup.forecast_totals(resellers, DAY) is None  # no build: counted live
        changes = [
            (world.other, lambda: services.registration_approve(registration=waiting, actor=world.pm_b, reason="Ok.")),
            (world.own, lambda: update(book["early_jan"], expected_close_date=date(2027, 3, 3))),
            (world.own, lambda: update(book["late_now"], decision_stage="early")),
            (world.other, lambda: value(book["other"], "4321.99")),
            (
                world.own,
                lambda: update(
                    book["blank_oct"],
                    lines=[services.LineData(product=catalogue["pump"], quantity=7, value=Decimal("7777.77"))],
                ),
            ),
            (world.own, lambda: services.registration_withdraw(registration=book["mid_later"], actor=world.own_user)),
            (world.orphan, lambda: book["orphan"].delete()),
            (world.other, lambda: cut_short(book["other"])),
            (world.own, lambda: move(world.own)),
        ]
        for dealer, change in changes:
            rollup.rollup_build()
            assert rollup.forecast_totals(resellers.filter(pk=world.own.pk), DAY) is None  # not a whole region
            check(DAY)  # and keeps them
            change()
            assert set(RollupChange.objects.values_list("organisation_id", flat=True)) == {dealer.pk}
            check(DAY)
    later = DAY + timedelta(days=20)  # other buckets, other protections running: kept apart
    with on(later):
        check(later)


SORTS = ["name", "-name", "weighted", "-weighted", "unweighted", "-units", "later", "-2027-01", "2026-12"]


def test_the_page_figures_kept_for_a_build_and_day_are_the_statements(world, book, catalogue):
    """The forecast page reads every dimension from what is kept per roll-up build and day
    (tiers.rollup.forecast_sums): for every sort, with few rows shown (the first of the products and
    dealers chosen in the same order, ties by name then key), for the whole programme and for a
    region, it is the forecast of the statement; kept right after a build, also after each kind of
    change alone; the next day counts its own."""
    from dealers.models import Organisation
    from deals import services
    from tiers import rollup

    _grow(world, catalogue, dealers=4, per_dealer=3)
    twin = factories.OrganisationFactory(name="Own Dealer B.V.", region=world.south, country="BE")  # a name twice
    protected(twin, world.own_user, date(2027, 1, 10), "mid", [(catalogue["boiler"], 1, "300.00")])
    slipped = factories.OrganisationFactory(name="Aardvark Slipped B.V.", region=world.north)  # past close only
    protected(slipped, world.own_user, DAY - timedelta(days=3), "late", [(catalogue["big_pump"], 1, "900.00")])
    scopes = [Organisation.objects.all(), Organisation.objects.filter(region=world.north)]

    def check(day):
        for scope in scopes:
            registrations = Registration.objects.filter(organisation__in=scope)
            for sort in SORTS:
                kept = rollup.forecast_sums(scope, day)
                assert kept is not None
                got = selectors.forecast(registrations, today=day, sort=sort, limit=2, sums=kept)
                expected = selectors.forecast(registrations, today=day, sort=sort, limit=2)
                for name in ("product_lines", "products", "regions", "dealers"):
                    assert getattr(got, name) == getattr(expected, name), (scope.query, sort, name)
                assert _cells(got.totals) == _cells(expected.totals), (scope.query, sort)
                assert got.more == expected.more, (scope.query, sort)

    def update(registration, **changed):
        fields = {"expected_close_date": registration.expected_close_date, "next_steps": "", "competitors": ""}
        fields["decision_stage"] = registration.decision_stage
        services.registration_update(registration=registration, actor=world.own_user, **{**fields, **changed})

    with on(DAY):
        assert rollup.forecast_sums(scopes[0], DAY) is None  # no build: the statement
        changes = [
            lambda: update(book["early_jan"], expected_close_date=date(2027, 3, 3)),
            lambda: update(
                book["blank_oct"],
                lines=[
                    services.LineData(product=catalogue["pump"], quantity=7, value=Decimal("7777.77")),
                    services.LineData(product=catalogue["big_pump"], quantity=1, value=Decimal("10.00")),
                ],
            ),
            lambda: services.registration_withdraw(registration=book["other"], actor=world.other_admin),
            lambda: book["orphan"].delete(),
            lambda: protected(twin, world.own_user, date(2026, 12, 24), "late", [(catalogue["pump"], 2, "1.00")]),
        ]
        for change in changes:
            rollup.rollup_build()
            assert rollup.forecast_sums(Organisation.objects.filter(pk=world.own.pk), DAY) is None  # not a region
            check(DAY)  # and keeps them
            change()
            check(DAY)
        moved = Organisation.objects.get(pk=world.own.pk)
        moved.region = world.south
        moved.save()
        check(DAY)
        catalogue["boiler"].line = catalogue["pump"].line  # the catalogue changes: kept apart
        catalogue["boiler"].save()
        check(DAY)
    later = DAY + timedelta(days=45)
    with on(later):
        check(later)


def test_the_page_reads_what_is_kept_and_shows_the_same(world, book, catalogue):
    """After a build the channel admin's unfiltered page (any sort) reads the kept figures and shows
    what the statement showed, in as many queries whatever the data; a filtered page runs the
    statement."""
    from tiers import rollup

    client = client_for(world.channel_admin)
    with on(DAY):
        _grow(world, catalogue, dealers=3, per_dealer=2)

        def page(**params) -> str:  # without what differs per response: the CSRF token, the chart's id
            text = client.get(PAGE, params).content.decode()
            return re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"|chart-\d+', "", text)

        before = {sort: page(sort=sort) for sort in SORTS}
        rollup.rollup_build()
        calls = []
        real = rollup.forecast_sums

        def counted(*args):
            calls.append(args)
            return real(*args)

        import tiers.rollup as module

        module.forecast_sums = counted
        try:
            for sort in SORTS:
                assert page(sort=sort) == before[sort], sort
            assert len(calls) == len(SORTS)
            client.get(PAGE, {"region": world.north.pk})
            assert len(calls) == len(SORTS)  # filtered: not asked
        finally:
            module.forecast_sums = real
        rebuilt = _count(client, PAGE)  # nobody changed since the build
        _grow(world, catalogue, dealers=1, per_dealer=1)  # a changed dealer, counted live
        small = _count(client, PAGE)
        _grow(world, catalogue, dealers=6, per_dealer=4)
        large = _count(client, PAGE)
    assert small == large
    assert rebuilt == small - 3  # the changed dealers' regions, totals and lines
