"""Registration pages through the client, as each persona: own dealer, other dealer, vendor staff."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from deals import services
from deals.models import Customer, Product, ProductLine, Registration
from tests import factories
from tests.conftest import client_for


@pytest.fixture
def catalogue(db):
    pumps = ProductLine.objects.create(name="Heat pumps", code="hp", protection_days=180)
    climate = ProductLine.objects.create(name="Climate", code="cl")
    direct = ProductLine.objects.create(name="Industrial", code="ind", direct_only=True)
    return {
        "pump": Product.objects.create(line=pumps, sku="HP-1", name="Pump 8 kW", list_price=Decimal("6450.00")),
        "unit": Product.objects.create(line=climate, sku="CL-1", name="Cassette", list_price=Decimal("1180.00")),
        "plc": Product.objects.create(line=direct, sku="IC-1", name="PLC", list_price=Decimal("12800.00")),
    }


def submit(actor, catalogue, *, name="Bakkerij Jansen B.V.", quantity=2):
    return services.registration_submit(
        actor=actor,
        customer=services.CustomerData(name=name, city="Utrecht", postcode="3511 AB", country="NL"),
        contact_name="Marleen Jansen",
        contact_email="marleen@jansen.example",
        lines=[services.LineData(product=catalogue["pump"], quantity=quantity)],
        expected_close_date=timezone.localdate() + timedelta(days=30),
    )


def form_data(catalogue, **overrides):
    data = {
        "customer-existing": "",
        "customer-name": "Bakkerij Jansen B.V.",
        "customer-city": "Utrecht",
        "customer-postcode": "3511 AB",
        "customer-country": "NL",
        "customer-website": "",
        "customer-vat_number": "",
        "customer-company_number": "",
        "deal-contact_name": "Marleen Jansen",
        "deal-contact_email": "marleen@jansen.example",
        "deal-contact_phone": "+31 30 123 4567",
        "deal-expected_close_date": (timezone.localdate() + timedelta(days=45)).isoformat(),
        "deal-decision_stage": "mid",
        "deal-competitors": "",
        "deal-next_steps": "",
        "lines-TOTAL_FORMS": "2",
        "lines-INITIAL_FORMS": "0",
        "lines-MIN_NUM_FORMS": "1",
        "lines-MAX_NUM_FORMS": "50",
        "lines-0-product": str(catalogue["pump"].pk),
        "lines-0-quantity": "2",
        "lines-0-value": "",
        "lines-1-product": str(catalogue["unit"].pk),
        "lines-1-quantity": "3",
        "lines-1-value": "3000.00",
    }
    data.update(overrides)
    return data


# --- registering in the browser's way ---------------------------------------------------------------


def test_dealer_registers_a_deal(world, catalogue):
    client = client_for(world.own_user)
    page = client.get(reverse("deals:registration_create"))
    assert page.status_code == 200 and b"Register a deal" in page.content
    assert b'data-price="6450.00"' in page.content  # the page can prefill list price x quantity
    assert "PLC (IC-1) — direct sales only, needs review" in page.content.decode()  # offered, but flagged
    response = client.post(reverse("deals:registration_create"), form_data(catalogue))
    registration = Registration.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("deals:registration_detail", args=[registration.pk])
    assert registration.expected_value == Decimal("15900.00")  # 2 x 6450 (list price) + 3000 (typed)
    assert registration.lines.count() == 2
    assert registration.customer.organisation == world.own
    detail = client.get(response["Location"]).content.decode()
    assert registration.reference in detail and "Waiting for review" in detail


def test_bad_submit_keeps_everything_typed(world, catalogue):
    client = client_for(world.own_user)
    data = form_data(
        catalogue,
        **{
            "deal-expected_close_date": (timezone.localdate() - timedelta(days=1)).isoformat(),
            "deal-contact_email": "not-an-email",
            "customer-postcode": "99999",
            "lines-1-quantity": "-3",
        },
    )
    response = client.post(reverse("deals:registration_create"), data)
    assert response.status_code == 200
    page = response.content.decode()
    assert "The expected close date lies in the past." in page
    assert "Enter a valid email address." in page
    assert "not a valid postcode" in page
    assert "greater than or equal to 1" in page
    assert 'value="Bakkerij Jansen B.V."' in page and 'value="Marleen Jansen"' in page
    assert 'value="3000.00"' in page
    assert not Registration.objects.exists()


def test_at_least_one_line(world, catalogue):
    data = form_data(
        catalogue,
        **{
            "lines-0-product": "",
            "lines-0-quantity": "",
            "lines-1-product": "",
            "lines-1-quantity": "",
            "lines-1-value": "",
        },
    )
    response = client_for(world.own_user).post(reverse("deals:registration_create"), data)
    assert b"Add at least one product line." in response.content
    assert not Registration.objects.exists()


def test_vat_number_format_per_country(world, catalogue):
    data = form_data(catalogue, **{"customer-vat_number": "BE0123456789"})
    response = client_for(world.own_user).post(reverse("deals:registration_create"), data)
    assert b"not a valid VAT number" in response.content
    data = form_data(catalogue, **{"customer-vat_number": "nl 8123.45678 b01"})
    client_for(world.own_user).post(reverse("deals:registration_create"), data)
    assert Customer.objects.get().vat_number == "NL812345678B01"


def test_add_line_without_javascript_keeps_data_and_submits_nothing(world, catalogue):
    data = form_data(catalogue, add_line="1")
    response = client_for(world.own_user).post(reverse("deals:registration_create"), data)
    assert response.status_code == 200
    assert not Registration.objects.exists()
    page = response.content.decode()
    assert 'name="lines-TOTAL_FORMS" value="3"' in page
    assert 'value="Bakkerij Jansen B.V."' in page
    assert "errorlist" not in page and 'class="error"' not in page


def test_customer_suggestions_are_own_customers_only(world, catalogue):
    submit(world.other_admin, catalogue, name="Secret Customer of Other")
    submit(world.own_admin, catalogue, name="Own Earlier Customer")
    page = client_for(world.own_user).get(reverse("deals:registration_create")).content.decode()
    assert "Own Earlier Customer" in page
    assert "Secret Customer of Other" not in page


def test_tampered_existing_customer_of_other_dealer_is_refused(world, catalogue):
    theirs = submit(world.other_admin, catalogue, name="Theirs").customer
    data = form_data(catalogue, **{"customer-existing": str(theirs.pk)})
    response = client_for(world.own_user).post(reverse("deals:registration_create"), data)
    assert response.status_code == 200 and b"Select a valid choice" in response.content
    assert Registration.objects.filter(organisation=world.own).count() == 0


def test_dealer_at_cap_is_told_before_typing(world, catalogue):
    from tiers.selectors import lowest_tier

    tier = lowest_tier()
    tier.open_registration_cap = 1
    tier.save()
    submit(world.own_user, catalogue)
    page = client_for(world.own_user).get(reverse("deals:registration_create"))
    assert b"reached its registration limit" in page.content
    assert b'name="customer-name"' not in page.content
    response = client_for(world.own_user).post(reverse("deals:registration_create"), form_data(catalogue))
    assert Registration.objects.count() == 1 and response.status_code == 200


def test_staff_cannot_register(world, catalogue):
    assert client_for(world.pm_a).get(reverse("deals:registration_create")).status_code == 404


# --- isolation -----------------------------------------------------------------------------------------


@pytest.fixture
def own_registration(world, catalogue):
    return submit(world.own_user, catalogue)


@pytest.mark.parametrize("persona", ["other_admin", "pm_b", "rd_south"])
def test_other_parties_get_404_everywhere(world, own_registration, persona):
    client = client_for(getattr(world, persona))
    pk = own_registration.pk
    for url in [
        reverse("deals:registration_detail", args=[pk]),
        reverse("deals:registration_update", args=[pk]),
        reverse("deals:registration_withdraw", args=[pk]),
    ]:
        assert client.get(url).status_code == 404, url
    for url in [
        reverse("deals:registration_withdraw", args=[pk]),
        reverse("deals:registration_dealer_action", args=[pk, "resubmit"]),
        reverse("deals:registration_review_action", args=[pk, "approve"]),
    ]:
        assert client.post(url, {"reason": "x"}).status_code == 404, url
    assert Registration.objects.get(pk=pk).status == "submitted"
    listing = client.get(reverse("deals:registration_list")).content.decode()
    assert own_registration.reference not in listing


def test_own_dealer_colleague_sees_it_and_staff_of_the_dealer_too(world, own_registration):
    url = reverse("deals:registration_detail", args=[own_registration.pk])
    for persona in ("own_admin", "own_user", "pm_a", "rd_north", "channel_admin"):
        assert client_for(getattr(world, persona)).get(url).status_code == 200, persona


def test_dealer_cannot_use_review_actions(world, own_registration):
    url = reverse("deals:registration_review_action", args=[own_registration.pk, "approve"])
    assert client_for(world.own_admin).post(url).status_code == 404
    assert Registration.objects.get(pk=own_registration.pk).status == "submitted"


def test_anonymous_is_sent_to_login(client, own_registration):
    for url in [reverse("deals:registration_list"), reverse("deals:registration_detail", args=[own_registration.pk])]:
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith(reverse("account_login"))


# --- review ------------------------------------------------------------------------------------------


def test_partner_manager_approves_and_dealer_sees_protection(world, own_registration):
    url = reverse("deals:registration_review_action", args=[own_registration.pk, "approve"])
    response = client_for(world.pm_a).post(url, {"reason": "Good luck", "internal_note": "checked CRM, clean"})
    assert response.status_code == 302
    registration = Registration.objects.get(pk=own_registration.pk)
    assert registration.status == "approved"
    page = client_for(world.own_user).get(reverse("deals:registration_detail", args=[registration.pk])).content.decode()
    assert "Protected until" in page and "180 days left" in page
    assert "Good luck" in page
    assert "checked CRM" not in page  # internal notes stay with vendor staff
    staff_page = (
        client_for(world.pm_a).get(reverse("deals:registration_detail", args=[registration.pk])).content.decode()
    )
    assert "checked CRM" in staff_page


def test_reject_without_reason_is_refused_with_message(world, own_registration):
    url = reverse("deals:registration_review_action", args=[own_registration.pk, "reject"])
    response = client_for(world.pm_a).post(url, {"reason": ""}, follow=True)
    assert b"Give the reason the dealer will see." in response.content
    assert Registration.objects.get(pk=own_registration.pk).status == "submitted"


def test_impossible_transition_is_a_clear_refusal(world, own_registration):
    services.registration_reject(registration=own_registration, actor=world.pm_a, reason="No")
    url = reverse("deals:registration_review_action", args=[own_registration.pk, "approve"])
    response = client_for(world.pm_a).post(url, follow=True)
    assert response.status_code == 200 and b"cannot be approved now" in response.content
    assert Registration.objects.get(pk=own_registration.pk).status == "rejected"


def test_review_queue_is_scoped_and_ordered(world, catalogue):
    first = submit(world.own_user, catalogue, name="First")
    second = submit(world.own_user, catalogue, name="Second")
    Registration.objects.filter(pk=second.pk).update(review_due_at=timezone.now() - timedelta(hours=1))
    theirs = submit(world.other_admin, catalogue, name="Theirs")
    orphan_user = factories.dealer_user(world.orphan)
    orphaned = submit(orphan_user, catalogue, name="Orphaned")
    page = client_for(world.pm_a).get(reverse("deals:review_queue"))
    refs = [r.reference for r in page.context["page"].object_list]
    assert refs == [second.reference, first.reference]
    assert "Overdue" in page.content.decode()
    assert theirs.reference not in page.content.decode()
    rd_refs = [
        r.reference for r in client_for(world.rd_north).get(reverse("deals:review_queue")).context["page"].object_list
    ]
    assert set(rd_refs) == {orphaned.reference, second.reference}  # no partner manager, or overdue
    overdue_only = client_for(world.pm_a).get(reverse("deals:review_queue"), {"overdue": "true"})
    assert [r.reference for r in overdue_only.context["page"].object_list] == [second.reference]


def test_bulk_approve_from_queue(world, catalogue):
    a, b = submit(world.own_user, catalogue, name="A"), submit(world.own_user, catalogue, name="B")
    response = client_for(world.pm_a).post(reverse("deals:review_bulk_approve"), {"registration": [a.pk, b.pk]})
    assert response.status_code == 302
    assert set(Registration.objects.values_list("status", flat=True)) == {"approved"}


def test_bulk_approve_with_a_foreign_id_changes_nothing(world, catalogue):
    mine = submit(world.own_user, catalogue, name="Mine")
    theirs = submit(world.other_admin, catalogue, name="Theirs")
    response = client_for(world.pm_a).post(
        reverse("deals:review_bulk_approve"), {"registration": [mine.pk, theirs.pk]}, follow=True
    )
    assert b"Nothing was approved" in response.content
    assert set(Registration.objects.values_list("status", flat=True)) == {"submitted"}
    response = client_for(world.pm_a).post(reverse("deals:review_bulk_approve"), {"registration": ["x"]}, follow=True)
    assert response.status_code == 200


def test_queue_and_list_query_counts_do_not_grow(world, catalogue, django_assert_num_queries):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def count(client, url):
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    pm, dealer = client_for(world.pm_a), client_for(world.own_user)
    submit(world.own_user, catalogue, name="One")
    pm.get(reverse("deals:review_queue")), dealer.get(reverse("deals:registration_list"))  # warm sessions
    small = count(pm, reverse("deals:review_queue")), count(dealer, reverse("deals:registration_list"))
    for i in range(15):
        submit(world.own_user, catalogue, name=f"Customer {i}")
    large = count(pm, reverse("deals:review_queue")), count(dealer, reverse("deals:registration_list"))
    assert large == small, (small, large)


# --- dealer actions --------------------------------------------------------------------------------


def test_dealer_reports_won_through_the_page(world, own_registration):
    services.registration_approve(registration=own_registration, actor=world.pm_a)
    url = reverse("deals:registration_dealer_action", args=[own_registration.pk, "won"])
    response = client_for(world.own_user).post(
        url, {"won_value": "12000.00", "won_date": timezone.localdate().isoformat()}
    )
    assert response.status_code == 302
    registration = Registration.objects.get(pk=own_registration.pk)
    assert registration.status == "won" and registration.won_value == Decimal("12000.00")


def test_dealer_bad_won_form_shows_message(world, own_registration):
    services.registration_approve(registration=own_registration, actor=world.pm_a)
    url = reverse("deals:registration_dealer_action", args=[own_registration.pk, "won"])
    response = client_for(world.own_user).post(url, {"won_value": "-5", "won_date": "nonsense"}, follow=True)
    assert b"Enter a valid date." in response.content
    assert Registration.objects.get(pk=own_registration.pk).status == "approved"


def test_withdraw_confirms_first(world, own_registration):
    url = reverse("deals:registration_withdraw", args=[own_registration.pk])
    client = client_for(world.own_user)
    assert b"Withdraw " in client.get(url).content
    assert Registration.objects.get(pk=own_registration.pk).status == "submitted"
    client.post(url, {"reason": "Customer postponed"})
    assert Registration.objects.get(pk=own_registration.pk).status == "withdrawn"


def test_extension_request_and_decision_through_pages(world, own_registration):
    services.registration_approve(registration=own_registration, actor=world.pm_a)
    until = Registration.objects.get(pk=own_registration.pk).protected_until
    client_for(world.own_user).post(
        reverse("deals:registration_dealer_action", args=[own_registration.pk, "extend"]), {"reason": "Tender delayed"}
    )
    extension = own_registration.extension_requests.get()
    page = client_for(world.pm_a).get(reverse("deals:registration_detail", args=[own_registration.pk]))
    assert b"Tender delayed" in page.content
    assert (
        client_for(world.pm_b).post(reverse("deals:extension_decide", args=[extension.pk, "approve"])).status_code
        == 404
    )
    client_for(world.pm_a).post(reverse("deals:extension_decide", args=[extension.pk, "approve"]))
    assert Registration.objects.get(pk=own_registration.pk).protected_until == until + timedelta(days=30)


def test_update_lines_and_stage(world, catalogue, own_registration):
    url = reverse("deals:registration_update", args=[own_registration.pk])
    client = client_for(world.own_user)
    assert client.get(url).status_code == 200
    data = {
        "expected_close_date": (timezone.localdate() + timedelta(days=60)).isoformat(),
        "decision_stage": "late",
        "competitors": "Nordic Heat",
        "next_steps": "Demo on site",
        "lines-TOTAL_FORMS": "1",
        "lines-INITIAL_FORMS": "0",
        "lines-MIN_NUM_FORMS": "1",
        "lines-MAX_NUM_FORMS": "50",
        "lines-0-product": str(catalogue["unit"].pk),
        "lines-0-quantity": "5",
        "lines-0-value": "",
    }
    assert client.post(url, data).status_code == 302
    registration = Registration.objects.get(pk=own_registration.pk)
    assert registration.decision_stage == "late" and registration.expected_value == Decimal("5900.00")


def test_dealer_user_acts_only_on_own_registrations_admin_on_all(world, catalogue):
    by_admin = submit(world.own_admin, catalogue)
    url = reverse("deals:registration_withdraw", args=[by_admin.pk])
    response = client_for(world.own_user).post(url, follow=True)
    assert b"or a dealer admin" in response.content
    assert Registration.objects.get(pk=by_admin.pk).status == "submitted"
    by_user = submit(world.own_user, catalogue, name="Other customer")
    client_for(world.own_admin).post(reverse("deals:registration_withdraw", args=[by_user.pk]))
    assert Registration.objects.get(pk=by_user.pk).status == "withdrawn"


def test_tampered_ids_never_500(world, own_registration):
    client = client_for(world.pm_a)
    url = reverse("deals:conflict_action", args=[own_registration.pk, "dismiss"])
    assert client.post(url, {"conflict": "abc"}).status_code == 404
    assert client.post(url, {"conflict": "9" * 30}).status_code == 404
    response = client.post(reverse("deals:review_bulk_approve"), {"registration": ["9" * 30]}, follow=True)
    assert response.status_code == 200


def test_huge_quantities_are_refused_with_a_message(world, catalogue):
    data = form_data(catalogue, **{"lines-0-quantity": "1000000", "lines-1-value": "999999999999.99"})
    response = client_for(world.own_user).post(reverse("deals:registration_create"), data, follow=True)
    assert response.status_code == 200
    assert not Registration.objects.exists()


def test_queue_lists_extensions_waiting(world, own_registration):
    services.registration_approve(registration=own_registration, actor=world.pm_a)
    services.extension_request(registration=own_registration, actor=world.own_user, reason="Tender delayed")
    page = client_for(world.pm_a).get(reverse("deals:review_queue")).content.decode()
    assert "Extensions waiting (1)" in page and own_registration.reference in page
    assert "Extensions waiting" not in client_for(world.pm_b).get(reverse("deals:review_queue")).content.decode()
