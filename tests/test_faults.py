"""Faults: a nightly job killed halfway and run again ends where one clean run ends; two workers on
the same job do the work once; the portal survives its database connections being cut.

(The outbox side — broker or mail server down, every email sent once when they are back — is in
tests/test_outbox.py.)"""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from dealers.models import Organisation
from deals import services
from deals.models import ExtensionRequest, Registration, RegistrationEvent
from prm.models import OutboxEmail
from tests.concurrency import at_once
from tests.deal_factories import make_registration
from tests.tier_factories import certify, sale
from tiers import services as tier_services
from tiers.models import DealerStanding, Evaluation, EvaluationRun, TierChange

Status = Registration.Status


class Killed(Exception):
    """The worker process died here."""


def expiring(world, n):
    yesterday = timezone.localdate() - timedelta(days=1)
    return [
        make_registration(world.own, world.own_user, Status.APPROVED, protected=True, protected_until=yesterday)
        for _ in range(n)
    ]


def expiry_state():
    return (
        sorted(Registration.objects.filter(status=Status.EXPIRED).values_list("pk", flat=True)),
        sorted(RegistrationEvent.objects.filter(action="expire").values_list("registration_id", flat=True)),
        sorted(ExtensionRequest.objects.values_list("status", flat=True)),
    )


def test_expiry_killed_after_some_batches_then_rerun_equals_one_clean_run(world, monkeypatch):
    rows = expiring(world, 7)
    ExtensionRequest.objects.create(registration=rows[-1], requested_by=world.own_user, reason="More time")
    real_now, calls = timezone.now, {"n": 0}

    def dying_now():  # the third batch never starts
        calls["n"] += 1
        if calls["n"] == 4:  # the first reading is for "today", then one per batch
            raise Killed
        return real_now()

    monkeypatch.setattr(services.timezone, "now", dying_now)
    with pytest.raises(Killed):
        services.protections_expire(batch_size=2)
    monkeypatch.undo()
    halfway = expiry_state()
    assert len(halfway[0]) == 4 and halfway[0] == halfway[1]  # two whole batches, each with its history
    services.protections_expire(batch_size=2)
    after_rerun = expiry_state()
    assert after_rerun == (sorted(r.pk for r in rows), sorted(r.pk for r in rows), ["cancelled"])


def test_expiry_killed_after_its_batches_is_completed_by_the_next_run(world, monkeypatch):
    rows = expiring(world, 2)
    ExtensionRequest.objects.create(registration=rows[0], requested_by=world.own_user, reason="More time")

    def die(_status):
        raise Killed

    monkeypatch.setattr(services.conflicts, "conflicts_close_for_status", die)
    with pytest.raises(Killed):
        services.protections_expire()
    monkeypatch.undo()
    assert ExtensionRequest.objects.get().status == ExtensionRequest.Status.PENDING
    assert services.protections_expire() == 0  # nothing left to expire, but the follow-up runs
    assert ExtensionRequest.objects.get().status == ExtensionRequest.Status.CANCELLED
    assert RegistrationEvent.objects.filter(action="expire").count() == 2


def tier_state():
    return (
        EvaluationRun.objects.filter(finished_at__isnull=False).count(),
        sorted(Evaluation.objects.values_list("organisation_id", "total", "held_tier_id")),
        sorted(DealerStanding.objects.values_list("organisation_id", "tier_id", "grace_started_on")),
        sorted(TierChange.objects.values_list("organisation_id", "kind", "to_tier_id")),
        OutboxEmail.objects.filter(topic__startswith="tier ").count(),
    )


def test_tier_run_killed_before_its_end_leaves_nothing_half_applied(world, monkeypatch):
    day = timezone.localdate()
    sale(world.own, "600000", day - timedelta(days=3), registered=True)
    for code in ("a", "b", "c"):
        certify(world.own, code, day + timedelta(days=90))

    def die(changes):
        raise Killed

    monkeypatch.setattr(tier_services, "_notify", die)
    with pytest.raises(Killed):
        tier_services.tiers_recompute(day=day)
    monkeypatch.undo()
    assert tier_state() == (0, [], [], [], 0)  # one transaction: nothing of the run stays
    tier_services.tiers_recompute(day=day)
    once = tier_state()
    assert once[0] == 1 and len(once[1]) == 3 and len(once[3]) == 3
    assert tier_services.tiers_recompute(day=day).created is False
    assert tier_state() == once


