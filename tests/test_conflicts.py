"""Conflict detection, channel rules, decisions and confidentiality."""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from deals import conflicts, services
from deals.models import Conflict, NamedAccount, ProgrammeSettings, Registration
from tests import factories
from tests.conftest import client_for
from tests.deal_factories import ProductFactory, ProductLineFactory, approved, customer_data, submit

Status = Registration.Status


@pytest.fixture
def pumps(db):
    return ProductFactory(line=ProductLineFactory(name="Heat pumps"), name="AeroTherm 8", list_price=Decimal("6450"))


@pytest.fixture
def solar(db):
    return ProductFactory(line=ProductLineFactory(name="Solar"), name="SunLine 410", list_price=Decimal("189"))


def register(actor, product, quantity=2, **customer):
    values = {"name": "Bakkerij Jansen B.V.", "city": "Utrecht", "postcode": "3511 AB", "country": "NL"}
    values.update(customer)
    return submit(
        actor,
        customer=customer_data(**values),
        contact_name="Marleen Jansen",
        contact_email="marleen@jansen.example",
        lines=[services.LineData(product=product, quantity=quantity)],
    )


# --- detection ------------------------------------------------------------------------------------


def test_same_customer_other_spelling_and_same_line_is_a_conflict(world, pumps):
    first = register(world.own_user, pumps)
    second = register(world.other_admin, pumps, name="bakkerij jansen bv")
    conflict = Conflict.objects.get()
    assert (conflict.registration, conflict.other, conflict.kind) == (second, first, "conflict")
    assert conflict.score >= Decimal("0.9") and conflict.reasons
    assert conflict.suggested_winner == first
    assert conflicts.is_flagged(second) and not conflicts.is_flagged(first)


def test_registrations_carry_their_customers_name_key(world, pumps):
    """The fuzzy lookup reads the copy of the name key on active registrations (PostgreSQL's partial
    trigram index): it must follow the customer's name."""
    first = register(world.own_user, pumps, name="Bakkerij Jansen B.V.")
    assert first.customer_name_key == first.customer.name_key == "bakkerij jansen"
    customer = first.customer
    customer.name, customer.name_key = "Slagerij Jansen", "slagerij jansen"
    customer.save()
    first.refresh_from_db()
    assert first.customer_name_key == "slagerij jansen"
    # the renamed customer is found under its new name, not its old one
    later = register(world.other_admin, pumps, name="Slagerij Jansen BV")
    assert [c.other for c in later.conflicts.all()] == [first]
    assert not register(world.other_admin, pumps, name="Bakkerij Jansen").conflicts.exists()


def test_same_customer_other_product_line_is_only_related(world, pumps, solar):
    register(world.own_user, pumps)
    second = register(world.other_admin, solar, name="Bakkerij Jansen")
    conflict = Conflict.objects.get()
    assert conflict.kind == "related" and not conflict.is_blocking
    assert not conflicts.is_flagged(second)


def test_match_by_vat_across_spellings_and_names(world, pumps):
    register(world.own_user, pumps, name="Jansen Holding", vat_number="NL812345678B01")
    register(world.other_admin, pumps, name="Broodfabriek Utrecht", vat_number="nl 8123.45678.b01")
    assert Conflict.objects.get().reasons[0].startswith("Same VAT number")


def test_different_customer_or_country_is_no_conflict(world, pumps):
    register(world.own_user, pumps)
    register(world.other_admin, pumps, name="Slagerij Jansen B.V.")
    register(world.other_admin, pumps, name="Bakkerij Jansen GmbH", country="DE", postcode="10115", city="Berlin")
    assert not Conflict.objects.exists()


def test_closed_registrations_do_not_conflict(world, pumps):
    first = register(world.own_user, pumps)
    services.registration_withdraw(registration=first, actor=world.own_user)
    register(world.other_admin, pumps)
    assert not Conflict.objects.exists()


