"""/healthz: 200 when the database and the broker answer, 503 naming whichever does not."""

import socket
import time

import pytest
from django.db import OperationalError

from prm import health
from prm.celery import app as celery_app

pytestmark = pytest.mark.django_db


def point_broker_at(monkeypatch, url):
    # Celery reads CELERY_BROKER_URL from the environment ahead of its configuration, so both
    # change; the configuration first, so that undoing restores the real URL.
    monkeypatch.setattr(celery_app.conf, "broker_url", url)
    monkeypatch.setenv("CELERY_BROKER_URL", url)


def test_healthz_ok_when_database_and_broker_answer(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response["Cache-Control"].startswith("max-age=0")


def test_healthz_names_the_broker_when_it_is_unreachable(client, monkeypatch):
    # Nothing listens on port 1: the connection is refused straight away.
    point_broker_at(monkeypatch, "redis://127.0.0.1:1/0")

    started = time.monotonic()
    response = client.get("/healthz")

    assert time.monotonic() - started < health.BROKER_DEADLINE + 1
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failed"] == ["broker"]
    assert body["database"] == "ok"


def test_healthz_gives_up_on_a_broker_that_never_answers(client, monkeypatch):
    # A socket that accepts connections and stays silent: the check must time out, not hang.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        point_broker_at(monkeypatch, f"redis://127.0.0.1:{port}/0")

        started = time.monotonic()
        response = client.get("/healthz")
        elapsed = time.monotonic() - started

    assert elapsed < health.BROKER_DEADLINE + 1
    assert response.status_code == 503
    assert response.json()["failed"] == ["broker"]


def test_healthz_names_the_database_when_it_fails(client, monkeypatch):
    class BrokenConnection:
        def cursor(self):
            raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(health, "connection", BrokenConnection())

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["failed"] == ["database"], body
    assert body["database"] == "unreachable (OperationalError)"  # the details go to the log only
    assert "server closed" not in response.content.decode()
    assert body["broker"] == "ok"


def test_healthz_only_answers_get(client):
    assert client.post("/healthz").status_code == 405
