"""The regional director decides escalated conflicts in the admin, as each persona through the client.

Own dealer (north, pm_a, rd_north) registered the customer first and holds a protection; the other
dealer (south, pm_b, rd_south) registers it later in another spelling with the same product line.
pm_b escalates; the conflict belongs to the later registration, so rd_south decides it.
"""

from decimal import Decimal

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from deals import services
from deals.conflicts import NEUTRAL_REJECTION, conflict_escalate
from deals.models import Conflict, ProductLine, Registration, RegistrationEvent
from prm.models import OutboxEmail
from tests import deal_factories, factories
from tests.conftest import client_for

Status = Registration.Status
CHANGELIST = reverse("admin:deals_conflict_changelist")
ESCALATION_NOTE = "Both dealers claim the customer; pm_b thinks the later one has the relationship."


def change_url(conflict):
    return reverse("admin:deals_conflict_change", args=[conflict.pk])


def decide_url(conflict):
    return reverse("admin:deals_conflict_decide", args=[conflict.pk])


@pytest.fixture
def pumps(db):
    line = ProductLine.objects.create(name="Heat pumps", code="hp", protection_days=180)
    return (
        deal_factories.ProductFactory(line=line, name="Pump 8 kW", list_price=Decimal("6450.00")),
        deal_factories.ProductFactory(line=line, name="Pump 12 kW", list_price=Decimal("8900.00")),
    )


@pytest.fixture
def escalated(world, pumps):
    """An escalated conflict made through the real services; returns (conflict, earlier, later)."""
    earlier = deal_factories.approved(
        world.own_user,
        customer=deal_factories.customer_data(name="Bakkerij De Korenschoof B.V."),
        lines=[services.LineData(product=pumps[0], quantity=2)],
        contact_name="Jan de Vries",
    )
    later = deal_factories.submit(
        world.other_admin,
        customer=deal_factories.customer_data(name="bakkerij de korenschoof bv", city="Utrecht"),
        lines=[services.LineData(product=pumps[1], quantity=1)],
        contact_name="Annelies Korenschoof",
        contact_email="annelies@korenschoof.example",
    )
    conflict = Conflict.objects.get(registration=later, other=earlier)  # found by the submit service
    assert conflict.kind == Conflict.Kind.CONFLICT and conflict.status == Conflict.Status.OPEN
    conflict_escalate(registration=later, actor=world.pm_b, note=ESCALATION_NOTE)
    conflict.refresh_from_db()
    later.refresh_from_db()
    assert conflict.status == Conflict.Status.ESCALATED and later.status == Status.ESCALATED
    return conflict, earlier, later


def snapshot(*registrations):
    """Everything a decision could change."""
    return (
        [Registration.objects.filter(pk=r.pk).values_list("status", "protected_until").get() for r in registrations],
        RegistrationEvent.objects.count(),
        OutboxEmail.objects.count(),
        list(Conflict.objects.values_list("pk", "status", "winner_id", "customer_chose")),
    )


# --- who sees it -------------------------------------------------------------------------------------


def test_the_later_registrations_director_sees_it_in_the_escalation_list(world, escalated):
    conflict, earlier, later = escalated
    response = client_for(world.rd_south).get(CHANGELIST)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Escalations" in page
    assert later.reference in page and earlier.reference in page
    assert "Other Dealer B.V." in page and "Own Dealer B.V." in page
    assert list(response.context["cl"].result_list) == [conflict]


