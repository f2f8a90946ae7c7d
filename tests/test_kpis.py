"""Every KPI on a hand-computed fixture, per dealer, per region and for the programme, including
empty periods and dealers without data; the median agrees between SQLite and PostgreSQL."""

from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine

from dealers.models import LoginRecord, Organisation
from deals.models import ProductLine, Registration
from tests.deal_factories import make_registration
from tests.tier_factories import certify, sale, satisfaction
from tiers.kpis import Period, kpis, kpis_with_totals, medians

# every figure is checked counted live and counted from the roll-up (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("counted_both_ways")

S = Registration.Status
AMS = ZoneInfo("Europe/Amsterdam")
DAY = date(2026, 11, 23)
H1 = Period(date(2026, 1, 1), date(2026, 6, 30))


@pytest.fixture(autouse=True)
def on_day():
    with time_machine.travel(datetime(2026, 11, 23, 12, tzinfo=AMS), tick=False):
        yield


def local(y, m, d, hh=12, mm=0):
    return datetime(y, m, d, hh, mm, tzinfo=AMS)


def reg(world, status, submitted, organisation=None, **fields):
    organisation = organisation or world.own
    person = world.own_user if organisation == world.own else world.other_admin
    return make_registration(organisation, person, status, first_submitted_at=submitted, **fields)


@pytest.fixture
def figures(world):
    """The own dealer's first half of 2026 (see the module docstring of tiers.kpis for definitions)."""
    heat = ProductLine.objects.create(code="heat-pumps", name="Heat pumps")
    solar = ProductLine.objects.create(code="solar", name="Solar")
    sale(world.own, "1000", date(2026, 2, 1), product_line=heat)
    sale(world.own, "3000", date(2026, 6, 30), product_line=solar)  # the period's last day
    sale(world.own, "500", date(2025, 3, 1), product_line=heat)  # the year before
    sale(world.own, "9999", date(2026, 7, 1), product_line=heat)  # after the period
    reg(
        world,
        S.WON,
        local(2026, 1, 10),
        won_date=date(2026, 2, 9),
        won_value=Decimal("2000"),
        decided_at=local(2026, 1, 11),
        decided_in_time=True,
        review_working_hours=Decimal("8"),
    )
    reg(
        world,
        S.WON,
        local(2026, 3, 1),
        won_date=date(2026, 3, 11),
        won_value=Decimal("4000"),
        decided_at=local(2026, 3, 2),
        decided_in_time=True,
        review_working_hours=Decimal("20"),
    )
    reg(
        world,
        S.LOST,
        local(2026, 4, 1),
        decided_at=local(2026, 4, 5),
        decided_in_time=False,
        review_working_hours=Decimal("30"),
    )
    reg(
        world,
        S.APPROVED,
        local(2026, 5, 1),
        expected_value=Decimal("7000"),
        protected_until=DAY + timedelta(days=30),
        decided_at=local(2026, 5, 2),
        decided_in_time=True,
        review_working_hours=Decimal("4"),
    )
    reg(world, S.REJECTED, local(2026, 6, 1), decided_at=local(2026, 6, 30, 23, 30), decided_in_time=None)
    reg(world, S.SUBMITTED, local(2025, 12, 31, 23, 30))  # 22:30 UTC on the 31st: before the period
    reg(world, S.SUBMITTED, local(2026, 1, 1, 0, 30))  # 23:30 UTC on the 31st, but 1 January here: inside
    certify(world.own, "a", date(2027, 1, 1))
    certify(world.own, "b", date(2026, 6, 30))  # valid through the period's last day
    certify(world.own, "c", date(2026, 5, 1))  # expired before the end of the period
    satisfaction(world.own, 4, date(2026, 2, 1))
    satisfaction(world.own, 5, date(2026, 3, 1))
    satisfaction(world.own, 1, date(2025, 6, 1))
    for person, at in [
        (world.own_admin, local(2026, 1, 5)),
        (world.own_admin, local(2026, 2, 5)),
        (world.own_admin, local(2026, 3, 5)),
        (world.own_user, local(2026, 6, 30, 23, 59)),
        (world.own_user, local(2026, 7, 1, 0, 1)),
    ]:
        LoginRecord.objects.create(user=person, organisation=world.own, at=at)
    return world