def test_own_duplicate_is_pointed_out_to_the_dealer(world, pumps):
    first = register(world.own_user, pumps)
    second = register(world.own_admin, pumps)
    flag = second.flags.get()
    assert flag.kind == "own_duplicate" and first.reference in flag.explanation
    assert not Conflict.objects.exists()
    page = client_for(world.own_user).get(reverse("deals:registration_detail", args=[second.pk])).content.decode()
    assert first.reference in page and "You registered this customer before" in page


def test_not_the_same_customer_is_never_flagged_again(world, pumps):
    register(world.own_user, pumps)
    second = register(world.other_admin, pumps, name="Bakkerij Jansen")
    conflicts.conflict_dismiss(conflict=Conflict.objects.get(), actor=world.pm_b, note="Different branch")
    assert Conflict.objects.get().status == "dismissed"
    assert not conflicts.is_flagged(second)
    services.registration_approve(registration=second, actor=world.pm_b)  # no longer blocked
    # the same two customer records, registered again: not flagged
    third = submit(
        world.other_admin,
        existing_customer=second.customer,
        contact_name="X",
        contact_email="x@jansen.example",
        lines=[services.LineData(product=pumps, quantity=1)],
    )
    assert not third.conflicts.exists()


# --- channel rules ----------------------------------------------------------------------------------


def kinds(registration):
    return sorted(registration.flags.values_list("kind", flat=True))


def test_named_account_for_direct_and_for_another_dealer(world, pumps):
    NamedAccount.objects.create(name="Gemeente Utrecht", country="NL")
    NamedAccount.objects.create(name="Hotel De Bilt", country="NL", reserved_for=world.other)
    direct = register(world.own_user, pumps, name="gemeente utrecht")
    assert kinds(direct) == ["named_account"]
    assert "the vendor's direct team" in direct.flags.get().explanation
    theirs = register(world.own_user, pumps, name="Hotel de Bilt B.V.")
    assert "Other Dealer B.V." in theirs.flags.get().explanation
    mine = register(world.other_admin, pumps, name="Hotel De Bilt")  # reserved for this dealer itself
    assert kinds(mine) == []


def test_named_account_found_by_its_number_or_website_under_another_name(world, pumps):
    NamedAccount.objects.create(name="Gemeente Utrecht", country="NL", vat_number="NL 0012.34.567.B01")
    NamedAccount.objects.create(name="Provincie Zeeland", country="NL", website="https://www.zeeland.nl")
    by_vat = register(world.own_user, pumps, name="Stadskantoor", vat_number="nl001234567b01")
    assert kinds(by_vat) == ["named_account"] and "Gemeente Utrecht" in by_vat.flags.get().explanation
    by_site = register(world.own_user, pumps, name="Provinciehuis", country="BE", website="zeeland.nl/contact")
    assert kinds(by_site) == ["named_account"] and "Provincie Zeeland" in by_site.flags.get().explanation
    assert kinds(register(world.own_user, pumps, name="Provinciehuis Gent", country="BE")) == []


def test_own_earlier_registration_lines_and_a_conflict_in_one_check(world, pumps, solar):
    """The registration's own lines, the dealer's earlier registration of the same customer record
    and another dealer's registration of the same customer: all found by one check."""
    theirs = register(world.other_admin, pumps, name="Bakkerij Jansen")
    first = register(world.own_user, solar)
    again = submit(
        world.own_user,
        customer=None,
        existing_customer=first.customer,
        lines=[services.LineData(product=pumps, quantity=1)],
    )
    assert [(c.other, c.kind) for c in again.conflicts.all()] == [(theirs, Conflict.Kind.CONFLICT)]
    [own] = again.flags.filter(kind="own_duplicate")
    assert first.reference in own.explanation


