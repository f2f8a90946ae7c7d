"""Personal data: contacts anonymised after the retention period, and one person's details erased
on request everywhere they occur. Time moves only with time_machine."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from dealers import services as dealer_services
from dealers.models import ImprovementPlan, Invitation, OrganisationEvent
from deals import conflicts, privacy, services
from deals.models import (
    Conflict,
    ErasureLog,
    ExtensionRequest,
    ProgrammeSettings,
    ProtectionLookup,
    Registration,
    RegistrationEvent,
    RegistrationFlag,
)
from deals.tasks import contacts_anonymise as contacts_anonymise_task
from prm.models import OutboxEmail
from prm.outbox import MAX_ATTEMPTS
from tests.concurrency import at_once
from tests.conftest import client_for
from tests.deal_factories import ProductFactory, ProductLineFactory, customer_data, make_registration, submit

AMS = ZoneInfo("Europe/Amsterdam")
Status = Registration.Status

NAME, EMAIL = "Jan de Vries", "jan@korenschoof.example"


def at(*args) -> datetime:
    return datetime(*args, tzinfo=AMS)


def closed(world, status=Status.LOST, *, on=None, **fields) -> Registration:
    """A registration that reached `status` at `on` (default: 1 March 2024, 10:00)."""
    fields.setdefault("contact_name", NAME)
    fields.setdefault("contact_email", EMAIL)
    return make_registration(world.own, world.own_user, status, status_changed_at=on or at(2024, 3, 1, 10, 0), **fields)


def contact_of(registration) -> tuple[str, str, str]:
    registration.refresh_from_db()
    return registration.contact_name, registration.contact_email, registration.contact_phone


ANONYMISED_CONTACT = (privacy.ANONYMISED, privacy.ANONYMISED_EMAIL, "")
ERASED_CONTACT = (privacy.ERASED, privacy.ERASED_EMAIL, "")


# --- retention -----------------------------------------------------------------------------------


def test_anonymised_exactly_24_months_after_closing_and_only_once(world):
    registration = closed(world, contact_phone="+31 30 123 4567")
    with time_machine.travel(at(2026, 3, 1, 9, 59, 59), tick=False):
        assert privacy.contacts_anonymise() == 0
    assert contact_of(registration) == (NAME, EMAIL, "+31 30 123 4567")
    with time_machine.travel(at(2026, 3, 1, 10, 0), tick=False):
        assert privacy.contacts_anonymise() == 1
        assert privacy.contacts_anonymise() == 0  # the second run of the night finds nothing
    assert contact_of(registration) == ANONYMISED_CONTACT
    assert registration.anonymised_at == at(2026, 3, 1, 10, 0)
    assert registration.status == Status.LOST and registration.status_changed_at == at(2024, 3, 1, 10, 0)
    with time_machine.travel(at(2026, 9, 1), tick=False):
        assert privacy.contacts_anonymise() == 0
    registration.refresh_from_db()
    assert registration.anonymised_at == at(2026, 3, 1, 10, 0)


def test_the_retention_is_the_programme_setting(world):
    programme = ProgrammeSettings.load()
    assert programme.contact_retention_months == 24
    programme.contact_retention_months = 6
    programme.save()
    registration = closed(world, Status.EXPIRED, on=at(2025, 8, 31, 12, 0))
    # six months after 31 August: February has no 31st, so not before the end of February
    with time_machine.travel(at(2026, 2, 28, 23, 59), tick=False):
        assert privacy.contacts_anonymise() == 0
    with time_machine.travel(at(2026, 3, 1, 0, 0), tick=False):
        assert privacy.contacts_anonymise() == 1
    assert contact_of(registration) == ANONYMISED_CONTACT


@pytest.mark.parametrize("status", Registration.CLOSED_STATUSES)
def test_every_closed_status_is_anonymised(world, status):
    registration = closed(world, status)
    with time_machine.travel(at(2026, 3, 2), tick=False):
        assert privacy.contacts_anonymise() == 1
    assert contact_of(registration) == ANONYMISED_CONTACT


@pytest.mark.parametrize("status", Registration.OPEN_STATUSES)
def test_open_registrations_keep_their_contact_however_old(world, status):
    registration = closed(world, status)
    with time_machine.travel(at(2030, 1, 1), tick=False):
        assert privacy.contacts_anonymise() == 0
    assert contact_of(registration) == (NAME, EMAIL, "")


def test_the_job_redacts_the_contact_in_history_notes_and_stored_emails(world):
    with time_machine.travel(at(2024, 3, 1, 10, 0), tick=False):
        registration = submit(world, contact_name=NAME, contact_email=EMAIL, next_steps="Demo for Jan de Vries")
        services.registration_request_info(
            registration=registration,
            actor=world.pm_a,
            reason="Which site does jan de vries manage?",
            internal_note=f"Called {EMAIL.upper()}; Jan de Vriesland is his colleague",
        )
        services.registration_withdraw(registration=registration, actor=world.own_user, reason="Jan de Vries left")
        OutboxEmail.objects.create(
            to=world.own_user.email,
            subject="About Jan de Vries",
            body=f"Write to {EMAIL}.",
            topic=registration.reference,
        )
        other = submit(world, contact_name="Piet Bakker", contact_email="piet@bakker.example")
        services.registration_withdraw(registration=other, actor=world.own_user, reason="Piet Bakker left")
    events_before = list(
        registration.events.values_list("actor_id", "created_at", "action", "from_status", "to_status")
    )

    with time_machine.travel(at(2026, 3, 1, 10, 0), tick=False):
        assert privacy.contacts_anonymise(batch_size=1) == 2

    assert contact_of(registration) == ANONYMISED_CONTACT
    assert registration.next_steps == "Demo for (anonymised)"
    info, withdrawal = registration.events.filter(action__in=["request_info", "withdraw"]).order_by("created_at", "pk")
    assert info.reason == "Which site does (anonymised) manage?"
    assert info.internal_note == "Called (anonymised); Jan de Vriesland is his colleague"
    assert withdrawal.reason == "(anonymised) left"
    assert events_before == list(
        registration.events.values_list("actor_id", "created_at", "action", "from_status", "to_status")
    )
    email = OutboxEmail.objects.get(subject__startswith="About")
    assert (email.to, email.subject, email.body) == (
        world.own_user.email,
        "About (anonymised)",
        "Write to (anonymised).",
    )
    assert other.events.get(action="withdraw").reason == "(anonymised) left"  # its own contact, not Jan's


def test_the_command_and_the_task_run_the_job(world):
    registration = closed(world)
    with time_machine.travel(at(2026, 3, 2), tick=False):
        out = StringIO()
        call_command("contacts_anonymise", stdout=out)
        assert out.getvalue().strip() == "contacts_anonymise: 1"
        contacts_anonymise_task.delay()  # eager in tests: nothing left
    assert contact_of(registration) == ANONYMISED_CONTACT
    entry = settings.CELERY_BEAT_SCHEDULE["contacts-anonymise"]
    assert entry["task"] == "deals.tasks.contacts_anonymise"
    assert entry["schedule"].hour == {3} and entry["schedule"].minute == {45}


def test_months_before_keeps_the_wall_clock_and_clamps_the_day():
    assert privacy.months_before(at(2026, 5, 31, 3, 45), 3) == at(2026, 2, 28, 3, 45)
    assert privacy.months_before(at(2026, 3, 29, 3, 45), 24) == at(2024, 3, 29, 3, 45)  # across summer time
    assert privacy.months_before(at(2026, 1, 15), 1) == at(2025, 12, 15)


@pytest.mark.django_db(transaction=True)  # staff groups come back after the flush (dealers.roles, post_migrate)
def test_two_runs_at_once_anonymise_each_registration_once(world):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite has no row locks, and one writer at a time serialises the runs")
    registrations = [closed(world) for _ in range(40)]
    recent = closed(world, on=timezone.now() - timedelta(days=30))
    counts, errors = at_once(lambda: privacy.contacts_anonymise(batch_size=4))
    assert errors == []
    assert sum(counts) == len(registrations)
    assert Registration.objects.filter(anonymised_at__isnull=False).count() == len(registrations)
    assert contact_of(recent) == (NAME, EMAIL, "")


# --- erasure on request --------------------------------------------------------------------------


@pytest.fixture
def pumps(db):
    return ProductFactory(line=ProductLineFactory(name="Heat pumps"), name="AeroTherm 8", list_price=Decimal("6450"))


@pytest.fixture
def traces(world, pumps):
    """Jan de Vries, a customer's contact, left in every kind of record the portal has."""
    line = [services.LineData(product=pumps, quantity=1)]
    first = submit(
        world.other_admin,
        customer=customer_data(name="Bakkerij Jansen B.V."),
        contact_name="Marleen Jansen",
        contact_email="marleen@jansen.example",
        lines=line,
    )
    later = submit(
        world,
        customer=customer_data(name="Bakkerij Jansen BV"),
        contact_name=NAME,
        contact_email=EMAIL,
        contact_phone="06 1234 5678",
        next_steps="Jan de Vries wants a demo",
        lines=line,
    )
    conflicts.conflict_escalate(registration=later, actor=world.pm_a, note=f"Both talk to jan de vries ({EMAIL})")
    services.registration_request_info(
        registration=first, actor=world.pm_b, reason="Do you know Jan de Vries?", internal_note="J. de Vries, maybe"
    )
    untouched = submit(world, contact_name="Jan de Vriesland", contact_email="vriesland@example.com")
    extension_of = make_registration(world.own, world.own_user, Status.APPROVED, contact_name="Piet Bakker")
    ExtensionRequest.objects.create(
        registration=extension_of, requested_by=world.own_user, reason="Jan de Vries needs a board decision"
    )
    Conflict.objects.filter(registration=later).update(reasons=["Same name", "Contact Jan de Vries"])
    RegistrationFlag.objects.create(registration=later, kind="segment", explanation="Jan de Vries is enterprise")
    ProtectionLookup.objects.create(user=world.pm_a, query="jan de vries", result_count=0)
    invitation = dealer_services.invitation_create(
        organisation=world.own, email=EMAIL.upper(), role="user", invited_by=world.own_admin
    )
    ImprovementPlan.objects.create(
        organisation=world.own, opened_by=world.pm_a, goals="Keep Jan de Vries happy", deadline=timezone.localdate()
    )
    OutboxEmail.objects.create(
        to="pm.a@vendor.example", subject="Jan de Vries", body=f"Mail {EMAIL}", sent_at=timezone.now()
    )
    LogEntry.objects.log_actions(
        user_id=world.channel_admin.pk, queryset=[invitation], action_flag=2, change_message=""
    )
    return {"later": later, "first": first, "untouched": untouched, "invitation": invitation}


