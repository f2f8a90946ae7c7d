"""Bulk onboarding of dealers from a CSV file in the admin (dealers/imports.py)."""

import csv
import io
from pathlib import Path

import pytest
from django.core import mail
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from import_export.formats.base_formats import CSV
from tablib import Dataset

from dealers.imports import COLUMNS, OrganisationImportResource
from dealers.models import Invitation, Membership, Organisation, OrganisationEvent, Region
from tests import factories
from tests.conftest import client_for

IMPORT_URL = reverse("admin:dealers_organisation_import")
PROCESS_URL = reverse("admin:dealers_organisation_process_import")
EXAMPLE_FILE = Path(__file__).resolve().parents[1] / "docs" / "dealer-import-example.csv"

# Transactional: the import's own transaction is the outermost one, so its commit (and the
# on_commit hooks that send the emails) and its rollback are real, not simulated. Serialized
# rollback brings back the staff groups that the flush after the test would wipe out.
really_commits = pytest.mark.django_db(transaction=True)


def dealer_row(**overrides) -> dict:
    row = {
        "name": "Meijer Klimaatsystemen B.V.",
        "kind": "reseller",
        "region": "north",
        "city": "Eindhoven",
        "country": "NL",
        "website": "https://www.meijerklimaat.example",
        "vat_number": "NL867890123B01",
        "company_number": "17283945",
        "partner_manager_email": "pm.a@vendor.example",
        "admin_email": "lars.meijer@meijerklimaat.example",
    }
    row.update(overrides)
    return row


GOOD_ROWS = [
    dealer_row(),
    dealer_row(
        name="Vermeulen Techniek BV",
        region="South",  # by name
        city="Gent",
        country="be",
        website="www.vermeulentechniek.example",
        vat_number="BE0723456789",
        company_number="0723.456.789",
        partner_manager_email="",
        admin_email="An.Vermeulen@vermeulentechniek.example",
    ),
]
ADMIN_EMAILS = {"lars.meijer@meijerklimaat.example", "an.vermeulen@vermeulentechniek.example"}
NAMES = {"Meijer Klimaatsystemen B.V.", "Vermeulen Techniek BV"}


def csv_text(rows, columns=COLUMNS) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def upload(client, rows, columns=COLUMNS):
    file = SimpleUploadedFile("dealers.csv", csv_text(rows, columns).encode(), content_type="text/csv")
    return client.post(IMPORT_URL, {"resource": "0", "format": "0", "import_file": file})


def confirm(client, preview):
    return client.post(PROCESS_URL, preview.context["confirm_form"].initial)


def assert_nothing_imported(world):
    assert set(Organisation.objects.values_list("name", flat=True)) == {
        world.own.name,
        world.other.name,
        world.orphan.name,
    }
    assert not Invitation.objects.exists()
    assert not OrganisationEvent.objects.exists()
    assert mail.outbox == []


# --- through the admin -----------------------------------------------------------------------------


