"""The nightly tier recompute computes its criteria in one statement, its scores with a faster
path, reads and writes standings only where they change and writes evaluations with COPY on
PostgreSQL. Each of these against the implementation it replaced (kept here as the reference:
the ORM aggregates of criteria_as_of and the run that scored with scores_of/total_of and
bulk-updated every touched standing), over random data, several nights and both modes."""

import random
from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.db.models import Avg, Count, Q, Sum
from django.utils import timezone

from prm.models import OutboxEmail
from tests import factories
from tests.tier_factories import certify, sale, satisfaction
from tiers import services
from tiers.models import (
    CertificationHolding,
    Criterion,
    DealerStanding,
    Evaluation,
    EvaluationRun,
    Sale,
    SatisfactionScore,
    Tier,
    TierChange,
    TierProgramme,
)
from tiers.services import YEAR, ZERO, Raw, _q

DAY = date(2026, 11, 23)


# --- the reference: the implementation before the one-statement criteria -------------------------------


def old_criteria_as_of(day: date, organisation_ids=None) -> dict[int, Raw]:
    raws: dict[int, Raw] = {}

    def raw(pk) -> Raw:
        return raws.setdefault(pk, Raw())

    sales = Sale.objects.all()
    if organisation_ids is not None:
        sales = sales.filter(reseller_id__in=organisation_ids)
    this_year = Q(sold_on__gt=day - YEAR, sold_on__lte=day)
    last_year = Q(sold_on__gt=day - 2 * YEAR, sold_on__lte=day - YEAR)
    for row in (
        sales.filter(sold_on__gt=day - 2 * YEAR, sold_on__lte=day)
        .values("reseller_id")
        .annotate(
            revenue=Sum("amount", filter=this_year),
            previous=Sum("amount", filter=last_year),
            compliant=Sum("amount", filter=this_year & Q(registered_before_sale=True)),
        )
    ):
        r = raw(row["reseller_id"])
        r.revenue = row["revenue"] or ZERO
        r.revenue_previous = row["previous"] or ZERO
        r.compliant_revenue = row["compliant"] or ZERO
    holdings = CertificationHolding.objects.filter(valid_until__gte=day)
    if organisation_ids is not None:
        holdings = holdings.filter(organisation_id__in=organisation_ids)
    for row in holdings.values("organisation_id").annotate(n=Count("certification", distinct=True)):
        raw(row["organisation_id"]).certifications = row["n"]
    scores = SatisfactionScore.objects.filter(recorded_on__gt=day - YEAR, recorded_on__lte=day)
    if organisation_ids is not None:
        scores = scores.filter(organisation_id__in=organisation_ids)
    for row in scores.values("organisation_id").annotate(avg=Avg("score")):
        raw(row["organisation_id"]).satisfaction = _q(row["avg"])
    return raws


def old_tiers_recompute(day: date):
    existing = EvaluationRun.objects.filter(run_on=day, finished_at__isnull=False).first()
    if existing:
        return services.RunResult(run=existing, created=False, changes=0)
    try:
        with transaction.atomic():
            return _old_recompute(day)
    except IntegrityError:
        return services.RunResult(run=EvaluationRun.objects.get(run_on=day), created=False, changes=0)


