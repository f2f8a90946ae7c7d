"""The nightly tier evaluation, overrides, and what a dealer still needs for the next tier.

One run per date: the criteria of every dealer come from a handful of aggregate queries, the
evaluations and tier changes are written in bulk, all in one transaction, so a killed run leaves
nothing and a second run on the same date changes nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import IntegrityError, transaction
from django.db.models import Avg, Count, Q, Sum
from django.utils import timezone

from dealers.models import Membership, Organisation, User
from prm.outbox import outbox_enqueue_many
from tiers.models import (
    HUNDRED,
    CertificationHolding,
    Criterion,
    DealerStanding,
    Evaluation,
    EvaluationRun,
    Sale,
    SatisfactionScore,
    Tier,
    TierChange,
    TierProgramme,
)

ZERO = Decimal("0")
CENT = Decimal("0.01")
YEAR = timedelta(days=365)


def _q(value) -> Decimal:
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


OVERRIDE_MAX_DAYS = 2 * 365


class TierError(Exception):
    """A rule refused the action; the message is for the person who tried."""


# --- criteria ----------------------------------------------------------------------------------------


@dataclass
class Raw:
    revenue: Decimal = ZERO
    revenue_previous: Decimal = ZERO
    compliant_revenue: Decimal = ZERO
    certifications: int = 0
    satisfaction: Decimal | None = None

    @property
    def growth(self) -> Decimal | None:
        if self.revenue_previous <= 0:
            return None
        return _q((self.revenue - self.revenue_previous) / self.revenue_previous * HUNDRED)

    @property
    def compliance(self) -> Decimal:
        if self.revenue <= 0:
            return ZERO
        return _q(max(self.compliant_revenue, ZERO) / self.revenue * HUNDRED)


def criteria_as_of(day: date, organisation_ids=None) -> dict[int, Raw]:
    """Every dealer's raw criteria as of `day`, from four aggregate queries."""
    raws: dict[int, Raw] = {}

    def raw(pk) -> Raw:
        return raws.setdefault(pk, Raw())

    sales = Sale.objects.all()
    if organisation_ids is not None:
        sales = sales.filter(reseller_id__in=organisation_ids)
    this_year = Q(sold_on__gt=day - YEAR, sold_on__lte=day)
    last_year = Q(sold_on__gt=day - 2 * YEAR, sold_on__lte=day - YEAR)
    for row in (
        sales.filter(sold_on__gt=day - 2 * YEAR, sold_on__lte=day)
        .values("reseller_id")
        .annotate(
            revenue=Sum("amount", filter=this_year),
            previous=Sum("amount", filter=last_year),
            compliant=Sum("amount", filter=this_year & Q(registered_before_sale=True)),
        )
    ):
        r = raw(row["reseller_id"])
        r.revenue = row["revenue"] or ZERO
        r.revenue_previous = row["previous"] or ZERO
        r.compliant_revenue = row["compliant"] or ZERO
    holdings = CertificationHolding.objects.filter(valid_until__gte=day)
    if organisation_ids is not None:
        holdings = holdings.filter(organisation_id__in=organisation_ids)
    for row in holdings.values("organisation_id").annotate(n=Count("certification", distinct=True)):
        raw(row["organisation_id"]).certifications = row["n"]
    scores = SatisfactionScore.objects.filter(recorded_on__gt=day - YEAR, recorded_on__lte=day)
    if organisation_ids is not None:
        scores = scores.filter(organisation_id__in=organisation_ids)
    for row in scores.values("organisation_id").annotate(avg=Avg("score")):
        raw(row["organisation_id"]).satisfaction = _q(row["avg"])
    return raws


def _score(value: Decimal | int | None, target) -> Decimal:
    if value is None or value <= 0:
        return ZERO
    return _q(min(HUNDRED, Decimal(value) / Decimal(target) * HUNDRED))


def scores_of(raw: Raw, programme: TierProgramme) -> dict[str, Decimal]:
    growth = raw.growth
    if growth is None:  # from a zero base: any revenue now is full marks, none is zero
        growth_score = HUNDRED if raw.revenue > 0 else ZERO
    else:
        growth_score = _score(growth, programme.growth_target)
    return {
        Criterion.REVENUE: _score(raw.revenue, programme.revenue_target),
        Criterion.GROWTH: growth_score,
        Criterion.COMPLIANCE: _score(raw.compliance, programme.compliance_target),
        Criterion.CERTIFICATIONS: _score(raw.certifications, programme.certifications_target),
        Criterion.SATISFACTION: _score(raw.satisfaction, programme.satisfaction_target),
    }


