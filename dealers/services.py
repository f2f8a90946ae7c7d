"""Every change to organisations, people and invitations goes through a function here.

Each checks who may do it, writes an OrganisationEvent in the same transaction, and sends
mail only after the transaction commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone

from dealers.models import (
    ImprovementPlan,
    Invitation,
    LoginRecord,
    Membership,
    Organisation,
    OrganisationEvent,
    StaffRole,
    User,
)
from prm.outbox import outbox_enqueue

INVITATION_SALT = "dealers.invitation"


class ServiceError(Exception):
    """A business rule refused the action; the message is meant for the person who tried."""


class NotAllowed(ServiceError):
    pass


class InvitationError(ServiceError):
    pass


def _event(*, organisation, actor, kind, description, now=None, **data) -> OrganisationEvent:
    return OrganisationEvent.objects.create(
        organisation=organisation,
        actor=actor,
        kind=kind,
        description=description,
        created_at=now or timezone.now(),
        data=data,
    )


# --- who may manage an organisation's people ------------------------------------------------------


def can_manage_people(user: User, organisation: Organisation) -> bool:
    """Dealer admins of the organisation itself, and vendor staff who look after it."""
    if not user.is_authenticated or not user.is_active:
        return False
    if user.is_vendor_staff:
        return Organisation.objects.visible_to(user).filter(pk=organisation.pk).exists()
    membership = user.membership
    return bool(
        membership and membership.organisation_id == organisation.pk and membership.role == Membership.Role.DEALER_ADMIN
    )


# --- invitations ---------------------------------------------------------------------------------


def invitation_token(invitation: Invitation) -> str:
    return signing.dumps(invitation.pk, salt=INVITATION_SALT)


def invitation_from_token(token: str) -> Invitation:
    try:
        pk = signing.loads(token, salt=INVITATION_SALT)
    except signing.BadSignature:
        raise InvitationError("This invitation link is not valid. Check that you copied the whole link.") from None
    invitation = Invitation.objects.select_related("organisation").filter(pk=pk).first()
    if invitation is None:
        raise InvitationError("This invitation no longer exists. Ask the person who invited you for a new one.")
    return invitation


def invitation_check_usable(invitation: Invitation, *, now=None) -> None:
    if invitation.accepted_at is not None:
        raise InvitationError(
            "This invitation has already been used. If that was you, log in with your email address; "
            "otherwise ask for a new invitation."
        )
    if invitation.is_expired(now):
        raise InvitationError(
            "This invitation has expired (invitations are valid for "
            f"{settings.PRM_INVITATION_DAYS} days). Ask the person who invited you to send a new one."
        )
    if invitation.organisation.status == Organisation.Status.TERMINATED:
        raise InvitationError("This organisation no longer takes part in the partner programme.")


@transaction.atomic
def invitation_create(
    *, organisation: Organisation, email: str, role: str, invited_by: User, send: bool = True
) -> Invitation:
    if not can_manage_people(invited_by, organisation):
        raise NotAllowed("You may not invite people to this organisation.")
    if organisation.status == Organisation.Status.TERMINATED:
        raise ServiceError("This organisation is terminated; nobody can be invited to it.")
    email = email.strip().lower()
    if User.objects.filter(email__iexact=email).exists():
        raise ServiceError(f"{email} already has an account on the portal.")
    now = timezone.now()
    # A new invitation replaces any pending one for the same address: only the newest link works.
    Invitation.objects.pending(now).filter(organisation=organisation, email__iexact=email).update(expires_at=now)
    invitation = Invitation.objects.create(
        organisation=organisation,
        email=email,
        role=role,
        invited_by=invited_by,
        created_at=now,
        expires_at=now + timedelta(days=settings.PRM_INVITATION_DAYS),
    )
    _event(
        organisation=organisation,
        actor=invited_by,
        kind=OrganisationEvent.Kind.MEMBER_INVITED,
        description=f"Invited {email} as {invitation.get_role_display().lower()}",
        now=now,
        email=email,
        role=role,
    )
    if send:
        invitation_send_on_commit(invitation)
    return invitation


def invitation_send_on_commit(invitation: Invitation) -> None:
    """Queue the invitation email in the outbox: it leaves after commit, and a broker or mail
    server outage delays it instead of losing it."""
    url = settings.PRM_SITE_URL.rstrip("/") + reverse("dealers:invitation_accept", args=[invitation_token(invitation)])
    outbox_enqueue(
        to=invitation.email,
        template="invitation",
        context={"invitation": invitation, "url": url, "days": settings.PRM_INVITATION_DAYS},
        topic=f"invitation {invitation.pk}",
    )


@transaction.atomic
def invitation_accept(*, invitation: Invitation, first_name: str, last_name: str, password: str) -> User:
    now = timezone.now()
    invitation = Invitation.objects.select_for_update().select_related("organisation").get(pk=invitation.pk)
    invitation_check_usable(invitation, now=now)
    if User.objects.filter(email__iexact=invitation.email).exists():
        raise InvitationError(f"{invitation.email} already has an account. Log in instead.")
    user = User(email=invitation.email, first_name=first_name.strip(), last_name=last_name.strip())
    validate_password(password, user)
    user.set_password(password)
    user.save()
    # The invitation went to this address, so following its link proves the address.
    EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
    Membership.objects.create(user=user, organisation=invitation.organisation, role=invitation.role)
    updated = Invitation.objects.filter(pk=invitation.pk, accepted_at__isnull=True).update(
        accepted_at=now, accepted_user=user
    )
    if updated != 1:  # the row lock makes this unreachable; keep single use even without it
        raise InvitationError("This invitation has already been used.")
    _event(
        organisation=invitation.organisation,
        actor=user,
        kind=OrganisationEvent.Kind.MEMBER_JOINED,
        description=f"{user.display_name} joined as {invitation.get_role_display().lower()}",
        now=now,
        user_id=user.pk,
    )
    return user


# --- people ----------------------------------------------------------------------------------------


@transaction.atomic
def membership_deactivate(*, membership: Membership, actor: User) -> Membership:
    membership = Membership.objects.select_for_update().select_related("organisation").get(pk=membership.pk)
    if not can_manage_people(actor, membership.organisation):
        raise NotAllowed("You may not deactivate people of this organisation.")
    if membership.user_id == actor.pk:
        raise ServiceError("You cannot deactivate yourself. Ask another dealer admin or your partner manager.")
    if not membership.is_active:
        raise ServiceError("This person is already deactivated.")
    now = timezone.now()
    membership.deactivated_at = now
    membership.deactivated_by = actor
    membership.save(update_fields=["deactivated_at", "deactivated_by"])
    user = User.objects.get(pk=membership.user_id)
    user.is_active = False  # blocks log-in; everything the person did stays attributed to them
    user.save(update_fields=["is_active"])
    _event(
        organisation=membership.organisation,
        actor=actor,
        kind=OrganisationEvent.Kind.MEMBER_DEACTIVATED,
        description=f"Deactivated {user.display_name}",
        now=now,
        user_id=user.pk,
    )
    return membership


@transaction.atomic
def membership_reactivate(*, membership: Membership, actor: User) -> Membership:
    membership = Membership.objects.select_for_update().select_related("organisation").get(pk=membership.pk)
    if not can_manage_people(actor, membership.organisation):
        raise NotAllowed("You may not reactivate people of this organisation.")
    if membership.is_active:
        raise ServiceError("This person is already active.")
    membership.deactivated_at = None
    membership.deactivated_by = None
    membership.save(update_fields=["deactivated_at", "deactivated_by"])
    User.objects.filter(pk=membership.user_id).update(is_active=True)
    user = User.objects.get(pk=membership.user_id)
    _event(
        organisation=membership.organisation,
        actor=actor,
        kind=OrganisationEvent.Kind.MEMBER_REACTIVATED,
        description=f"Reactivated {user.display_name}",
        user_id=user.pk,
    )
    return membership


# --- organisations ---------------------------------------------------------------------------------


@transaction.atomic
def organisation_set_status(*, organisation: Organisation, status: str, actor: User, reason: str = "") -> Organisation:
    if not Organisation.objects.visible_to(actor).filter(pk=organisation.pk).exists():
        raise NotAllowed("You may not change this organisation.")
    organisation = Organisation.objects.select_for_update().get(pk=organisation.pk)
    if organisation.status == status:
        return organisation
    now = timezone.now()
    _status_change(organisation, status, actor=actor, reason=reason, now=now)
    if status != Organisation.Status.IMPROVEMENT_PLAN:
        # An open plan belongs to the improvement-plan status: a status set by other means (the
        # admin) closes it, so that a plan never stays open on an active or terminated dealer.
        plan = ImprovementPlan.objects.select_for_update().filter(organisation=organisation).open().first()
        if plan is not None:
            label = Organisation.Status(status).label
            _plan_move(
                plan,
                organisation,
                "withdraw",
                actor=actor,
                now=now,
                outcome=f"Closed without review: the status was set to {label}." + (f" {reason}" if reason else ""),
            )
    return organisation


def _status_change(organisation: Organisation, status: str, *, actor: User, reason: str, now) -> None:
    """Set the status of a locked organisation and record it; callers have checked the actor."""
    old = organisation.status
    organisation.status = status
    organisation.save(update_fields=["status"])
    new_label = Organisation.Status(status).label
    _event(
        organisation=organisation,
        actor=actor,
        kind=OrganisationEvent.Kind.STATUS_CHANGED,
        description=f"Status {Organisation.Status(old).label} → {new_label}" + (f": {reason}" if reason else ""),
        now=now,
        old=old,
        new=status,
        reason=reason,
    )


def organisation_record_partner_manager_change(*, organisation: Organisation, old, new, actor: User) -> None:
    _event(
        organisation=organisation,
        actor=actor,
        kind=OrganisationEvent.Kind.PARTNER_MANAGER_CHANGED,
        description=f"Partner manager {old or 'none'} → {new or 'none (regional director)'}",
        old=getattr(old, "pk", None),
        new=getattr(new, "pk", None),
    )


@dataclass(frozen=True)
class ReassignResult:
    moved: int
    to_user: User | None


@transaction.atomic
def organisations_reassign_partner_manager(*, from_user: User, to_user: User | None, actor: User) -> ReassignResult:
    """Move every organisation of one partner manager to another (or to nobody: the regional
    director then looks after them) in one statement, with one history row each."""
    if not actor.is_channel_admin:
        raise NotAllowed("Only a channel admin can move a partner manager's dealers.")
    if to_user is not None and to_user.pk == from_user.pk:
        raise ServiceError("Choose a different partner manager to move the dealers to.")
    if to_user is not None and StaffRole.PARTNER_MANAGER not in to_user.staff_roles:
        raise ServiceError(f"{to_user} is not an active partner manager.")
    now = timezone.now()
    ids = list(Organisation.objects.select_for_update().filter(partner_manager=from_user).values_list("pk", flat=True))
    if not ids:
        return ReassignResult(moved=0, to_user=to_user)
    Organisation.objects.filter(pk__in=ids).update(partner_manager=to_user)
    from tiers.rollup import dealers_changed

    dealers_changed(ids)  # past Organisation.save: the dashboards' roll-up holds them under the old manager
    target = str(to_user) if to_user else "none (regional director)"
    OrganisationEvent.objects.bulk_create(
        OrganisationEvent(
            organisation_id=pk,
            actor=actor,
            created_at=now,
            kind=OrganisationEvent.Kind.PARTNER_MANAGER_CHANGED,
            description=f"Partner manager {from_user} → {target}",
            data={"old": from_user.pk, "new": to_user.pk if to_user else None},
        )
        for pk in ids
    )
    return ReassignResult(moved=len(ids), to_user=to_user)


# --- improvement plans -----------------------------------------------------------------------------


class PlanError(ServiceError):
    """A refused plan action; `field` names the form field the message is about, if any."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


