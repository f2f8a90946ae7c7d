"""The dashboards of each role: who may open which, what they show, CSV exports, the lists behind
the figures, and a number of queries that does not grow with the dealers and registrations."""

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from deals.models import Registration
from tests import factories
from tests.conftest import client_for, with_totp
from tests.deal_factories import make_registration
from tests.tier_factories import certify, sale, satisfaction

# every figure is checked counted live and counted from the roll-up (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("counted_both_ways")

S = Registration.Status
AMS = ZoneInfo("Europe/Amsterdam")
DAY = date(2026, 11, 23)
PERIOD = "start=2026-01-01&end=2026-06-30"


@pytest.fixture(autouse=True)
def on_day():
    with time_machine.travel(datetime(2026, 11, 23, 12, tzinfo=AMS), tick=False):
        yield


def at(y, m, d):
    return datetime(y, m, d, 12, tzinfo=AMS)


def activity(org, person, n=1, name_suffix=""):
    """A little of everything for one dealer."""
    for i in range(n):
        sale(org, "1000", date(2026, 3, 1) + timedelta(days=i))
        make_registration(org, person, S.WON, first_submitted_at=at(2026, 2, 1), won_date=date(2026, 3, 1))
        make_registration(
            org, person, S.APPROVED, first_submitted_at=at(2026, 4, 1), expected_close_date=DAY + timedelta(days=40)
        )
        make_registration(org, person, S.ESCALATED, first_submitted_at=at(2026, 5, 1))
    certify(org, f"c-{org.pk}", date(2027, 1, 1))
    satisfaction(org, 4, date(2026, 3, 1))


DASHBOARDS = {
    "dealer": reverse("tiers:dealer_dashboard"),
    "team": reverse("tiers:team_dashboard"),
    "region": reverse("tiers:region_dashboard"),
}


@pytest.mark.parametrize(
    ("persona", "allowed"),
    [
        ("own_admin", {"dealer"}),
        ("own_user", {"dealer"}),
        ("pm_a", {"team"}),
        ("rd_north", {"team", "region"}),
        ("channel_admin", {"team", "region"}),
    ],
)
def test_who_opens_which_dashboard(world, persona, allowed):
    client = client_for(getattr(world, persona))
    for name, url in DASHBOARDS.items():
        assert client.get(url).status_code == (200 if name in allowed else 404), name
    landing = client.get(reverse("tiers:dashboard"))
    assert landing.status_code == 302


def test_direct_sales_and_anonymous(world):
    rep = with_totp(factories.direct_sales(email="rep@vendor.example"))
    for url in [*DASHBOARDS.values(), reverse("tiers:dashboard"), reverse("tiers:figures_sales")]:
        assert client_for(rep).get(url).status_code == 404
    for url in [*DASHBOARDS.values(), reverse("tiers:figures_sales")]:
        response = Client().get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("account_login"))


def test_dealer_dashboard_shows_its_own_figures_and_charts(world):
    activity(world.own, world.own_user)
    activity(world.other, world.other_admin, n=3)
    page = client_for(world.own_admin).get(f"{DASHBOARDS['dealer']}?{PERIOD}").content.decode()
    assert "Own Dealer B.V.: dashboard" in page
    assert "Other Dealer" not in page
    assert page.count("<svg") >= 3  # pipeline, revenue per month, product mix
    assert "<script" not in page.split("</header>")[1]
    assert "€1,000" in page  # its revenue in the period
    assert "Approved (protected): <strong>1</strong>" in page


def test_team_dashboard_ranks_only_the_managers_dealers(world):
    activity(world.own, world.own_user, n=2)
    activity(world.other, world.other_admin, n=3)
    page = client_for(world.pm_a).get(f"{DASHBOARDS['team']}?{PERIOD}&sort=-revenue").content.decode()
    assert "Own Dealer B.V." in page and "Other Dealer B.V." not in page
    admin_page = client_for(world.channel_admin).get(f"{DASHBOARDS['team']}?{PERIOD}&sort=-revenue").content.decode()
    admin_page = admin_page.split('id="ranking"')[1]
    assert admin_page.index("Other Dealer B.V.") < admin_page.index("Own Dealer B.V.") < admin_page.index("Orphan")


