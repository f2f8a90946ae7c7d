"""Reads about tiers that other apps and pages share: the tier that applies, the latest evaluation,
its score table, and exactly what a dealer still needs for the next tier (or to keep its tier)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_CEILING, Decimal

from django.utils import timezone

from dealers.models import Organisation
from tiers.models import HUNDRED, Criterion, DealerStanding, Evaluation, Tier, TierProgramme
from tiers.services import YEAR, _score, total_of

ZERO = Decimal("0")
THOUSAND = Decimal("1000")


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


def latest_evaluation(organisation: Organisation) -> Evaluation | None:
    return (
        Evaluation.objects.filter(organisation=organisation, run__finished_at__isnull=False)
        .select_related("run", "qualified_tier", "held_tier")
        .order_by("-run__run_on")
        .first()
    )


def revenue_window(evaluation: Evaluation) -> tuple[date, date]:
    """The first and last day of the sales behind an evaluation's revenue figure."""
    day = evaluation.run.run_on
    return day - YEAR + timedelta(days=1), day


# --- formatting -----------------------------------------------------------------------------------------


def euros(amount) -> str:
    return f"€{Decimal(amount):,.0f}"


def number(value) -> str:
    """15 → "15", 3.20 → "3.2": totals and percentages without trailing zeros."""
    return f"{Decimal(value):.2f}".rstrip("0").rstrip(".")


def long_date(day: date) -> str:
    return f"{day.day} {day:%B %Y}"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# --- the score table ---------------------------------------------------------------------------------


@dataclass
class ScoreRow:
    criterion: str
    label: str
    value: str
    target: str
    score: Decimal
    weight: Decimal
    points: Decimal


def scores_of_evaluation(evaluation: Evaluation) -> dict[str, Decimal]:
    return {c: getattr(evaluation, f"{c}_score") for c in Criterion.values}


def score_rows(evaluation: Evaluation, programme: TierProgramme) -> list[ScoreRow]:
    """Each criterion's raw value, target, 0–100 score, weight and weighted points."""
    e, p = evaluation, programme
    values = {
        Criterion.REVENUE: (euros(e.revenue), euros(p.revenue_target)),
        Criterion.GROWTH: (
            f"{number(e.growth)}% ({euros(e.revenue)} against {euros(e.revenue_previous)})"
            if e.growth is not None
            else "— (no sales the year before)",
            f"{number(p.growth_target)}%",
        ),
        Criterion.COMPLIANCE: (f"{number(e.compliance)}% of revenue", f"{number(p.compliance_target)}%"),
        Criterion.CERTIFICATIONS: (str(e.certifications), str(p.certifications_target)),
        Criterion.SATISFACTION: (
            f"{number(e.satisfaction)} of 5" if e.satisfaction is not None else "— (no scores yet)",
            f"{number(p.satisfaction_target)} of 5",
        ),
    }
    weights = p.weights()
    rows = []
    for criterion, label in Criterion.choices:
        score = getattr(e, f"{criterion}_score")
        value, target = values[criterion]
        rows.append(
            ScoreRow(criterion, label, value, target, score, weights[criterion], score * weights[criterion] / HUNDRED)
        )
    return rows


# --- the gap to the next tier ------------------------------------------------------------------------


@dataclass
class Step:
    """One thing that alone closes the gap (an alternative) or that the tier requires."""

    criterion: str
    text: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.text} ({self.detail})" if self.detail else self.text


@dataclass
class Gap:
    """What a dealer still needs: for the next tier, or during a grace period to keep its tier."""

    NOT_EVALUATED = "not_evaluated"
    NEXT = "next"  # the next tier up
    KEEP = "keep"  # in a grace period: back to its own tier's level
    TOP = "top"  # the top tier: what keeps it there
    MET = "met"  # bars met since the last run (bars lowered): the next run promotes

    kind: str
    headline: str
    tier: Tier  # the tier whose benefits apply now (an override included)
    earned_tier: Tier | None = None  # the tier its scores hold, override or not
    target: Tier | None = None
    standing: DealerStanding | None = None
    evaluation: Evaluation | None = None
    mode: str = TierProgramme.Mode.ABSOLUTE
    bar: str = ""  # what the target tier asks, in words
    total: Decimal | None = None
    points: Decimal = ZERO  # the points still missing after the required steps
    required: list[Step] = field(default_factory=list)
    alternatives: list[Step] = field(default_factory=list)
    grace_ends_on: date | None = None
    override_until: date | None = None
    override_sentence: str = ""

    @property
    def points_text(self) -> str:
        return number(self.points)

    @property
    def summary(self) -> str:
        """The one line for a home page: an override first, else what is needed."""
        return self.override_sentence or self.headline


