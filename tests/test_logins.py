"""Portal log-ins: every successful log-in is recorded (for the KPI), and counted per organisation."""

from datetime import datetime
from zoneinfo import ZoneInfo

import time_machine
from django.urls import reverse

from dealers import services
from dealers.models import LoginRecord, Membership
from tests import factories

TZ = ZoneInfo("Europe/Amsterdam")


def log_in(client, email, password=factories.PASSWORD):
    return client.post(reverse("account_login"), {"login": email, "password": password})


def test_a_log_in_through_the_login_page_is_recorded(world, client):
    moment = datetime(2026, 3, 2, 9, 30, tzinfo=TZ)
    with time_machine.travel(moment, tick=False):
        response = log_in(client, "user@own.example")
    assert response.status_code == 302 and response["Location"] == reverse("home")
    record = LoginRecord.objects.get()
    assert record.user == world.own_user and record.organisation == world.own and record.at == moment


def test_a_failed_log_in_is_not_recorded(world, client):
    log_in(client, "user@own.example", password="wrong password")
    assert "_auth_user_id" not in client.session
    assert not LoginRecord.objects.exists()


def test_staff_are_recorded_only_after_the_second_factor(world, client):
    response = log_in(client, world.pm_a.email)
    assert response["Location"] == reverse("mfa_authenticate")
    assert not LoginRecord.objects.exists()


def test_the_organisation_is_the_one_at_the_time(world):
    services.login_record(user=world.own_user)
    Membership.objects.filter(user=world.own_user).update(organisation=world.other)
    services.login_record(user=world.own_user)
    staff = services.login_record(user=world.pm_a)
    assert list(LoginRecord.objects.order_by("id").values_list("organisation", flat=True)) == [
        world.own.pk,
        world.other.pk,
        None,
    ]
    assert staff.organisation is None


def test_the_log_ins_kpi_counts_log_ins_and_people_per_dealer_and_region(world):
    from datetime import date

    from dealers.models import Organisation
    from tiers.kpis import Period, kpis

    def at(day, hour=9):
        return datetime(2026, 3, day, hour, tzinfo=TZ)

    for user, org, moment in [
        (world.own_admin, world.own, at(2)),
        (world.own_admin, world.own, at(3)),
        (world.own_user, world.own, at(4)),
        (world.other_admin, world.other, at(4)),
        (world.own_user, world.own, at(1)),  # before the period
        (world.own_user, world.own, at(10)),  # after it
        (world.pm_a, None, at(4)),  # staff count for no organisation
    ]:
        LoginRecord.objects.create(user=user, organisation=org, at=moment)
    period = Period(date(2026, 3, 2), date(2026, 3, 9))
    rows = kpis(Organisation.objects.all(), period, "dealer")
    assert (rows[world.own.pk].logins, rows[world.own.pk].login_people) == (3, 2)
    assert (rows[world.other.pk].logins, rows[world.orphan.pk].logins) == (1, 0)
    assert kpis(Organisation.objects.all(), period, "region")[world.north.pk].logins == 3
