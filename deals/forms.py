import re
from datetime import date
from decimal import Decimal

from django import forms
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from dealers.countries import COUNTRY_CHOICES
from deals.models import Customer, Product, Registration

# VAT numbers per country (the EU formats the channel sells in; others: 4–14 letters/digits).
VAT_FORMATS = {
    "NL": r"NL\d{9}B\d{2}",
    "BE": r"BE[01]\d{9}",
    "DE": r"DE\d{9}",
    "LU": r"LU\d{8}",
    "FR": r"FR[0-9A-Z]{2}\d{9}",
    "AT": r"ATU\d{8}",
    "GB": r"GB(\d{9}|\d{12})",
}
POSTCODE_FORMATS = {
    "NL": r"\d{4} ?[A-Z]{2}",
    "BE": r"\d{4}",
    "LU": r"(L-?)?\d{4}",
    "DE": r"\d{5}",
    "FR": r"\d{5}",
    "AT": r"\d{4}",
    "GB": r"[A-Z]{1,2}\d[A-Z\d]? ?\d[A-Z]{2}",
}


def normalise_vat(value: str) -> str:
    return re.sub(r"[\s.\-]", "", value).upper()


class DateInput(forms.DateInput):
    input_type = "date"

    def __init__(self, **kwargs):
        super().__init__(format="%Y-%m-%d", **kwargs)