@really_commits
def test_channel_admin_previews_then_imports_and_invitations_go_out_after_commit(world):
    client = client_for(world.channel_admin)

    preview = upload(client, GOOD_ROWS)

    assert preview.status_code == 200
    assert "confirm_form" in preview.context
    page = preview.content.decode()
    assert "Preview" in page and "Some rows failed" not in page
    for text in [*NAMES, "lars.meijer@meijerklimaat.example", "pm.a@vendor.example", "south"]:
        assert text in page
    assert_nothing_imported(world)  # the dry run was rolled back, and with it any email

    done = confirm(client, preview)

    assert done.status_code == 302
    assert done["Location"] == reverse("admin:dealers_organisation_changelist")
    meijer = Organisation.objects.get(name="Meijer Klimaatsystemen B.V.")
    assert (meijer.kind, meijer.status, meijer.region, meijer.partner_manager, meijer.country) == (
        Organisation.Kind.RESELLER,
        Organisation.Status.ONBOARDING,
        world.north,
        world.pm_a,
        "NL",
    )
    vermeulen = Organisation.objects.get(name="Vermeulen Techniek BV")
    assert (vermeulen.region, vermeulen.partner_manager, vermeulen.country, vermeulen.website) == (
        world.south,
        None,
        "BE",
        "https://www.vermeulentechniek.example",
    )
    invitations = Invitation.objects.pending().filter(organisation__in=[meijer, vermeulen])
    assert {(i.organisation.name, i.email, i.role, i.invited_by) for i in invitations} == {
        (
            "Meijer Klimaatsystemen B.V.",
            "lars.meijer@meijerklimaat.example",
            Membership.Role.DEALER_ADMIN,
            world.channel_admin,
        ),
        (
            "Vermeulen Techniek BV",
            "an.vermeulen@vermeulentechniek.example",
            Membership.Role.DEALER_ADMIN,
            world.channel_admin,
        ),
    }
    for organisation in (meijer, vermeulen):
        assert list(organisation.events.order_by("id").values_list("kind", "description", "actor")) == [
            (OrganisationEvent.Kind.CREATED, "Imported from CSV", world.channel_admin.pk),
            (
                OrganisationEvent.Kind.MEMBER_INVITED,
                f"Invited {organisation.invitations.get().email} as dealer admin",
                world.channel_admin.pk,
            ),
        ]
    assert sorted(to for message in mail.outbox for to in message.to) == sorted(ADMIN_EMAILS)
    assert len(mail.outbox) == 2


def test_emails_wait_for_the_commit_of_the_confirmed_import(world, django_capture_on_commit_callbacks):
    client = client_for(world.channel_admin)
    with django_capture_on_commit_callbacks() as preview_callbacks:
        preview = upload(client, GOOD_ROWS)
    assert preview_callbacks == []

    with django_capture_on_commit_callbacks() as callbacks:
        confirm(client, preview)

    assert Organisation.objects.filter(name__in=NAMES).count() == 2
    assert mail.outbox == []  # nothing during the transaction…
    assert len(callbacks) == 2
    for callback in callbacks:
        callback()
    assert sorted(m.to[0] for m in mail.outbox) == sorted(ADMIN_EMAILS)  # …one email each at commit


@really_commits
def test_one_bad_row_shows_its_error_and_imports_nothing(world):
    client = client_for(world.channel_admin)
    rows = [
        GOOD_ROWS[0],
        dealer_row(name="Atlantis Techniek", region="atlantis", admin_email="x@atlantis.example"),
        GOOD_ROWS[1],
    ]

    preview = upload(client, rows)

    assert preview.status_code == 200
    assert "confirm_form" not in preview.context
    result = preview.context["result"]
    assert [(r.number, r.error_dict) for r in result.invalid_rows] == [
        (2, {"region": ["Unknown region “atlantis”: use the code or name of a region (north, south)."]})
    ]
    page = preview.content.decode()
    assert "Some rows failed to validate" in page
    assert "Unknown region “atlantis”" in page
    assert_nothing_imported(world)


@really_commits
def test_confirming_a_file_that_went_bad_since_the_preview_imports_nothing(world):
    client = client_for(world.channel_admin)
    preview = upload(client, GOOD_ROWS)
    factories.UserFactory(email="an.vermeulen@vermeulentechniek.example")  # signed up meanwhile

    done = confirm(client, preview)

    assert done.status_code == 302
    assert done["Location"] == IMPORT_URL
    assert "Nothing was imported" in client.get(IMPORT_URL).content.decode()
    assert_nothing_imported(world)


