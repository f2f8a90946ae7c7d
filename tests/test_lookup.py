"""The protection lookup: who may use it, what it finds and says, that it is logged, and that its
query count does not grow with the number of results. Also the direct sales role around it."""

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils.formats import date_format

from dealers.models import Organisation, StaffRole
from deals import lookup, services
from deals.conflicts import customer_keys
from deals.models import Customer, NamedAccount, ProtectionLookup, Registration
from tests import factories
from tests.conftest import client_for, with_totp
from tests.deal_factories import approved, customer_data, make_registration, submit

Status = Registration.Status
URL = reverse("deals:protection_lookup")


def direct_sales(**kwargs):
    return with_totp(factories.direct_sales(**kwargs))


@pytest.fixture
def direct(world):
    return direct_sales(email="direct.rep@vendor.example")


def look_up(user, query):
    return client_for(user).get(URL, {"q": query})


def customer(organisation, **fields) -> Customer:
    """A customer record with its matching keys, as the services would keep them."""
    values = {"name": "Bakkerij Jansen B.V.", "city": "Utrecht", "postcode": "3511 AB", "country": "NL"}
    values.update(fields)
    record = Customer(organisation=organisation, **values)
    for name, value in customer_keys(record).items():
        setattr(record, name, value)
    record.save()
    return record


# --- who may look up ----------------------------------------------------------------------------


def test_anonymous_is_sent_to_log_in(client):
    response = client.get(URL, {"q": "jansen"})
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_dealers_get_404_and_nothing_is_logged(world):
    approved(world, customer=customer_data(name="Bakkerij Jansen B.V."))
    for user in (world.own_admin, world.own_user, world.other_admin):
        assert look_up(user, "bakkerij jansen").status_code == 404
    assert not ProtectionLookup.objects.exists()
    assert lookup.protection_lookup(query="bakkerij jansen", user=world.own_admin) == []


@pytest.mark.parametrize("persona", ["pm_a", "pm_b", "rd_north", "rd_south", "channel_admin", "direct"])
def test_every_vendor_staff_role_sees_who_protects_the_customer(world, direct, persona):
    registration = approved(world, customer=customer_data(name="Bakkerij Jansen B.V."))
    user = direct if persona == "direct" else getattr(world, persona)
    response = look_up(user, "bakkerij jansen bv")
    assert response.status_code == 200
    until = date_format(registration.protected_until, "j F Y")
    assert f"Protected for Own Dealer B.V. until {until}" in response.content.decode()


# --- what it finds ------------------------------------------------------------------------------


def test_name_variant_finds_the_customer(world, direct):
    approved(world, customer=customer_data(name="Bakkerij Jansen B.V."))
    results = lookup.protection_lookup(query="bakkerij jansen bv", user=direct)
    assert [r.name for r in results] == ["Bakkerij Jansen B.V."]
    assert results[0].exact and results[0].is_protected
    # part of the name finds it too, after the exact hits
    assert [r.name for r in lookup.protection_lookup(query="JANSEN", user=direct)] == ["Bakkerij Jansen B.V."]


def test_vat_number_in_another_spelling(world, direct):
    submit(world, customer=customer_data(name="Van Dijk Bouw B.V.", vat_number="NL 8512.34.567.B01"))
    for query in ("nl851234567b01", "NL-851234567-B01", "851234567B01"):
        results = lookup.protection_lookup(query=query, user=direct)
        assert [r.name for r in results] == ["Van Dijk Bouw B.V."], query
        assert results[0].matched_on == {"the VAT number"}
        assert results[0].answer == "Registration under review by Own Dealer B.V."


def test_belgian_vat_finds_the_enterprise_number(world, direct):
    submit(world, customer=customer_data(name="Brouwerij Smet", country="BE", company_number="0123.456.789"))
    assert [r.name for r in lookup.protection_lookup(query="BE 0123 456 789", user=direct)] == ["Brouwerij Smet"]


def test_domain_from_an_email_address_or_a_url(world, direct):
    submit(world, customer=customer_data(name="Jansen Bakkers", website="https://www.jansen-bakkerij.nl/contact"))
    for query in ("inkoop@jansen-bakkerij.nl", "http://jansen-bakkerij.nl", "JANSEN-BAKKERIJ.NL"):
        results = lookup.protection_lookup(query=query, user=direct)
        assert [r.name for r in results] == ["Jansen Bakkers"], query
        assert results[0].matched_on == {"the website domain"}


def test_generic_email_domain_is_not_searched(world, direct):
    submit(world, customer=customer_data(name="Gmail Gebruiker", website="gmail.com"))
    response = look_up(direct, "jan@gmail.com")
    assert "generic e-mail address" in response.content.decode()
    assert response.context["results"] == []


