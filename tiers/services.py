"""The nightly tier evaluation, overrides, and what a dealer still needs for the next tier.

One run per date: the criteria of every dealer come from one aggregate statement, the
evaluations are written in bulk (COPY on PostgreSQL), standings and tier changes only where they
change, all in one transaction, so a killed run leaves nothing and a second run on the same date
changes nothing.
"""

from __future__ import annotations

import decimal
import math
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db import IntegrityError, connection, transaction
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
    return Decimal(value).quantize(CENT, ROUND_HALF_UP)  # (rounding passed by position: twice as fast)


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
    """The raw criteria as of `day` of every organisation (or of those given) with a sale in the two
    years up to `day`, a certification held on it or a satisfaction score of the last year."""
    where, params = "", []
    if organisation_ids is not None:
        ids = list(organisation_ids)
        if not ids:
            return {}
        where, params = f"WHERE o.id IN ({', '.join(['%s'] * len(ids))})", ids
    return {pk: Raw(*values) for pk, *values, has_data in _criteria(day, where, params, order=False) if has_data}


def evaluated_criteria(day: date) -> list[tuple[int, Raw]]:
    """(pk, raw criteria as of `day`) of every evaluated dealer, with or without data, in name
    order: one statement."""
    return [(pk, Raw(*values)) for pk, *values, _has_data in _evaluated_criteria(day, order=True)]


def _evaluated_criteria(day: date, *, order: bool = False) -> list[tuple]:
    where = "WHERE o.kind = %s AND o.status <> %s"
    params = [Organisation.Kind.RESELLER, Organisation.Status.TERMINATED]
    return _criteria(day, where, params, order=order)


# The criteria of the organisations the WHERE clause picks, as one statement: sales, certifications
# and satisfaction scores each aggregated per organisation and joined to it. Plain SQL that SQLite
# and PostgreSQL both run; the values are converted as the ORM converted its aggregates (see
# _criteria), so that the criteria are the same as those of the ORM queries this replaced.
CRITERIA_SQL = """
SELECT o.id, s.reseller_id, s.revenue, s.previous, s.compliant, c.organisation_id, c.n, sc.organisation_id, sc.average
FROM {organisation} o
LEFT JOIN (
    SELECT reseller_id,
           SUM(CASE WHEN sold_on > %s THEN amount END) AS revenue,
           SUM(CASE WHEN sold_on <= %s THEN amount END) AS previous,
           SUM(CASE WHEN sold_on > %s AND registered_before_sale THEN amount END) AS compliant
    FROM {sale}
    WHERE sold_on > %s AND sold_on <= %s
    GROUP BY reseller_id
) s ON s.reseller_id = o.id
LEFT JOIN (
    SELECT organisation_id, COUNT(DISTINCT certification_id) AS n
    FROM {holding}
    WHERE valid_until >= %s
    GROUP BY organisation_id
) c ON c.organisation_id = o.id
LEFT JOIN (
    SELECT organisation_id, AVG(score) AS average
    FROM {score}
    WHERE recorded_on > %s AND recorded_on <= %s
    GROUP BY organisation_id
) sc ON sc.organisation_id = o.id
{where}
{order}
"""


