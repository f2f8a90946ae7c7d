"""What people see of the tiers: the gap to the next tier on hand-computed examples in both modes,
the tier page and badge for each persona, and the tier column and filters of the dealer list."""

from datetime import date, timedelta
from decimal import Decimal
from xml.etree import ElementTree

import pytest
import time_machine
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests import factories
from tests.conftest import client_for
from tests.tier_factories import certify, sale, satisfaction
from tiers import services
from tiers.models import DealerStanding, Sale, Tier, TierProgramme
from tiers.selectors import Gap, next_tier_gap

DAY = date(2026, 11, 23)
# The default programme: weights revenue 40, growth 15, compliance 20, certifications 15, satisfaction 10;
# targets €500,000, 20 %, 80 %, 3 certifications, 4.5. Gold: a total of 75 and 2 certifications; Silver: 50.


@pytest.fixture(autouse=True)
def on_day():
    with time_machine.travel(DAY, tick=False):
        yield


def tier(name) -> Tier:
    return Tier.objects.get(name=name)


def texts(steps) -> list[str]:
    return [str(step) for step in steps]


def make_silver_at_60(organisation):
    """Revenue €250,400, all registered (50.08 → 20.032 points), growth from zero (100 → 15),
    compliance 100 % (→ 20), 1 certification (33.33 → 4.9995), no satisfaction: total 60.03."""
    sale(organisation, "250400", DAY - timedelta(days=10), registered=True)
    certify(organisation, "hp-installer", DAY + timedelta(days=365))


def make_gold(organisation, day=DAY):
    sale(organisation, "600000", day - timedelta(days=5), registered=True)
    for code in ("a", "b", "c"):
        certify(organisation, code, day + timedelta(days=365))
    satisfaction(organisation, 5, day - timedelta(days=5))


# --- the gap, absolute mode ---------------------------------------------------------------------------


def test_gap_to_gold_requires_a_certification_and_offers_exact_alternatives(world):
    make_silver_at_60(world.own)
    services.tiers_recompute(day=DAY)
    gap = next_tier_gap(world.own)
    assert gap.kind == Gap.NEXT
    assert gap.tier.name == "Silver" and gap.target.name == "Gold"
    assert gap.total == Decimal("60.03")
    # required, not an alternative: Gold asks for 2 certifications; the second one also lifts the
    # certification score to 66.67 (→ 10.0005 points), so the total becomes 65.03: 9.97 points short
    assert texts(gap.required) == ["1 more certification (Gold requires at least 2; you hold 1)"]
    assert gap.points == Decimal("9.97")
    # revenue: 50.08 + 9.97 / 0.4 = 75.005 → €375,025 → €124,625 more → €125,000 (€124,000 gives 74.95);
    # growth has no base, compliance is at full marks, a third certification adds only 5 points;
    # satisfaction: 9.97 / 0.1 = 99.7 → 4.4865 → 4.5 (4.4 gives 74.81)
    assert texts(gap.alternatives) == [
        "€125,000 more revenue in the next 12 months",
        "customer satisfaction average 4.5 (no scores yet)",
    ]
    assert gap.headline == (
        "For Gold you need 1 more certification and 9.97 more points, "
        "for example €125,000 more revenue in the next 12 months."
    )
    assert gap.bar == "Gold needs a total of 75 and at least 2 certifications."


