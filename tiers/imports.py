"""The vendor's sales to dealers, imported from its ERP as CSV: revenue for the tiers.

Used by the Sale admin (django-import-export: a dry run shown as a preview with every bad row and
its reason, then a confirmation) and by ``manage.py import_sales FILE`` for the nightly file drop.
Either way the import is all or nothing: one bad row and no sale is saved.

Columns (first line of the file; UTF-8, comma- or semicolon-separated; order and case do not
matter; a column not listed here is refused, so that a misspelt optional column is not silently
ignored):

    erp_line_id             required; the ERP's id of the sales line, at most 64 characters. A line
                            id already in the portal is skipped ("already imported", not an error):
                            re-importing a file, or overlapping files, never count a sale twice (the
                            database's unique constraint holds that too). Its values are not
                            updated; the preview says when the file's differ. The same line id
                            twice in one file is an error on both rows.
    date                    required; YYYY-MM-DD, or DD-MM-YYYY. Not in the future.
    reseller                required; the dealer the deal went through, by VAT number (spaces, dots
                            and case ignored) or by exact name (case ignored). The VAT number wins:
                            a value that is some dealer's VAT number is that dealer, whatever
                            names other dealers have. A name shared by two dealers (in different
                            countries) is refused as ambiguous: use the VAT number. Must be a
                            reseller, not a distributor.
    distributor             optional; the distributor the deal went via, looked up the same way.
                            Must be a distributor.
    customer_name           required
    customer_city           required
    customer_country        required; ISO 3166-1 alpha-2 (NL, BE, LU, …)
    customer_vat            optional; stored normalised (upper case, no spaces or dots)
    product_line            required; a product line's code (heat-pumps) or name, case ignored
    amount                  required; euros with a dot or a comma as the decimal separator and at
                            most two decimals (12900.00, 12900,5, 12900). No thousands separators
                            or currency signs: "1.234" is refused rather than guessed. Negative
                            amounts are credit notes and are imported: they reduce the revenue.
    registration_reference  optional; the dealer's registration reference (REG-2026-000123)

Revenue counts for the reseller, and separately for the distributor. Each new sale is linked to a
registration by ``link_registration`` (below); a reference that does not link is reported in the
summary, not refused.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.db.models import Exists, OuterRef
from django.utils import timezone
from import_export import resources, widgets
from import_export.fields import Field
from import_export.formats.base_formats import CSV

from dealers.countries import COUNTRIES
from dealers.models import Organisation
from deals.matching import match, normalize_vat
from deals.models import ProductLine, Registration, RegistrationLine
from tiers.models import Sale

COLUMNS = [
    "erp_line_id",
    "date",
    "reseller",
    "distributor",
    "customer_name",
    "customer_city",
    "customer_country",
    "customer_vat",
    "product_line",
    "amount",
    "registration_reference",
]
REQUIRED_COLUMNS = [
    "erp_line_id",
    "date",
    "reseller",
    "customer_name",
    "customer_city",
    "customer_country",
    "product_line",
    "amount",
]
# The resource's fields, in the order of COLUMNS (the date is the model's sold_on), then what the
# import did with the row.
FIELDS = [("sold_on" if column == "date" else column) for column in COLUMNS] + ["outcome"]
MAX_LENGTHS = {"erp_line_id": 64, "customer_name": 200, "customer_city": 100, "registration_reference": 20}

# A registration that was approved: protected now, or it was and then was won or ran out.
LINKABLE_STATUSES = (Registration.Status.APPROVED, Registration.Status.WON, Registration.Status.EXPIRED)

_ISO_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_DUTCH_DATE = re.compile(r"^(\d{1,2})-(\d{1,2})-(\d{4})$")
_AMOUNT = re.compile(r"^-?\d{1,12}(?:[.,]\d{1,2})?$")


class NotAllowed(Exception):
    pass


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _header(value) -> str:
    return _text(value).lstrip("\ufeff").strip().lower().replace(" ", "_")


class SalesCSV(CSV):
    """CSV with a comma or (as spreadsheets in the Netherlands and Belgium write it) a semicolon
    between the columns, whichever the first line uses more."""

    def create_dataset(self, in_stream, **kwargs):
        if isinstance(in_stream, bytes):
            in_stream = in_stream.decode(self.encoding or "utf-8-sig")
        first_line = in_stream.lstrip("\ufeff").split("\n", 1)[0]
        kwargs.setdefault("delimiter", ";" if first_line.count(";") > first_line.count(",") else ",")
        return super().create_dataset(in_stream, **kwargs)


# --- parsing one value -----------------------------------------------------------------------------


def parse_date(value: str, today: date | None = None) -> date:
    found = _ISO_DATE.match(value)
    parts = (found.group(1), found.group(2), found.group(3)) if found else None
    if parts is None and (found := _DUTCH_DATE.match(value)):
        parts = (found.group(3), found.group(2), found.group(1))
    try:
        if parts is None:
            raise ValueError
        result = date(*map(int, parts))
    except ValueError:
        raise ValueError(f"“{value}” is not a date: use YYYY-MM-DD (or DD-MM-YYYY).") from None
    if result > (today or timezone.localdate()):
        raise ValueError(f"{result:%Y-%m-%d} is in the future.")
    return result


def parse_amount(value: str) -> Decimal:
    compact = value.replace(" ", "").replace("\u00a0", "")
    if not _AMOUNT.match(compact):
        raise ValueError(
            f"“{value}” is not an amount: write euros with a dot or a comma before at most two decimals, "
            "without thousands separators or currency sign (e.g. 12900.00 or -189,50)."
        )
    try:
        return Decimal(compact.replace(",", "."))
    except InvalidOperation:  # pragma: no cover - the pattern only lets numbers through
        raise ValueError(f"“{value}” is not an amount.") from None


class _Directory:
    """The dealers and product lines an import refers to, loaded once per file."""

    def __init__(self):
        self.by_vat: dict[str, list[Organisation]] = defaultdict(list)
        self.by_name: dict[str, list[Organisation]] = defaultdict(list)
        for organisation in Organisation.objects.only("pk", "name", "kind", "vat_number", "country"):
            if organisation.vat_number:
                self.by_vat[normalize_vat(organisation.vat_number)].append(organisation)
            self.by_name[organisation.name.strip().casefold()].append(organisation)
        self.lines_by_code: dict[str, ProductLine] = {}
        self.lines_by_name: dict[str, ProductLine] = {}
        for line in ProductLine.objects.all():
            self.lines_by_code[line.code.casefold()] = line
            self.lines_by_name[line.name.strip().casefold()] = line

    def dealer(self, value: str, kind: str, column: str) -> Organisation:
        """By VAT number first, then by exact name; of the given kind."""
        found = self.by_vat.get(normalize_vat(value)) or self.by_name.get(value.casefold()) or []
        if not found:
            raise ValueError(f"No dealer has the VAT number or name “{value}”.")
        if len(found) > 1:
            raise ValueError(
                f"“{value}” is more than one dealer ({', '.join(f'{o.name} ({o.country})' for o in found)}): "
                "use the VAT number."
            )
        organisation = found[0]
        if organisation.kind != kind:
            label = Organisation.Kind(organisation.kind).label.lower()
            raise ValueError(f"{organisation.name} is a {label}, not a {kind}; it cannot be the {column}.")
        return organisation

    def product_line(self, value: str) -> ProductLine:
        line = self.lines_by_code.get(value.casefold()) or self.lines_by_name.get(value.casefold())
        if line is None:
            codes = ", ".join(sorted(code for code in self.lines_by_code))
            raise ValueError(f"Unknown product line “{value}”: use a product line's code ({codes}) or name.")
        return line


# --- linking a sale to a registration --------------------------------------------------------------


def approved_on(registration: Registration) -> date | None:
    """The (local) day the registration was approved."""
    return timezone.localtime(registration.decided_at).date() if registration.decided_at else None


def link_registration(sale: Sale) -> tuple[Registration | None, bool]:
    """The registration a sale came through, and whether it was approved on or before the day of
    the sale (what registration compliance counts). Reads only.

    1. By the sale's registration reference: the reseller's own registration with that reference,
       approved (status approved, won or expired). Approved after the sale: linked, but not
       registered before the sale. Another dealer's, an unknown or a never-approved reference does
       not link; the customer match below is tried instead.
    2. Else by customer: the reseller's approved registrations with a line in the sale's product
       line whose protection covered the day of the sale (approved on or before it, protected
       until on or after it) and whose customer is the sale's customer (deals.matching); the
       earliest approved wins. The candidates are bounded by reseller, status, dates and product
       line; only those are compared by name, VAT number and city.
    """
    approved = Registration.objects.filter(organisation_id=sale.reseller_id, status__in=LINKABLE_STATUSES)
    reference = _text(sale.registration_reference).upper()
    if reference:
        registration = approved.filter(reference=reference).first()
        if registration is not None and registration.decided_at is not None:
            return registration, approved_on(registration) <= sale.sold_on
    day_after_sale = timezone.make_aware(datetime.combine(sale.sold_on + timedelta(days=1), time.min))
    candidates = (
        approved.filter(decided_at__lt=day_after_sale, protected_until__gte=sale.sold_on)
        .filter(
            Exists(RegistrationLine.objects.filter(registration=OuterRef("pk"), product__line_id=sale.product_line_id))
        )
        .select_related("customer")
        .order_by("decided_at", "pk")
    )
    record = {
        "name": sale.customer_name,
        "city": sale.customer_city,
        "country": sale.customer_country,
        "vat": sale.customer_vat,
    }
    for registration in candidates:
        if match(record, registration.customer.as_match_record()).is_same_customer:
            return registration, True
    return None, False


# --- the resource ----------------------------------------------------------------------------------


class _Render(widgets.Widget):
    """Shows a value in the preview; the import itself is parsed in import_instance()."""

    def render(self, value, obj=None, **kwargs):
        if value is None:
            return ""
        if isinstance(value, date):
            return f"{value:%Y-%m-%d}"
        return str(value)


def _field(attribute: str, column: str, **kwargs) -> Field:
    return Field(attribute=attribute, column_name=column, widget=_Render(), **kwargs)


class SaleImportResource(resources.ModelResource):
    """Creates sales (never updates one) and links each to its registration."""

    erp_line_id = _field("erp_line_id", "erp_line_id")
    sold_on = _field("sold_on", "date")
    reseller = _field("reseller", "reseller")
    distributor = _field("distributor", "distributor")
    customer_name = _field("customer_name", "customer_name")
    customer_city = _field("customer_city", "customer_city")
    customer_country = _field("customer_country", "customer_country")
    customer_vat = _field("customer_vat", "customer_vat")
    product_line = _field("product_line", "product_line")
    amount = _field("amount", "amount")
    registration_reference = _field("registration_reference", "registration_reference")
    # Not a column of the file: what the import did with the row, shown in the preview.
    outcome = _field("import_outcome", "linked registration", readonly=True)

    class Meta:
        model = Sale
        fields = FIELDS
        import_order = FIELDS
        import_id_fields = ["erp_line_id"]
        force_init_instance = True  # create only: an existing line is skipped, never loaded and updated
        clean_model_instances = False  # every value is checked in import_instance()
        use_transactions = True

    def get_user_visible_fields(self):
        return [field for field in self.get_import_fields() if not field.readonly]

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
        """``user`` (a channel admin) or ``command=True`` (the management command) is required."""
        self.summary = Counter()
        self.references_not_linked: list[int] = []
        self.changed_existing: list[int] = []
        try:
            self._check_file(dataset, user=kwargs.get("user"), command=kwargs.get("command", False))
        except (NotAllowed, ValueError) as e:
            result = self.get_result_class()()
            result.diff_headers = self.get_diff_headers()
            result.total_rows = len(dataset)
            self.handle_import_error(result, e, raise_errors)
            result.sales_summary = self.sales_summary()
            return result
        # All or nothing, whoever calls: import-export would otherwise commit the good rows of a
        # file with bad ones (its admin checks that only in the dry run, and the database can
        # change between the preview and the confirmation).
        result = super().import_data(
            dataset,
            dry_run=dry_run,
            raise_errors=raise_errors,
            use_transactions=True,
            collect_failed_rows=collect_failed_rows,
            rollback_on_validation_errors=True,
            **kwargs,
        )
        result.sales_summary = self.sales_summary()
        return result

    def sales_summary(self) -> dict:
        return {
            "new": self.summary["new"],
            "already_imported": self.summary["already_imported"],
            "linked": self.summary["linked"],
            "registered_before_sale": self.summary["registered_before_sale"],
            "references_not_linked": list(self.references_not_linked),
            "changed_existing": list(self.changed_existing),
        }

    def _check_file(self, dataset, *, user, command: bool) -> None:
        """Refuse the whole file before any row is read; put its columns in a fixed order (the
        preview's error table lists the values under these headers) and index it."""
        if not command and (user is None or not user.is_channel_admin):
            raise NotAllowed("Only a channel admin can import sales.")
        headers = [_header(h) for h in (dataset.headers or [])]
        missing = [column for column in REQUIRED_COLUMNS if column not in headers]
        unknown = [h or "(empty)" for h in headers if h not in COLUMNS]
        repeated = sorted({h for h in headers if h and headers.count(h) > 1})
        if missing or unknown or repeated:
            problems = []
            if missing:
                problems.append(f"The file has no column {', '.join(missing)}.")
            if unknown:
                problems.append(f"Unknown column {', '.join(unknown)}.")
            if repeated:
                problems.append(f"Column {', '.join(repeated)} appears more than once.")
            raise ValueError(
                " ".join(problems) + f" Its first line must name the columns: {', '.join(COLUMNS)} "
                f"(optional: {', '.join(c for c in COLUMNS if c not in REQUIRED_COLUMNS)})."
            )
        rows = [dict(zip(headers, values, strict=True)) for values in dataset]
        while rows and not any(_text(v) for v in rows[-1].values()):
            rows.pop()  # blank lines a spreadsheet leaves at the end
        dataset.wipe()
        dataset.headers = list(COLUMNS)
        for row in rows:
            dataset.append([row.get(column, "") for column in COLUMNS])

        self._directory = _Directory()
        self._rows_by_line_id = defaultdict(list)
        for number, row in enumerate(rows, 1):
            self._rows_by_line_id[_text(row.get("erp_line_id"))].append(number)
        line_ids = [line_id for line_id in self._rows_by_line_id if line_id]
        self._existing = {}
        for start in range(0, len(line_ids), 500):
            for sale in Sale.objects.filter(erp_line_id__in=line_ids[start : start + 500]).only(
                "erp_line_id", "sold_on", "reseller_id", "product_line_id", "amount"
            ):
                self._existing[sale.erp_line_id] = sale

    def import_instance(self, instance, row, **kwargs):
        """Every problem of the row at once, under the name of its column."""
        row_number = kwargs.get("row_number")
        values = {column: _text(row.get(column)) for column in COLUMNS}
        errors = {}
        for column in REQUIRED_COLUMNS:
            if not values[column]:
                errors[column] = f"{column} is required."
        for column, limit in MAX_LENGTHS.items():
            if column not in errors and len(values[column]) > limit:
                errors[column] = f"{column} is longer than {limit} characters."

        def parse(column, attribute, parser):
            if column in errors or not values[column]:
                return
            try:
                setattr(instance, attribute, parser(values[column]))
            except ValueError as e:
                errors[column] = str(e)

        directory = self._directory
        instance.erp_line_id = values["erp_line_id"]
        parse("date", "sold_on", parse_date)
        parse("reseller", "reseller", lambda v: directory.dealer(v, Organisation.Kind.RESELLER, "reseller"))
        parse("distributor", "distributor", lambda v: directory.dealer(v, Organisation.Kind.DISTRIBUTOR, "distributor"))
        instance.customer_name = values["customer_name"]
        instance.customer_city = values["customer_city"]
        parse("customer_country", "customer_country", self._country)
        parse("customer_vat", "customer_vat", lambda v: self._vat(v, values["customer_country"]))
        parse("product_line", "product_line", directory.product_line)
        parse("amount", "amount", parse_amount)
        instance.registration_reference = values["registration_reference"].upper()

        line_id = instance.erp_line_id
        others = [n for n in self._rows_by_line_id.get(line_id, []) if n != row_number]
        if line_id and others:
            errors["erp_line_id"] = (
                f"ERP line {line_id} appears more than once in this file (also row {', '.join(map(str, others))})."
            )
        elif line_id in self._existing:
            # Skipped by skip_row(), whatever else is wrong with it: this line was accepted before.
            instance.already_imported = True
            existing = self._existing[line_id]
            differs = [
                column
                for column, attribute in [("date", "sold_on"), ("amount", "amount")]
                if column not in errors and getattr(instance, attribute, None) != getattr(existing, attribute)
            ] + [
                column
                for column, attribute in [("reseller", "reseller_id"), ("product_line", "product_line_id")]
                if column not in errors and getattr(instance, attribute, None) != getattr(existing, attribute)
            ]
            instance.import_outcome = "already imported: skipped"
            if differs:
                instance.import_outcome += f" (this file has another {' and '.join(differs)}; left as it was)"
                self.changed_existing.append(row_number)
            self.summary["already_imported"] += 1
            return
        if errors:
            raise ValidationError(errors)

    @staticmethod
    def _country(value: str) -> str:
        country = value.upper()
        if country not in COUNTRIES:
            raise ValueError(f"Unknown country “{value}”: use a two-letter ISO code such as NL, BE or LU.")
        return country

    @staticmethod
    def _vat(value: str, country: str) -> str:
        vat = normalize_vat(value, country if country.upper() in COUNTRIES else "")
        if len(vat) > 24:
            raise ValueError("customer_vat is longer than 24 characters.")
        return vat

    def skip_row(self, instance, original, row, import_validation_errors=None):
        return getattr(instance, "already_imported", False)

    def before_save_instance(self, instance, row, **kwargs):
        registration, before = link_registration(instance)
        instance.registration = registration
        instance.registered_before_sale = before
        self.summary["new"] += 1
        if registration is None:
            instance.import_outcome = "—"
        else:
            self.summary["linked"] += 1
            self.summary["registered_before_sale"] += before
            when = "before" if before else "after"
            instance.import_outcome = (
                f"{registration.reference} (approved {approved_on(registration)}, {when} the sale)"
            )
        if instance.registration_reference and (
            registration is None or registration.reference != instance.registration_reference
        ):
            self.references_not_linked.append(kwargs.get("row_number"))


# --- reporting ---------------------------------------------------------------------------------------


def _rows(numbers: list[int]) -> str:
    return ("row " if len(numbers) == 1 else "rows ") + ", ".join(map(str, numbers))


def summary_text(summary: dict, *, preview: bool = False) -> str:
    """ "Imported 3 sales, 2 of them linked to a registration (1 approved before the sale); 1 already
    imported, skipped." — or, for a preview or dry run, what the import would do."""
    new, linked, before = summary["new"], summary["linked"], summary["registered_before_sale"]
    text = f"{'To import' if preview else 'Imported'}: {new} sale{'' if new == 1 else 's'}"
    if new:
        text += f", {linked} of them linked to a registration ({before} approved before the sale)"
    text += f"; {summary['already_imported']} already imported, skipped."
    if summary["changed_existing"]:
        text += (
            f" In {_rows(summary['changed_existing'])} an already imported line has other values than before: "
            "it is left as it was (send corrections as new lines, e.g. a credit note)."
        )
    if summary["references_not_linked"]:
        text += (
            f" The registration reference in {_rows(summary['references_not_linked'])} does not link (unknown, "
            "another dealer's, or never approved)."
        )
    return text


def error_lines(result) -> list[str]:
    """Every reason a file was refused, one line each; rows count data rows from 1 (line 1 of the
    file is the header)."""
    lines = [str(error.error) for error in result.base_errors]
    for number, errors in result.row_errors():
        lines += [f"Row {number} (line {number + 1}): {error.error}" for error in errors]
    for row in result.invalid_rows:
        for column, messages in row.error_dict.items():
            lines += [f"Row {row.number} (line {row.number + 1}), {column}: {message}" for message in messages]
    return lines