def all_text() -> str:
    """Every value of every record the erasure searches, as one string."""
    values = []
    for kind in privacy._kinds():
        for row in kind.model.objects.values_list():
            values.extend(str(value) for value in row)
    return "\n".join(values)


def facts() -> list:
    return list(
        RegistrationEvent.objects.order_by("pk").values_list(
            "pk", "registration_id", "actor_id", "created_at", "action", "from_status", "to_status"
        )
    ) + list(
        OrganisationEvent.objects.order_by("pk").values_list("pk", "organisation_id", "actor_id", "created_at", "kind")
    )


def test_erasure_redacts_every_place_and_keeps_the_facts(world, traces):
    assert NAME.lower() in all_text().lower() and EMAIL in all_text().lower()
    before = facts()
    counts = {
        "Registrations (contact person and notes)": 1,
        "Registration history": 2,  # the escalation's internal note, the question to the other dealer
        "Extension requests": 1,
        "Conflicts": 1,
        "Channel-rule flags": 1,
        "Protection look-ups": 1,
        "Organisation history": 1,  # "Invited JAN@… as dealer user"
        "Invitations": 1,
        "Improvement plans": 1,
        "Tier history": 0,
        "Tier overrides": 0,
        # the escalation to the director, the question to the other dealer, the invitation, one more
        "Stored emails": 4,
        "Admin log": 1,
    }
    assert privacy.person_erase_preview(email=EMAIL.upper(), name="jan  de vries", actor=world.channel_admin) == counts

    entry = privacy.person_erase(
        email=EMAIL.upper(), name="jan  de vries", actor=world.channel_admin, reason=f"Asked by {NAME} on the phone"
    )

    assert entry.counts == counts and entry.total == 15
    text = all_text()
    assert not re.search(r"jan\s+de\s+vries\b", text, re.IGNORECASE) and EMAIL not in text.lower()
    assert "Jan de Vriesland" in text and "J. de Vries, maybe" in text  # other words stay
    assert facts() == before
    later = traces["later"]
    assert contact_of(later) == ERASED_CONTACT and later.anonymised_at is not None
    assert later.next_steps == "[erased] wants a demo"
    assert later.status == Status.ESCALATED and later.events.count() == 2
    assert contact_of(traces["first"]) == ("Marleen Jansen", "marleen@jansen.example", "")
    assert contact_of(traces["untouched"]) == ("Jan de Vriesland", "vriesland@example.com", "")
    conflict = Conflict.objects.get(registration=later)
    assert conflict.note == "Both talk to [erased] ([erased])"
    assert conflict.reasons == ["Same name", "Contact [erased]"]
    invitation = Invitation.objects.get(pk=traces["invitation"].pk)
    assert invitation.email == privacy.ERASED_EMAIL and invitation.state == "expired"
    invited = OrganisationEvent.objects.get(kind="member_invited")
    assert invited.description == "Invited [erased] as dealer user" and invited.data["email"] == "[erased]"
    unsent = OutboxEmail.objects.get(to=privacy.ERASED_EMAIL)
    assert unsent.sent_at is None and unsent.attempts >= MAX_ATTEMPTS and unsent.last_error == privacy.NOT_SENT
    assert privacy.person_erase_preview(email=EMAIL, name=NAME, actor=world.channel_admin)["Invitations"] == 0