def _old_recompute(day: date):
    programme = TierProgramme.load()
    tiers = list(Tier.objects.order_by("rank"))
    run = EvaluationRun.objects.create(run_on=day, mode=programme.mode)
    organisations = list(services.evaluated_organisations().values_list("pk", flat=True))
    raws = old_criteria_as_of(day)
    rows = {}
    for pk in organisations:
        raw = raws.get(pk, Raw())
        scores = services.scores_of(raw, programme)
        rows[pk] = (raw, scores, services.total_of(scores, programme))
    if programme.mode == TierProgramme.Mode.DISTRIBUTION:
        qualified, run.cutoffs = services.qualify_distribution({pk: row[2] for pk, row in rows.items()}, tiers)
    else:
        qualified = {pk: services.qualify_absolute(row[2], row[0].certifications, tiers) for pk, row in rows.items()}
    standings = {
        s.organisation_id: s
        for s in DealerStanding.objects.filter(organisation_id__in=organisations).select_related(
            "tier", "override_tier"
        )
    }
    changes = []
    new_standings, touched = [], []
    for pk in organisations:
        standing = standings.get(pk)
        target = qualified[pk]
        if standing is None:
            standing = DealerStanding(organisation_id=pk, tier=target, since=day)
            new_standings.append(standing)
            changes.append(
                services._change(pk, day, TierChange.Kind.START, None, target, f"First evaluation: {target}.")
            )
        else:
            if services._apply(standing, target, day, programme, rows[pk][2], changes):
                touched.append(standing)
        standings[pk] = standing
    DealerStanding.objects.bulk_create(new_standings)
    DealerStanding.objects.bulk_update(
        touched,
        ["tier", "since", "grace_started_on", "override_tier", "override_until", "override_reason"],
        batch_size=500,
    )
    Evaluation.objects.bulk_create(
        Evaluation(
            run=run,
            organisation_id=pk,
            revenue=raw.revenue,
            revenue_previous=raw.revenue_previous,
            growth=raw.growth,
            compliance=raw.compliance,
            certifications=raw.certifications,
            satisfaction=raw.satisfaction,
            revenue_score=scores[Criterion.REVENUE],
            growth_score=scores[Criterion.GROWTH],
            compliance_score=scores[Criterion.COMPLIANCE],
            certifications_score=scores[Criterion.CERTIFICATIONS],
            satisfaction_score=scores[Criterion.SATISFACTION],
            total=total,
            qualified_tier=qualified[pk],
            held_tier=standings[pk].tier,
        )
        for pk, (raw, scores, total) in rows.items()
    )
    TierChange.objects.bulk_create(changes)
    services._notify(changes)
    run.finished_at = timezone.now()
    run.save(update_fields=["cutoffs", "finished_at"])
    return services.RunResult(run=run, created=True, changes=len(changes))


# --- random data ------------------------------------------------------------------------------------------


def amount(rng: random.Random) -> Decimal:
    # within what an evaluation holds: a compliance or a growth beyond its digits fails a run, the
    # old one as the new one (a tiny base last year, a credit note larger than the registered sales)
    return Decimal(min(100_000_000, max(100_000, int(rng.lognormvariate(13, 1.5) * 100)))) / 100


def sale_with_credit_note(rng: random.Random, organisation, sold_on: date, registered: bool) -> None:
    """A sale, now and then with a credit note for part of it (the same day and registration)."""
    value = amount(rng)
    sale(organisation, value, sold_on, registered=registered)
    if rng.random() < 0.1:
        sale(
            organisation, -(value * rng.randint(1, 30) / 100).quantize(Decimal("0.01")), sold_on, registered=registered
        )


def random_dealers(rng: random.Random, region, n: int):
    dealers = []
    for i in range(n):
        status = rng.choice(["active", "active", "onboarding", "improvement_plan", "phasing_out", "terminated"])
        kind = "distributor" if rng.random() < 0.08 else "reseller"
        # some names repeat (in another country): the evaluation order is by name
        name = f"Dealer {rng.randint(0, n // 2):03d}"
        country = rng.choice(["NL", "BE", "DE"])
        if any(d.name == name and d.country == country for d in dealers):
            name += f" {i}"
        organisation = factories.OrganisationFactory(
            name=name, kind=kind, status=status, region=region, country=country
        )
        if rng.random() < 0.6:
            factories.dealer_admin(organisation)
        dealers.append(organisation)
    return dealers


def add_activity(rng: random.Random, dealers, day: date, how_many: int) -> None:
    """Sales, certifications and satisfaction scores around `day`, on and next to every window
    boundary (day - 730, day - 365, day)."""
    edges = [0, 1, 364, 365, 366, 729, 730, 731, -1]
    for _ in range(how_many):
        organisation = rng.choice(dealers)
        back = rng.choice(edges) if rng.random() < 0.3 else rng.randint(-10, 800)
        what = rng.random()
        if what < 0.7:
            sale_with_credit_note(rng, organisation, day - timedelta(days=back), rng.random() < 0.35)
        elif what < 0.85:
            certify(organisation, rng.choice("abcdef"), day + timedelta(days=rng.randint(-200, 400)))
        else:
            satisfaction(organisation, rng.randint(1, 5), day - timedelta(days=back))