def test_gap_to_silver_with_growth_compliance_and_certification_alternatives(world):
    own = world.own
    sale(own, "100000", DAY - timedelta(days=20), registered=True)
    sale(own, "100000", DAY - timedelta(days=40))  # compliance 50 % → 62.5 → 12.5 points
    sale(own, "190000", DAY - timedelta(days=400))  # growth 5.26 % → 26.3 → 3.945 points
    satisfaction(own, 3, DAY - timedelta(days=3))  # 3 / 4.5 → 66.67 → 6.667 points
    services.tiers_recompute(day=DAY)  # revenue 200,000 → 40 → 16 points; total 39.11: Bronze
    gap = next_tier_gap(own)
    assert (gap.tier.name, gap.target.name) == ("Bronze", "Silver")
    assert (gap.total, gap.points) == (Decimal("39.11"), Decimal("10.89"))
    assert gap.required == []
    assert texts(gap.alternatives) == [
        # 40 + 10.89 / 0.4 = 67.225 → €336,125 → €137,000 more (€136,000 gives 49.99)
        "€137,000 more revenue in the next 12 months",
        # 26.3 + 10.89 / 0.15 = 98.9 → 19.78 % → 20 % (19 % gives 49.42); 190,000 × 1.2
        "growth up to 20% on the year before (revenue of €228,000; now 5.26%)",
        # compliance can add only 7.5 points, satisfaction 3.33: left out
        # 10.89 / 0.15 = 72.6 → 2.18 → 3 (2 gives 49.11)
        "3 more certifications",
    ]
    assert gap.headline == (
        "For Silver you need 10.89 more points, for example €137,000 more revenue in the next 12 months."
    )


def test_top_tier_says_what_keeps_it_there(world):
    make_gold(world.own)
    services.tiers_recompute(day=DAY)
    gap = next_tier_gap(world.own)
    assert gap.kind == Gap.TOP and gap.target.name == "Gold"
    assert gap.headline == (
        "Gold is the top tier: it stays yours while your total stays at 75 or above (now 100) "
        "and you hold at least 2 certifications (now 3)."
    )
    assert "90-day grace period" in gap.bar
    assert gap.alternatives == [] and gap.required == []


def test_no_evaluation_yet(world):
    gap = next_tier_gap(world.own)
    assert gap.kind == Gap.NOT_EVALUATED and gap.evaluation is None
    assert gap.tier.name == "Bronze"
    assert gap.headline.startswith("Your first evaluation runs tonight")


def test_override_says_until_when_and_shows_the_earned_tier(world):
    make_silver_at_60(world.own)
    services.tiers_recompute(day=DAY)
    services.tier_override(
        organisation=world.own,
        tier=tier("Gold"),
        until=DAY + timedelta(days=30),
        reason="Launch partner",
        actor=world.channel_admin,
    )
    gap = next_tier_gap(world.own)
    assert gap.tier.name == "Gold" and gap.earned_tier.name == "Silver"
    assert gap.override_sentence == "Gold is set for you until 23 December 2026; your scores earn Silver."
    assert gap.summary == gap.override_sentence
    assert gap.headline.startswith("For Gold you need 1 more certification")  # to earn it themselves


def test_grace_period_gap_is_about_keeping_the_tier(world):
    make_gold(world.own)
    services.tiers_recompute(day=DAY)
    later = DAY + timedelta(days=400)  # the sales aged out, the certifications expired
    with time_machine.travel(later, tick=False):
        services.tiers_recompute(day=later)
        gap = next_tier_gap(world.own)
    assert gap.kind == Gap.KEEP and gap.target.name == "Gold" and gap.tier.name == "Gold"
    assert gap.grace_ends_on == later + timedelta(days=90) == date(2028, 3, 27)
    assert gap.headline.startswith("To keep Gold after 27 March 2028 you need 2 more certifications and ")


# --- the gap, distribution mode -------------------------------------------------------------------------


def distribution():
    programme = TierProgramme.load()
    programme.mode = TierProgramme.Mode.DISTRIBUTION
    programme.save()


