"""The tier programme: the vendor's sales to dealers, what dealers hold, and the nightly evaluation.

Revenue is the vendor's own record (sales imported from its ERP), never what dealers report.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from dealers.models import Organisation

MONEY = {"max_digits": 14, "decimal_places": 2}
PERCENT = {"max_digits": 5, "decimal_places": 2}
HUNDRED = Decimal("100")


class Criterion(models.TextChoices):
    REVENUE = "revenue", "Revenue, trailing 12 months"
    GROWTH = "growth", "Year-on-year growth"
    COMPLIANCE = "compliance", "Registration compliance"
    CERTIFICATIONS = "certifications", "Certifications held"
    SATISFACTION = "satisfaction", "Customer satisfaction"


class TierProgramme(models.Model):
    """How dealers qualify: one record, edited by a channel admin."""

    class Mode(models.TextChoices):
        ABSOLUTE = "absolute", "Absolute bars (a minimum total per tier)"
        DISTRIBUTION = "distribution", "Distribution (top share of dealers per tier)"

    mode = models.CharField(max_length=12, choices=Mode.choices, default=Mode.ABSOLUTE)
    grace_days = models.PositiveSmallIntegerField(
        default=90, help_text="Days below its tier before a dealer is demoted."
    )
    revenue_weight = models.DecimalField(**PERCENT, default=Decimal("40"))
    growth_weight = models.DecimalField(**PERCENT, default=Decimal("15"))
    compliance_weight = models.DecimalField(**PERCENT, default=Decimal("20"))
    certifications_weight = models.DecimalField(**PERCENT, default=Decimal("15"))
    satisfaction_weight = models.DecimalField(**PERCENT, default=Decimal("10"))
    revenue_target = models.DecimalField(
        "revenue target (EUR, 12 months)", **MONEY, default=Decimal("500000"), validators=[MinValueValidator(1)]
    )
    growth_target = models.DecimalField(
        "growth target (%)", **PERCENT, default=Decimal("20"), validators=[MinValueValidator(Decimal("0.01"))]
    )
    compliance_target = models.DecimalField(
        "compliance target (%)", **PERCENT, default=Decimal("80"), validators=[MinValueValidator(Decimal("0.01"))]
    )
    certifications_target = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1)])
    satisfaction_target = models.DecimalField(
        "satisfaction target (1–5)",
        max_digits=3,
        decimal_places=2,
        default=Decimal("4.50"),
        validators=[MinValueValidator(1), MaxValueValidator(5)],
    )

    # Dealers flagged for attention on the partner manager's dashboard (tiers.flags)
    attention_registrations_percent = models.PositiveSmallIntegerField(
        "flag: registrations below (% of the tier's median)",
        default=50,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="A dealer registering fewer than this share of the median dealer of its tier is flagged.",
    )
    attention_close_ratio = models.PositiveSmallIntegerField(
        "flag: registration-to-close ratio below (%)",
        default=25,
        validators=[MaxValueValidator(100)],
    )
    attention_min_closed = models.PositiveSmallIntegerField(
        "flag: closed registrations before the ratio counts",
        default=5,
        validators=[MinValueValidator(1)],
        help_text="A ratio over fewer ended registrations says too little to flag a dealer.",
    )
    attention_inactive_days = models.PositiveSmallIntegerField(
        "flag: no activity for (days)",
        default=60,
        validators=[MinValueValidator(1)],
        help_text="No registration submitted and nobody logged in for this many days.",
    )

    class Meta:
        verbose_name = verbose_name_plural = "tier programme"
        constraints = [models.CheckConstraint(condition=Q(pk=1), name="tier_programme_singleton")]

    def __str__(self) -> str:
        return "Tier programme"

    @classmethod
    def load(cls) -> TierProgramme:
        return cls.objects.get_or_create(pk=1)[0]

    def weights(self) -> dict[str, Decimal]:
        return {c: getattr(self, f"{c}_weight") for c in Criterion.values}

    def clean(self):
        total = sum(self.weights().values(), Decimal("0"))
        if total != HUNDRED:
            raise ValidationError(f"The weights add up to {total}%; they must add up to 100%.")


class Tier(models.Model):
    """Gold, Silver, Bronze (or whatever the programme calls them): rank 1 is the highest."""

    name = models.CharField(max_length=40, unique=True)
    rank = models.PositiveSmallIntegerField(unique=True, help_text="1 is the highest tier.")
    base_margin_percent = models.DecimalField(**PERCENT, default=Decimal("10"))
    registered_extra_margin_percent = models.DecimalField(**PERCENT, default=Decimal("5"))
    co_marketing_budget = models.DecimalField("co-marketing budget (EUR/year)", **MONEY, default=Decimal("0"))
    dedicated_partner_manager = models.BooleanField(default=False)
    early_access = models.BooleanField(default=False)
    premium_support = models.BooleanField(default=False)
    open_registration_cap = models.PositiveIntegerField(default=25)
    min_total = models.DecimalField(
        "minimum total score (absolute mode)",
        **PERCENT,
        default=Decimal("0"),
        validators=[MinValueValidator(0), MaxValueValidator(100)],
    )
    min_certifications = models.PositiveSmallIntegerField(null=True, blank=True)
    distribution_share = models.DecimalField(
        "share of dealers (distribution mode, %)",
        **PERCENT,
        default=Decimal("0"),
        validators=[MinValueValidator(0), MaxValueValidator(100)],
    )

    class Meta:
        ordering = ["rank"]

    def __str__(self) -> str:
        return self.name

    @property
    def registered_margin_percent(self) -> Decimal:
        return self.base_margin_percent + self.registered_extra_margin_percent

    def clean(self):
        """A better tier may not ask for less than a worse one, and the distribution shares of all
        tiers together may not pass 100 %."""
        others = Tier.objects.exclude(pk=self.pk)
        errors = {}
        if self.rank is not None and self.min_total is not None:
            if others.filter(rank__lt=self.rank, min_total__lt=self.min_total).exists():
                errors["min_total"] = "A better tier asks for a lower total: the bars must follow the ranks."
            elif others.filter(rank__gt=self.rank, min_total__gt=self.min_total).exists():
                errors["min_total"] = "A lower tier asks for a higher total: the bars must follow the ranks."
        if self.distribution_share is not None:
            total = sum(others.values_list("distribution_share", flat=True), Decimal("0")) + self.distribution_share
            if total > HUNDRED:
                errors["distribution_share"] = f"The shares of all tiers would add up to {total}%, more than 100%."
        if errors:
            raise ValidationError(errors)


class SaleQuerySet(models.QuerySet):
    def visible_to(self, user) -> SaleQuerySet:
        """A dealer sees the sales made to it; vendor staff also see those that went through a
        distributor they look after, whoever the reseller is."""
        visible = Organisation.objects.visible_to(user)
        if user.is_vendor_staff:
            return self.filter(Q(reseller__in=visible) | Q(distributor__in=visible))
        return self.filter(reseller__in=visible)


class Sale(models.Model):
    """One line of the vendor's sales to a dealer, imported from its ERP."""

    erp_line_id = models.CharField("ERP line id", max_length=64, unique=True)
    sold_on = models.DateField()
    reseller = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="sales")
    distributor = models.ForeignKey(
        Organisation, on_delete=models.PROTECT, null=True, blank=True, related_name="distributed_sales"
    )
    customer_name = models.CharField(max_length=200)
    customer_city = models.CharField(max_length=100, blank=True)
    customer_country = models.CharField(max_length=2)
    customer_vat = models.CharField(max_length=24, blank=True)
    product_line = models.ForeignKey("deals.ProductLine", on_delete=models.PROTECT, related_name="sales")
    amount = models.DecimalField(**MONEY)
    registration_reference = models.CharField(max_length=20, blank=True)
    registration = models.ForeignKey(
        "deals.Registration", on_delete=models.SET_NULL, null=True, blank=True, related_name="sales"
    )
    registered_before_sale = models.BooleanField(
        default=False, help_text="Linked to a registration approved before the sale (registration compliance)."
    )
    imported_at = models.DateTimeField(default=timezone.now)

    objects = SaleQuerySet.as_manager()

    class Meta:
        ordering = ["-sold_on", "erp_line_id"]
        indexes = [
            models.Index(fields=["reseller", "sold_on"]),
            models.Index(fields=["distributor", "sold_on"]),
            # the dashboards read the days of a period outside the roll-up's whole months live
            models.Index(fields=["sold_on"], name="sale_sold_on"),
        ]

    def __str__(self) -> str:
        return f"{self.erp_line_id}: € {self.amount} to {self.reseller}"


