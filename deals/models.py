from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from dealers.countries import COUNTRY_CHOICES
from dealers.models import Organisation

MONEY = {"max_digits": 14, "decimal_places": 2}
PERCENT = {"max_digits": 5, "decimal_places": 2}
CENT = Decimal("0.01")
PERCENT_RANGE = [MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))]


def money(value) -> Decimal:
    """The one rounding rule for euros: to the cent, half up."""
    from decimal import ROUND_HALF_UP

    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


class ProgrammeSettings(models.Model):
    """The rules of the programme, one record, edited by a channel admin in the admin."""

    review_sla_hours = models.PositiveSmallIntegerField(
        "review SLA (working hours)", default=48, validators=[MinValueValidator(1)]
    )
    reminder_hours = models.PositiveSmallIntegerField(
        "remind the reviewer after (working hours)", default=24, validators=[MinValueValidator(1)]
    )
    default_protection_days = models.PositiveSmallIntegerField(default=90, validators=[MinValueValidator(1)])
    extension_days = models.PositiveSmallIntegerField(default=30, validators=[MinValueValidator(1)])
    max_extensions = models.PositiveSmallIntegerField(default=2)
    first_expiry_warning_days = models.PositiveSmallIntegerField(default=14)
    second_expiry_warning_days = models.PositiveSmallIntegerField(default=3)
    default_open_registration_cap = models.PositiveIntegerField(default=25)
    base_margin_percent = models.DecimalField(**PERCENT, default=Decimal("10.00"))
    registered_extra_margin_percent = models.DecimalField(
        "extra margin on registered deals (%)", **PERCENT, default=Decimal("5.00")
    )
    enterprise_value_threshold = models.DecimalField(
        "enterprise value threshold (EUR)", **MONEY, default=Decimal("250000.00")
    )
    stale_after_days = models.PositiveSmallIntegerField(default=45, validators=[MinValueValidator(1)])
    # The forecast counts a protected registration at this share of its value, by decision stage:
    # a deal in its late stage is likelier to close than one just found.
    forecast_weight_early = models.DecimalField(
        "forecast weight, early stage (%)", **PERCENT, default=Decimal("10.00"), validators=PERCENT_RANGE
    )
    forecast_weight_mid = models.DecimalField(
        "forecast weight, mid stage (%)", **PERCENT, default=Decimal("40.00"), validators=PERCENT_RANGE
    )
    forecast_weight_late = models.DecimalField(
        "forecast weight, late stage (%)", **PERCENT, default=Decimal("75.00"), validators=PERCENT_RANGE
    )
    forecast_weight_blank = models.DecimalField(
        "forecast weight, no stage given (%)",
        **PERCENT,
        default=Decimal("5.00"),
        validators=PERCENT_RANGE,
        help_text="The decision stage is optional for the dealer; this weight counts the registrations without one.",
    )
    # Personal data (deals.privacy): a closed registration keeps its customer contact this long.
    contact_retention_months = models.PositiveSmallIntegerField(
        "keep customer contacts after closing (months)",
        default=24,
        validators=[MinValueValidator(1)],
        help_text="A registration's contact person (name, email, phone) is anonymised this many months after the "
        "registration was won, lost, expired, rejected, withdrawn or revoked.",
    )

    class Meta:
        verbose_name = verbose_name_plural = "programme settings"
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="programme_settings_singleton"),
            models.CheckConstraint(
                condition=Q(
                    forecast_weight_early__gte=0,
                    forecast_weight_early__lte=100,
                    forecast_weight_mid__gte=0,
                    forecast_weight_mid__lte=100,
                    forecast_weight_late__gte=0,
                    forecast_weight_late__lte=100,
                    forecast_weight_blank__gte=0,
                    forecast_weight_blank__lte=100,
                ),
                name="programme_settings_forecast_weights_percent",
                violation_error_message="A forecast weight is a percentage from 0 to 100.",
            ),
            models.CheckConstraint(
                condition=Q(first_expiry_warning_days__gt=models.F("second_expiry_warning_days")),
                name="programme_settings_warnings_ordered",
                violation_error_message="The first expiry warning must come before the second.",
            ),
            models.CheckConstraint(
                condition=Q(reminder_hours__lt=models.F("review_sla_hours")),
                name="programme_settings_reminder_before_deadline",
                violation_error_message="The reminder must come before the review deadline.",
            ),
        ]

    def __str__(self) -> str:
        return "Programme settings"

    @classmethod
    def load(cls) -> ProgrammeSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj

    def holiday_dates(self) -> frozenset[date]:
        return frozenset(Holiday.objects.values_list("date", flat=True))

    @property
    def registered_margin_percent(self) -> Decimal:
        return self.base_margin_percent + self.registered_extra_margin_percent

    @property
    def forecast_weights(self) -> dict[str, Decimal]:
        """The forecast weight (%) per decision stage; the blank stage is the key ""."""
        return {
            Registration.Stage.EARLY: self.forecast_weight_early,
            Registration.Stage.MID: self.forecast_weight_mid,
            Registration.Stage.LATE: self.forecast_weight_late,
            "": self.forecast_weight_blank,
        }


