"""The tier evaluation: criteria on hand-computed examples, both qualification modes, the grace
period, overrides, idempotency and a query count that does not grow with the dealers."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from deals import services as deal_services
from prm.models import OutboxEmail
from tests import factories
from tests.tier_factories import certify, sale, satisfaction
from tiers import services
from tiers.models import DealerStanding, Evaluation, EvaluationRun, Tier, TierChange, TierProgramme
from tiers.selectors import lowest_tier, tier_for

DAY = date(2026, 11, 23)


def tier(name) -> Tier:
    return Tier.objects.get(name=name)


def evaluation(organisation, day=DAY) -> Evaluation:
    return Evaluation.objects.get(run__run_on=day, organisation=organisation)


# --- criteria -------------------------------------------------------------------------------------------


def test_criteria_on_a_hand_computed_example(world):
    own = world.own
    sale(own, "300000", DAY - timedelta(days=10), registered=True)  # this year, compliant
    sale(own, "100000", DAY - timedelta(days=364))  # this year (the window is 365 days back, exclusive)
    sale(own, "999", DAY - timedelta(days=365))  # last year: day - 365 is outside "this year"
    sale(own, "199001", DAY - timedelta(days=500))  # last year
    sale(own, "5000", DAY + timedelta(days=1))  # the future: not counted
    certify(own, "hp-install", DAY)  # valid through today
    certify(own, "hp-install", DAY + timedelta(days=30))  # the same certification twice counts once
    certify(own, "vrf", DAY - timedelta(days=1))  # expired
    satisfaction(own, 5, DAY - timedelta(days=3))
    satisfaction(own, 4, DAY - timedelta(days=40))
    satisfaction(own, 1, DAY - timedelta(days=400))  # older than a year
    raw = services.criteria_as_of(DAY)[own.pk]
    assert raw.revenue == Decimal("400000")
    assert raw.revenue_previous == Decimal("200000")
    assert raw.growth == Decimal("100.00")
    assert raw.compliance == Decimal("75.00")  # 300,000 of 400,000 through an approved registration
    assert raw.certifications == 1
    assert raw.satisfaction == Decimal("4.50")
    programme = TierProgramme.load()  # targets 500k, 20 %, 80 %, 3, 4.5; weights 40/15/20/15/10
    scores = services.scores_of(raw, programme)
    assert scores == {
        "revenue": Decimal("80.00"),
        "growth": Decimal("100.00"),
        "compliance": Decimal("93.75"),
        "certifications": Decimal("33.33"),
        "satisfaction": Decimal("100.00"),
    }
    # 0.4*80 + 0.15*100 + 0.2*93.75 + 0.15*33.33 + 0.1*100 = 32 + 15 + 18.75 + 5.00 + 10
    assert services.total_of(scores, programme) == Decimal("80.75")


def test_growth_from_zero_and_a_dealer_without_data(world):
    sale(world.own, "1000", DAY - timedelta(days=1))
    raws = services.criteria_as_of(DAY)
    programme = TierProgramme.load()
    assert raws[world.own.pk].growth is None
    assert services.scores_of(raws[world.own.pk], programme)["growth"] == 100
    nothing = services.Raw()
    assert services.scores_of(nothing, programme) == {c: 0 for c in services.Criterion.values}
    assert services.total_of(services.scores_of(nothing, programme), programme) == 0


def test_negative_growth_scores_zero(world):
    sale(world.own, "100", DAY - timedelta(days=1))
    sale(world.own, "1000", DAY - timedelta(days=400))
    raw = services.criteria_as_of(DAY)[world.own.pk]
    assert raw.growth == Decimal("-90.00")
    assert services.scores_of(raw, TierProgramme.load())["growth"] == 0


# --- qualification ------------------------------------------------------------------------------------


def test_absolute_bars_with_a_certification_minimum(db):
    tiers = list(Tier.objects.order_by("rank"))  # Gold ≥ 75 and 2 certifications, Silver ≥ 50, Bronze
    assert services.qualify_absolute(Decimal("75"), 2, tiers).name == "Gold"
    assert services.qualify_absolute(Decimal("75"), 1, tiers).name == "Silver"  # missing a certification
    assert services.qualify_absolute(Decimal("74.99"), 5, tiers).name == "Silver"
    assert services.qualify_absolute(Decimal("50"), 0, tiers).name == "Silver"
    assert services.qualify_absolute(Decimal("49.99"), 9, tiers).name == "Bronze"


@pytest.mark.parametrize(
    ("totals", "expected"),
    [
        # 10 dealers: top 20 % Gold (2), next 30 % Silver (3), rest Bronze
        ([90, 80, 70, 60, 50, 40, 30, 20, 10, 5], ["Gold"] * 2 + ["Silver"] * 3 + ["Bronze"] * 5),
        # a tie at the Gold cut-off: both tied dealers are Gold
        ([90, 80, 80, 60, 50, 40, 30, 20, 10, 5], ["Gold"] * 3 + ["Silver"] * 2 + ["Bronze"] * 5),
        # fewer dealers than tiers: the top share rounds up
        ([40], ["Gold"]),
        ([40, 30], ["Gold", "Bronze"]),  # the second of two is in the top 100 %, not the top 50 %
        # nobody earns a tier with a zero total
        ([0, 0, 0], ["Bronze"] * 3),
    ],
)
def test_distribution_mode(db, totals, expected):
    tiers = list(Tier.objects.order_by("rank"))
    result, cutoffs = services.qualify_distribution({i: Decimal(t) for i, t in enumerate(totals)}, tiers)
    assert [result[i].name for i in range(len(totals))] == expected
    if expected[0] == "Gold":
        assert Decimal(cutoffs["Gold"]) == min(Decimal(t) for t, e in zip(totals, expected, strict=True) if e == "Gold")


# --- the nightly run ----------------------------------------------------------------------------------


def make_gold(organisation, day=DAY):
    sale(organisation, "600000", day - timedelta(days=5), registered=True)
    certify(organisation, "a", day + timedelta(days=365))
    certify(organisation, "b", day + timedelta(days=365))
    certify(organisation, "c", day + timedelta(days=365))
    satisfaction(organisation, 5, day - timedelta(days=5))


def test_first_run_places_every_dealer_and_reruns_change_nothing(world):
    make_gold(world.own)
    first = services.tiers_recompute(day=DAY)
    assert first.created
    assert DealerStanding.objects.get(organisation=world.own).tier.name == "Gold"
    assert DealerStanding.objects.get(organisation=world.other).tier.name == "Bronze"
    assert TierChange.objects.filter(kind="start").count() == 3
    counts = (Evaluation.objects.count(), TierChange.objects.count(), OutboxEmail.objects.count())
    again = services.tiers_recompute(day=DAY)
    assert not again.created and again.run == first.run
    assert (Evaluation.objects.count(), TierChange.objects.count(), OutboxEmail.objects.count()) == counts
    assert tier_for(world.own).name == "Gold"


def test_promotion_at_once_demotion_after_the_grace_period(world):
    services.tiers_recompute(day=DAY)
    assert tier_for(world.own).name == "Bronze"
    make_gold(world.own, DAY + timedelta(days=1))
    services.tiers_recompute(day=DAY + timedelta(days=1))
    assert tier_for(world.own).name == "Gold"
    assert TierChange.objects.filter(organisation=world.own, kind="promotion").count() == 1
    # a year later the sales have aged out: below Gold, the grace period starts and warns
    later = DAY + timedelta(days=500)
    services.tiers_recompute(day=later)
    standing = DealerStanding.objects.get(organisation=world.own)
    assert standing.tier.name == "Gold" and standing.grace_started_on == later
    warning = TierChange.objects.get(organisation=world.own, kind="grace_start")
    assert "until" in warning.reason
    assert OutboxEmail.objects.filter(to=world.own_admin.email, subject__icontains="grace").exists()
    assert OutboxEmail.objects.filter(to=world.pm_a.email, subject__icontains="grace").exists()
    services.tiers_recompute(day=later + timedelta(days=89))
    assert tier_for(world.own).name == "Gold"
    services.tiers_recompute(day=later + timedelta(days=90))
    assert tier_for(world.own).name == "Bronze"
    assert TierChange.objects.filter(organisation=world.own, kind="demotion").count() == 1


def test_recovering_within_the_grace_period_cancels_the_demotion(world):
    make_gold(world.own)
    services.tiers_recompute(day=DAY)
    dip = DAY + timedelta(days=400)
    services.tiers_recompute(day=dip)
    assert DealerStanding.objects.get(organisation=world.own).grace_started_on == dip
    make_gold(world.own, dip + timedelta(days=10))
    services.tiers_recompute(day=dip + timedelta(days=10))
    standing = DealerStanding.objects.get(organisation=world.own)
    assert standing.grace_started_on is None and standing.tier.name == "Gold"
    assert TierChange.objects.filter(organisation=world.own, kind="grace_end").count() == 1
    services.tiers_recompute(day=dip + timedelta(days=120))  # well past the old grace end
    assert tier_for(world.own).name == "Gold"


def test_override_wins_until_its_end(world):
    services.tiers_recompute(day=DAY)
    with pytest.raises(services.TierError):
        services.tier_override(organisation=world.own, tier=tier("Gold"), until=DAY, reason="x", actor=world.pm_a)
    import time_machine

    with time_machine.travel(DAY, tick=False):
        services.tier_override(
            organisation=world.own,
            tier=tier("Gold"),
            until=DAY + timedelta(days=30),
            reason="Strategic launch partner",
            actor=world.channel_admin,
        )
        assert tier_for(world.own).name == "Gold"
    with time_machine.travel(DAY + timedelta(days=31), tick=False):
        assert tier_for(world.own).name == "Bronze"
        services.tiers_recompute(day=DAY + timedelta(days=31))
    standing = DealerStanding.objects.get(organisation=world.own)
    assert standing.override_tier is None
    assert list(TierChange.objects.filter(organisation=world.own).values_list("kind", flat=True)) == [
        "override_end",
        "override",
        "start",
    ]


def test_never_evaluated_dealer_is_in_the_lowest_tier_and_its_margin_follows(world):
    assert tier_for(world.own) == lowest_tier()
    make_gold(world.own)
    services.tiers_recompute(day=DAY)
    gold = tier("Gold")
    assert deal_services._margin_for(world.own, None) == gold.base_margin_percent + gold.registered_extra_margin_percent
    assert deal_services.open_registration_cap(world.own) == gold.open_registration_cap


def test_queries_do_not_grow_with_the_number_of_dealers(world):
    def run(day):
        with CaptureQueriesContext(connection) as ctx:
            services.tiers_recompute(day=day)
        return len(ctx.captured_queries)

    run(DAY)  # places everyone (first run writes START changes)
    small = run(DAY + timedelta(days=1))
    for _ in range(25):
        organisation = factories.OrganisationFactory(region=world.north)
        sale(organisation, "1000", DAY)
    run(DAY + timedelta(days=2))  # the newcomers' first evaluation
    large = run(DAY + timedelta(days=3))
    assert large == small, (small, large)


def test_terminated_dealers_and_distributors_are_not_evaluated(world):
    factories.OrganisationFactory(kind="distributor", region=world.north)
    factories.OrganisationFactory(status="terminated", region=world.north)
    services.tiers_recompute(day=DAY)
    assert Evaluation.objects.count() == 3  # own, other, orphan


def test_weights_must_add_up_to_100(db):
    from django.core.exceptions import ValidationError

    programme = TierProgramme.load()
    programme.revenue_weight = Decimal("50")
    with pytest.raises(ValidationError, match="add up to 110"):
        programme.full_clean()


def test_run_record_holds_the_distribution_cutoffs(world):
    programme = TierProgramme.load()
    programme.mode = "distribution"
    programme.save()
    make_gold(world.own)
    result = services.tiers_recompute(day=DAY)
    run = EvaluationRun.objects.get(pk=result.run.pk)
    assert run.mode == "distribution" and "Gold" in run.cutoffs
    assert tier_for(world.own).name == "Gold"


def test_bars_follow_the_ranks_and_shares_stay_within_100(db):
    from django.core.exceptions import ValidationError

    silver = tier("Silver")
    silver.min_total = Decimal("80")  # above Gold's 75
    with pytest.raises(ValidationError, match="bars must follow the ranks"):
        silver.full_clean()
    silver.min_total = Decimal("50")
    silver.distribution_share = Decimal("40")  # 20 + 40 + 50 = 110
    with pytest.raises(ValidationError, match="add up to 110"):
        silver.full_clean()
    silver.distribution_share = Decimal("30")
    silver.full_clean()


def test_an_extreme_compliance_or_growth_is_stored_not_a_failed_night(world):
    """Credit notes can leave a tiny revenue beside a large compliant one (compliance of millions
    of %), and a previous year netted down to cents makes growth enormous: the night still runs and
    the evaluation keeps the figures (the scores are capped at 100 anyway)."""
    sale(world.own, "1000000", DAY - timedelta(days=5), registered=True)
    sale(world.own, "-999999.50", DAY - timedelta(days=4))  # a credit note: revenue €0.50
    sale(world.other, "9999999", DAY - timedelta(days=5))
    sale(world.other, "0.50", DAY - timedelta(days=400))  # last year: fifty cents
    services.tiers_recompute(day=DAY)
    own, other = evaluation(world.own), evaluation(world.other)
    assert own.revenue == Decimal("0.50") and own.compliance == Decimal("200000000.00")
    assert own.compliance_score == 100
    assert other.growth == Decimal("1999999700.00") and other.growth_score == 100
