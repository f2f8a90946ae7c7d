"""Submitting a registration at scale (issue 8): one submission's queries do not grow with its lines
or with the dealers it conflicts with, and it still writes exactly what it wrote before — the
registration, its lines, its history, the dealer's and the reviewer's emails."""

import difflib
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django import forms
from django.core import mail
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from deals import services
from deals.forms import LineForm, LineFormSet, ProductCatalogue, ProductChoiceField
from deals.models import Conflict, Customer, Product, ProgrammeSettings, Registration, RegistrationEvent
from prm import outbox
from prm.models import OutboxEmail
from tests import factories
from tests.conftest import client_for
from tests.deal_factories import CustomerFactory, ProductFactory, ProductLineFactory, customer_data, submit


@pytest.fixture
def products(db):
    """Five products on two lines (one direct-only), and one that is no longer sold."""
    pumps = ProductLineFactory(name="Heat pumps")
    industrial = ProductLineFactory(name="Industrial", direct_only=True)
    sold = [ProductFactory(line=pumps, list_price=Decimal("1000.00") + i) for i in range(4)]
    sold.append(ProductFactory(line=industrial, name="PLC", list_price=Decimal("12800.00")))
    return {"sold": sold, "retired": ProductFactory(line=pumps, name="Old pump", active=False)}


def form_data(lines, *, name="Bakkerij Jansen B.V.", **overrides):
    """The registration form as the browser posts it, with one line per (product, quantity)."""
    data = {
        "customer-existing": "",
        "customer-name": name,
        "customer-city": "Utrecht",
        "customer-postcode": "3511 AB",
        "customer-country": "NL",
        "customer-website": "",
        "customer-vat_number": "",
        "customer-company_number": "",
        "deal-contact_name": "Marleen Jansen",
        "deal-contact_email": "marleen@jansen.example",
        "deal-contact_phone": "",
        "deal-expected_close_date": (timezone.localdate() + timedelta(days=45)).isoformat(),
        "deal-decision_stage": "mid",
        "deal-competitors": "",
        "deal-next_steps": "",
        "lines-TOTAL_FORMS": str(len(lines)),
        "lines-INITIAL_FORMS": "0",
        "lines-MIN_NUM_FORMS": "1",
        "lines-MAX_NUM_FORMS": "50",
    }
    for i, (product, quantity) in enumerate(lines):
        data[f"lines-{i}-product"] = str(product.pk) if hasattr(product, "pk") else product
        data[f"lines-{i}-quantity"] = str(quantity)
        data[f"lines-{i}-value"] = ""
    data.update(overrides)
    return data


def post_counted(client, data):
    with CaptureQueriesContext(connection) as captured:
        response = client.post(reverse("deals:registration_create"), data)
    return response, [q["sql"] for q in captured.captured_queries]


def _diff(fewer: list[str], more: list[str]) -> str:
    return "\n".join(difflib.unified_diff([s[:150] for s in fewer], [s[:150] for s in more], lineterm=""))


def warmed_up(user, product):
    """A client whose first submission (the year's reference counter row, the programme settings
    row, the session) is behind it, so that the next ones are counted alike."""
    client = client_for(user)
    response = client.post(reverse("deals:registration_create"), form_data([(product, 1)], name="Eerste Klant BV"))
    assert response.status_code == 302
    return client


# --- the query count --------------------------------------------------------------------------------


