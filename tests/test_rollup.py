"""The dashboards' roll-up (tiers.rollup): with a roll-up built, every figure equals counting live,
for any period, at every level; and stays equal after registrations change, expire or go, until
the next build."""

import random
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command

from dealers.models import Organisation
from deals import services
from deals.models import ProductLine, Registration
from tests.deal_factories import make_registration
from tests.tier_factories import sale
from tiers import rollup
from tiers.kpis import Period, kpis
from tiers.models import DealerMonth, RollupChange, RollupState, Sale

S = Registration.Status
AMS = ZoneInfo("Europe/Amsterdam")
TODAY = date(2026, 11, 23)
KEYS = ("organisation_id", "organisation__region_id", "organisation__partner_manager_id", None)


@pytest.fixture(autouse=True)
def on_day():
    with time_machine.travel(datetime(2026, 11, 23, 12, tzinfo=AMS), tick=False):
        yield


def history(world, n: int, seed: int) -> list[Registration]:
    """n registrations over three years for the three dealers: every status, submissions at the
    edges of local days and months (23:30 and 00:30 Amsterdam time, across DST), won dates and
    decisions in other months than the submission."""
    rng = random.Random(seed)
    lines = [ProductLine.objects.create(code=f"line-{seed}-{i}", name=f"Line {seed}-{i}") for i in range(3)]
    dealers = [(world.own, world.own_user), (world.other, world.other_admin), (world.orphan, world.other_admin)]
    made = []
    for _ in range(n):
        organisation, person = rng.choice(dealers)
        day = TODAY - timedelta(days=rng.randint(0, 3 * 365))
        hour, minute = rng.choice([(0, 30), (23, 30), (12, 0), (1, 59)])
        submitted = datetime(day.year, day.month, day.day, hour, minute, tzinfo=AMS)
        status = rng.choice(list(S))
        fields = {}
        if status == S.WON:
            fields.update(
                won_date=min(TODAY, day + timedelta(days=rng.randint(0, 120))),
                won_value=rng.choice([None, Decimal(rng.randint(100, 90_000)) / 4]),
            )
        if rng.random() < 0.7:
            fields.update(
                decided_at=submitted + timedelta(hours=rng.randint(1, 200)),
                decided_in_time=rng.choice([True, False, None]),
                review_working_hours=Decimal(rng.randint(10, 9000)) / 100,
            )
        made.append(make_registration(organisation, person, status, first_submitted_at=submitted, **fields))
        if rng.random() < 0.6:
            sale(organisation, Decimal(rng.randint(100, 500_000)) / 100, day, product_line=rng.choice(lines))
    return made


def periods(seed: int, n: int) -> list[tuple[date, date]]:
    rng = random.Random(seed)
    chosen = [
        (date(2025, 11, 24), TODAY),  # the default trailing year: two partial months
        (date(2026, 1, 1), date(2026, 6, 30)),  # whole months only
        (date(2026, 3, 5), date(2026, 3, 20)),  # inside one month
        (date(2024, 2, 29), date(2024, 3, 31)),  # a leap day to a month end
        (date(2025, 10, 26), date(2025, 10, 26)),  # the day the clocks go back
    ]
    for _ in range(n):
        start = TODAY - timedelta(days=rng.randint(0, 3 * 365))
        chosen.append((start, min(TODAY + timedelta(days=40), start + timedelta(days=rng.randint(0, 500)))))
    return chosen


def live(organisations, start, end, key):
    """What counting everything live gives: the same function without a roll-up state."""
    state = list(RollupState.objects.all())
    RollupState.objects.all().delete()
    try:
        return rollup.registration_figures(organisations, start, end, key)
    finally:
        RollupState.objects.bulk_create(state)


def live_sales(organisations, start, end, key, by_line):
    state = list(RollupState.objects.all())
    RollupState.objects.all().delete()
    try:
        return rollup.sales_figures(organisations, start, end, key, by_line=by_line)
    finally:
        RollupState.objects.bulk_create(state)


