import django_filters

from tiers.models import Sale


class SaleFilter(django_filters.FilterSet):
    """The sales behind a revenue figure, sortable by date or amount (`?sort=-amount`)."""

    sort = django_filters.OrderingFilter(fields=(("sold_on", "date"), ("amount", "amount")))

    class Meta:
        model = Sale
        fields: list[str] = []