def total_of(scores: dict[str, Decimal], programme: TierProgramme) -> Decimal:
    weights = programme.weights()
    return _q(sum((scores[c] * weights[c] / HUNDRED for c in Criterion.values), ZERO))


# --- qualification ---------------------------------------------------------------------------------


def qualify_absolute(total: Decimal, certifications: int, tiers: list[Tier]) -> Tier:
    """The highest tier whose bars the dealer meets; the lowest tier has no bar."""
    for tier in tiers:  # best first
        if total >= tier.min_total and (tier.min_certifications is None or certifications >= tier.min_certifications):
            return tier
    return tiers[-1]


def qualify_distribution(totals: dict[int, Decimal], tiers: list[Tier]) -> tuple[dict[int, Tier], dict[str, str]]:
    """Rank dealers by total: the top share (rounded up) gets the best tier, and so on; a dealer
    tied with the last one in a tier gets that tier too; a total of zero never earns more than the
    lowest tier. Returns each dealer's tier and each tier's cut-off (its lowest qualifying total)."""
    ranked = sorted(totals.items(), key=lambda item: item[1], reverse=True)
    n = len(ranked)
    result: dict[int, Tier] = {}
    cutoffs: dict[str, str] = {}
    position, cumulative = 0, ZERO
    for tier in tiers[:-1]:
        cumulative += tier.distribution_share
        last = math.ceil(n * cumulative / HUNDRED)
        while position < n and position < last and ranked[position][1] > 0:
            result[ranked[position][0]] = tier
            position += 1
        while 0 < position < n and ranked[position][1] == ranked[position - 1][1] and ranked[position][1] > 0:
            result[ranked[position][0]] = tier  # ties stay together
            position += 1
        members = [totals[pk] for pk, t in result.items() if t == tier]
        if members:
            cutoffs[tier.name] = str(min(members))
    for pk, _total in ranked[position:]:
        result[pk] = tiers[-1]
    return result, cutoffs


# --- the nightly run ----------------------------------------------------------------------------------


@dataclass
class RunResult:
    run: EvaluationRun
    created: bool
    changes: int


def evaluated_organisations():
    return Organisation.objects.filter(kind=Organisation.Kind.RESELLER).exclude(status=Organisation.Status.TERMINATED)


def tiers_recompute(*, day: date | None = None) -> RunResult:
    """Evaluate every dealer as of `day` (today), once per date."""
    day = day or timezone.localdate()
    existing = EvaluationRun.objects.filter(run_on=day, finished_at__isnull=False).first()
    if existing:
        return RunResult(run=existing, created=False, changes=0)
    try:
        with transaction.atomic():
            return _recompute(day)
    except IntegrityError:  # another worker is running (or ran) the same date: its result stands
        return RunResult(run=EvaluationRun.objects.get(run_on=day), created=False, changes=0)