PLAN_MAX_DAYS = 366  # a deadline further out is a typing error, not a plan

# A plan may be opened for these dealers (and, for improvement_plan, only without an open plan).
# Phasing out is the outcome of a failed plan: giving the dealer another chance is a deliberate
# status change first (to active, in the admin), not a side effect of a new plan.
PLAN_OPENABLE_STATUSES = (
    Organisation.Status.ONBOARDING,
    Organisation.Status.ACTIVE,
    Organisation.Status.IMPROVEMENT_PLAN,
)


@dataclass(frozen=True)
class PlanMove:
    target: str  # the plan's status afterwards
    organisation_status: str | None  # the dealer's status afterwards; None leaves it
    event: str  # OrganisationEvent.Kind
    notify: bool = True


Plan = ImprovementPlan.Status

# The review of an open plan, in one place. Every move starts from an open plan.
PLAN_MOVES: dict[str, PlanMove] = {
    "extend": PlanMove(Plan.OPEN, None, OrganisationEvent.Kind.PLAN_EXTENDED),
    "met": PlanMove(Plan.MET, Organisation.Status.ACTIVE, OrganisationEvent.Kind.PLAN_MET),
    "not_met": PlanMove(Plan.NOT_MET, Organisation.Status.PHASING_OUT, OrganisationEvent.Kind.PLAN_NOT_MET),
    # the dealer's status was set by other means (organisation_set_status), which already
    # recorded it; nobody reviewed the plan, so nobody is told about a review
    "withdraw": PlanMove(Plan.WITHDRAWN, None, OrganisationEvent.Kind.PLAN_WITHDRAWN, notify=False),
}