def test_records_of_one_customer_at_two_dealers_are_one_result(world, direct):
    first = approved(world, customer=customer_data(name="Bakkerij Jansen B.V.", vat_number="NL851234567B01"))
    second = submit(world.other_admin, customer=customer_data(name="Jansen Bakkerij", vat_number="NL851234567B01"))
    [result] = lookup.protection_lookup(query="NL851234567B01", user=direct)
    assert result.registrations == [first, second]
    assert result.answers()[:2] == [
        f"Protected for Own Dealer B.V. until {date_format(first.protected_until, 'j F Y')}",
        "Registration under review by Other Dealer B.V.",
    ]
    assert result.other_names == ["Jansen Bakkerij"]


def test_page_shows_dealer_status_dates_and_the_answer(world, direct):
    registration = approved(world, customer=customer_data(name="Bakkerij Jansen B.V."))
    html = look_up(direct, "Bakkerij Jansen").content.decode()
    assert "Own Dealer B.V." in html
    assert registration.get_status_display() in html
    assert registration.protected_until.strftime("%-d %b %Y") in html
    assert registration.expected_close_date.strftime("%-d %b %Y") in html
    assert "1 result for" in html


@pytest.mark.skipif(connection.vendor != "postgresql", reason="fuzzy names through the trigram index")
def test_typo_in_the_name_is_found_on_postgresql(world, direct):
    approved(world, customer=customer_data(name="Bakkerij Jansen en Zonen B.V."))
    assert [r.name for r in lookup.protection_lookup(query="bakkerij jansne & zonen", user=direct)] == [
        "Bakkerij Jansen en Zonen B.V."
    ]
    assert lookup.protection_lookup(query="slagerij jansen & zonen", user=direct) == []


# --- exact hits everywhere, similar names among open registrations (the scale decision) -------------


def test_exact_name_finds_a_customer_without_an_active_registration(world, direct):
    make_registration(world.other, world.other_admin, Status.EXPIRED, customer=customer(world.other))
    customer(world.own, name="Slagerij Pietersen")  # never registered at all
    for query, name in (("Bakkerij Jansen", "Bakkerij Jansen B.V."), ("slagerij pietersen bv", "Slagerij Pietersen")):
        [result] = lookup.protection_lookup(query=query, user=direct)
        assert (result.name, result.exact, result.matched_on) == (name, True, {"the name"})
        assert result.answers() == ["Not protected: no active registration"]


def test_similar_name_finds_an_active_registration(world, direct):
    registration = approved(world, customer=customer_data(name="Bakkerij Jansen en Zonen B.V."))
    [result] = lookup.protection_lookup(query="Bakkerij Jansne & Zonen", user=direct)
    assert result.registrations == [registration] and result.is_protected
    assert result.matched_on == {"a similar name"}
    # a part of the name of an open registration still finds it
    [part] = lookup.protection_lookup(query="jansen en zonen", user=direct)
    assert part.registrations == [registration] and part.matched_on == {"part of the name"}
    # and a different business with a similar name is still told apart by deals.matching
    assert lookup.protection_lookup(query="Slagerij Jansen & Zonen", user=direct) == []


@pytest.mark.parametrize("status", [None, Status.WON, Status.EXPIRED])
def test_similar_name_of_a_customer_without_an_open_registration_is_not_listed(world, direct, status):
    record = customer(world.other, name="Bakkerij Jansen en Zonen B.V.")
    if status:
        make_registration(world.other, world.other_admin, status, customer=record)
    for query in ("Bakkerij Jansne & Zonen", "jansen en zonen"):  # a typo, a part of the name
        assert lookup.protection_lookup(query=query, user=direct) == [], query
        response = look_up(direct, query)
        assert response.context["results"] == []
        assert lookup.SCOPE_NOTE in response.content.decode()  # the page says why
    # the whole name still finds it, and the page says the same beside the result
    response = look_up(direct, "Bakkerij Jansen en Zonen")
    [result] = response.context["results"]
    assert result.answers() == ["Not protected: no active registration"]
    assert lookup.SCOPE_NOTE in response.content.decode()


def test_the_note_on_similar_names_is_shown_when_a_name_was_searched(world, direct):
    submit(world, customer=customer_data(name="Van Dijk Bouw B.V.", website="vandijkbouw.nl"))
    assert lookup.SCOPE_NOTE in look_up(direct, "van dijk").content.decode()
    assert lookup.SCOPE_NOTE not in look_up(direct, "info@vandijkbouw.nl").content.decode()  # no name in it