def test_the_log_holds_neither_the_address_nor_the_name(world, traces):
    entry = privacy.person_erase(email=EMAIL, name=NAME, actor=world.channel_admin, reason=f"{NAME} <{EMAIL}> asked")
    stored = " ".join(str(value) for value in ErasureLog.objects.values_list().get(pk=entry.pk)).lower()
    assert EMAIL not in stored and "jan" not in stored and "vries" not in stored
    assert entry.reason == "[erased] <[erased]> asked"
    assert entry.email_hash == privacy.email_hash(f"  {EMAIL.upper()} ") != privacy.email_hash("other@example.com")
    assert entry.actor == world.channel_admin and entry.name_given


def test_an_erasure_of_an_unknown_person_is_logged_with_nothing_found(world):
    entry = privacy.person_erase(email="nobody@example.com", actor=world.channel_admin, reason="Ticket 12")
    assert entry.total == 0 and set(entry.counts.values()) == {0}


@pytest.mark.parametrize(
    ("email", "name", "message"),
    [
        ("not an address", "", "Enter the person's email address."),
        (EMAIL, "Jan", "Give the full name"),
        ("user@own.example", "", "belongs to a portal account"),
        ("USER@OWN.EXAMPLE", "", "belongs to a portal account"),
    ],
)
def test_refused_input(world, email, name, message):
    with pytest.raises(privacy.ErasureError, match=message):
        privacy.person_erase(email=email, name=name, actor=world.channel_admin, reason="Ticket 12")
    assert not ErasureLog.objects.exists()


