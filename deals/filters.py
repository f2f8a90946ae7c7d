from datetime import timedelta

import django_filters
from django import forms
from django.db.models import Q
from django.utils import timezone

from dealers.models import Organisation, Region
from deals.models import Product, ProductLine, Registration, RegistrationLine


def with_line(queryset, **line):
    """The registrations with a line matching `line` (a subquery: no duplicate rows, no distinct)."""
    return queryset.filter(pk__in=RegistrationLine.objects.filter(**line).values("registration_id"))


class RegistrationFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(label="Reference or customer", method="filter_search")
    status = django_filters.ChoiceFilter(choices=Registration.Status.choices)
    decision_stage = django_filters.ChoiceFilter(choices=Registration.Stage.choices, label="Stage")
    expiring = django_filters.BooleanFilter(
        label="Protection ends within 14 days",
        method="filter_expiring",
        widget=forms.CheckboxInput(),
    )
    organisation = django_filters.ModelChoiceFilter(queryset=Organisation.objects.none(), label="Dealer")
    ordering = django_filters.OrderingFilter(
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
            self.filters["organisation"].queryset = Organisation.objects.visible_to(user)
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
        queryset=ProductLine.objects.all(), label="Product line", method="filter_product_line"
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
        choices=[(s, Registration.Status(s).label) for s in Registration.QUEUE_STATUSES]
    )
    organisation = django_filters.ModelChoiceFilter(queryset=Organisation.objects.none(), label="Dealer")
    overdue = django_filters.BooleanFilter(label="Overdue only", method="filter_overdue", widget=forms.CheckboxInput())

    class Meta:
        model = Registration
        fields = ["status", "organisation", "overdue"]

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["organisation"].queryset = Organisation.objects.visible_to(user)

    def filter_overdue(self, queryset, name, value):
        if not value:
            return queryset
        return queryset.filter(status=Registration.Status.SUBMITTED, review_due_at__lte=timezone.now())


class ForecastFilter(django_filters.FilterSet):
    """The forecast's filters (deals.forecast_views). The product line narrows the lines the
    forecast sums, not only the registrations: the view passes it on to deals.forecast."""

    region = django_filters.ModelChoiceFilter(
        field_name="organisation__region", queryset=Region.objects.none(), label="Region"
    )
    organisation = django_filters.ModelChoiceFilter(queryset=Organisation.objects.none(), label="Dealer")
    product_line = django_filters.ModelChoiceFilter(
        queryset=ProductLine.objects.all(), label="Product line", method="filter_product_line"
    )

    class Meta:
        model = Registration
        fields = ["region", "organisation", "product_line"]

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        visible = Organisation.objects.visible_to(user)
        self.filters["organisation"].queryset = visible
        self.filters["region"].queryset = Region.objects.filter(pk__in=visible.values("region_id"))

    def filter_product_line(self, queryset, name, value):
        return with_line(queryset, product__line=value) if value else queryset