SALE_KEYS = ("reseller_id", "reseller__region_id", "reseller__partner_manager_id", None)


def assert_same(organisations, chosen):
    everyone = organisations.count() == Organisation.objects.count()
    for start, end in chosen:
        for key in KEYS:
            expected = live(organisations, start, end, key)
            assert rollup.registration_figures(organisations, start, end, key) == expected, (start, end, key)
            if everyone:  # every organisation, not named (the attention flags' peers)
                assert rollup.registration_figures(None, start, end, key) == expected, (start, end, key)
                assert live(None, start, end, key) == expected, (start, end, key)
        for key in SALE_KEYS:
            for by_line in (False, True):
                expected = live_sales(organisations, start, end, key, by_line)
                got = rollup.sales_figures(organisations, start, end, key, by_line=by_line)
                assert got == expected, (start, end, key, by_line)


@pytest.mark.parametrize("seed", [1, 2])
def test_the_rollup_gives_the_live_figures_for_any_period(world, seed):
    history(world, 60, seed)
    rows = rollup.rollup_build()
    assert rows == DealerMonth.objects.count() > 0
    assert not RollupChange.objects.exists()
    assert_same(Organisation.objects.all(), periods(seed, 25))
    assert_same(Organisation.objects.filter(pk=world.own.pk), periods(seed + 10, 10))


def test_the_figures_count_the_rollup_rows_and_only_the_rest_live(world, django_assert_num_queries, monkeypatch):
    """Not a test of speed: that whole months of an unchanged dealer are read from the roll-up, so a
    registration altered behind the roll-up's back (no save) shows up only in a partial month."""
    made = make_registration(
        world.own, world.own_user, S.SUBMITTED, first_submitted_at=datetime(2026, 3, 10, tzinfo=AMS)
    )
    rollup.rollup_build()
    Registration.objects.filter(pk=made.pk).update(status=S.WITHDRAWN)  # no save: not marked
    whole = rollup.registration_figures(Organisation.objects.all(), date(2026, 3, 1), date(2026, 3, 31), None)[None]
    assert whole.submitted == 1  # from the roll-up row
    partial = rollup.registration_figures(Organisation.objects.all(), date(2026, 3, 2), date(2026, 3, 31), None)
    assert partial[None].submitted == 1  # live: the day is outside a whole month
    everything = Organisation.objects.all()
    # a few dealers (here all, named): the state, the changes (none), the dealers asked for, the
    # roll-up rows, the days outside the whole months of these dealers (3 dates)
    with django_assert_num_queries(7):
        rollup.registration_figures(everything, date(2025, 11, 24), TODAY, "organisation_id")
    # every organisation: the days outside of all of them, each edge of each date apart (2 × 3),
    # and the organisations, kept for the build and period (_kept_edges)
    with django_assert_num_queries(10):
        rollup.registration_figures(None, date(2025, 11, 24), TODAY, "organisation_id")
    with django_assert_num_queries(3):  # then the kept figures
        rollup.registration_figures(None, date(2025, 11, 24), TODAY, "organisation_id")
    with django_assert_num_queries(7):  # a few dealers still count theirs live: cheaper
        rollup.registration_figures(everything, date(2025, 11, 24), TODAY, "organisation_id")
    monkeypatch.setattr(rollup, "KEPT_MIN_DEALERS", 0)
    with django_assert_num_queries(4):  # more dealers: the dealers asked for, and the kept figures
        rollup.registration_figures(everything, date(2025, 11, 24), TODAY, "organisation_id")
    make_registration(world.other, world.other_admin, S.SUBMITTED)
    with django_assert_num_queries(5):  # and everything of the changed dealer
        rollup.registration_figures(everything, date(2025, 11, 24), TODAY, "organisation_id")