@pytest.mark.django_db(transaction=True)
def test_two_workers_run_the_tier_evaluation_once(world):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite serialises the two workers, which proves nothing")
    day = timezone.localdate()
    sale(world.own, "300000", day - timedelta(days=3))
    results, errors = at_once(lambda: tier_services.tiers_recompute(day=day))
    assert errors == []
    assert sorted(r.created for r in results) == [False, True]
    assert EvaluationRun.objects.count() == 1
    assert Evaluation.objects.count() == 3
    assert TierChange.objects.count() == 3  # one start per dealer, not two


@pytest.mark.django_db(transaction=True)
def test_two_workers_send_the_expiry_warnings_once(world):
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL: SQLite serialises the two workers, which proves nothing")
    soon = timezone.localdate() + timedelta(days=3)
    for _ in range(6):
        make_registration(world.own, world.own_user, Status.APPROVED, protected=True, protected_until=soon)
    results, errors = at_once(services.expiry_warnings_send)
    assert errors == []
    warnings = list(OutboxEmail.objects.filter(subject__contains="protection ends").values_list("to", "topic"))
    assert len(warnings) == len(set(warnings)) >= 6  # each registration's people warned once


# --- the database connection cut under the portal --------------------------------------------------


def _get(url, cookie):
    request = urllib.request.Request(url, headers={"Cookie": f"sessionid={cookie}"})
    try:
        with urllib.request.urlopen(request, timeout=20) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _terminate(pid: int) -> None:
    """Cut one connection from outside, as a failover or an administrator's pg_terminate_backend
    would."""
    import psycopg2

    settings = connection.settings_dict
    other = psycopg2.connect(
        dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"], port=settings["PORT"] or 5432
    )
    other.autocommit = True
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    other.close()


@pytest.mark.django_db(transaction=True)
def test_a_persistent_connection_cut_between_requests_is_replaced_at_the_next_request(world):
    """Production keeps connections open between requests (DATABASE_CONN_MAX_AGE) with health
    checks on: the next request notices the dead connection and opens a new one."""
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    from django.core.signals import request_finished, request_started

    assert connection.settings_dict["CONN_HEALTH_CHECKS"] and connection.settings_dict["CONN_MAX_AGE"] > 0
    request_started.send(sender=None)
    assert Registration.objects.count() == 0
    request_finished.send(sender=None)  # a persistent connection stays open after the request
    _terminate(connection.connection.get_backend_pid())
    request_started.send(sender=None)  # the next request
    assert Organisation.objects.filter(pk=world.own.pk).exists()  # a new connection, no error
    request_finished.send(sender=None)


@pytest.mark.django_db(transaction=True)
def test_connection_cut_in_the_middle_of_a_request_fails_cleanly_and_the_next_works(world, live_server, monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend is PostgreSQL's")
    from dealers import views
    from deals import selectors

    client = Client()
    client.force_login(world.own_admin)
    cookie = client.cookies["sessionid"].value
    real_summary = selectors.dealer_summary

    def cut_then_query(organisation):
        with connection.cursor() as cursor:  # the request's own connection, in the server thread
            cursor.execute("SELECT pg_backend_pid()")
            _terminate(cursor.fetchone()[0])
        return real_summary(organisation)  # its first query hits the dead connection

    monkeypatch.setattr(views.registration_selectors, "dealer_summary", cut_then_query)
    status, body = _get(f"{live_server.url}/", cookie)
    assert status == 500 and "Traceback" not in body  # a clean error page, no hang, no debug page
    monkeypatch.undo()
    status, body = _get(f"{live_server.url}/", cookie)
    assert status == 200 and "Own Dealer B.V." in body  # no restart needed
