import django_filters
from django import forms
from django.db.models import Q
from django.utils import timezone

from dealers.forms import partner_managers
from dealers.models import Organisation, Region
from tiers.models import Tier


class OrganisationFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(label="Name or city", method="filter_search")
    status = django_filters.ChoiceFilter(choices=Organisation.Status.choices)
    kind = django_filters.ChoiceFilter(choices=Organisation.Kind.choices)
    region = django_filters.ModelChoiceFilter(queryset=Region.objects.all())
    partner_manager = django_filters.ModelChoiceFilter(queryset=partner_managers(), null_label="— none —")
    tier = django_filters.ModelChoiceFilter(queryset=Tier.objects.all(), label="Tier", method="filter_tier")
    in_grace = django_filters.BooleanFilter(
        label="In grace period", method="filter_in_grace", widget=forms.CheckboxInput()
    )
    ordering = django_filters.OrderingFilter(
        fields=(("name", "name"), ("city", "city"), ("status", "status"), ("joined_on", "joined")),
        field_labels={"name": "Name", "city": "City", "status": "Status", "joined_on": "Joined"},
    )

    class Meta:
        model = Organisation
        fields = ["q", "status", "kind", "region", "partner_manager", "tier", "in_grace"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["partner_manager"].queryset = partner_managers()

    def filter_search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(name__icontains=value) | Q(city__icontains=value))

    def filter_tier(self, queryset, name, tier):
        if tier is None:
            return queryset
        lowest = not Tier.objects.filter(rank__gt=tier.rank).exists()
        return queryset.in_tier(tier, today=timezone.localdate(), lowest=lowest)

    def filter_in_grace(self, queryset, name, value):
        return queryset.in_grace_period() if value else queryset