class Holiday(models.Model):
    """A day on which the review clock stands still."""

    date = models.DateField(unique=True)
    name = models.CharField(max_length=100)

    class Meta:
        ordering = ["date"]

    def __str__(self) -> str:
        return f"{self.name} ({self.date:%d %b %Y})"


class ProductLine(models.Model):
    name = models.CharField(max_length=100, unique=True)
    code = models.SlugField(max_length=30, unique=True)
    protection_days = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Overrides the programme's default protection days (e.g. 180)."
    )
    direct_only = models.BooleanField(default=False, help_text="Sold only by the vendor's direct team.")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class ProductQuerySet(models.QuerySet):
    def registrable(self) -> ProductQuerySet:
        """What a dealer may put on a registration. Direct-only lines are allowed but flagged."""
        return self.filter(active=True)


class Product(models.Model):
    line = models.ForeignKey(ProductLine, on_delete=models.PROTECT, related_name="products")
    sku = models.CharField("SKU", max_length=40, unique=True)
    name = models.CharField(max_length=200)
    list_price = models.DecimalField(**MONEY, validators=[MinValueValidator(Decimal("0"))])
    active = models.BooleanField(default=True)

    objects = ProductQuerySet.as_manager()

    class Meta:
        ordering = ["line__name", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"


class CustomerQuerySet(models.QuerySet):
    def visible_to(self, user) -> CustomerQuerySet:
        return self.filter(organisation__in=Organisation.objects.visible_to(user))


class Customer(models.Model):
    """An end customer as one dealer knows it. Each dealer keeps its own customer records; the
    conflict check compares them across dealers, and suggestions only ever show a dealer its own."""

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="customers")
    name = models.CharField(max_length=200)
    city = models.CharField(max_length=100)
    postcode = models.CharField(max_length=12)
    country = models.CharField(max_length=2, choices=COUNTRY_CHOICES, default="NL")
    website = models.CharField(max_length=200, blank=True)
    vat_number = models.CharField("VAT number", max_length=20, blank=True)
    company_number = models.CharField("Chamber of Commerce number", max_length=20, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # Matching keys (deals.matching), kept by the services whenever the fields above change; the
    # conflict check finds its candidates through their indexes (a trigram index on name_key on
    # PostgreSQL, see migration 0002).
    name_key = models.CharField(max_length=200, blank=True, editable=False)
    vat_key = models.CharField(max_length=24, blank=True, editable=False)
    register_key = models.CharField(max_length=30, blank=True, editable=False)
    domain_key = models.CharField(max_length=200, blank=True, editable=False)

    objects = CustomerQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        indexes = [
            models.Index(fields=["organisation", "name"]),
            models.Index(fields=["country", "name_key"]),
            models.Index(fields=["vat_key"], condition=~Q(vat_key=""), name="customer_vat_key_idx"),
            models.Index(fields=["register_key"], condition=~Q(register_key=""), name="customer_register_key_idx"),
            models.Index(fields=["domain_key"], condition=~Q(domain_key=""), name="customer_domain_key_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.name}, {self.city}"

    def save(self, *args, **kwargs):
        new = self.pk is None  # inserted with a new id: no registration refers to it yet
        super().save(*args, **kwargs)
        # the copy on its registrations, which the conflict check's index reads (Registration.customer_name_key)
        if not new:
            self.registrations.exclude(customer_name_key=self.name_key).update(customer_name_key=self.name_key)

    def as_match_record(self) -> dict:
        return {
            "name": self.name,
            "city": self.city,
            "postcode": self.postcode,
            "country": self.country,
            "website": self.website,
            "vat": self.vat_number,
            "company_number": self.company_number,
        }


class RegistrationQuerySet(models.QuerySet):
    def visible_to(self, user) -> RegistrationQuerySet:
        """Dealers: their own organisation's registrations. Staff: the dealers they look after, and
        (read-only) the registrations that conflict with those, whoever's dealer they belong to."""
        own = Q(organisation__in=Organisation.objects.visible_to(user))
        if not (user.is_authenticated and user.is_vendor_staff):
            return self.filter(own)
        through_conflicts = (
            Conflict.objects.filter(registration__organisation__in=Organisation.objects.visible_to(user))
            .exclude(status=Conflict.Status.DISMISSED)
            .values("other_id")
        )
        return self.filter(own | Q(pk__in=through_conflicts))

    def of_dealers_visible_to(self, user) -> RegistrationQuerySet:
        """For lists: only the registrations of the dealers the user looks after (a registration seen
        through a conflict is opened from that conflict, not listed)."""
        return self.filter(organisation__in=Organisation.objects.visible_to(user))

    def open(self) -> RegistrationQuerySet:
        return self.filter(status__in=Registration.OPEN_STATUSES)

    def awaiting_review(self) -> RegistrationQuerySet:
        return self.filter(status__in=Registration.REVIEW_STATUSES)

    def review_queue_for(self, user) -> RegistrationQuerySet:
        """A reviewer's queue: their own dealers' open reviews; for a regional director also those
        of dealers without a partner manager, the overdue ones and the escalations in the region."""
        if not user.is_authenticated or not user.is_vendor_staff:
            return self.none()
        waiting = self.filter(status__in=Registration.QUEUE_STATUSES)
        if user.is_channel_admin:
            return waiting
        scope = Q(pk__in=[])
        if user.is_partner_manager:
            scope |= Q(organisation__partner_manager=user)
        if user.is_regional_director:
            scope |= Q(organisation__region__regional_director=user) & (
                Q(organisation__partner_manager__isnull=True)
                | Q(organisation__partner_manager__is_active=False)
                | Q(status=Registration.Status.SUBMITTED, review_due_at__lte=timezone.now())
                | Q(status=Registration.Status.ESCALATED)
            )
        return waiting.filter(scope)


class Registration(models.Model):
    class Status(models.TextChoices):
        SUBMITTED = "submitted", "Submitted"
        INFO_REQUESTED = "info_requested", "More information requested"
        APPROVED = "approved", "Approved (protected)"
        REJECTED = "rejected", "Rejected"
        ESCALATED = "escalated", "Escalated"
        WON = "won", "Won"
        LOST = "lost", "Lost"
        EXPIRED = "expired", "Expired"
        WITHDRAWN = "withdrawn", "Withdrawn"
        REVOKED = "revoked", "Revoked"

    class Stage(models.TextChoices):
        EARLY = "early", "Early"
        MID = "mid", "Mid"
        LATE = "late", "Late"

    class LostReason(models.TextChoices):
        PRICE = "price", "Price"
        COMPETITOR = "competitor", "Chose a competitor"
        NO_BUDGET = "no_budget", "No budget"
        NO_DECISION = "no_decision", "No decision / project cancelled"
        TIMING = "timing", "Timing"
        PRODUCT_FIT = "product_fit", "Product did not fit"
        OTHER = "other", "Other"

    OPEN_STATUSES = (Status.SUBMITTED, Status.INFO_REQUESTED, Status.APPROVED, Status.ESCALATED)
    # final: no transition leaves them (deals.services.TRANSITIONS); the retention clock starts here
    CLOSED_STATUSES = (Status.WON, Status.LOST, Status.EXPIRED, Status.REJECTED, Status.WITHDRAWN, Status.REVOKED)
    REVIEW_STATUSES = (Status.SUBMITTED,)  # the review clock runs
    QUEUE_STATUSES = (Status.SUBMITTED, Status.INFO_REQUESTED, Status.ESCALATED)  # shown in a reviewer's queue

    reference = models.CharField(max_length=20, unique=True, editable=False)
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="registrations")
    registered_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="registrations")
    contact_name = models.CharField("contact person", max_length=200)
    contact_email = models.EmailField("contact email")
    contact_phone = models.CharField("contact phone", max_length=40, blank=True)
    expected_value = models.DecimalField(**MONEY, default=Decimal("0.00"))
    expected_close_date = models.DateField()
    competitors = models.CharField(max_length=300, blank=True)
    decision_stage = models.CharField(max_length=10, choices=Stage.choices, blank=True)
    next_steps = models.TextField(blank=True)

    status = models.CharField(max_length=20, choices=Status.choices, default=Status.SUBMITTED, editable=False)
    status_changed_at = models.DateTimeField(default=timezone.now, editable=False)
    first_submitted_at = models.DateTimeField(editable=False)
    review_started_at = models.DateTimeField(editable=False)
    review_remind_at = models.DateTimeField(editable=False)
    review_due_at = models.DateTimeField(editable=False)
    reminded_at = models.DateTimeField(null=True, blank=True, editable=False)
    overdue_at = models.DateTimeField(null=True, blank=True, editable=False)
    decided_at = models.DateTimeField(null=True, blank=True, editable=False)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    review_working_hours = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    decided_in_time = models.BooleanField(null=True, blank=True)
    protected_until = models.DateField(null=True, blank=True)
    margin_percent = models.DecimalField(**PERCENT, null=True, blank=True)
    extension_count = models.PositiveSmallIntegerField(default=0)
    expiry_warnings_sent = models.PositiveSmallIntegerField(default=0)
    last_activity_at = models.DateTimeField(default=timezone.now)
    stale_flagged_at = models.DateTimeField(null=True, blank=True)

    won_value = models.DecimalField(**MONEY, null=True, blank=True)
    won_date = models.DateField(null=True, blank=True)
    lost_reason = models.CharField(max_length=20, choices=LostReason.choices, blank=True)
    lost_competitor = models.CharField(max_length=200, blank=True)
    # when the contact person's details were anonymised (retention) or erased (on request)
    anonymised_at = models.DateTimeField(null=True, blank=True, editable=False)
    # The customer's name_key, copied here so that PostgreSQL can keep a trigram index of the active
    # registrations only (migration 0007): the conflict check looks for similar names among some
    # 40,000 active registrations instead of every customer ever registered. Kept by save() here
    # and by Customer.save().
    customer_name_key = models.CharField(max_length=200, blank=True, default="", editable=False)

    objects = RegistrationQuerySet.as_manager()

    class Meta:
        ordering = ["-first_submitted_at", "-pk"]
        indexes = [
            models.Index(fields=["organisation", "status", "-first_submitted_at"]),
            # a dealer's list in its own order (views.registration_list): a page is read from here,
            # its ids alone (an index-only scan), instead of sorting all of the dealer's rows
            models.Index(fields=["organisation", "-first_submitted_at", "-id"], name="registration_org_submitted"),
            models.Index(fields=["status", "review_due_at"]),
            models.Index(fields=["status", "protected_until"]),
            # the forecast's protected registrations past their expected close date, the longest
            # overdue first (deals.forecast.past_close): the first 100 read in order from here
            models.Index(
                fields=["expected_close_date", "id"], name="registration_past_close", condition=Q(status="approved")
            ),
            models.Index(fields=["status", "review_remind_at"]),
            # the conflict check asks "does this customer have an active registration?" per candidate
            models.Index(
                fields=["customer"],
                name="registration_active_customer",
                condition=Q(status__in=["submitted", "info_requested", "approved", "escalated"]),
            ),
            # the nightly anonymisation looks for closed registrations whose contact is still there
            models.Index(
                fields=["status_changed_at"],
                name="registration_contact_kept",
                condition=Q(
                    anonymised_at__isnull=True,
                    status__in=["won", "lost", "expired", "rejected", "withdrawn", "revoked"],
                ),
            ),
            # the dashboards count the days of a period outside the roll-up's whole months live
            # (tiers.rollup), by submission, won date and decision; the median review time reads
            # the decisions of the period from this index alone
            models.Index(fields=["first_submitted_at"], name="registration_submitted"),
            models.Index(fields=["won_date"], name="registration_won_date", condition=Q(status="won")),
            models.Index(
                fields=["decided_at"],
                name="registration_decided",
                include=["organisation", "review_working_hours", "decided_in_time"],
            ),
            models.Index(
                fields=["organisation", "decided_at"],
                name="registration_dealer_decided",
                include=["review_working_hours", "decided_in_time"],
            ),
            # the open pipeline (approved, protection running) of many dealers, from the index alone
            models.Index(
                fields=["protected_until"],
                name="registration_pipeline",
                condition=Q(status="approved"),
                include=["organisation", "expected_value"],
            ),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(expected_value__gte=0), name="registration_value_not_negative"),
            models.CheckConstraint(
                condition=~Q(status="approved") | Q(protected_until__isnull=False),
                name="registration_approved_has_protection",
            ),
        ]

    def __str__(self) -> str:
        return self.reference

    def save(self, *args, **kwargs):
        customer = self._state.fields_cache.get("customer")
        if customer is not None:
            self.customer_name_key = customer.name_key
        elif self.customer_id and not self.customer_name_key:
            self.customer_name_key = (
                Customer.objects.filter(pk=self.customer_id).values_list("name_key", flat=True).first() or ""
            )
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "customer" in update_fields:
            kwargs["update_fields"] = {*update_fields, "customer_name_key"}
        super().save(*args, **kwargs)

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN_STATUSES

    @property
    def is_protected(self) -> bool:
        return self.status == self.Status.APPROVED

    def days_left(self, today: date | None = None) -> int | None:
        if self.protected_until is None or not self.is_protected:
            return None
        return (self.protected_until - (today or timezone.localdate())).days

    def is_overdue(self, now=None) -> bool:
        return self.status in self.REVIEW_STATUSES and (now or timezone.now()) >= self.review_due_at