def test_changes_after_the_build_count_at_once(world):
    made = history(world, 40, 3)
    rollup.rollup_build()
    chosen = periods(3, 15)
    # a transition through the services, a submission, an edit of a counted field, a deletion
    approved = next(r for r in made if r.status == S.APPROVED and r.organisation == world.own)
    services.registration_report_won(
        registration=approved, actor=world.own_user, value=Decimal("1234.50"), won_on=TODAY
    )
    make_registration(world.other, world.other_admin, S.SUBMITTED, first_submitted_at=datetime(2026, 2, 3, tzinfo=AMS))
    lost = next(r for r in made if r.status == S.LOST and r.organisation == world.other)
    lost.decided_at = datetime(2026, 5, 5, 9, tzinfo=AMS)
    lost.save(update_fields=["decided_at"])
    next(r for r in made if r.organisation == world.orphan).delete()
    sale(world.other, "999.99", date(2026, 3, 3))  # an import after the build
    Sale.objects.filter(reseller=world.own).first().delete()
    assert set(RollupChange.objects.values_list("organisation_id", flat=True)) == {
        world.own.pk,
        world.other.pk,
        world.orphan.pk,
    }
    assert_same(Organisation.objects.all(), chosen)


def test_a_dealer_that_moves_region_or_partner_manager_counts_where_it_is_now(world):
    history(world, 40, 8)
    rollup.rollup_build()
    chosen = periods(8, 10)
    world.own.region = world.south
    world.own.save()
    world.other.partner_manager = world.pm_a
    world.other.save(update_fields=["partner_manager"])
    world.orphan.name = "Renamed B.V."  # no key changed: not marked
    world.orphan.save()
    assert sorted(RollupChange.objects.values_list("organisation_id", flat=True)) == sorted(
        [world.own.pk, world.other.pk]
    )
    assert_same(Organisation.objects.all(), chosen)
    assert_same(Organisation.objects.filter(region=world.south), chosen)
    assert_same(Organisation.objects.filter(region=world.north), chosen)


@pytest.mark.parametrize("few", [0, rollup.KEPT_MIN_DEALERS], ids=["some-dealers-kept", "few-dealers-live"])
def test_the_edges_kept_for_a_build_before_the_changes_stay_live(world, monkeypatch, few):
    """The days outside whole months (registrations and sales) are counted once per build and
    period and kept (the cache):
    kept before the changes, the figures after every kind of change are still the live ones, for
    every scope and key (whole regions take a changed dealer out of the kept sums under the region
    and partner manager it was kept with)."""
    monkeypatch.setattr(rollup, "KEPT_MIN_DEALERS", few)  # 0: every scope of named dealers reads what is kept
    made = history(world, 60, 12)
    rollup.rollup_build()
    chosen = periods(12, 8)
    scopes = [
        Organisation.objects.all(),
        Organisation.objects.filter(region=world.north),
        Organisation.objects.filter(region=world.south),
        Organisation.objects.filter(pk__in=[world.own.pk, world.orphan.pk]),
    ]
    for scope in scopes:
        assert_same(scope, chosen)  # and keeps the edges of every period
    approved = next(r for r in made if r.status == S.APPROVED and r.organisation == world.own)
    services.registration_report_won(
        registration=approved, actor=world.own_user, value=Decimal("1234.50"), won_on=TODAY
    )
    make_registration(
        world.orphan, world.other_admin, S.SUBMITTED, first_submitted_at=datetime(2025, 12, 1, 0, 30, tzinfo=AMS)
    )
    next(r for r in made if r.organisation == world.other and r.decided_at).delete()
    world.own.region = world.south  # the dealer moves with its figures
    world.own.save()
    world.orphan.partner_manager = world.pm_b
    world.orphan.save(update_fields=["partner_manager"])
    sale(world.other, "999.99", date(2025, 11, 30))  # an import after the counts were kept
    Sale.objects.filter(reseller=world.orphan).order_by("sold_on").last().delete()
    assert set(RollupChange.objects.values_list("organisation_id", flat=True)) == {
        world.own.pk,
        world.other.pk,
        world.orphan.pk,
    }
    for scope in scopes:
        assert_same(scope, chosen)


