"""Vendor staff record a customer's satisfaction on a won registration; it counts in the tiers."""

from datetime import date

import pytest
import time_machine
from django.urls import reverse

from deals.models import Registration
from tests.conftest import client_for
from tests.deal_factories import make_registration
from tiers import services
from tiers.models import Evaluation, SatisfactionScore

DAY = date(2026, 11, 23)


@pytest.fixture(autouse=True)
def on_day():
    with time_machine.travel(DAY, tick=False):
        yield


@pytest.fixture
def won(world):
    return make_registration(world.own, world.own_user, Registration.Status.WON)


def url(registration):
    return reverse("tiers:registration_satisfaction", args=[registration.pk])


def test_partner_manager_records_and_replaces_a_score(world, won):
    client = client_for(world.pm_a)
    page = client.get(reverse("deals:registration_detail", args=[won.pk])).content.decode()
    assert "Customer satisfaction" in page and "Not recorded yet" in page
    response = client.post(url(won), {"score": "4"}, follow=True)
    assert "Customer satisfaction 4/5 recorded" in response.content.decode()
    client.post(url(won), {"score": "2"})
    score = SatisfactionScore.objects.get(registration=won)
    assert (score.score, score.organisation_id, score.recorded_by, score.recorded_on) == (
        2,
        world.own.pk,
        world.pm_a,
        DAY,
    )
    assert "<strong>2/5</strong>" in client.get(reverse("deals:registration_detail", args=[won.pk])).content.decode()
    services.tiers_recompute(day=DAY)
    assert Evaluation.objects.get(organisation=world.own).satisfaction == 2


@pytest.mark.parametrize("value", ["0", "6", "", "four", "4.5"])
def test_bad_scores_are_refused_with_a_message(world, won, value):
    response = client_for(world.pm_a).post(url(won), {"score": value}, follow=True)
    assert "Choose a score from 1 to 5; nothing was recorded." in response.content.decode()
    assert not SatisfactionScore.objects.exists()


@pytest.mark.parametrize("status", [Registration.Status.APPROVED, Registration.Status.LOST])
def test_only_won_registrations_take_a_score(world, status):
    registration = make_registration(world.own, world.own_user, status)
    page = client_for(world.pm_a).get(reverse("deals:registration_detail", args=[registration.pk])).content.decode()
    assert url(registration) not in page
    response = client_for(world.pm_a).post(url(registration), {"score": "5"}, follow=True)
    assert "Satisfaction is recorded for a won registration" in response.content.decode()
    assert not SatisfactionScore.objects.exists()


@pytest.mark.parametrize(("persona", "status"), [("own_admin", 404), ("other_admin", 404), ("pm_b", 404)])
def test_dealers_and_other_staff_cannot_record(world, won, persona, status):
    assert client_for(getattr(world, persona)).post(url(won), {"score": "5"}).status_code == status
    assert not SatisfactionScore.objects.exists()
    if persona == "own_admin":
        page = client_for(world.own_admin).get(reverse("deals:registration_detail", args=[won.pk])).content.decode()
        assert url(won) not in page


def test_get_is_not_allowed(world, won):
    assert client_for(world.pm_a).get(url(won)).status_code == 405
