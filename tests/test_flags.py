"""Dealers flagged for attention, each flag on a hand-computed example, and the improvement plans
on the dashboards."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.urls import reverse

from dealers.models import LoginRecord, Organisation, Territory
from dealers.services import improvement_plan_open
from deals.models import Registration
from tests import factories
from tests.conftest import client_for
from tests.deal_factories import make_registration
from tests.tier_factories import certify
from tiers import services as tier_services
from tiers.flags import flags_for
from tiers.kpis import Period, kpis
from tiers.models import TierProgramme

# every figure is checked counted live and counted from the roll-up (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("counted_both_ways")

S = Registration.Status
AMS = ZoneInfo("Europe/Amsterdam")
DAY = date(2026, 11, 23)
PERIOD = Period(date(2026, 1, 1), DAY)


@pytest.fixture(autouse=True)
def on_day():
    with time_machine.travel(datetime(2026, 11, 23, 12, tzinfo=AMS), tick=False):
        yield


def at(days_ago):
    return datetime(2026, 11, 23, 12, tzinfo=AMS) - timedelta(days=days_ago)


def registrations(org, n, status=S.SUBMITTED, days_ago=10):
    person = factories.dealer_user(org)
    for _ in range(n):
        make_registration(org, person, status, first_submitted_at=at(days_ago))


def codes():
    orgs = Organisation.objects.all()
    rows = kpis(orgs, PERIOD, "dealer")
    return {pk: sorted(f.code for f in flags) for pk, flags in flags_for(orgs, PERIOD, rows).items()}


@pytest.fixture
def peers(world):
    """Five Bronze dealers (never evaluated), all fully certified, with 0 (orphan), 3 (own), 8
    (other), 10 and 10 registrations: the tier's median is 8."""
    extra = [factories.OrganisationFactory(region=world.north, partner_manager=world.pm_a) for _ in range(2)]
    registrations(extra[0], 10)
    registrations(extra[1], 10)
    registrations(world.other, 8)
    registrations(world.own, 3)
    for org in [*extra, world.other, world.own, world.orphan]:
        for code in ("a", "b", "c"):
            certify(org, f"{code}-{org.pk}", date(2027, 6, 1))
    return world


def test_few_registrations_against_the_tier_median(peers):
    flags = codes()
    # median of 0, 3, 8, 10, 10 = 8; half of it is 4: own (3) and orphan (0) are flagged
    assert "few_registrations" in flags[peers.own.pk]
    assert "few_registrations" in flags[peers.orphan.pk]
    assert "few_registrations" not in flags.get(peers.other.pk, [])
    programme = TierProgramme.load()
    programme.attention_registrations_percent = 30  # 30 % of 8 = 2.4: own's 3 is enough now
    programme.save()
    assert "few_registrations" not in codes().get(peers.own.pk, [])


def test_low_close_ratio_needs_enough_ended_registrations(world):
    registrations(world.own, 1, S.WON)
    registrations(world.own, 3, S.LOST)  # 1 of 4 ended: 25 %, not below 25 %, and fewer than 5
    assert "low_close_ratio" not in codes().get(world.own.pk, [])
    registrations(world.own, 1, S.EXPIRED)  # 1 of 5: 20 %
    assert "low_close_ratio" in codes()[world.own.pk]


def test_missing_and_expired_certifications(world):
    certify(world.own, "a", date(2027, 1, 1))
    certify(world.own, "b", date(2027, 1, 1))
    certify(world.own, "c", date(2026, 11, 1))  # expired: Bronze asks for the programme's 3
    assert "certifications" in codes()[world.own.pk]
    certify(world.own, "d", date(2027, 1, 1))
    assert "certifications" not in codes().get(world.own.pk, [])


def test_no_activity_for_n_days(world):
    registrations(world.own, 1, days_ago=61)
    assert "inactive" in codes()[world.own.pk]
    LoginRecord.objects.create(user=world.own_admin, organisation=world.own, at=at(59))
    assert "inactive" not in codes().get(world.own.pk, [])
    assert "inactive" in codes()[world.other.pk]  # never did anything


def test_exclusive_territory_without_registrations(world):
    Territory.objects.create(
        organisation=world.own, country="NL", postcode_from="1000", postcode_to="1999", exclusive=True
    )
    assert "territory" in codes()[world.own.pk]
    registrations(world.own, 1)
    assert "territory" not in codes().get(world.own.pk, [])