def test_every_kpi_of_one_dealer(figures):
    k = kpis(Organisation.objects.all(), H1, "dealer")[figures.own.pk]
    assert (k.revenue, k.revenue_previous, k.growth) == (Decimal("4000"), Decimal("500"), Decimal("700.00"))
    assert [(name, amount, share) for name, amount, share in k.product_mix] == [
        ("Solar", Decimal("3000"), Decimal("75.00")),
        ("Heat pumps", Decimal("1000"), Decimal("25.00")),
    ]
    assert k.registrations == 6  # everything submitted from 1 January 00:30 local time to June
    assert (k.closed, k.won, k.close_ratio) == (3, 2, Decimal("66.67"))
    assert k.average_deal == Decimal("3000.00")
    assert k.cycle_days == Decimal("20.0")  # 30 and 10 days
    assert (k.pipeline, k.pipeline_count) == (Decimal("7000"), 1)
    assert (k.decided, k.decided_in_time, k.sla_compliance) == (4, 3, Decimal("75.00"))
    assert k.median_review_hours == Decimal("14.00")  # 4, 8, 20, 30
    assert (k.certifications_held, k.certifications_asked, k.certification_coverage) == (2, 3, Decimal("66.67"))
    assert (k.logins, k.login_people) == (4, 2)
    assert (k.satisfaction, k.satisfaction_count) == (Decimal("4.50"), 2)


def test_a_dealer_without_data_is_listed_with_zeros(figures):
    k = kpis(Organisation.objects.all(), H1, "dealer")[figures.other.pk]
    assert (k.revenue, k.registrations, k.pipeline, k.logins, k.product_mix) == (0, 0, 0, 0, [])
    assert k.growth is k.close_ratio is k.average_deal is k.cycle_days is k.sla_compliance is None
    assert k.median_review_hours is k.satisfaction is None
    assert (k.certifications_held, k.certification_coverage) == (0, Decimal("0.00"))


def test_an_empty_period(figures):
    k = kpis(Organisation.objects.all(), Period(date(2020, 1, 1), date(2020, 12, 31)), "dealer")[figures.own.pk]
    assert (k.revenue, k.registrations, k.decided, k.logins) == (0, 0, 0, 0)
    assert k.growth is None and k.average_deal is None and k.median_review_hours is None
    assert k.pipeline == Decimal("7000")  # the open pipeline is today's, whatever the period


def test_region_and_programme_levels_add_up(figures):
    regions = kpis(Organisation.objects.all(), H1, "region")
    north = regions[figures.north.pk]
    assert (north.label, north.dealers, north.revenue, north.registrations) == ("North", 2, Decimal("4000"), 6)
    assert (north.certifications_held, north.certifications_asked) == (2, 6)  # own 2 of 3, orphan 0 of 3
    assert regions[figures.south.pk].revenue == 0
    programme = kpis(Organisation.objects.all(), H1, "programme")[None]
    assert (programme.dealers, programme.revenue, programme.median_review_hours) == (
        3,
        Decimal("4000"),
        Decimal("14.00"),
    )


def test_distributors_are_left_out(figures):
    distributor = Organisation.objects.create(name="Groothandel", kind="distributor", region=figures.north)
    assert distributor.pk not in kpis(Organisation.objects.all(), H1, "dealer")


def test_scoped_to_the_organisations_given(figures):
    rows = kpis(Organisation.objects.visible_to(figures.pm_b), H1, "dealer")
    assert set(rows) == {figures.other.pk}


@pytest.mark.parametrize(
    ("values", "expected"),
    [([Decimal("5")], Decimal("5.00")), ([1, 2, 3], Decimal("2.00")), ([1, 2, 3, 10], Decimal("2.50"))],
)
def test_median_matches_percentile_cont(figures, values, expected):
    for v in values:
        reg(
            figures,
            S.APPROVED,
            local(2026, 2, 1),
            decided_at=local(2026, 2, 2),
            decided_in_time=True,
            review_working_hours=Decimal(v),
            organisation=figures.other,
        )
    got = medians(Registration.objects.filter(organisation=figures.other), "organisation_id", "review_working_hours")
    assert got == {figures.other.pk: expected}


def test_previous_year_of_a_leap_day():
    assert Period(date(2028, 2, 29), date(2028, 2, 29)).previous_year() == Period(date(2027, 2, 28), date(2027, 2, 28))