def test_a_reason_is_required(world):
    with pytest.raises(privacy.ErasureError, match="Say why"):
        privacy.person_erase(email=EMAIL, actor=world.channel_admin, reason="  ")


@pytest.mark.parametrize("who", ["pm_a", "rd_north", "own_admin", "own_user"])
def test_only_a_channel_admin_may_erase(world, traces, who):
    for call in (privacy.person_erase_preview, privacy.person_erase):
        kwargs = {"reason": "x"} if call is privacy.person_erase else {}
        with pytest.raises(privacy.NotAllowed):
            call(email=EMAIL, actor=getattr(world, who), **kwargs)
    assert contact_of(traces["later"])[1] == EMAIL


# --- the page ------------------------------------------------------------------------------------

URL = reverse("deals:person_erase")


def snapshot() -> str:
    return all_text() + str(ErasureLog.objects.count())


def test_form_preview_confirm_result(world, traces):
    client = client_for(world.channel_admin)
    assert client.get(URL).status_code == 200
    data = {"email": EMAIL, "name": NAME, "reason": "Ticket 1234"}
    before = snapshot()

    preview = client.post(URL, data)
    assert preview.status_code == 200
    assert preview.context["total"] == 15 and preview.context["counts"]["Stored emails"] == 4
    page = preview.content.decode()
    assert "Erase 15 records?" in page and 'name="confirm" value="yes"' in page
    assert snapshot() == before  # the preview changes nothing

    done = client.post(URL, {**data, "confirm": "yes"})
    entry = ErasureLog.objects.get()
    assert done.status_code == 302 and done.url == reverse("deals:erasure_detail", args=[entry.pk])
    assert entry.total == 15 and entry.reason == "Ticket 1234"
    result = client.get(done.url)
    assert result.status_code == 200 and "Records redacted" in result.content.decode()
    assert contact_of(traces["later"]) == ERASED_CONTACT


