"""Bulk onboarding: a channel admin imports new dealers and their first admins from a CSV file.

Used by the Organisation admin (django-import-export): the upload is checked in a dry run and
shown as a preview, with every bad row and its reason; only after confirmation are the
organisations created and the invitations sent. The import is all or nothing: one bad row and
nothing is saved, nobody is invited.

Columns (first line of the file; UTF-8, comma-separated; order does not matter):

    name                   required; the dealer's legal name. Name + country must be new, both in
                           the portal and within the file.
    kind                   reseller (default when empty) or distributor
    region                 required; a region's code (e.g. nl, be-lu) or its name
    city                   required
    country                required; ISO 3166-1 alpha-2 code of a country we sell in (NL, BE, LU, …)
    website                optional; "https://" is added when missing
    vat_number             optional
    company_number         optional; KvK, KBO or Handelsregister number
    partner_manager_email  optional; an active partner manager. Empty: the region's regional
                           director looks after the dealer.
    admin_email            required; the dealer's first admin, who must not have an account yet.
                           Invited as dealer admin (the role is fixed; an admin_role column is ignored).

Each organisation is created with status "onboarding", gets a "created" history row ("Imported
from CSV") and a first-admin invitation made by the importing user. Invitation emails leave only
when the confirmed import commits, never from the preview.
"""

from __future__ import annotations

from collections import defaultdict

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import Q
from import_export import resources, widgets
from import_export.fields import Field

from dealers import services
from dealers.countries import COUNTRIES
from dealers.models import Membership, Organisation, OrganisationEvent, Region, StaffRole, User

COLUMNS = [
    "name",
    "kind",
    "region",
    "city",
    "country",
    "website",
    "vat_number",
    "company_number",
    "partner_manager_email",
    "admin_email",
]
REQUIRED_COLUMNS = ["name", "region", "city", "country", "admin_email"]


def _text(value) -> str:
    return "" if value is None else str(value).strip()


class TextWidget(widgets.CharWidget):
    """Text with the spreadsheet's stray spaces removed."""

    def clean(self, value, row=None, **kwargs):
        return _text(value)


class KindWidget(widgets.Widget):
    def clean(self, value, row=None, **kwargs):
        value = _text(value).lower()
        if value and value not in Organisation.Kind.values:
            raise ValueError(f"Unknown kind “{value}”: use {' or '.join(Organisation.Kind.values)}.")
        return value or None  # empty: the field's default (reseller)


class CountryWidget(widgets.Widget):
    def clean(self, value, row=None, **kwargs):
        value = _text(value).upper()
        if value not in COUNTRIES:
            raise ValueError(f"Unknown country “{value}”: use a two-letter ISO code such as NL, BE or LU.")
        return value


class WebsiteWidget(widgets.Widget):
    def clean(self, value, row=None, **kwargs):
        value = _text(value)
        if value and "://" not in value:
            value = f"https://{value}"
        return value


class RegionWidget(widgets.Widget):
    """A region by its code or its name."""

    def clean(self, value, row=None, **kwargs):
        value = _text(value)
        region = Region.objects.filter(Q(code__iexact=value) | Q(name__iexact=value)).first()
        if region is None:
            codes = ", ".join(Region.objects.order_by("code").values_list("code", flat=True))
            raise ValueError(f"Unknown region “{value}”: use the code or name of a region ({codes}).")
        return region

    def render(self, value, obj=None, **kwargs):
        return value.code if value else ""


class PartnerManagerWidget(widgets.Widget):
    """An active partner manager by email address; empty leaves the dealer to the regional director."""

    def clean(self, value, row=None, **kwargs):
        email = _text(value).lower()
        if not email:
            return None
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise ValueError(f"Nobody on the portal has the email address {email}.")
        if StaffRole.PARTNER_MANAGER not in user.staff_roles:
            raise ValueError(f"{email} is not an active partner manager.")
        return user

    def render(self, value, obj=None, **kwargs):
        return value.email if value else ""


class NewPersonEmailWidget(widgets.Widget):
    """The email address of someone to invite: valid, and without an account yet."""

    def clean(self, value, row=None, **kwargs):
        email = _text(value).lower()
        try:
            validate_email(email)
        except ValidationError:
            raise ValueError(f"“{email}” is not a valid email address.") from None
        if User.objects.filter(email__iexact=email).exists():
            raise ValueError(f"{email} already has an account on the portal.")
        return email


