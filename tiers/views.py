"""A dealer's tier page and badge; the same page for vendor staff, for any dealer they may see."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from dealers.models import Organisation
from dealers.views import staff_required
from tiers import selectors
from tiers.filters import SaleFilter
from tiers.forms import OverrideEndForm, OverrideForm, SatisfactionForm
from tiers.models import DealerStanding, Sale, Tier, TierProgramme
from tiers.services import TierError, satisfaction_record, tier_override, tier_override_end

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
        "can_override": request.user.is_channel_admin,
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


def _channel_admin_dealer(request, pk) -> Organisation:
    """Overrides are the channel admin's; for anyone else the page does not exist."""
    if not request.user.is_channel_admin:
        raise Http404("Not found")
    return _staff_dealer(request, pk)


@staff_required
def dealer_override(request, pk):
    organisation = _channel_admin_dealer(request, pk)
    standing = DealerStanding.objects.select_related("tier", "override_tier").filter(organisation=organisation).first()
    running = standing if standing and standing.override_active() else None
    initial = {"tier": running.override_tier, "until": running.override_until} if running else {}
    form = OverrideForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            tier_override(organisation=organisation, actor=request.user, **form.cleaned_data)
        except TierError as exc:
            form.add_error(None, str(exc))
        else:
            data = form.cleaned_data
            messages.success(
                request,
                f"{organisation} holds {data['tier']} until {data['until']:%d %B %Y}. "
                "The dealer admin and the partner manager have been told.",
            )
            return redirect("tiers:dealer_tier", pk=organisation.pk)
    return render(
        request,
        "tiers/override_form.html",
        {"organisation": organisation, "form": form, "standing": standing, "running": running},
    )


@staff_required
def dealer_override_end(request, pk):
    organisation = _channel_admin_dealer(request, pk)
    standing = DealerStanding.objects.select_related("tier", "override_tier").filter(organisation=organisation).first()
    if standing is None or not standing.override_active():
        messages.info(request, "There is no override running for this dealer.")
        return redirect("tiers:dealer_tier", pk=organisation.pk)
    form = OverrideEndForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            tier_override_end(organisation=organisation, reason=form.cleaned_data["reason"], actor=request.user)
        except TierError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"The override has ended: {organisation} holds {standing.tier} again.")
            return redirect("tiers:dealer_tier", pk=organisation.pk)
    return render(
        request, "tiers/override_end_confirm.html", {"organisation": organisation, "form": form, "standing": standing}
    )


@require_POST
@staff_required
def registration_satisfaction(request, pk):
    from deals.models import Registration

    registration = get_object_or_404(Registration.objects.visible_to(request.user), pk=pk)
    form = SatisfactionForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a score from 1 to 5; nothing was recorded.")
    else:
        try:
            satisfaction_record(registration=registration, score=form.cleaned_data["score"], actor=request.user)
        except TierError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request, f"Customer satisfaction {form.cleaned_data['score']}/5 recorded for {registration.reference}."
            )
    return redirect("deals:registration_detail", pk=pk)