def test_a_submissions_queries_do_not_grow_with_its_lines(world, products):
    sold = products["sold"][:4]  # not the direct-only one: that line adds a flag (a row, an INSERT)
    client = warmed_up(world.own_user, sold[0])
    one, one_sql = post_counted(client, form_data([(sold[0], 2)], name="Garage Pietersen"))
    five, five_sql = post_counted(
        client, form_data([(p, i + 1) for i, p in enumerate(sold)] + [(sold[0], 7)], name="Slagerij de Boer")
    )  # four products, one of them twice
    assert one.status_code == five.status_code == 302
    assert len(five_sql) == len(one_sql), _diff(one_sql, five_sql)
    # the posted products are read once, and only those (not the whole catalogue)
    product_reads = [sql for sql in five_sql if re.search(r'FROM "deals_product"', sql)]
    assert len(product_reads) == 1 and " IN (" in product_reads[0]
    registration = Registration.objects.get(customer__name="Slagerij de Boer")
    assert [(line.product, line.quantity, line.value) for line in registration.lines.order_by("pk")] == [
        (p, i + 1, p.list_price * (i + 1)) for i, p in enumerate(sold)
    ] + [(sold[0], 7, sold[0].list_price * 7)]
    assert registration.expected_value == sum(line.value for line in registration.lines.all())


def test_a_submissions_queries_do_not_grow_with_the_dealers_it_conflicts_with(world, products):
    pump = products["sold"][0]
    others = [factories.dealer_admin(factories.OrganisationFactory(region=world.south)) for _ in range(3)]
    for admin in others:  # three other dealers registered Bakkerij Jansen, one of them Garage Pietersen too
        submit(admin, customer=customer_data(name="Bakkerij Jansen B.V."), lines=[services.LineData(pump, 1)])
    submit(others[0], customer=customer_data(name="Garage Pietersen"), lines=[services.LineData(pump, 1)])
    client = warmed_up(world.own_user, products["sold"][1])
    mail.outbox.clear()

    one, one_sql = post_counted(client, form_data([(pump, 2)], name="Garage Pietersen"))
    three, three_sql = post_counted(client, form_data([(pump, 2)], name="Bakkerij Jansen"))

    assert one.status_code == three.status_code == 302
    mine = Registration.objects.filter(organisation=world.own)
    assert Conflict.objects.filter(registration=mine.get(customer__name="Garage Pietersen")).count() == 1
    jansen = mine.get(customer__name="Bakkerij Jansen")
    assert Conflict.objects.filter(registration=jansen).count() == 3
    assert len(three_sql) == len(one_sql), _diff(one_sql, three_sql)
    # the reviewer's email still names every other dealer and registration
    to_review = OutboxEmail.objects.get(topic=jansen.reference, to=world.pm_a.email)
    for conflict in Conflict.objects.filter(registration=jansen).select_related("other__organisation"):
        assert f"{conflict.other.reference} ({conflict.other.organisation.name})" in to_review.body


# --- what a submission writes -----------------------------------------------------------------------


def test_a_submission_queues_the_dealers_and_the_reviewers_email_in_one_insert(
    world, products, django_capture_on_commit_callbacks
):
    client = warmed_up(world.own_user, products["sold"][0])
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response, sql = post_counted(client, form_data([(products["sold"][0], 2)]))
    assert response.status_code == 302
    registration = Registration.objects.get(customer__name="Bakkerij Jansen B.V.")
    emails = list(OutboxEmail.objects.filter(topic=registration.reference).order_by("pk"))
    assert [e.to for e in emails] == [world.own_user.email, world.pm_a.email]  # the dealer's first
    assert emails[0].subject.startswith(registration.reference) or registration.reference in emails[0].subject
    assert emails[1].subject == f"To review: {registration.reference} from {world.own.name}"
    assert "Hello" in emails[1].body and registration.reference in emails[1].body
    # each kicked after commit on its own, and sent
    assert len(callbacks) == 2
    assert all(e.sent_at is not None for e in OutboxEmail.objects.filter(topic=registration.reference))
    assert sorted(m.to[0] for m in mail.outbox) == sorted([world.own_user.email, world.pm_a.email])
    inserts = [s for s in sql if s.startswith('INSERT INTO "prm_outboxemail"')]
    assert len(inserts) == (1 if connection.features.can_return_rows_from_bulk_insert else 2)
    # the rest of the submission as before: one history row, the registration, its line
    assert list(RegistrationEvent.objects.filter(registration=registration).values_list("action", "to_status")) == [
        ("submit", "submitted")
    ]
    assert registration.lines.count() == 1 and registration.status == "submitted"