def _criteria(day: date, where: str, params: list, *, order: bool) -> list[tuple]:
    """(pk, revenue, revenue_previous, compliant_revenue, certifications, satisfaction, whether it
    has any data) of each organisation the WHERE clause picks: the fields of its Raw."""
    adapt = connection.ops.adapt_datefield_value
    d, y1, y2 = adapt(day), adapt(day - YEAR), adapt(day - 2 * YEAR)
    sql = CRITERIA_SQL.format(
        organisation=Organisation._meta.db_table,
        sale=Sale._meta.db_table,
        holding=CertificationHolding._meta.db_table,
        score=SatisfactionScore._meta.db_table,
        where=where,
        order="ORDER BY o.name" if order else "",
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [y1, y1, y1, y2, d, d, y1, d, *params])
        rows = cursor.fetchall()
    # As the ORM converted its aggregates: Sum of a DecimalField a Decimal (on SQLite, a float or
    # an int read through the 15 digits SQLite keeps), Avg of an integer a float, Count an int;
    # and as criteria_as_of read them: no sum, or a zero one, is ZERO.
    if connection.vendor == "sqlite":
        to_decimal = decimal.Context(prec=15).create_decimal_from_float
        return [
            (
                pk,
                (revenue is not None and to_decimal(revenue)) or ZERO,
                (previous is not None and to_decimal(previous)) or ZERO,
                (compliant is not None and to_decimal(compliant)) or ZERO,
                n or 0,
                None if average is None else _q(float(average)),
                sales is not None or holdings is not None or scores is not None,
            )
            for pk, sales, revenue, previous, compliant, holdings, n, scores, average in rows
        ]
    return [  # psycopg2 reads numeric as Decimal
        (
            pk,
            revenue or ZERO,
            previous or ZERO,
            compliant or ZERO,
            n or 0,
            None if average is None else _q(float(average)),
            sales is not None or holdings is not None or scores is not None,
        )
        for pk, sales, revenue, previous, compliant, holdings, n, scores, average in rows
    ]


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
    by_pk = {t.pk: t for t in tiers}
    run = EvaluationRun.objects.create(run_on=day, mode=programme.mode)
    # Every standing as values (a model only for those _apply gets): read before the evaluations
    # are written, as on PostgreSQL they are written while they are computed (see below).
    standings = {
        row[1]: row
        for row in DealerStanding.objects.values_list(
            "pk", "organisation_id", *STANDING_FIELDS, "override_by_id"
        ).order_by()
    }
    scoring = _Scoring(programme)
    # (pk, the values of EVALUATION_COLUMNS from revenue to total), in no particular order:
    # sorting ten thousand names costs more than sorting the night's few changes by name, below
    evaluated = ((pk, scoring.evaluate(*values)) for pk, *values, _has_data in _evaluated_criteria(day))
    if programme.mode == TierProgramme.Mode.DISTRIBUTION:  # every total first
        rows = dict(evaluated)
        qualified, run.cutoffs = qualify_distribution({pk: row[TOTAL] for pk, row in rows.items()}, tiers)
        targets = ((pk, row, qualified[pk]) for pk, row in rows.items())
    else:  # each dealer on its own
        targets = ((pk, row, qualify_absolute(row[TOTAL], row[CERTIFICATIONS], tiers)) for pk, row in evaluated)

    changes: list[TierChange] = []
    new_standings = []
    updates: dict[tuple, list[int]] = {}  # the fields _apply changed (name, new value) -> standings

    def evaluations():
        """Each dealer's evaluation row, its standing settled on the way."""
        for pk, row, target in targets:
            values = standings.get(pk)
            if values is None:
                new_standings.append(DealerStanding(organisation_id=pk, tier=target, since=day))
                changes.append(_change(pk, day, TierChange.Kind.START, None, target, f"First evaluation: {target}."))
                held = target.pk
            else:
                _, _, tier_id, since, grace_started_on, override_tier_id, override_until, reason, by = values
                held = tier_id
                if (  # what _apply acts on: an ended override, another tier, a running grace period
                    (override_tier_id and override_until and override_until < day)
                    or target.rank != by_pk[tier_id].rank
                    or grace_started_on
                ):
                    standing = DealerStanding(
                        pk=values[0],
                        organisation_id=pk,
                        tier=by_pk[tier_id],
                        since=since,
                        grace_started_on=grace_started_on,
                        override_tier=by_pk[override_tier_id] if override_tier_id else None,
                        override_until=override_until,
                        override_reason=reason,
                        override_by_id=by,
                    )
                    if _apply(standing, target, day, programme, row[TOTAL], changes):
                        key = tuple(
                            (f, getattr(standing, f))
                            for f, old in zip(STANDING_FIELDS, values[2:-1], strict=True)
                            if getattr(standing, f) != old
                        )
                        if key:
                            updates.setdefault(key, []).append(standing.pk)
                    held = standing.tier_id
            yield (pk, *row, target.pk, held)

    _write_evaluations(run, evaluations())
    DealerStanding.objects.bulk_create(new_standings)
    # one UPDATE per set of changes (all grace periods that start tonight, the promotions to a
    # tier, ...): a handful of statements, where bulk_update's CASE per row and field cost more
    # building than running
    for key, pks in updates.items():
        for start in range(0, len(pks), 500):
            DealerStanding.objects.filter(pk__in=pks[start : start + 500]).update(**dict(key))
    if len(changes) > 1:  # in the dealers' name order (the order of the history and the emails)
        ids = {c.organisation_id for c in changes}
        named = Organisation.objects.filter(pk__in=ids) if len(ids) <= 1000 else evaluated_organisations()
        position = {pk: i for i, pk in enumerate(named.order_by("name").values_list("pk", flat=True))}
        changes.sort(key=lambda c: position[c.organisation_id])  # stable: a dealer's changes keep their order
    TierChange.objects.bulk_create(changes)
    _notify(changes)
    run.finished_at = timezone.now()
    run.save(update_fields=["cutoffs", "finished_at"])
    return RunResult(run=run, created=True, changes=len(changes))