def test_team_dashboard_csv(world):
    activity(world.own, world.own_user, n=2)
    response = client_for(world.pm_a).get(f"{DASHBOARDS['team']}?{PERIOD}&format=csv")
    assert response["Content-Type"].startswith("text/csv")
    lines = response.content.decode("utf-8-sig").strip().splitlines()
    assert lines[0].startswith("dealer,region,revenue_eur,growth_percent,registrations")
    assert lines[1].startswith("Own Dealer B.V.,North,2000")
    assert len(lines) == 2


def test_csv_cells_cannot_start_a_formula(world):
    world.own.name = '=HYPERLINK("http://evil")'
    world.own.save()
    response = client_for(world.pm_a).get(f"{DASHBOARDS['team']}?{PERIOD}&format=csv")
    assert "'=HYPERLINK" in response.content.decode("utf-8-sig")


def test_region_dashboard(world):
    activity(world.own, world.own_user)
    activity(world.other, world.other_admin)
    page = client_for(world.rd_north).get(f"{DASHBOARDS['region']}?{PERIOD}").content.decode()
    assert "Escalations waiting" in page and "Own Dealer B.V." in page and "Other Dealer B.V." not in page
    assert "Review SLA of the partner managers" in page
    csv = client_for(world.rd_north).get(f"{DASHBOARDS['region']}?{PERIOD}&format=csv").content.decode("utf-8-sig")
    assert csv.splitlines()[1].startswith("North,2,1000")


def test_bad_period_is_explained_and_the_default_shown(world):
    page = client_for(world.pm_a).get(f"{DASHBOARDS['team']}?start=2026-06-01&end=2026-01-01").content.decode()
    assert "The period starts after it ends" in page
    assert "Figures for <strong>24 Nov 2025 – 23 Nov 2026</strong>" in page


def test_figures_list_the_registrations_behind_a_number(world):
    activity(world.own, world.own_user, n=2)
    activity(world.other, world.other_admin)
    url = reverse("tiers:figures_registrations")
    page = client_for(world.pm_a).get(f"{url}?kpi=submitted&dealer={world.own.pk}&{PERIOD}").content.decode()
    assert "6 registrations" in page
    # another manager's dealer: the list is empty, never theirs
    page = client_for(world.pm_a).get(f"{url}?kpi=submitted&dealer={world.other.pk}&{PERIOD}").content.decode()
    assert "0 registrations" in page and "No registrations behind this figure" in page
    # a dealer asking for another dealer sees its own, nothing else
    page = client_for(world.other_admin).get(f"{url}?kpi=pipeline&dealer={world.own.pk}").content.decode()
    assert "Own Dealer" not in page
    assert client_for(world.pm_a).get(f"{url}?kpi=nonsense").status_code == 404
    csv = client_for(world.pm_a).get(f"{url}?kpi=won&{PERIOD}&format=csv").content.decode("utf-8-sig")
    assert len(csv.strip().splitlines()) == 3


def test_figures_sales(world):
    activity(world.own, world.own_user, n=2)
    activity(world.other, world.other_admin)
    url = reverse("tiers:figures_sales")
    page = client_for(world.own_admin).get(f"{url}?{PERIOD}").content.decode()
    assert "2 sales, €2,000.00" in page
    page = client_for(world.pm_b).get(f"{url}?dealer={world.own.pk}&{PERIOD}").content.decode()
    assert "0 sales" in page


def _count(client, url) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


@pytest.mark.parametrize(
    ("persona", "name"),
    [
        ("own_admin", "dealer"),
        ("pm_a", "team"),
        ("rd_north", "region"),
        ("channel_admin", "region"),
        ("channel_admin", "team"),
    ],
)
def test_query_count_does_not_grow(world, persona, name):
    activity(world.own, world.own_user)
    client = client_for(getattr(world, persona))
    url = f"{DASHBOARDS[name]}?{PERIOD}"
    first = _count(client, url)
    for i in range(4):
        org = factories.OrganisationFactory(name=f"More {i}", region=world.north, partner_manager=world.pm_a)
        activity(org, factories.dealer_user(org), n=2)
    activity(world.own, world.own_user, n=3)
    assert _count(client, url) == first


