"""Factories and helpers for deal registrations.

`submit(...)` and `approved(...)` go through the real services; `make_registration(...)` builds a
registration in any status directly with the ORM (for the transition matrix and the jobs), with
its fields set the way the services would have left them.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from deals import services
from deals.models import Customer, Product, ProductLine, ProgrammeSettings, Registration, RegistrationLine

Status = Registration.Status

# Statuses a registration can only reach after it was protected once.
HAD_PROTECTION = (Status.APPROVED, Status.WON, Status.LOST, Status.EXPIRED, Status.REVOKED)
DECIDED = HAD_PROTECTION + (Status.REJECTED,)


class ProductLineFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProductLine

    name = factory.Sequence(lambda n: f"Product line {n}")
    code = factory.Sequence(lambda n: f"line-{n}")
    protection_days = None
    direct_only = False


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product

    line = factory.SubFactory(ProductLineFactory)
    sku = factory.Sequence(lambda n: f"SKU-{n:05d}")
    name = factory.Sequence(lambda n: f"Product {n}")
    list_price = Decimal("1000.00")
    active = True


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Sequence(lambda n: f"Customer {n} B.V.")
    city = "Utrecht"
    postcode = "3511 AB"
    country = "NL"


def _actor(world_or_actor):
    """A `world` stands for its own dealer's user; anything else is the actor itself."""
    return world_or_actor.own_user if hasattr(world_or_actor, "own_user") else world_or_actor


def customer_data(**overrides) -> services.CustomerData:
    values = {"name": "Bakkerij De Korenschoof B.V.", "city": "Utrecht", "postcode": "3511 AB", "country": "NL"}
    values.update(overrides)
    return services.CustomerData(**values)


def submit(world_or_actor, **overrides) -> Registration:
    """services.registration_submit with sensible defaults: one registrable product × 2, close
    date 30 days ahead, a new customer. Any keyword of the service may be overridden."""
    kwargs = {
        "actor": _actor(world_or_actor),
        "contact_name": "Jan de Vries",
        "contact_email": "jan@korenschoof.example",
        "expected_close_date": timezone.localdate() + timedelta(days=30),
    }
    kwargs.update(overrides)
    if "lines" not in kwargs:
        kwargs["lines"] = [services.LineData(product=ProductFactory(), quantity=2)]
    if "customer" not in kwargs and "existing_customer" not in kwargs:
        kwargs["customer"] = customer_data()
    return services.registration_submit(**kwargs)


def reviewer_of(registration: Registration):
    """The person whose queue it lands in: the partner manager, else the regional director."""
    return registration.organisation.account_manager


def approved(world_or_actor, *, reviewer=None, **overrides) -> Registration:
    """Submit (as above) and approve as the dealer's own reviewer."""
    registration = submit(world_or_actor, **overrides)
    services.registration_approve(registration=registration, actor=reviewer or reviewer_of(registration))
    registration.refresh_from_db()
    return registration


_numbers = itertools.count(900_000)


def make_registration(
    organisation,
    registered_by,
    status: str = Status.SUBMITTED,
    *,
    protected: bool | None = None,
    protected_until: date | None = None,
    products: list[Product] | None = None,
    **fields,
) -> Registration:
    """A registration in `status`, built directly with the ORM (no history, no emails).

    `protected` says whether it holds (or held) a protection; by default only the statuses that
    can follow an approval do. Review clock: submitted two days ago, due in the past."""
    now = timezone.now()
    if protected is None:
        protected = status in HAD_PROTECTION
    programme = ProgrammeSettings.load()
    submitted_at = fields.pop("first_submitted_at", now - timedelta(days=2))
    values = {
        "reference": f"REG-TEST-{next(_numbers)}",
        "organisation": organisation,
        "registered_by": registered_by,
        "customer": fields.pop("customer", None) or CustomerFactory(organisation=organisation),
        "contact_name": "Jan de Vries",
        "contact_email": "jan@example.com",
        "expected_value": Decimal("2000.00"),
        "expected_close_date": timezone.localdate() + timedelta(days=30),
        "status": status,
        "status_changed_at": submitted_at,
        "first_submitted_at": submitted_at,
        "review_started_at": submitted_at,
        "review_remind_at": submitted_at + timedelta(days=1),
        "review_due_at": submitted_at + timedelta(days=2),
        "last_activity_at": submitted_at,
    }
    if protected:
        values.update(
            protected_until=protected_until or timezone.localdate() + timedelta(days=60),
            margin_percent=programme.registered_margin_percent,
        )
    if status in DECIDED or protected:
        values.update(decided_at=submitted_at + timedelta(hours=5), decided_in_time=True)
    if status == Status.WON:
        values.update(won_value=Decimal("2000.00"), won_date=timezone.localdate())
    if status == Status.LOST:
        values.update(lost_reason=Registration.LostReason.PRICE)
    values.update(fields)
    registration = Registration.objects.create(**values)
    for product in products or [ProductFactory()]:
        RegistrationLine.objects.create(
            registration=registration, product=product, quantity=2, value=product.list_price * 2
        )
    return registration