# --- named accounts -----------------------------------------------------------------------------


def test_named_accounts_show_for_whom_they_are_reserved(world, direct):
    NamedAccount.objects.create(name="Hotel de Bilt B.V.", city="De Bilt", country="NL")
    NamedAccount.objects.create(name="Hotel de Bilt Congres", country="NL", reserved_for=world.other)
    NamedAccount.objects.create(name="Hotel de Bilt Oud", country="NL", active=False)
    results = lookup.protection_lookup(query="hotel de bilt", user=direct)
    assert [(r.name, r.answer) for r in results] == [
        ("Hotel de Bilt B.V.", "Named account: reserved for the direct team"),
        ("Hotel de Bilt Congres", "Named account: reserved for Other Dealer B.V."),
    ]
    html = look_up(direct, "hotel de bilt").content.decode()
    assert "Named account: reserved for the direct team" in html
    assert "Hotel de Bilt Oud" not in html


def test_named_account_joins_the_customer_it_is(world, direct):
    NamedAccount.objects.create(name="Bakkerij Jansen", country="NL", vat_number="NL851234567B01")
    submit(world, customer=customer_data(name="Bakkerij Jansen B.V."))
    [result] = lookup.protection_lookup(query="bakkerij jansen", user=direct)
    assert result.answers() == [
        "Registration under review by Own Dealer B.V.",
        "Named account: reserved for the direct team",
    ]
    # found by the named account's VAT number alone: still the same answer about the account
    [by_vat] = lookup.protection_lookup(query="NL851234567B01", user=direct)
    assert by_vat.answers() == ["Named account: reserved for the direct team", "No active registration"]


# --- closed registrations protect nothing -------------------------------------------------------


@pytest.mark.parametrize("status", [Status.WITHDRAWN, Status.REJECTED, Status.WON, Status.LOST, Status.EXPIRED])
def test_closed_registrations_are_not_shown_as_protection(world, direct, status):
    make_registration(world.other, world.other_admin, status, customer=customer(world.other))
    response = look_up(direct, "bakkerij jansen")
    [result] = response.context["results"]
    assert result.registrations == []
    assert result.answers() == ["Not protected: no active registration"]
    html = response.content.decode()
    assert "Not protected: no active registration" in html
    assert "Other Dealer B.V." not in html and "Protected for" not in html


def test_only_the_active_registration_of_a_customer_is_shown(world, direct):
    record = customer(world.other)
    make_registration(world.other, world.other_admin, Status.WON, customer=record)
    make_registration(world.other, world.other_admin, Status.WITHDRAWN, customer=record)
    active = make_registration(world.other, world.other_admin, Status.INFO_REQUESTED, customer=record)
    [result] = lookup.protection_lookup(query="bakkerij jansen", user=direct)
    assert result.registrations == [active]
    assert result.answer == "Registration under review by Other Dealer B.V. (more information requested)"


# --- the log and the empty state ----------------------------------------------------------------


def test_each_lookup_is_logged(world, direct):
    approved(world, customer=customer_data(name="Bakkerij Jansen B.V."))
    look_up(direct, "  bakkerij   jansen ")
    look_up(world.pm_a, "nobody at all")
    assert list(ProtectionLookup.objects.order_by("pk").values_list("user", "query", "result_count")) == [
        (direct.pk, "bakkerij jansen", 1),
        (world.pm_a.pk, "nobody at all", 0),
    ]


def test_no_query_no_log_and_an_empty_state(world, direct):
    client = client_for(direct)
    response = client.get(URL)
    assert response.status_code == 200 and response.context["results"] is None
    assert client.get(URL, {"q": "x"}).context["results"] is None  # too short: the form says so
    assert not ProtectionLookup.objects.exists()
    html = client.get(URL, {"q": "Nergens Bekend B.V."}).content.decode()
    assert "Nothing matches" in html and "not protected" in html
    assert ProtectionLookup.objects.get().result_count == 0


def test_results_are_capped(world, direct, monkeypatch):
    monkeypatch.setattr(lookup, "RESULT_LIMIT", 3)
    for n in range(5):  # found by a part of the name: among open registrations
        make_registration(
            world.own, world.own_admin, Status.SUBMITTED, customer=customer(world.own, name=f"Jansen Winkel {n}")
        )
    response = look_up(direct, "jansen winkel")
    assert len(response.context["results"]) == 3 and response.context["total"] == 5
    assert "Showing the first 3 of 5 results" in response.content.decode()
    assert ProtectionLookup.objects.get().result_count == 5


