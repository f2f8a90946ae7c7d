from functools import wraps

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from dealers import selectors, services
from dealers.filters import OrganisationFilter
from dealers.forms import InvitationAcceptForm, InvitationForm, ReassignPartnerManagerForm
from dealers.models import ImprovementPlan, Invitation, Membership, Organisation
from deals import selectors as registration_selectors
from tiers.selectors import distributor_revenue, lowest_tier, next_tier_gap

PAGE_SIZE = 25


def staff_required(view):
    """Vendor staff only; everyone else gets the same 404 as for an object they may not see."""

    @wraps(view)
    @login_required
    def wrapper(request, *args, **kwargs):
        if not request.user.is_vendor_staff:
            raise Http404("Not found")
        return view(request, *args, **kwargs)

    return wrapper


def _people_of(organisation):
    return (
        Membership.objects.filter(organisation=organisation)
        .select_related("user")
        .order_by("deactivated_at", "user__first_name", "user__last_name")
    )


def _after_people_change(request, organisation):
    if request.user.is_vendor_staff:
        return redirect("dealers:dealer_detail", pk=organisation.pk)
    return redirect("dealers:my_organisation")


@login_required
def home(request):
    user = request.user
    if user.is_vendor_staff:
        organisations = Organisation.objects.visible_to(user)
        by_status = dict(organisations.values_list("status").annotate(n=Count("pk")).values_list("status", "n"))
        context = {
            "roles": sorted(user.staff_roles),
            "dealer_count": sum(by_status.values()),
            "by_status": [(s.label, s.value, by_status.get(s.value, 0)) for s in Organisation.Status],
            "onboarding": organisations.filter(status=Organisation.Status.ONBOARDING).select_related("region")[:10],
            "without_partner_manager": organisations.filter(partner_manager__isnull=True).select_related("region")[:10]
            if user.is_regional_director or user.is_channel_admin
            else None,
            "directed_regions": user.directed_regions.all(),
            "queue": registration_selectors.queue_summary(user),
            "plans_due": selectors.plans_due(user)[:10],
            # the direct team has no dealers and no queue: the lookup is its page
            "lookup_only": user.is_direct_sales
            and not (user.is_partner_manager or user.is_regional_director or user.is_channel_admin),
        }
        return render(request, "dealers/home_staff.html", context)
    membership = user.membership
    if membership is None:
        return render(request, "dealers/home_no_organisation.html")
    organisation = membership.organisation
    context = {
        "membership": membership,
        "organisation": organisation,
        "account_manager": organisation.account_manager,
        "colleague_count": Membership.objects.filter(organisation=organisation).active().count(),
        "registrations": registration_selectors.dealer_summary(organisation),
        "pending_invitations": Invitation.objects.filter(organisation=organisation).pending().count()
        if membership.role == Membership.Role.DEALER_ADMIN
        else None,
        "tier_gap": next_tier_gap(organisation) if organisation.kind == Organisation.Kind.RESELLER else None,
        "through": distributor_revenue(organisation) if organisation.kind == Organisation.Kind.DISTRIBUTOR else None,
    }
    return render(request, "dealers/home_dealer.html", context)


@login_required
def my_organisation(request):
    membership = request.user.membership
    if membership is None:
        raise Http404("Not found")
    organisation = (
        Organisation.objects.visible_to(request.user)
        .select_related("region__regional_director", "partner_manager")
        .prefetch_related("territories", "specialisations", "distributors")
        .get(pk=membership.organisation_id)
    )
    is_admin = membership.role == Membership.Role.DEALER_ADMIN
    context = {
        "organisation": organisation,
        "people": _people_of(organisation),
        "invitations": Invitation.objects.filter(organisation=organisation).pending() if is_admin else None,
        "can_manage": is_admin,
        "invite_form": InvitationForm() if is_admin else None,
        # the dealer admin's own plans (goals, deadline, outcome); nobody else of the dealer's
        "plans": ImprovementPlan.objects.visible_to(request.user).filter(organisation=organisation)
        if is_admin
        else None,
    }
    return render(request, "dealers/my_organisation.html", context)


@login_required
def organisation_invite(request, pk):
    organisation = get_object_or_404(Organisation.objects.visible_to(request.user), pk=pk)
    if not services.can_manage_people(request.user, organisation):
        raise PermissionDenied("Only a dealer admin or the partner manager can invite people.")
    form = InvitationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            invitation = services.invitation_create(
                organisation=organisation,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                invited_by=request.user,
            )
        except services.ServiceError as exc:
            form.add_error("email", str(exc))
        else:
            messages.success(
                request,
                f"Invitation sent to {invitation.email}. The link works once, for "
                f"{(invitation.expires_at - invitation.created_at).days} days.",
            )
            return _after_people_change(request, organisation)
    return render(request, "dealers/invite.html", {"organisation": organisation, "form": form})