def test_distribution_gap_is_against_the_stored_cutoff(world):
    distribution()
    # three dealers, top 20 % Gold (1), next 30 % Silver (1), the rest Bronze
    sale(world.other, "500000", DAY - timedelta(days=3))  # 40 + 15 (growth from zero) = 55
    sale(world.own, "250000", DAY - timedelta(days=3))  # 20 + 15 = 35
    services.tiers_recompute(day=DAY)
    gap = next_tier_gap(world.own)
    assert gap.evaluation.run.cutoffs == {"Gold": "55.00", "Silver": "35.00"}
    assert (gap.kind, gap.tier.name, gap.target.name, gap.points) == (Gap.NEXT, "Silver", "Gold", 20)
    assert gap.required == []  # Gold's certification minimum is for absolute mode only
    assert texts(gap.alternatives) == [
        "€250,000 more revenue in the next 12 months",  # revenue to 100: +20 points
        "registration compliance up to 80% (now 0%: the share of your revenue registered before the sale)",
    ]
    assert gap.headline == (
        "For Gold you need 20 more points to reach the latest cut-off (55), "
        "for example €250,000 more revenue in the next 12 months."
    )
    assert "top 20% of dealers" in gap.bar and "moves with the other dealers' scores" in gap.bar
    top = next_tier_gap(world.other)
    assert top.kind == Gap.TOP
    assert top.headline == (
        "Gold is the top tier: it stays yours while you stay in the top 20% of dealers "
        "(the latest cut-off was 55; you have 55)."
    )


# --- the tier page -----------------------------------------------------------------------------------


def other_with_a_secret_sale(world):
    secret = sale(world.other, "77777", DAY - timedelta(days=2))
    Sale.objects.filter(pk=secret.pk).update(customer_name="Geheime Klant Zuid")


def test_dealer_sees_its_tier_scores_gap_and_history(world):
    make_silver_at_60(world.own)
    other_with_a_secret_sale(world)
    services.tiers_recompute(day=DAY)
    response = client_for(world.own_user).get(reverse("tiers:my_tier"))
    assert response.status_code == 200
    page = response.content.decode()
    assert '<p class="tier-name">Silver</p>' in page
    assert "Revenue, trailing 12 months" in page and "€250,400" in page
    assert "For Gold you need 1 more certification and 9.97 more points" in page
    assert "€125,000 more revenue in the next 12 months" in page
    assert "First evaluation" in page  # the history
    assert "€250,400.00" in page  # its own sale behind the revenue
    assert "Geheime Klant Zuid" not in page and "Other Dealer" not in page
    assert reverse("tiers:my_badge") in page and "Use it in your marketing" in page


def test_page_before_the_first_evaluation(world):
    page = client_for(world.own_admin).get(reverse("tiers:my_tier")).content.decode()
    assert "Your first evaluation runs tonight" in page
    assert "Not evaluated yet" in page


def test_grace_and_override_on_the_page(world):
    make_gold(world.own)
    services.tiers_recompute(day=DAY)
    later = DAY + timedelta(days=400)
    with time_machine.travel(later, tick=False):
        services.tiers_recompute(day=later)
        page = client_for(world.own_admin).get(reverse("tiers:my_tier")).content.decode()
        assert "Grace period until 27 March 2028" in page
        services.tier_override(
            organisation=world.own,
            tier=tier("Gold"),
            until=later + timedelta(days=10),
            reason="Trade fair partner",
            actor=world.channel_admin,
        )
        page = client_for(world.own_admin).get(reverse("tiers:my_tier")).content.decode()
        assert "Gold is set for you until 7 January 2028; your scores earn Gold." in page
        assert "Trade fair partner" in page


def test_tier_page_access_for_each_persona(world):
    services.tiers_recompute(day=DAY)
    own_staff_url = reverse("tiers:dealer_tier", args=[world.own.pk])
    other_staff_url = reverse("tiers:dealer_tier", args=[world.other.pk])
    assert client_for(world.own_admin).get(reverse("tiers:my_tier")).status_code == 200
    assert client_for(world.other_admin).get(reverse("tiers:my_tier")).status_code == 200
    # dealers use /tier/; the staff address answers 404, for another dealer as for their own
    assert client_for(world.own_admin).get(other_staff_url).status_code == 404
    assert client_for(world.own_admin).get(own_staff_url).status_code == 404
    assert client_for(world.pm_a).get(own_staff_url).status_code == 200
    assert client_for(world.rd_north).get(own_staff_url).status_code == 200
    assert client_for(world.channel_admin).get(other_staff_url).status_code == 200
    assert client_for(world.pm_a).get(other_staff_url).status_code == 404
    assert client_for(world.rd_south).get(own_staff_url).status_code == 404
    assert client_for(world.pm_a).get(reverse("tiers:my_tier")).status_code == 404  # staff have no own tier
    assert client_for(world.pm_a).get(reverse("tiers:dealer_tier", args=[99999])).status_code == 404
    for url in (reverse("tiers:my_tier"), reverse("tiers:my_badge"), own_staff_url):
        response = Client().get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("account_login"))