def next_tier_gap(organisation: Organisation, today: date | None = None) -> Gap:
    """Exactly what the dealer still needs, from its latest evaluation: the required steps (a
    minimum number of certifications) and, for the missing points, one alternative per criterion
    that closes the gap on its own with the other scores as they are."""
    today = today or timezone.localdate()
    standing = DealerStanding.objects.select_related("tier", "override_tier").filter(organisation=organisation).first()
    evaluation = latest_evaluation(organisation)
    tiers = list(Tier.objects.order_by("rank"))
    programme = TierProgramme.load()
    earned = standing.tier if standing else (evaluation.held_tier if evaluation else tiers[-1])
    applies = standing.override_tier if standing and standing.override_active(today) else earned
    gap = Gap(kind=Gap.NOT_EVALUATED, headline="", tier=applies, earned_tier=earned, standing=standing)
    if standing and standing.override_active(today):
        gap.override_until = standing.override_until
        gap.override_sentence = (
            f"{standing.override_tier} is set for you until {long_date(standing.override_until)}; "
            f"your scores earn {earned}."
        )
    if evaluation is None:
        gap.headline = (
            "Your first evaluation runs tonight: tomorrow this page shows your scores and what you need "
            "for the next tier."
        )
        return gap
    gap.evaluation, gap.mode = evaluation, evaluation.run.mode
    scores = scores_of_evaluation(evaluation)
    gap.total = total_of(scores, programme)
    in_grace = standing is not None and standing.grace_started_on is not None
    position = next(i for i, t in enumerate(tiers) if t.pk == earned.pk)
    if in_grace:
        gap.kind, gap.target = Gap.KEEP, earned
        gap.grace_ends_on = standing.grace_started_on + timedelta(days=programme.grace_days)
        aim = f"To keep {earned} after {long_date(gap.grace_ends_on)}"
    elif position == 0:
        gap.kind, gap.target = Gap.TOP, earned
        gap.headline, gap.bar = _what_keeps_the_top(earned, evaluation, gap.total, programme)
        return gap
    else:
        gap.kind, gap.target = Gap.NEXT, tiers[position - 1]
        aim = f"For {gap.target}"
    target = gap.target

    # the bar: a minimum total (and certifications), or the latest run's cut-off
    if gap.mode == TierProgramme.Mode.DISTRIBUTION:
        cutoff = evaluation.run.cutoffs.get(target.name)
        if cutoff is None:
            gap.headline = (
                f"No dealer reached {target} in the latest evaluation: every point you add moves you up the ranking."
            )
            return gap
        bar_total, min_certifications = Decimal(cutoff), None
        gap.bar = (
            f"{target} goes to the top {number(_cumulative_share(tiers, target))}% of dealers; in the latest "
            f"evaluation ({long_date(evaluation.run.run_on)}) that took a total of {number(bar_total)}. "
            f"The cut-off moves with the other dealers' scores."
        )
    else:
        bar_total, min_certifications = target.min_total, target.min_certifications
        gap.bar = f"{target} needs a total of {number(bar_total)}" + (
            f" and at least {plural(min_certifications, 'certification')}." if min_certifications else "."
        )

    # required: the certifications the tier asks for; they also raise the total
    if min_certifications and evaluation.certifications < min_certifications:
        missing = min_certifications - evaluation.certifications
        gap.required.append(
            Step(
                Criterion.CERTIFICATIONS,
                f"{missing} more certification{'' if missing == 1 else 's'}",
                f"{target} requires at least {min_certifications}; you hold {evaluation.certifications}",
            )
        )
        scores[Criterion.CERTIFICATIONS] = _score(min_certifications, programme.certifications_target)
    gap.points = max(ZERO, bar_total - total_of(scores, programme))
    if gap.points > 0:
        gap.alternatives = _alternatives(evaluation, scores, bar_total, programme, min_certifications)

    needs = [step.text for step in gap.required]
    if gap.points > 0:
        needs.append(f"{number(gap.points)} more point{'' if gap.points == 1 else 's'}")
    if not needs:
        gap.kind = Gap.MET if gap.kind == Gap.NEXT else gap.kind
        gap.headline = (
            f"You meet the bars for {target}: the next evaluation, tonight, moves you up."
            if gap.kind == Gap.MET
            else f"You are back at the {target} level: the next evaluation, tonight, ends the grace period."
        )
        return gap
    distribution = gap.mode == TierProgramme.Mode.DISTRIBUTION
    cutoff_note = f" to reach the latest cut-off ({number(bar_total)})" if distribution else ""
    sentence = f"{aim} you need {' and '.join(needs)}{cutoff_note}"
    if gap.points > 0 and gap.alternatives:
        sentence += f", for example {gap.alternatives[0].text}"
    elif gap.points > 0:
        sentence += " — more than any one criterion can add on its own"
    gap.headline = sentence + "."
    return gap