def test_a_dealer_without_a_partner_manager_has_its_regional_director_emailed(world, products):
    client = client_for(factories.dealer_user(world.orphan))
    response = client.post(reverse("deals:registration_create"), form_data([(products["sold"][0], 1)]))
    assert response.status_code == 302
    registration = Registration.objects.get(organisation=world.orphan)
    assert list(OutboxEmail.objects.filter(topic=registration.reference).order_by("pk").values_list("to", flat=True))[
        1:
    ] == [world.rd_north.email]


def test_outbox_enqueue_each_writes_what_outbox_enqueue_writes(world, monkeypatch, django_capture_on_commit_callbacks):
    kicked = []
    monkeypatch.setattr(outbox, "_kick", kicked.append)
    registration = submit(world)
    context = {"registration": registration, "url": "https://portal.example/r/1", "needs_review": False}
    messages = [
        ("a@dealer.example", "registration_submitted", context, "T-1"),
        ("b@dealer.example", "registration_submitted", {**context, "needs_review": True}, "T-1"),
    ]
    with django_capture_on_commit_callbacks(execute=True):
        one_by_one = [outbox.outbox_enqueue(to=to, template=t, context=c, topic=topic) for to, t, c, topic in messages]
    with django_capture_on_commit_callbacks(execute=True):
        together = outbox.outbox_enqueue_each(messages)
        assert outbox.outbox_enqueue_each([]) == []

    def fields(email):
        return (email.to, email.subject, email.body, email.topic, email.sent_at, email.attempts)

    assert [fields(e) for e in together] == [fields(e) for e in one_by_one]
    assert all(e.pk for e in together) and together[0].pk < together[1].pk
    assert kicked == [e.pk for e in one_by_one + together]  # one task per email, in order
    assert OutboxEmail.objects.count() == 4 + 2  # and the submission's own two


def test_a_new_customer_updates_no_registrations_and_a_renamed_one_still_does(world):
    customer = CustomerFactory(organisation=world.own, name="Bakkerij Jansen B.V.")
    new = Customer(organisation=world.own, name="Garage Pietersen", city="Utrecht", postcode="3511 AB", country="NL")
    with CaptureQueriesContext(connection) as captured:
        new.save()
    assert not [q for q in captured.captured_queries if 'UPDATE "deals_registration"' in q["sql"]]
    registration = submit(world, existing_customer=customer)
    customer.name_key = "slagerij jansen"
    customer.save()
    registration.refresh_from_db()
    assert registration.customer_name_key == "slagerij jansen"


# --- the product on a line: the same answers as ModelChoiceField ------------------------------------


def _outcome(field, value):
    try:
        return ("valid", field.clean(value))
    except ValidationError as error:
        return ("invalid", error.code, error.messages)


@pytest.mark.parametrize("posted_first", [True, False], ids=["posted", "not-posted"])
def test_the_product_field_accepts_and_refuses_exactly_what_modelchoicefield_does(products, posted_first):
    product, retired, plc = products["sold"][0], products["retired"], products["sold"][-1]
    reference = forms.ModelChoiceField(queryset=Product.objects.registrable().select_related("line"), required=False)
    values = [
        "",
        None,
        str(product.pk),
        f" {product.pk} ",
        f"0{product.pk}",
        f"+{product.pk}",
        str(plc.pk),
        str(retired.pk),
        "999999",
        "-1",
        "abc",
        "1.5",
        "1e3",
        "\x00",
        product.pk,
        product,
        retired,
    ]
    for value in values:
        field = ProductChoiceField(queryset=Product.objects.none(), required=False)
        # as in a formset (the value among those posted) or not (looked up among all products)
        field.catalogue = ProductCatalogue([value] if posted_first and isinstance(value, str) else [])
        assert _outcome(field, value) == _outcome(reference, value), repr(value)
    # beyond a 64-bit pk: refused, as PostgreSQL's lookup refuses it (SQLite's raised OverflowError, a 500)
    field = ProductChoiceField(queryset=Product.objects.none(), required=False)
    field.catalogue = ProductCatalogue(["99999999999999999999999"] if posted_first else [])
    assert _outcome(field, "99999999999999999999999")[:2] == ("invalid", "invalid_choice")