def test_query_count_does_not_grow_with_the_results(world, direct):
    def queries_for(query):
        client = client_for(direct)
        client.get(URL, {"q": query})  # warm up the session and the user
        with CaptureQueriesContext(connection) as captured:
            response = client.get(URL, {"q": query})
        return len(captured), len(response.context["results"])

    for n in range(20):
        organisation = world.own if n % 2 else world.other
        user = world.own_admin if n % 2 else world.other_admin
        record = customer(organisation, name=f"Jansen Installaties {n:02d}", city=f"Stad {n}")
        make_registration(organisation, user, Status.APPROVED, customer=record)
        make_registration(organisation, user, Status.SUBMITTED, customer=record)
        NamedAccount.objects.create(name=f"Jansen Installaties {n:02d}", reserved_for=world.other if n % 3 else None)
    make_registration(world.own, world.own_admin, Status.APPROVED, customer=customer(world.own, name="Pietersen"))

    one_count, one = queries_for("pietersen")
    many_count, many = queries_for("jansen installaties")
    assert (one, many) == (1, 20)
    assert many_count == one_count, (one_count, many_count)
    assert many_count <= 12


# --- the direct sales role ----------------------------------------------------------------------


def test_direct_sales_role_exists_with_named_account_view_only(db):
    group = Group.objects.get(name=StaffRole.DIRECT_SALES)
    assert set(group.permissions.values_list("content_type__app_label", "codename")) == {("deals", "view_namedaccount")}


def test_direct_sales_sees_no_dealers_and_no_queue_but_pages_work(world, direct):
    approved(world, customer=customer_data(name="Bakkerij Jansen B.V."))
    assert direct.is_direct_sales and direct.is_vendor_staff
    assert not (direct.is_partner_manager or direct.is_regional_director or direct.is_channel_admin)
    assert not Organisation.objects.visible_to(direct).exists()
    assert not Registration.objects.visible_to(direct).exists()
    assert not Registration.objects.review_queue_for(direct).exists()
    client = client_for(direct)
    for name in ("dealers:dealer_list", "deals:review_queue", "deals:registration_list"):
        response = client.get(reverse(name))
        assert response.status_code == 200, name
        assert "Own Dealer B.V." not in response.content.decode(), name
    assert client.get(reverse("dealers:dealer_detail", args=[world.own.pk])).status_code == 404


def test_direct_sales_home_leads_with_the_lookup(world, direct):
    html = client_for(direct).get(reverse("home")).content.decode()
    assert "direct sales" in html and f'action="{URL}"' in html
    assert "Review queue →" not in html and "Dealer list →" not in html
    # other roles keep their home and gain the lookup
    html = client_for(world.pm_a).get(reverse("home")).content.decode()
    assert "Review queue →" in html and "Dealer list →" in html and f'action="{URL}"' in html


def test_direct_sales_cannot_register(world, direct):
    with pytest.raises(services.NotAllowed):
        submit(direct)


def test_nav_links_to_the_lookup_for_staff_only(world, direct):
    assert f'href="{URL}"' in client_for(direct).get(reverse("home")).content.decode()
    assert f'href="{URL}"' not in client_for(world.own_admin).get(reverse("home")).content.decode()


# --- admin --------------------------------------------------------------------------------------


def test_admin_named_accounts_and_lookup_log(world, direct):
    NamedAccount.objects.create(name="Hotel de Bilt B.V.", country="NL")
    look_up(direct, "hotel de bilt")
    look_up(world.pm_a, "bakkerij")
    admin = client_for(world.channel_admin)
    assert "Hotel de Bilt B.V." in admin.get(reverse("admin:deals_namedaccount_changelist")).content.decode()
    assert admin.get(reverse("admin:deals_namedaccount_add")).status_code == 200
    log = admin.get(reverse("admin:deals_protectionlookup_changelist"))
    assert log.status_code == 200
    assert list(log.context["cl"].queryset.values_list("query", flat=True)) == ["bakkerij", "hotel de bilt"]
    entry = ProtectionLookup.objects.first()
    assert admin.get(reverse("admin:deals_protectionlookup_add")).status_code == 403
    assert admin.post(reverse("admin:deals_protectionlookup_delete", args=[entry.pk])).status_code == 403
    # the direct team reads the named accounts, and nothing of the log
    rep = client_for(direct)
    assert rep.get(reverse("admin:deals_namedaccount_changelist")).status_code == 200
    assert rep.get(reverse("admin:deals_namedaccount_add")).status_code == 403
    assert rep.get(reverse("admin:deals_protectionlookup_changelist")).status_code == 403