def can_manage_plans(user: User, organisation: Organisation) -> bool:
    """The dealer's partner manager, its regional director and channel admins: vendor staff who
    look after the organisation (the direct team looks after none)."""
    return bool(
        user.is_authenticated
        and user.is_active
        and user.is_vendor_staff
        and Organisation.objects.visible_to(user).filter(pk=organisation.pk).exists()
    )


def _check_plan_manager(actor: User, organisation: Organisation) -> None:
    if not can_manage_plans(actor, organisation):
        raise NotAllowed("Only the dealer's partner manager, its regional director or a channel admin can do this.")


def _day(value: date) -> str:
    return f"{value.day} {value:%B %Y}"


def _check_deadline(deadline: date, *, today: date, field: str) -> None:
    if deadline <= today:
        raise PlanError(
            f"The deadline must be in the future: {_day(deadline)} is "
            + ("today." if deadline == today else "in the past."),
            field=field,
        )
    if deadline > today + timedelta(days=PLAN_MAX_DAYS):
        raise PlanError("The deadline is more than a year away; choose an earlier date.", field=field)


@transaction.atomic
def improvement_plan_open(
    *, organisation: Organisation, goals: str, deadline: date, notes: str = "", actor: User
) -> ImprovementPlan:
    """Open a plan: the dealer goes to the improvement-plan status; its admins and its partner
    manager are told the goals and the deadline (never the internal notes)."""
    _check_plan_manager(actor, organisation)
    now = timezone.now()
    today = timezone.localdate(now)
    organisation = Organisation.objects.select_for_update().get(pk=organisation.pk)
    if organisation.status == Organisation.Status.TERMINATED:
        raise PlanError(f"{organisation} is terminated; it can no longer get an improvement plan.")
    if organisation.status == Organisation.Status.PHASING_OUT:
        raise PlanError(
            f"{organisation} is being phased out. To give it another chance, set its status back to active "
            "first; then open a new plan."
        )
    current = ImprovementPlan.objects.filter(organisation=organisation).open().first()
    if current is not None:
        raise PlanError(
            f"{organisation} already has an open improvement plan (deadline {_day(current.deadline)}). "
            "Review that plan first: extend it if the dealer needs more time."
        )
    goals = goals.strip()
    if not goals:
        raise PlanError("Write down the goals the dealer must reach.", field="goals")
    _check_deadline(deadline, today=today, field="deadline")
    try:
        with transaction.atomic():
            plan = ImprovementPlan.objects.create(
                organisation=organisation,
                opened_by=actor,
                opened_at=now,
                goals=goals,
                deadline=deadline,
                notes=notes.strip(),
            )
    except IntegrityError:  # another open plan slipped in (only where the row lock is not enforced)
        raise PlanError(f"{organisation} already has an open improvement plan.") from None
    _event(
        organisation=organisation,
        actor=actor,
        kind=OrganisationEvent.Kind.PLAN_OPENED,
        description=f"Improvement plan opened, to be reviewed on {_day(deadline)}",
        now=now,
        plan=plan.pk,
        deadline=deadline.isoformat(),
    )
    if organisation.status != Organisation.Status.IMPROVEMENT_PLAN:
        _status_change(
            organisation, Organisation.Status.IMPROVEMENT_PLAN, actor=actor, reason="improvement plan opened", now=now
        )
    _plan_notify(plan, organisation, "opened")
    return plan