CRITERIA = tuple(Criterion.values)  # the order of the scores in an evaluation row
# what _apply may change on a standing
STANDING_FIELDS = ("tier_id", "since", "grace_started_on", "override_tier_id", "override_until", "override_reason")


class _Scoring:
    """Raw.growth, Raw.compliance, scores_of and total_of for every dealer of a run, computed as
    those compute them (the same Decimal operations and roundings) in a fraction of the time: the
    programme's targets and weights are read once, the score of each distinct value of a criterion
    with few values (growth, compliance, certifications, satisfaction) is computed once, and the
    total adds each score times its weight / 100 (exact, as each score × weight / 100 is: two
    decimals times at most five digits). tests/test_tier_recompute_equivalence.py compares them."""

    def __init__(self, programme: TierProgramme):
        weights = programme.weights()
        self.parts = {c: weights[c] / HUNDRED for c in CRITERIA}
        self.revenue_target = Decimal(programme.revenue_target)
        self.targets = {c: getattr(programme, f"{c}_target") for c in CRITERIA}
        self.memo: dict[str, dict] = {c: {} for c in CRITERIA}
        # read once for evaluate, which runs for every dealer (attribute and dict look-ups and
        # calls cost as much as the arithmetic there)
        self.growth_target = Decimal(self.targets[Criterion.GROWTH])
        self.revenue_part = self.parts[Criterion.REVENUE]
        self.growth_part = self.parts[Criterion.GROWTH]
        self.full_growth_part = HUNDRED * self.growth_part
        self.memos = (
            self.memo[Criterion.COMPLIANCE],
            self.memo[Criterion.CERTIFICATIONS],
            self.memo[Criterion.SATISFACTION],
        )

    def _scored(self, criterion: str, value) -> tuple[Decimal, Decimal]:
        """(score, score × weight / 100) of a value of a criterion."""
        memo = self.memo[criterion]
        scored = memo.get(value)
        if scored is None:
            score = _score(value, self.targets[criterion])
            scored = memo[value] = (score, score * self.parts[criterion])
        return scored

    def evaluate(self, revenue, previous, compliant, certifications, satisfaction) -> tuple:
        """From a Raw's fields, the values of EVALUATION_COLUMNS from revenue to total: the same
        Decimal operations, in the same order, as Raw.growth, Raw.compliance, _score, scores_of and
        total_of."""
        if previous <= 0:  # Raw.growth
            growth = None
        else:
            growth = ((revenue - previous) / previous * HUNDRED).quantize(CENT, ROUND_HALF_UP)
        if revenue <= 0:  # Raw.compliance
            compliance = ZERO
            revenue_score = ZERO  # _score
        else:
            if compliant < ZERO:
                compliant = ZERO
            compliance = (compliant / revenue * HUNDRED).quantize(CENT, ROUND_HALF_UP)
            revenue_score = revenue / self.revenue_target * HUNDRED
            revenue_score = (revenue_score if revenue_score < HUNDRED else HUNDRED).quantize(CENT, ROUND_HALF_UP)
        if growth is None:  # scores_of: from a zero base any revenue now is full marks
            if revenue > 0:
                growth_score, growth_part = HUNDRED, self.full_growth_part
            else:
                growth_score = ZERO
                growth_part = ZERO * self.growth_part
        else:  # _score (too many values to remember)
            if growth <= 0:
                growth_score = ZERO
            else:
                growth_score = growth / self.growth_target * HUNDRED
                growth_score = (growth_score if growth_score < HUNDRED else HUNDRED).quantize(CENT, ROUND_HALF_UP)
            growth_part = growth_score * self.growth_part
        compliance_memo, certifications_memo, satisfaction_memo = self.memos
        compliance_score, compliance_part = compliance_memo.get(compliance) or self._scored(
            Criterion.COMPLIANCE, compliance
        )
        certifications_score, certifications_part = certifications_memo.get(certifications) or self._scored(
            Criterion.CERTIFICATIONS, certifications
        )
        satisfaction_score, satisfaction_part = satisfaction_memo.get(satisfaction) or self._scored(
            Criterion.SATISFACTION, satisfaction
        )
        total = (
            ZERO
            + revenue_score * self.revenue_part
            + growth_part
            + compliance_part
            + certifications_part
            + satisfaction_part
        ).quantize(CENT, ROUND_HALF_UP)
        return (
            revenue,
            previous,
            growth,
            compliance,
            certifications,
            satisfaction,
            revenue_score,
            growth_score,
            compliance_score,
            certifications_score,
            satisfaction_score,
            total,
        )