@login_required
def membership_deactivate(request, pk):
    membership = get_object_or_404(
        Membership.objects.visible_to(request.user).select_related("user", "organisation"), pk=pk
    )
    if not services.can_manage_people(request.user, membership.organisation):
        raise PermissionDenied("Only a dealer admin or the partner manager can deactivate people.")
    if request.method == "POST":
        try:
            services.membership_deactivate(membership=membership, actor=request.user)
        except services.ServiceError as exc:
            messages.error(request, str(exc))
        else:
            messages.success(
                request, f"{membership.user.display_name} can no longer log in. Their work stays in the portal."
            )
        return _after_people_change(request, membership.organisation)
    return render(request, "dealers/membership_deactivate_confirm.html", {"membership": membership})


@login_required
@require_POST
def membership_reactivate(request, pk):
    membership = get_object_or_404(
        Membership.objects.visible_to(request.user).select_related("user", "organisation"), pk=pk
    )
    if not services.can_manage_people(request.user, membership.organisation):
        raise PermissionDenied("Only a dealer admin or the partner manager can reactivate people.")
    try:
        services.membership_reactivate(membership=membership, actor=request.user)
    except services.ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{membership.user.display_name} can log in again.")
    return _after_people_change(request, membership.organisation)


def invitation_accept(request, token):
    if request.user.is_authenticated:
        return render(request, "dealers/invitation_logged_in.html", status=409)
    try:
        invitation = services.invitation_from_token(token)
        services.invitation_check_usable(invitation)
    except services.InvitationError as exc:
        return render(request, "dealers/invitation_invalid.html", {"reason": str(exc)}, status=410)
    form = InvitationAcceptForm(request.POST or None, email=invitation.email)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.invitation_accept(
                invitation=invitation,
                first_name=form.cleaned_data["first_name"],
                last_name=form.cleaned_data["last_name"],
                password=form.cleaned_data["password1"],
            )
        except services.InvitationError as exc:
            return render(request, "dealers/invitation_invalid.html", {"reason": str(exc)}, status=410)
        login(request, user, backend="allauth.account.auth_backends.AuthenticationBackend")
        messages.success(request, f"Welcome to the partner portal, {user.first_name}.")
        return redirect("home")
    return render(request, "dealers/invitation_accept.html", {"invitation": invitation, "form": form})


@staff_required
def dealer_list(request):
    queryset = Organisation.objects.visible_to(request.user).with_tier().select_related("region", "partner_manager")
    queryset = queryset.annotate(
        people=Count("memberships", filter=Q(memberships__deactivated_at__isnull=True))
    ).order_by("name", "pk")
    filterset = OrganisationFilter(request.GET or None, queryset=queryset)
    paginator = Paginator(filterset.qs, PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "dealers/dealer_list.html",
        {"filter": filterset, "page": page, "query": query.urlencode(), "lowest_tier": lowest_tier()},
    )


@staff_required
def dealer_detail(request, pk):
    organisation = get_object_or_404(
        Organisation.objects.visible_to(request.user)
        .select_related("region__regional_director", "partner_manager")
        .prefetch_related("territories", "specialisations", "distributors", "resellers"),
        pk=pk,
    )
    plans = list(organisation.improvement_plans.select_related("opened_by", "reviewed_by"))
    open_plan = next((plan for plan in plans if plan.is_open), None)
    can_manage_plans = services.can_manage_plans(request.user, organisation)
    context = {
        "organisation": organisation,
        "people": _people_of(organisation),
        "invitations": Invitation.objects.filter(organisation=organisation).pending(),
        "events": organisation.events.select_related("actor")[:20],
        "plans": plans,
        "open_plan": open_plan,
        "can_manage_plans": can_manage_plans,
        "can_open_plan": can_manage_plans
        and open_plan is None
        and organisation.status in services.PLAN_OPENABLE_STATUSES,
        "can_manage": services.can_manage_people(request.user, organisation),
        "invite_form": InvitationForm(initial={"role": Membership.Role.DEALER_ADMIN}),
        "tier_gap": next_tier_gap(organisation) if organisation.kind == Organisation.Kind.RESELLER else None,
        "through": distributor_revenue(organisation, viewer=request.user)
        if organisation.kind == Organisation.Kind.DISTRIBUTOR
        else None,
    }
    return render(request, "dealers/dealer_detail.html", context)


@staff_required
def reassign_partner_manager(request):
    if not request.user.is_channel_admin:
        raise Http404("Not found")
    form = ReassignPartnerManagerForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        from_user, to_user = form.cleaned_data["from_user"], form.cleaned_data["to_user"]
        affected = Organisation.objects.filter(partner_manager=from_user).select_related("region")
        if request.POST.get("confirm") != "yes":
            return render(
                request,
                "dealers/reassign_confirm.html",
                {"form": form, "from_user": from_user, "to_user": to_user, "affected": affected},
            )
        try:
            result = services.organisations_reassign_partner_manager(
                from_user=from_user, to_user=to_user, actor=request.user
            )
        except services.ServiceError as exc:
            form.add_error(None, str(exc))
        else:
            target = to_user or "their regional directors"
            messages.success(request, f"Moved {result.moved} dealer(s) from {from_user} to {target}.")
            return redirect(reverse("dealers:dealer_list") + (f"?partner_manager={to_user.pk}" if to_user else ""))
    return render(request, "dealers/reassign.html", {"form": form})
