from datetime import timedelta

import django_filters
from django import forms
from django.db.models import Q
from django.template.base import render_value_in_context
from django.template.context import Context
from django.template.defaultfilters import stringformat
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeData, mark_safe
from django_filters.constants import EMPTY_VALUES

from dealers.models import Organisation, Region
from deals.models import Product, ProductLine, Registration, RegistrationLine


class FastSelect(forms.Select):
    """Django's Select, with the same HTML written here instead of by its templates.

    The templates include one template per option and another for each option's attributes: a
    partner manager's dealer picker (202 dealers at a million registrations) took 25-30 ms of CPU
    in the review queue, 8 ms here. This writes exactly what django/forms/widgets/select.html,
    select_option.html and attrs.html write (tests/test_list_pages.py compares the two); it does not
    follow a FORM_RENDERER that overrides those templates."""

    def render(self, name, value, attrs=None, renderer=None):
        widget = self.get_context(name, value, attrs)["widget"]
        context = Context(autoescape=True)

        def text(value):  # {{ value }}
            return render_value_in_context(value, context)

        def as_s(value):  # {{ value|stringformat:'s' }} (a safe filter: safe in, safe out)
            formatted = stringformat(value, "s")
            return text(mark_safe(formatted) if isinstance(value, SafeData) else formatted)

        def html_attrs(attrs):  # attrs.html
            return "".join(
                f" {text(key)}" + ("" if value is True else f'="{as_s(value)}"')
                for key, value in attrs.items()
                if value is not False
            )

        parts = [f'<select name="{text(widget["name"])}"{html_attrs(widget["attrs"])}>']
        for group_name, group_choices, _index in widget["optgroups"]:
            if group_name:
                parts.append(f'\n  <optgroup label="{text(group_name)}">')
            for option in group_choices:
                parts.append(
                    f'\n  <option value="{as_s(option["value"])}"'
                    f"{html_attrs(option['attrs'])}>{text(option['label'])}</option>\n"
                )
            if group_name:
                parts.append("\n  </optgroup>")
        parts.append("\n</select>")
        return mark_safe("".join(parts))


def with_line(queryset, **line):
    """The registrations with a line matching `line` (a subquery: no duplicate rows, no distinct)."""
    return queryset.filter(pk__in=RegistrationLine.objects.filter(**line).values("registration_id"))


class RegistrationFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(label="Reference or customer", method="filter_search")
    status = django_filters.ChoiceFilter(choices=Registration.Status.choices, widget=FastSelect)
    decision_stage = django_filters.ChoiceFilter(choices=Registration.Stage.choices, label="Stage", widget=FastSelect)
    expiring = django_filters.BooleanFilter(
        label="Protection ends within 14 days",
        method="filter_expiring",
        widget=forms.CheckboxInput(),
    )
    organisation = django_filters.ModelChoiceFilter(
        queryset=Organisation.objects.none(), label="Dealer", widget=FastSelect
    )
    ordering = django_filters.OrderingFilter(
        widget=FastSelect,
        fields=(
            ("first_submitted_at", "submitted"),
            ("expected_value", "value"),
            ("expected_close_date", "close"),
            ("protected_until", "protected_until"),
        ),
        field_labels={
            "first_submitted_at": "Submitted",
            "expected_value": "Value",
            "expected_close_date": "Close date",
            "protected_until": "Protected until",
        },
    )

    class Meta:
        model = Registration
        fields = ["q", "status", "decision_stage", "expiring", "organisation"]

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        if user.is_vendor_staff:
            # the picker shows names only: hundreds of dealers for staff, loaded as (id, name)
            self.filters["organisation"].queryset = Organisation.objects.visible_to(user).only("id", "name")
        else:
            del self.filters["organisation"]

    def filter_search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(reference__icontains=value) | Q(customer__name__icontains=value))

    def filter_expiring(self, queryset, name, value):
        if not value:
            return queryset
        today = timezone.localdate()
        return queryset.filter(
            status=Registration.Status.APPROVED,
            protected_until__gte=today,
            protected_until__lte=today + timedelta(days=14),
        )

    # Appended for the lists behind the forecast's figures (deals.forecast_views): close date range
    # and product line are shown; region, product and protected are carried by those links only
    # (hidden, so a dealer's list gets no region picker and nobody a select of every product).
    close_from = django_filters.DateFilter(
        field_name="expected_close_date",
        lookup_expr="gte",
        label="Closes from",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    close_to = django_filters.DateFilter(
        field_name="expected_close_date",
        lookup_expr="lte",
        label="Closes by",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    product_line = django_filters.ModelChoiceFilter(
        queryset=ProductLine.objects.all(), label="Product line", method="filter_product_line", widget=FastSelect
    )
    region = django_filters.ModelChoiceFilter(
        field_name="organisation__region", queryset=Region.objects.all(), widget=forms.HiddenInput()
    )
    product = django_filters.ModelChoiceFilter(
        queryset=Product.objects.all(), method="filter_product", widget=forms.HiddenInput()
    )
    protected = django_filters.BooleanFilter(method="filter_protected", widget=forms.HiddenInput())

    def filter_product_line(self, queryset, name, value):
        return with_line(queryset, product__line=value) if value else queryset

    def filter_product(self, queryset, name, value):
        return with_line(queryset, product=value) if value else queryset

    def filter_protected(self, queryset, name, value):
        """Protected today: approved with the protection running (the nightly job has not yet
        expired a protection that ended yesterday)."""
        if not value:
            return queryset
        return queryset.filter(status=Registration.Status.APPROVED, protected_until__gte=timezone.localdate())


class ReviewQueueFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=[(s, Registration.Status(s).label) for s in Registration.QUEUE_STATUSES], widget=FastSelect
    )
    organisation = django_filters.ModelChoiceFilter(
        queryset=Organisation.objects.none(), label="Dealer", widget=FastSelect
    )
    overdue = django_filters.BooleanFilter(label="Overdue only", method="filter_overdue", widget=forms.CheckboxInput())

    class Meta:
        model = Registration
        fields = ["status", "organisation", "overdue"]

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["organisation"].queryset = Organisation.objects.visible_to(user).only("id", "name")

    def filter_overdue(self, queryset, name, value):
        if not value:
            return queryset
        return queryset.filter(status=Registration.Status.SUBMITTED, review_due_at__lte=timezone.now())

    @property
    def narrows(self) -> bool:
        """Whether a filter narrowed the queue: a value in some field (each filter here passes the
        queue on unchanged for an empty value or an unticked box; an invalid value is not applied)."""
        if not self.is_bound:
            return False
        self.qs  # noqa: B018  (validates the form, as filtering does)
        return any(value not in EMPTY_VALUES and value is not False for value in self.form.cleaned_data.values())


class SearchInput(forms.TextInput):
    input_type = "search"


class ForecastFilter(django_filters.FilterSet):
    """The forecast's filters (deals.forecast_views). The product line narrows the lines the
    forecast sums, not only the registrations: the view passes it on to deals.forecast.

    The dealer: a viewer who sees at most DEALERS_LISTED dealers chooses from all of them (a partner
    manager: 202 at a million registrations). One who sees more (a channel admin: 10,000, a <select>
    that made the page 820 KB and took 35 ms to write) finds them by name first: `dealer_search`
    lists the dealers whose name contains it under Dealer (the first MATCHES_LISTED) and chooses the
    dealer it matches when it matches one only. organisation=<pk> (the links of other pages) works
    the same either way, and chooses only among the dealers the viewer sees."""

    DEALERS_LISTED = 500
    MATCHES_LISTED = 100

    region = django_filters.ModelChoiceFilter(
        field_name="organisation__region", queryset=Region.objects.none(), label="Region"
    )
    dealer_search = django_filters.CharFilter(
        label="Find a dealer",
        method="filter_dealer_search",
        widget=SearchInput,
        help_text="Part of a dealer's name: Filter lists the dealers that match under Dealer.",
    )
    organisation = django_filters.ModelChoiceFilter(queryset=Organisation.objects.none(), label="Dealer")
    product_line = django_filters.ModelChoiceFilter(
        queryset=ProductLine.objects.all(), label="Product line", method="filter_product_line"
    )

    class Meta:
        model = Registration
        fields = ["region", "dealer_search", "organisation", "product_line"]

    def __init__(self, data=None, *args, user, **kwargs):
        visible = Organisation.objects.visible_to(user)
        self.search = (data or {}).get("dealer_search", "").strip()
        # (pk, name) of the dealers whose name contains the search, by name: one more than listed
        self.matches: list[tuple[int, str]] = []
        if self.search:
            found = visible.filter(name__icontains=self.search).values_list("pk", "name")
            self.matches = list(found[: self.MATCHES_LISTED + 1])
            if len(self.matches) == 1:
                # the one dealer it matches is the choice; the search has done its work
                data = data.copy()
                data["organisation"] = str(self.matches[0][0])
                data.pop("dealer_search", None)
        super().__init__(data, *args, **kwargs)
        self.filters["organisation"].queryset = visible
        self.filters["region"].queryset = Region.objects.filter(pk__in=visible.values("region_id"))

    def filter_dealer_search(self, queryset, name, value):
        return queryset  # it lists dealers to choose from (dealer_choices); the choice filters

    def filter_product_line(self, queryset, name, value):
        return with_line(queryset, product__line=value) if value else queryset

    def dealer_choices(self) -> tuple[list[tuple[int, str]], bool]:
        """The (pk, name) pairs the Dealer picker lists, by name, and whether the viewer finds the
        dealers by name (dealer_search) rather than choosing from all of them; one query. When
        finding, the picker lists the chosen dealer and the search's matches, and the form says how
        many matched. Call after validating the form."""
        form = self.form
        listed = list(self.filters["organisation"].queryset.values_list("pk", "name")[: self.DEALERS_LISTED + 1])
        if len(listed) <= self.DEALERS_LISTED:
            return listed, False
        chosen = form.cleaned_data.get("organisation") if hasattr(form, "cleaned_data") else None
        choices = list(self.matches[: self.MATCHES_LISTED])
        if chosen is not None and chosen.pk not in {pk for pk, _ in choices}:
            choices.insert(0, (chosen.pk, chosen.name))
        field = form["organisation"]  # the bound field: validating the form read the field's help text
        if not self.search or len(self.matches) == 1:
            field.help_text = "" if chosen else "Find a dealer by name to choose one."
        elif not self.matches:
            form.add_error("dealer_search", f"No dealer's name contains “{self.search}”.")
        elif len(self.matches) > self.MATCHES_LISTED:
            field.help_text = format_html(
                "More than {} dealers' names contain “{}”: the first {} are listed. "
                "Type more of the name to narrow them.",
                self.MATCHES_LISTED,
                self.search,
                self.MATCHES_LISTED,
            )
        else:
            field.help_text = format_html(
                "{} dealers' names contain “{}”: choose one and press Filter.", len(self.matches), self.search
            )
        return choices, True
