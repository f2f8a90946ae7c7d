"""Dealers flagged for attention: each flag with the reason a partner manager can act on.

- few registrations: fewer than a share (default 50 %) of the median dealer of the same tier in the
  whole programme, over the period (where the tier has at least three dealers and a median above 0);
- low registration-to-close ratio: below a bar (default 25 %) once enough registrations have ended;
- certifications: fewer held than the tier asks for (expired ones do not count);
- no activity: no registration submitted and nobody logged in for N days (default 60);
- an exclusive territory without a single registration in the period.

Computed from the dealer-level KPIs plus three aggregate queries: constant in the number of dealers.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

from django.db.models import Max
from django.utils import timezone

from dealers.models import LoginRecord, Organisation, Territory
from deals.models import Registration
from tiers.kpis import Kpis, Period, applied_tier_pks
from tiers.models import TierProgramme
from tiers.rollup import submitted_by_dealer

NOT_FLAGGED = (Organisation.Status.PHASING_OUT, Organisation.Status.TERMINATED)


@dataclass(frozen=True)
class Flag:
    code: str
    text: str


def flags_for(
    organisations, period: Period, dealer_kpis: dict[int, Kpis], today: date | None = None
) -> dict[int, list[Flag]]:
    """{dealer pk: its flags} for the dealers in `dealer_kpis` (as computed by kpis.kpis at the
    dealer level over `period`); dealers without a flag are left out."""
    today = today or timezone.localdate()
    programme = TierProgramme.load()
    # a dealer on its way out (phasing out, terminated) needs no attention flag: there is nothing
    # left to improve, and an improvement plan cannot be opened for it
    organisations = organisations.filter(pk__in=list(dealer_kpis)).exclude(status__in=NOT_FLAGGED)
    dealer_kpis = {pk: dealer_kpis[pk] for pk in organisations.values_list("pk", flat=True)}
    flags: dict[int, list[Flag]] = defaultdict(list)

    # few registrations against the median of the tier: the peers are every evaluated dealer of
    # the programme in that tier, not only those the viewer looks after. Their counts are read for
    # every organisation at once (by date, not through a list of 10,000 dealers) and the peers
    # picked here; each tier's median is taken once.
    tiers, resellers = applied_tier_pks(Organisation.objects.filter(kind=Organisation.Kind.RESELLER), today)
    tier_of = {pk: tiers[tier] for pk, _status, tier in resellers if pk in dealer_kpis}
    submitted = submitted_by_dealer(period.start, period.end)
    per_tier: dict[int, list[int]] = defaultdict(list)
    for pk, status, tier in resellers:  # no tiers: no peers
        if status != Organisation.Status.TERMINATED:
            per_tier[tier].append(submitted.get(pk, 0))
    # fewer than three peers say too little
    tier_median = {tier: statistics.median(peers) for tier, peers in per_tier.items() if len(peers) >= 3}
    for pk, row in dealer_kpis.items():
        median = tier_median.get(tier_of[pk].pk, 0) if tier_of else 0
        if median > 0 and row.registrations < median * programme.attention_registrations_percent / 100:
            flags[pk].append(
                Flag(
                    "few_registrations",
                    f"{row.registrations} registration{'' if row.registrations == 1 else 's'} in the period, "
                    f"well below the median {tier_of[pk]} dealer ({median:g}).",
                )
            )
        ratio = row.close_ratio
        if (
            row.closed >= programme.attention_min_closed
            and ratio is not None
            and ratio < programme.attention_close_ratio
        ):
            flags[pk].append(
                Flag(
                    "low_close_ratio",
                    f"Wins {row.won} of {row.closed} ended registrations ({ratio:g}%), "
                    f"below {programme.attention_close_ratio}%.",
                )
            )
        if row.certifications_held < row.certifications_asked:
            flags[pk].append(
                Flag(
                    "certifications",
                    f"Holds {row.certifications_held} of the {row.certifications_asked} certifications "
                    f"{tier_of.get(pk, 'its tier')} asks for (expired ones do not count).",
                )
            )

    # no activity for N days: no submission, no log-in
    since = today - timedelta(days=programme.attention_inactive_days)
    last_submitted = dict(
        Registration.objects.filter(organisation__in=organisations)
        .values_list("organisation_id")
        .order_by()
        .annotate(last=Max("first_submitted_at"))
    )
    last_login = dict(
        LoginRecord.objects.filter(organisation__in=organisations)
        .values_list("organisation_id")
        .order_by()
        .annotate(last=Max("at"))
    )
    for pk in dealer_kpis:
        moments = [m for m in (last_submitted.get(pk), last_login.get(pk)) if m is not None]
        last = max(moments) if moments else None
        if last is None or timezone.localdate(last) < since:
            when = f"since {timezone.localdate(last):%d %b %Y}" if last else "ever"
            flags[pk].append(
                Flag(
                    "inactive",
                    f"No registration and no log-in {when} (more than {programme.attention_inactive_days} days).",
                )
            )

    # an exclusive territory without registrations
    exclusive = set(
        Territory.objects.filter(organisation__in=organisations, exclusive=True).values_list(
            "organisation_id", flat=True
        )
    )
    for pk in exclusive:
        if dealer_kpis[pk].registrations == 0:
            flags[pk].append(Flag("territory", "Holds an exclusive territory but registered nothing in the period."))
    return dict(flags)


def flagged(organisations: Organisation, period: Period, dealer_kpis) -> list[tuple[Kpis, list[Flag]]]:
    """The flagged dealers, most flags first, for a dashboard list."""
    flags = flags_for(organisations, period, dealer_kpis)
    return sorted(((dealer_kpis[pk], f) for pk, f in flags.items()), key=lambda item: (-len(item[1]), item[0].label))