class CustomerForm(forms.Form):
    """Who the deal is for. A dealer may pick one of its own earlier customers instead of typing."""

    existing = forms.ModelChoiceField(
        queryset=Customer.objects.none(),
        required=False,
        label="Earlier customer",
        empty_label="— a new customer —",
        help_text="Only your own earlier customers are listed.",
    )
    name = forms.CharField(label="Customer name", max_length=200, required=False)
    city = forms.CharField(max_length=100, required=False)
    postcode = forms.CharField(max_length=12, required=False)
    country = forms.ChoiceField(choices=COUNTRY_CHOICES, initial="NL")
    website = forms.CharField(max_length=200, required=False, label="Customer website")
    vat_number = forms.CharField(max_length=20, required=False, label="VAT number")
    company_number = forms.CharField(max_length=20, required=False, label="Chamber of Commerce number")

    def __init__(self, *args, organisation, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["existing"].queryset = Customer.objects.filter(organisation=organisation).order_by("name")

    def clean(self):
        data = super().clean()
        if data.get("existing"):
            return data
        for name in ("name", "city", "postcode"):
            if not (data.get(name) or "").strip():
                self.add_error(name, "Required for a new customer.")
        country = data.get("country")
        postcode = (data.get("postcode") or "").strip().upper()
        if postcode and country in POSTCODE_FORMATS and not re.fullmatch(POSTCODE_FORMATS[country], postcode):
            self.add_error("postcode", f"This is not a valid postcode for {dict(COUNTRY_CHOICES)[country]}.")
        else:
            data["postcode"] = postcode
        vat = normalise_vat(data.get("vat_number") or "")
        if vat:
            pattern = VAT_FORMATS.get(country, r"[A-Z]{2}[0-9A-Z]{2,12}")
            if not re.fullmatch(pattern, vat):
                self.add_error("vat_number", "This is not a valid VAT number for the customer's country.")
            data["vat_number"] = vat
        return data


class RegistrationDetailsForm(forms.Form):
    contact_name = forms.CharField(label="Contact person", max_length=200)
    contact_email = forms.EmailField(label="Contact email", max_length=254)  # the column's length
    contact_phone = forms.CharField(label="Contact phone", max_length=40, required=False)
    expected_close_date = forms.DateField(widget=DateInput())
    decision_stage = forms.ChoiceField(
        choices=[("", "—")] + list(Registration.Stage.choices), required=False, label="Decision stage"
    )
    competitors = forms.CharField(max_length=300, required=False, label="Competitors in the deal")
    next_steps = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

    def clean_contact_phone(self):
        phone = self.cleaned_data["contact_phone"].strip()
        if phone and not re.fullmatch(r"\+?[\d\s\-().]{6,20}", phone):
            raise ValidationError("Use digits, spaces and an optional leading +.")
        return phone

    def clean_expected_close_date(self):
        value = self.cleaned_data["expected_close_date"]
        if value < timezone.localdate():
            raise ValidationError("The expected close date lies in the past.")
        if value.year > timezone.localdate().year + 10:
            raise ValidationError("That is more than ten years away.")
        return value


class RegistrationUpdateForm(forms.Form):
    expected_close_date = forms.DateField(widget=DateInput())
    decision_stage = forms.ChoiceField(
        choices=[("", "—")] + list(Registration.Stage.choices), required=False, label="Decision stage"
    )
    competitors = forms.CharField(max_length=300, required=False)
    next_steps = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)

    def __init__(self, *args, current_close_date: date | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.current_close_date = current_close_date

    def clean_expected_close_date(self):
        value = self.cleaned_data["expected_close_date"]
        if value != self.current_close_date and value < timezone.localdate():
            raise ValidationError("The expected close date lies in the past.")
        if value != self.current_close_date and value.year > timezone.localdate().year + 10:
            raise ValidationError("That is more than ten years away.")
        return value


class ProductSelect(forms.Select):
    """Options carry the list price, so the page can prefill the value without a round trip."""

    def __init__(self, *args, prices=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._prices = prices or {}  # or a function that returns them, called when first needed

    @property
    def prices(self) -> dict:
        if callable(self._prices):
            self._prices = self._prices()
        return self._prices

    def create_option(self, name, value, *args, **kwargs):
        option = super().create_option(name, value, *args, **kwargs)
        key = getattr(value, "value", value)
        if key in self.prices:
            option["attrs"]["data-price"] = str(self.prices[key])
        return option


class FiniteDecimalField(forms.DecimalField):
    """A DecimalField that refuses NaN and Infinity while converting, not only when validating:
    Django's has_changed() compares the converted value with the initial one, and a signalling NaN
    ("sNaN") raises InvalidOperation there, a server error on the edit form's lines."""

    def to_python(self, value):
        value = super().to_python(value)
        if value is not None and not value.is_finite():
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return value


def _product_pk(value):
    """The pk that a lookup of Product by `value` asks for (int(), as the database lookup converts it)."""
    return Product._meta.pk.get_prep_value(value)


class ProductCatalogue:
    """The registrable products that a formset's lines choose from, read when first needed and once:
    every one of them to show the options (with their list prices), and to check a submission only
    the ones posted (one query for all its lines). A product is accepted on a line exactly when it
    is among Product.objects.registrable(), as ModelChoiceField's own lookup would have it."""

    def __init__(self, posted=()):
        low, high = connection.ops.integer_field_range(Product._meta.pk.get_internal_type())
        self._posted = set()
        for value in posted:
            try:
                pk = _product_pk(value)
            except (TypeError, ValueError):
                continue  # refused as "not one of the choices" without a query
            # beyond the column's range no product has it (and SQLite's driver would overflow)
            if pk is not None and low <= pk <= high:
                self._posted.add(pk)
        self._found: dict[int, Product] | None = None  # the posted ones
        self._all: list[Product] | None = None
        self._by_pk: dict[int, Product] = {}  # all of them

    @classmethod
    def for_data(cls, data, prefix: str) -> "ProductCatalogue":
        """For a formset bound to `data` (None: unbound): the products posted on its lines."""
        pattern = re.compile(rf"{re.escape(prefix)}-\d+-product")
        posted = []
        for key in data or ():
            if isinstance(key, str) and pattern.fullmatch(key):
                posted.extend(data.getlist(key) if hasattr(data, "getlist") else [data[key]])
        return cls(posted)

    def all(self) -> list[Product]:
        if self._all is None:
            self._all = list(Product.objects.registrable().select_related("line"))
            self._by_pk = {product.pk: product for product in self._all}
        return self._all

    def prices(self) -> dict:
        return {product.pk: product.list_price for product in self.all()}

    def get(self, value) -> Product | None:
        """The registrable product that `value` (a posted choice) names, or None. ValueError or
        TypeError: `value` is no pk at all."""
        pk = _product_pk(value)
        if self._all is None and pk in self._posted:
            if self._found is None:
                found = Product.objects.registrable().select_related("line").filter(pk__in=self._posted)
                self._found = {product.pk: product for product in found}
            return self._found.get(pk)
        self.all()  # a value that was not posted (a form used on its own): among them all
        return self._by_pk.get(pk)


class _ProductChoices(forms.models.ModelChoiceIterator):
    """The options of a ProductChoiceField, from its catalogue, in the queryset's order."""

    def __iter__(self):
        if self.field.empty_label is not None:
            yield ("", self.field.empty_label)
        for product in self.field.catalogue.all():
            yield self.choice(product)

    def __len__(self):
        return len(self.field.catalogue.all()) + (1 if self.field.empty_label is not None else 0)

    def __bool__(self):
        return self.field.empty_label is not None or bool(self.field.catalogue.all())


class ProductChoiceField(forms.ModelChoiceField):
    """A ModelChoiceField over the formset's ProductCatalogue: its options and the product posted on
    each line come from there, not from a query per line (a submission of 20 lines asked the
    database 20 times, and read the whole catalogue besides). The values accepted and the errors
    are those of ModelChoiceField over Product.objects.registrable()."""

    iterator = _ProductChoices

    def __init__(self, *args, **kwargs):
        self.catalogue = ProductCatalogue()
        super().__init__(*args, **kwargs)

    def to_python(self, value):
        if value in self.empty_values:
            return None
        self.validate_no_null_characters(value)
        if isinstance(value, Product):
            value = value.pk
        try:
            product = self.catalogue.get(value)
        except (ValueError, TypeError):
            product = None
        if product is None:
            raise ValidationError(self.error_messages["invalid_choice"], code="invalid_choice", params={"value": value})
        return product


class LineForm(forms.Form):
    # what a line may hold; read through the formset's ProductCatalogue (see ProductChoiceField)
    product = ProductChoiceField(queryset=Product.objects.registrable().select_related("line"), required=False)
    quantity = forms.IntegerField(min_value=1, max_value=1_000_000, required=False)
    value = FiniteDecimalField(
        max_digits=14,
        decimal_places=2,
        min_value=Decimal("0.01"),
        required=False,
        label="Value (EUR)",
        help_text="Leave empty for list price × quantity.",
    )

    def __init__(self, *args, products: ProductCatalogue | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        if products is None:  # a form on its own, not in a formset
            posted = self.data.get(self.add_prefix("product")) if self.is_bound else None
            products = ProductCatalogue([posted] if posted is not None else [])
        field = self.fields["product"]
        field.catalogue = products  # the options and the posted choice: from there, no query per line
        field.label_from_instance = lambda p: (
            f"{p.name} ({p.sku})" + (" — direct sales only, needs review" if p.line.direct_only else "")
        )
        field.widget = ProductSelect(prices=products.prices)  # read when the page is shown
        field.widget.choices = field.choices

    def clean(self):
        data = super().clean()
        product, quantity = data.get("product"), data.get("quantity")
        if product and not quantity and "quantity" not in self.errors:
            self.add_error("quantity", "How many?")
        if quantity and not product:
            self.add_error("product", "Choose a product.")
        return data

    @property
    def is_blank(self) -> bool:
        data = getattr(self, "cleaned_data", {})
        return not data.get("product") and not data.get("quantity") and not data.get("value")


class BaseLineFormSet(forms.BaseFormSet):
    def __init__(self, data=None, *args, prefix=None, **kwargs):
        super().__init__(data, *args, prefix=prefix, **kwargs)
        # one catalogue for every line: read once for the page, or only the posted products for a submission
        self.products = ProductCatalogue.for_data(data if self.is_bound else None, self.prefix)

    def get_form_kwargs(self, index):
        return {"products": self.products}

    @property
    def empty_form(self):
        form = self.form(auto_id=self.auto_id, prefix=self.add_prefix("__prefix__"), products=self.products)
        self.add_fields(form, None)
        return form

    def clean(self):
        if any(self.errors):
            return
        if not self.filled_lines():
            raise ValidationError("Add at least one product line.")

    def filled_lines(self) -> list[dict]:
        return [f.cleaned_data for f in self.forms if getattr(f, "cleaned_data", None) and not f.is_blank]


LineFormSet = forms.formset_factory(LineForm, formset=BaseLineFormSet, extra=0, min_num=1, max_num=50, absolute_max=50)


class ReasonForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), required=False, label="Reason (the dealer sees this)"
    )
    internal_note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, label="Internal note (vendor staff only)"
    )


class DecisionTextForm(forms.Form):
    """The free text posted with a one-step action (withdraw, resubmit, an extension decision, a
    conflict decision). A form so that what no text column stores, a NUL character, is refused with
    a message instead of failing in the database; the services strip and require as they need."""

    reason = forms.CharField(required=False, strip=False, label="Reason")
    note = forms.CharField(required=False, strip=False, label="Note")


class WonForm(forms.Form):
    won_value = FiniteDecimalField(max_digits=14, decimal_places=2, min_value=Decimal("0.01"), label="Won value (EUR)")
    won_date = forms.DateField(widget=DateInput(), label="Date won")


class LostForm(forms.Form):
    lost_reason = forms.ChoiceField(
        choices=[("", "—")] + list(Registration.LostReason.choices), label="Why was it lost?"
    )
    lost_competitor = forms.CharField(max_length=200, required=False, label="Which competitor won (if any)")


class ExtensionForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), label="Why do you need more time?")