def test_distributors_have_no_tier_page(world):
    distributor = factories.OrganisationFactory(kind="distributor", region=world.north, partner_manager=world.pm_a)
    person = factories.dealer_admin(distributor)
    assert client_for(person).get(reverse("tiers:my_tier")).status_code == 404
    assert client_for(world.pm_a).get(reverse("tiers:dealer_tier", args=[distributor.pk])).status_code == 404
    assert "My tier" not in client_for(person).get(reverse("home")).content.decode()


def test_staff_see_the_sales_sorted_and_paginated(world):
    for i in range(30):
        sale(world.own, str(1000 + i), DAY - timedelta(days=i + 1))
    sale(world.own, "99999", DAY - timedelta(days=400))  # last year: not behind this revenue figure
    other_with_a_secret_sale(world)
    services.tiers_recompute(day=DAY)
    client = client_for(world.pm_a)
    url = reverse("tiers:dealer_tier", args=[world.own.pk])
    newest = client.get(url)
    assert newest.context["sales"].paginator.count == 30
    assert [s.amount for s in newest.context["sales"].object_list][:2] == [Decimal("1000"), Decimal("1001")]
    by_amount = client.get(url, {"sort": "-amount"})
    assert by_amount.context["sales"].object_list[0].amount == Decimal("1029")
    assert by_amount.context["sort_amount"] == "amount"  # a second click reverses it
    second = client.get(url, {"sort": "amount", "page": 2})
    assert [s.amount for s in second.context["sales"].object_list] == [Decimal(1025 + i) for i in range(5)]
    page = second.content.decode()
    assert "Page 2 of 2" in page and "sort=amount" in page
    assert "Geheime Klant Zuid" not in page
    assert client.get(url, {"sort": "id", "page": "x"}).status_code == 200  # unknown orders are ignored


# --- the badge -------------------------------------------------------------------------------------------


def test_badge_is_an_svg_with_the_tier_name(world):
    make_gold(world.own)
    services.tiers_recompute(day=DAY)
    response = client_for(world.own_user).get(reverse("tiers:my_badge"))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    svg = response.content.decode()
    root = ElementTree.fromstring(svg)  # well-formed
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = " ".join(root.itertext())
    assert "Gold partner" in text and "PARTNER PROGRAMME" in text and "Own Dealer B.V." in text
    assert "@import" not in svg and "@font-face" not in svg and "href" not in svg
    staff = client_for(world.pm_a).get(reverse("tiers:dealer_badge", args=[world.own.pk]))
    assert staff["Content-Type"] == "image/svg+xml" and "Gold partner" in staff.content.decode()
    assert client_for(world.pm_b).get(reverse("tiers:dealer_badge", args=[world.own.pk])).status_code == 404


def test_badge_escapes_the_dealer_name(world):
    world.own.name = 'Bos & "Zn" <Techniek>'
    world.own.save()
    svg = client_for(world.own_admin).get(reverse("tiers:my_badge")).content.decode()
    ElementTree.fromstring(svg)
    assert "Bronze partner" in svg  # never evaluated: the lowest tier


# --- home, nav, dealer detail ---------------------------------------------------------------------------


def test_dealer_home_has_a_tier_card_and_the_nav_a_link(world):
    make_silver_at_60(world.own)
    services.tiers_recompute(day=DAY)
    page = client_for(world.own_admin).get(reverse("home")).content.decode()
    assert "Your tier" in page and "For Gold you need 1 more certification and 9.97 more points" in page
    assert f'href="{reverse("tiers:my_tier")}"' in page and "My tier" in page
    assert "My tier" not in client_for(world.pm_a).get(reverse("home")).content.decode()


