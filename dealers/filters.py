import django_filters
from django.db.models import Q

from dealers.forms import partner_managers
from dealers.models import Organisation, Region


class OrganisationFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(label="Name or city", method="filter_search")
    status = django_filters.ChoiceFilter(choices=Organisation.Status.choices)
    kind = django_filters.ChoiceFilter(choices=Organisation.Kind.choices)
    region = django_filters.ModelChoiceFilter(queryset=Region.objects.all())
    partner_manager = django_filters.ModelChoiceFilter(queryset=partner_managers(), null_label="— none —")
    ordering = django_filters.OrderingFilter(
        fields=(("name", "name"), ("city", "city"), ("status", "status"), ("joined_on", "joined")),
        field_labels={"name": "Name", "city": "City", "status": "Status", "joined_on": "Joined"},
    )

    class Meta:
        model = Organisation
        fields = ["q", "status", "kind", "region", "partner_manager"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.filters["partner_manager"].queryset = partner_managers()

    def filter_search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(name__icontains=value) | Q(city__icontains=value))
