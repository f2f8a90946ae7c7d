from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.functional import cached_property

from dealers.countries import COUNTRY_CHOICES


class StaffRole(models.TextChoices):
    """Vendor staff roles. Each is a Django group of the same name (created by a migration)."""

    PARTNER_MANAGER = "Partner manager"
    REGIONAL_DIRECTOR = "Regional director"
    CHANNEL_ADMIN = "Channel admin"
    DIRECT_SALES = "Direct sales"


class UserManager(DjangoUserManager):
    use_in_migrations = True

    def _create_user(self, email, password, **extra_fields):
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra_fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email, password=None, **extra_fields):
        extra_fields.setdefault("is_staff", False)
        extra_fields.setdefault("is_superuser", False)
        return self._create_user(email, password, **extra_fields)

    def create_superuser(self, email, password=None, **extra_fields):
        extra_fields["is_staff"] = True
        extra_fields["is_superuser"] = True
        return self._create_user(email, password, **extra_fields)


class User(AbstractUser):
    """A person who logs in: dealer/distributor staff (via a Membership) or vendor staff (via groups)."""

    username = None
    email = models.EmailField("email address", unique=True)
    home_region = models.ForeignKey(
        "dealers.Region",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="staff",
        help_text="For vendor staff: the region a partner manager belongs to.",
    )

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    objects = UserManager()

    class Meta:
        ordering = ["first_name", "last_name", "email"]
        constraints = [models.UniqueConstraint(Lower("email"), name="user_email_ci_unique")]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.email

    @cached_property
    def staff_roles(self) -> frozenset[str]:
        if not (self.is_active and self.is_staff):
            return frozenset()
        roles = set(self.groups.filter(name__in=StaffRole.values).values_list("name", flat=True))
        if self.is_superuser:
            roles.add(StaffRole.CHANNEL_ADMIN)
        return frozenset(roles)

    @property
    def is_vendor_staff(self) -> bool:
        return bool(self.staff_roles)

    @property
    def is_channel_admin(self) -> bool:
        return StaffRole.CHANNEL_ADMIN in self.staff_roles

    @property
    def is_partner_manager(self) -> bool:
        return StaffRole.PARTNER_MANAGER in self.staff_roles

    @property
    def is_regional_director(self) -> bool:
        return StaffRole.REGIONAL_DIRECTOR in self.staff_roles

    @property
    def is_direct_sales(self) -> bool:
        """The vendor's own sales team: never registers, looks customers up, works named accounts."""
        return StaffRole.DIRECT_SALES in self.staff_roles

    @cached_property
    def membership(self) -> Membership | None:
        """The active membership of a dealer or distributor person; None for vendor staff."""
        if not self.is_active:
            return None
        return Membership.objects.select_related("organisation").filter(user=self, deactivated_at__isnull=True).first()

    @property
    def organisation(self) -> Organisation | None:
        return self.membership.organisation if self.membership else None

    @property
    def is_dealer_admin(self) -> bool:
        return bool(self.membership and self.membership.role == Membership.Role.DEALER_ADMIN)


class RegionQuerySet(models.QuerySet):
    def visible_to(self, user) -> RegionQuerySet:
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_vendor_staff:
            return self.all()
        if user.membership:
            return self.filter(pk=user.membership.organisation.region_id)
        return self.none()