def test_dealer_detail_has_a_tier_card_linking_to_the_evaluation(world):
    make_silver_at_60(world.own)
    services.tiers_recompute(day=DAY)
    page = client_for(world.pm_a).get(reverse("dealers:dealer_detail", args=[world.own.pk])).content.decode()
    assert '<p class="tier-name">Silver</p>' in page
    assert reverse("tiers:dealer_tier", args=[world.own.pk]) in page


# --- the dealer list ---------------------------------------------------------------------------------------


def listed(user, **params) -> set[str]:
    response = client_for(user).get(reverse("dealers:dealer_list"), params)
    assert response.status_code == 200
    return {org.name for org in response.context["page"].object_list}


def test_dealer_list_tier_column_and_filter(world):
    make_gold(world.own)
    services.tiers_recompute(day=DAY)
    newcomer = factories.OrganisationFactory(name="Newcomer B.V.", region=world.north, partner_manager=world.pm_a)
    admin = world.channel_admin
    assert listed(admin, tier=tier("Gold").pk) == {"Own Dealer B.V."}
    # never evaluated: in the lowest tier, as its margin and cap are
    assert listed(admin, tier=tier("Bronze").pk) == {"Other Dealer B.V.", "Orphan Dealer B.V.", newcomer.name}
    assert listed(admin, tier=tier("Silver").pk) == set()
    page = client_for(world.pm_a).get(reverse("dealers:dealer_list")).content.decode()
    assert "<th>Tier</th>" in page and "not yet evaluated" in page
    assert '<label for="id_tier">Tier:</label>' in page
    # an override counts, while it lasts
    services.tier_override(
        organisation=world.other, tier=tier("Silver"), until=DAY + timedelta(days=5), reason="x", actor=admin
    )
    assert listed(admin, tier=tier("Silver").pk) == {"Other Dealer B.V."}
    assert "Other Dealer B.V." not in listed(admin, tier=tier("Bronze").pk)
    with time_machine.travel(DAY + timedelta(days=6), tick=False):
        assert "Other Dealer B.V." in listed(admin, tier=tier("Bronze").pk)


def test_dealer_list_grace_filter(world):
    make_gold(world.own)
    make_gold(world.orphan)
    services.tiers_recompute(day=DAY)
    later = DAY + timedelta(days=400)
    make_gold(world.orphan, later)  # the orphan keeps selling; the own dealer does not
    with time_machine.travel(later, tick=False):
        services.tiers_recompute(day=later)
        assert listed(world.channel_admin, in_grace="on") == {"Own Dealer B.V."}
        assert listed(world.pm_a, in_grace="on") == {"Own Dealer B.V."}
        assert listed(world.pm_b, in_grace="on") == set()
        assert len(listed(world.channel_admin)) == 3
        assert "grace" in client_for(world.pm_a).get(reverse("dealers:dealer_list")).content.decode()


def test_dealer_list_query_count_with_tiers_does_not_grow(world):
    def count() -> int:
        client = client_for(world.channel_admin)
        client.get(reverse("dealers:dealer_list"))  # warm the session
        with CaptureQueriesContext(connection) as ctx:
            client.get(reverse("dealers:dealer_list"), {"q": "B.V."})
        return len(ctx.captured_queries)

    services.tiers_recompute(day=DAY)
    small = count()
    for _ in range(20):
        organisation = factories.OrganisationFactory(region=world.north, partner_manager=world.pm_a)
        sale(organisation, "1000", DAY)
    services.tiers_recompute(day=DAY + timedelta(days=1))
    services.tier_override(
        organisation=world.own, tier=tier("Gold"), until=DAY + timedelta(days=5), reason="x", actor=world.channel_admin
    )
    DealerStanding.objects.filter(organisation=world.other).update(grace_started_on=DAY)
    assert count() == small, small
