"""A dealer's tier page and badge; the same page for vendor staff, for any dealer they may see."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, render

from dealers.models import Organisation
from dealers.views import staff_required
from tiers import selectors
from tiers.filters import SaleFilter
from tiers.models import Sale, Tier, TierProgramme

SALES_PAGE_SIZE = 25
# the next order for a column header: a click on the column sorted now reverses it
NEXT_SORT = {"date": {"-date": "date"}, "amount": {"-amount": "amount"}}


def _own_dealer(request) -> Organisation:
    """The dealer of the logged-in person; 404 for staff, distributors and people without one."""
    membership = request.user.membership
    if membership is None:
        raise Http404("Not found")
    return get_object_or_404(
        Organisation.objects.visible_to(request.user).filter(kind=Organisation.Kind.RESELLER),
        pk=membership.organisation_id,
    )


def _staff_dealer(request, pk) -> Organisation:
    return get_object_or_404(
        Organisation.objects.visible_to(request.user).filter(kind=Organisation.Kind.RESELLER), pk=pk
    )


def _tier_page(request, organisation: Organisation):
    gap = selectors.next_tier_gap(organisation)
    evaluation = gap.evaluation
    context = {
        "organisation": organisation,
        "gap": gap,
        "evaluation": evaluation,
        "tiers": Tier.objects.order_by("rank"),
        "history": organisation.tier_changes.select_related("from_tier", "to_tier", "actor")[:50],
        "staff_view": request.user.is_vendor_staff,
    }
    if evaluation is not None:
        context["rows"] = selectors.score_rows(evaluation, TierProgramme.load())
        first, last = selectors.revenue_window(evaluation)
        sales = (
            Sale.objects.visible_to(request.user)
            .filter(reseller=organisation, sold_on__gte=first, sold_on__lte=last)
            .select_related("product_line")
            .order_by("-sold_on", "erp_line_id")
        )
        sale_filter = SaleFilter(request.GET or None, queryset=sales)
        page = Paginator(sale_filter.qs, SALES_PAGE_SIZE).get_page(request.GET.get("page"))
        query = request.GET.copy()
        query.pop("page", None)
        sort = request.GET.get("sort", "-date")
        context.update(
            window=(first, last),
            sales=page,
            page=page,
            query=query.urlencode(),
            sort=sort,
            sort_date=NEXT_SORT["date"].get(sort, "-date"),
            sort_amount=NEXT_SORT["amount"].get(sort, "-amount"),
        )
    return render(request, "tiers/tier.html", context)


def _badge(request, organisation: Organisation):
    tier = selectors.tier_for(organisation)
    response = render(
        request,
        "tiers/badge.svg",
        {"organisation": organisation, "tier": tier, "colours": _badge_colours(tier)},
        content_type="image/svg+xml",
    )
    response["Cache-Control"] = "private, max-age=3600"
    return response


BADGE_COLOURS = {  # background, accent, text
    "gold": ("#fff8e1", "#b8860b", "#5c4300"),
    "silver": ("#f3f5f7", "#7b8794", "#2f3a45"),
    "bronze": ("#fbf0e8", "#a0522d", "#5a2d14"),
    "platinum": ("#f1f4f8", "#5b6b7f", "#1d2433"),
}


def _badge_colours(tier: Tier) -> tuple[str, str, str]:
    return BADGE_COLOURS.get(tier.name.lower(), ("#e8f1fb", "#0b5cab", "#08447f"))


@login_required
def my_tier(request):
    return _tier_page(request, _own_dealer(request))


@login_required
def my_badge(request):
    return _badge(request, _own_dealer(request))


@staff_required
def dealer_tier(request, pk):
    return _tier_page(request, _staff_dealer(request, pk))


@staff_required
def dealer_badge(request, pk):
    return _badge(request, _staff_dealer(request, pk))
