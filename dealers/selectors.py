"""Reads of the dealers app that dashboards share."""

from __future__ import annotations

from datetime import date

from django.utils import timezone

from dealers.models import ImprovementPlan, ImprovementPlanQuerySet, User


def plans_due(user: User, *, today: date | None = None) -> ImprovementPlanQuerySet:
    """The open improvement plans the user looks after whose deadline has come (the deadline day
    itself included: that is the review day), most overdue first. Only vendor staff review plans;
    for anyone else the list is empty."""
    if not user.is_authenticated or not user.is_vendor_staff:
        return ImprovementPlan.objects.none()
    return (
        ImprovementPlan.objects.visible_to(user)
        .due(today or timezone.localdate())
        .select_related("organisation", "opened_by")
        .order_by("deadline", "pk")
    )
