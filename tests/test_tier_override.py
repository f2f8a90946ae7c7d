"""The channel admin's override of a dealer's tier through the portal: set, change and end it,
with the history, the notifications and who may do it."""

from datetime import date, timedelta

import pytest
import time_machine
from django.urls import reverse

from prm.models import OutboxEmail
from tests import factories
from tests.conftest import client_for
from tiers import services
from tiers.models import DealerStanding, Tier, TierChange
from tiers.selectors import tier_for

DAY = date(2026, 11, 23)


@pytest.fixture(autouse=True)
def on_day():
    with time_machine.travel(DAY, tick=False):
        yield


def tier(name) -> Tier:
    return Tier.objects.get(name=name)


def override_url(org):
    return reverse("tiers:dealer_override", args=[org.pk])


def end_url(org):
    return reverse("tiers:dealer_override_end", args=[org.pk])


def test_channel_admin_sets_an_override_from_the_tier_page(world):
    services.tiers_recompute(day=DAY)  # everyone starts in Bronze
    admin = client_for(world.channel_admin)
    page = admin.get(reverse("tiers:dealer_tier", args=[world.own.pk])).content.decode()
    assert override_url(world.own) in page
    form = admin.get(override_url(world.own)).content.decode()
    assert "Earned tier now: <strong>Bronze</strong>" in form
    response = admin.post(
        override_url(world.own),
        {"tier": tier("Gold").pk, "until": "2027-03-31", "reason": "Launch partner for the new heat pump"},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == reverse("tiers:dealer_tier", args=[world.own.pk])
    page = response.content.decode()
    assert "holds Gold until 31 March 2027" in page
    assert "Launch partner for the new heat pump" in page
    assert tier_for(world.own) == tier("Gold")
    change = TierChange.objects.get(organisation=world.own, kind=TierChange.Kind.OVERRIDE)
    assert change.actor == world.channel_admin and change.from_tier == tier("Bronze") and change.to_tier == tier("Gold")
    recipients = set(OutboxEmail.objects.filter(topic=f"tier {world.own.pk}").values_list("to", flat=True))
    assert {world.own_admin.email, world.pm_a.email} <= recipients
    # the dealer sees it on its own page, without the name of who set it
    mine = client_for(world.own_admin).get(reverse("tiers:my_tier")).content.decode()
    assert "Gold is set for you until 31 March 2027" in mine
    assert world.channel_admin.email not in mine


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"until": "2026-11-22", "reason": "x"}, "until", "The end date has passed"),
        ({"until": "2031-01-01", "reason": "x"}, "until", "An override lasts at most 2 years."),
        ({"until": "not a date", "reason": "x"}, "until", "Enter a valid date."),
        ({"until": "2027-01-01", "reason": "   "}, "reason", "This field is required."),
        ({"until": "2027-01-01", "reason": "x" * 301}, "reason", "at most 300 characters"),
    ],
)
def test_bad_override_input_is_refused_and_what_was_typed_is_kept(world, data, field, message):
    admin = client_for(world.channel_admin)
    response = admin.post(override_url(world.own), {"tier": tier("Silver").pk, **data})
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page
    assert "what you typed is kept" in page
    assert f'value="{tier("Silver").pk}" selected' in page
    assert not DealerStanding.objects.filter(organisation=world.own, override_tier__isnull=False).exists()
    assert not TierChange.objects.exists()


def test_changing_a_running_override_starts_from_its_values(world):
    services.tier_override(
        organisation=world.own,
        tier=tier("Silver"),
        until=DAY + timedelta(days=30),
        reason="x",
        actor=world.channel_admin,
    )
    admin = client_for(world.channel_admin)
    form = admin.get(override_url(world.own)).content.decode()
    assert "Change the override of" in form and 'value="2026-12-23"' in form
    admin.post(override_url(world.own), {"tier": tier("Gold").pk, "until": "2027-01-31", "reason": "Extended"})
    standing = DealerStanding.objects.get(organisation=world.own)
    assert standing.override_tier == tier("Gold") and standing.override_until == date(2027, 1, 31)
    assert TierChange.objects.filter(organisation=world.own, kind=TierChange.Kind.OVERRIDE).count() == 2


def test_ending_an_override_asks_first_then_restores_the_earned_tier(world):
    services.tiers_recompute(day=DAY)
    services.tier_override(
        organisation=world.own,
        tier=tier("Gold"),
        until=DAY + timedelta(days=60),
        reason="Fair",
        actor=world.channel_admin,
    )
    admin = client_for(world.channel_admin)
    confirm = admin.get(end_url(world.own)).content.decode()
    assert "End the override of" in confirm and "back in <strong>Bronze</strong>" in confirm
    assert tier_for(world.own) == tier("Gold")  # a GET changes nothing
    response = admin.post(end_url(world.own), {"reason": "Trade fair cancelled"}, follow=True)
    assert "The override has ended" in response.content.decode()
    assert tier_for(world.own) == tier("Bronze")
    change = TierChange.objects.get(organisation=world.own, kind=TierChange.Kind.OVERRIDE_END)
    assert change.from_tier == tier("Gold") and change.to_tier == tier("Bronze")
    assert "Trade fair cancelled" in change.reason and change.actor == world.channel_admin
    # nothing left to end: back to the tier page with a message
    again = admin.get(end_url(world.own), follow=True)
    assert "There is no override running" in again.content.decode()


@pytest.mark.parametrize("persona", ["pm_a", "rd_north", "own_admin", "other_admin"])
def test_only_the_channel_admin_can_override(world, persona):
    client = client_for(getattr(world, persona))
    for url in (override_url(world.own), end_url(world.own)):
        assert client.get(url).status_code == 404
        assert client.post(url, {"tier": tier("Gold").pk, "until": "2027-01-01", "reason": "x"}).status_code == 404
    assert not TierChange.objects.exists()
    if persona == "pm_a":
        page = client.get(reverse("tiers:dealer_tier", args=[world.own.pk])).content.decode()
        assert override_url(world.own) not in page


def test_distributors_cannot_be_overridden(world):
    distributor = factories.OrganisationFactory(kind="distributor", region=world.north, partner_manager=world.pm_a)
    assert client_for(world.channel_admin).get(override_url(distributor)).status_code == 404
    with pytest.raises(services.TierError, match="distributor is not evaluated"):
        services.tier_override(
            organisation=distributor, tier=tier("Gold"), until=DAY, reason="x", actor=world.channel_admin
        )


def test_ending_needs_a_channel_admin_and_a_running_override(world):
    with pytest.raises(services.TierError, match="no override running"):
        services.tier_override_end(organisation=world.own, reason="", actor=world.channel_admin)
    with pytest.raises(services.TierError, match="Only a channel admin"):
        services.tier_override_end(organisation=world.own, reason="", actor=world.pm_a)