def _lock_plan(plan: ImprovementPlan, actor: User) -> tuple[ImprovementPlan, Organisation]:
    """Check the actor, then lock the dealer and the plan (always in that order, as opening does)."""
    organisation = Organisation.objects.get(pk=plan.organisation_id)
    _check_plan_manager(actor, organisation)
    organisation = Organisation.objects.select_for_update().get(pk=plan.organisation_id)
    plan = ImprovementPlan.objects.select_for_update().get(pk=plan.pk)
    if not plan.is_open:
        raise PlanError(f"This improvement plan is already closed ({plan.get_status_display().lower()}).")
    if organisation.status == Organisation.Status.TERMINATED:
        raise PlanError(f"{organisation} is terminated; its improvement plan can no longer be reviewed.")
    return plan, organisation


def _plan_move(
    plan: ImprovementPlan,
    organisation: Organisation,
    action: str,
    *,
    actor: User,
    now,
    outcome: str,
    fields: dict | None = None,
    data: dict | None = None,
) -> ImprovementPlan:
    """Make one move of PLAN_MOVES on a locked, open plan, with its history rows and emails."""
    move = PLAN_MOVES[action]
    outcome = outcome.strip()
    if not outcome:
        raise PlanError("Write down the outcome of the review; the dealer admin reads it.", field="outcome")
    fields = dict(fields or {})
    if move.target != Plan.OPEN:
        fields.update(status=move.target, reviewed_by=actor, reviewed_at=now, outcome=outcome)
    for name, value in fields.items():
        setattr(plan, name, value)
    plan.save(update_fields=list(fields))
    kind = OrganisationEvent.Kind(move.event)
    short = outcome if len(outcome) <= 300 else outcome[:299] + "…"
    if action == "extend":
        description = f"Improvement plan extended to {_day(plan.deadline)}: {short}"
    else:
        description = f"{kind.label}: {short}"
    _event(
        organisation=organisation,
        actor=actor,
        kind=kind,
        description=description,
        now=now,
        plan=plan.pk,
        deadline=plan.deadline.isoformat(),
        outcome=outcome,
        **(data or {}),
    )
    if move.organisation_status and organisation.status != move.organisation_status:
        _status_change(organisation, move.organisation_status, actor=actor, reason=kind.label, now=now)
    if move.notify:
        _plan_notify(plan, organisation, action, outcome=outcome)
    return plan