def test_the_review_hours_kept_for_a_build_give_the_medians(world):
    """review_hours_medians (the region dashboard's SLA table) equals tiers.kpis.medians per
    partner manager, on this database's arithmetic: kept before the changes and after, through
    decisions, deletions and dealers moving region or partner manager; None where it cannot tell."""
    from tiers.kpis import medians

    made = history(world, 80, 13)
    # an even number of decisions with a half cent between them: the rounding of the middle shows
    for hours in ("1.25", "1.30", "2.15", "2.20"):
        make_registration(
            world.orphan,
            world.other_admin,
            S.APPROVED,
            decided_at=datetime(2026, 6, 2, 10, tzinfo=AMS),
            decided_in_time=True,
            review_working_hours=Decimal(hours),
        )
    resellers = Organisation.objects.filter(kind=Organisation.Kind.RESELLER)
    scopes = [resellers, resellers.filter(region=world.north), resellers.filter(region=world.south)]
    chosen = periods(13, 6)

    def check():
        for scope in scopes:
            for start, end in chosen:
                decided = Registration.objects.filter(organisation__in=scope).filter(
                    rollup.in_period(rollup.Basis.DECIDED, start, end)
                )
                expected = medians(decided, "organisation__partner_manager_id", "review_working_hours")
                assert rollup.review_hours_medians(scope, start, end) == expected, (scope.query, start, end)

    assert rollup.review_hours_medians(resellers, *chosen[0]) is None  # no build
    rollup.rollup_build()
    assert rollup.review_hours_medians(resellers.filter(pk=world.own.pk), *chosen[0]) is None  # not a region
    check()  # and keeps them
    decided = next(r for r in made if r.organisation == world.own and r.review_working_hours)
    decided.review_working_hours += Decimal("7.01")
    decided.save(update_fields=["review_working_hours", "decided_at"])
    next(r for r in made if r.organisation == world.other and r.review_working_hours).delete()
    world.orphan.region = world.south
    world.orphan.save()
    world.own.partner_manager = world.pm_b
    world.own.save(update_fields=["partner_manager"])
    assert {world.own.pk, world.other.pk, world.orphan.pk} <= set(
        RollupChange.objects.values_list("organisation_id", flat=True)
    )
    check()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "hundredths", [[125, 130], [215, 220], [105, 110], [1, 2], [1005, 1010], [9999, 10000], [3, 4], [7], [1, 5, 9]]
)
def test_the_middle_of_sorted_hours_as_the_database_has_it(hundredths):
    """Half a cent between the two middle values rounds differently in PostgreSQL's double precision
    (1.275 → 1.27) and in Decimal (1.28): _median_of_sorted gives what this database gives."""
    import statistics

    from django.db import connection

    from tiers.kpis import _q

    values = [Decimal(v) / 100 for v in hundredths]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v) FROM unnest(%s::numeric[]) v", [values]
            )
            expected = _q(cursor.fetchone()[0])
    else:
        expected = _q(statistics.median(values))
    assert rollup._median_of_sorted(hundredths) == expected


def test_moving_a_partner_managers_dealers_at_once_marks_them(world):
    from dealers.services import organisations_reassign_partner_manager

    history(world, 30, 11)
    rollup.rollup_build()
    organisations_reassign_partner_manager(from_user=world.pm_a, to_user=world.pm_b, actor=world.channel_admin)
    assert set(RollupChange.objects.values_list("organisation_id", flat=True)) == {world.own.pk}
    assert_same(Organisation.objects.all(), periods(11, 8))


def test_a_product_line_whose_only_sale_goes_is_gone_not_zero(world):
    only = ProductLine.objects.create(code="only", name="Only line")
    sale(world.own, "250.00", date(2026, 3, 10), product_line=only)
    sale(world.other, "100.00", date(2026, 3, 11))
    rollup.rollup_build()
    Sale.objects.filter(product_line=only).delete()
    march = rollup.sales_figures(Organisation.objects.all(), date(2026, 3, 1), date(2026, 3, 31), None, by_line=True)
    assert all(line != "Only line" for _, line in march)
    assert_same(Organisation.objects.all(), [(date(2026, 3, 1), date(2026, 3, 31))])