def test_only_channel_admins_may_import(world):
    staff = client_for(world.pm_a)
    assert staff.get(IMPORT_URL).status_code == 403
    assert upload(staff, GOOD_ROWS).status_code == 403
    assert (
        staff.post(PROCESS_URL, {"import_file_name": "x", "original_file_name": "x.csv", "format": "0"}).status_code
        == 403
    )
    assert IMPORT_URL not in staff.get(reverse("admin:dealers_organisation_changelist")).content.decode()
    assert IMPORT_URL not in staff.get("/").content.decode()

    admin = client_for(world.channel_admin)
    assert admin.get(IMPORT_URL).status_code == 200
    assert IMPORT_URL in admin.get(reverse("admin:dealers_organisation_changelist")).content.decode()
    assert IMPORT_URL in admin.get("/").content.decode()
    assert not Organisation.objects.filter(name__in=NAMES).exists()


# --- the resource itself -----------------------------------------------------------------------------


def run(rows, user, *, columns=COLUMNS, dry_run=True):
    dataset = Dataset(headers=list(columns))
    for row in rows:
        dataset.append([row.get(column, "") for column in columns])
    return OrganisationImportResource().import_data(dataset, dry_run=dry_run, user=user)


def row_errors(result) -> dict[int, dict[str, list[str]]]:
    return {row.number: row.error_dict for row in result.invalid_rows}


@pytest.mark.parametrize(
    "overrides, column, message",
    [
        ({"name": " "}, "name", "name is required."),
        ({"region": ""}, "region", "region is required."),
        ({"city": ""}, "city", "city is required."),
        ({"country": ""}, "country", "country is required."),
        ({"admin_email": ""}, "admin_email", "admin_email is required."),
        ({"kind": "wholesaler"}, "kind", "Unknown kind “wholesaler”: use reseller or distributor."),
        (
            {"region": "atlantis"},
            "region",
            "Unknown region “atlantis”: use the code or name of a region (north, south).",
        ),
        ({"country": "US"}, "country", "Unknown country “US”: use a two-letter ISO code such as NL, BE or LU."),
        (
            {"country": "Nederland"},
            "country",
            "Unknown country “NEDERLAND”: use a two-letter ISO code such as NL, BE or LU.",
        ),
        (
            {"partner_manager_email": "nobody@vendor.example"},
            "partner_manager_email",
            "Nobody on the portal has the email address nobody@vendor.example.",
        ),
        (
            {"partner_manager_email": "rd.north@vendor.example"},
            "partner_manager_email",
            "rd.north@vendor.example is not an active partner manager.",
        ),
        ({"admin_email": "lars at meijer"}, "admin_email", "“lars at meijer” is not a valid email address."),
        (
            {"admin_email": "Admin@Own.example"},
            "admin_email",
            "admin@own.example already has an account on the portal.",
        ),
        ({"name": "own dealer b.v.", "country": "nl"}, "name", "own dealer b.v. (NL) is already in the portal."),
        ({"website": "https://not a website"}, "website", "Enter a valid URL."),
    ],
)
def test_each_bad_value_gets_a_clear_message(world, overrides, column, message):
    result = run([dealer_row(**overrides)], world.channel_admin)

    assert row_errors(result) == {1: {column: [message]}}


def test_an_inactive_partner_manager_is_refused(world):
    world.pm_b.is_active = False
    world.pm_b.save()

    result = run([dealer_row(partner_manager_email="pm.b@vendor.example")], world.channel_admin)

    assert row_errors(result) == {
        1: {"partner_manager_email": ["pm.b@vendor.example is not an active partner manager."]}
    }


def test_all_problems_of_a_row_are_reported_together(world):
    result = run(
        [dealer_row(kind="shop", region="mars", city="", partner_manager_email="who@x.example")], world.channel_admin
    )

    assert set(row_errors(result)[1]) == {"kind", "region", "city", "partner_manager_email"}


def test_a_dealer_twice_in_the_file_is_refused_on_every_row(world):
    rows = [dealer_row(), dealer_row(name="MEIJER KLIMAATSYSTEMEN B.V.", admin_email="other@meijer.example")]

    result = run(rows, world.channel_admin)

    assert row_errors(result) == {
        1: {"name": ["Meijer Klimaatsystemen B.V. (NL) appears more than once in this file (also row 2)."]},
        2: {"name": ["MEIJER KLIMAATSYSTEMEN B.V. (NL) appears more than once in this file (also row 1)."]},
    }