@transaction.atomic
def improvement_plan_extend(*, plan: ImprovementPlan, deadline: date, outcome: str, actor: User) -> ImprovementPlan:
    """More time: the plan stays open with a later deadline; the dealer stays on the plan."""
    plan, organisation = _lock_plan(plan, actor)
    now = timezone.now()
    today = timezone.localdate(now)
    if deadline <= plan.deadline:
        raise PlanError(
            f"An extension moves the deadline later than {_day(plan.deadline)}; choose a later date.",
            field="deadline",
        )
    _check_deadline(deadline, today=today, field="deadline")
    old = plan.deadline
    return _plan_move(
        plan,
        organisation,
        "extend",
        actor=actor,
        now=now,
        outcome=outcome,
        fields={"deadline": deadline, "extensions": plan.extensions + 1},
        data={"old_deadline": old.isoformat()},
    )


@transaction.atomic
def improvement_plan_met(*, plan: ImprovementPlan, outcome: str, actor: User) -> ImprovementPlan:
    """The goals were reached: the plan closes and the dealer is active again. A review may come
    before the deadline (the dealer got there early)."""
    plan, organisation = _lock_plan(plan, actor)
    return _plan_move(plan, organisation, "met", actor=actor, now=timezone.now(), outcome=outcome)


@transaction.atomic
def improvement_plan_not_met(*, plan: ImprovementPlan, outcome: str, actor: User) -> ImprovementPlan:
    """The goals were not reached: the plan closes and the dealer is phasing out. Destructive:
    the views ask for confirmation first."""
    plan, organisation = _lock_plan(plan, actor)
    return _plan_move(plan, organisation, "not_met", actor=actor, now=timezone.now(), outcome=outcome)


def _plan_notify(plan: ImprovementPlan, organisation: Organisation, action: str, *, outcome: str = "") -> None:
    """Tell the dealer admins and whoever looks after the dealer, through the outbox. The emails
    carry the goals, the deadline and the outcome, never the internal notes."""
    site = settings.PRM_SITE_URL.rstrip("/")
    context = {"plan": plan, "organisation": organisation, "action": action, "outcome": outcome}
    admins = (
        Membership.objects.active()
        .filter(organisation=organisation, role=Membership.Role.DEALER_ADMIN, user__is_active=True)
        .values_list("user__email", flat=True)
    )
    for address in admins:
        outbox_enqueue(
            to=address,
            template="improvement_plan",
            context={**context, "for_dealer": True, "url": site + reverse("dealers:my_organisation")},
            topic=f"improvement plan {plan.pk}",
        )
    manager = organisation.account_manager
    if manager is not None and manager.is_active:
        outbox_enqueue(
            to=manager.email,
            template="improvement_plan",
            context={
                **context,
                "for_dealer": False,
                "url": site + reverse("dealers:dealer_detail", args=[organisation.pk]),
            },
            topic=f"improvement plan {plan.pk}",
        )


# --- log-ins -----------------------------------------------------------------------------------------


def login_record(*, user: User, now=None) -> LoginRecord:
    """Record one successful log-in (called from the user_logged_in signal) with the person's
    organisation at that moment. Who and when only: no IP address or browser, as the KPI needs
    neither (personal data minimisation)."""
    membership = Membership.objects.filter(user=user, deactivated_at__isnull=True)
    organisation_id = membership.values_list("organisation_id", flat=True).first()
    return LoginRecord.objects.create(user=user, organisation_id=organisation_id, at=now or timezone.now())
