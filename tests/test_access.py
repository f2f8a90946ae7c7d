"""Role scoping: one entry point per model decides who sees what."""

import pytest

from dealers.models import Invitation, Membership, Organisation, Region
from tests import factories


def names(queryset):
    return set(queryset.values_list("name", flat=True))


def test_dealer_sees_only_its_own_organisation(world):
    assert names(Organisation.objects.visible_to(world.own_user)) == {"Own Dealer B.V."}
    assert names(Organisation.objects.visible_to(world.other_admin)) == {"Other Dealer B.V."}


def test_partner_manager_sees_the_dealers_assigned_to_them(world):
    assert names(Organisation.objects.visible_to(world.pm_a)) == {"Own Dealer B.V."}
    assert names(Organisation.objects.visible_to(world.pm_b)) == {"Other Dealer B.V."}


def test_regional_director_sees_their_region_including_dealers_without_partner_manager(world):
    assert names(Organisation.objects.visible_to(world.rd_north)) == {"Own Dealer B.V.", "Orphan Dealer B.V."}
    assert names(Organisation.objects.visible_to(world.rd_south)) == {"Other Dealer B.V."}


def test_channel_admin_and_superuser_see_everything(world):
    everything = {"Own Dealer B.V.", "Other Dealer B.V.", "Orphan Dealer B.V."}
    assert names(Organisation.objects.visible_to(world.channel_admin)) == everything
    superuser = factories.UserFactory(is_staff=True, is_superuser=True)
    assert names(Organisation.objects.visible_to(superuser)) == everything


def test_person_with_two_roles_sees_the_union(world):
    world.pm_a.groups.add(*world.rd_south.groups.all())
    world.south.regional_director = world.pm_a
    world.south.save()
    pm_a = type(world.pm_a).objects.get(pk=world.pm_a.pk)  # fresh: roles are cached per instance
    assert names(Organisation.objects.visible_to(pm_a)) == {"Own Dealer B.V.", "Other Dealer B.V."}


@pytest.mark.parametrize("who", ["anonymous", "deactivated", "no_membership", "staff_without_role"])
def test_nobody_else_sees_anything(world, who):
    from django.contrib.auth.models import AnonymousUser

    user = {
        "anonymous": lambda: AnonymousUser(),
        "deactivated": lambda: factories.dealer_user(world.own, user__is_active=False),
        "no_membership": lambda: factories.UserFactory(),
        "staff_without_role": lambda: factories.StaffFactory(),
    }[who]()
    assert not Organisation.objects.visible_to(user).exists()
    assert not Membership.objects.visible_to(user).exists()
    assert not Invitation.objects.visible_to(user).exists()
    assert not Region.objects.visible_to(user).exists()


def test_deactivated_membership_loses_access(world):
    membership = Membership.objects.get(user=world.own_user)
    from dealers import services

    services.membership_deactivate(membership=membership, actor=world.own_admin)
    user = type(world.own_user).objects.get(pk=world.own_user.pk)
    assert not Organisation.objects.visible_to(user).exists()


def test_memberships_follow_organisation_scope(world):
    emails = set(Membership.objects.visible_to(world.own_user).values_list("user__email", flat=True))
    assert emails == {"admin@own.example", "user@own.example"}
    assert set(Membership.objects.visible_to(world.pm_b).values_list("user__email", flat=True)) == {
        "admin@other.example"
    }


def test_regions_dealer_sees_only_its_own(world):
    assert list(Region.objects.visible_to(world.own_user)) == [world.north]
    assert set(Region.objects.visible_to(world.pm_b)) == {world.north, world.south}


def test_account_manager_falls_back_to_regional_director(world):
    assert world.own.account_manager == world.pm_a
    assert world.orphan.account_manager == world.rd_north


def test_partner_manager_who_left_falls_back_to_regional_director(world):
    world.pm_a.is_active = False
    world.pm_a.save()
    world.own.refresh_from_db()
    assert world.own.account_manager == world.rd_north