def raw_key(raw: Raw):
    # repr, not ==: Decimal("5") == Decimal("5.00"), yet they are not the same value to store
    return (repr(raw.revenue), repr(raw.revenue_previous), repr(raw.compliant_revenue), raw.certifications,
            repr(raw.satisfaction))  # fmt: skip


# --- criteria ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_criteria_in_one_statement_equal_the_orm_aggregates(db, seed):
    rng = random.Random(seed)
    region = factories.RegionFactory()
    dealers = random_dealers(rng, region, 30)
    add_activity(rng, dealers, DAY, 400)
    for day in (DAY, DAY - timedelta(days=1), DAY + timedelta(days=365), DAY - timedelta(days=400)):
        old = old_criteria_as_of(day)
        new = services.criteria_as_of(day)
        assert {pk: raw_key(r) for pk, r in new.items()} == {pk: raw_key(r) for pk, r in old.items()}
        some = [d.pk for d in rng.sample(dealers, 10)]
        assert {pk: raw_key(r) for pk, r in services.criteria_as_of(day, some).items()} == {
            pk: raw_key(r) for pk, r in old_criteria_as_of(day, some).items()
        }
        assert services.criteria_as_of(day, []) == old_criteria_as_of(day, []) == {}
        evaluated = list(services.evaluated_organisations().values_list("pk", flat=True))
        assert [(pk, raw_key(r)) for pk, r in services.evaluated_criteria(day)] == [
            (pk, raw_key(old.get(pk, Raw()))) for pk in evaluated
        ]


def test_the_criteria_see_the_data_the_orm_saw(db):
    """Not only equal to each other: a hand-made case for both."""
    dealer = factories.OrganisationFactory()
    sale(dealer, "100.10", DAY)
    sale(dealer, "0.20", DAY - timedelta(days=364), registered=True)
    sale(dealer, "7.00", DAY - timedelta(days=365))
    certify(dealer, "a", DAY)
    satisfaction(dealer, 4, DAY)
    satisfaction(dealer, 5, DAY - timedelta(days=10))
    satisfaction(dealer, 5, DAY - timedelta(days=20))
    raw = services.criteria_as_of(DAY)[dealer.pk]
    assert raw_key(raw) == raw_key(old_criteria_as_of(DAY)[dealer.pk])
    assert (raw.revenue, raw.revenue_previous, raw.compliant_revenue) == (
        Decimal("100.30"),
        Decimal("7.00"),
        Decimal("0.20"),
    )
    assert (raw.certifications, raw.satisfaction) == (1, Decimal("4.67"))


# --- scoring ----------------------------------------------------------------------------------------------


def random_raw(rng: random.Random, programme: TierProgramme) -> Raw:
    def money():
        return rng.choice(
            [ZERO, Decimal("0.00"), Decimal("0.01"), Decimal("-3.50"), Decimal("500000.00")]
            + [Decimal(rng.randint(-(10**6), 10**9)) / 100] * 6
        )

    def thousandths():  # a ratio whose percentage has three decimals: half of them end in 5 (a tie)
        return Decimal(rng.randint(0, 200_000)) / 100_000

    revenue, previous = money(), money()
    compliant = rng.choice([revenue, money(), ZERO, revenue * thousandths()])
    if rng.random() < 0.25 and previous > 0:
        revenue = previous * (1 + thousandths())  # growth on a tie
    if rng.random() < 0.15:
        revenue = Decimal(programme.revenue_target) * thousandths()  # revenue score on a tie
    return Raw(
        revenue=revenue,
        revenue_previous=previous,
        compliant_revenue=compliant,
        certifications=rng.randint(0, 7),
        satisfaction=rng.choice([None, Decimal(rng.randint(100, 500)) / 100]),
    )