class Region(models.Model):
    name = models.CharField(max_length=100, unique=True)
    code = models.SlugField(max_length=20, unique=True, help_text="Short code, e.g. nl or be-lu.")
    regional_director = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="directed_regions",
        limit_choices_to={"is_staff": True, "groups__name": StaffRole.REGIONAL_DIRECTOR},
    )

    objects = RegionQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Specialisation(models.Model):
    name = models.CharField(max_length=100, unique=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class OrganisationQuerySet(models.QuerySet):
    def visible_to(self, user) -> OrganisationQuerySet:
        """The one place that decides which organisations a user may see.

        A dealer or distributor person sees only their own organisation; a partner manager the
        organisations assigned to them; a regional director every organisation in their regions
        (including those without a partner manager); a channel admin everything.
        """
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_channel_admin:
            return self.all()
        if user.is_vendor_staff:
            scope = Q(pk__in=[])
            if user.is_partner_manager:
                scope |= Q(partner_manager=user)
            if user.is_regional_director:
                scope |= Q(region__regional_director=user)
            return self.filter(scope)
        if user.membership:
            return self.filter(pk=user.membership.organisation_id)
        return self.none()

    def with_tier(self) -> OrganisationQuerySet:
        """Each organisation's tier standing in the same query (lists with a Tier column)."""
        return self.select_related("standing__tier", "standing__override_tier")

    def in_tier(self, tier, *, today, lowest: bool) -> OrganisationQuerySet:
        """The dealers whose benefits come from `tier` today: an active override, else the tier they
        hold; dealers never evaluated are in the lowest tier (`lowest`)."""
        overridden = Q(standing__override_tier__isnull=False, standing__override_until__gte=today)
        scope = Q(overridden, standing__override_tier=tier) | Q(
            Q(standing__override_tier__isnull=True) | Q(standing__override_until__lt=today), standing__tier=tier
        )
        if lowest:
            scope |= Q(standing__isnull=True, kind=Organisation.Kind.RESELLER)
        return self.filter(scope)

    def in_grace_period(self) -> OrganisationQuerySet:
        return self.filter(standing__grace_started_on__isnull=False)


class Organisation(models.Model):
    class Kind(models.TextChoices):
        RESELLER = "reseller", "Reseller / dealer"
        DISTRIBUTOR = "distributor", "Distributor"

    class Status(models.TextChoices):
        ONBOARDING = "onboarding", "Onboarding"
        ACTIVE = "active", "Active"
        IMPROVEMENT_PLAN = "improvement_plan", "Improvement plan"
        PHASING_OUT = "phasing_out", "Phasing out"
        TERMINATED = "terminated", "Terminated"

    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.RESELLER)
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ONBOARDING)
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="organisations")
    partner_manager = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="managed_organisations",
        limit_choices_to={"is_staff": True, "groups__name": StaffRole.PARTNER_MANAGER},
        help_text="Without one, the region's regional director looks after this organisation.",
    )
    distributors = models.ManyToManyField(
        "self",
        symmetrical=False,
        blank=True,
        related_name="resellers",
        limit_choices_to={"kind": Kind.DISTRIBUTOR},
        help_text="The distributors a reseller buys through.",
    )
    city = models.CharField(max_length=100)
    country = models.CharField(max_length=2, choices=COUNTRY_CHOICES, default="NL")
    website = models.URLField(blank=True)
    vat_number = models.CharField("VAT number", max_length=20, blank=True)
    company_number = models.CharField(
        "Chamber of Commerce number", max_length=20, blank=True, help_text="KvK, KBO or Handelsregister number."
    )
    specialisations = models.ManyToManyField(Specialisation, blank=True, related_name="organisations")
    joined_on = models.DateField(default=timezone.localdate)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OrganisationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(Lower("name"), "country", name="organisation_name_country_unique"),
        ]
        indexes = [models.Index(fields=["partner_manager", "status"]), models.Index(fields=["region", "status"])]

    def __str__(self) -> str:
        return self.name

    @property
    def account_manager(self):
        """Who looks after this organisation: its partner manager, or else (none, or one who left)
        the regional director."""
        if self.partner_manager is not None and self.partner_manager.is_active:
            return self.partner_manager
        return self.region.regional_director


class Territory(models.Model):
    """Where an organisation sells: a country, optionally narrowed to a postcode range."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="territories")
    country = models.CharField(max_length=2, choices=COUNTRY_CHOICES)
    postcode_from = models.CharField(max_length=10, blank=True)
    postcode_to = models.CharField(max_length=10, blank=True)
    exclusive = models.BooleanField(default=False, help_text="No other dealer may sell to customers here.")

    class Meta:
        verbose_name_plural = "territories"
        ordering = ["country", "postcode_from"]

    def __str__(self) -> str:
        where = self.get_country_display()
        if self.postcode_from:
            where += f" {self.postcode_from}–{self.postcode_to or self.postcode_from}"
        return f"{where} (exclusive)" if self.exclusive else where

    def clean(self):
        if self.postcode_to and not self.postcode_from:
            raise ValidationError({"postcode_from": "Give the start of the postcode range too."})
        if self.postcode_from and self.postcode_to and self.postcode_from > self.postcode_to:
            raise ValidationError({"postcode_to": "The range ends before it starts."})


class MembershipQuerySet(models.QuerySet):
    def visible_to(self, user) -> MembershipQuerySet:
        return self.filter(organisation__in=Organisation.objects.visible_to(user))

    def active(self) -> MembershipQuerySet:
        return self.filter(deactivated_at__isnull=True)


class Membership(models.Model):
    """A person's place in one dealer or distributor organisation. Never deleted: deactivated."""

    class Role(models.TextChoices):
        DEALER_ADMIN = "admin", "Dealer admin"
        DEALER_USER = "user", "Dealer user"

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.DEALER_USER)
    created_at = models.DateTimeField(auto_now_add=True)
    deactivated_at = models.DateTimeField(null=True, blank=True)
    deactivated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = MembershipQuerySet.as_manager()

    class Meta:
        ordering = ["organisation", "user__first_name", "user__last_name"]

    def __str__(self) -> str:
        return f"{self.user} ({self.get_role_display()}, {self.organisation})"

    @property
    def is_active(self) -> bool:
        return self.deactivated_at is None


class InvitationQuerySet(models.QuerySet):
    def visible_to(self, user) -> InvitationQuerySet:
        return self.filter(organisation__in=Organisation.objects.visible_to(user))

    def pending(self, now=None) -> InvitationQuerySet:
        return self.filter(accepted_at__isnull=True, expires_at__gt=now or timezone.now())