class Certification(models.Model):
    name = models.CharField(max_length=100, unique=True)
    code = models.SlugField(max_length=30, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CertificationHolding(models.Model):
    """A person of a dealer holds a certification until a date."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="certifications")
    person = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    certification = models.ForeignKey(Certification, on_delete=models.PROTECT, related_name="holdings")
    valid_until = models.DateField()

    class Meta:
        ordering = ["valid_until"]
        constraints = [
            models.UniqueConstraint(fields=["person", "certification"], name="one_holding_per_person_certification")
        ]

    def __str__(self) -> str:
        return f"{self.person} — {self.certification} until {self.valid_until}"


class SatisfactionScore(models.Model):
    """A customer's satisfaction (1–5) with a dealer, recorded by vendor staff or imported."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="satisfaction_scores")
    score = models.PositiveSmallIntegerField(validators=[MinValueValidator(1), MaxValueValidator(5)])
    recorded_on = models.DateField(default=timezone.localdate)
    sale = models.ForeignKey(Sale, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    registration = models.ForeignKey(
        "deals.Registration", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    recorded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-recorded_on"]
        constraints = [
            models.CheckConstraint(condition=Q(score__gte=1, score__lte=5), name="satisfaction_1_to_5"),
            models.UniqueConstraint(
                fields=["registration"],
                condition=Q(registration__isnull=False),
                name="one_satisfaction_per_registration",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.organisation}: {self.score}/5"


class EvaluationRun(models.Model):
    """One nightly evaluation of all dealers, as of a date."""

    run_on = models.DateField(unique=True)
    mode = models.CharField(max_length=12, choices=TierProgramme.Mode.choices)
    cutoffs = models.JSONField(default=dict, help_text="Distribution mode: the lowest total that made each tier.")
    started_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-run_on"]

    def __str__(self) -> str:
        return f"Evaluation of {self.run_on}"


class Evaluation(models.Model):
    """A dealer's scores on one run: each criterion's raw value and 0–100 score, the total, the tier
    its score qualifies for, and the tier it holds after the run (grace periods, overrides)."""

    # Indexes: the run's are those of one_evaluation_per_run (run first), the organisation's its own.
    # The tiers' columns have none: a few values over millions of rows, never searched, and each
    # index made the night's COPY of 10,000 rows slower (76 → 54 ms without these three); deleting a
    # tier, which they protect, reads the table instead.
    run = models.ForeignKey(EvaluationRun, on_delete=models.CASCADE, related_name="evaluations", db_index=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="evaluations")
    revenue = models.DecimalField(**MONEY, default=Decimal("0"))
    revenue_previous = models.DecimalField(**MONEY, default=Decimal("0"))
    # wide: credit notes can leave a cent of revenue beside a large compliant one, or of last year's
    # revenue, and either percentage then runs into the billions (the scores are capped at 100)
    growth = models.DecimalField("growth (%)", max_digits=20, decimal_places=2, null=True, blank=True)
    compliance = models.DecimalField("compliance (%)", max_digits=20, decimal_places=2, default=Decimal("0"))
    certifications = models.PositiveIntegerField(default=0)
    satisfaction = models.DecimalField(max_digits=3, decimal_places=2, null=True, blank=True)
    revenue_score = models.DecimalField(**PERCENT, default=Decimal("0"))
    growth_score = models.DecimalField(**PERCENT, default=Decimal("0"))
    compliance_score = models.DecimalField(**PERCENT, default=Decimal("0"))
    certifications_score = models.DecimalField(**PERCENT, default=Decimal("0"))
    satisfaction_score = models.DecimalField(**PERCENT, default=Decimal("0"))
    total = models.DecimalField(**PERCENT, default=Decimal("0"))
    qualified_tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="+", db_index=False)
    held_tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="+", db_index=False)

    class Meta:
        ordering = ["organisation__name"]
        constraints = [models.UniqueConstraint(fields=["run", "organisation"], name="one_evaluation_per_run")]

    def __str__(self) -> str:
        return f"{self.organisation} on {self.run.run_on}: {self.total}"


class DealerStandingQuerySet(models.QuerySet):
    def visible_to(self, user) -> DealerStandingQuerySet:
        return self.filter(organisation__in=Organisation.objects.visible_to(user))


class DealerStanding(models.Model):
    """A dealer's tier now: what it holds, since when, a running grace period, an override."""

    organisation = models.OneToOneField(Organisation, on_delete=models.CASCADE, related_name="standing")
    tier = models.ForeignKey(Tier, on_delete=models.PROTECT, related_name="+")
    since = models.DateField()
    grace_started_on = models.DateField(null=True, blank=True)
    override_tier = models.ForeignKey(Tier, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    override_until = models.DateField(null=True, blank=True)
    override_reason = models.CharField(max_length=300, blank=True)
    override_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = DealerStandingQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(override_tier__isnull=True) | Q(override_until__isnull=False),
                name="override_has_an_end",
            )
        ]

    def __str__(self) -> str:
        return f"{self.organisation}: {self.effective_tier}"

    def override_active(self, today=None) -> bool:
        return bool(
            self.override_tier_id and self.override_until and self.override_until >= (today or timezone.localdate())
        )

    @property
    def effective_tier(self) -> Tier:
        return self.override_tier if self.override_active() else self.tier


class TierChange(models.Model):
    """Append-only history of a dealer's tier, each with its reason."""

    class Kind(models.TextChoices):
        START = "start", "First evaluation"
        PROMOTION = "promotion", "Promotion"
        DEMOTION = "demotion", "Demotion"
        GRACE_START = "grace_start", "Grace period started"
        GRACE_END = "grace_end", "Grace period ended (recovered)"
        OVERRIDE = "override", "Override"
        OVERRIDE_END = "override_end", "Override ended"

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="tier_changes")
    changed_on = models.DateField()
    created_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=15, choices=Kind.choices)
    from_tier = models.ForeignKey(Tier, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    to_tier = models.ForeignKey(Tier, on_delete=models.PROTECT, null=True, blank=True, related_name="+")
    reason = models.CharField(max_length=500)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-changed_on", "-pk"]
        indexes = [models.Index(fields=["organisation", "changed_on"])]

    def __str__(self) -> str:
        return f"{self.organisation}: {self.get_kind_display()} on {self.changed_on}"


class DealerMonth(models.Model):
    """The registration KPIs of one dealer in one month, as of the last roll-up (tiers.rollup).

    Derived data, rebuilt every night: a dashboard adds these rows up for the whole months of its
    period and counts the rest live (see tiers.rollup for which rest). Each figure is counted by
    its own date: the first submission (submitted; of those, how many ended after approval and
    how many were won), the won date (won_in: how many, their won values and cycle times) or the
    decision (decided, and how many in time)."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    month = models.DateField()  # the first day of the month, local time
    # the dealer's kind, region and partner manager when the roll-up was built: RegionMonth adds
    # up by these, and a dealer changed since is taken out of it by these
    kind = models.CharField(max_length=12)
    region_id = models.BigIntegerField(null=True)
    partner_manager_id = models.BigIntegerField(null=True)
    # the build fills the columns of one date per statement: the others keep the database default
    submitted = models.PositiveIntegerField(db_default=0)
    closed = models.PositiveIntegerField(db_default=0)  # approved and ended since (won, lost, expired)
    won = models.PositiveIntegerField(db_default=0)
    won_in = models.PositiveIntegerField(db_default=0)
    won_value_sum = models.DecimalField(max_digits=18, decimal_places=2, null=True)
    won_value_count = models.PositiveIntegerField(db_default=0)  # how many have a won value
    cycle_sum = models.DurationField(null=True)  # sum of won date − first submission date
    cycle_count = models.PositiveIntegerField(db_default=0)
    decided = models.PositiveIntegerField(db_default=0)
    in_time = models.PositiveIntegerField(db_default=0)  # decided within the review window

    class Meta:
        verbose_name = "dealer month (roll-up)"
        constraints = [models.UniqueConstraint(fields=["organisation", "month"], name="dealermonth_one_per_month")]
        indexes = [models.Index(fields=["month", "organisation"], name="dealermonth_month_org")]

    def __str__(self) -> str:
        return f"{self.organisation_id} {self.month:%Y-%m}"


class RegionMonth(models.Model):
    """The DealerMonth rows of the dealers (resellers) added up per region, partner manager and
    month: what a regional director's or the channel admin's dashboard reads for whole regions."""

    region_id = models.BigIntegerField(null=True)
    partner_manager_id = models.BigIntegerField(null=True)
    month = models.DateField()
    submitted = models.PositiveIntegerField(db_default=0)
    closed = models.PositiveIntegerField(db_default=0)
    won = models.PositiveIntegerField(db_default=0)
    won_in = models.PositiveIntegerField(db_default=0)
    won_value_sum = models.DecimalField(max_digits=18, decimal_places=2, null=True)
    won_value_count = models.PositiveIntegerField(db_default=0)
    cycle_sum = models.DurationField(null=True)
    cycle_count = models.PositiveIntegerField(db_default=0)
    decided = models.PositiveIntegerField(db_default=0)
    in_time = models.PositiveIntegerField(db_default=0)

    class Meta:
        verbose_name = "region month (roll-up)"
        indexes = [models.Index(fields=["month", "region_id"], name="regionmonth_month_region")]

    def __str__(self) -> str:
        return f"region {self.region_id} manager {self.partner_manager_id} {self.month:%Y-%m}"


class SaleMonth(models.Model):
    """The vendor's sales to one dealer in one month and product line, as of the last roll-up
    (tiers.rollup), with the dealer's kind, region and partner manager then."""

    reseller = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    kind = models.CharField(max_length=12)
    region_id = models.BigIntegerField(null=True)
    partner_manager_id = models.BigIntegerField(null=True)
    month = models.DateField()
    product_line = models.ForeignKey(
        "deals.ProductLine", on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    amount = models.DecimalField(max_digits=18, decimal_places=2)
    lines = models.PositiveIntegerField()  # sales lines: a key whose lines are taken out is gone, not €0

    class Meta:
        verbose_name = "sales month (roll-up)"
        indexes = [models.Index(fields=["month", "reseller"], name="salemonth_month_reseller")]

    def __str__(self) -> str:
        return f"{self.reseller_id} {self.month:%Y-%m} {self.product_line_id}: {self.amount}"


class RegionSaleMonth(models.Model):
    """SaleMonth added up per region, partner manager, month and product line (resellers)."""

    region_id = models.BigIntegerField(null=True)
    partner_manager_id = models.BigIntegerField(null=True)
    month = models.DateField()
    product_line = models.ForeignKey(
        "deals.ProductLine", on_delete=models.CASCADE, related_name="+", db_constraint=False
    )
    amount = models.DecimalField(max_digits=18, decimal_places=2)
    lines = models.PositiveIntegerField()  # sales lines: a key whose lines are taken out is gone, not €0

    class Meta:
        verbose_name = "region sales month (roll-up)"
        indexes = [models.Index(fields=["month", "region_id"], name="regionsalemonth_month_region")]

    def __str__(self) -> str:
        return f"region {self.region_id} {self.month:%Y-%m} {self.product_line_id}: {self.amount}"


class RollupState(models.Model):
    """When the roll-up was last built (one row; none yet: every figure is counted live)."""

    built_at = models.DateTimeField()
    rows = models.PositiveIntegerField(default=0)
    seconds = models.DecimalField(max_digits=8, decimal_places=2, default=0)

    def __str__(self) -> str:
        return f"roll-up of {self.built_at:%Y-%m-%d %H:%M}: {self.rows} rows"


class RollupChange(models.Model):
    """A dealer whose registrations changed after the roll-up was built: its figures are counted
    live until the next build. Append-only (no unique key), so that a change committed while the
    build runs is never deleted by it unseen (tiers.rollup.rollup_build)."""

    organisation_id = models.BigIntegerField(db_index=True)

    def __str__(self) -> str:
        return f"dealer {self.organisation_id} changed"
