"""The vendor's sales imported from its ERP (tiers/imports.py): admin, command, linking."""

import csv
import io
from datetime import datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from tablib import Dataset

from dealers.models import Organisation
from deals import services
from deals.models import ProductLine, Registration
from tests import factories
from tests.conftest import client_for
from tests.deal_factories import (
    CustomerFactory,
    ProductFactory,
    ProductLineFactory,
    approved,
    customer_data,
    make_registration,
)
from tiers.imports import COLUMNS, SaleImportResource, SalesCSV, link_registration
from tiers.models import Sale

IMPORT_URL = reverse("admin:tiers_sale_import")
PROCESS_URL = reverse("admin:tiers_sale_process_import")
CHANGELIST_URL = reverse("admin:tiers_sale_changelist")
EXAMPLE_FILE = Path(__file__).resolve().parents[1] / "docs" / "sales-import-example.csv"

really_commits = pytest.mark.django_db(transaction=True)

Status = Registration.Status
TODAY = timezone.localdate()
DAY = timedelta(days=1)


def aware(day, hour=10):
    return timezone.make_aware(datetime.combine(day, time(hour)))


@pytest.fixture
def sales(world):
    """world + VAT numbers on the own and other dealer, a distributor and three product lines."""
    Organisation.objects.filter(pk=world.own.pk).update(vat_number="NL 8234.56789.B01")
    Organisation.objects.filter(pk=world.other.pk).update(vat_number="NL834567890B01")
    world.distributor = factories.OrganisationFactory(
        name="Holland Technische Groothandel B.V.",
        kind=Organisation.Kind.DISTRIBUTOR,
        vat_number="NL812345678B01",
        region=world.north,
        partner_manager=world.pm_a,
    )
    world.pumps = ProductLineFactory(name="Warmtepompen", code="heat-pumps")
    world.climate = ProductLineFactory(name="Klimaatbeheersing", code="climate")
    world.solar = ProductLineFactory(name="Zonne-energie", code="solar")
    return world


def sale_row(**overrides) -> dict:
    row = {
        "erp_line_id": "ERP-1001",
        "date": f"{TODAY - 10 * DAY:%Y-%m-%d}",
        "reseller": "NL823456789B01",
        "distributor": "NL812345678B01",
        "customer_name": "Bakkerij De Korenschoof B.V.",
        "customer_city": "Utrecht",
        "customer_country": "NL",
        "customer_vat": "",
        "product_line": "heat-pumps",
        "amount": "12900.00",
        "registration_reference": "",
    }
    row.update(overrides)
    return row


GOOD_ROWS = [
    sale_row(),
    sale_row(erp_line_id="ERP-1002", reseller="Other Dealer B.V.", distributor="", product_line="Klimaatbeheersing"),
]


def csv_text(rows, columns=COLUMNS, delimiter=",") -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore", delimiter=delimiter)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def upload(client, rows, columns=COLUMNS):
    file = SimpleUploadedFile("sales.csv", csv_text(rows, columns).encode(), content_type="text/csv")
    return client.post(IMPORT_URL, {"format": "0", "import_file": file})


def confirm(client, preview):
    return client.post(PROCESS_URL, preview.context["confirm_form"].initial)


