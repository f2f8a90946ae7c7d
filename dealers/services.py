"""Every change to organisations, people and invitations goes through a function here.

Each checks who may do it, writes an OrganisationEvent in the same transaction, and sends
mail only after the transaction commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.password_validation import validate_password
from django.core import signing
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from dealers.models import Invitation, Membership, Organisation, OrganisationEvent, StaffRole, User
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
    old = organisation.status
    if old == status:
        return organisation
    organisation.status = status
    organisation.save(update_fields=["status"])
    new_label = Organisation.Status(status).label
    _event(
        organisation=organisation,
        actor=actor,
        kind=OrganisationEvent.Kind.STATUS_CHANGED,
        description=f"Status {Organisation.Status(old).label} → {new_label}" + (f": {reason}" if reason else ""),
        old=old,
        new=status,
        reason=reason,
    )
    return organisation


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