def random_programme(rng: random.Random) -> TierProgramme:
    programme = TierProgramme()
    if rng.random() < 0.8:
        cuts = sorted(rng.randint(0, 10000) for _ in range(4))
        parts = [b - a for a, b in zip([0, *cuts], [*cuts, 10000], strict=True)]
        for c, part in zip(Criterion.values, parts, strict=True):
            setattr(programme, f"{c}_weight", Decimal(part) / 100)
        programme.revenue_target = Decimal(rng.randint(1, 10**8)) / 100
        programme.growth_target = Decimal(rng.randint(1, 9999)) / 100
        programme.compliance_target = Decimal(rng.randint(1, 9999)) / 100
        programme.certifications_target = rng.randint(1, 6)
        programme.satisfaction_target = Decimal(rng.randint(100, 500)) / 100
    return programme


@pytest.mark.parametrize("seed", range(5))
def test_scoring_equals_scores_of_and_total_of(seed):
    rng = random.Random(seed)
    for _ in range(20):
        programme = random_programme(rng)
        scoring = services._Scoring(programme)
        for _ in range(300):
            raw = random_raw(rng, programme)
            scores = services.scores_of(raw, programme)
            expected = (
                raw.revenue,
                raw.revenue_previous,
                raw.growth,
                raw.compliance,
                raw.certifications,
                raw.satisfaction,
                *(scores[c] for c in Criterion.values),
                services.total_of(scores, programme),
            )
            got = scoring.evaluate(
                raw.revenue, raw.revenue_previous, raw.compliant_revenue, raw.certifications, raw.satisfaction
            )
            assert repr(got) == repr(expected), (raw, programme.weights())


# --- the whole run ----------------------------------------------------------------------------------------


def snapshot(day: date):
    """Everything a run writes, without ids and timestamps (ids differ between the two runs)."""
    run = EvaluationRun.objects.get(run_on=day)
    return {
        "run": (run.mode, run.cutoffs, run.finished_at is not None),
        "evaluations": list(  # (their ids are no longer given in the dealers' name order)
            Evaluation.objects.filter(run=run)
            .order_by("organisation_id")
            .values_list(
                "organisation_id",
                "revenue",
                "revenue_previous",
                "growth",
                "compliance",
                "certifications",
                "satisfaction",
                "revenue_score",
                "growth_score",
                "compliance_score",
                "certifications_score",
                "satisfaction_score",
                "total",
                "qualified_tier_id",
                "held_tier_id",
            )
        ),
        "standings": sorted(
            DealerStanding.objects.values_list(
                "organisation_id",
                "tier_id",
                "since",
                "grace_started_on",
                "override_tier_id",
                "override_until",
                "override_reason",
                "override_by_id",
            )
        ),
        # in the dealers' name order; dealers of the same name (in other countries) in any order
        # (as before), each dealer's own changes and emails in their order
        "changes": stable_by_dealer(
            TierChange.objects.filter(changed_on=day)
            .order_by("pk")
            .values_list("organisation_id", "changed_on", "kind", "from_tier_id", "to_tier_id", "reason", "actor_id")
        ),
        "changed names": list(
            TierChange.objects.filter(changed_on=day).order_by("pk").values_list("organisation__name", flat=True)
        ),
        "emails": sorted(
            OutboxEmail.objects.order_by("pk").values_list("topic", "to", "subject", "body"), key=lambda e: e[0]
        ),
    }


def stable_by_dealer(rows):
    return sorted(rows, key=lambda row: row[0])  # sorted() is stable


def one_night(day: date):
    """The old and the new run of `day` on the same data: the new one stays."""
    with transaction.atomic():
        old = old_tiers_recompute(day)
        expected = snapshot(day)
        transaction.set_rollback(True)
    new = services.tiers_recompute(day=day)
    assert (new.created, new.changes) == (old.created, old.changes)
    got = snapshot(day)
    for key in expected:
        assert got[key] == expected[key], key
    again = services.tiers_recompute(day=day)  # idempotent
    assert not again.created and snapshot(day) == got
    return new


