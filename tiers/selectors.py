"""Reads about tiers that other apps and pages share."""

from __future__ import annotations

from django.utils import timezone

from dealers.models import Organisation
from tiers.models import DealerStanding, Tier


def lowest_tier() -> Tier:
    return Tier.objects.order_by("-rank").first()


def tier_for(organisation: Organisation, today=None) -> Tier:
    """The tier whose benefits apply to the dealer now: an active override, else the tier it holds;
    a dealer never evaluated is in the lowest tier."""
    standing = DealerStanding.objects.select_related("tier", "override_tier").filter(organisation=organisation).first()
    if standing is None:
        return lowest_tier()
    if standing.override_active(today or timezone.localdate()):
        return standing.override_tier
    return standing.tier
