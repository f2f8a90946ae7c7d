"""Improvement plans: open, review (met, extended, not met), history, emails, who sees what."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import IntegrityError, transaction
from django.urls import reverse

from dealers import services
from dealers.models import ImprovementPlan, Organisation, OrganisationEvent
from dealers.selectors import plans_due
from prm.models import OutboxEmail
from tests import factories
from tests.conftest import client_for

TZ = ZoneInfo("Europe/Amsterdam")
TODAY = date(2026, 3, 2)
DEADLINE = date(2026, 6, 1)
GOALS = "Register at least 10 deals and complete the product certification."
NOTES = "Owner is distracted by a second business; watch closely."


@pytest.fixture(autouse=True)
def on_day():
    with time_machine.travel(datetime(2026, 3, 2, 10, 0, tzinfo=TZ), tick=False):
        yield


def open_plan(world, actor=None, **kwargs):
    args = {"goals": GOALS, "deadline": DEADLINE, "notes": NOTES} | kwargs
    return services.improvement_plan_open(organisation=world.own, actor=actor or world.pm_a, **args)


def status_of(org) -> str:
    return Organisation.objects.get(pk=org.pk).status


def kinds(org) -> list[str]:
    return list(OrganisationEvent.objects.filter(organisation=org).order_by("id").values_list("kind", flat=True))


def mails(plan):
    return OutboxEmail.objects.filter(topic=f"improvement plan {plan.pk}").order_by("id")


# --- services: the lifecycle ---------------------------------------------------------------------


def test_opening_puts_the_dealer_on_the_plan_with_history_and_emails(world):
    plan = open_plan(world)
    assert plan.status == ImprovementPlan.Status.OPEN and plan.opened_by == world.pm_a
    assert status_of(world.own) == Organisation.Status.IMPROVEMENT_PLAN
    assert kinds(world.own) == ["plan_opened", "status_changed"]
    assert OrganisationEvent.objects.get(kind="status_changed").data["new"] == "improvement_plan"
    assert set(mails(plan).values_list("to", flat=True)) == {"admin@own.example", world.pm_a.email}
    for mail in mails(plan):
        assert GOALS in mail.body and "1 June 2026" in mail.body
        assert NOTES not in mail.body and "second business" not in mail.subject


def test_met_sets_the_dealer_active_again(world):
    plan = open_plan(world)
    services.improvement_plan_met(plan=plan, outcome="Twelve deals registered; certified.", actor=world.pm_a)
    plan.refresh_from_db()
    assert plan.status == ImprovementPlan.Status.MET
    assert plan.reviewed_by == world.pm_a and plan.reviewed_at is not None
    assert plan.outcome == "Twelve deals registered; certified."
    assert status_of(world.own) == Organisation.Status.ACTIVE
    assert kinds(world.own)[-2:] == ["plan_met", "status_changed"]
    met_mails = mails(plan).filter(subject__contains="met")
    assert met_mails.count() == 2 and all("Twelve deals" in m.body for m in met_mails)


def test_early_review_is_allowed(world):
    plan = open_plan(world)
    assert not plan.is_due()
    services.improvement_plan_met(plan=plan, outcome="Already there.", actor=world.pm_a)
    assert status_of(world.own) == Organisation.Status.ACTIVE


def test_extend_moves_the_deadline_and_keeps_the_plan_open(world):
    plan = open_plan(world)
    services.improvement_plan_extend(
        plan=plan, deadline=date(2026, 8, 1), outcome="Good progress, certification pending.", actor=world.rd_north
    )
    plan.refresh_from_db()
    assert plan.is_open and plan.deadline == date(2026, 8, 1) and plan.extensions == 1
    assert plan.reviewed_at is None and plan.outcome == ""
    assert status_of(world.own) == Organisation.Status.IMPROVEMENT_PLAN
    event = OrganisationEvent.objects.get(kind="plan_extended")
    assert event.actor == world.rd_north
    assert event.data["old_deadline"] == "2026-06-01" and event.data["deadline"] == "2026-08-01"
    assert "1 August 2026" in event.description
    extended = mails(plan).filter(subject__contains="extended")
    assert extended.count() == 2 and all("certification pending" in m.body for m in extended)


def test_not_met_phases_the_dealer_out(world):
    plan = open_plan(world)
    services.improvement_plan_not_met(plan=plan, outcome="Two deals in three months.", actor=world.channel_admin)
    plan.refresh_from_db()
    assert plan.status == ImprovementPlan.Status.NOT_MET
    assert status_of(world.own) == Organisation.Status.PHASING_OUT
    assert kinds(world.own)[-2:] == ["plan_not_met", "status_changed"]
    assert OrganisationEvent.objects.filter(kind="status_changed").latest("id").data["new"] == "phasing_out"
    not_met = mails(plan).filter(subject__contains="not met")
    assert set(not_met.values_list("to", flat=True)) == {"admin@own.example", world.pm_a.email}
    assert all(NOTES not in m.body for m in mails(plan))


def test_without_partner_manager_the_regional_director_is_told(world):
    plan = services.improvement_plan_open(
        organisation=world.orphan, goals=GOALS, deadline=DEADLINE, actor=world.rd_north
    )
    assert list(mails(plan).values_list("to", flat=True)) == [world.rd_north.email]  # no dealer admin yet


def test_a_new_plan_may_follow_a_closed_one_and_history_keeps_both(world):
    first = open_plan(world)
    services.improvement_plan_met(plan=first, outcome="Met.", actor=world.pm_a)
    second = open_plan(world, deadline=date(2026, 9, 1))
    assert list(ImprovementPlan.objects.filter(organisation=world.own)) == [second, first]
    assert status_of(world.own) == Organisation.Status.IMPROVEMENT_PLAN


# --- services: refusals ------------------------------------------------------------------------


@pytest.mark.parametrize("deadline", [TODAY, TODAY - timedelta(days=1)])
def test_deadline_must_be_in_the_future(world, deadline):
    with pytest.raises(services.PlanError, match="must be in the future") as exc:
        open_plan(world, deadline=deadline)
    assert exc.value.field == "deadline"
    assert not ImprovementPlan.objects.exists() and status_of(world.own) == Organisation.Status.ACTIVE
    assert not OutboxEmail.objects.exists()


def test_deadline_more_than_a_year_away_is_refused(world):
    with pytest.raises(services.PlanError, match="more than a year"):
        open_plan(world, deadline=date(2027, 6, 1))


def test_goals_are_required(world):
    with pytest.raises(services.PlanError, match="goals"):
        open_plan(world, goals="   ")


def test_a_second_open_plan_is_refused(world):
    open_plan(world)
    with pytest.raises(services.PlanError, match="already has an open improvement plan"):
        open_plan(world, deadline=date(2026, 7, 1))
    assert ImprovementPlan.objects.count() == 1


def test_the_database_holds_one_open_plan_per_dealer(world):
    open_plan(world)
    with pytest.raises(IntegrityError), transaction.atomic():
        ImprovementPlan.objects.create(organisation=world.own, goals="x", deadline=DEADLINE)


@pytest.mark.parametrize("status", ["terminated", "phasing_out"])
def test_terminated_or_phasing_out_dealers_get_no_plan(world, status):
    Organisation.objects.filter(pk=world.own.pk).update(status=status)
    with pytest.raises(services.PlanError, match="terminated" if status == "terminated" else "phased out"):
        open_plan(world)


def test_a_terminated_dealers_plan_cannot_be_reviewed(world):
    plan = open_plan(world)
    Organisation.objects.filter(pk=world.own.pk).update(status="terminated")  # behind the services' back
    with pytest.raises(services.PlanError, match="terminated"):
        services.improvement_plan_met(plan=plan, outcome="Met.", actor=world.pm_a)


def test_a_closed_plan_cannot_be_reviewed_again(world):
    plan = open_plan(world)
    services.improvement_plan_met(plan=plan, outcome="Met.", actor=world.pm_a)
    with pytest.raises(services.PlanError, match="already closed"):
        services.improvement_plan_not_met(plan=plan, outcome="Not met after all.", actor=world.pm_a)
    assert status_of(world.own) == Organisation.Status.ACTIVE


def test_extension_must_move_the_deadline_later(world):
    plan = open_plan(world)
    with pytest.raises(services.PlanError, match="later than 1 June 2026"):
        services.improvement_plan_extend(plan=plan, deadline=date(2026, 5, 1), outcome="More time.", actor=world.pm_a)


def test_extension_of_an_overdue_plan_needs_a_future_deadline(world):
    plan = open_plan(world)
    with time_machine.travel(datetime(2026, 6, 10, 9, 0, tzinfo=TZ), tick=False):
        with pytest.raises(services.PlanError, match="in the past"):
            services.improvement_plan_extend(
                plan=plan, deadline=date(2026, 6, 5), outcome="More time.", actor=world.pm_a
            )
        services.improvement_plan_extend(plan=plan, deadline=date(2026, 7, 1), outcome="More time.", actor=world.pm_a)


def test_review_needs_an_outcome(world):
    plan = open_plan(world)
    with pytest.raises(services.PlanError, match="outcome") as exc:
        services.improvement_plan_not_met(plan=plan, outcome=" ", actor=world.pm_a)
    assert exc.value.field == "outcome"
    assert ImprovementPlan.objects.get(pk=plan.pk).is_open


@pytest.mark.parametrize("persona", ["pm_b", "rd_south", "own_admin", "own_user", "other_admin"])
def test_only_staff_who_look_after_the_dealer_may_open_or_review(world, persona):
    actor = getattr(world, persona)
    with pytest.raises(services.NotAllowed):
        open_plan(world, actor=actor)
    plan = open_plan(world)
    with pytest.raises(services.NotAllowed):
        services.improvement_plan_not_met(plan=plan, outcome="No.", actor=actor)
    assert ImprovementPlan.objects.get(pk=plan.pk).is_open


def test_direct_sales_may_not_open_a_plan(world):
    direct = factories.StaffFactory(roles=["Direct sales"])
    with pytest.raises(services.NotAllowed):
        open_plan(world, actor=direct)


@pytest.mark.parametrize("persona", ["pm_a", "rd_north", "channel_admin"])
def test_partner_manager_regional_director_and_channel_admin_may(world, persona):
    plan = open_plan(world, actor=getattr(world, persona))
    services.improvement_plan_met(plan=plan, outcome="Met.", actor=getattr(world, persona))


def test_a_status_set_by_other_means_closes_the_open_plan(world):
    plan = open_plan(world)
    services.organisation_set_status(
        organisation=world.own, status="terminated", actor=world.channel_admin, reason="Contract ended"
    )
    plan.refresh_from_db()
    assert plan.status == ImprovementPlan.Status.WITHDRAWN and plan.reviewed_by == world.channel_admin
    assert "Terminated" in plan.outcome and "Contract ended" in plan.outcome
    assert kinds(world.own)[-2:] == ["status_changed", "plan_withdrawn"]
    assert not mails(plan).filter(subject__contains="met").exists()  # only the opening emails


# --- plans due ----------------------------------------------------------------------------------


def test_plans_due_lists_open_plans_whose_deadline_has_come(world):
    plan = open_plan(world)
    other = services.improvement_plan_open(
        organisation=world.other, goals=GOALS, deadline=date(2026, 5, 1), actor=world.pm_b
    )
    assert not plans_due(world.pm_a).exists()
    with time_machine.travel(datetime(2026, 6, 1, 9, 0, tzinfo=TZ), tick=False):
        assert list(plans_due(world.pm_a)) == [plan]  # the deadline day is the review day
        assert list(plans_due(world.rd_north)) == [plan]
        assert list(plans_due(world.pm_b)) == [other]
        assert list(plans_due(world.channel_admin)) == [other, plan]  # most overdue first
        assert not plans_due(world.own_admin).exists()  # dealers review nothing
        services.improvement_plan_extend(plan=plan, deadline=date(2026, 7, 1), outcome="More time.", actor=world.pm_a)
        assert not plans_due(world.pm_a).exists()


def test_staff_home_lists_plans_to_review(world):
    plan = open_plan(world)
    with time_machine.travel(datetime(2026, 6, 2, 9, 0, tzinfo=TZ), tick=False):
        page = client_for(world.pm_a).get(reverse("home")).content.decode()
    assert "Improvement plans to review" in page and reverse("dealers:plan_review", args=[plan.pk]) in page
    assert "Improvement plans to review" not in client_for(world.pm_b).get(reverse("home")).content.decode()


# --- views: opening ---------------------------------------------------------------------------


def open_url(org):
    return reverse("dealers:plan_open", args=[org.pk])


def review_url(plan):
    return reverse("dealers:plan_review", args=[plan.pk])


def test_partner_manager_opens_a_plan_from_the_dealer_page(world):
    client = client_for(world.pm_a)
    detail = client.get(reverse("dealers:dealer_detail", args=[world.own.pk])).content.decode()
    assert "No improvement plan so far" in detail and open_url(world.own) in detail
    assert client.get(open_url(world.own)).status_code == 200
    response = client.post(open_url(world.own), {"goals": GOALS, "deadline": "2026-06-01", "notes": NOTES})
    assert response.status_code == 302 and response["Location"].endswith("#plans")
    plan = ImprovementPlan.objects.get()
    assert plan.goals == GOALS and plan.notes == NOTES and plan.deadline == DEADLINE
    detail = client.get(reverse("dealers:dealer_detail", args=[world.own.pk])).content.decode()
    assert GOALS in detail and NOTES in detail and review_url(plan) in detail
    assert open_url(world.own) not in detail  # one open plan at a time


def test_a_refused_plan_keeps_what_was_typed(world):
    response = client_for(world.pm_a).post(
        open_url(world.own), {"goals": GOALS, "deadline": "2026-03-01", "notes": NOTES}
    )
    page = response.content.decode()
    assert response.status_code == 200 and "must be in the future" in page
    assert GOALS in page and NOTES in page and "2026-03-01" in page
    assert not ImprovementPlan.objects.exists()


def test_an_invalid_form_keeps_what_was_typed(world):
    response = client_for(world.pm_a).post(open_url(world.own), {"goals": GOALS, "deadline": "", "notes": NOTES})
    assert response.status_code == 200 and GOALS in response.content.decode()
    assert not ImprovementPlan.objects.exists()


def test_the_open_page_points_to_the_open_plan(world):
    plan = open_plan(world)
    page = client_for(world.pm_a).get(open_url(world.own)).content.decode()
    assert "already has an open improvement plan" in page and review_url(plan) in page


@pytest.mark.parametrize("persona", ["pm_b", "rd_south", "own_admin", "own_user", "other_admin"])
def test_outsiders_get_404_on_the_open_page(world, persona):
    client = client_for(getattr(world, persona))
    assert client.get(open_url(world.own)).status_code == 404
    assert client.post(open_url(world.own), {"goals": GOALS, "deadline": "2026-06-01"}).status_code == 404
    assert not ImprovementPlan.objects.exists()


def test_channel_admin_and_regional_director_reach_the_open_page(world):
    assert client_for(world.channel_admin).get(open_url(world.own)).status_code == 200
    assert client_for(world.rd_north).get(open_url(world.own)).status_code == 200


# --- views: reviewing ---------------------------------------------------------------------------


def test_met_through_the_review_page(world):
    plan = open_plan(world)
    client = client_for(world.pm_a)
    page = client.get(review_url(plan)).content.decode()
    assert GOALS in page and NOTES in page and "review early" in page
    response = client.post(review_url(plan), {"decision": "met", "outcome": "All goals reached."})
    assert response.status_code == 302
    assert ImprovementPlan.objects.get(pk=plan.pk).status == "met" and status_of(world.own) == "active"


def test_extend_through_the_review_page_needs_a_new_deadline(world):
    plan = open_plan(world)
    client = client_for(world.pm_a)
    response = client.post(review_url(plan), {"decision": "extend", "outcome": "Needs a quarter more."})
    assert response.status_code == 200 and "Give the new deadline" in response.content.decode()
    assert "Needs a quarter more." in response.content.decode()
    response = client.post(
        review_url(plan), {"decision": "extend", "outcome": "Needs a quarter more.", "deadline": "2026-05-01"}
    )
    assert response.status_code == 200 and "later than 1 June 2026" in response.content.decode()
    response = client.post(
        review_url(plan), {"decision": "extend", "outcome": "Needs a quarter more.", "deadline": "2026-09-01"}
    )
    assert response.status_code == 302
    assert ImprovementPlan.objects.get(pk=plan.pk).deadline == date(2026, 9, 1)


def test_phasing_out_asks_for_confirmation_first(world):
    plan = open_plan(world)
    client = client_for(world.pm_a)
    data = {"decision": "not_met", "outcome": "Two deals in three months."}
    confirm = client.post(review_url(plan), data)
    page = confirm.content.decode()
    assert confirm.status_code == 200 and "Phase Own Dealer B.V. out" in page and "Two deals in three months." in page
    assert ImprovementPlan.objects.get(pk=plan.pk).is_open and status_of(world.own) == "improvement_plan"
    assert not mails(plan).filter(subject__contains="not met").exists()

    back = client.post(review_url(plan), data | {"confirm": "yes", "edit": "1"})
    assert back.status_code == 200 and "Record the review" in back.content.decode()
    assert "Two deals in three months." in back.content.decode() and status_of(world.own) == "improvement_plan"

    done = client.post(review_url(plan), data | {"confirm": "yes"})
    assert done.status_code == 302
    assert ImprovementPlan.objects.get(pk=plan.pk).status == "not_met" and status_of(world.own) == "phasing_out"
    detail = client.get(reverse("dealers:dealer_detail", args=[world.own.pk])).content.decode()
    assert "Not met: phasing out" in detail and "Two deals in three months." in detail


def test_reviewing_a_closed_plan_goes_back_to_the_dealer(world):
    plan = open_plan(world)
    services.improvement_plan_met(plan=plan, outcome="Met.", actor=world.pm_a)
    response = client_for(world.pm_a).post(review_url(plan), {"decision": "not_met", "outcome": "x", "confirm": "yes"})
    assert response.status_code == 302 and status_of(world.own) == "active"


@pytest.mark.parametrize("persona", ["pm_b", "rd_south", "own_admin", "own_user", "other_admin"])
def test_outsiders_get_404_on_the_review_page(world, persona):
    plan = open_plan(world)
    client = client_for(getattr(world, persona))
    assert client.get(review_url(plan)).status_code == 404
    response = client.post(review_url(plan), {"decision": "not_met", "outcome": "x", "confirm": "yes"})
    assert response.status_code == 404
    assert ImprovementPlan.objects.get(pk=plan.pk).is_open


@pytest.mark.parametrize("persona", ["rd_north", "channel_admin"])
def test_regional_director_and_channel_admin_review(world, persona):
    plan = open_plan(world)
    client = client_for(getattr(world, persona))
    assert client.get(review_url(plan)).status_code == 200
    assert client.post(review_url(plan), {"decision": "met", "outcome": "Met."}).status_code == 302


# --- the dealer's side ------------------------------------------------------------------------


def test_dealer_admin_sees_its_plan_without_the_internal_notes(world):
    plan = open_plan(world)
    page = client_for(world.own_admin).get(reverse("dealers:my_organisation")).content.decode()
    assert "Your improvement plan" in page and GOALS in page and "1 June 2026" in page
    assert 'class="badge improvement_plan">Open</span>' in page
    assert NOTES not in page and "Internal notes" not in page
    assert review_url(plan) not in page
    services.improvement_plan_not_met(plan=plan, outcome="Two deals in three months.", actor=world.pm_a)
    page = client_for(world.own_admin).get(reverse("dealers:my_organisation")).content.decode()
    assert "Not met: phasing out" in page and "Two deals in three months." in page and NOTES not in page


def test_dealer_users_who_are_not_admin_do_not_see_the_plan(world):
    open_plan(world)
    page = client_for(world.own_user).get(reverse("dealers:my_organisation")).content.decode()
    assert GOALS not in page and 'id="plan"' not in page


def test_other_dealer_does_not_see_the_plan(world):
    open_plan(world)
    page = client_for(world.other_admin).get(reverse("dealers:my_organisation")).content.decode()
    assert GOALS not in page and 'id="plan"' not in page
    assert not ImprovementPlan.objects.visible_to(world.other_admin).exists()


def test_visibility_per_persona(world):
    plan = open_plan(world)
    for persona in ["pm_a", "rd_north", "channel_admin", "own_admin"]:
        assert list(ImprovementPlan.objects.visible_to(getattr(world, persona))) == [plan], persona
    for persona in ["pm_b", "rd_south", "own_user", "other_admin"]:
        assert not ImprovementPlan.objects.visible_to(getattr(world, persona)).exists(), persona


# --- admin ----------------------------------------------------------------------------------------


def test_admin_lists_plans_read_only_and_scoped(world):
    plan = open_plan(world)
    changelist = reverse("admin:dealers_improvementplan_changelist")
    assert "Own Dealer B.V." in client_for(world.pm_a).get(changelist).content.decode()
    assert "Own Dealer B.V." not in client_for(world.pm_b).get(changelist).content.decode()
    change = reverse("admin:dealers_improvementplan_change", args=[plan.pk])
    assert client_for(world.pm_b).get(change).status_code == 302  # not in their scope: back to the index
    page = client_for(world.channel_admin).get(change)
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert client_for(world.channel_admin).get(reverse("admin:dealers_improvementplan_add")).status_code == 403