def _recompute(day: date) -> RunResult:
    programme = TierProgramme.load()
    tiers = list(Tier.objects.order_by("rank"))
    if not tiers:
        raise TierError("There are no tiers: create at least one in the admin.")
    run = EvaluationRun.objects.create(run_on=day, mode=programme.mode)
    organisations = list(evaluated_organisations().values_list("pk", flat=True))
    raws = criteria_as_of(day)
    rows = {}
    for pk in organisations:
        raw = raws.get(pk, Raw())
        scores = scores_of(raw, programme)
        rows[pk] = (raw, scores, total_of(scores, programme))
    if programme.mode == TierProgramme.Mode.DISTRIBUTION:
        qualified, run.cutoffs = qualify_distribution({pk: row[2] for pk, row in rows.items()}, tiers)
    else:
        qualified = {pk: qualify_absolute(row[2], row[0].certifications, tiers) for pk, row in rows.items()}
    standings = {
        s.organisation_id: s
        for s in DealerStanding.objects.filter(organisation_id__in=organisations).select_related(
            "tier", "override_tier"
        )
    }
    changes: list[TierChange] = []
    new_standings, touched = [], []
    for pk in organisations:
        standing = standings.get(pk)
        target = qualified[pk]
        if standing is None:
            standing = DealerStanding(organisation_id=pk, tier=target, since=day)
            new_standings.append(standing)
            changes.append(_change(pk, day, TierChange.Kind.START, None, target, f"First evaluation: {target}."))
        else:
            changed = _apply(standing, target, day, programme, rows[pk][2], changes)
            if changed:
                touched.append(standing)
        standings[pk] = standing
    DealerStanding.objects.bulk_create(new_standings)
    DealerStanding.objects.bulk_update(  # in batches: one CASE per row and column grows badly past ~1,000
        touched,
        ["tier", "since", "grace_started_on", "override_tier", "override_until", "override_reason"],
        batch_size=500,
    )
    Evaluation.objects.bulk_create(
        Evaluation(
            run=run,
            organisation_id=pk,
            revenue=raw.revenue,
            revenue_previous=raw.revenue_previous,
            growth=raw.growth,
            compliance=raw.compliance,
            certifications=raw.certifications,
            satisfaction=raw.satisfaction,
            revenue_score=scores[Criterion.REVENUE],
            growth_score=scores[Criterion.GROWTH],
            compliance_score=scores[Criterion.COMPLIANCE],
            certifications_score=scores[Criterion.CERTIFICATIONS],
            satisfaction_score=scores[Criterion.SATISFACTION],
            total=total,
            qualified_tier=qualified[pk],
            held_tier=standings[pk].tier,
        )
        for pk, (raw, scores, total) in rows.items()
    )
    TierChange.objects.bulk_create(changes)
    _notify(changes)
    run.finished_at = timezone.now()
    run.save(update_fields=["cutoffs", "finished_at"])
    return RunResult(run=run, created=True, changes=len(changes))


def _change(pk, day, kind, old, new, reason, actor=None) -> TierChange:
    return TierChange(
        organisation_id=pk, changed_on=day, kind=kind, from_tier=old, to_tier=new, reason=reason, actor=actor
    )


def _apply(standing: DealerStanding, target: Tier, day: date, programme, total, changes) -> bool:
    """Promotion at once; demotion only after the grace period below the tier; an override that
    ended is cleared. Returns whether the standing changed."""
    pk, current = standing.organisation_id, standing.tier
    changed = False
    if standing.override_tier_id and standing.override_until and standing.override_until < day:
        changes.append(
            _change(
                pk,
                day,
                TierChange.Kind.OVERRIDE_END,
                standing.override_tier,
                current,
                f"The override ended on {standing.override_until:%d %B %Y}; the earned tier applies again.",
            )
        )
        standing.override_tier, standing.override_until, standing.override_reason = None, None, ""
        changed = True
    if target.rank < current.rank:
        if standing.grace_started_on:
            standing.grace_started_on = None
        changes.append(
            _change(pk, day, TierChange.Kind.PROMOTION, current, target, f"Promoted to {target}: total score {total}.")
        )
        standing.tier, standing.since = target, day
        return True
    if target.rank == current.rank:
        if standing.grace_started_on:
            changes.append(
                _change(
                    pk,
                    day,
                    TierChange.Kind.GRACE_END,
                    current,
                    current,
                    f"Back at the {current} level (total {total}): no demotion.",
                )
            )
            standing.grace_started_on = None
            return True
        return changed
    # below its tier
    if standing.grace_started_on is None:
        standing.grace_started_on = day
        ends = day + timedelta(days=programme.grace_days)
        changes.append(
            _change(
                pk,
                day,
                TierChange.Kind.GRACE_START,
                current,
                target,
                f"Below the {current} level (total {total}); keeps {current} until {ends:%d %B %Y} unless it recovers.",
            )
        )
        return True
    if (day - standing.grace_started_on).days >= programme.grace_days:
        changes.append(
            _change(
                pk,
                day,
                TierChange.Kind.DEMOTION,
                current,
                target,
                f"Below the {current} level for {programme.grace_days} days: now {target}.",
            )
        )
        standing.tier, standing.since, standing.grace_started_on = target, day, None
        return True
    return changed