class OrganisationImportResource(resources.ModelResource):
    """Creates organisations (never updates existing ones) and invites each one's first admin."""

    name = Field(attribute="name", column_name="name", widget=TextWidget())
    kind = Field(attribute="kind", column_name="kind", widget=KindWidget(), default=Organisation.Kind.RESELLER)
    region = Field(attribute="region", column_name="region", widget=RegionWidget())
    city = Field(attribute="city", column_name="city", widget=TextWidget())
    country = Field(attribute="country", column_name="country", widget=CountryWidget())
    website = Field(attribute="website", column_name="website", widget=WebsiteWidget())
    vat_number = Field(attribute="vat_number", column_name="vat_number", widget=TextWidget())
    company_number = Field(attribute="company_number", column_name="company_number", widget=TextWidget())
    partner_manager_email = Field(
        attribute="partner_manager", column_name="partner_manager_email", widget=PartnerManagerWidget()
    )
    # Not a model field: held on the unsaved instance until after_save_instance() invites the person.
    admin_email = Field(attribute="first_admin_email", column_name="admin_email", widget=NewPersonEmailWidget())

    class Meta:
        model = Organisation
        fields = COLUMNS
        import_order = COLUMNS
        force_init_instance = True  # create only: a row never loads (and so never updates) an existing dealer
        clean_model_instances = True  # field lengths, URL syntax, …
        use_transactions = True

    def import_data(
        self,
        dataset,
        dry_run=False,
        raise_errors=False,
        use_transactions=None,
        collect_failed_rows=False,
        rollback_on_validation_errors=False,
        **kwargs,
    ):
        try:
            self._check_file(dataset, user=kwargs.get("user"))
        except (services.NotAllowed, ValueError) as e:
            result = self.get_result_class()()
            result.diff_headers = self.get_diff_headers()
            result.total_rows = len(dataset)
            self.handle_import_error(result, e, raise_errors)
            return result
        # All or nothing, whoever calls: import-export would otherwise commit the good rows of a
        # file with invalid ones (its admin only checks this in the dry run, and the database can
        # change between the preview and the confirmation).
        return super().import_data(
            dataset,
            dry_run=dry_run,
            raise_errors=raise_errors,
            use_transactions=True,
            collect_failed_rows=collect_failed_rows,
            rollback_on_validation_errors=True,
            **kwargs,
        )

    def _check_file(self, dataset, *, user) -> None:
        """Refuse the whole file before any row is read; index it to spot repeated rows."""
        if user is None or not user.is_channel_admin:
            raise services.NotAllowed("Only a channel admin can import dealers.")
        if dataset.headers:
            dataset.headers = [_text(header).lower() for header in dataset.headers]
        missing = [column for column in REQUIRED_COLUMNS if column not in (dataset.headers or [])]
        if missing:
            raise ValueError(
                f"The file has no column {', '.join(missing)}. Its first line must name the columns: "
                f"{', '.join(COLUMNS)}."
            )
        # Rows that repeat a dealer or a first admin are all refused, so that the file says what it
        # means; row numbers count data rows from 1, as the preview does.
        self._rows_by_dealer = defaultdict(list)
        self._rows_by_admin_email = defaultdict(list)
        for number, row in enumerate(dataset.dict, 1):
            self._rows_by_dealer[self._dealer_key(row)].append(number)
            self._rows_by_admin_email[_text(row.get("admin_email")).lower()].append(number)

    @staticmethod
    def _dealer_key(row) -> tuple[str, str]:
        return _text(row.get("name")).casefold(), _text(row.get("country")).upper()

    def import_instance(self, instance, row, **kwargs):
        """Every problem of the row at once, under the name of its column."""
        errors = {}
        for column in REQUIRED_COLUMNS:
            if not _text(row.get(column)):
                errors[column] = f"{column} is required."
        for field in self.get_import_fields():
            if field.column_name in errors:
                continue
            try:
                self.import_field(field, instance, row, **kwargs)
            except ValueError as e:
                errors[field.column_name] = str(e)
        row_number = kwargs.get("row_number")
        if "name" not in errors and "country" not in errors:
            others = [n for n in self._rows_by_dealer[self._dealer_key(row)] if n != row_number]
            if others:
                errors["name"] = (
                    f"{instance.name} ({instance.country}) appears more than once in this file "
                    f"(also row {', '.join(map(str, others))})."
                )
            elif Organisation.objects.filter(name__iexact=instance.name, country=instance.country).exists():
                errors["name"] = f"{instance.name} ({instance.country}) is already in the portal."
        if "admin_email" not in errors:
            others = [n for n in self._rows_by_admin_email[instance.first_admin_email] if n != row_number]
            if others:
                errors["admin_email"] = (
                    f"{instance.first_admin_email} is the first admin of more than one dealer in this file "
                    f"(also row {', '.join(map(str, others))}); a person belongs to one dealer."
                )
        if errors:
            raise ValidationError(errors)

    def after_save_instance(self, instance, row, **kwargs):
        user = kwargs["user"]
        OrganisationEvent.objects.create(
            organisation=instance,
            actor=user,
            kind=OrganisationEvent.Kind.CREATED,
            description="Imported from CSV",
            data={"file_name": kwargs.get("file_name") or "", "row": kwargs.get("row_number")},
        )
        try:
            services.invitation_create(
                organisation=instance,
                email=instance.first_admin_email,
                role=Membership.Role.DEALER_ADMIN,
                invited_by=user,
                # The preview is rolled back, which would drop the email anyway; say so plainly.
                send=not kwargs.get("dry_run", False),
            )
        except services.ServiceError as e:
            raise ValidationError({"admin_email": str(e)}) from e
