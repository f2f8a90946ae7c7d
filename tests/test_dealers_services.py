import re
from datetime import timedelta

import pytest
import time_machine
from allauth.account.models import EmailAddress
from django.core import mail
from django.utils import timezone

from dealers import services
from dealers.models import Invitation, Membership, Organisation, OrganisationEvent, User
from tests import factories


def invite(world, *, email="new.person@own.example", role=Membership.Role.DEALER_USER, by=None):
    return services.invitation_create(
        organisation=world.own, email=email, role=role, invited_by=by or world.own_admin, send=False
    )


# --- invitations ---------------------------------------------------------------------------------


def test_dealer_admin_invites_colleague_and_email_goes_out_after_commit(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        invitation = services.invitation_create(
            organisation=world.own, email="New.Person@Own.example", role="user", invited_by=world.own_admin
        )
    assert len(callbacks) == 1
    assert invitation.email == "new.person@own.example"
    assert invitation.expires_at - invitation.created_at == timedelta(days=7)
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["new.person@own.example"]
    assert "Own Dealer B.V." in message.subject
    # the link's token opens this invitation (a token is signed with the second it was made in: it is
    # compared by what it opens, not as text, which failed when the test crossed a second)
    (token,) = re.findall(r"/invitations/([^/\s]+)/", message.body)
    assert services.invitation_from_token(token) == invitation
    assert OrganisationEvent.objects.filter(organisation=world.own, kind="member_invited").count() == 1


def test_no_email_when_the_transaction_rolls_back(world, django_capture_on_commit_callbacks):
    from django.db import transaction

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError), transaction.atomic():
            services.invitation_create(
                organisation=world.own, email="new.person@own.example", role="user", invited_by=world.own_admin
            )
            raise RuntimeError("something later in the same transaction failed")
    assert callbacks == []
    assert mail.outbox == []
    assert not Invitation.objects.exists()


@pytest.mark.parametrize("inviter", ["own_user", "other_admin", "pm_b", "rd_south"])
def test_only_dealer_admin_and_responsible_staff_may_invite(world, inviter):
    with pytest.raises(services.NotAllowed):
        invite(world, by=getattr(world, inviter))


@pytest.mark.parametrize("inviter", ["own_admin", "pm_a", "rd_north", "channel_admin"])
def test_allowed_inviters(world, inviter):
    assert invite(world, by=getattr(world, inviter)).pk


def test_cannot_invite_an_existing_account(world):
    with pytest.raises(services.ServiceError, match="already has an account"):
        invite(world, email="USER@own.example")


def test_new_invitation_replaces_pending_one(world):
    first = invite(world)
    second = invite(world)
    first.refresh_from_db()
    assert first.state == "expired"
    assert second.state == "pending"


def test_accepting_creates_verified_user_and_membership(world):
    invitation = invite(world, role=Membership.Role.DEALER_ADMIN)
    user = services.invitation_accept(
        invitation=invitation, first_name=" Nina ", last_name="Bakker", password="a-long-secret-phrase"
    )
    assert user.email == "new.person@own.example"
    assert user.first_name == "Nina"
    assert user.check_password("a-long-secret-phrase")
    assert EmailAddress.objects.get(user=user).verified
    assert user.membership.organisation == world.own
    assert user.membership.role == Membership.Role.DEALER_ADMIN
    invitation.refresh_from_db()
    assert invitation.accepted_at is not None and invitation.accepted_user == user
    assert OrganisationEvent.objects.filter(organisation=world.own, kind="member_joined").exists()


def test_invitation_is_single_use(world):
    invitation = invite(world)
    services.invitation_accept(invitation=invitation, first_name="A", last_name="B", password="a-long-secret-phrase")
    with pytest.raises(services.InvitationError, match="already been used"):
        services.invitation_accept(invitation=invitation, first_name="C", last_name="D", password="another-long-one")
    assert User.objects.filter(email="new.person@own.example").count() == 1


def test_invitation_expires_after_seven_days(world):
    invitation = invite(world)
    with time_machine.travel(timezone.now() + timedelta(days=7, seconds=1)):
        with pytest.raises(services.InvitationError, match="expired"):
            services.invitation_accept(invitation=invitation, first_name="A", last_name="B", password="long-password-1")
    with time_machine.travel(timezone.now() + timedelta(days=6, hours=23)):
        assert services.invitation_accept(
            invitation=invitation, first_name="A", last_name="B", password="long-password-1"
        )


def test_weak_password_is_refused_and_nothing_created(world):
    from django.core.exceptions import ValidationError

    invitation = invite(world)
    with pytest.raises(ValidationError):
        services.invitation_accept(invitation=invitation, first_name="A", last_name="B", password="12345678901")
    assert not User.objects.filter(email=invitation.email).exists()
    invitation.refresh_from_db()
    assert invitation.accepted_at is None