def _cumulative_share(tiers: list[Tier], target: Tier) -> Decimal:
    share = ZERO
    for tier in tiers:
        share += tier.distribution_share
        if tier.pk == target.pk:
            return share
    return share


def _what_keeps_the_top(top: Tier, evaluation: Evaluation, total: Decimal, programme) -> tuple[str, str]:
    grace = f"Should it drop below, you keep {top} for a {programme.grace_days}-day grace period."
    if evaluation.run.mode == TierProgramme.Mode.DISTRIBUTION:
        cutoff = evaluation.run.cutoffs.get(top.name)
        where = f" (the latest cut-off was {number(Decimal(cutoff))}; you have {number(total)})" if cutoff else ""
        keeps = f"you stay in the top {number(top.distribution_share)}% of dealers{where}"
    else:
        keeps = f"your total stays at {number(top.min_total)} or above (now {number(total)})"
        if top.min_certifications:
            keeps += (
                f" and you hold at least {plural(top.min_certifications, 'certification')} "
                f"(now {evaluation.certifications})"
            )
    return f"{top} is the top tier: it stays yours while {keeps}.", grace


def _closes(scores, criterion, score, bar, programme) -> bool:
    return total_of({**scores, criterion: score}, programme) >= bar


def _alternatives(evaluation, scores, bar, programme, min_certifications) -> list[Step]:
    """Per criterion, the smallest concrete figure that alone lifts the total to the bar; a criterion
    that cannot close the gap even at full marks is left out. Each figure is rounded up to its unit
    and checked with the programme's own scoring."""
    weights = programme.weights()
    e = evaluation
    steps = []
    for criterion in Criterion.values:
        weight = weights[criterion]
        if weight <= 0 or not _closes(scores, criterion, HUNDRED, bar, programme):
            continue
        target = getattr(programme, f"{criterion}_target")
        missing = bar - total_of(scores, programme)
        wanted_score = min(HUNDRED, scores[criterion] + missing * HUNDRED / weight)
        estimate = wanted_score * Decimal(target) / HUNDRED
        if criterion == Criterion.REVENUE:
            extra = _round_up(max(ZERO, estimate - e.revenue), THOUSAND)
            while not _closes(scores, criterion, _score(e.revenue + extra, target), bar, programme):
                extra += THOUSAND
            steps.append(Step(criterion, f"{euros(extra)} more revenue in the next 12 months"))
        elif criterion == Criterion.GROWTH:
            if e.growth is None:  # from a zero base: growth is all or nothing with the first sale
                continue
            growth = _round_up(estimate, Decimal("1"))
            while not _closes(scores, criterion, _score(growth, target), bar, programme):
                growth += 1
            revenue = e.revenue_previous * (HUNDRED + growth) / HUNDRED
            steps.append(
                Step(
                    criterion,
                    f"growth up to {number(growth)}% on the year before",
                    f"revenue of {euros(_round_up(revenue, THOUSAND))}; now {number(e.growth)}%",
                )
            )
        elif criterion == Criterion.COMPLIANCE:
            if e.revenue <= 0:  # a share of nothing: revenue comes first
                continue
            compliance = _round_up(estimate, Decimal("1"))
            while not _closes(scores, criterion, _score(compliance, target), bar, programme):
                compliance += 1
            steps.append(
                Step(
                    criterion,
                    f"registration compliance up to {number(compliance)}%",
                    f"now {number(e.compliance)}%: the share of your revenue registered before the sale",
                )
            )
        elif criterion == Criterion.CERTIFICATIONS:
            held = max(e.certifications, min_certifications or 0)
            count = max(held + 1, int(_round_up(estimate, Decimal("1"))))
            while not _closes(scores, criterion, _score(count, target), bar, programme):
                count += 1
            more = count - e.certifications
            required = held - e.certifications
            detail = f"the {required} required and {count - held} more" if required else ""
            steps.append(Step(criterion, f"{more} more certification{'' if more == 1 else 's'}", detail))
        elif criterion == Criterion.SATISFACTION:
            average = _round_up(estimate, Decimal("0.1"))
            while not _closes(scores, criterion, _score(average, target), bar, programme):
                average += Decimal("0.1")
            now = f"now {number(e.satisfaction)}" if e.satisfaction is not None else "no scores yet"
            steps.append(Step(criterion, f"customer satisfaction average {number(average)}", now))
    return steps