def test_the_page_says_why_it_refuses(world):
    response = client_for(world.channel_admin).post(URL, {"email": "user@own.example", "reason": "x"})
    assert response.status_code == 200
    assert "belongs to a portal account" in response.content.decode()
    assert not ErasureLog.objects.exists()


@pytest.mark.parametrize("who", ["pm_a", "rd_north", "own_admin", "own_user", "other_admin"])
def test_everyone_but_a_channel_admin_gets_404(world, traces, who):
    entry = privacy.person_erase(email="someone@example.com", actor=world.channel_admin, reason="x")
    client = client_for(getattr(world, who))
    before = snapshot()
    assert client.get(URL).status_code == 404
    assert client.post(URL, {"email": EMAIL, "name": NAME, "reason": "x", "confirm": "yes"}).status_code == 404
    assert client.get(reverse("deals:erasure_detail", args=[entry.pk])).status_code == 404
    assert snapshot() == before


def test_anonymous_is_sent_to_log_in(db):
    response = Client().get(URL)
    assert response.status_code == 302 and "login" in response.url


def test_the_log_in_the_admin_is_read_only_and_found_by_address(world):
    entry = privacy.person_erase(email=EMAIL, actor=world.channel_admin, reason="Ticket 9")
    privacy.person_erase(email="other@example.com", actor=world.channel_admin, reason="Ticket 10")
    client = client_for(world.channel_admin)
    changelist = reverse("admin:deals_erasurelog_changelist")
    found = client.get(changelist, {"q": EMAIL.upper()})
    assert found.status_code == 200 and list(found.context["cl"].result_list) == [entry]
    assert client.get(reverse("admin:deals_erasurelog_change", args=[entry.pk])).status_code == 200
    assert client.post(reverse("admin:deals_erasurelog_delete", args=[entry.pk]), {"post": "yes"}).status_code == 403
    assert ErasureLog.objects.count() == 2
    assert client_for(world.pm_a).get(changelist).status_code == 403