def test_region_rows_serve_whole_regions_only(world, django_assert_num_queries):
    history(world, 30, 9)
    rollup.rollup_build()
    assert rollup._whole_regions(Organisation.objects.filter(region=world.north)) == [world.north.pk]
    assert rollup._whole_regions(Organisation.objects.filter(pk=world.own.pk)) is None  # orphan is north too
    assert_same(Organisation.objects.filter(pk__in=[world.own.pk, world.other.pk]), periods(9, 8))


def test_whole_regions_are_answered_once_per_queryset(world, django_assert_num_queries):
    """_whole_regions keeps its answer on the queryset; narrowed to the dealers, whole regions stay
    whole (they hold dealers only) and the answer goes along; where the regions were not whole it
    is asked again of the narrowed queryset."""
    rollup.rollup_build()
    north = Organisation.objects.filter(region=world.north)
    with django_assert_num_queries(2):
        assert rollup._whole_regions(north) == [world.north.pk]
        assert rollup._whole_regions(north) == [world.north.pk]
    narrowed = rollup.whole_regions_kept(north, north.filter(kind=Organisation.Kind.RESELLER))
    with django_assert_num_queries(0):
        assert rollup._whole_regions(narrowed) == [world.north.pk]
    some = Organisation.objects.filter(pk=world.own.pk)
    assert rollup._whole_regions(some) is None
    narrowed = rollup.whole_regions_kept(some, some.filter(kind=Organisation.Kind.RESELLER))
    with django_assert_num_queries(2):  # asked again (and not whole)
        assert rollup._whole_regions(narrowed) is None


def test_a_save_of_other_fields_marks_nobody(world):
    made = make_registration(world.own, world.own_user, S.SUBMITTED)
    rollup.rollup_build()
    made.next_steps = "Call the architect."
    made.save(update_fields=["next_steps"])
    assert not RollupChange.objects.exists()


def test_the_nightly_expiry_marks_the_dealers_it_expired(world):
    old = make_registration(
        world.own,
        world.own_user,
        S.APPROVED,
        protected_until=TODAY - timedelta(days=1),
        first_submitted_at=datetime(2026, 6, 2, tzinfo=AMS),
    )
    make_registration(world.other, world.other_admin, S.APPROVED, protected_until=TODAY + timedelta(days=10))
    rollup.rollup_build()
    assert services.protections_expire(today=TODAY) == 1
    assert list(RollupChange.objects.values_list("organisation_id", flat=True)) == [old.organisation_id]
    june = rollup.registration_figures(Organisation.objects.all(), date(2026, 6, 1), date(2026, 6, 30), None)[None]
    assert (june.submitted, june.closed) == (1, 1)  # expired after approval: it ended
    assert_same(Organisation.objects.all(), periods(4, 5))


def test_a_rebuild_clears_the_changes_and_counts_them(world):
    history(world, 20, 5)
    rollup.rollup_build()
    make_registration(world.own, world.own_user, S.WON, first_submitted_at=datetime(2026, 4, 4, tzinfo=AMS))
    assert RollupChange.objects.exists()
    rollup.rollup_build()
    assert not RollupChange.objects.exists()
    assert_same(Organisation.objects.all(), periods(5, 5))