def test_the_same_name_in_another_country_is_a_different_dealer(world):
    result = run([dealer_row(), dealer_row(country="BE", admin_email="be@meijer.example")], world.channel_admin)

    assert not result.has_errors() and not result.has_validation_errors()


def test_one_first_admin_for_two_dealers_is_refused(world):
    rows = [dealer_row(), dealer_row(name="Meijer Zuid B.V.")]

    result = run(rows, world.channel_admin)

    assert row_errors(result)[2] == {
        "admin_email": [
            "lars.meijer@meijerklimaat.example is the first admin of more than one dealer in this file "
            "(also row 1); a person belongs to one dealer."
        ]
    }


def test_a_file_without_a_required_column_is_refused_as_a_whole(world):
    columns = [c for c in COLUMNS if c != "admin_email"]

    result = run([dealer_row()], world.channel_admin, columns=columns, dry_run=False)

    assert [str(e.error) for e in result.base_errors] == [
        "The file has no column admin_email. Its first line must name the columns: name, kind, region, city, "
        "country, website, vat_number, company_number, partner_manager_email, admin_email."
    ]
    assert not Organisation.objects.filter(name__in=NAMES).exists()


@pytest.mark.parametrize("persona", ["pm_a", "rd_north", "own_admin"])
def test_only_a_channel_admin_can_run_the_resource(world, persona):
    result = run(GOOD_ROWS, getattr(world, persona), dry_run=False)

    assert [str(e.error) for e in result.base_errors] == ["Only a channel admin can import dealers."]
    assert not Organisation.objects.filter(name__in=NAMES).exists()


def test_the_resource_imports_all_or_nothing_even_when_not_asked_to(world, django_capture_on_commit_callbacks):
    # import-export's default keeps the good rows of a file with invalid ones; ours must not.
    rows = [GOOD_ROWS[0], dealer_row(name="Bad B.V.", country="XX", admin_email="bad@bad.example"), GOOD_ROWS[1]]

    with django_capture_on_commit_callbacks() as callbacks:
        result = run(rows, world.channel_admin, dry_run=False)

    assert list(row_errors(result)) == [2]
    assert not Organisation.objects.filter(name__in=NAMES).exists()
    assert not Invitation.objects.exists()
    assert callbacks == []


def test_headers_and_values_are_forgiving(world):
    columns = [f" {c.upper()} " for c in COLUMNS]
    row = dealer_row(name="  Meijer Klimaatsystemen B.V. ", kind="", region="NORTH", country=" nl ")
    dataset = Dataset(headers=columns)
    dataset.append([row[c] for c in COLUMNS])

    result = OrganisationImportResource().import_data(dataset, user=world.channel_admin)

    assert not result.has_errors() and not result.has_validation_errors()
    meijer = Organisation.objects.get(name="Meijer Klimaatsystemen B.V.")
    assert (meijer.kind, meijer.region, meijer.country) == (Organisation.Kind.RESELLER, world.north, "NL")


def test_the_example_file_in_docs_imports_cleanly(db):
    nl = factories.RegionFactory(code="nl", name="Nederland")
    factories.RegionFactory(code="be-lu", name="België & Luxemburg")
    factories.partner_manager(email="jeroen.visser@vendor.example", home_region=nl)
    dataset = CSV(encoding="utf-8-sig").create_dataset(EXAMPLE_FILE.read_text(encoding="utf-8"))

    result = run([dict(zip(dataset.headers, values, strict=True)) for values in dataset], factories.channel_admin())

    assert list(dataset.headers) == COLUMNS
    assert len(dataset) == 2
    assert not result.has_errors() and not result.has_validation_errors()
    assert {row.import_type for row in result.rows} == {"new"}
    assert Region.objects.count() == 2