class Invitation(models.Model):
    """A single-use link to join an organisation. The link carries a signed id, not a stored secret."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Membership.Role.choices, default=Membership.Role.DEALER_USER)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    objects = InvitationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organisation", "accepted_at"])]

    def __str__(self) -> str:
        return f"Invitation of {self.email} to {self.organisation}"

    def is_expired(self, now=None) -> bool:
        return (now or timezone.now()) >= self.expires_at

    @property
    def state(self) -> str:
        if self.accepted_at:
            return "accepted"
        return "expired" if self.is_expired() else "pending"


class OrganisationEvent(models.Model):
    """Append-only history of an organisation: who changed what, when, and why."""

    class Kind(models.TextChoices):
        CREATED = "created", "Created"
        STATUS_CHANGED = "status_changed", "Status changed"
        PARTNER_MANAGER_CHANGED = "partner_manager_changed", "Partner manager changed"
        MEMBER_INVITED = "member_invited", "Person invited"
        MEMBER_JOINED = "member_joined", "Person joined"
        MEMBER_DEACTIVATED = "member_deactivated", "Person deactivated"
        MEMBER_REACTIVATED = "member_reactivated", "Person reactivated"
        PLAN_OPENED = "plan_opened", "Improvement plan opened"
        PLAN_EXTENDED = "plan_extended", "Improvement plan extended"
        PLAN_MET = "plan_met", "Improvement plan met"
        PLAN_NOT_MET = "plan_not_met", "Improvement plan not met"
        PLAN_WITHDRAWN = "plan_withdrawn", "Improvement plan closed without review"

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=30, choices=Kind.choices)
    description = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.organisation}: {self.description}"


class ImprovementPlanQuerySet(models.QuerySet):
    def visible_to(self, user) -> ImprovementPlanQuerySet:
        """Vendor staff see the plans of the organisations they see; a dealer admin those of its own
        organisation. Other people of the dealer do not: a plan is between the vendor and the
        dealer's management."""
        if not user.is_authenticated or not user.is_active:
            return self.none()
        if user.is_vendor_staff:
            return self.filter(organisation__in=Organisation.objects.visible_to(user))
        if user.is_dealer_admin:
            return self.filter(organisation_id=user.membership.organisation_id)
        return self.none()

    def open(self) -> ImprovementPlanQuerySet:
        return self.filter(status=ImprovementPlan.Status.OPEN)

    def due(self, today) -> ImprovementPlanQuerySet:
        """Open plans whose deadline has come: the day of the deadline is the review day."""
        return self.open().filter(deadline__lte=today)


class ImprovementPlan(models.Model):
    """A partner manager's plan for an underperforming dealer: goals by a deadline, then a review.

    Lifecycle (dealers.services.PLAN_MOVES): open → met (dealer active again) | not met (dealer
    phasing out) | withdrawn (closed without review because the dealer's status was changed by
    other means). Extending keeps the plan open with a later deadline. The goals and the outcome
    are shared with the dealer admin; the notes are for vendor staff only.
    """

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        MET = "met", "Met"
        NOT_MET = "not_met", "Not met: phasing out"
        WITHDRAWN = "withdrawn", "Closed without review"

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="improvement_plans")
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    opened_at = models.DateTimeField(default=timezone.now)
    goals = models.TextField(help_text="Shared with the dealer admin.")
    deadline = models.DateField(help_text="The review date.")
    notes = models.TextField("internal notes", blank=True, help_text="Vendor staff only; never shown to the dealer.")
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.OPEN)
    extensions = models.PositiveSmallIntegerField(default=0, help_text="How often the deadline was moved.")
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True, help_text="When the plan was closed.")
    outcome = models.TextField(blank=True, help_text="The review's conclusion; shared with the dealer admin.")

    objects = ImprovementPlanQuerySet.as_manager()

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["organisation"], condition=Q(status="open"), name="improvement_plan_one_open_per_organisation"
            ),
            models.CheckConstraint(
                condition=Q(status="open", reviewed_at__isnull=True)
                | (~Q(status="open") & Q(reviewed_at__isnull=False)),
                name="improvement_plan_closed_when_reviewed",
            ),
        ]
        indexes = [
            # the review list: open plans by deadline
            models.Index(fields=["deadline"], condition=Q(status="open"), name="improvement_plan_open_deadline"),
        ]

    def __str__(self) -> str:
        return f"Improvement plan of {self.organisation} ({self.get_status_display().lower()})"

    @property
    def is_open(self) -> bool:
        return self.status == self.Status.OPEN

    def is_due(self, today=None) -> bool:
        return self.is_open and self.deadline <= (today or timezone.localdate())


class LoginRecord(models.Model):
    """One successful log-in to the portal, for the log-ins KPI.

    Deliberately light (personal data minimisation): who, for which organisation at the time, and
    when. No IP address, no user agent, no session key. A person's records lose their user when the
    person is deleted, so the organisation's counts stay.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    organisation = models.ForeignKey(
        Organisation,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="login_records",
        help_text="The person's organisation at the time; empty for vendor staff.",
    )
    at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-at"]
        indexes = [models.Index(fields=["organisation", "at"], name="loginrecord_organisation_at")]

    def __str__(self) -> str:
        return f"{self.user} at {self.at:%Y-%m-%d %H:%M}"
