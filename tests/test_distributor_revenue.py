"""Revenue through a distributor is counted for it on its own: hand-computed totals, growth and the
split per reseller; who sees it; distributors never enter the tier evaluation."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from tests import factories
from tests.conftest import client_for
from tests.tier_factories import sale
from tiers import services
from tiers.models import Evaluation, Sale
from tiers.selectors import distributor_revenue

DAY = date(2026, 11, 23)


@pytest.fixture(autouse=True)
def on_day():
    with time_machine.travel(DAY, tick=False):
        yield


@pytest.fixture
def distributor(world):
    """A distributor looked after by pm_b, through which the own dealer (pm_a's) and the other
    dealer (pm_b's) buy."""
    org = factories.OrganisationFactory(
        name="Groothandel Noord B.V.", kind="distributor", region=world.north, partner_manager=world.pm_b
    )
    sale(world.own, "1000", DAY, distributor=org)  # today: inside the window
    sale(world.own, "2500.50", DAY - timedelta(days=364), distributor=org)  # the window's first day
    sale(world.other, "4000", DAY - timedelta(days=30), distributor=org)
    sale(world.other, "3000", DAY - timedelta(days=365), distributor=org)  # previous 12 months
    sale(world.other, "999", DAY - timedelta(days=730), distributor=org)  # exactly 2 years ago: outside both windows
    sale(world.own, "777", DAY - timedelta(days=10))  # direct: not the distributor's
    sale(world.own, "5", DAY + timedelta(days=1), distributor=org)  # tomorrow: not yet
    return org


def test_revenue_growth_and_split_per_reseller(world, distributor):
    through = distributor_revenue(distributor)
    assert through.first == date(2025, 11, 24) and through.last == DAY
    assert through.revenue == Decimal("7500.50")
    assert through.sales == 3
    assert through.previous == Decimal("3000")  # the sale of exactly 2 years ago falls outside
    assert through.growth == Decimal("150.0")  # (7500.50 - 3000) / 3000 = 150.02 %
    assert through.by_reseller == [("Other Dealer B.V.", Decimal("4000")), ("Own Dealer B.V.", Decimal("3500.50"))]


def test_a_distributor_without_sales_shows_zero(world):
    org = factories.OrganisationFactory(kind="distributor", region=world.north)
    through = distributor_revenue(org)
    assert (through.revenue, through.previous, through.sales, through.by_reseller, through.growth) == (
        Decimal("0"),
        Decimal("0"),
        0,
        [],
        None,
    )


def test_the_resellers_keep_their_revenue_and_the_distributor_is_not_evaluated(world, distributor):
    services.tiers_recompute(day=DAY)
    assert not Evaluation.objects.filter(organisation=distributor).exists()
    own = Evaluation.objects.get(organisation=world.own)
    assert own.revenue == Decimal("4277.50")  # 1000 + 2500.50 through the distributor + 777 direct


def test_staff_and_the_distributor_see_the_card_resellers_do_not(world, distributor):
    page = client_for(world.pm_b).get(reverse("dealers:dealer_detail", args=[distributor.pk])).content.decode()
    assert "Sales through this distributor" in page and "€7,501" in page and "+150.0%" in page
    assert "Other Dealer B.V." in page
    person = factories.dealer_admin(distributor)
    home = client_for(person).get(reverse("home")).content.decode()
    assert "Sales through you" in home and "€7,501" in home
    assert "Klant B.V." not in home  # totals per reseller, never the customers
    reseller_home = client_for(world.own_admin).get(reverse("home")).content.decode()
    assert "Sales through" not in reseller_home


def test_staff_of_the_distributor_see_its_sales_dealers_only_their_own(world, distributor):
    # pm_b looks after the distributor, not the own dealer: it sees the sales to the own dealer that
    # went through its distributor, and none of the own dealer's direct ones
    seen = set(Sale.objects.visible_to(world.pm_b).values_list("amount", flat=True))
    assert Decimal("1000") in seen and Decimal("777") not in seen
    distributor_person = factories.dealer_admin(distributor)
    assert not Sale.objects.visible_to(distributor_person).exists()  # no reseller's customer lines
    assert set(Sale.objects.visible_to(world.own_admin).values_list("reseller", flat=True)) == {world.own.pk}


def test_staff_see_only_the_names_of_the_resellers_they_look_after(world, distributor):
    # pm_b looks after the distributor and the other dealer, not the own dealer
    page = client_for(world.pm_b).get(reverse("dealers:dealer_detail", args=[distributor.pk])).content.decode()
    assert "Other Dealer B.V." in page and "Own Dealer B.V." not in page
    assert "Resellers you do not look after" in page and "€3,501" in page
    # the channel admin sees every reseller
    page = client_for(world.channel_admin).get(reverse("dealers:dealer_detail", args=[distributor.pk])).content.decode()
    assert "Own Dealer B.V." in page and "Resellers you do not look after" not in page