def test_the_list_opens_on_escalated_conflicts_and_filters_by_status_and_kind(world, escalated, pumps):
    conflict, earlier, later = escalated
    client = client_for(world.channel_admin)
    # a third dealer registers the customer too: its conflicts are open (not escalated)
    open_one = deal_factories.submit(
        factories.dealer_user(world.orphan),
        customer=deal_factories.customer_data(name="Bakkerij de Korenschoof"),
        lines=[services.LineData(product=pumps[0], quantity=1)],
    )
    open_conflicts = Conflict.objects.filter(registration=open_one, status=Conflict.Status.OPEN)
    assert open_conflicts.exists()
    assert list(client.get(CHANGELIST).context["cl"].result_list) == [conflict]
    assert set(client.get(CHANGELIST, {"status": "open"}).context["cl"].result_list) == set(open_conflicts)
    everything = client.get(CHANGELIST, {"status": "all"}).context["cl"].result_list
    assert set(everything) == {conflict, *open_conflicts}
    assert list(client.get(CHANGELIST, {"status": "all", "kind__exact": "related"}).context["cl"].result_list) == []
    assert client.get(CHANGELIST, {"status": "open"}).context["title"] == "Conflicts"
    searched = client.get(CHANGELIST, {"q": later.reference})  # searches within the escalated ones
    assert list(searched.context["cl"].result_list) == [conflict]
    assert "Show all" not in searched.content.decode()  # it would only lead back to the escalations


def test_the_side_by_side_page_shows_both_registrations(world, escalated):
    conflict, earlier, later = escalated
    response = client_for(world.rd_south).get(change_url(conflict))
    assert response.status_code == 200
    page = response.content.decode()
    for registration in (earlier, later):
        assert registration.reference in page
        assert registration.organisation.name in page
        local = timezone.localtime(registration.first_submitted_at)
        assert f"{local:%H:%M:%S}" in page  # the timestamps, to the second
    columns = response.context["columns"]
    assert [c["registration"] for c in columns] == [earlier, later]  # the first submitted on the left
    assert "Bakkerij De Korenschoof B.V." in page and "bakkerij de korenschoof bv" in page
    assert "Jan de Vries" in page and "Annelies Korenschoof" in page
    assert "Pump 8 kW" in page and "Pump 12 kW" in page
    assert f"score {conflict.score}" in page
    for reason in conflict.reasons:
        assert escape(reason) in page
    assert f"earliest submission wins: {earlier.reference}" in page
    assert ESCALATION_NOTE in page
    assert "Protected until" in page and earlier.protected_until.strftime("%Y") in page
    assert 'id="decision_form"' in page and "Record the decision" in page
    assert f'value="{earlier.pk}" checked' in page  # the default rule is preselected
    assert "The customer chose this dealer" in page
    assert "csrfmiddlewaretoken" in page


def test_the_other_regions_director_does_not_see_it(world, escalated):
    conflict, earlier, later = escalated
    client = client_for(world.rd_north)  # director of the earlier (own) dealer's region
    assert list(client.get(CHANGELIST, {"status": "all"}).context["cl"].result_list) == []
    response = client.get(change_url(conflict))
    assert response.status_code == 302  # the admin's "doesn't exist" redirect
    assert response.url == reverse("admin:index")
    assert later.reference not in client.get(response.url).content.decode()


def test_partner_managers_of_other_dealers_do_not_see_it(world, escalated):
    conflict, earlier, later = escalated
    client = client_for(world.pm_a)  # the earlier dealer's partner manager
    assert list(client.get(CHANGELIST, {"status": "all"}).context["cl"].result_list) == []
    assert client.get(change_url(conflict)).status_code == 302


def test_the_later_dealers_partner_manager_sees_it_read_only(world, escalated):
    conflict, earlier, later = escalated
    client = client_for(world.pm_b)
    assert list(client.get(CHANGELIST).context["cl"].result_list) == [conflict]
    response = client.get(change_url(conflict))
    assert response.status_code == 200
    page = response.content.decode()
    assert earlier.reference in page and later.reference in page
    assert "Record the decision" not in page
    assert "Only the regional director of South" in page
    before = snapshot(earlier, later)
    assert client.post(decide_url(conflict), {"winner": later.pk}).status_code == 403
    assert snapshot(earlier, later) == before


@pytest.mark.parametrize("who", ["own_admin", "own_user", "other_admin"])
def test_dealers_are_refused_by_the_admin(world, escalated, who):
    conflict, earlier, later = escalated
    client = client_for(getattr(world, who))
    before = snapshot(earlier, later)
    for response in (
        client.get(CHANGELIST),
        client.get(change_url(conflict)),
        client.post(decide_url(conflict), {"winner": later.pk}),
    ):
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))
    assert snapshot(earlier, later) == before