def test_flag_texts_on_the_team_dashboard(world):
    registrations(world.own, 1, days_ago=100)
    page = client_for(world.pm_a).get(reverse("tiers:team_dashboard")).content.decode()
    assert "No registration and no log-in since" in page
    assert reverse("dealers:plan_open", args=[world.own.pk]) in page


def test_plans_on_the_dashboards(world):
    plan = improvement_plan_open(
        organisation=world.own,
        goals="Ten registrations a quarter",
        deadline=DAY + timedelta(days=30),
        notes="Internal: owner is retiring",
        actor=world.pm_a,
    )
    mine = client_for(world.own_admin).get(reverse("tiers:dealer_dashboard")).content.decode()
    assert "Your improvement plan" in mine and "Ten registrations a quarter" in mine
    assert "owner is retiring" not in mine
    colleague = client_for(world.own_user).get(reverse("tiers:dealer_dashboard")).content.decode()
    assert "Your improvement plan" not in colleague  # plans are for the dealer's management
    with time_machine.travel(datetime(2026, 12, 24, 9, tzinfo=AMS), tick=False):
        team = client_for(world.pm_a).get(reverse("tiers:team_dashboard")).content.decode()
        assert "Improvement plans to review" in team
        assert reverse("dealers:plan_review", args=[plan.pk]) in team
        other = client_for(world.pm_b).get(reverse("tiers:team_dashboard")).content.decode()
        assert "Improvement plans to review" not in other


def test_the_peers_are_the_whole_programme_not_the_page(peers):
    # pm_a's view of one dealer still compares it with every Bronze dealer (median 8)
    only_own = Organisation.objects.filter(pk=peers.own.pk)
    rows = kpis(only_own, PERIOD, "dealer")
    flags = flags_for(only_own, PERIOD, rows)
    assert [f.code for f in flags[peers.own.pk]] == ["few_registrations"]
    assert "median Bronze dealer (8)" in flags[peers.own.pk][0].text


def test_a_tier_with_few_dealers_still_gets_the_other_flags(world):
    # only one Gold dealer: no median to compare with, but its missing certifications still show
    from tiers.models import Tier

    Tier.objects.filter(name="Gold").update(min_certifications=2)
    tier_services.tier_override(
        organisation=world.own,
        tier=Tier.objects.get(name="Gold"),
        until=DAY + timedelta(days=30),
        reason="Fair",
        actor=world.channel_admin,
    )
    assert "certifications" in codes()[world.own.pk]


def test_dealers_on_their_way_out_are_not_flagged(world):
    Organisation.objects.filter(pk=world.own.pk).update(status=Organisation.Status.PHASING_OUT)
    Organisation.objects.filter(pk=world.other.pk).update(status=Organisation.Status.TERMINATED)
    flags = codes()
    assert world.own.pk not in flags and world.other.pk not in flags
    assert "inactive" in flags[world.orphan.pk]


def test_the_tier_that_applies_read_with_the_status(world):
    """applied_tiers_with_status, the peers' tiers: never evaluated is the lowest tier; an override
    applies to its last day and not after."""
    from tiers.kpis import applied_tiers, applied_tiers_with_status
    from tiers.models import DealerStanding, Tier

    gold, silver, bronze = (Tier.objects.get(name=n) for n in ("Gold", "Silver", "Bronze"))
    DealerStanding.objects.create(organisation=world.own, tier=silver, since=DAY)
    DealerStanding.objects.create(
        organisation=world.other, tier=silver, since=DAY, override_tier=gold, override_until=DAY, override_reason="r"
    )
    Organisation.objects.filter(pk=world.orphan.pk).update(status=Organisation.Status.PHASING_OUT)
    resellers = Organisation.objects.filter(kind=Organisation.Kind.RESELLER)
    found = {pk: (status, tier) for pk, status, tier in applied_tiers_with_status(resellers, DAY)}
    assert found[world.own.pk] == ("active", silver)
    assert found[world.other.pk] == ("active", gold)  # the override's last day
    assert found[world.orphan.pk] == ("phasing_out", bronze)  # never evaluated
    after = applied_tiers(resellers, DAY + timedelta(days=1))
    assert (after[world.own.pk], after[world.other.pk], after[world.orphan.pk]) == (silver, silver, bronze)
    assert len(after) == resellers.count()
