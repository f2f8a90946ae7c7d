import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from dealers.models import Membership, Organisation, Region, StaffRole, User


def counts():
    return (User.objects.count(), Organisation.objects.count(), Membership.objects.count(), Region.objects.count())


@override_settings(DEBUG=True)
def test_seed_demo_is_idempotent_and_complete(db):
    call_command("seed_demo", stdout=None)
    first = counts()
    call_command("seed_demo")
    assert counts() == first
    users, organisations, memberships, regions = first
    assert regions == 2
    assert 10 <= organisations <= 14
    assert Organisation.objects.filter(kind="distributor").count() == 2
    assert User.objects.filter(groups__name=StaffRole.PARTNER_MANAGER).count() == 3
    assert User.objects.filter(groups__name=StaffRole.REGIONAL_DIRECTOR).count() == 2
    assert User.objects.filter(groups__name=StaffRole.CHANNEL_ADMIN).count() == 1
    assert all(r.regional_director for r in Region.objects.all())
    for org in Organisation.objects.all():
        assert 2 <= org.memberships.count() <= 3
        assert org.memberships.filter(role=Membership.Role.DEALER_ADMIN).count() == 1
    assert User.objects.get(email="eva.vanderberg@vanderberg.example").check_password("portal-demo-2026")
    from deals.models import Conflict, Registration
    from tiers.models import DealerStanding

    assert set(Registration.objects.values_list("status", flat=True)) >= {
        "submitted",
        "info_requested",
        "approved",
        "rejected",
        "won",
        "lost",
        "withdrawn",
        "escalated",
    }
    assert Conflict.objects.filter(kind="conflict", status="open").exists()
    assert Conflict.objects.filter(kind="related").exists()
    assert Conflict.objects.filter(status="escalated").exists()
    assert set(DealerStanding.objects.values_list("tier__name", flat=True)) == {"Gold", "Silver", "Bronze"}
    assert DealerStanding.objects.filter(grace_started_on__isnull=False).count() == 1
    assert DealerStanding.objects.filter(override_tier__isnull=False).count() == 1


@override_settings(DEBUG=False)
def test_seed_demo_refuses_without_debug(db):
    with pytest.raises(CommandError, match="DJANGO_DEBUG"):
        call_command("seed_demo")
    assert counts() == (0, 0, 0, 0)