@pytest.mark.parametrize("level", ["dealer", "region", "programme"])
@pytest.mark.parametrize("with_medians", [True, False])
def test_the_totals_beside_a_table_are_the_programme_figures(figures, world, level, with_medians):
    """kpis_with_totals adds the totals up from the rows' own sums: the same as asking for the
    programme, over any scope and period (a person logging in for two dealers counts once)."""
    LoginRecord.objects.create(user=world.own_user, organisation=world.other, at=local(2026, 3, 2))
    LoginRecord.objects.create(user=world.own_user, organisation=world.own, at=local(2026, 3, 3))
    satisfaction(world.other, 3, date(2026, 4, 1))
    scopes = [Organisation.objects.all(), Organisation.objects.filter(pk=world.own.pk), Organisation.objects.none()]
    periods = [H1, Period(date(2025, 11, 24), DAY), Period(date(2026, 3, 5), date(2026, 3, 5))]
    for organisations in scopes:
        for period in periods:
            rows, totals = kpis_with_totals(organisations, period, level, DAY, with_medians=with_medians)
            assert rows == kpis(organisations, period, level, DAY, with_medians=with_medians)
            expected = kpis(organisations, period, "programme", DAY, with_medians=with_medians)[None]
            assert totals == expected, (organisations, period)
            assert str(totals.revenue_previous) == str(expected.revenue_previous)
            assert str(totals.pipeline) == str(expected.pipeline)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_certification_coverage_and_tier_counts_in_the_database_are_the_dealers_added_up(world, seed):
    """Per region and for the programme the certification coverage is added up in one query
    (tiers.kpis.certification_coverage), and the dealers per tier counted (tier_counts): the same as
    adding up each dealer's own (held up to what its tier asks; the tier that applies: an active
    override, else the tier held, else the lowest), over dealers with and without standings,
    overrides running and ended, grace periods, tiers with and without a minimum, expired and
    repeated certifications."""
    import random
    from collections import Counter

    from tests import factories
    from tiers.kpis import (
        applied_tier_pks,
        applied_tiers,
        applied_tiers_with_status,
        certification_coverage,
        tier_counts,
    )
    from tiers.models import DealerStanding, Tier, TierProgramme

    rng = random.Random(seed)
    tiers = list(Tier.objects.order_by("rank"))
    for tier in tiers:
        tier.min_certifications = rng.choice([None, 0, 1, 2, 4])
        tier.save()
    dealers = [world.own, world.other, world.orphan] + [
        factories.OrganisationFactory(name=f"Dealer {seed}-{i}", region=rng.choice([world.north, world.south]))
        for i in range(12)
    ]
    for dealer in dealers:
        for _ in range(rng.randint(0, 4)):
            certify(dealer, rng.choice(["a", "b", "c", "d"]), DAY + timedelta(days=rng.randint(-30, 30)))
        if rng.random() < 0.8:
            override = rng.choice([None, DAY - timedelta(days=1), DAY, DAY + timedelta(days=9)])
            DealerStanding.objects.create(
                organisation=dealer,
                tier=rng.choice(tiers),
                since=DAY - timedelta(days=100),
                grace_started_on=rng.choice([None, DAY - timedelta(days=3)]),
                override_tier=rng.choice(tiers) if override else None,
                override_until=override,
            )
    programme = TierProgramme.load()
    resellers = Organisation.objects.filter(kind=Organisation.Kind.RESELLER)
    end = DAY + timedelta(days=rng.randint(-10, 10))
    applied = applied_tiers(resellers, DAY)
    expected: dict = {}
    for dealer in resellers:
        asks = applied[dealer.pk].min_certifications or programme.certifications_target
        held = len({h.certification_id for h in dealer.certifications.filter(valid_until__gte=end)})
        for key in (dealer.region_id, "all"):
            found = expected.setdefault(key, [0, 0])
            found[0] += min(held, asks)
            found[1] += asks
    everything = expected.pop("all")
    assert certification_coverage(resellers, end, DAY, programme, "region") == {
        k: tuple(v) for k, v in expected.items()
    }
    assert certification_coverage(resellers, end, DAY, programme, "programme") == {None: tuple(everything)}
    in_grace = set(
        DealerStanding.objects.filter(grace_started_on__isnull=False).values_list("organisation_id", flat=True)
    )
    dealers_in = Counter(t.pk for t in applied.values())
    grace_in = Counter(t.pk for pk, t in applied.items() if pk in in_grace)
    assert tier_counts(resellers, DAY) == {pk: (n, grace_in[pk]) for pk, n in dealers_in.items()}
    by_pk, chosen = applied_tier_pks(resellers, DAY)
    assert sorted((pk, status, by_pk[tier]) for pk, status, tier in chosen) == sorted(
        applied_tiers_with_status(resellers, DAY), key=lambda row: row[0]
    )


def test_certification_coverage_without_tiers_asks_the_programme_target(world):
    from tiers.kpis import certification_coverage
    from tiers.models import Tier, TierProgramme

    Tier.objects.all().delete()
    programme = TierProgramme.load()
    certify(world.own, "a", DAY)
    resellers = Organisation.objects.filter(kind=Organisation.Kind.RESELLER)
    target = programme.certifications_target
    assert certification_coverage(resellers, DAY, DAY, programme, "programme") == {None: (min(1, target), 3 * target)}
    assert certification_coverage(resellers.none(), DAY, DAY, programme, "programme") == {}