def test_territory_rules(world, pumps):
    factories.TerritoryFactory(
        organisation=world.other, country="NL", postcode_from="3500", postcode_to="3599", exclusive=True
    )
    factories.TerritoryFactory(organisation=world.own, country="NL", postcode_from="1000", postcode_to="1999")
    inside_theirs = register(world.own_user, pumps, postcode="3511 AB")
    assert kinds(inside_theirs) == ["territory", "territory"]  # their exclusive area, and outside our own
    texts = " ".join(inside_theirs.flags.values_list("explanation", flat=True))
    assert "exclusive territory of Other Dealer B.V." in texts and "outside the dealer's own territories" in texts
    at_home = register(world.own_user, pumps, name="Café Centraal", postcode="1012 AB", city="Amsterdam")
    assert kinds(at_home) == []


def test_segment_and_direct_only(world, pumps):
    programme = ProgrammeSettings.load()
    programme.enterprise_value_threshold = Decimal("10000")
    programme.save()
    big = register(world.own_user, pumps, quantity=2)  # 12,900 > 10,000
    assert kinds(big) == ["segment"]
    plc = ProductFactory(line=ProductLineFactory(name="Industrial", direct_only=True), list_price=Decimal("100"))
    direct = register(world.own_user, plc, quantity=1, name="Fabriek Noord")
    assert kinds(direct) == ["direct_only"]


def test_flagged_registrations_are_left_out_of_bulk_approval(world, pumps):
    register(world.other_admin, pumps)
    flagged = register(world.own_user, pumps)  # later, so in conflict
    clean = register(world.own_user, pumps, name="Fietsenmaker Bos")
    result = services.registrations_bulk_approve(registration_ids=[flagged.pk, clean.pk], actor=world.pm_a)
    assert result.approved == [clean.reference]
    assert flagged.reference in result.refused
    assert Registration.objects.get(pk=flagged.pk).status == Status.SUBMITTED


def test_a_registration_in_conflict_cannot_be_approved_before_the_conflict_is_decided(world, pumps):
    register(world.other_admin, pumps)
    later = register(world.own_user, pumps)
    with pytest.raises(services.RegistrationError, match="decide the conflict first"):
        services.registration_approve(registration=later, actor=world.pm_a)


# --- decisions ------------------------------------------------------------------------------------


def test_earliest_wins_rejects_the_later_with_a_neutral_reason(world, pumps, django_capture_on_commit_callbacks):
    first = approved(
        world.other_admin,
        lines=[services.LineData(product=pumps, quantity=1)],
        customer=customer_data(name="Bakkerij Jansen B.V."),
    )
    later = register(world.own_user, pumps)
    with django_capture_on_commit_callbacks(execute=True):
        conflicts.conflict_award_earliest(registration=later, actor=world.pm_a, note="Other was first")
    later.refresh_from_db()
    assert later.status == Status.REJECTED
    conflict = Conflict.objects.get()
    assert conflict.status == "resolved" and conflict.winner == first
    event = later.events.latest("pk")
    assert event.reason == conflicts.NEUTRAL_REJECTION and event.internal_note == "Other was first"
    body = mail.outbox[-1].body
    assert "Other Dealer" not in body and first.reference not in body


def test_partner_manager_cannot_award_the_later_one_only_escalate(world, pumps):
    later_first = register(world.own_user, pumps)  # own is first here
    second = register(world.other_admin, pumps)
    with pytest.raises(services.RegistrationError):
        conflicts.conflict_award_earliest(registration=later_first, actor=world.pm_a)  # no conflict on the first
    conflicts.conflict_escalate(registration=second, actor=world.pm_b, note="Customer says they prefer Other")
    second.refresh_from_db()
    assert second.status == Status.ESCALATED and Conflict.objects.get().status == "escalated"