class RegistrationLine(models.Model):
    registration = models.ForeignKey(Registration, on_delete=models.CASCADE, related_name="lines")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="+")
    quantity = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    value = models.DecimalField(**MONEY, validators=[MinValueValidator(Decimal("0.01"))])

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.CheckConstraint(condition=Q(quantity__gt=0), name="registration_line_quantity_positive"),
            models.CheckConstraint(condition=Q(value__gt=0), name="registration_line_value_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.product}"


class RegistrationEvent(models.Model):
    """Append-only history: one row per transition (and per extension decision).

    `reason` is shown to the dealer; `internal_note` only to vendor staff."""

    registration = models.ForeignKey(Registration, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    action = models.CharField(max_length=30)
    from_status = models.CharField(max_length=20, choices=Registration.Status.choices, blank=True)
    to_status = models.CharField(max_length=20, choices=Registration.Status.choices)
    reason = models.TextField(blank=True)
    internal_note = models.TextField(blank=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["registration", "created_at"])]

    def __str__(self) -> str:
        return f"{self.registration}: {self.from_status or '—'} → {self.to_status}"


class ExtensionRequest(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPROVED = "approved", "Approved"
        DECLINED = "declined", "Declined"
        CANCELLED = "cancelled", "Cancelled (the protection ended first)"

    registration = models.ForeignKey(Registration, on_delete=models.CASCADE, related_name="extension_requests")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    requested_at = models.DateTimeField(default=timezone.now)
    reason = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True)

    class Meta:
        ordering = ["-requested_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["registration"], condition=Q(status="pending"), name="one_pending_extension_per_registration"
            )
        ]

    def __str__(self) -> str:
        return f"Extension of {self.registration} ({self.get_status_display().lower()})"