def test_tampered_token_is_rejected(world):
    token = services.invitation_token(invite(world))
    with pytest.raises(services.InvitationError, match="not valid"):
        services.invitation_from_token(token[:-2] + "xx")


def test_terminated_organisation_takes_no_invitations(world):
    services.organisation_set_status(organisation=world.own, status="terminated", actor=world.pm_a)
    world.own.refresh_from_db()
    with pytest.raises(services.ServiceError, match="terminated"):
        invite(world)


# --- people ----------------------------------------------------------------------------------------


def test_deactivate_blocks_login_and_keeps_everything(world):
    membership = Membership.objects.get(user=world.own_user)
    services.membership_deactivate(membership=membership, actor=world.own_admin)
    membership.refresh_from_db()
    world.own_user.refresh_from_db()
    assert membership.deactivated_at is not None and membership.deactivated_by == world.own_admin
    assert world.own_user.is_active is False
    assert User.objects.filter(pk=world.own_user.pk).exists()
    event = OrganisationEvent.objects.get(kind="member_deactivated")
    assert event.actor == world.own_admin


def test_reactivate(world):
    membership = Membership.objects.get(user=world.own_user)
    services.membership_deactivate(membership=membership, actor=world.own_admin)
    services.membership_reactivate(membership=membership, actor=world.pm_a)
    world.own_user.refresh_from_db()
    assert world.own_user.is_active


def test_cannot_deactivate_yourself_or_twice(world):
    own_admin_membership = Membership.objects.get(user=world.own_admin)
    with pytest.raises(services.ServiceError, match="yourself"):
        services.membership_deactivate(membership=own_admin_membership, actor=world.own_admin)
    membership = Membership.objects.get(user=world.own_user)
    services.membership_deactivate(membership=membership, actor=world.own_admin)
    with pytest.raises(services.ServiceError, match="already"):
        services.membership_deactivate(membership=membership, actor=world.own_admin)


@pytest.mark.parametrize("actor", ["other_admin", "pm_b", "own_user"])
def test_outsiders_cannot_deactivate(world, actor):
    membership = Membership.objects.get(user=world.own_user)
    with pytest.raises(services.NotAllowed):
        services.membership_deactivate(membership=membership, actor=getattr(world, actor))


# --- organisations ---------------------------------------------------------------------------------


def test_status_change_is_recorded(world):
    services.organisation_set_status(
        organisation=world.own, status="improvement_plan", actor=world.pm_a, reason="Too few registrations"
    )
    world.own.refresh_from_db()
    assert world.own.status == Organisation.Status.IMPROVEMENT_PLAN
    event = OrganisationEvent.objects.get(kind="status_changed")
    assert event.data == {"old": "active", "new": "improvement_plan", "reason": "Too few registrations"}


def test_status_change_refused_for_staff_who_do_not_see_the_dealer(world):
    with pytest.raises(services.NotAllowed):
        services.organisation_set_status(organisation=world.own, status="terminated", actor=world.pm_b)


def test_reassign_moves_all_dealers_in_one_step(world):
    extra = factories.OrganisationFactory(region=world.north, partner_manager=world.pm_a)
    result = services.organisations_reassign_partner_manager(
        from_user=world.pm_a, to_user=world.pm_b, actor=world.channel_admin
    )
    assert result.moved == 2
    assert set(Organisation.objects.filter(partner_manager=world.pm_b)) == {world.own, world.other, extra}
    assert not Organisation.objects.filter(partner_manager=world.pm_a).exists()
    assert OrganisationEvent.objects.filter(kind="partner_manager_changed").count() == 2


def test_reassign_to_nobody_falls_to_regional_director(world):
    services.organisations_reassign_partner_manager(from_user=world.pm_a, to_user=None, actor=world.channel_admin)
    world.own.refresh_from_db()
    assert world.own.partner_manager is None
    assert world.own.account_manager == world.rd_north
    assert world.own in Organisation.objects.visible_to(world.rd_north)


def test_reassign_only_by_channel_admin_and_to_a_partner_manager(world):
    with pytest.raises(services.NotAllowed):
        services.organisations_reassign_partner_manager(from_user=world.pm_a, to_user=world.pm_b, actor=world.rd_north)
    with pytest.raises(services.ServiceError, match="not an active partner manager"):
        services.organisations_reassign_partner_manager(
            from_user=world.pm_a, to_user=world.rd_north, actor=world.channel_admin
        )


def test_invitation_pending_queryset(world):
    invitation = invite(world)
    assert list(Invitation.objects.pending()) == [invitation]
    with time_machine.travel(timezone.now() + timedelta(days=8)):
        assert list(Invitation.objects.pending()) == []