def message_texts(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def run(rows, user=None, *, columns=COLUMNS, dry_run=False, **kwargs):
    dataset = Dataset(headers=list(columns))
    for row in rows:
        dataset.append([row.get(column, "") for column in columns])
    if user is None:
        kwargs.setdefault("command", True)
    return SaleImportResource().import_data(dataset, dry_run=dry_run, user=user, **kwargs)


def row_errors(result) -> dict[int, dict[str, list[str]]]:
    return {row.number: row.error_dict for row in result.invalid_rows}


def is_clean(result) -> bool:
    return not result.has_errors() and not result.has_validation_errors()


# --- through the admin ---------------------------------------------------------------------------


@really_commits
def test_channel_admin_previews_then_confirms(sales):
    client = client_for(sales.channel_admin)

    preview = upload(client, GOOD_ROWS)

    assert preview.status_code == 200
    assert "confirm_form" in preview.context
    page = preview.content.decode()
    assert "Preview" in page and "Some rows failed" not in page
    assert "Own Dealer B.V." in page and "Warmtepompen" in page
    assert "Nothing is saved until you confirm. To import: 2 sales, 0 of them linked" in page
    assert not Sale.objects.exists()

    done = confirm(client, preview)

    assert done.status_code == 302
    assert done["Location"] == CHANGELIST_URL
    own_sale = Sale.objects.get(erp_line_id="ERP-1001")
    assert (own_sale.reseller, own_sale.distributor, own_sale.product_line, own_sale.amount, own_sale.sold_on) == (
        sales.own,
        sales.distributor,
        sales.pumps,
        Decimal("12900.00"),
        TODAY - 10 * DAY,
    )
    other_sale = Sale.objects.get(erp_line_id="ERP-1002")
    assert (other_sale.reseller, other_sale.distributor, other_sale.product_line) == (
        sales.other,
        None,
        sales.climate,
    )
    assert message_texts(done) == [
        "Imported: 2 sales, 0 of them linked to a registration (0 approved before the sale); "
        "0 already imported, skipped."
    ]


@really_commits
def test_one_bad_row_shows_its_error_and_imports_nothing(sales):
    client = client_for(sales.channel_admin)
    rows = [GOOD_ROWS[0], sale_row(erp_line_id="ERP-1003", reseller="NL999999999B01"), GOOD_ROWS[1]]

    preview = upload(client, rows)

    assert preview.status_code == 200
    assert "confirm_form" not in preview.context
    assert row_errors(preview.context["result"]) == {
        2: {"reseller": ["No dealer has the VAT number or name “NL999999999B01”."]}
    }
    page = preview.content.decode()
    assert "Some rows failed to validate" in page
    assert "No dealer has the VAT number or name “NL999999999B01”." in page
    assert not Sale.objects.exists()


@really_commits
def test_reimporting_the_same_file_adds_nothing(sales):
    client = client_for(sales.channel_admin)
    confirm(client, upload(client, GOOD_ROWS))
    assert Sale.objects.count() == 2

    preview = upload(client, GOOD_ROWS)

    assert "confirm_form" in preview.context  # not an error: the lines were simply imported before
    result = preview.context["result"]
    assert [row.import_type for row in result.valid_rows()] == ["skip", "skip"]
    assert "already imported: skipped" in preview.content.decode()
    assert "To import: 0 sales; 2 already imported, skipped." in preview.content.decode()

    done = confirm(client, preview)

    assert message_texts(done) == ["Imported: 0 sales; 2 already imported, skipped."]
    assert Sale.objects.count() == 2


@really_commits
def test_an_overlapping_file_imports_only_the_new_lines(sales):
    client = client_for(sales.channel_admin)
    confirm(client, upload(client, GOOD_ROWS))
    overlapping = [GOOD_ROWS[1], sale_row(erp_line_id="ERP-1003", amount="500")]

    done = confirm(client, upload(client, overlapping))

    assert message_texts(done) == [
        "Imported: 1 sale, 0 of them linked to a registration (0 approved before the sale); "
        "1 already imported, skipped."
    ]
    assert sorted(Sale.objects.values_list("erp_line_id", flat=True)) == ["ERP-1001", "ERP-1002", "ERP-1003"]


@really_commits
def test_confirming_a_file_that_went_bad_since_the_preview_imports_nothing(sales):
    client = client_for(sales.channel_admin)
    preview = upload(client, GOOD_ROWS)
    ProductLine.objects.filter(pk=sales.climate.pk).update(name="Klimaat", code="hvac")  # renamed meanwhile

    done = confirm(client, preview)

    assert done.status_code == 302
    assert done["Location"] == IMPORT_URL
    assert "Nothing was imported" in client.get(IMPORT_URL).content.decode()
    assert not Sale.objects.exists()


def test_a_line_imported_since_the_preview_is_skipped_on_confirmation(sales):
    client = client_for(sales.channel_admin)
    preview = upload(client, GOOD_ROWS)
    run([GOOD_ROWS[0]])  # the nightly command got there first

    done = confirm(client, preview)

    assert done["Location"] == CHANGELIST_URL
    assert Sale.objects.count() == 2


def test_a_partner_manager_cannot_import_and_sees_only_their_dealers_sales(sales):
    run(GOOD_ROWS)  # ERP-1001 for own (pm_a), ERP-1002 for other (pm_b)
    staff = client_for(sales.pm_a)

    assert staff.get(IMPORT_URL).status_code == 403
    assert upload(staff, [sale_row(erp_line_id="ERP-2000")]).status_code == 403
    assert (
        staff.post(PROCESS_URL, {"import_file_name": "x", "original_file_name": "x.csv", "format": "0"}).status_code
        == 403
    )
    page = staff.get(CHANGELIST_URL)
    assert page.status_code == 200
    assert [sale.erp_line_id for sale in page.context["cl"].result_list] == ["ERP-1001"]
    assert IMPORT_URL not in page.content.decode()
    other_sale = Sale.objects.get(erp_line_id="ERP-1002")
    assert staff.get(reverse("admin:tiers_sale_change", args=[other_sale.pk])).status_code == 302  # not found
    assert Sale.objects.count() == 2

    admin = client_for(sales.channel_admin)
    assert admin.get(IMPORT_URL).status_code == 200
    page = admin.get(CHANGELIST_URL)
    assert {sale.erp_line_id for sale in page.context["cl"].result_list} == {"ERP-1001", "ERP-1002"}
    assert IMPORT_URL in page.content.decode()


def test_the_sale_admin_filters_and_searches(sales):
    registration = make_registration(
        sales.own,
        sales.own_user,
        Status.APPROVED,
        reference="REG-2026-000777",
        products=[ProductFactory(line=sales.pumps)],
        decided_at=aware(TODAY - 20 * DAY),
    )
    run([sale_row(registration_reference="REG-2026-000777"), GOOD_ROWS[1]])
    admin = client_for(sales.channel_admin)

    def listed(**params):
        page = admin.get(CHANGELIST_URL, params)
        assert page.status_code == 200
        return {sale.erp_line_id for sale in page.context["cl"].result_list}

    assert listed(linked="yes") == {"ERP-1001"}
    assert listed(linked="no") == {"ERP-1002"}
    assert listed(reseller__region__id__exact=sales.south.pk) == {"ERP-1002"}
    assert listed(product_line__id__exact=sales.pumps.pk) == {"ERP-1001"}
    assert listed(q=registration.reference) == {"ERP-1001"}
    assert listed(q="Other Dealer") == {"ERP-1002"}


# --- the management command ----------------------------------------------------------------------


def test_the_command_imports_a_good_file(sales, tmp_path, capsys):
    file = tmp_path / "sales.csv"
    file.write_text(csv_text(GOOD_ROWS), encoding="utf-8")

    call_command("import_sales", str(file))

    assert Sale.objects.count() == 2
    assert capsys.readouterr().out.strip() == (
        "Imported: 2 sales, 0 of them linked to a registration (0 approved before the sale); "
        "0 already imported, skipped."
    )

    call_command("import_sales", str(file))  # the same drop again

    assert Sale.objects.count() == 2
    assert capsys.readouterr().out.strip() == "Imported: 0 sales; 2 already imported, skipped."


def test_the_command_refuses_a_bad_file_with_row_numbers_and_saves_nothing(sales, tmp_path, capsys):
    file = tmp_path / "sales.csv"
    rows = [GOOD_ROWS[0], sale_row(erp_line_id="ERP-1005", date="31-02-2026", amount="1.234,50"), GOOD_ROWS[1]]
    file.write_text(csv_text(rows), encoding="utf-8")

    with pytest.raises(CommandError) as refused:
        call_command("import_sales", str(file))

    assert refused.value.returncode == 1
    assert str(refused.value).startswith(f"Nothing was imported from {file}: 2 problems")
    assert capsys.readouterr().err.splitlines() == [
        "Row 2 (line 3), date: “31-02-2026” is not a date: use YYYY-MM-DD (or DD-MM-YYYY).",
        "Row 2 (line 3), amount: “1.234,50” is not an amount: write euros with a dot or a comma before at most "
        "two decimals, without thousands separators or currency sign (e.g. 12900.00 or -189,50).",
    ]
    assert not Sale.objects.exists()


def test_the_command_dry_run_saves_nothing(sales, tmp_path, capsys):
    file = tmp_path / "sales.csv"
    file.write_text(csv_text(GOOD_ROWS), encoding="utf-8")

    call_command("import_sales", str(file), "--dry-run")

    assert capsys.readouterr().out.startswith("Dry run, nothing saved. To import: 2 sales")
    assert not Sale.objects.exists()


def test_the_command_refuses_a_file_without_its_columns(sales, tmp_path, capsys):
    file = tmp_path / "sales.csv"
    file.write_text("id;when;who\n1;2026-01-01;x\n", encoding="utf-8")

    with pytest.raises(CommandError):
        call_command("import_sales", str(file))

    err = capsys.readouterr().err
    assert "The file has no column erp_line_id, date, reseller" in err
    assert "Unknown column id, when, who." in err
    assert not Sale.objects.exists()


def test_the_command_refuses_a_missing_file(db, tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        call_command("import_sales", str(tmp_path / "nothing.csv"))


# --- values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, column, message",
    [
        ({"erp_line_id": " "}, "erp_line_id", "erp_line_id is required."),
        ({"date": ""}, "date", "date is required."),
        ({"reseller": ""}, "reseller", "reseller is required."),
        ({"customer_name": ""}, "customer_name", "customer_name is required."),
        ({"customer_city": ""}, "customer_city", "customer_city is required."),
        ({"customer_country": ""}, "customer_country", "customer_country is required."),
        ({"product_line": ""}, "product_line", "product_line is required."),
        ({"amount": ""}, "amount", "amount is required."),
        ({"erp_line_id": "X" * 65}, "erp_line_id", "erp_line_id is longer than 64 characters."),
        ({"reseller": "Nobody B.V."}, "reseller", "No dealer has the VAT number or name “Nobody B.V.”."),
        (
            {"reseller": "NL812345678B01"},
            "reseller",
            "Holland Technische Groothandel B.V. is a distributor, not a reseller; it cannot be the reseller.",
        ),
        (
            {"distributor": "Other Dealer B.V."},
            "distributor",
            "Other Dealer B.V. is a reseller / dealer, not a distributor; it cannot be the distributor.",
        ),
        (
            {"product_line": "boilers"},
            "product_line",
            "Unknown product line “boilers”: use a product line's code (climate, heat-pumps, solar) or name.",
        ),
        ({"date": "2026/03/01"}, "date", "“2026/03/01” is not a date: use YYYY-MM-DD (or DD-MM-YYYY)."),
        ({"date": "2026-13-01"}, "date", "“2026-13-01” is not a date: use YYYY-MM-DD (or DD-MM-YYYY)."),
        ({"date": f"{TODAY + DAY:%Y-%m-%d}"}, "date", f"{TODAY + DAY:%Y-%m-%d} is in the future."),
        ({"amount": "12,345.00"}, "amount", None),
        ({"amount": "1.234"}, "amount", None),
        ({"amount": "€ 100"}, "amount", None),
        ({"amount": "ten"}, "amount", None),
        (
            {"customer_country": "Nederland"},
            "customer_country",
            "Unknown country “Nederland”: use a two-letter ISO code such as NL, BE or LU.",
        ),
    ],
)
def test_each_bad_value_gets_a_clear_message(sales, overrides, column, message):
    result = run([sale_row(**overrides)])

    errors = row_errors(result)
    assert list(errors) == [1] and list(errors[1]) == [column]
    if message is None:
        assert errors[1][column][0].endswith(
            "is not an amount: write euros with a dot or a comma before at most "
            "two decimals, without thousands separators or currency sign "
            "(e.g. 12900.00 or -189,50)."
        )
    else:
        assert errors[1] == {column: [message]}
    assert not Sale.objects.exists()


def test_all_problems_of_a_row_are_reported_together(sales):
    result = run([sale_row(reseller="Nobody", date="yesterday", amount="x", product_line="?")])

    assert set(row_errors(result)[1]) == {"reseller", "date", "amount", "product_line"}


def test_a_line_twice_in_the_file_is_refused_on_both_rows(sales):
    result = run([sale_row(), sale_row(amount="1")])

    assert row_errors(result) == {
        1: {"erp_line_id": ["ERP line ERP-1001 appears more than once in this file (also row 2)."]},
        2: {"erp_line_id": ["ERP line ERP-1001 appears more than once in this file (also row 1)."]},
    }


def test_a_name_shared_by_two_dealers_must_be_given_as_vat_number(sales):
    factories.OrganisationFactory(name="Own Dealer B.V.", country="BE", region=sales.south)

    result = run([sale_row(reseller="own dealer b.v.")])

    assert row_errors(result) == {
        1: {
            "reseller": [
                "“own dealer b.v.” is more than one dealer (Own Dealer B.V. (NL), Own Dealer B.V. (BE)): "
                "use the VAT number."
            ]
        }
    }


def test_the_vat_number_wins_over_a_name(sales):
    # A dealer whose *name* is the own dealer's VAT number: the VAT number still means the own dealer.
    factories.OrganisationFactory(name="NL823456789B01", region=sales.south)

    run([sale_row()])

    assert Sale.objects.get().reseller == sales.own


def test_accepted_spellings(sales):
    rows = [
        sale_row(
            erp_line_id=" ERP-1 ",
            date=f"{TODAY - 3 * DAY:%d-%m-%Y}",
            reseller="nl 8234.56789.b01",
            distributor="holland technische groothandel b.v.",
            customer_country="nl",
            customer_vat="nl 0012.34567 b01",
            product_line="HEAT-PUMPS",
            amount="8450,5",
        ),
        sale_row(erp_line_id="ERP-2", amount="-189.00", product_line="zonne-energie", distributor=""),
    ]

    result = run(rows)

    assert is_clean(result)
    first, second = Sale.objects.get(erp_line_id="ERP-1"), Sale.objects.get(erp_line_id="ERP-2")
    assert (first.sold_on, first.reseller, first.distributor, first.customer_country, first.customer_vat) == (
        TODAY - 3 * DAY,
        sales.own,
        sales.distributor,
        "NL",
        "NL001234567B01",
    )
    assert (first.product_line, first.amount) == (sales.pumps, Decimal("8450.50"))
    assert (second.amount, second.product_line, second.distributor) == (Decimal("-189.00"), sales.solar, None)


def test_a_semicolon_separated_file_with_other_headers_case_reads_the_same(sales):
    text = csv_text(GOOD_ROWS, delimiter=";").replace("erp_line_id", "ERP line id").replace("amount", " Amount")

    dataset = SalesCSV(encoding="utf-8-sig").create_dataset(("\ufeff" + text).encode())
    result = SaleImportResource().import_data(dataset, command=True)

    assert is_clean(result)
    assert Sale.objects.count() == 2


def test_optional_columns_may_be_left_out(sales):
    columns = [c for c in COLUMNS if c not in ("distributor", "customer_vat", "registration_reference")]

    result = run(GOOD_ROWS, columns=columns)

    assert is_clean(result)
    assert Sale.objects.count() == 2


def test_an_unknown_column_is_refused_as_a_whole(sales):
    result = run(GOOD_ROWS, columns=[*COLUMNS, "registration_ref"])

    assert [str(e.error) for e in result.base_errors] == [
        "Unknown column registration_ref. Its first line must name the columns: erp_line_id, date, reseller, "
        "distributor, customer_name, customer_city, customer_country, customer_vat, product_line, amount, "
        "registration_reference (optional: distributor, customer_vat, registration_reference)."
    ]
    assert not Sale.objects.exists()


@pytest.mark.parametrize("persona", ["pm_a", "rd_north", "own_admin"])
def test_only_a_channel_admin_or_the_command_can_run_the_resource(sales, persona):
    result = run(GOOD_ROWS, getattr(sales, persona))

    assert [str(e.error) for e in result.base_errors] == ["Only a channel admin can import sales."]
    assert not Sale.objects.exists()


def test_nobody_at_all_is_refused_too(sales):
    result = run(GOOD_ROWS, command=False)

    assert [str(e.error) for e in result.base_errors] == ["Only a channel admin can import sales."]


def test_the_resource_imports_all_or_nothing_even_when_not_asked_to(sales):
    result = run([GOOD_ROWS[0], sale_row(erp_line_id="ERP-9", amount="x"), GOOD_ROWS[1]], sales.channel_admin)

    assert list(row_errors(result)) == [2]
    assert not Sale.objects.exists()


def test_an_already_imported_line_with_other_values_is_left_alone_and_reported(sales):
    run([sale_row()])

    result = run([sale_row(amount="99.00")])

    assert is_clean(result)
    assert result.sales_summary["changed_existing"] == [1]
    assert Sale.objects.get().amount == Decimal("12900.00")


def test_the_unique_line_id_holds_in_the_database_too(sales):
    from django.db import IntegrityError, transaction

    run([sale_row()])
    duplicate = Sale.objects.get()
    duplicate.pk = None
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()


def test_the_example_file_in_docs_imports_cleanly(db):
    region = factories.RegionFactory(code="nl", name="Nederland")
    for name, kind, vat in [
        ("Holland Technische Groothandel B.V.", Organisation.Kind.DISTRIBUTOR, "NL812345678B01"),
        ("Van der Berg Installatietechniek B.V.", Organisation.Kind.RESELLER, "NL823456789B01"),
        ("Jansen & Zn. Klimaattechniek", Organisation.Kind.RESELLER, "NL834567890B01"),
    ]:
        factories.OrganisationFactory(name=name, kind=kind, vat_number=vat, region=region)
    for code in ["heat-pumps", "climate", "solar"]:
        ProductLineFactory(code=code)

    dataset = SalesCSV(encoding="utf-8-sig").create_dataset(EXAMPLE_FILE.read_bytes())
    result = SaleImportResource().import_data(dataset, user=factories.channel_admin())

    assert list(dataset.headers) == COLUMNS
    assert is_clean(result)
    assert result.sales_summary["new"] == 3
    assert sorted(Sale.objects.values_list("amount", flat=True)) == [
        Decimal("-189.00"),
        Decimal("8450.50"),
        Decimal("12900.00"),
    ]


# --- linking to a registration --------------------------------------------------------------------


def registration(sales, status=Status.APPROVED, *, approved_on, protected_until=None, line=None, **fields):
    """A registration of the own dealer for Bakkerij De Korenschoof in Utrecht, approved on a day."""
    fields.setdefault(
        "customer",
        CustomerFactory(organisation=fields.pop("organisation", sales.own), name="Bakkerij De Korenschoof B.V."),
    )
    return make_registration(
        fields.pop("owner", sales.own),
        sales.own_user,
        status,
        products=[ProductFactory(line=line or sales.pumps)],
        decided_at=aware(approved_on),
        protected_until=protected_until or approved_on + 90 * DAY,
        **fields,
    )


def a_sale(sales, **fields) -> Sale:
    values = {
        "erp_line_id": "ERP-1",
        "sold_on": TODAY - 10 * DAY,
        "reseller": sales.own,
        "customer_name": "Bakkerij de Korenschoof",
        "customer_city": "Utrecht",
        "customer_country": "NL",
        "product_line": sales.pumps,
        "amount": Decimal("100"),
    }
    values.update(fields)
    return Sale(**values)


def test_by_reference_approved_before_the_sale(sales):
    found = registration(sales, approved_on=TODAY - 30 * DAY, reference="REG-2026-000101")

    assert link_registration(a_sale(sales, registration_reference="REG-2026-000101")) == (found, True)
    # Approved on the day of the sale counts as before it.
    assert link_registration(a_sale(sales, registration_reference="REG-2026-000101", sold_on=TODAY - 30 * DAY)) == (
        found,
        True,
    )


def test_by_reference_approved_after_the_sale_is_linked_but_not_registered_before(sales):
    found = registration(sales, approved_on=TODAY - 5 * DAY, reference="REG-2026-000102")

    assert link_registration(a_sale(sales, registration_reference="REG-2026-000102")) == (found, False)


def test_by_reference_a_won_or_expired_registration_links(sales):
    won = registration(sales, Status.WON, approved_on=TODAY - 60 * DAY, reference="REG-2026-000103")
    expired = registration(sales, Status.EXPIRED, approved_on=TODAY - 200 * DAY, reference="REG-2026-000104")

    assert link_registration(a_sale(sales, registration_reference="REG-2026-000103")) == (won, True)
    assert link_registration(a_sale(sales, registration_reference="reg-2026-000104")) == (expired, True)


@pytest.mark.parametrize("status", [Status.REJECTED, Status.SUBMITTED, Status.WITHDRAWN, Status.REVOKED, Status.LOST])
def test_a_registration_that_is_not_approved_never_links(sales, status):
    registration(sales, status, approved_on=TODAY - 30 * DAY, reference="REG-2026-000105")

    assert link_registration(a_sale(sales, registration_reference="REG-2026-000105")) == (None, False)


def test_another_dealers_reference_does_not_link(sales):
    registration(
        sales,
        approved_on=TODAY - 30 * DAY,
        reference="REG-2026-000106",
        owner=sales.other,
        organisation=sales.other,
    )

    assert link_registration(a_sale(sales, registration_reference="REG-2026-000106")) == (None, False)


def test_by_customer_within_the_protection_and_product_line(sales):
    later = registration(sales, approved_on=TODAY - 20 * DAY)
    earliest = registration(sales, approved_on=TODAY - 40 * DAY)
    registration(sales, approved_on=TODAY - 50 * DAY, line=sales.solar)  # another product line
    registration(
        sales, approved_on=TODAY - 45 * DAY, customer=CustomerFactory(organisation=sales.own)
    )  # other customer

    assert link_registration(a_sale(sales)) == (earliest, True)
    assert later != earliest


def test_by_customer_vat_number_whatever_the_name(sales):
    customer = CustomerFactory(organisation=sales.own, name="Korenschoof Holding", vat_number="NL001234567B01")
    found = registration(sales, approved_on=TODAY - 20 * DAY, customer=customer)

    sale = a_sale(sales, customer_name="De Korenschoof Bakkerijen", customer_vat="NL001234567B01")

    assert link_registration(sale) == (found, True)


def test_by_customer_outside_the_protection_window_is_not_linked(sales):
    registration(sales, approved_on=TODAY - 5 * DAY)  # approved after the sale
    registration(sales, approved_on=TODAY - 100 * DAY, protected_until=TODAY - 11 * DAY)  # ended the day before

    assert link_registration(a_sale(sales)) == (None, False)


def test_by_customer_on_the_last_protected_day_is_linked(sales):
    found = registration(sales, approved_on=TODAY - 100 * DAY, protected_until=TODAY - 10 * DAY)

    assert link_registration(a_sale(sales)) == (found, True)


def test_by_customer_another_dealers_registration_is_not_linked(sales):
    registration(sales, approved_on=TODAY - 30 * DAY, owner=sales.other, organisation=sales.other)

    assert link_registration(a_sale(sales)) == (None, False)


def test_a_reference_that_does_not_link_falls_back_to_the_customer(sales):
    found = registration(sales, approved_on=TODAY - 30 * DAY)

    assert link_registration(a_sale(sales, registration_reference="REG-1999-000001")) == (found, True)


def test_the_import_links_each_new_sale_and_reports_references_that_do_not(sales):
    by_reference = registration(sales, approved_on=TODAY - 5 * DAY, reference="REG-2026-000201")
    by_customer = registration(sales, approved_on=TODAY - 30 * DAY, line=sales.climate)
    rows = [
        sale_row(erp_line_id="A", registration_reference="reg-2026-000201"),
        sale_row(erp_line_id="B", product_line="climate", customer_name="Bakkerij De Korenschoof"),
        sale_row(erp_line_id="C", reseller="Other Dealer B.V.", registration_reference="REG-2026-000201"),
    ]

    result = run(rows)

    assert is_clean(result)
    linked = {s.erp_line_id: (s.registration, s.registered_before_sale) for s in Sale.objects.all()}
    assert linked == {"A": (by_reference, False), "B": (by_customer, True), "C": (None, False)}
    assert result.sales_summary == {
        "new": 3,
        "already_imported": 0,
        "linked": 2,
        "registered_before_sale": 1,
        "references_not_linked": [3],
        "changed_existing": [],
    }


def test_a_registration_approved_through_the_services_links(sales):
    product = ProductFactory(line=sales.pumps)
    approved_registration = approved(
        sales, lines=[services.LineData(product=product, quantity=1)], customer=customer_data(vat_number="")
    )
    sale_day = f"{TODAY:%Y-%m-%d}"

    run(
        [
            sale_row(date=sale_day),
            sale_row(erp_line_id="ERP-2", date=sale_day, registration_reference=approved_registration.reference),
        ]
    )

    assert {(s.registration, s.registered_before_sale) for s in Sale.objects.all()} == {(approved_registration, True)}


def test_the_preview_shows_the_registration_each_sale_links_to(sales):
    found = registration(sales, approved_on=TODAY - 30 * DAY, reference="REG-2026-000301")
    client = client_for(sales.channel_admin)

    preview = upload(client, [sale_row(registration_reference="REG-2026-000301"), GOOD_ROWS[1]])

    page = preview.content.decode()
    assert "linked registration" in page
    assert f"REG-2026-000301 (approved {TODAY - 30 * DAY:%Y-%m-%d}, before the sale)" in page
    assert "To import: 2 sales, 1 of them linked to a registration (1 approved before the sale)" in page
    assert not Sale.objects.exists()
    assert found.sales.count() == 0


# --- the programme's other records in the admin --------------------------------------------------


def test_the_tier_programme_form_shows_weights_that_do_not_add_up(sales):
    from tiers.models import TierProgramme

    client = client_for(sales.channel_admin)
    programme = TierProgramme.load()
    assert client.get(reverse("admin:tiers_tierprogramme_changelist")).status_code == 302
    url = reverse("admin:tiers_tierprogramme_change", args=[programme.pk])
    data = {
        "mode": "absolute",
        "grace_days": "90",
        "revenue_weight": "40",
        "growth_weight": "15",
        "compliance_weight": "20",
        "certifications_weight": "15",
        "satisfaction_weight": "0",
        "revenue_target": "500000",
        "growth_target": "20",
        "compliance_target": "80",
        "certifications_target": "3",
        "satisfaction_target": "4.5",
        "attention_registrations_percent": "50",
        "attention_close_ratio": "25",
        "attention_min_closed": "5",
        "attention_inactive_days": "60",
    }

    refused = client.post(url, data)

    assert refused.status_code == 200
    assert "The weights add up to 90%; they must add up to 100%." in refused.content.decode()
    assert client.post(url, {**data, "satisfaction_weight": "10"}).status_code == 302


def test_tier_ranks_are_unique_in_the_admin(sales):
    client = client_for(sales.channel_admin)
    page = client.get(reverse("admin:tiers_tier_changelist"))
    assert [t.name for t in page.context["cl"].result_list] == ["Gold", "Silver", "Bronze"]

    refused = client.post(
        reverse("admin:tiers_tier_add"),
        {
            "name": "Platinum",
            "rank": "1",
            "base_margin_percent": "20",
            "registered_extra_margin_percent": "5",
            "co_marketing_budget": "0",
            "open_registration_cap": "100",
            "min_total": "90",
            "distribution_share": "0",
        },
    )

    assert refused.status_code == 200
    assert "Tier with this Rank already exists." in refused.content.decode()


def test_certification_holdings_are_scoped_and_need_a_member(sales):
    from tiers.models import Certification, CertificationHolding

    certification = Certification.objects.create(name="Heat pump installer", code="hp-installer")
    own = CertificationHolding.objects.create(
        organisation=sales.own, person=sales.own_user, certification=certification, valid_until=TODAY + 100 * DAY
    )
    CertificationHolding.objects.create(
        organisation=sales.other, person=sales.other_admin, certification=certification, valid_until=TODAY
    )

    page = client_for(sales.pm_a).get(reverse("admin:tiers_certificationholding_changelist"))
    assert list(page.context["cl"].result_list) == [own]

    admin = client_for(sales.channel_admin)
    assert len(admin.get(reverse("admin:tiers_certificationholding_changelist")).context["cl"].result_list) == 2
    refused = admin.post(
        reverse("admin:tiers_certificationholding_add"),
        {
            "organisation": sales.own.pk,
            "person": sales.other_admin.pk,
            "certification": certification.pk,
            "valid_until": f"{TODAY:%Y-%m-%d}",
        },
    )
    assert refused.status_code == 200
    assert "is not an active member of Own Dealer B.V." in refused.content.decode()


def test_satisfaction_scores_record_who_entered_them(sales):
    from tiers.models import SatisfactionScore

    admin = client_for(sales.channel_admin)
    done = admin.post(
        reverse("admin:tiers_satisfactionscore_add"),
        {"organisation": sales.own.pk, "score": "4", "recorded_on": f"{TODAY:%Y-%m-%d}"},
    )

    assert done.status_code == 302
    score = SatisfactionScore.objects.get()
    assert (score.organisation, score.score, score.recorded_by) == (sales.own, 4, sales.channel_admin)
    assert (
        client_for(sales.pm_b)
        .get(reverse("admin:tiers_satisfactionscore_changelist"))
        .context["cl"]
        .result_list.count()
        == 0
    )