class ReferenceCounter(models.Model):
    """The last reference number handed out per year (REG-2026-000123); bumped under a row lock."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last}"


class NamedAccountQuerySet(models.QuerySet):
    def active(self) -> NamedAccountQuerySet:
        return self.filter(active=True)


class NamedAccount(models.Model):
    """A customer reserved for the vendor's direct team, or for one dealer."""

    name = models.CharField(max_length=200)
    city = models.CharField(max_length=100, blank=True)
    country = models.CharField(max_length=2, choices=COUNTRY_CHOICES, default="NL")
    website = models.CharField(max_length=200, blank=True)
    vat_number = models.CharField("VAT number", max_length=20, blank=True)
    company_number = models.CharField("Chamber of Commerce number", max_length=20, blank=True)
    reserved_for = models.ForeignKey(
        Organisation,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="named_accounts",
        help_text="Leave empty when the account is reserved for the vendor's direct team.",
    )
    note = models.CharField(max_length=300, blank=True)
    active = models.BooleanField(default=True)

    objects = NamedAccountQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def as_match_record(self) -> dict:
        return {
            "name": self.name,
            "city": self.city,
            "country": self.country,
            "website": self.website,
            "vat": self.vat_number,
            "company_number": self.company_number,
        }


class Conflict(models.Model):
    """Two registrations of (probably) one customer by different dealers, found at submission.

    `registration` is the one submitted later; the conflict belongs to its reviewers. With an
    overlapping product line it is a conflict; with other product lines only a related registration
    (shown to the reviewer, not blocking)."""

    class Kind(models.TextChoices):
        CONFLICT = "conflict", "Conflict"
        RELATED = "related", "Related registration"

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        ESCALATED = "escalated", "Escalated"
        RESOLVED = "resolved", "Resolved"
        DISMISSED = "dismissed", "Not the same customer"

    registration = models.ForeignKey(Registration, on_delete=models.CASCADE, related_name="conflicts")
    other = models.ForeignKey(Registration, on_delete=models.CASCADE, related_name="conflicted_by")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    score = models.DecimalField(max_digits=4, decimal_places=3)
    reasons = models.JSONField(default=list)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    winner = models.ForeignKey(Registration, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    customer_chose = models.BooleanField(default=False, help_text="The customer chose the winning dealer.")
    note = models.TextField(blank=True, help_text="Internal: why it was decided or escalated.")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["registration", "other"], name="conflict_pair_unique"),
            models.CheckConstraint(condition=~Q(registration=models.F("other")), name="conflict_not_self"),
        ]
        indexes = [models.Index(fields=["status", "kind"])]

    def __str__(self) -> str:
        return f"{self.registration} × {self.other} ({self.get_kind_display().lower()})"

    @property
    def is_blocking(self) -> bool:
        return self.kind == self.Kind.CONFLICT and self.status in (self.Status.OPEN, self.Status.ESCALATED)

    @property
    def suggested_winner(self) -> Registration:
        """The default rule: the earliest first submission wins."""
        return min((self.registration, self.other), key=lambda r: (r.first_submitted_at, r.pk))