def test_director_awards_the_later_registration_and_the_earlier_protection_is_revoked(world, pumps):
    first = approved(
        world.own_user,
        lines=[services.LineData(product=pumps, quantity=1)],
        customer=customer_data(name="Bakkerij Jansen B.V."),
    )
    later = register(world.other_admin, pumps, name="Bakkerij Jansen")
    conflicts.conflict_escalate(registration=later, actor=world.pm_b, note="Customer asked for Other")
    with pytest.raises(services.NotAllowed):
        conflicts.conflict_decide(registration=later, winner=later, actor=world.rd_north)  # not the later one's RD
    conflicts.conflict_decide(registration=later, winner=later, actor=world.rd_south, customer_chose=True)
    first.refresh_from_db()
    later.refresh_from_db()
    assert later.status == Status.APPROVED and later.protected_until
    assert first.status == Status.REVOKED
    assert [e.action for e in first.events.order_by("pk")][-2:] == ["escalate", "revoke"]
    conflict = Conflict.objects.get()
    assert conflict.customer_chose and conflict.winner == later


def test_director_awards_the_earlier_one(world, pumps):
    first = register(world.own_user, pumps)
    later = register(world.other_admin, pumps)
    conflicts.conflict_escalate(registration=later, actor=world.pm_b, note="Check")
    conflicts.conflict_decide(registration=later, winner=first, actor=world.rd_south)
    later.refresh_from_db()
    assert later.status == Status.REJECTED
    assert Registration.objects.get(pk=first.pk).status == Status.SUBMITTED  # still reviewed normally


# --- who sees what ------------------------------------------------------------------------------------


def test_reviewer_of_the_later_sees_the_other_read_only(world, pumps):
    first = register(world.own_user, pumps)
    later = register(world.other_admin, pumps)
    assert first in Registration.objects.visible_to(world.pm_b)
    assert first not in Registration.objects.visible_to(world.other_admin)  # never the dealer
    page = client_for(world.pm_b).get(reverse("deals:registration_detail", args=[first.pk]))
    assert page.status_code == 200 and b"Approve and protect" not in page.content
    response = client_for(world.pm_b).post(
        reverse("deals:registration_review_action", args=[first.pk, "approve"]), follow=True
    )
    assert Registration.objects.get(pk=first.pk).status == Status.SUBMITTED
    assert b"Only the dealer" in response.content
    side = client_for(world.pm_b).get(reverse("deals:registration_detail", args=[later.pk])).content.decode()
    assert first.reference in side and "Own Dealer B.V." in side and "Default rule" in side