def test_chart_text_is_escaped(world):
    from prm.charts import Bar, bar_chart, share_chart

    svg = bar_chart([Bar("<script>x</script>", (Decimal(5),), "/a?b=1&c=2")], series=("s",), title="t<")
    assert "<script>" not in svg and "&lt;script&gt;" in svg and "b=1&amp;c=2" in svg
    assert "<script>" not in share_chart([("<b>", Decimal(1), Decimal(100), "")], title="x")


def test_pipeline_by_month_keeps_what_is_past_its_close_date_apart(world):
    from tiers.dashboards import pipeline_by_month

    def protected(close, value):
        make_registration(
            world.own, world.own_user, S.APPROVED, expected_close_date=close, expected_value=Decimal(value)
        )

    protected(date(2026, 11, 20), "100")  # this month, but already past its close date
    protected(date(2026, 11, 30), "200")
    protected(date(2027, 1, 2), "400")  # across the year boundary
    protected(date(2027, 11, 1), "800")  # the 13th month: beyond the horizon
    span, by_month, overdue_value, overdue_count = pipeline_by_month(Registration.objects.all(), DAY)
    assert span[0] == (2026, 11) and span[-1] == (2027, 10) and len(span) == 12
    assert by_month[(2026, 11)] == (Decimal("200"), 1)
    assert by_month[(2027, 1)] == (Decimal("400"), 1)
    assert (2027, 11) not in span
    assert (overdue_value, overdue_count) == (Decimal("100"), 1)
    page = client_for(world.own_admin).get(DASHBOARDS["dealer"]).content.decode()
    assert "close_from=2026-11-23&amp;close_to=2026-11-30" in page  # the bar links to its registrations


def test_dealer_figures_and_sla_csv(world):
    activity(world.own, world.own_user)
    csv = client_for(world.own_admin).get(f"{DASHBOARDS['dealer']}?{PERIOD}&format=csv").content.decode("utf-8-sig")
    lines = csv.strip().splitlines()
    assert lines[0] == "figure,unit,2026-01-01..2026-06-30,2025-01-01..2025-06-30"
    label, unit, now, before = lines[1].split(",")
    assert (label, unit, Decimal(now), Decimal(before)) == ("Revenue", "€", 1000, 0)  # PostgreSQL keeps 1000.00
    make_registration(
        world.own,
        world.own_user,
        S.APPROVED,
        first_submitted_at=at(2026, 2, 1),
        decided_at=at(2026, 2, 2),
        decided_in_time=False,
        review_working_hours=Decimal("30"),
    )
    sla = client_for(world.rd_north).get(f"{DASHBOARDS['region']}?{PERIOD}&format=sla-csv").content.decode("utf-8-sig")
    rows = sla.strip().splitlines()
    assert rows[0] == "partner_manager,decided,in_time,share_in_time_percent,median_working_hours"
    assert rows[1].startswith(f"{world.pm_a.get_full_name() or world.pm_a.email},")


def test_figures_sort_by_value(world):
    for value in ("300", "100", "200"):
        make_registration(
            world.own, world.own_user, S.SUBMITTED, first_submitted_at=at(2026, 2, 1), expected_value=Decimal(value)
        )
    url = reverse("tiers:figures_registrations")
    page = client_for(world.pm_a).get(f"{url}?kpi=submitted&{PERIOD}&sort=value").content.decode()
    assert page.index("€100") < page.index("€200") < page.index("€300")
    page = client_for(world.pm_a).get(f"{url}?kpi=submitted&{PERIOD}&sort=-value").content.decode()
    assert page.index("€300") < page.index("€200") < page.index("€100")
    assert client_for(world.pm_a).get(f"{url}?kpi=submitted&sort=nonsense").status_code == 200