class NotSameCustomer(models.Model):
    """A reviewer's ruling that two customer records are different customers: never flagged again."""

    customer_low = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    customer_high = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="+")
    decided_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    decided_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["customer_low", "customer_high"], name="not_same_customer_pair_unique"),
            models.CheckConstraint(condition=Q(customer_low__lt=models.F("customer_high")), name="not_same_ordered"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_low} ≠ {self.customer_high}"


class RegistrationFlag(models.Model):
    """A channel rule the registration touches, with its plain-language explanation (for staff)."""

    class Kind(models.TextChoices):
        NAMED_ACCOUNT = "named_account", "Named account"
        TERRITORY = "territory", "Territory"
        SEGMENT = "segment", "Enterprise segment"
        DIRECT_ONLY = "direct_only", "Direct-only product line"
        OWN_DUPLICATE = "own_duplicate", "Registered before by the same dealer"

    registration = models.ForeignKey(Registration, on_delete=models.CASCADE, related_name="flags")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    explanation = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.registration}: {self.get_kind_display()}"


class ProtectionLookup(models.Model):
    """Every look-up of a customer's protection by vendor staff is logged."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    query = models.CharField(max_length=200)
    result_count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.user} looked up “{self.query}”"


class ErasureLog(models.Model):
    """One erasure of a person's details on request (deals.privacy.person_erase).

    It holds nothing that identifies the person: a keyed hash of the email address (to answer "did
    we erase this address?" later, see deals.privacy.email_hash), whether a name was given, and how
    many records of each kind were redacted."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    email_hash = models.CharField("email hash", max_length=64, db_index=True)
    name_given = models.BooleanField(default=False)
    reason = models.TextField(help_text="Why: the request it answers (redacted like everything else).")
    counts = models.JSONField(default=dict, help_text="Records redacted, per kind.")
    total = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "erasure"

    def __str__(self) -> str:
        return f"Erasure of {self.created_at:%Y-%m-%d %H:%M} ({self.total} records)"


class OpenCustomer(models.Model):
    """One row per customer that has at least one open registration (Registration.OPEN_STATUSES:
    submitted, info requested, approved, escalated), with the customer's country and name key.

    A narrow copy for the fuzzy name searches of the conflict check and the protection lookup: on
    PostgreSQL its own trigram index (migration 0011) answers "which open customers have a name
    like this one" from a table of some 40,000 short rows, instead of rechecking hundreds of wide
    registration rows per common trade word. Kept exactly in sync by deals.open_customers (signals
    on Registration and Customer, and the nightly expiry's bulk SQL); open_customers_rebuild
    writes it from scratch."""

    customer = models.OneToOneField(Customer, on_delete=models.CASCADE, primary_key=True, related_name="+")
    country = models.CharField(max_length=2)
    name_key = models.CharField(max_length=200, blank=True)

    def __str__(self) -> str:
        return f"{self.customer_id}: {self.name_key} ({self.country})"