@pytest.mark.parametrize("seed", [11, 12])
def test_runs_over_many_nights_equal_the_old_runs(db, seed):
    rng = random.Random(seed)
    region = factories.RegionFactory()
    dealers = random_dealers(rng, region, 30)
    add_activity(rng, dealers, DAY, 250)
    evaluated = [d for d in dealers if d.kind == "reseller" and d.status != "terminated"]
    programme = TierProgramme.load()
    kinds = set()
    day = DAY
    for night in range(9):
        if night in (4, 5, 8):
            programme.mode = TierProgramme.Mode.DISTRIBUTION
        else:
            programme.mode = TierProgramme.Mode.ABSOLUTE
        programme.grace_days = rng.choice([0, 30, 90])
        programme.save()
        if night == 3:  # overrides, some already ended
            for organisation in rng.sample(evaluated, 6):
                DealerStanding.objects.filter(organisation=organisation).update(
                    override_tier=rng.choice(list(Tier.objects.all())),
                    override_until=day + timedelta(days=rng.choice([-5, -1, 0, 3, 40])),
                    override_reason="Launch partner",
                )
        if night == 6:  # a dealer ends, another one starts
            factories.OrganisationFactory(region=region)
            terminated = evaluated.pop()
            terminated.status = "terminated"
            terminated.save()
        if night == 7:  # some dealers in a grace period recover (at their level, or above it)
            for organisation_id in DealerStanding.objects.filter(grace_started_on__isnull=False).values_list(
                "organisation_id", flat=True
            ):
                organisation = next(d for d in dealers if d.pk == organisation_id)
                sale(organisation, rng.choice(["300000", "600000", "2000000"]), day, registered=True)
        result = one_night(day)
        kinds |= set(TierChange.objects.filter(changed_on=day).values_list("kind", flat=True))
        assert result.created
        # the next night: new activity, sales that age out, a jump in time now and then
        add_activity(rng, dealers, day, rng.randint(0, 80))
        if rng.random() < 0.3:
            gone = rng.sample(list(Sale.objects.filter(amount__gt=0).order_by("pk")), 40)
            for s in gone:  # a sale and its credit note
                Sale.objects.filter(reseller=s.reseller_id, sold_on=s.sold_on).delete()
        day += timedelta(days=rng.choice([1, 1, 31, 95, 200]))
    # the data made the run do what a run does: starts, promotions, grace periods, overrides ending
    assert {"start", "promotion", "grace_start", "grace_end", "demotion", "override_end"} <= kinds, kinds


def test_a_night_with_nothing_to_change_writes_only_the_evaluations(db):
    rng = random.Random(5)
    dealers = random_dealers(rng, factories.RegionFactory(), 12)
    for _ in range(60):  # away from the window boundaries: the next day sees the same criteria
        organisation = rng.choice(dealers)
        sale(organisation, amount(rng), DAY - timedelta(days=rng.randint(10, 300)), registered=rng.random() < 0.4)
        if rng.random() < 0.3:
            certify(organisation, rng.choice("abc"), DAY + timedelta(days=100))
    services.tiers_recompute(day=DAY)
    standings = snapshot(DAY)["standings"]
    changes, emails = TierChange.objects.count(), OutboxEmail.objects.count()
    one_night(DAY + timedelta(days=1))
    assert snapshot(DAY + timedelta(days=1))["standings"] == standings
    assert (TierChange.objects.count(), OutboxEmail.objects.count()) == (changes, emails)
    assert Evaluation.objects.filter(run__run_on=DAY + timedelta(days=1)).count() == len(
        services.evaluated_criteria(DAY)
    )


class Killed(Exception):
    pass


def test_a_run_killed_while_its_evaluations_are_written_leaves_nothing(world, monkeypatch):
    """On PostgreSQL the evaluations are computed while COPY reads them: a failure in the middle
    of it ends the run like any other, with nothing of it left, and the connection usable."""
    sale(world.own, "600000", DAY - timedelta(days=3), registered=True)
    qualify, calls = services.qualify_absolute, []

    def second_dies(*args):
        calls.append(1)
        if len(calls) == 2:
            raise Killed
        return qualify(*args)

    monkeypatch.setattr(services, "qualify_absolute", second_dies)
    with pytest.raises(Killed):
        services.tiers_recompute(day=DAY)
    monkeypatch.undo()
    assert len(calls) == 2
    counts = (EvaluationRun.objects.count(), Evaluation.objects.count(), DealerStanding.objects.count())
    assert counts == (0, 0, 0) and TierChange.objects.count() == 0
    assert services.tiers_recompute(day=DAY).created
    assert Evaluation.objects.count() == 3 and DealerStanding.objects.count() == 3