def test_a_line_form_on_its_own_and_in_a_formset_finds_the_same_products(products):
    product, retired = products["sold"][2], products["retired"]
    alone = LineForm({"product": str(product.pk), "quantity": "3"})
    assert alone.is_valid() and alone.cleaned_data["product"] == product
    refused = LineForm({"product": str(retired.pk), "quantity": "3"})
    assert not refused.is_valid() and "Select a valid choice" in str(refused.errors["product"])
    formset = LineFormSet(
        form_data([(product, 3), (retired, 1), ("x", 1)]) | {"lines-3-product": "", "lines-3-quantity": ""},
        prefix="lines",
    )
    formset.data = formset.data.copy()
    assert not formset.is_valid()
    assert formset.forms[0].cleaned_data["product"] == product
    assert "Select a valid choice" in str(formset.forms[1].errors["product"])
    assert "Select a valid choice" in str(formset.forms[2].errors["product"])


def test_the_form_page_reads_the_products_once_whatever_its_lines(world, products):
    """Shown again (here: "add a line" without JavaScript), every line lists every product with its
    list price, from one read of the catalogue."""
    client = client_for(world.own_user)
    counts = []
    for lines in (1, 4):
        data = form_data([(products["sold"][0], 1)] * lines, add_line="1")
        response, sql = post_counted(client, data)
        assert response.status_code == 200
        page = response.content.decode()
        assert page.count(f'data-price="{products["sold"][0].list_price}"') == lines + 2  # +1 added, +1 template
        assert "PLC (" in page and "direct sales only, needs review" in page
        assert f'<option value="{products["retired"].pk}"' not in page
        assert f'<option value="{products["sold"][1].pk}" data-price="{products["sold"][1].list_price}"' in page
        assert len([s for s in sql if 'FROM "deals_product"' in s]) == 1
        counts.append(len(sql))
    assert counts[0] == counts[1]


def test_a_retired_product_posted_is_refused_as_before(world, products):
    client = client_for(world.own_user)
    response = client.post(reverse("deals:registration_create"), form_data([(products["retired"], 1)]))
    assert response.status_code == 200 and b"Select a valid choice" in response.content
    assert not Registration.objects.exists()


# --- the cap: tier_for's tier, read as its cap alone ------------------------------------------------


def test_the_open_registration_cap_is_that_of_the_tier_that_applies(world):
    from tiers.models import DealerStanding, Tier
    from tiers.selectors import tier_for

    today = timezone.localdate()
    caps = dict(zip(Tier.objects.order_by("rank").values_list("name", flat=True), (100, 50, 25), strict=False))
    for name, cap in caps.items():
        Tier.objects.filter(name=name).update(open_registration_cap=cap)
    gold, bronze = Tier.objects.order_by("rank")[0], Tier.objects.order_by("-rank")[0]

    def agree():
        cap = services.open_registration_cap(world.own)
        assert cap == tier_for(world.own).open_registration_cap
        return cap

    assert agree() == bronze.open_registration_cap  # never evaluated: the lowest tier
    standing = DealerStanding.objects.create(organisation=world.own, tier=gold, since=today)
    assert agree() == gold.open_registration_cap
    standing.override_tier, standing.override_until = bronze, today  # an override running until today
    standing.save()
    assert agree() == bronze.open_registration_cap
    standing.override_until = today - timedelta(days=1)  # ended yesterday: the tier it holds again
    standing.save()
    assert agree() == gold.open_registration_cap
    DealerStanding.objects.all().delete()
    Tier.objects.all().delete()  # no tier at all: the programme's default
    programme = ProgrammeSettings.load()
    programme.default_open_registration_cap = 7
    programme.save()
    assert services.open_registration_cap(world.own) == 7