def _round_up(value: Decimal, unit: Decimal) -> Decimal:
    return (Decimal(value) / unit).to_integral_value(rounding=ROUND_CEILING) * unit


# --- distributors ------------------------------------------------------------------------------------


@dataclass
class DistributorRevenue:
    """What went through a distributor: counted for it separately, never in its resellers' scores'
    stead (a distributor holds no tier)."""

    first: date
    last: date
    revenue: Decimal = ZERO
    previous: Decimal = ZERO
    sales: int = 0
    by_reseller: list[tuple[str, Decimal]] = field(default_factory=list)

    @property
    def growth(self) -> Decimal | None:
        if self.previous <= 0:
            return None
        return ((self.revenue - self.previous) / self.previous * HUNDRED).quantize(Decimal("0.1"))


def distributor_revenue(organisation: Organisation, today: date | None = None, viewer=None) -> DistributorRevenue:
    """The vendor's sales through a distributor over the trailing 12 months (and the 12 before),
    in total and per reseller; two aggregate queries. Vendor staff (`viewer`) see the names of the
    resellers they look after; the others are summed as one line. The distributor's own people
    see all its resellers: they are its customers."""
    from django.db.models import Count, Q, Sum

    from tiers.models import Sale

    day = today or timezone.localdate()
    result = DistributorRevenue(first=day - YEAR + timedelta(days=1), last=day)
    this_year = Q(sold_on__gt=day - YEAR, sold_on__lte=day)
    sales = Sale.objects.filter(distributor=organisation, sold_on__gt=day - 2 * YEAR, sold_on__lte=day)
    totals = sales.aggregate(
        revenue=Sum("amount", filter=this_year),
        previous=Sum("amount", filter=~this_year),
        sales=Count("pk", filter=this_year),
    )
    result.revenue = totals["revenue"] or ZERO
    result.previous = totals["previous"] or ZERO
    result.sales = totals["sales"]
    rows = list(
        sales.filter(this_year)
        .values_list("reseller_id", "reseller__name")
        .annotate(total=Sum("amount"))
        .order_by("-total", "reseller__name")
        .values_list("reseller_id", "reseller__name", "total")
    )
    if viewer is not None and viewer.is_vendor_staff:
        visible = set(Organisation.objects.visible_to(viewer).values_list("pk", flat=True))
        others = sum((total for pk, _name, total in rows if pk not in visible), ZERO)
        result.by_reseller = [(name, total) for pk, name, total in rows if pk in visible]
        if others:
            result.by_reseller.append(("Resellers you do not look after", others))
    else:
        result.by_reseller = [(name, total) for _pk, name, total in rows]
    return result