def test_a_director_elsewhere_cannot_decide_by_posting(world, escalated):
    conflict, earlier, later = escalated
    before = snapshot(earlier, later)
    assert client_for(world.rd_north).post(decide_url(conflict), {"winner": earlier.pk}).status_code == 404
    assert snapshot(earlier, later) == before


def test_no_add_no_delete_no_edit(world, escalated):
    conflict, earlier, later = escalated
    client = client_for(world.channel_admin)
    assert client.get(reverse("admin:deals_conflict_add")).status_code == 403
    assert client.get(reverse("admin:deals_conflict_delete", args=[conflict.pk])).status_code == 403
    before = snapshot(earlier, later)
    assert client.post(change_url(conflict), {"status": "resolved", "note": "x"}).status_code == 405
    assert client.get(decide_url(conflict)).status_code == 405
    assert snapshot(earlier, later) == before


# --- deciding ----------------------------------------------------------------------------------------


def emails_since(pk):
    return list(OutboxEmail.objects.filter(pk__gt=pk).order_by("pk"))


def test_award_the_later_registration_the_customer_chose(world, escalated):
    conflict, earlier, later = escalated
    last_email = OutboxEmail.objects.order_by("pk").last().pk
    response = client_for(world.rd_south).post(
        decide_url(conflict),
        {"winner": later.pk, "customer_chose": "on", "note": "Signed letter of intent with the later dealer."},
        follow=True,
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert f"Decided: {later.reference}" in page and "the customer chose it" in page

    later.refresh_from_db()
    earlier.refresh_from_db()
    conflict.refresh_from_db()
    assert later.status == Status.APPROVED and later.protected_until is not None
    assert later.decided_by == world.rd_south and later.margin_percent is not None
    assert earlier.status == Status.REVOKED
    assert conflict.status == Conflict.Status.RESOLVED
    assert conflict.winner == later and conflict.customer_chose is True
    assert conflict.decided_by == world.rd_south and conflict.note == "Signed letter of intent with the later dealer."

    # every step in the history, with the internal notes for staff
    later_steps = list(later.events.values_list("action", "actor", "to_status"))
    assert later_steps == [
        ("submit", world.other_admin.pk, Status.SUBMITTED),
        ("escalate", world.pm_b.pk, Status.ESCALATED),
        ("award", world.rd_south.pk, Status.APPROVED),
    ]
    assert later.events.get(action="escalate").internal_note == ESCALATION_NOTE
    award = later.events.get(action="award")
    assert "The customer chose." in award.internal_note and "letter of intent" in award.internal_note
    earlier_steps = list(earlier.events.values_list("action", "to_status"))
    assert earlier_steps == [
        ("submit", Status.SUBMITTED),
        ("approve", Status.APPROVED),
        ("escalate", Status.ESCALATED),
        ("revoke", Status.REVOKED),
    ]
    revoke = earlier.events.get(action="revoke")
    assert revoke.actor == world.rd_south and revoke.reason == NEUTRAL_REJECTION
    assert "The customer chose." in revoke.internal_note

    # both dealers told, each about its own registration only, in neutral words
    emails = emails_since(last_email)
    by_to = {e.to: e for e in emails}
    assert set(by_to) == {world.own_user.email, world.other_admin.email}
    to_earlier, to_later = by_to[world.own_user.email], by_to[world.other_admin.email]
    assert earlier.reference in to_earlier.subject and "revoked" in to_earlier.body
    assert later.reference in to_later.subject and "approved" in to_later.body
    for email, others in ((to_earlier, later), (to_later, earlier)):
        text = email.subject + email.body
        assert others.reference not in text and others.organisation.name not in text
        assert others.customer.name not in text
        for word in ("letter of intent", "customer chose", "Decided by", "regional director"):
            assert word.lower() not in text.lower()
    assert NEUTRAL_REJECTION in to_earlier.body

    # the admin's own history of the conflict
    assert LogEntry.objects.filter(object_id=str(conflict.pk), user=world.rd_south).exists()

    # the page now shows the outcome and no form
    page = client_for(world.rd_south).get(change_url(conflict)).content.decode()
    assert "Record the decision" not in page and "the customer chose" in page
    assert later.reference in page and "kept the customer" in page
    assert conflict not in client_for(world.rd_south).get(CHANGELIST).context["cl"].result_list


def test_award_the_earlier_registration_declines_the_later(world, escalated):
    conflict, earlier, later = escalated
    last_email = OutboxEmail.objects.order_by("pk").last().pk
    protected_until = earlier.protected_until
    response = client_for(world.rd_south).post(decide_url(conflict), {"winner": earlier.pk, "note": ""}, follow=True)
    assert f"Decided: {earlier.reference}" in response.content.decode()
    later.refresh_from_db()
    earlier.refresh_from_db()
    conflict.refresh_from_db()
    assert later.status == Status.REJECTED
    decline = later.events.get(action="decline")
    assert decline.actor == world.rd_south and decline.reason == NEUTRAL_REJECTION
    assert decline.internal_note == "Decided by the regional director."
    assert earlier.status == Status.APPROVED and earlier.protected_until == protected_until
    assert conflict.status == Conflict.Status.RESOLVED and conflict.winner == earlier
    assert conflict.customer_chose is False
    emails = emails_since(last_email)
    assert [e.to for e in emails] == [world.other_admin.email]
    assert earlier.reference not in emails[0].body and "Own Dealer" not in emails[0].body


def test_the_channel_admin_can_decide_too(world, escalated):
    conflict, earlier, later = escalated
    client_for(world.channel_admin).post(decide_url(conflict), {"winner": earlier.pk})
    conflict.refresh_from_db()
    assert conflict.status == Conflict.Status.RESOLVED and conflict.decided_by == world.channel_admin


@pytest.mark.parametrize("winner", ["unrelated", "", "abc", "999999"])
def test_a_tampered_post_changes_nothing(world, escalated, pumps, winner):
    conflict, earlier, later = escalated
    if winner == "unrelated":
        winner = deal_factories.submit(
            world.other_admin,
            lines=[services.LineData(product=pumps[0], quantity=1)],
            customer=deal_factories.customer_data(name="Garage Peters", postcode="9999 ZZ"),
        ).pk
    before = snapshot(earlier, later)
    response = client_for(world.rd_south).post(decide_url(conflict), {"winner": winner}, follow=True)
    assert response.status_code == 200
    messages = [str(m) for m in response.context["messages"]]
    assert messages and all(m.level_tag == "error" for m in response.context["messages"])
    assert any("competing registrations" in m or "keeps the customer" in m for m in messages)
    assert snapshot(earlier, later) == before


def test_deciding_twice_is_an_error_message_not_a_500(world, escalated):
    conflict, earlier, later = escalated
    client = client_for(world.rd_south)
    client.post(decide_url(conflict), {"winner": later.pk})
    before = snapshot(earlier, later)
    response = client.post(decide_url(conflict), {"winner": earlier.pk}, follow=True)
    assert response.status_code == 200
    assert "There is no escalated conflict to decide." in response.content.decode()
    assert snapshot(earlier, later) == before


def test_a_registration_withdrawn_meanwhile_cannot_win(world, escalated):
    """Found here: conflict_decide used to award the customer to a withdrawn registration (and
    reject the later one, so that nobody held it). It now refuses; the page offers no such choice."""
    conflict, earlier, later = escalated
    services.registration_withdraw(registration=earlier, actor=world.own_user)
    client = client_for(world.rd_south)
    page = client.get(change_url(conflict)).content.decode()
    assert f'value="{earlier.pk}" disabled' in page
    before = snapshot(earlier, later)
    response = client.post(decide_url(conflict), {"winner": earlier.pk}, follow=True)
    assert f"{earlier.reference} is withdrawn; it can no longer keep the customer." in response.content.decode()
    assert snapshot(earlier, later) == before
    client.post(decide_url(conflict), {"winner": later.pk})  # the later one can still have it
    later.refresh_from_db()
    earlier.refresh_from_db()
    assert later.status == Status.APPROVED and earlier.status == Status.WITHDRAWN