def test_the_programme_wide_counts_kept_for_a_build_stay_live(world, django_assert_max_num_queries):
    """submitted_by_dealer keeps a build's counts per period in the cache and counts the dealers
    changed since live: before and after the counts are kept, through every kind of change, and
    under the next build's key, they are what counting everything live gives."""
    made = history(world, 60, 8)
    chosen = periods(8, 4)

    def expected(start, end):
        return {pk: f.submitted for pk, f in live(None, start, end, "organisation_id").items() if f.submitted}

    def check():
        for start, end in chosen:
            assert rollup.submitted_by_dealer(start, end) == expected(start, end), (start, end)

    check()  # no build: live, nothing kept
    rollup.rollup_build()
    check()  # kept now (no dealer changed)
    with django_assert_max_num_queries(3):  # the build, the changed dealers (none), nothing else
        rollup.submitted_by_dealer(*chosen[0])
    # a submission (own), a withdrawal of a submission and a deletion (other), with the counts kept
    make_registration(world.own, world.own_user, S.SUBMITTED, first_submitted_at=datetime(2026, 2, 3, tzinfo=AMS))
    make_registration(
        world.own, world.own_user, S.SUBMITTED, first_submitted_at=datetime(2025, 11, 30, 23, 30, tzinfo=AMS)
    )
    next(r for r in made if r.organisation == world.other).delete()
    check()
    # the counts are kept again while own and other are changed; then orphan changes too
    rollup.cache.clear()
    check()
    moved = next(r for r in made if r.organisation == world.orphan)
    moved.first_submitted_at = datetime(2026, 11, 1, 0, 30, tzinfo=AMS)
    moved.save(update_fields=["first_submitted_at"])
    check()
    # the nightly job's build: another key, nothing changed, the new figures, the default period
    # (the trailing 12 months) kept at once
    call_command("rollup_dashboards")
    assert not RollupChange.objects.exists()
    trailing_year = expected(date(2025, 11, 24), TODAY)
    with django_assert_max_num_queries(2):  # the build and the changed dealers: the counts were kept
        assert rollup.submitted_by_dealer(date(2025, 11, 24), TODAY) == trailing_year
    prefix = rollup._kept_prefix(RollupState.objects.values_list("pk", "built_at").get())
    for kept in ("edges", "hours", "sales"):  # and the rest kept per period
        assert rollup.cache.get(f"{prefix}:{kept}:2025-11-24:{TODAY}") is not None, kept
    for kept in ("edges", "sales"):  # and for the year before
        assert rollup.cache.get(f"{prefix}:{kept}:2024-11-24:2025-11-23") is not None, kept
    check()


def test_kpis_are_the_same_with_and_without_the_rollup(world):
    history(world, 50, 6)
    for start, end in periods(6, 6):
        period = Period(start, end)
        for level in ("dealer", "region", "programme"):
            before = kpis(Organisation.objects.all(), period, level, TODAY)
            rollup.rollup_build()
            after = kpis(Organisation.objects.all(), period, level, TODAY)
            RollupState.objects.all().delete()
            assert after == before, (start, end, level)


def test_the_command_and_the_nightly_schedule(world, settings, capsys):
    history(world, 5, 7)
    call_command("rollup_dashboards")
    assert "Rolled up" in capsys.readouterr().out
    state = RollupState.objects.get()
    assert state.rows == DealerMonth.objects.count()
    entry = settings.CELERY_BEAT_SCHEDULE["dashboards-rollup"]
    assert entry["task"] == "tiers.tasks.dashboards_rollup"
    # after the expiry (01:00), before the tier evaluation (02:00)
    assert (entry["schedule"].hour, entry["schedule"].minute) == ({1}, {30})


def test_whole_months():
    assert rollup.whole_months(date(2025, 11, 24), date(2026, 11, 23)) == (date(2025, 12, 1), date(2026, 10, 1))
    assert rollup.whole_months(date(2026, 1, 1), date(2026, 1, 31)) == (date(2026, 1, 1), date(2026, 1, 1))
    assert rollup.whole_months(date(2026, 1, 2), date(2026, 2, 27)) is None
    assert rollup.whole_months(date(2024, 2, 1), date(2024, 2, 29)) == (date(2024, 2, 1), date(2024, 2, 1))


def test_the_ends_of_the_calendar(world):
    history(world, 10, 10)
    rollup.rollup_build()
    assert_same(
        Organisation.objects.all(),
        [(date(9999, 1, 1), date(9999, 12, 31)), (date(9999, 12, 5), date(9999, 12, 31)), (date(1900, 1, 1), TODAY)],
    )
