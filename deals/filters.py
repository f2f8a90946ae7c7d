from datetime import timedelta

import django_filters
from django import forms
from django.db.models import Q
from django.utils import timezone

from dealers.models import Organisation
from deals.models import Registration


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