EVALUATION_COLUMNS = (
    "organisation_id",
    "revenue",
    "revenue_previous",
    "growth",
    "compliance",
    "certifications",
    "satisfaction",
    *(f"{c}_score" for c in CRITERIA),
    "total",
    "qualified_tier_id",
    "held_tier_id",
)
# positions in a row of _Scoring.evaluate
CERTIFICATIONS, TOTAL = EVALUATION_COLUMNS.index("certifications") - 1, EVALUATION_COLUMNS.index("total") - 1


def _write_evaluations(run: EvaluationRun, rows) -> None:
    """Insert a run's evaluations, each row the values of EVALUATION_COLUMNS: on PostgreSQL with
    COPY (the INSERT of ten thousand rows cost most of a night's run), the rows made as the
    database reads them (it inserts one part while the next is computed), elsewhere with bulk_create."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            raw_cursor = getattr(cursor, "cursor", None)
            if hasattr(raw_cursor, "copy_expert"):  # psycopg2
                line = f"{run.pk}\t" + "\t".join(["%s"] * len(EVALUATION_COLUMNS)) + "\n"
                # numbers and None only: None is the one "None" in a line, COPY's NULL is \N
                lines = ((line % row).replace("None", "\\N") for row in rows)
                columns = ", ".join(connection.ops.quote_name(c) for c in ("run_id", *EVALUATION_COLUMNS))
                reader = _Reader(lines)
                try:
                    raw_cursor.copy_expert(f"COPY {Evaluation._meta.db_table} ({columns}) FROM STDIN", reader)
                except Exception:
                    if reader.error is not None:  # the run failed, not the COPY: its error, not psycopg2's
                        raise reader.error from None
                    raise
                return
    Evaluation.objects.bulk_create(
        Evaluation(run=run, **dict(zip(EVALUATION_COLUMNS, row, strict=True))) for row in rows
    )


class _Reader:
    """A file to read the given lines from, made as they are read."""

    def __init__(self, lines):
        self.lines = lines
        self.rest = ""
        self.error: Exception | None = None

    def read(self, size: int = -1) -> str:
        parts, length = [self.rest], len(self.rest)
        if size < 0 or length < size:
            try:
                for text in self.lines:
                    parts.append(text)
                    length += len(text)
                    if 0 <= size <= length:
                        break
            except Exception as error:
                self.error = error
                raise
        text = "".join(parts)
        if 0 <= size < len(text):
            text, self.rest = text[:size], text[size:]
        else:
            self.rest = ""
        return text


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