def test_the_other_dealer_learns_nothing_of_the_first(world, pumps, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        first = register(world.own_user, pumps, quantity=3)
        mail.outbox.clear()
        later = register(world.other_admin, pumps, name="bakkerij jansen")
        conflicts.conflict_escalate(registration=later, actor=world.pm_b, note="Own Dealer was first")
    secrets = [
        first.reference,
        "Own Dealer",
        str(first.expected_value),
        "19350",
        "admin@own.example",
        world.own_user.email,
        "Own Dealer B.V.",
    ]
    client = client_for(world.other_admin)
    pages = [
        client.get(reverse("deals:registration_detail", args=[later.pk])),
        client.get(reverse("deals:registration_list")),
        client.get("/"),
    ]
    texts = [p.content.decode() for p in pages]
    texts += [m.subject + m.body for m in mail.outbox if world.other_admin.email in m.to]
    assert any("possible overlap" in t for t in texts)
    for text in texts:
        for secret in secrets:
            assert secret not in text, secret
    assert client.get(reverse("deals:registration_detail", args=[first.pk])).status_code == 404


def test_queue_marks_conflicts_without_a_query_per_row(world, pumps):
    register(world.other_admin, pumps)
    later = register(world.own_user, pumps)
    page = client_for(world.pm_a).get(reverse("deals:review_queue"))
    row = next(r for r in page.context["page"].object_list if r.pk == later.pk)
    assert row.has_conflict
    assert f'value="{later.pk}"' not in page.content.decode()  # no bulk checkbox


# --- concurrency ---------------------------------------------------------------------------------------


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite serialises all writes; the lock is PostgreSQL's")
@pytest.mark.django_db(transaction=True)
def test_twenty_simultaneous_submissions_of_one_customer_all_see_each_other(world, pumps):
    dealers = [factories.dealer_user(factories.OrganisationFactory(region=world.north)) for _ in range(20)]
    barrier = threading.Barrier(20)
    errors = []

    def go(user, i):
        try:
            barrier.wait()
            register(user, pumps, name=["Bakkerij Jansen B.V.", "bakkerij jansen", "Bakkerij Jansen BV"][i % 3])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=go, args=(u, i)) for i, u in enumerate(dealers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert Registration.objects.count() == 20
    pairs = {frozenset((c.registration_id, c.other_id)) for c in Conflict.objects.all()}
    assert len(pairs) == 20 * 19 // 2  # every pair linked once
    assert Conflict.objects.count() == 190


def test_a_closed_registration_no_longer_blocks_the_other(world, pumps):
    first = register(world.other_admin, pumps)
    later = register(world.own_user, pumps)
    services.registration_withdraw(registration=first, actor=world.other_admin)
    assert Conflict.objects.get().status == "resolved"
    services.registration_approve(registration=later, actor=world.pm_a)


def test_an_escalated_later_registration_withdrawn_closes_its_conflict(world, pumps):
    register(world.other_admin, pumps)
    later = register(world.own_user, pumps)
    conflicts.conflict_escalate(registration=later, actor=world.pm_a, note="check")
    services.registration_withdraw(registration=later, actor=world.own_user)
    assert Conflict.objects.get().status == "resolved"


def test_nightly_expiry_closes_the_conflicts_of_what_it_expired(world, pumps):
    first = approved(
        world.other_admin,
        lines=[services.LineData(product=pumps, quantity=1)],
        customer=customer_data(name="Bakkerij Jansen B.V."),
    )
    later = register(world.own_user, pumps)
    Registration.objects.filter(pk=first.pk).update(protected_until=timezone.localdate() - timedelta(days=1))
    assert services.protections_expire() == 1
    assert Conflict.objects.get().status == "resolved"
    assert not conflicts.is_flagged(later)


def test_director_cannot_bypass_the_escalation_desk_in_the_portal(world, pumps):
    register(world.own_user, pumps)
    later = register(world.other_admin, pumps)
    conflicts.conflict_escalate(registration=later, actor=world.pm_b, note="check")
    with pytest.raises(services.RegistrationError, match="decide it in the admin"):
        services.registration_escalation_decide(registration=later, actor=world.rd_south, award=True, reason="x")
    page = client_for(world.rd_south).get(reverse("deals:registration_detail", args=[later.pk])).content.decode()
    assert "Award (approve and protect)" not in page


def test_changing_lines_before_review_runs_the_conflict_check_again(world, pumps, solar):
    register(world.other_admin, pumps)
    mine = register(world.own_user, solar)  # other product line: only related
    assert Conflict.objects.get().kind == "related"
    services.registration_update(
        registration=mine,
        actor=world.own_user,
        expected_close_date=mine.expected_close_date,
        decision_stage="",
        next_steps="",
        competitors="",
        lines=[services.LineData(product=pumps, quantity=1)],
    )
    assert Conflict.objects.get().kind == "conflict"
    assert conflicts.is_flagged(mine)


def test_seen_through_a_conflict_shows_no_programme_record_and_is_not_listed(world, pumps):
    first = register(world.own_user, pumps)
    register(world.other_admin, pumps)
    page = client_for(world.pm_b).get(reverse("deals:registration_detail", args=[first.pk])).content.decode()
    assert "in the programme" not in page
    listing = client_for(world.pm_b).get(reverse("deals:registration_list")).content.decode()
    assert first.reference not in listing


def test_dismissed_pair_ends_the_read_only_access(world, pumps):
    first = register(world.own_user, pumps)
    register(world.other_admin, pumps)
    conflicts.conflict_dismiss(conflict=Conflict.objects.get(), actor=world.pm_b)
    assert first not in Registration.objects.visible_to(world.pm_b)