def test_links_behind_the_figures_keep_the_period(world):
    activity(world.own, world.own_user)
    page = client_for(world.pm_a).get(f"{DASHBOARDS['team']}?{PERIOD}").content.decode()
    link = f"{reverse('tiers:figures_sales')}?dealer={world.own.pk}&amp;start=2026-01-01&amp;end=2026-06-30"
    assert link in page
    listed = client_for(world.pm_a).get(link.replace("&amp;", "&")).content.decode()
    assert "1 Jan 2026 – 30 Jun 2026" in listed


def test_the_lists_behind_the_totals_keep_the_dealer_filter_and_dealers_without_manager(world):
    activity(world.own, world.own_user)
    activity(world.other, world.other_admin)
    activity(world.orphan, factories.dealer_user(world.orphan))
    page = client_for(world.channel_admin).get(f"{DASHBOARDS['team']}?{PERIOD}&q=Own").content.decode()
    assert "q=Own" in page.split('id="flagged"')[0]  # the totals' links carry the filter
    url = reverse("tiers:figures_sales")
    listed = client_for(world.channel_admin).get(f"{url}?{PERIOD}&q=Own").content.decode()
    assert "1 sale," in listed
    regs = reverse("tiers:figures_registrations")
    listed = client_for(world.rd_north).get(f"{regs}?kpi=submitted&pm=none&{PERIOD}").content.decode()
    assert "3 registrations" in listed and "Orphan Dealer B.V." in listed and "Own Dealer B.V." not in listed


def test_certification_coverage_is_not_compared_with_last_year(world):
    activity(world.own, world.own_user)
    page = client_for(world.own_admin).get(f"{DASHBOARDS['dealer']}?{PERIOD}").content.decode()
    row = page.split("Certification coverage (now)")[1].split("</tr>")[0]
    assert row.count("No data in this period") == 1 and row.rstrip().endswith('<td class="num">—</td>')  # not known


def test_only_an_end_before_the_default_start_is_explained(world):
    page = client_for(world.pm_a).get(f"{DASHBOARDS['team']}?end=2020-01-01").content.decode()
    assert "The period starts after it ends" in page
    page = client_for(world.pm_a).get(f"{DASHBOARDS['team']}?start=0001-01-01").content.decode()
    assert "Choose dates from 1900 on" in page


def test_the_team_page_lists_the_most_flagged_dealers_and_all_on_request(world, monkeypatch):
    """A team of hundreds can have a hundred flagged dealers: the card lists the first few (most
    flags first) and all of them on request, with the dealer filter kept."""
    monkeypatch.setattr("tiers.dashboards.FLAGGED_SHOWN", 1)
    url = f"{DASHBOARDS['team']}?{PERIOD}"
    response = client_for(world.channel_admin).get(url)
    count = response.context["flagged_count"]
    assert count >= 2  # no registrations, no log-ins, no certifications: every dealer is flagged
    card = response.content.decode().split('id="flagged"')[1].split("</section>")[0]
    assert card.count("Open an improvement plan") + card.count("On an improvement plan") == 1
    assert f"Show all {count}</a>" in card and "flagged=all#flagged" in card
    response = client_for(world.channel_admin).get(f"{url}&flagged=all")
    card = response.content.decode().split('id="flagged"')[1].split("</section>")[0]
    assert card.count("Open an improvement plan") + card.count("On an improvement plan") == count
    assert "Show the first 1</a>" in card and "flagged=all" not in card.split("Show the first")[1]


@pytest.mark.parametrize(
    "value",
    [None, Decimal("0"), Decimal("1234567.49"), Decimal("1234567.5"), Decimal("-3.25"), Decimal("12.04"), 7, 0],
)
@pytest.mark.parametrize("unit", ["€", "%", ""])
def test_the_kpi_filter_writes_what_the_value_template_wrote(value, unit):
    """{{ value|kpi:unit }} (the team table's figures) against dashboards/_value.html (less the
    file's last newline, which the include wrote into every cell)."""
    from django.template import Context, Template
    from django.template.loader import render_to_string

    expected = render_to_string("dashboards/_value.html", {"value": value, "unit": unit})
    written = Template("{% load kpi %}{{ value|kpi:unit }}").render(Context({"value": value, "unit": unit}))
    assert written == expected.removesuffix("\n")