def _notify(changes: list[TierChange]) -> None:
    """Tell the dealer admins and the partner manager of each change (through the outbox)."""
    if not changes:
        return
    ids = {c.organisation_id for c in changes}
    organisations = Organisation.objects.select_related("partner_manager", "region__regional_director").in_bulk(ids)
    admins: dict[int, list[str]] = {}
    for org_id, email in (
        Membership.objects.active()
        .filter(organisation_id__in=ids, role=Membership.Role.DEALER_ADMIN, user__is_active=True)
        .values_list("organisation_id", "user__email")
    ):
        admins.setdefault(org_id, []).append(email)
    messages = []
    for change in changes:
        organisation = organisations[change.organisation_id]
        manager = organisation.account_manager
        recipients = admins.get(change.organisation_id, []) + ([manager.email] if manager and manager.is_active else [])
        context = {"change": change, "organisation": organisation}
        messages.append((recipients, "tier_change", context, f"tier {organisation.pk}"))
    outbox_enqueue_many(messages)


# --- overrides ------------------------------------------------------------------------------------


@transaction.atomic
def tier_override(*, organisation: Organisation, tier: Tier, until: date, reason: str, actor: User) -> DealerStanding:
    if not actor.is_channel_admin:
        raise TierError("Only a channel admin can override a tier.")
    if organisation.kind != Organisation.Kind.RESELLER:
        raise TierError("Only resellers hold a tier; a distributor is not evaluated.")
    if not reason.strip():
        raise TierError("Give the reason for the override.")
    today = timezone.localdate()
    if until < today:
        raise TierError("The override must end today or later.")
    if until > today + timedelta(days=OVERRIDE_MAX_DAYS):
        raise TierError(f"An override lasts at most {OVERRIDE_MAX_DAYS // 365} years; choose an earlier end date.")
    standing = DealerStanding.objects.select_for_update().filter(organisation=organisation).first()
    if standing is None:
        from tiers.selectors import lowest_tier

        standing = DealerStanding.objects.create(organisation=organisation, tier=lowest_tier(), since=today)
    old = standing.effective_tier
    standing.override_tier, standing.override_until, standing.override_reason = tier, until, reason.strip()
    standing.override_by = actor
    standing.save(update_fields=["override_tier", "override_until", "override_reason", "override_by"])
    change = TierChange.objects.create(
        organisation=organisation,
        changed_on=today,
        kind=TierChange.Kind.OVERRIDE,
        from_tier=old,
        to_tier=tier,
        reason=f"{tier} until {until:%d %B %Y}: {reason.strip()}",
        actor=actor,
    )
    _notify([change])
    return standing


@transaction.atomic
def tier_override_end(*, organisation: Organisation, reason: str, actor: User) -> DealerStanding:
    """End a running override today: the tier the dealer's scores hold applies again at once."""
    if not actor.is_channel_admin:
        raise TierError("Only a channel admin can end an override.")
    standing = DealerStanding.objects.select_for_update().filter(organisation=organisation).first()
    today = timezone.localdate()
    if standing is None or not standing.override_active(today):
        raise TierError("There is no override running for this dealer.")
    old = standing.override_tier
    standing.override_tier, standing.override_until, standing.override_reason = None, None, ""
    standing.override_by = None
    standing.save(update_fields=["override_tier", "override_until", "override_reason", "override_by"])
    why = reason.strip()
    change = TierChange.objects.create(
        organisation=organisation,
        changed_on=today,
        kind=TierChange.Kind.OVERRIDE_END,
        from_tier=old,
        to_tier=standing.tier,
        reason=f"The override was ended early; {standing.tier} applies again." + (f" {why}" if why else ""),
        actor=actor,
    )
    _notify([change])
    return standing


# --- customer satisfaction -----------------------------------------------------------------------------


@transaction.atomic
def satisfaction_record(*, registration, score: int, actor: User) -> SatisfactionScore:
    """The customer's satisfaction (1–5) with the dealer on a won registration, as vendor staff
    heard it (a survey, a call). One score per registration: recording it again replaces it."""
    from deals.models import Registration
    from deals.services import is_reviewer_of

    if not is_reviewer_of(actor, registration.organisation_id):
        raise TierError("Only vendor staff who look after this dealer can record its customers' satisfaction.")
    if registration.status != Registration.Status.WON:
        raise TierError("Satisfaction is recorded for a won registration, once the customer has been served.")
    if not 1 <= int(score) <= 5:
        raise TierError("A satisfaction score is a whole number from 1 to 5.")
    record, _created = SatisfactionScore.objects.update_or_create(
        registration=registration,
        defaults={
            "organisation_id": registration.organisation_id,
            "score": int(score),
            "recorded_on": timezone.localdate(),
            "recorded_by": actor,
        },
    )
    return record
