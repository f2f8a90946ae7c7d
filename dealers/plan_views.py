"""Improvement plans in the portal: vendor staff open and review them on the dealer's page.

The dealer admin reads its plan on "My organisation" (dealers.views.my_organisation).
"""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse

from dealers import services
from dealers.forms import ImprovementPlanForm, ImprovementPlanReviewForm
from dealers.models import ImprovementPlan, Organisation
from dealers.views import staff_required


def _back_to_plans(organisation):
    return redirect(reverse("dealers:dealer_detail", args=[organisation.pk]) + "#plans")


def _add_service_error(form, exc: services.ServiceError) -> None:
    field = getattr(exc, "field", None)
    form.add_error(field if field in form.fields else None, str(exc))


@staff_required
def plan_open(request, pk):
    organisation = get_object_or_404(Organisation.objects.visible_to(request.user), pk=pk)
    form = ImprovementPlanForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            plan = services.improvement_plan_open(organisation=organisation, actor=request.user, **form.cleaned_data)
        except services.ServiceError as exc:
            _add_service_error(form, exc)
        else:
            messages.success(
                request,
                f"Improvement plan opened for {organisation}, to be reviewed on {plan.deadline:%d %B %Y}. "
                "The dealer admins have been told the goals and the deadline.",
            )
            return _back_to_plans(organisation)
    current = ImprovementPlan.objects.filter(organisation=organisation).open().first()
    return render(request, "dealers/plan_open.html", {"organisation": organisation, "form": form, "current": current})


@staff_required
def plan_review(request, pk):
    plan = get_object_or_404(
        ImprovementPlan.objects.visible_to(request.user).select_related("organisation", "opened_by"), pk=pk
    )
    organisation = plan.organisation
    if not plan.is_open:
        messages.info(request, f"This improvement plan is already closed ({plan.get_status_display().lower()}).")
        return _back_to_plans(organisation)
    form = ImprovementPlanReviewForm(request.POST or None, initial={"decision": "met"})
    if request.method == "POST" and form.is_valid() and "edit" not in request.POST:
        decision = form.cleaned_data["decision"]
        if decision == "not_met" and request.POST.get("confirm") != "yes":
            # Phasing a dealer out is hard to undo: show what will happen and ask once more.
            context = {"plan": plan, "organisation": organisation, "form": form}
            return render(request, "dealers/plan_phase_out_confirm.html", context)
        data = form.cleaned_data
        try:
            if decision == "met":
                services.improvement_plan_met(plan=plan, outcome=data["outcome"], actor=request.user)
                done = f"{organisation} met its improvement plan and is active again."
            elif decision == "extend":
                services.improvement_plan_extend(
                    plan=plan, deadline=data["deadline"], outcome=data["outcome"], actor=request.user
                )
                done = f"The improvement plan of {organisation} now runs until {data['deadline']:%d %B %Y}."
            else:
                services.improvement_plan_not_met(plan=plan, outcome=data["outcome"], actor=request.user)
                done = f"{organisation} did not meet its improvement plan and is now phasing out."
        except services.ServiceError as exc:
            _add_service_error(form, exc)
        else:
            messages.success(request, done + " The dealer admins and the partner manager have been told.")
            return _back_to_plans(organisation)
    return render(request, "dealers/plan_review.html", {"plan": plan, "organisation": organisation, "form": form})
